"""Table upkeep (`lakeforge run maintain`, weekly): compact every Delta table of the environment's schemas and
remove the files that no version within the retention reads.

The retention is a decision, not a default: `maintenance.retain_hours` in the environment, lengthened for a
table where a pinned version needs more. Pins are the Delta versions live artifacts read by time travel (the
champion's and challenger's training sets, which `reproduce` and the monitor's fallback rebuild); the layer
above gathers them. A pinned version stays readable while the files it reads stay, and the earliest of them is
removed by the commit after it: the retention must reach back to that commit. Such a table is vacuumed with the
longer retention and the report says which pin kept it. Delta's log retention (`delta.logRetentionDuration`,
30 days by default) would drop the log of a pin older than that even with its files kept: the table's log
retention is raised to cover it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from lakeforge import tables
from lakeforge.config import Settings

log = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold", "features", "ops")
# Delta refuses a VACUUM retention under its file retention (7 days) unless this check is off.
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
DELTA_FILE_RETENTION_HOURS = 168
# VACUUM lists a table's files in as many tasks as this setting (Spark's default 10,000): 24 s for a table of
# one file on 2 cores, 2 s with 4. Two tasks a core, during `maintain` only.
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
DELTA_LOG_RETENTION_DAYS = 30
# A pin's retention is rounded up to whole hours, plus one: the clock moves between measuring and vacuuming.
MARGIN_HOURS = 1


@dataclass(frozen=True)
class Pin:
    """A table version a live artifact reads, and who reads it."""

    version: int
    reader: str


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp: dt.datetime  # UTC


@dataclass(frozen=True)
class TableUpkeep:
    """What maintaining one table did."""

    table: str
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    files_deleted: int
    retain_hours: int
    kept_for: str | None  # why the retention is longer than configured
    readable_from: int  # the oldest version time travel still reads after the VACUUM

    def line(self) -> str:
        kept = f"; kept {self.retain_hours} h for {self.kept_for}" if self.kept_for else ""
        return (
            f"{tables.plain_name(self.table)}: files {self.files_before} -> {self.files_after}, "
            f"bytes {self.bytes_before:,} -> {self.bytes_after:,}, {self.files_deleted} files vacuumed, "
            f"versions from {self.readable_from} readable{kept}"
        )


def hours_to_keep(commits: list[Commit], pinned: int, now: dt.datetime) -> int:
    """The retention (whole hours) that keeps version `pinned` readable: back to the commit that followed it
    (0 when it is the latest version)."""
    successor = next((c for c in commits if c.version == pinned + 1), None)
    if successor is None:
        return 0
    return math.ceil((now - successor.timestamp).total_seconds() / 3600) + MARGIN_HOURS


def retention_for(commits: list[Commit], pins: list[Pin], configured: int, now: dt.datetime) -> tuple[int, str | None]:
    """The retention a table is vacuumed with, and the pin that made it longer than `configured` (if one did)."""
    needed = [(hours_to_keep(commits, pin.version, now), pin) for pin in pins]
    longest = max(needed, key=lambda item: item[0], default=(0, None))
    if longest[0] <= configured:
        return configured, None
    hours, pin = longest
    return hours, f"{pin.reader} (version {pin.version})"


def readable_from(commits: list[Commit], retain_hours: int, now: dt.datetime) -> int:
    """The oldest version a VACUUM with `retain_hours` leaves readable: a version's files go no earlier than the
    commit after it, so it is readable when that commit is inside the retention (the latest always is)."""
    cutoff = now - dt.timedelta(hours=retain_hours)
    versions = [c.version for c in commits]
    inside = [c.version for c in commits if c.timestamp >= cutoff]
    return max(min(versions), min(inside) - 1) if inside else max(versions)


def log_retention_days(commits: list[Commit], pins: list[Pin], current_days: int, now: dt.datetime) -> int | None:
    """The log retention (days) a table needs so its oldest pin's log survives, when more than `current_days`."""
    pinned = [c for c in commits if c.version in {pin.version for pin in pins}]
    if not pinned:
        return None
    age_days = (now - min(c.timestamp for c in pinned)).days
    needed = age_days + 7  # a week's margin: the job runs weekly
    return needed if needed > current_days else None


