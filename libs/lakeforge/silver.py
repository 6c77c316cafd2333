"""Silver: typed, validated, deduplicated tables, merged so reruns and late updates are idempotent.

Each run reads what bronze appended since the last silver run (Delta change data feed), types it,
validates it with Great Expectations, sends failing rows to `<table>_quarantine` with the names of
what they failed, collapses duplicates (latest record per key wins by event time) and MERGEs the
rest. Rows read = rows merged + rows quarantined + duplicates collapsed, and the rows kept by the
dedup must be exactly one per distinct key (counted separately), or the run fails before writing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeforge import tables, validation
from lakeforge.bronze import CORRUPT, NESTED, ORIGINAL_BYTES, RESCUED
from lakeforge.config import UNCAST_TYPES, Settings, Source
from lakeforge.errors import AccountingMismatch, ValidationFailed

log = logging.getLogger(__name__)

REASONS = "_quarantine_reasons"
MALFORMED = "malformed_record"
INVALID_ENCODING = "invalid_encoding"
# Bronze columns a quarantined row keeps (what bronze rescued, the bytes as they arrived), when bronze has them.
KEPT_FOR_QUARANTINE = (RESCUED, ORIGINAL_BYTES)
AUDIT_TABLE = "run_audit"
RESULTS_TABLE = "validation_results"


@dataclass(frozen=True)
class BronzeRange:
    """The bronze versions one silver run of a source reads, and the run's id."""

    name: str
    start: int
    end: int
    run_id: str


@dataclass(frozen=True)
class SilverCounts:
    """What one silver run did with the rows it read."""

    rows_read: int
    rows_merged: int
    rows_quarantined: int
    duplicates_collapsed: int


def type_columns(bronze_rows: DataFrame, source: Source) -> DataFrame:
    """Cast the declared string columns to their types and list why a row cannot be typed.

    Adds `_quarantine_reasons`: `malformed_record` for unparseable lines, `invalid_encoding` for a row whose
    bytes were not valid UTF-8 (kept in `_original_bytes`), `cast_failed:<column>` where a value is present
    but not of the declared type, a JSON object or array among them (unless the type is `json`). The values
    as they arrived stay in `_raw`.
    """
    has = set(bronze_rows.columns)
    parsed = F.col(CORRUPT).isNull()
    reasons: list[Column] = [F.when(~parsed, F.lit(MALFORMED))]
    if ORIGINAL_BYTES in has:
        reasons.append(F.when(F.col(ORIGINAL_BYTES).isNotNull(), F.lit(INVALID_ENCODING)))
    typed: list[Column] = []
    for column, spark_type in source.columns.items():
        raw = F.col(column) if column in has else F.lit(None).cast("string")
        value = raw if spark_type in UNCAST_TYPES else F.trim(raw).try_cast(spark_type)
        typed.append(value.alias(column))
        wrong_type = raw.isNotNull() & value.isNull()
        if NESTED in has and spark_type != "json":
            wrong_type = wrong_type | F.coalesce(F.array_contains(NESTED, column), F.lit(False))
        reasons.append(F.when(wrong_type & parsed, F.lit(f"cast_failed:{column}")))
    extra = [c for c in bronze_rows.columns if c not in source.columns and not c.startswith("_")]
    raw_columns = [c for c in bronze_rows.columns if not c.startswith("_")]
    kept = [c for c in KEPT_FOR_QUARANTINE if c in has]
    return bronze_rows.select(
        *typed,
        *extra,
        F.struct(*raw_columns).alias("_raw"),
        "_record_id",
        "_source_file",
        "_ingested_at",
        CORRUPT,
        *kept,
        F.filter(F.array(*reasons), lambda r: r.isNotNull()).alias(REASONS),
    )


def add_expectation_failures(typed: DataFrame, failing: dict[str, Column]) -> DataFrame:
    """Append to `_quarantine_reasons` the name of every quarantine expectation a row fails.

    Only rows that could be typed were validated, so only those are tested against expectations.
    """
    typed_ok = F.size(REASONS) == 0
    reasons = [F.when(typed_ok & condition, F.lit(name)) for name, condition in failing.items()]
    if not reasons:
        return typed
    return typed.withColumn(REASONS, F.concat(F.col(REASONS), F.filter(F.array(*reasons), lambda r: r.isNotNull())))


