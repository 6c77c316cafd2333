"""`lakeforge run maintain`: compaction keeps contents, VACUUM keeps every version a live model reads (the
champion's `reproduce` after the shortest retention is checked end to end in test_production_settings)."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from conftest import make_environment
from lakeforge import upkeep
from lakeforge.config import Settings, load_use_case
from lakeforge.config.environment import Maintenance

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def commits(*hours_ago: float) -> list[upkeep.Commit]:
    """Versions 0, 1, ... committed the given hours before NOW."""
    return [upkeep.Commit(v, NOW - dt.timedelta(hours=h)) for v, h in enumerate(hours_ago)]


def test_a_pinned_version_needs_the_retention_back_to_the_commit_after_it():
    history = commits(500, 300, 100, 2)
    assert upkeep.hours_to_keep(history, pinned=1, now=NOW) == 100 + upkeep.MARGIN_HOURS
    assert upkeep.hours_to_keep(history, pinned=3, now=NOW) == 0  # the latest version needs nothing


def test_the_longest_pin_decides_and_is_named_only_when_it_lengthens_the_retention():
    history = commits(500, 300, 100, 2)
    pins = [upkeep.Pin(2, "the challenger"), upkeep.Pin(0, "the champion")]
    assert upkeep.retention_for(history, pins, configured=168, now=NOW) == (301, "the champion (version 0)")
    assert upkeep.retention_for(history, pins, configured=400, now=NOW) == (400, None)
    assert upkeep.retention_for(history, [], configured=0, now=NOW) == (0, None)


@pytest.mark.parametrize(("retain", "expected"), [(0, 3), (50, 2), (150, 1), (10_000, 0)])
def test_readable_from_is_the_version_before_the_oldest_commit_kept(retain, expected):
    assert upkeep.readable_from(commits(500, 300, 100, 2), retain, NOW) == expected


def test_the_log_retention_is_raised_only_for_a_pin_older_than_it():
    old = [upkeep.Commit(0, NOW - dt.timedelta(days=40)), upkeep.Commit(1, NOW - dt.timedelta(days=1))]
    assert upkeep.log_retention_days(old, [upkeep.Pin(0, "champion")], current_days=30, now=NOW) == 47
    assert upkeep.log_retention_days(old, [upkeep.Pin(1, "champion")], current_days=30, now=NOW) is None
    assert upkeep.log_retention_days(old, [], current_days=30, now=NOW) is None


@pytest.mark.parametrize(
    ("interval", "days"),
    [("interval 30 days", 30), ("INTERVAL 2 weeks", 14), ("interval 36 hours", 2), (None, 30), ("soon", 30)],
)
def test_delta_intervals_read_as_days(interval, days):
    assert upkeep._days(interval, 30) == days


def test_a_negative_retention_is_refused_by_config():
    with pytest.raises(ValueError, match="retain_hours"):
        Maintenance(retain_hours=-1)


def _checksum(df) -> tuple:
    return tuple(df.select(F.count("*"), F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)"))).first())


@pytest.fixture
def small_files(spark, tmp_path) -> Settings:
    """A table of twelve one-row appends and an update, in schemas of its own, vacuumed with no retention."""
    env = make_environment(tmp_path, "upkeep").model_copy(update={"maintenance": Maintenance(retain_hours=0)})
    settings = Settings(use_case=load_use_case("churn"), env=env)
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {settings.schema('silver')}")
    table = settings.table("silver", "events")
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    for n in range(12):
        spark.range(n, n + 1).withColumn("label", F.lit(f"row {n}")).write.format("delta").mode("append").saveAsTable(
            table
        )
    spark.sql(f"UPDATE {table} SET label = 'changed' WHERE id = 3")
    return settings


def test_maintain_leaves_fewer_files_with_the_same_rows_and_vacuums_what_no_version_needs(spark, small_files):
    table = small_files.table("silver", "events")
    before = _checksum(spark.read.table(table))
    (report,) = upkeep.run(spark, small_files, pins={})
    assert report.files_before >= 12 and report.files_after == 1
    assert _checksum(spark.read.table(table)) == before
    assert report.files_deleted >= 12 and report.retain_hours == 0 and report.kept_for is None
    optimized = spark.sql(f"DESCRIBE HISTORY {table}").where("operation = 'OPTIMIZE'").first()["version"]
    assert report.readable_from == optimized  # only the compacted version is left
    with pytest.raises(Exception, match="(?i)file|not exist|FileNotFound"):
        spark.read.option("versionAsOf", 5).table(table).collect()


def test_a_pinned_version_stays_readable_and_the_report_says_why(spark, small_files):
    table = small_files.table("silver", "events")
    pinned = spark.read.option("versionAsOf", 5).table(table)
    expected = _checksum(pinned)
    (report,) = upkeep.run(spark, small_files, pins={table: [upkeep.Pin(5, "the champion (churn v1)")]})
    assert report.kept_for == "the champion (churn v1) (version 5)" and report.retain_hours >= 1
    assert report.readable_from <= 5
    assert _checksum(spark.read.option("versionAsOf", 5).table(table)) == expected
    assert report.files_after == 1


def test_views_and_missing_schemas_are_left_alone(spark, small_files):
    spark.sql(f"CREATE OR REPLACE VIEW {small_files.table('silver', 'events_view')} AS SELECT 1 AS one")
    found = upkeep.delta_tables(spark, small_files)
    assert found == [small_files.table("silver", "events")]
    with pytest.raises(AnalysisException):
        spark.sql(f"DESCRIBE DETAIL {small_files.table('silver', 'events_view')}").collect()
