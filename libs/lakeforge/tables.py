"""All table and file I/O: the one module that reads and writes.

Steps in `bronze`, `silver` and `gold` are pure DataFrame transforms; this module decides how a
table is created, merged, appended idempotently or overwritten. Table names arrive fully qualified
and quoted from `Settings.table`, so Unity Catalog and the local metastore differ in one place.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from lakeforge import globs
from lakeforge.errors import OrphanedTableError, TableNotFound
from lakeforge.table_ref import TableRef

T = TypeVar("T")

# Independent tables (the sources of a use case, the gold tables) are written by concurrent Spark
# jobs on one session: the driver's per-table work (metastore, Delta log, planning) then overlaps
# with the executors' work on another table.
MAX_CONCURRENT_TABLES = 4
# Two threads creating the same table (a shared audit table) must not race in the metastore.
_CREATE_LOCK = threading.Lock()


def for_each_table(names: Iterable[str], action: Callable[[str], T]) -> dict[str, T]:
    """Run `action(name)` for every name concurrently; every action finishes before the first error is raised.

    Each action writes its own tables in Delta transactions, so a failure in one leaves the others
    complete and its own tables as they were. Errors are raised in the order of `names`.
    """
    names = list(names)
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_CONCURRENT_TABLES, len(names)))) as pool:
        futures = {name: pool.submit(action, name) for name in names}
    for future in futures.values():
        if future.exception() is not None:
            raise future.exception()
    return {name: future.result() for name, future in futures.items()}


def ensure_schema(spark: SparkSession, schema: str) -> None:
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")


def schema_tables(spark: SparkSession, schema: str) -> list[str]:
    """The names of the permanent tables and views of `schema` (quoted SQL name), sorted; none when the schema
    does not exist."""
    if not spark.catalog.databaseExists(schema.replace("`", "")):
        return []
    rows = spark.sql(f"SHOW TABLES IN {schema}").where("NOT isTemporary").collect()
    return sorted(row["tableName"] for row in rows)


def plain_name(table: str) -> str:
    """`schema.table` as people write it (see `TableRef`)."""
    return TableRef.parse(table).plain


def full_name(table: str) -> str:
    """`catalog.schema.table`; a local `schema.table` lives in Spark's session catalog, `spark_catalog`.

    MLflow reads any other first part as a Unity Catalog name and asks Databricks for the table's id."""
    return TableRef.parse(table).three_part


def quoted_name(table: str) -> str:
    """The quoted SQL form of a table name in any of its forms."""
    return TableRef.parse(table).sql


def version_or_latest(spark: SparkSession, table: str, versions: dict[str, int] | None) -> int | None:
    """The version pinned for `table` in `versions` (time travel), else its latest version."""
    pinned = (versions or {}).get(table)
    return pinned if pinned is not None else table_version(spark, table)


def table_exists(spark: SparkSession, table: str) -> bool:
    return spark.catalog.tableExists(plain_name(table))


def read_table(spark: SparkSession, table: str, version: int | None = None) -> DataFrame:
    """Read a table (at a Delta version when given: time travel), or say which step has to run first."""
    if not table_exists(spark, table):
        raise TableNotFound(f"table {table} does not exist yet: run the step that writes it first")
    if version is None:
        return spark.read.table(table)
    return spark.read.option("versionAsOf", version).table(table)


def table_properties(spark: SparkSession, table: str) -> dict[str, str]:
    """The table's properties (TBLPROPERTIES), empty when the table does not exist."""
    if not table_exists(spark, table):
        return {}
    return {key: value for key, value in DeltaTable.forName(spark, table).detail().first()["properties"].items()}


def set_properties(spark: SparkSession, table: str, properties: dict[str, str]) -> None:
    """Record metadata (lineage, freshness) on the table itself, in one Delta commit."""
    assignments = ", ".join(f"{_sql_string(k)} = {_sql_string(v)}" for k, v in sorted(properties.items()))
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ({assignments})")


def _sql_string(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_version(spark: SparkSession, table: str) -> int | None:
    """The latest Delta version of a table, or None when it does not exist."""
    if not table_exists(spark, table):
        return None
    return DeltaTable.forName(spark, table).history(1).select("version").first()[0]


def read_appended_rows(spark: SparkSession, table: str, start_version: int, end_version: int) -> DataFrame:
    """Rows appended to an append-only table between two versions (inclusive), through the Delta change data feed.

    From version 0 that is the whole table as of `end_version`, which is read as such: a snapshot
    read skips the change feed's per-file bookkeeping (2.5x faster on 1M bronze rows).
    """
    if start_version == 0:
        return spark.read.option("versionAsOf", end_version).table(table)
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", start_version)
        .option("endingVersion", end_version)
        .table(table)
        .where(F.col("_change_type") == "insert")
        .drop("_change_type", "_commit_version", "_commit_timestamp")
    )