def latest_per_key(tagged: DataFrame, keys: list[str], event_time: str) -> DataFrame:
    """Mark with `_duplicate` every passing row but the latest passing one of its key, by event time.

    Rows that already carry `_duplicate` were decided (once, and kept in memory) and are returned as they are.

    Ties (and a reference table, whose `event_time` is the ingest time) go to the later ingest, then the
    file named last, then the later line of that file. Rows with quarantine reasons are never duplicates,
    and never displace an older row that passed.
    """
    if "_duplicate" in tagged.columns:
        return tagged
    passed = F.size(REASONS) == 0
    # `_record_id` is `<file>#<position>`: the file, then the position as a number ("#10" after "#9").
    file, line = F.substring_index("_record_id", "#", 1), F.substring_index("_record_id", "#", -1).try_cast("long")
    order = Window.partitionBy(*keys).orderBy(
        passed.desc(),
        F.col(event_time).desc_nulls_last(),
        F.col("_ingested_at").desc(),
        file.desc(),
        line.desc_nulls_last(),
        F.col("_record_id").desc(),
    )
    return tagged.withColumn("_duplicate", passed & (F.row_number().over(order) > 1))


def quarantine_rows(tagged: DataFrame, run_id: str) -> DataFrame:
    """Rows that failed, as they arrived (strings, the keys bronze rescued, the bytes of what was not valid
    UTF-8), with their reasons and the run that caught them."""
    kept = [c for c in KEPT_FOR_QUARANTINE if c in tagged.columns]
    return tagged.where(F.size(REASONS) > 0).select(
        "_raw.*",
        CORRUPT,
        *kept,
        REASONS,
        "_record_id",
        "_source_file",
        "_ingested_at",
        F.lit(run_id).alias("_run_id"),
    )


def silver_rows(tagged: DataFrame, keys: list[str], event_time: str) -> DataFrame:
    """Rows that passed, one per key (the latest), without bookkeeping columns other than lineage."""
    latest = latest_per_key(tagged, keys, event_time).where((F.size(REASONS) == 0) & ~F.col("_duplicate"))
    return latest.drop(REASONS, CORRUPT, *KEPT_FOR_QUARANTINE, "_duplicate", "_raw")


def count_reasons(quarantine: DataFrame) -> dict[str, int]:
    """How many quarantined rows carry each reason (a row can carry several)."""
    reasons = quarantine.select(F.explode(REASONS).alias("reason")).groupBy("reason").count()
    return {row["reason"]: row["count"] for row in reasons.collect()}


def _last_processed_version(spark: SparkSession, audit: str, bronze: str) -> int:
    if not tables.table_exists(spark, audit):
        return -1
    row = (
        spark.read.table(audit)
        .where((F.col("step") == "silver") & (F.col("source_table") == bronze))
        .agg(F.max("source_end_version"))
        .first()
    )
    return -1 if row[0] is None else int(row[0])


def count_outcomes(tagged: DataFrame, keys: list[str], event_time: str) -> SilverCounts:
    """Count what a run will do, and check the dedup keeps exactly one row per distinct key.

    One Spark job over the cached batch. The keys with a passing row are counted by a grouping of
    their own, independently of the window that picks the latest row per key; both partition by the
    keys, so they share one shuffle.
    """
    passed = F.size(REASONS) == 0
    # Underscored names: config refuses declared columns starting with '_', so no key is called that.
    per_key = (
        latest_per_key(tagged, keys, event_time)
        .groupBy(*keys)
        .agg(
            F.count("*").alias("_read"),
            F.count_if(~passed).alias("_quarantined"),
            F.count_if(passed).alias("_passing"),
            F.count_if(passed & ~F.col("_duplicate")).alias("_kept"),
        )
    )
    totals = [F.coalesce(F.sum(c), F.lit(0)) for c in ("_read", "_quarantined", "_passing", "_kept")]  # 0 when empty
    read, quarantined, passing, kept, distinct_keys = per_key.agg(*totals, F.count_if(F.col("_passing") > 0)).first()
    if kept != distinct_keys:
        raise AccountingMismatch(
            f"{read} rows read, {quarantined} quarantined, {passing} passing of which {kept} kept as latest per key, "
            f"but {distinct_keys} distinct keys"
        )
    return SilverCounts(
        rows_read=read, rows_merged=kept, rows_quarantined=quarantined, duplicates_collapsed=passing - kept
    )


