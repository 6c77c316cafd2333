"""Benchmark: the medallion, its daily run, the features job and the training-set build, in one run.

    .venv/bin/python bench/medallion.py --rows 2000000 --asof-labels 10000000 --repeats 3

Every timed phase runs `--repeats` times (each repeat on tables of its own, silver with and without
validation alternating which goes first) and its median is printed, with the ratios the targets are
stated in:
- first load: the medallion (bronze + silver + gold) <= 1.5x the floor (a bare medallion that only
  parses, casts, keeps the latest row per key and runs gold), with the plain copy to Delta and to
  parquet beside it;
- silver with validation <= 1.15x without;
- the daily run: a new day (`generate-data --batch 1`) through ingest, silver and gold on each repeat's
  history, against its floor (parse, cast and dedup the day's files only, MERGE them into the bare
  silver, gold);
- behavioural features <= 2x the copy (the text pipeline reported on its own); the as-of join of
  `--asof-labels` synthetic label rows against the activity features, which must finish here.
CPU-seconds per million landing lines are printed beside each first-load phase.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import Window
from pyspark.sql import functions as F

from lakeforge import bronze, feature_store, gold, silver, tables
from lakeforge.config import Schemas, Settings, load_environment, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch
from lakeforge.platforms import Platform


def landing_files(settings: Settings, name: str, batch: int | None = None) -> str:
    landing = Path(settings.env.path("landing")) / settings.use_case.name / name
    return str(landing / (f"batch_{batch:05d}" if batch is not None else "*") / "part-*")


def plain_copy(spark, settings: Settings, schema: str = "copy", concurrent: bool = False, fmt: str = "delta") -> None:
    """The baseline: read each source's landing files as they are and write one table each (Delta or parquet).

    `concurrent` copies the sources on the same thread pool the medallion uses (reported, not the
    ratio's baseline: it shows how much of the medallion's concurrency a plain copy would also gain).
    """
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")

    def copy(name: str) -> None:
        source = settings.use_case.sources[name]
        files = landing_files(settings, name)
        df = spark.read.option("header", "true").csv(files) if source.format == "csv" else spark.read.text(files)
        df.write.format(fmt).mode("overwrite").saveAsTable(f"{schema}.{name}")

    if concurrent:
        tables.for_each_table(settings.use_case.sources, copy)
    else:
        for name in settings.use_case.sources:
            copy(name)


def parsed(spark, settings: Settings, name: str, batch: int | None = None):
    """A source's landing files parsed into their declared columns, as strings (CSV is read as strings)."""
    source = settings.use_case.sources[name]
    files = landing_files(settings, name, batch)
    if source.format == "csv":
        return spark.read.option("header", "true").csv(files)
    strings = ", ".join(f"`{column}` string" for column in source.columns)
    return spark.read.text(files).select(F.from_json("value", strings).alias("row")).select("row.*")


def typed_latest(rows, settings: Settings, name: str):
    """Cast to the declared types and keep the latest row per key by event time."""
    source = settings.use_case.sources[name]
    typed = rows.select(*[F.trim(F.col(c)).try_cast(t).alias(c) for c, t in source.columns.items()])
    latest = Window.partitionBy(*source.key).orderBy(F.col(source.latest_by).desc_nulls_last())
    return typed.withColumn("_n", F.row_number().over(latest)).where("_n = 1").drop("_n")


def bare_medallion(spark, settings: Settings, bare: Settings) -> None:
    """The floor: the work no medallion can skip, and nothing else.

    Bronze parses each JSON line into its declared columns (CSV is read as strings); silver casts
    them and keeps the latest row per key; gold runs the use case's own transforms. No metadata,
    no schema evolution, no validation, quarantine, counts, MERGE, audit or file manifest. Reported
    beside the real medallion to show how far from the copy the work itself already is.
    """
    for layer in ("bronze", "silver", "gold"):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {bare.schema(layer)}")

    def land(name: str) -> None:
        parsed(spark, settings, name).write.format("delta").mode("overwrite").saveAsTable(bare.table("bronze", name))

    def refine(name: str) -> None:
        rows = typed_latest(spark.read.table(bare.table("bronze", name)), settings, name)
        rows.write.format("delta").mode("overwrite").saveAsTable(bare.table("silver", name))

    tables.for_each_table(settings.use_case.sources, land)
    tables.for_each_table(settings.use_case.sources, refine)
    gold.run(spark, bare)


def bare_daily(spark, settings: Settings, bare: Settings, batch: int) -> None:
    """The daily floor: the day's files only, parsed, cast and deduplicated, MERGEd into the bare silver by key
    (a later event wins), then gold."""

    def merge(name: str) -> None:
        source = settings.use_case.sources[name]
        day = typed_latest(parsed(spark, settings, name, batch), settings, name)
        on = " AND ".join(f"t.`{key}` <=> s.`{key}`" for key in source.key)
        later = f"s.`{source.latest_by}` > t.`{source.latest_by}`"
        target = DeltaTable.forName(spark, bare.table("silver", name)).alias("t")
        target.merge(day.alias("s"), on).whenMatchedUpdateAll(later).whenNotMatchedInsertAll().execute()

    tables.for_each_table(settings.use_case.sources, merge)
    gold.run(spark, bare)


