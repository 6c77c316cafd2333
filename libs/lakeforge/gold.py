"""Gold: analyst-facing tables computed from silver by the transforms a use case names in config.

A gold table is recomputed only when what it is computed from changed: each write stores the Delta
version of every input and a digest of its definition (`transforms.definition_fingerprint`) with its
commit, and a run that finds both unchanged skips the table. A scheduled run with nothing new then
costs the lookups, not a recompute of every table from all of silver.
"""

from __future__ import annotations

import logging
import time

from pyspark.sql import SparkSession

from lakeforge import tables, transforms
from lakeforge.config import Settings

log = logging.getLogger(__name__)


def run(spark: SparkSession, settings: Settings) -> dict[str, bool]:
    """Recompute every gold table whose inputs changed, concurrently; each is replaced in one Delta transaction.
    Returns, per table, whether it was written."""
    tables.ensure_schema(spark, settings.schema("gold"))
    return tables.for_each_table(settings.use_case.gold, lambda name: build_table(spark, settings, name))


def build_table(spark: SparkSession, settings: Settings, name: str) -> bool:
    """Recompute one gold table unless its inputs and definition are those of its last write; True if written."""
    started = time.monotonic()
    gold = settings.use_case.gold[name]
    target = settings.table("gold", name)
    input_tables = {source: settings.table("silver", source) for source in gold.inputs}
    computed_from = {
        "inputs": {table: tables.table_version(spark, table) for table in input_tables.values()},
        "definition": transforms.definition_fingerprint(gold),
    }
    if tables.last_write_metadata(spark, target) == computed_from:
        log.info("gold %s: inputs and definition unchanged, skipped", name)
        return False
    versions = computed_from["inputs"]
    inputs = {source: tables.read_table(spark, table, versions[table]) for source, table in input_tables.items()}
    tables.overwrite(transforms.compute(gold, inputs), target, metadata=computed_from)
    log.info("gold %s: written in %.1fs", name, time.monotonic() - started)
    return True
