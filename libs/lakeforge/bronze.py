"""Bronze: land raw files in Delta exactly once, losing nothing.

Every value stays a string as it arrived; typing is silver's job. A line that cannot be parsed is
kept whole in `_corrupt_record`. A key that appears in a later JSON batch becomes a new bronze
column (schema evolution) instead of a crash. A key that cannot be a column (not a plain identifier,
starting with `_` like lakeforge's own columns, or differing from a column only in case) is kept with
its value in `_rescued_data`, a JSON object per line, as Databricks Auto Loader does. A CSV file
whose header differs from the declared columns stops ingestion with Spark's "CSV header does not
conform to the schema" and writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeforge import tables
from lakeforge.config import IDENTIFIER_PATTERN, Settings, Source

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
RESCUED = "_rescued_data"
METADATA_COLUMNS = ("_record_id", "_source_file", "_ingested_at", CORRUPT)
BRONZE_PROPERTIES = {"delta.enableChangeDataFeed": "true"}


def raw_schema(source: Source) -> T.StructType:
    """The schema files are read with: declared columns as strings (+ the corrupt-record column for CSV)."""
    if source.format == "json":
        return T.StructType([T.StructField("value", T.StringType())])
    fields = [T.StructField(name, T.StringType()) for name in source.columns]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])


def reader_options(source: Source) -> dict[str, str]:
    if source.format == "json":
        return {"maxFilesPerTrigger": "64"}
    return {
        "header": "true",
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": CORRUPT,
        # The header must match the declared columns: a reordered or widened CSV stops ingestion
        # loudly instead of reading values into the wrong columns.
        "enforceSchema": "false",
        "maxFilesPerTrigger": "64",
    }


def json_keys(lines: DataFrame) -> list[str]:
    """Every top-level key present in a batch of JSON lines (a small aggregate, not a collect of rows)."""
    keys = lines.select(F.explode(F.json_object_keys("value")).alias("key")).distinct().collect()
    return sorted(row["key"] for row in keys)


def split_new_keys(keys: list[str], columns: list[str]) -> tuple[list[str], list[str]]:
    """Split the keys of a batch that are not yet columns into new columns and keys to rescue.

    A key becomes a column if it is a plain identifier, does not start with `_` (kept for lakeforge's
    bookkeeping columns), and does not equal another column but for case (Spark and Delta resolve
    column names without case). Every other key is rescued.
    """
    taken = {c.lower() for c in columns}
    new_columns: list[str] = []
    rescued: list[str] = []
    for key in keys:
        if key in columns:
            continue
        if IDENTIFIER_PATTERN.match(key) and not key.startswith("_") and key.lower() not in taken:
            new_columns.append(key)
            taken.add(key.lower())
        else:
            rescued.append(key)
    return new_columns, rescued


def parse_json_lines(lines: DataFrame, columns: list[str], rescued_keys: Sequence[str] = ()) -> DataFrame:
    """Split JSON lines into string columns; a line that is not a JSON object keeps its text in `_corrupt_record`.

    The values of `rescued_keys` go to `_rescued_data` as one JSON object per line (null when the line
    has none of them). Only a batch with such keys pays for the second parse this takes.
    """
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*columns, CORRUPT]])
    parsed = F.from_json("value", schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    malformed = F.col("_json").isNull() | F.col(f"_json.{CORRUPT}").isNotNull()
    if rescued_keys:
        every_key = F.from_json("value", T.MapType(T.StringType(), T.StringType()))
        rescued_values = F.map_filter(every_key, lambda key, _value: key.isin(list(rescued_keys)))
        rescued = F.when(~malformed & (F.size(rescued_values) > 0), F.to_json(rescued_values))
    else:
        rescued = F.lit(None).cast("string")
    return lines.select(parsed.alias("_json"), "value", "_source_file").select(
        *[F.when(~malformed, F.col("_json").getField(c)).alias(c) for c in columns],
        F.when(malformed, F.col("value")).alias(CORRUPT),
        rescued.alias(RESCUED),
        "_source_file",
    )


def add_ingest_metadata(rows: DataFrame) -> DataFrame:
    """Stamp each row with a stable id (its file plus its position in the batch) and the time it was ingested.

    The id is the same when a batch is replayed after a crash: same files, same partitions.
    """
    row_id = F.concat(F.col("_source_file"), F.lit("#"), F.monotonically_increasing_id().cast("string"))
    return rows.withColumn("_record_id", row_id).withColumn("_ingested_at", F.current_timestamp())


def to_bronze_rows(batch: DataFrame, source: Source, known_columns: list[str]) -> DataFrame:
    """Turn a batch of raw file rows into bronze rows, keeping columns that were not declared.

    A JSON batch is read twice, once for its keys and once for its rows: re-reading text is cheaper
    than caching it.
    """
    if source.format == "json":
        columns = list(source.columns) + [c for c in known_columns if c not in source.columns]
        new_columns, rescued_keys = split_new_keys(json_keys(batch), columns)
        if rescued_keys:
            log.warning("keys kept in %s, as they cannot be columns: %s", RESCUED, ", ".join(rescued_keys))
        rows = parse_json_lines(batch, columns + new_columns, rescued_keys)
    else:
        rows = batch
    return add_ingest_metadata(rows)


def ingest_source(spark: SparkSession, settings: Settings, name: str) -> None:
    """Ingest the landing files of one source not seen before into its bronze table."""
    source = settings.use_case.sources[name]
    table = settings.table("bronze", name)
    landing = f"{settings.env.path('landing')}/{settings.use_case.name}/{name}"
    checkpoint = f"{settings.env.path('checkpoints')}/{settings.use_case.name}/bronze_{name}"
    started = time.monotonic()

    def handle_batch(batch: DataFrame, batch_id: int) -> None:
        known = (
            [c for c in spark.read.table(table).columns if not c.startswith("_")]
            if tables.table_exists(spark, table)
            else []
        )
        rows = to_bronze_rows(batch, source, known)
        tables.append_idempotent(rows, table, app_id=f"bronze:{table}", version=batch_id, properties=BRONZE_PROPERTIES)
        log.info("bronze %s: batch %d landed", name, batch_id)

    tables.stream_files(
        spark,
        source.format if source.format == "csv" else "text",
        f"{landing}/{source.files}",
        raw_schema(source),
        reader_options(source),
        checkpoint,
        handle_batch,
    )
    log.info("bronze %s: up to date in %.1fs", name, time.monotonic() - started)


def run(spark: SparkSession, settings: Settings) -> None:
    """Ingest every source of the use case, one stream per source, running concurrently."""
    tables.ensure_schema(spark, settings.schema("bronze"))
    tables.for_each_table(settings.use_case.sources, lambda name: ingest_source(spark, settings, name))