def asof_stress(spark, settings: Settings, label_rows: int) -> None:
    """Join `label_rows` synthetic labels (random customers and times) to the activity features, point in time."""
    activity = settings.use_case.features.tables["customer_activity"]
    customers = spark.read.table(settings.table("silver", "customers")).count()
    labels = spark.range(label_rows).select(
        F.format_string("C%07d", (F.rand(1) * customers).cast("long")).alias("customer_id"),
        F.timestamp_seconds(F.lit(1767225600) + (F.rand(2) * 120 * 86400).cast("long")).alias("label_ts"),
        (F.rand(3) < 0.1).cast("int").alias("churned"),
    )
    rows = spark.read.table(settings.table("features", "customer_activity"))
    source = feature_store.FeatureSource("customer_activity", rows, activity.entity, activity.timestamp)
    feature_store.build_training_set(labels, "label_ts", [source]).write.format("noop").mode("overwrite").save()


class Timings:
    """Wall and CPU seconds of every timed phase, each phase possibly run several times."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[float]] = defaultdict(list)

    def time(self, label: str, action) -> float:
        """Run `action`; its wall time. CPU time counts this process and its JVM (a child)."""
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
        self.wall[label].append(elapsed)
        self.cpu[label].append(_cpu_seconds() - cpu_before)
        print(f"{label:<40} {elapsed:8.1f} s", flush=True)
        return elapsed

    def median(self, label: str) -> float:
        return statistics.median(self.wall[label])

    def cpu_median(self, label: str) -> float:
        return statistics.median(self.cpu[label])


def _cpu_seconds() -> float:
    """User and system CPU of this process plus the JVM: the JVM is a child that has not exited, so its time
    is read from /proc (Linux), not from `RUSAGE_CHILDREN`."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in child.read_text().split():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


DAILY_FLOOR = "daily floor (the day's files, MERGE, gold)"
NOTHING_NEW = "daily rerun with nothing new (ingest, silver, gold)"


def repeat_settings(settings: Settings, repeat: int, kind: str) -> Settings:
    """The use case on tables of one repeat: `kind` `gx` (validated silver), `plain` (silver unvalidated, the
    repeat's bronze) or `bare` (the floor's schemas)."""
    r = f"r{repeat}"
    schemas = {
        "gx": Schemas(bronze=f"bronze_{r}", silver=f"silver_{r}", gold=f"gold_{r}", ops=f"ops_{r}"),
        "plain": Schemas(
            bronze=f"bronze_{r}", silver=f"silver_plain_{r}", gold=f"gold_plain_{r}", ops=f"ops_plain_{r}"
        ),
        "bare": Schemas(bronze=f"bare_bronze_{r}", silver=f"bare_silver_{r}", gold=f"bare_gold_{r}"),
    }[kind]
    return Settings(use_case=settings.use_case, env=settings.env.model_copy(update={"schemas": schemas}))


def medallion_runs(spark, settings: Settings, timings: Timings, repeats: int, day: int | None) -> None:
    """First loads (`day` None), or a day's run, on each repeat's tables: bronze, silver both ways, gold, floor."""
    for repeat in range(1, repeats + 1):
        one_repeat(spark, settings, timings, repeat, day)


