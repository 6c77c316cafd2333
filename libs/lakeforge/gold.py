"""Gold: analyst-facing tables computed from silver by the transforms a use case names in config."""

from __future__ import annotations

import logging
import time

from pyspark.sql import SparkSession

from lakeforge import tables
from lakeforge.config import Settings, resolve_callable

log = logging.getLogger(__name__)


def run(spark: SparkSession, settings: Settings) -> None:
    """Recompute every gold table from silver; each is replaced in one Delta transaction."""
    tables.ensure_schema(spark, settings.schema("gold"))
    for name, gold in settings.use_case.gold.items():
        started = time.monotonic()
        transform = resolve_callable(gold.transform)
        inputs = {source: tables.read_table(spark, settings.table("silver", source)) for source in gold.inputs}
        tables.overwrite(transform(**inputs), settings.table("gold", name))
        log.info("gold %s: written in %.1fs", name, time.monotonic() - started)
