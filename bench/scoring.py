"""Benchmark: batch scoring and drift at scale, each beside its baseline, in one run.

    .venv/bin/python bench/scoring.py --rows 1000000 --score-rows 4000000

Builds the medallion and features on generated data, trains a one-trial champion (untimed), and
writes the features of every customer as of the newest date (text as the TF-IDF vectors the
feature table stores), repeated with fresh ids up to `--score-rows`, as a Delta table. On that one
table and model it times:
- plain copy: read the table and write it to another Delta table (the floor);
- native scoring as the job does it: the Spark ML model's own `transform`, written as the predictions
  table (`scoring.prediction_rows`: key, date, score, label, model) into its date partition with
  `replaceWhere` (`tables.replace_partition`), the path `scoring.run` takes; the target compares this;
- native carrying every input column: the same scores written beside all the table's columns, a copy
  with the model's work on top (stricter than the job, which does not rewrite its features);
  the three alternate `--repeats` times and their medians are compared;
- `mlflow.pyfunc.spark_udf`: the same model through pyfunc in Python workers, written to Delta, on the
  first `--udf-rows` rows (beside native on the same rows), as the whole table would take too long.
Then drift, the model's training set against the scored table, every numeric and categorical feature
and the score, PSI and KS for numeric, Jensen-Shannon and chi-square for categorical:
- our Spark statistics (`drift.compare`) over the full tables;
- Evidently 0.7 on pandas (`ValueDrift` with the same tests) over the same rows, in a subprocess
  so its peak memory (max RSS) is its own, at growing row counts up to `--evidently-max-rows`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from pyspark.sql import functions as F

from lakeforge import drift, feature_store, gate, modeling, scoring, tables, training
from workspace import churn_workspace

NUMERIC_TESTS, CATEGORICAL_TESTS = ["psi", "ks"], ["jensenshannon", "chisquare"]
THRESHOLDS = {"psi": 0.2, "ks": 0.05, "jensenshannon": 0.1, "chisquare": 0.05}

EVIDENTLY_SCRIPT = Path(__file__).with_name("evidently_drift.py")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def spread(times: list[float]) -> str:
    return ", ".join(f"{t:.1f}" for t in times)


def jvm_peak_mb(spark, reset: bool = False) -> float:
    """The driver JVM's peak resident memory (VmHWM); `reset` starts a new peak (Linux clear_refs 5)."""
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders in the history batch")
    parser.add_argument("--score-rows", type=int, default=4_000_000, help="rows of the table to score")
    parser.add_argument("--repeats", type=int, default=3, help="timings of copy and native, alternated")
    parser.add_argument("--udf-rows", type=int, default=100_000, help="rows scored through spark_udf (and native)")
    parser.add_argument("--evidently-min-rows", type=int, default=250_000, help="first Evidently run (then doubled)")
    parser.add_argument("--evidently-max-rows", type=int, default=2_000_000, help="largest Evidently run")
    parser.add_argument("--home", help="working folder (default: a new temporary folder, removed afterwards)")
    args = parser.parse_args()

    with churn_workspace("score", args.rows, args.home, max_evals=1) as (spark, settings):
        config = settings.use_case.training
        home = Path(os.environ["LAKEFORGE_HOME"])
        trained = training.run(spark, settings)
        gate.run(spark, settings)
        model_uri = f"models:/{trained.model_name}/{trained.version}"
        spark.sql("CREATE SCHEMA IF NOT EXISTS bench")

        as_of = scoring.latest_feature_date(spark, settings)
        features, _ = feature_store.scoring_set(spark, settings, dt.datetime.combine(as_of, dt.time()))
        customers = features.count()
        copies = max(1, -(-args.score_rows // customers))
        repeated = (
            modeling.model_input(features, config)
            .crossJoin(spark.range(copies).withColumnRenamed("id", "_copy"))
            .withColumn("customer_id", F.concat_ws("-", "customer_id", "_copy"))
            .drop("_copy")
        )
        repeated.write.format("delta").mode("overwrite").saveAsTable("bench.scoring_input")
        table = spark.read.table("bench.scoring_input")
        rows = table.count()

        def write(df, name: str) -> None:
            df.write.format("delta").mode("overwrite").saveAsTable(f"bench.{name}")

        threshold = config.decision_threshold
        scored = modeling.score_rows(spark, model_uri, table, threshold)
        job_rows = scoring.prediction_rows(
            scored, ["customer_id"], as_of, trained.model_name, str(trained.version), trained.run_id
        )
        carried = scored.select(*table.columns, modeling.SCORE)
        paths = {
            "copy": lambda: write(table, "plain_copy"),
            "job": lambda: tables.replace_partition(
                job_rows, "bench.predictions", scoring.SCORING_DATE, as_of.isoformat()
            ),
            "carried": lambda: write(carried, "native_predictions"),
        }
        for path in paths.values():  # untimed: the first run of each creates its table and warms the JIT
            path()
        # One timing of each swings by a third from run to run on 2 cores: alternate them, take medians.
        timings: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, path in paths.items():
                timings[name].append(timed(path))
        copy_seconds, job_seconds, carried_seconds = (statistics.median(timings[k]) for k in ("copy", "job", "carried"))
        print(f"rows scored                                {rows:>12,} ({customers:,} customers x {copies})")
        print(f"plain copy (read + Delta write), median    {copy_seconds:>10.1f} s  of {spread(timings['copy'])}")
        print(f"native scoring as the job, median          {job_seconds:>10.1f} s  of {spread(timings['job'])}")
        print(f"ratio native (job) / plain copy (medians)  {job_seconds / copy_seconds:>12.2f}  (target <= 1.5)")
        print(f"native carrying all columns, median        {carried_seconds:>10.1f} s  of {spread(timings['carried'])}")
        print(f"ratio native (all columns) / plain copy    {carried_seconds / copy_seconds:>12.2f}")
        written = spark.read.table("bench.predictions").groupBy(scoring.SCORING_DATE).count().collect()
        if [tuple(r) for r in written] != [(as_of, rows)]:  # reruns replaced the date, never appended
            raise SystemExit(f"bench.predictions holds {written}, expected one {as_of} partition of {rows:,} rows")

        # pyfunc's Spark wrapper turns each Arrow batch into a DataFrame of a local Spark session in the
        # Python worker, with the text vector as a dense array of `num_features` doubles per row: on the
        # whole table that takes far longer than native, and batches of the default 10,000 rows (330 MB)
        # exhaust its heap. So the UDF scores the first `--udf-rows` rows in batches of 1,000, beside
        # native on the same rows.
        subset = table.limit(args.udf_rows)
        write(subset, "udf_input")
        subset = spark.read.table("bench.udf_input")
        subset_rows = subset.count()
        native_subset = modeling.score_rows(spark, model_uri, subset, threshold).select("customer_id", modeling.SCORE)
        native_subset_seconds = timed(lambda: write(native_subset, "native_predictions_subset"))
        inputs = mlflow.models.get_model_info(model_uri).signature.inputs.input_names()
        predict = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local")
        text_size = settings.use_case.features.tables[config.text_feature_table].text.num_features
        udf_inputs = [modeling.plain_column(subset, c, text_size) for c in inputs]
        with_udf = subset.select("customer_id", predict(*udf_inputs).alias("prediction"))
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
        udf_seconds = timed(lambda: write(with_udf, "udf_predictions"))
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
        print(f"native Spark ML transform, {subset_rows:>9,} rows {native_subset_seconds:>10.1f} s")
        print(f"mlflow.pyfunc.spark_udf,   {subset_rows:>9,} rows {udf_seconds:>10.1f} s")
        print(f"ratio spark_udf / native on those rows     {udf_seconds / native_subset_seconds:>12.2f}  (target >= 2)")

        data = training.prepare(spark, settings, config)
        reference_rows = data.train.unionByName(data.validation)
        numeric, categorical = [*config.numeric_features, modeling.SCORE], list(config.categorical_features)
        columns = [*numeric, *categorical]
        reference = modeling.score_rows(spark, model_uri, reference_rows, config.decision_threshold).select(*columns)
        write(reference, "drift_reference")
        reference = spark.read.table("bench.drift_reference")
        current = spark.read.table("bench.native_predictions").select(*columns)
        jvm_peak_mb(spark, reset=True)
        drift_seconds = timed(
            lambda: drift.compare(
                reference, current, numeric, categorical, NUMERIC_TESTS, CATEGORICAL_TESTS, THRESHOLDS
            )
        )
        print(f"drift reference rows (training set)        {reference.count():>12,}")
        print(f"drift current rows (scored table)          {rows:>12,}")
        print(
            f"drift columns x tests                      {len(numeric)} numeric x 2, {len(categorical)} categorical x 2"
        )
        print(
            f"spark drift.compare over full tables       {drift_seconds:>10.1f} s, "
            f"driver JVM peak {jvm_peak_mb(spark):,.0f} MB"
        )

        exported = home / "export"
        reference.write.mode("overwrite").parquet(str(exported / "reference"))
        # Larger sizes than the scored table repeat its rows: same distribution, more rows.
        repeats = -(-args.evidently_max_rows // rows)
        repeated_current = current.crossJoin(spark.range(repeats)).drop("id").limit(args.evidently_max_rows)
        repeated_current.write.mode("overwrite").parquet(str(exported / "current"))
        size, last, failed = args.evidently_min_rows, None, None
        while size <= args.evidently_max_rows:
            spec = {
                "reference": str(exported / "reference"),
                "current": str(exported / "current"),
                "rows": size,
                "numeric": numeric,
                "categorical": categorical,
                "numeric_tests": NUMERIC_TESTS,
                "categorical_tests": CATEGORICAL_TESTS,
                "thresholds": THRESHOLDS,
            }
            done = subprocess.run(
                [sys.executable, str(EVIDENTLY_SCRIPT), json.dumps(spec)], capture_output=True, text=True, check=False
            )
            if done.returncode:
                reason = (done.stderr.strip().splitlines() or [f"killed by signal {-done.returncode}"])[-1]
                print(f"evidently pandas, current {size:>9,} rows   failed: {reason}")
                failed = size
                break
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"evidently pandas, current {size:>9,} rows   {measured['seconds']:>10.1f} s, "
                f"peak RSS {measured['max_rss_mb']:,.0f} MB"
            )
            last = (size, measured)
            size *= 2
        exported_current = spark.read.parquet(str(exported / "current"))
        for size in [s for s in (last and last[0], failed) if s]:
            jvm_peak_mb(spark, reset=True)
            spark_seconds = timed(
                lambda n=size: drift.compare(
                    reference,
                    exported_current if n >= args.evidently_max_rows else exported_current.limit(n),
                    numeric,
                    categorical,
                    NUMERIC_TESTS,
                    CATEGORICAL_TESTS,
                    THRESHOLDS,
                )
            )
            print(
                f"spark drift.compare, current {size:>9,} rows {spark_seconds:>10.1f} s, "
                f"driver JVM peak {jvm_peak_mb(spark):,.0f} MB"
            )
            if last and size == last[0]:
                print(f"ratio evidently / spark at {size:,} rows   {last[1]['seconds'] / spark_seconds:>12.2f}")


if __name__ == "__main__":
    main()