def one_repeat(spark, settings: Settings, timings: Timings, repeat: int, day: int | None) -> None:
    prefix = "" if day is None else "daily "
    validated, unvalidated = repeat_settings(settings, repeat, "gx"), repeat_settings(settings, repeat, "plain")
    bare = repeat_settings(settings, repeat, "bare")
    timings.time(f"{prefix}bronze", lambda: bronze.run(spark, validated))
    silver_runs = [
        ("silver without validation", lambda: silver.run(spark, unvalidated, validate=False)),
        ("silver with GX validation", lambda: silver.run(spark, validated)),
    ]
    for label, action in silver_runs if repeat % 2 else reversed(silver_runs):
        timings.time(f"{prefix}{label}", action)
    timings.time(f"{prefix}gold", lambda: gold.run(spark, validated))
    if day is None:
        timings.time("bare medallion (the floor)", lambda: bare_medallion(spark, settings, bare))
        return
    timings.time(DAILY_FLOOR, lambda: bare_daily(spark, settings, bare, day))
    timings.time(NOTHING_NEW, lambda: [step.run(spark, validated) for step in (bronze, silver, gold)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000, help="orders in the history batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timed phase (medians are printed)")
    parser.add_argument("--asof-labels", type=int, default=10_000_000, help="label rows of the as-of join stress")
    parser.add_argument("--skip-features", action="store_true", help="time the medallion and its daily run only")
    parser.add_argument("--home", help="working folder (default: a new temporary folder, removed afterwards)")
    args = parser.parse_args()

    home = Path(args.home or tempfile.mkdtemp(prefix="lakeforge-bench-"))
    os.environ["LAKEFORGE_HOME"] = str(home)
    env = load_environment("local")
    settings = Settings(use_case=load_use_case("churn"), env=env)
    spark = Platform(env).session("lakeforge-bench")
    spark.sparkContext.setLogLevel("ERROR")
    timings = Timings()
    try:
        generate_batch(spark, settings.use_case, env.path("landing"), BatchSpec(args.rows, args.seed, 0))
        lines = sum(1 for p in Path(env.path("landing")).rglob("part-*") for _ in p.open())
        print(f"landing lines: {lines:,}")

        # The first Delta writes of a JVM pay for class loading and JIT (a cold copy of 1M orders took
        # 30 s, the next ones 7 to 8 s): warm up untimed, so the baseline is not flattered by it.
        timings.time("plain copy, warm-up (untimed)", lambda: plain_copy(spark, settings, "copy_warmup"))
        for repeat in range(1, args.repeats + 1):
            timings.time("plain copy (files -> Delta)", lambda r=repeat: plain_copy(spark, settings, f"copy_{r}"))
            timings.time("plain copy (files -> parquet)", lambda r=repeat: plain_copy(
                spark, settings, f"copy_parquet_{r}", fmt="parquet"))  # fmt: skip
        timings.time("plain copy, sources concurrent", lambda: plain_copy(spark, settings, "copy_c", True))
        medallion_runs(spark, settings, timings, args.repeats, day=None)

        day_rows = generate_batch(spark, settings.use_case, env.path("landing"), BatchSpec(args.rows, args.seed, 1))
        day_lines = sum(counts["rows"] for counts in day_rows.values())
        print(f"daily batch: {day_rows}")
        medallion_runs(spark, settings, timings, args.repeats, day=1)

        if not args.skip_features:
            features_and_training(spark, repeat_settings(settings, 1, "gx"), timings, args.asof_labels)
        report(timings, lines, day_lines)
    finally:
        spark.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


def features_and_training(spark, settings: Settings, timings: Timings, asof_labels: int) -> None:
    features = settings.use_case.features
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {settings.schema('features')}")
    for name, table in features.tables.items():
        kind = "text" if table.text else "behavioural"
        timings.time(f"features {kind}: {name}", lambda n=name, t=table: feature_store.materialize(
            spark, settings, n, t, True))  # fmt: skip
    timings.time("labels", lambda: feature_store.write_labels(spark, settings))
    timings.time("training set (as-of join, all labels)", lambda: feature_store.training_set(
        spark, settings).rows.write.format("noop").mode("overwrite").save())  # fmt: skip
    timings.time(f"as-of join of {asof_labels:,} labels", lambda: asof_stress(spark, settings, asof_labels))


def report(timings: Timings, lines: int, day_lines: int) -> None:
    m = timings.median
    copy = m("plain copy (files -> Delta)")
    medallion = m("bronze") + m("silver with GX validation") + m("gold")
    floor = m("bare medallion (the floor)")
    daily = m("daily bronze") + m("daily silver with GX validation") + m("daily gold")
    daily_floor = m(DAILY_FLOOR)
    print("\nmedians of the repeats")
    print(f"{'phase':<52} {'wall s':>8} {'x floor':>8} {'x copy':>8} {'CPU s / M lines':>16}")
    first_load = ["plain copy (files -> Delta)", "plain copy (files -> parquet)", "bronze", "silver without validation",
                  "silver with GX validation", "gold", "bare medallion (the floor)"]  # fmt: skip
    for label in first_load:
        cpu = timings.cpu_median(label) / lines * 1e6
        print(f"{label:<52} {m(label):8.1f} {m(label) / floor:8.2f} {m(label) / copy:8.2f} {cpu:16.1f}")
    print(f"{'medallion (bronze + silver with GX + gold)':<52} {medallion:8.1f} {medallion / floor:8.2f} "
          f"{medallion / copy:8.2f}   (target <= 1.5x the floor)")  # fmt: skip
    gx = m("silver with GX validation") / m("silver without validation")
    print(f"ratio silver validated / plain          {gx:8.2f}   (target <= 1.15)")
    print(f"\ndaily batch of {day_lines:,} rows")
    daily_phases = ["daily bronze", "daily silver without validation", "daily silver with GX validation", "daily gold"]
    for label in [*daily_phases, DAILY_FLOOR, NOTHING_NEW]:
        print(f"{label:<52} {m(label):8.1f}")
    print(f"{'daily run (ingest + silver with GX + gold)':<52} {daily:8.1f}   x its floor {daily / daily_floor:.2f}"
          "   (target <= 2)")  # fmt: skip
    others = [label for label in timings.wall if label.startswith(("features", "labels", "training", "as-of"))]
    if others:
        print()
        for label in others:
            print(f"{label:<52} {m(label):8.1f} {m(label) / copy:8.2f} x copy")
        behavioural = sum(m(label) for label in others if label.startswith("features behavioural"))
        print(f"ratio behavioural features / copy       {behavioural / copy:8.2f}   (target <= 2.0)")


if __name__ == "__main__":
    main()