def refine_source(spark: SparkSession, settings: Settings, name: str, validate: bool = True) -> SilverCounts | None:
    """Bring one silver table up to date with its bronze table. Returns None when there was nothing new."""
    source = settings.use_case.sources[name]
    bronze = settings.table("bronze", name)
    audit = settings.table("ops", AUDIT_TABLE)
    start = _last_processed_version(spark, audit, bronze) + 1
    end = tables.table_version(spark, bronze)
    if end is None or start > end:
        log.info("silver %s: nothing new in bronze", name)
        return None
    started = time.monotonic()
    batch = BronzeRange(name, start, end, f"silver:{name}:{start}-{end}:{uuid.uuid4().hex[:8]}")
    # Typed once and kept: GX reads the batch once per metric group, then the counts, the quarantine
    # and the MERGE read it again.
    typed = type_columns(tables.read_appended_rows(spark, bronze, start, end), source).persist()
    try:
        counts = _refine(spark, settings, batch, typed, validate)
    finally:
        typed.unpersist()
    log.info("silver %s: %s in %.1fs", name, counts, time.monotonic() - started)
    return counts


def _refine(
    spark: SparkSession, settings: Settings, batch: BronzeRange, typed: DataFrame, validate: bool
) -> SilverCounts:
    name = batch.name
    source = settings.use_case.sources[name]
    outcome = None
    if validate:
        outcome = validation.validate(
            typed.where(F.size(REASONS) == 0),
            source.expectations,
            f"{settings.use_case.name}_{name}",
            settings.env.path("gx_project"),
            settings.env.path("data_docs"),
            source.key,
        )
    quarantine_conditions = outcome.quarantine_conditions() if outcome else {}
    # The latest row per key is decided once and kept: the counts, the quarantine and the MERGE read it.
    tagged = latest_per_key(add_expectation_failures(typed, quarantine_conditions), source.key, source.latest_by)
    tagged = tagged.persist()
    try:
        return _write_outcomes(spark, settings, batch, tagged, outcome)
    finally:
        tagged.unpersist()


def _write_outcomes(
    spark: SparkSession,
    settings: Settings,
    batch: BronzeRange,
    tagged: DataFrame,
    outcome: validation.ValidationOutcome | None,
) -> SilverCounts:
    """Check the counts and the `fail` expectations, then write quarantine, silver, results and audit.
    `outcome` is None when the run did not validate."""
    name, run_id, start, end = batch.name, batch.run_id, batch.start, batch.end
    source = settings.use_case.sources[name]
    bronze = settings.table("bronze", name)
    target = settings.table("silver", name)
    audit = settings.table("ops", AUDIT_TABLE)
    try:
        counts = count_outcomes(tagged, source.key, source.latest_by)
    except AccountingMismatch as exc:
        raise AccountingMismatch(f"silver {name}: {exc}; nothing was written") from exc
    if outcome and outcome.failed_fail_expectations():
        failed = ", ".join(outcome.failed_fail_expectations())
        raise ValidationFailed(
            f"silver {name}: expectations with action 'fail' did not hold: {failed}; nothing was written"
        )
    tables.insert_new(quarantine_rows(tagged, run_id), settings.table("silver", f"{name}_quarantine"), "_record_id")
    tables.merge_latest(silver_rows(tagged, source.key, source.latest_by), target, source.key, source.latest_by)
    if outcome:
        tables.append_idempotent(
            outcome.to_rows(spark, run_id),
            settings.table("ops", RESULTS_TABLE),
            app_id=f"results:{target}",
            version=end,
        )
    audit_row = spark.createDataFrame(
        [
            (
                run_id,
                "silver",
                bronze,
                target,
                start,
                end,
                counts.rows_read,
                counts.rows_merged,
                counts.rows_quarantined,
                counts.duplicates_collapsed,
                outcome is not None,
            )
        ],
        "run_id string, step string, source_table string, target_table string, source_start_version long, "
        "source_end_version long, rows_read long, rows_merged long, rows_quarantined long, "
        "duplicates_collapsed long, validated boolean",
    ).withColumn("finished_at", F.current_timestamp())
    tables.append_idempotent(audit_row, audit, app_id=f"audit:{target}", version=end)
    return counts


def run(spark: SparkSession, settings: Settings, validate: bool = True) -> dict[str, SilverCounts | None]:
    """Refine every source (concurrently, each in its own transactions); write Data Docs for this run's validations."""
    tables.ensure_schema(spark, settings.schema("silver"))
    tables.ensure_schema(spark, settings.schema("ops"))
    sources = settings.use_case.sources
    started = dt.datetime.now(dt.UTC)
    counts = tables.for_each_table(sources, lambda name: refine_source(spark, settings, name, validate))
    if validate:
        gx_project, data_docs = settings.env.path("gx_project"), settings.env.path("data_docs")
        index = validation.build_data_docs(gx_project, data_docs, since=started)
        log.info("silver: Data Docs at %s", index)
    return counts