def read_changes(spark: SparkSession, table: str, start_version: int, end_version: int) -> DataFrame:
    """Every row inserted, updated (before and after) or deleted between two versions, from the change data feed."""
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", start_version)
        .option("endingVersion", end_version)
        .table(table)
        .drop("_commit_version", "_commit_timestamp")
    )


def _managed_location(spark: SparkSession, table: str) -> str | None:
    """Where the metastore would put `table` if it were created as a managed table."""
    *schema, name = table.split(".")
    rows = spark.sql(f"DESCRIBE SCHEMA EXTENDED {'.'.join(schema)}").collect()
    location = next((r[1] for r in rows if r[0] == "Location"), None)
    return f"{location.rstrip('/')}/{name.strip('`').lower()}" if location else None


def clear_orphaned_create(spark: SparkSession, table: str) -> None:
    """Remove what a driver killed inside CREATE TABLE left behind, so the create can run again.

    Delta commits a managed table's first version before the metastore registers it; a crash in
    between leaves a log that only says CREATE TABLE, invisible to every reader. Anything more than
    that is real data and is never deleted: the error says how to register it instead.
    """
    location = _managed_location(spark, table)
    if location is None or not DeltaTable.isDeltaTable(spark, location):
        return
    operations = [r[0] for r in DeltaTable.forPath(spark, location).history().select("operation").collect()]
    if operations != ["CREATE TABLE"] or DeltaTable.forPath(spark, location).toDF().limit(1).count():
        raise OrphanedTableError(
            f"{table} is not in the metastore but {location} holds a Delta table with history {operations}: "
            f"register it with CREATE TABLE {table} USING DELTA LOCATION '{location}', or move it away"
        )
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def _create_if_missing(spark: SparkSession, table: str, df: DataFrame, properties: dict[str, str]) -> bool:
    """Create the table with `df`'s schema unless it exists; True when this call created it (empty)."""
    if table_exists(spark, table):
        return False
    with _CREATE_LOCK:
        if table_exists(spark, table):
            return False
        clear_orphaned_create(spark, table)
        builder = DeltaTable.createIfNotExists(spark).tableName(table).addColumns(df.schema)
        for key, value in properties.items():
            builder = builder.property(key, value)
        builder.execute()
        return True


def append_idempotent(
    df: DataFrame, table: str, app_id: str, version: int, properties: dict[str, str] | None = None
) -> None:
    """Append once per (app_id, version): a replayed batch is skipped by Delta, never duplicated."""
    _create_if_missing(df.sparkSession, table, df, properties or {})
    (
        df.write.format("delta")
        .mode("append")
        .option("mergeSchema", "true")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .saveAsTable(table)
    )


# Tables written by MERGE: a change feed for the steps downstream, and deletion vectors, so that a MERGE
# replacing a few rows of a file marks them deleted instead of rewriting the file (a daily batch updates
# keys spread over every file of the table).
CHANGE_FEED = {"delta.enableChangeDataFeed": "true", "delta.enableDeletionVectors": "true"}


def _appended_as_first_load(df: DataFrame, table: str) -> bool:
    """Create the table if needed and, when this call created it, append `df`: a MERGE would join against nothing.

    A table that already existed is merged into, even when it is empty (a run that quarantined every
    row, a driver killed after the create): MERGE is right in every case, the append only faster.
    Tables written by MERGE keep a change data feed, so the steps downstream can read what changed.
    """
    if not _create_if_missing(df.sparkSession, table, df, CHANGE_FEED):
        return False
    df.write.format("delta").mode("append").option("mergeSchema", "true").saveAsTable(table)
    return True


def merge_latest(df: DataFrame, table: str, keys: list[str], event_time: str) -> None:
    """Upsert rows (one per key) so the latest record per key wins by event time.

    Replaying the same rows changes nothing, and a late, older update never overwrites a newer one.
    """
    _merge_on_keys(df, table, keys, f"s.`{event_time}` > t.`{event_time}`")


def upsert(df: DataFrame, table: str, keys: list[str]) -> None:
    """MERGE rows on their keys: matched rows are replaced, new ones inserted; replaying changes nothing."""
    _merge_on_keys(df, table, keys, None)


def _merge_on_keys(df: DataFrame, table: str, keys: list[str], replace_when: str | None) -> None:
    if _appended_as_first_load(df, table):
        return
    on = " AND ".join(f"t.`{key}` <=> s.`{key}`" for key in keys)
    (
        DeltaTable.forName(df.sparkSession, table)
        .alias("t")
        .merge(df.alias("s"), on)
        .withSchemaEvolution()
        .whenMatchedUpdateAll(condition=replace_when)
        .whenNotMatchedInsertAll()
        .execute()
    )