def _days(interval: str | None, default: int) -> int:
    """Days of a Delta interval property such as `interval 30 days` (hours and weeks too)."""
    match = re.fullmatch(r"\s*interval\s+(\d+)\s+(hour|day|week)s?\s*", interval or "", re.IGNORECASE)
    if not match:
        return default
    number, unit = int(match.group(1)), match.group(2).lower()
    return {"hour": math.ceil(number / 24), "day": number, "week": 7 * number}[unit]


def delta_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Every Delta table in the environment's schemas (views and other formats left out)."""
    found = []
    for layer in LAYERS:
        for name in tables.schema_tables(spark, settings.schema(layer)):
            table = settings.table(layer, name)
            if _is_delta(spark, table):
                found.append(table)
    return found


def _is_delta(spark: SparkSession, table: str) -> bool:
    try:
        return spark.sql(f"DESCRIBE DETAIL {table}").first()["format"] == "delta"
    except AnalysisException:  # a view, or a table DESCRIBE DETAIL does not know
        return False


def _commits(spark: SparkSession, table: str) -> list[Commit]:
    history = DeltaTable.forName(spark, table).history().select("version", "timestamp").collect()
    return [Commit(row["version"], row["timestamp"].replace(tzinfo=dt.UTC)) for row in history]


def maintain_table(spark: SparkSession, table: str, pins: list[Pin], configured_hours: int) -> TableUpkeep:
    """OPTIMIZE, then VACUUM with the retention this table's pins need; report what changed."""
    before = spark.sql(f"DESCRIBE DETAIL {table}").first()
    spark.sql(f"OPTIMIZE {table}")
    now = dt.datetime.now(dt.UTC)
    commits = _commits(spark, table)
    hours, kept_for = retention_for(commits, pins, configured_hours, now)
    if kept_for:
        log.warning("maintain %s: retention %d h instead of %d h, for %s", table, hours, configured_hours, kept_for)
    properties = before["properties"]
    current_log_days = _days(properties.get("delta.logRetentionDuration"), DELTA_LOG_RETENTION_DAYS)
    log_days = log_retention_days(commits, pins, current_log_days, now)
    if log_days:
        log.warning("maintain %s: log retention raised to %d days, for its pinned versions", table, log_days)
        tables.set_properties(spark, table, {"delta.logRetentionDuration": f"interval {log_days} days"})
    spark.sql(f"VACUUM {table} RETAIN {hours} HOURS")
    after = spark.sql(f"DESCRIBE DETAIL {table}").first()
    vacuumed = DeltaTable.forName(spark, table).history(3).where("operation = 'VACUUM END'").first()
    deleted = int((vacuumed["operationMetrics"] or {}).get("numDeletedFiles", 0)) if vacuumed else 0
    return TableUpkeep(
        table=table,
        files_before=before["numFiles"],
        files_after=after["numFiles"],
        bytes_before=before["sizeInBytes"],
        bytes_after=after["sizeInBytes"],
        files_deleted=deleted,
        retain_hours=hours,
        kept_for=kept_for,
        readable_from=readable_from(commits, hours, now),
    )


def run(spark: SparkSession, settings: Settings, pins: dict[str, list[Pin]]) -> list[TableUpkeep]:
    """Maintain every Delta table of the environment's schemas, one at a time; `pins` by quoted table name."""
    configured = settings.env.maintenance.retain_hours
    pins = {tables.quoted_name(table): table_pins for table, table_pins in pins.items()}
    overrides = {LISTING_PARALLELISM: str(2 * spark.sparkContext.defaultParallelism)}
    if configured < DELTA_FILE_RETENTION_HOURS:
        # The environment decided on a retention under Delta's 7 days (a laptop, a test): Delta's check, which
        # guards readers and writers of other processes, would refuse it.
        overrides[RETENTION_CHECK] = "false"
    previous = {key: spark.conf.get(key, None) for key in overrides}
    for key, value in overrides.items():
        spark.conf.set(key, value)
    try:
        reports = []
        for table in delta_tables(spark, settings):
            report = maintain_table(spark, table, pins.get(tables.quoted_name(table), []), configured)
            log.info("maintain %s", report.line())
            reports.append(report)
        return reports
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
