"""Benchmark: the medallion, the features job and the training-set build against a plain copy, in one run.

    .venv/bin/python bench/medallion.py --rows 2000000 --asof-labels 10000000

Prints each phase's wall time and the ratios the targets are stated in: medallion (bronze +
silver + gold) <= 3x the plain copy, with the floor beside it (a bare medallion that only parses,
casts, keeps the latest row per key and runs gold); silver with validation <= 1.3x without;
behavioural features <= 2x the copy (the text pipeline reported on its own); and the as-of join of
`--asof-labels` synthetic label rows against the activity features, which must finish on this
machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from pyspark.sql import Window
from pyspark.sql import functions as F

from lakeforge import bronze, feature_store, gold, silver, tables
from lakeforge.config import Schemas, Settings, load_environment, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch
from lakeforge.platforms import Platform


def plain_copy(spark, settings: Settings, schema: str = "copy", concurrent: bool = False) -> None:
    """The baseline: read each source's landing files as they are and write one Delta table each.

    `concurrent` copies the sources on the same thread pool the medallion uses (reported, not the
    ratio's baseline: it shows how much of the medallion's concurrency a plain copy would also gain).
    """
    landing = Path(settings.env.path("landing")) / settings.use_case.name
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")

    def copy(name: str) -> None:
        source = settings.use_case.sources[name]
        files = str(landing / name / "*" / "part-*")
        df = spark.read.option("header", "true").csv(files) if source.format == "csv" else spark.read.text(files)
        df.write.format("delta").mode("overwrite").saveAsTable(f"{schema}.{name}")

    if concurrent:
        tables.for_each_table(settings.use_case.sources, copy)
    else:
        for name in settings.use_case.sources:
            copy(name)


def bare_medallion(spark, settings: Settings, bare: Settings) -> None:
    """The floor: the work no medallion can skip, and nothing else.

    Bronze parses each JSON line into its declared columns (CSV is read as strings); silver casts
    them and keeps the latest row per key; gold runs the use case's own transforms. No metadata,
    no schema evolution, no validation, quarantine, counts, MERGE, audit or checkpoints. Reported
    beside the real medallion to show how far from the copy the work itself already is.
    """
    landing = Path(settings.env.path("landing")) / settings.use_case.name
    for layer in ("bronze", "silver", "gold"):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {bare.schema(layer)}")

    def land(name: str) -> None:
        source = settings.use_case.sources[name]
        files = str(landing / name / "*" / "part-*")
        if source.format == "csv":
            rows = spark.read.option("header", "true").csv(files)
        else:
            strings = ", ".join(f"`{column}` string" for column in source.columns)
            rows = spark.read.text(files).select(F.from_json("value", strings).alias("row")).select("row.*")
        rows.write.format("delta").mode("overwrite").saveAsTable(bare.table("bronze", name))

    def refine(name: str) -> None:
        source = settings.use_case.sources[name]
        typed = spark.read.table(bare.table("bronze", name)).select(
            *[F.trim(F.col(c)).try_cast(t).alias(c) for c, t in source.columns.items()]
        )
        latest = Window.partitionBy(*source.key).orderBy(F.col(source.event_time).desc_nulls_last())
        rows = typed.withColumn("_n", F.row_number().over(latest)).where("_n = 1").drop("_n")
        rows.write.format("delta").mode("overwrite").saveAsTable(bare.table("silver", name))

    tables.for_each_table(settings.use_case.sources, land)
    tables.for_each_table(settings.use_case.sources, refine)
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


def timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"{label:<34} {elapsed:8.1f} s", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000, help="orders in the history batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--asof-labels", type=int, default=10_000_000, help="label rows of the as-of join stress")
    parser.add_argument("--home", help="working folder (default: a new temporary folder, removed afterwards)")
    args = parser.parse_args()

    home = Path(args.home or tempfile.mkdtemp(prefix="lakeforge-bench-"))
    os.environ["LAKEFORGE_HOME"] = str(home)
    env = load_environment("local")
    settings = Settings(use_case=load_use_case("churn"), env=env)
    unvalidated = Settings(
        use_case=settings.use_case,
        env=env.model_copy(update={"schemas": Schemas(silver="silver_plain", ops="ops_plain", gold="gold_plain")}),
    )
    bare = Settings(
        use_case=settings.use_case,
        env=env.model_copy(update={"schemas": Schemas(bronze="bare_bronze", silver="bare_silver", gold="bare_gold")}),
    )
    spark = Platform(env).session("lakeforge-bench")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        timed("generate landing files (untimed)", lambda: generate_batch(
            spark, settings.use_case, env.path("landing"), BatchSpec(args.rows, args.seed, 0)))  # fmt: skip
        lines = sum(1 for p in Path(env.path("landing")).rglob("part-*") for _ in p.open())
        print(f"landing lines: {lines:,}")

        # The first Delta writes of a JVM pay for class loading and JIT (a cold copy of 1M orders took
        # 30 s, the next ones 7 to 8 s): warm up untimed, so the baseline is not flattered by it.
        timed("plain copy, warm-up (untimed)", lambda: plain_copy(spark, settings, "copy_warmup"))
        copy = timed("plain copy (files -> Delta)", lambda: plain_copy(spark, settings))
        concurrent_copy = timed("plain copy, sources concurrent", lambda: plain_copy(spark, settings, "copy2", True))
        bronze_time = timed("bronze", lambda: bronze.run(spark, settings))
        silver_plain = timed("silver without validation", lambda: silver.run(spark, unvalidated, validate=False))
        silver_time = timed("silver with GX validation", lambda: silver.run(spark, settings))
        gold_time = timed("gold", lambda: gold.run(spark, settings))
        # After the medallion, so the floor runs in the warmer JVM: if anything, it is flattered.
        floor = timed("bare medallion (the floor)", lambda: bare_medallion(spark, settings, bare))

        features = settings.use_case.features
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {settings.schema('features')}")
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {settings.schema('ops')}")
        feature_times = {
            name: timed(
                f"features {name}", lambda n=name, t=table: feature_store.materialize(spark, settings, n, t, True)
            )
            for name, table in features.tables.items()
        }
        behavioural = sum(t for name, t in feature_times.items() if not features.tables[name].text)
        text = sum(t for name, t in feature_times.items() if features.tables[name].text)
        timed("labels", lambda: feature_store.write_labels(spark, settings))
        training = timed("training set (as-of join, all labels)", lambda: feature_store.training_set(
            spark, settings).rows.write.format("noop").mode("overwrite").save())  # fmt: skip
        stress = timed(
            f"as-of join of {args.asof_labels:,} labels", lambda: asof_stress(spark, settings, args.asof_labels)
        )

        medallion = bronze_time + silver_time + gold_time
        print(f"medallion total                    {medallion:8.1f} s")
        print(f"ratio medallion / plain copy        {medallion / copy:8.2f}   (target <= 3.0)")
        print(f"ratio bare medallion / plain copy   {floor / copy:8.2f}   (reported: the floor)")
        print(f"ratio medallion / bare medallion    {medallion / floor:8.2f}   (reported)")
        print(f"ratio medallion / concurrent copy   {medallion / concurrent_copy:8.2f}   (reported)")
        print(f"ratio silver validated / plain      {silver_time / silver_plain:8.2f}   (target <= 1.3)")
        print(f"ratio behavioural features / copy   {behavioural / copy:8.2f}   (target <= 2.0)")
        print(f"ratio text features / copy          {text / copy:8.2f}   (reported, no target)")
        print(f"ratio training set / copy           {training / copy:8.2f}")
        print(f"as-of join rows per second          {args.asof_labels / stress:10,.0f}")
    finally:
        spark.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