def append(df: DataFrame, table: str) -> None:
    """Append rows (a log such as a registry: every run adds its own rows)."""
    _create_if_missing(df.sparkSession, table, df, {})
    df.write.format("delta").mode("append").option("mergeSchema", "true").saveAsTable(table)


def insert_new(df: DataFrame, table: str, id_column: str) -> None:
    """Insert rows whose id is not in the table yet: an insert-only MERGE, safe to replay."""
    if _appended_as_first_load(df, table):
        return
    (
        DeltaTable.forName(df.sparkSession, table)
        .alias("t")
        .merge(df.alias("s"), f"t.`{id_column}` = s.`{id_column}`")
        .withSchemaEvolution()
        .whenNotMatchedInsertAll()
        .execute()
    )


def overwrite(df: DataFrame, table: str, metadata: dict | None = None) -> None:
    """Replace a table's contents in one Delta transaction (readers see the old or the new, never half).
    `metadata` is stored with the commit (Delta's `userMetadata`), read back by `last_write_metadata`."""
    _create_if_missing(df.sparkSession, table, df, {})
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if metadata is not None:
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True))
    writer.saveAsTable(table)


def last_write_metadata(spark: SparkSession, table: str, commits: int = 50) -> dict | None:
    """The metadata of the newest of a table's last `commits` commits that stored some (None when none did:
    maintenance commits such as OPTIMIZE store none, and a table older than them reads as never written)."""
    if not table_exists(spark, table):
        return None
    history = DeltaTable.forName(spark, table).history(commits).where(F.col("userMetadata").isNotNull())
    row = history.orderBy(F.col("version").desc()).select("userMetadata").first()
    return json.loads(row[0]) if row else None


def replace_partition(df: DataFrame, table: str, column: str, value: str) -> None:
    """Replace the rows whose `column` equals `value` in one transaction (`replaceWhere`): a rerun of
    the same partition replaces it, never duplicates it; other partitions are untouched."""
    replace_rows(df, table, {column: value}, partition_by=[column])


def replace_rows(df: DataFrame, table: str, match: dict[str, str], partition_by: list[str] | None = None) -> None:
    """Replace the rows whose columns equal `match` in one transaction (`replaceWhere`), creating the
    table if needed; a rerun replaces the same rows, never duplicates them, and other rows are untouched.
    New columns in `df` are added to the table (rows written before them read NULL there)."""
    spark = df.sparkSession
    if not table_exists(spark, table):
        clear_orphaned_create(spark, table)
        builder = DeltaTable.createIfNotExists(spark).tableName(table).addColumns(df.schema)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        builder.execute()
    condition = " AND ".join(f"`{column}` = {_sql_string(value)}" for column, value in match.items())
    if df.where(f"NOT ({condition})").limit(1).count():
        raise ValueError(f"rows outside {condition} cannot replace those rows of {table}")
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", condition)
        .option("mergeSchema", "true")
        .saveAsTable(table)
    )


def replace_view(spark: SparkSession, view: str, query: str) -> None:
    spark.sql(f"CREATE OR REPLACE VIEW {view} AS {query}")


def list_files(spark: SparkSession, folder: str) -> list[Row]:
    """Every file under `folder`, at any depth, as Spark's file sources see them (names starting with `_` or
    `.` are skipped, as Spark skips them): `path` to read it by, `file_path` as Spark records it in
    `_metadata.file_path`, `size` and `modified_ms`. No file content is read; a missing folder has none."""
    try:
        listing = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(folder)
        return listing.select(
            "path",
            F.col("_metadata.file_path").alias("file_path"),
            F.col("length").alias("size"),
            F.unix_millis("modificationTime").alias("modified_ms"),
        ).collect()
    except AnalysisException as exc:
        if exc.getCondition() == "PATH_NOT_FOUND":
            return []
        raise


def read_files(spark: SparkSession, file_format: str, paths: list[str], schema, options: dict[str, str]) -> DataFrame:
    """The rows of exactly these files (their paths escaped for globbing), each with the `_source_file` it came from."""
    reader = spark.read.format(file_format).schema(schema).options(**options)
    rows = reader.load([globs.escape(path) for path in paths])
    return rows.select("*", F.col("_metadata.file_path").alias("_source_file"))


def last_commit_rows(spark: SparkSession, table: str) -> int | None:
    """The rows the newest commit of `table` wrote, from Delta's history (no scan)."""
    metrics = DeltaTable.forName(spark, table).history(1).select("operationMetrics").first()[0] or {}
    rows = metrics.get("numOutputRows")
    return int(rows) if rows is not None else None
