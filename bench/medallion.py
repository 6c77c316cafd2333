"""Benchmark: the full medallion against a plain copy of the same landing files, in one run.

    .venv/bin/python bench/medallion.py --rows 2000000

Prints each phase's wall time and the ratios the targets are stated in:
medallion (bronze + silver + gold) <= 3x the plain copy; silver with validation <= 1.3x without.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from lakeforge import bronze, gold, silver
from lakeforge.config import Schemas, Settings, load_environment, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch
from lakeforge.session import build_spark


def plain_copy(spark, settings: Settings) -> None:
    """The baseline: read each source's landing files as they are and write one Delta table each."""
    landing = Path(settings.env.path("landing")) / settings.use_case.name
    spark.sql("CREATE SCHEMA IF NOT EXISTS copy")
    for name, source in settings.use_case.sources.items():
        files = str(landing / name / "*" / "part-*")
        df = spark.read.option("header", "true").csv(files) if source.format == "csv" else spark.read.text(files)
        df.write.format("delta").mode("overwrite").saveAsTable(f"copy.{name}")


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
    spark = build_spark(env, "lakeforge-bench")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        timed("generate landing files (untimed)", lambda: generate_batch(
            spark, settings.use_case, env.path("landing"), BatchSpec(args.rows, args.seed, 0)))  # fmt: skip
        lines = sum(1 for p in Path(env.path("landing")).rglob("part-*") for _ in p.open())
        print(f"landing lines: {lines:,}")

        copy = timed("plain copy (files -> Delta)", lambda: plain_copy(spark, settings))
        bronze_time = timed("bronze", lambda: bronze.run(spark, settings))
        silver_plain = timed("silver without validation", lambda: silver.run(spark, unvalidated, validate=False))
        silver_time = timed("silver with GX validation", lambda: silver.run(spark, settings))
        gold_time = timed("gold", lambda: gold.run(spark, settings))

        medallion = bronze_time + silver_time + gold_time
        print(f"medallion total                    {medallion:8.1f} s")
        print(f"ratio medallion / plain copy        {medallion / copy:8.2f}   (target <= 3.0)")
        print(f"ratio silver validated / plain      {silver_time / silver_plain:8.2f}   (target <= 1.3)")
    finally:
        spark.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
