"""The maintenance use case end to end on tiny data, and its gold transforms on inline rows."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakeforge import bronze, gold, silver
from lakeforge.config import Settings, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch, inject_defects, read_manifest
from lakeforge.usecases import maintenance

ROWS = 400
SEED = 7
SOURCES = ["machines", "sensor_readings", "failures"]
QUARANTINING_DEFECTS = ("malformed", "wrong_type", "null_key", "out_of_range")


@pytest.fixture(scope="module")
def maintained(spark, tmp_path_factory, environment_for) -> Settings:
    settings = Settings(
        use_case=load_use_case("maintenance"), env=environment_for(tmp_path_factory.mktemp("maint"), "maint")
    )
    for batch in (0, 1):
        generate_batch(spark, settings.use_case, settings.env.path("landing"), BatchSpec(ROWS, SEED, batch))
    bronze.run(spark, settings)
    silver.run(spark, settings)
    gold.run(spark, settings)
    return settings


def _table(spark, settings: Settings, layer: str, name: str):
    return spark.read.table(settings.table(layer, name))


def _manifest(settings: Settings, source: str) -> dict[str, int]:
    return read_manifest(settings.env.path("landing"), settings.use_case.name, source)


def _quarantined_machine_ids(spark, settings: Settings, batch: int) -> set[str]:
    """Machines whose row in `batch` the generator damaged in a way silver must quarantine."""
    clean = maintenance.generate(spark, BatchSpec(ROWS, SEED, batch))["machines"]
    damaged = inject_defects(clean, settings.use_case.sources["machines"], SEED + batch, "machines")
    rows = damaged.where(F.col("_defect").isin(*QUARANTINING_DEFECTS)).select("_row")
    return {r["machine_id"] for r in clean.join(rows, "_row").collect()}


@pytest.mark.parametrize(
    ("source", "key"), [("machines", "machine_id"), ("sensor_readings", "reading_id"), ("failures", "failure_id")]
)
def test_silver_has_one_row_per_key(spark, maintained, source, key):
    rows = _table(spark, maintained, "silver", source)
    assert rows.count() > 0
    assert rows.count() == rows.select(key).distinct().count()
    assert rows.where(F.col(key).isNull()).count() == 0


def test_late_machine_updates_lose(spark, maintained):
    history = {r["machine_id"]: r for r in maintenance.generate(spark, BatchSpec(ROWS, SEED, 0))["machines"].collect()}
    updates = maintenance.generate(spark, BatchSpec(ROWS, SEED, 1))["machines"].collect()
    damaged_history = _quarantined_machine_ids(spark, maintained, 0)
    damaged_updates = _quarantined_machine_ids(spark, maintained, 1)
    silver_machines = {
        r["machine_id"]: (r["site"], r["updated_at"]) for r in _table(spark, maintained, "silver", "machines").collect()
    }
    checked = {True: 0, False: 0}
    for update in updates:
        machine = update["machine_id"]
        if machine in damaged_history:
            continue  # silver never held this machine, so even a late update is the newest it knows
        lost = update["_late"] or machine in damaged_updates
        expected = history[machine] if lost else update
        assert silver_machines[machine] == (expected["site"], expected["updated_at"]), machine
        checked[update["_late"]] += 1
    assert checked[True] > 0 and checked[False] > 0, "the batch needs both late and on-time updates"
    in_1970 = {m for m, (_, updated_at) in silver_machines.items() if updated_at.year == 1970}
    assert in_1970 <= damaged_history


def test_new_sensor_column_is_kept(spark, maintained):
    assert "firmware" in _table(spark, maintained, "bronze", "sensor_readings").columns
    readings = _table(spark, maintained, "silver", "sensor_readings")
    history = readings.where(F.col("reading_id").startswith("R00"))
    new_day = readings.where(F.col("reading_id").startswith("R01"))
    assert new_day.count() > 0
    assert {r[0] for r in new_day.select("firmware").distinct().collect()} <= set(maintenance.FIRMWARE)
    assert new_day.where(F.col("firmware").isNull()).count() == 0
    assert history.where(F.col("firmware").isNotNull()).count() == 0


@pytest.mark.parametrize(
    ("source", "reasons"),
    [
        (
            "machines",
            {
                "malformed": "malformed_record",
                "wrong_type": "cast_failed:rated_temperature",
                "null_key": "expect_column_values_to_not_be_null:machine_id",
                "out_of_range": "expect_column_values_to_be_between:rated_temperature",
            },
        ),
        (
            "sensor_readings",
            {
                "malformed": "malformed_record",
                "wrong_type": "cast_failed:temperature",
                "null_key": "expect_column_values_to_not_be_null:reading_id",
                "out_of_range": "expect_column_values_to_be_between:temperature",
            },
        ),
        (
            "failures",
            {
                "malformed": "malformed_record",
                "wrong_type": "cast_failed:failed_at",
                "null_key": "expect_column_values_to_not_be_null:failure_id",
            },
        ),
    ],
)
def test_quarantine_reasons_match_injected_defects(spark, maintained, source, reasons):
    manifest = _manifest(maintained, source)
    quarantine = _table(spark, maintained, "silver", f"{source}_quarantine")
    found = silver.count_reasons(quarantine)
    for defect, reason in reasons.items():
        assert manifest[defect] > 0, f"the generator injected no {defect} into {source}"
        assert found.get(reason, 0) == manifest[defect], (defect, reason, found)
    assert sum(found.values()) == sum(manifest[d] for d in reasons), found


def test_validation_results_match_quarantine_and_fail_checks_held(spark, maintained):
    results = _table(spark, maintained, "ops", "validation_results").collect()
    row_count = [r for r in results if r["expectation"] == "expect_table_row_count_to_be_between"]
    assert [r["table_name"] for r in row_count] == ["maintenance_sensor_readings"]
    assert all(r["success"] for r in row_count)
    for result in (r for r in results if r["action"] == "quarantine"):
        source = result["table_name"].removeprefix("maintenance_")
        quarantine = _table(spark, maintained, "silver", f"{source}_quarantine")
        tagged = quarantine.where(F.array_contains(silver.REASONS, result["expectation"])).count()
        assert tagged == result["unexpected_count"], result["expectation"]


def test_daily_health_agrees_with_silver_readings(spark, maintained):
    readings = _table(spark, maintained, "silver", "sensor_readings")
    health = _table(spark, maintained, "gold", "machine_daily_health")
    expected = readings.agg(
        F.count("*").alias("readings"),
        F.sum("temperature").alias("temperature"),
        F.max("vibration").alias("vibration"),
        F.countDistinct("machine_id", F.to_date("read_at")).alias("days"),
    ).first()
    actual = health.agg(
        F.sum("readings").alias("readings"),
        F.sum(F.col("readings") * F.col("avg_temperature")).alias("temperature"),
        F.max("max_vibration").alias("vibration"),
        F.count("*").alias("days"),
    ).first()
    assert actual["readings"] == expected["readings"]
    assert actual["days"] == expected["days"]
    assert actual["vibration"] == expected["vibration"]
    # Each daily average is rounded to cents: the weighted sum may drift by half a cent per reading.
    assert actual["temperature"] == pytest.approx(expected["temperature"], abs=0.005 * expected["readings"])


def test_machine_entity_agrees_with_silver(spark, maintained):
    machines = _table(spark, maintained, "silver", "machines")
    entity = _table(spark, maintained, "gold", "machine_entity")
    assert entity.count() == machines.count() == entity.select("machine_id").distinct().count()
    known = machines.select("machine_id")
    readings = _table(spark, maintained, "silver", "sensor_readings").join(known, "machine_id")
    failures = _table(spark, maintained, "silver", "failures").join(known, "machine_id")
    totals = entity.agg(F.sum("lifetime_readings"), F.sum("lifetime_failures")).first()
    assert tuple(totals) == (readings.count(), failures.count())
    assert failures.count() > 0
    last = failures.groupBy("machine_id").agg(F.max("failed_at").alias("last_failed_at"))
    assert_df_equality(
        entity.where(F.col("last_failed_at").isNotNull()).select("machine_id", "last_failed_at"),
        last,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_generator_is_deterministic_for_a_seed(spark):
    first = maintenance.generate(spark, BatchSpec(60, 3, 1))
    again = maintenance.generate(spark, BatchSpec(60, 3, 1))
    for name in SOURCES:
        assert_df_equality(first[name], again[name], ignore_row_order=True)


def test_machine_daily_health_groups_by_machine_and_day(spark):
    readings = spark.createDataFrame(
        [
            ("M1", dt.datetime(2026, 3, 1, 8), 70.0, 1.0),
            ("M1", dt.datetime(2026, 3, 1, 20), 73.0, 2.5),
            ("M1", dt.datetime(2026, 3, 2, 0, 30), 90.0, 0.5),
            ("M2", dt.datetime(2026, 3, 1, 23, 59), 60.125, 4.0),
        ],
        ["machine_id", "read_at", "temperature", "vibration"],
    )
    expected = spark.createDataFrame(
        [
            ("M1", dt.date(2026, 3, 1), 2, 71.5, 2.5),
            ("M1", dt.date(2026, 3, 2), 1, 90.0, 0.5),
            ("M2", dt.date(2026, 3, 1), 1, 60.13, 4.0),
        ],
        "machine_id string, reading_date date, readings long, avg_temperature double, max_vibration double",
    )
    assert_df_equality(
        maintenance.machine_daily_health(readings), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_machine_entity_keeps_idle_machines_and_takes_the_last_failure(spark):
    machines = spark.createDataFrame(
        [
            ("M1", "X100", "plant_north", dt.date(2024, 1, 1), 70.0),
            ("M2", "Z900", "plant_east", dt.date(2025, 1, 1), 95.0),
        ],
        ["machine_id", "model", "site", "installed_on", "rated_temperature"],
    )
    readings = spark.createDataFrame(
        [("M1", dt.datetime(2026, 3, 1), 70.0, 1.0), ("M1", dt.datetime(2026, 3, 5), 80.0, 3.0)],
        ["machine_id", "read_at", "temperature", "vibration"],
    )
    # The later failure was recorded first: the last failure is chosen by when it happened.
    failures = spark.createDataFrame(
        [
            ("M1", dt.datetime(2026, 3, 2), dt.datetime(2026, 3, 12)),
            ("M1", dt.datetime(2026, 3, 6), dt.datetime(2026, 3, 8)),
        ],
        ["machine_id", "failed_at", "recorded_at"],
    )
    expected = spark.createDataFrame(
        [
            (
                "M1",
                "X100",
                "plant_north",
                dt.date(2024, 1, 1),
                70.0,
                2,
                75.0,
                80.0,
                2.0,
                3.0,
                dt.datetime(2026, 3, 1),
                dt.datetime(2026, 3, 5),
                2,
                dt.datetime(2026, 3, 6),
                dt.datetime(2026, 3, 8),
            ),
            (
                "M2",
                "Z900",
                "plant_east",
                dt.date(2025, 1, 1),
                95.0,
                0,
                None,
                None,
                None,
                None,
                None,
                None,
                0,
                None,
                None,
            ),
        ],
        "machine_id string, model string, site string, installed_on date, rated_temperature double, "
        "lifetime_readings long, avg_temperature double, max_temperature double, avg_vibration double, "
        "max_vibration double, first_reading_at timestamp, last_reading_at timestamp, lifetime_failures long, "
        "last_failed_at timestamp, last_failure_recorded_at timestamp",
    )
    assert_df_equality(
        maintenance.machine_entity(machines, readings, failures),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_the_sensor_drift_raises_vibration_of_a_third_of_the_machines_only(spark):
    """`sensor_drift`: from the drift batch on, a third of the machines read higher vibration, more each day;
    temperature, pressure and failures are what they would have been."""

    def batch(number: int, scenario: str | None) -> dict[str, list]:
        spec = BatchSpec(ROWS, SEED, number, scenario, drift_from=3)
        return {name: rows.collect() for name, rows in maintenance.generate(spark, spec).items()}

    for number, days in ((2, 0), (3, 1), (5, 3)):
        quiet, drifting = batch(number, None), batch(number, "sensor_drift")
        assert drifting["failures"] == quiet["failures"] and drifting["machines"] == quiet["machines"]
        before = {r.reading_id: r for r in quiet["sensor_readings"]}
        after = {r.reading_id: r for r in drifting["sensor_readings"]}
        assert before.keys() == after.keys()
        assert all(after[k][c] == before[k][c] for k in before for c in ("machine_id", "temperature", "pressure"))
        shift = {k: after[k].vibration - before[k].vibration for k in before}
        shifted = {after[k].machine_id for k in before if shift[k] > 0.01}
        expected = maintenance.SENSOR_DRIFT_PER_DAY * days
        for key, value in shift.items():
            # every reading of a degraded machine moves by the day's offset (to rounding), no other reading moves
            assert abs(value - expected) < 0.002 if after[key].machine_id in shifted else value == 0.0
        machines = {r.machine_id for r in drifting["sensor_readings"]}
        assert (len(shifted) == 0) == (days == 0)
        assert days == 0 or 0.15 < len(shifted) / len(machines) < 0.55
