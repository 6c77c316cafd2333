"""Predictive maintenance: a fleet of machines, their sensor readings and their failures.

Every machine has a hidden wear level: worn machines run hotter, vibrate more and fail more often.
A failure becomes known (`recorded_at`) two to ten days after it happens, as failure labels do.
Later batches bring one new day of readings (with a `firmware` field the feed started sending),
and a few machines moving to another site, a third of which arrive late with an old timestamp.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeforge.datagen import BatchSpec, pick, seconds, timestamp_after, unit_random

START = dt.datetime(2026, 3, 1)
HISTORY_DAYS = 60
DAILY_SHARE = 30  # a later batch (one new day) has rows // DAILY_SHARE readings
FAILURE_HORIZON_DAYS = 30  # failures happen up to this long after the history, so later batches record some
FAILURE_SLOTS = 4  # the most failures one machine can have over history and horizon
MIN_LABEL_DELAY_DAYS = 2
MAX_LABEL_DELAY_DAYS = 10
MODELS = ["X100", "X200", "Z900"]
RATED_TEMPERATURE = {"X100": 70.0, "X200": 85.0, "Z900": 95.0}
SITES = ["plant_north", "plant_south", "plant_east"]
FIRMWARE = ["v2.3.0", "v2.4.1"]
SENSOR_DRIFT = "sensor_drift"
SENSOR_DRIFT_SHARE = 1 / 3
SENSOR_DRIFT_PER_DAY = 0.25
SCENARIOS = {
    SENSOR_DRIFT: f"from the drift batch on, the vibration sensor of a third of the machines degrades: each of "
    f"their readings is {SENSOR_DRIFT_PER_DAY} higher per day since the drift began, while the machines wear and "
    "fail as before: the readings drift, the failures do not",
}


def _timestamp(offset_seconds: Column) -> Column:
    return timestamp_after(START, offset_seconds)


def machine_count(rows: int) -> int:
    return max(20, rows // 20)


def _machines(spark: SparkSession, seed: int, count: int) -> DataFrame:
    idx = F.col("id")
    model = pick(MODELS, unit_random(seed, "model", idx))
    return spark.range(count).select(
        idx.alias("_idx"),
        F.format_string("M%06d", idx).alias("machine_id"),
        model.alias("model"),
        pick(SITES, unit_random(seed, "site", idx)).alias("site"),
        F.date_sub(F.lit(START.date()), F.floor(unit_random(seed, "installed", idx) * 1500).cast("int")).alias(
            "installed_on"
        ),
        F.coalesce(*[F.when(model == m, F.lit(t)) for m, t in RATED_TEMPERATURE.items()]).alias("rated_temperature"),
        _timestamp(F.lit(0) - F.floor(unit_random(seed, "upd", idx) * 86400 * 30).cast("long")).alias("updated_at"),
        unit_random(seed, "wear", idx).alias("_wear"),
    )


def _sensor_readings(spark: SparkSession, spec: BatchSpec, machines: DataFrame, count: int) -> DataFrame:
    seed, rows, batch = spec.seed, spec.rows, spec.batch
    day_start, day_length = (0, HISTORY_DAYS) if batch == 0 else (HISTORY_DAYS + batch - 1, 1)
    new_rows = rows if batch == 0 else max(1, rows // DAILY_SHARE)
    row = F.col("_row")
    base = spark.range(new_rows).select(
        F.col("id").alias("_row"),
        F.floor(unit_random(seed, f"rmach{batch}", F.col("id")) * count).alias("_idx"),
        (day_start * 86400 + unit_random(seed, f"rts{batch}", F.col("id")) * day_length * 86400)
        .cast("long")
        .alias("_offset"),
    )
    joined = base.join(F.broadcast(machines.select("_idx", "machine_id", "rated_temperature", "_wear")), "_idx")
    wear = F.col("_wear")
    temperature = F.col("rated_temperature") * (0.75 + 0.35 * wear) + 8 * (unit_random(seed, f"t{batch}", row) - 0.5)
    vibration = 0.8 + 6 * wear * wear + unit_random(seed, f"v{batch}", row)
    if spec.drifting(SENSOR_DRIFT):
        degraded = unit_random(seed, "sensordrift", F.col("_idx")) < SENSOR_DRIFT_SHARE
        days = batch - spec.drift_from + 1
        vibration = vibration + F.when(degraded, F.lit(SENSOR_DRIFT_PER_DAY * days)).otherwise(F.lit(0.0))
    pressure = 5.5 - 1.5 * wear + 0.5 * (unit_random(seed, f"p{batch}", row) - 0.5)
    readings = joined.select(
        "_row",
        F.format_string("R%02d%09d", F.lit(batch), row).alias("reading_id"),
        "machine_id",
        _timestamp(F.col("_offset")).alias("read_at"),
        F.round(temperature, 2).alias("temperature"),
        F.round(vibration, 3).alias("vibration"),
        F.round(pressure, 2).alias("pressure"),
    )
    if batch == 0:
        return readings
    return readings.withColumn("firmware", pick(FIRMWARE, unit_random(seed, f"fw{batch}", row)))


def _failures(spark: SparkSession, spec: BatchSpec, machines: DataFrame, count: int) -> DataFrame:
    seed, batch = spec.seed, spec.batch
    low, high = (
        (0, spec.record_delay_days)
        if spec.record_delay_days is not None
        else (MIN_LABEL_DELAY_DAYS, MAX_LABEL_DELAY_DAYS)
    )
    candidate = F.col("id")
    slots = spark.range(count * FAILURE_SLOTS).select(
        candidate.alias("_candidate"),
        (candidate / FAILURE_SLOTS).cast("long").alias("_idx"),
        unit_random(seed, "fails", candidate).alias("_u"),
        (unit_random(seed, "failday", candidate) * seconds(HISTORY_DAYS + FAILURE_HORIZON_DAYS))
        .cast("long")
        .alias("_failed_offset"),
        (unit_random(seed, "faildelay", candidate) * seconds(high - low) + seconds(low)).cast("long").alias("_delay"),
    )
    happened = slots.join(F.broadcast(machines.select("_idx", "machine_id", "_wear")), "_idx").where(
        F.col("_u") < 0.1 + 0.6 * F.col("_wear") * F.col("_wear")
    )
    failure_log = happened.select(
        F.format_string("F%08d", F.col("_candidate")).alias("failure_id"),
        "machine_id",
        _timestamp(F.col("_failed_offset")).alias("failed_at"),
        _timestamp(F.col("_failed_offset") + F.col("_delay")).alias("recorded_at"),
    )
    # Rows are numbered densely in the order failures are recorded, so the first rows of the log carry
    # the defects a feed has even when it is tiny. The log is a few rows per machine: one window is cheap.
    numbered = failure_log.withColumn("_row", F.row_number().over(Window.orderBy("recorded_at", "failure_id")) - 1)
    known_until = HISTORY_DAYS if batch == 0 else HISTORY_DAYS + batch
    known_from = 0 if batch == 0 else known_until - 1
    return numbered.where(
        (F.col("recorded_at") >= _timestamp(F.lit(seconds(known_from))))
        & (F.col("recorded_at") < _timestamp(F.lit(seconds(known_until))))
    ).select("_row", "failure_id", "machine_id", "failed_at", "recorded_at")


def _relocations(spark: SparkSession, seed: int, machines: DataFrame, count: int, batch: int) -> DataFrame:
    """A few machines moved to another site; every third update carries epoch 0 and must lose."""
    moves = max(3, count // 10)
    first = F.floor(unit_random(seed, f"move{batch}", F.lit(0)) * count).cast("long")
    moved = spark.range(moves).select(
        ((first + F.col("id") * (count // moves)) % count).alias("_idx"),
        # Exactly every third, not a random third, so even a tiny batch has late and winning updates.
        (F.col("id") % 3 == 0).alias("_late"),
    )
    sites = F.array(*[F.lit(s) for s in SITES])
    shift = 1 + F.floor(unit_random(seed, f"site{batch}", F.col("_idx")) * (len(SITES) - 1)).cast("int")
    new_site = F.element_at(sites, (F.array_position(sites, F.col("site")).cast("int") - 1 + shift) % len(SITES) + 1)
    on_time = _timestamp(
        F.lit(seconds(HISTORY_DAYS + batch - 1)) + F.floor(unit_random(seed, f"moved{batch}", F.col("_idx")) * 86400)
    )
    return (
        machines.join(moved, "_idx")
        .withColumn("site", new_site)
        .withColumn("updated_at", F.when(F.col("_late"), F.timestamp_seconds(F.lit(0))).otherwise(on_time))
    )


def generate(spark: SparkSession, spec: BatchSpec) -> dict[str, DataFrame]:
    """Clean rows of every maintenance source for one batch (history for batch 0, a new day after)."""
    count = machine_count(spec.rows)
    machines = _machines(spark, spec.seed, count).cache()
    readings = _sensor_readings(spark, spec, machines, count)
    failures = _failures(spark, spec, machines, count)
    machine_rows = machines if spec.batch == 0 else _relocations(spark, spec.seed, machines, count, spec.batch)
    machine_columns = ["machine_id", "model", "site", "installed_on", "rated_temperature", "updated_at"]
    return {
        "machines": machine_rows.select(
            F.col("_idx").alias("_row"),
            *machine_columns,
            *(["_late"] if "_late" in machine_rows.columns else []),
        ),
        "sensor_readings": readings,
        "failures": failures,
    }


def machine_daily_health(sensor_readings: DataFrame) -> DataFrame:
    """Readings, average temperature and peak vibration per machine and day: the health trend to watch."""
    return sensor_readings.groupBy("machine_id", F.to_date("read_at").alias("reading_date")).agg(
        F.count("*").alias("readings"),
        F.round(F.avg("temperature"), 2).alias("avg_temperature"),
        F.max("vibration").alias("max_vibration"),
    )


def machine_entity(machines: DataFrame, sensor_readings: DataFrame, failures: DataFrame) -> DataFrame:
    """One row per machine: profile, lifetime sensor statistics and (once recorded) its last failure."""
    reading_stats = sensor_readings.groupBy("machine_id").agg(
        F.count("*").alias("lifetime_readings"),
        F.round(F.avg("temperature"), 2).alias("avg_temperature"),
        F.max("temperature").alias("max_temperature"),
        F.round(F.avg("vibration"), 3).alias("avg_vibration"),
        F.max("vibration").alias("max_vibration"),
        F.min("read_at").alias("first_reading_at"),
        F.max("read_at").alias("last_reading_at"),
    )
    failure_stats = failures.groupBy("machine_id").agg(
        F.count("*").alias("lifetime_failures"),
        F.max("failed_at").alias("last_failed_at"),
        F.max_by("recorded_at", "failed_at").alias("last_failure_recorded_at"),
    )
    return (
        machines.select("machine_id", "model", "site", "installed_on", "rated_temperature")
        .join(reading_stats, "machine_id", "left")
        .join(failure_stats, "machine_id", "left")
        .fillna({"lifetime_readings": 0, "lifetime_failures": 0})
    )
