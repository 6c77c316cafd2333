"""Gold: analyst-facing tables computed from silver by the transforms a use case names in config."""

from __future__ import annotations

import logging
import time

from pyspark.sql import SparkSession

from lakeforge import tables, transforms
from lakeforge.config import Settings

log = logging.getLogger(__name__)


def run(spark: SparkSession, settings: Settings) -> None:
    """Recompute every gold table from silver, concurrently; each is replaced in one Delta transaction."""
    tables.ensure_schema(spark, settings.schema("gold"))
    tables.for_each_table(settings.use_case.gold, lambda name: build_table(spark, settings, name))


def build_table(spark: SparkSession, settings: Settings, name: str) -> None:
    started = time.monotonic()
    gold = settings.use_case.gold[name]
    inputs = {source: tables.read_table(spark, settings.table("silver", source)) for source in gold.inputs}
    tables.overwrite(transforms.compute(gold, inputs), settings.table("gold", name))
    log.info("gold %s: written in %.1fs", name, time.monotonic() - started)
