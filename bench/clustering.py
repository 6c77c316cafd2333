"""Benchmark: does clustering silver on its key help the daily MERGE? Unclustered against liquid clustering
(`CLUSTER BY` the key, compacted with OPTIMIZE), both with deletion vectors, in one run.

    .venv/bin/python bench/clustering.py --rows 2000000 --repeats 3

A silver-like table of `--rows` orders (a string key as the generator writes it, an event time, a few values)
takes a daily batch of 1/30 of its rows, as lakeforge's silver MERGE does it (latest event time wins): a fifth
updates keys already there (late updates, spread over the whole key space), the rest are new keys (higher
than any before, as the generator's are). Each repeat merges the same batch into a fresh copy of each layout;
printed: median MERGE time, files the MERGE touched (removed, or marked through deletion vectors) and files it
wrote, and the ratio clustered / unclustered.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakeforge.config import load_environment
from lakeforge.platforms import Platform

DV = "'delta.enableDeletionVectors' = 'true'"


def orders(spark, first: int, count: int, days: int, start_day: int = 0, status: str = "completed"):
    """`count` orders with keys from `first`, their event times spread over `days` days from `start_day`."""
    day = F.lit(start_day) + (F.col("id") - first) * days // F.lit(max(count, 1))
    return spark.range(first, first + count).select(
        F.format_string("O%09d", "id").alias("order_id"),
        F.format_string("C%07d", (F.col("id") * 7919) % 200_000).alias("customer_id"),
        F.timestamp_seconds(F.lit(1767225600) + day * 86400 + F.col("id") % 86400).alias("order_ts"),
        (F.col("id") % 9973 / 100).alias("amount"),
        F.lit(status).alias("status"),
    )


def daily_batch(spark, rows: int):
    """1/30 of the table: a fifth late updates of existing keys spread over all of them, the rest new keys."""
    size = max(1, rows // 30)
    updated = size // 5
    keys = spark.range(updated).select((F.col("id") * 7919 % rows).alias("id"))  # distinct: 7919 is prime
    late = orders(spark, 0, rows, 1, start_day=200, status="refunded").join(
        keys.select(F.format_string("O%09d", "id").alias("order_id")), "order_id", "left_semi"
    )
    return late.unionByName(orders(spark, rows, size - updated, 1, start_day=181)).cache()


def build(spark, table: str, source: str, clustered: bool) -> None:
    cluster = "CLUSTER BY (order_id)" if clustered else ""
    spark.sql(f"CREATE TABLE {table} {cluster} TBLPROPERTIES ({DV}) AS SELECT * FROM {source}")
    spark.sql(f"OPTIMIZE {table}")


def merge(spark, table: str, batch) -> dict[str, int]:
    target = DeltaTable.forName(spark, table).alias("t")
    target.merge(batch.alias("s"), "t.order_id = s.order_id").whenMatchedUpdateAll(
        "s.order_ts > t.order_ts"
    ).whenNotMatchedInsertAll().execute()
    metrics = DeltaTable.forName(spark, table).history(1).first()["operationMetrics"]
    return {key: int(value) for key, value in metrics.items() if key.startswith(("numTarget", "numDeletion"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lakeforge-bench-clustering-"))
    os.environ["LAKEFORGE_HOME"] = str(home)
    spark = Platform(load_environment("local")).session("lakeforge-bench-clustering")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        spark.sql("CREATE SCHEMA IF NOT EXISTS bench")
        orders(spark, 0, args.rows, 180).write.format("delta").saveAsTable("bench.orders_source")
        batch = daily_batch(spark, args.rows)
        print(f"history {args.rows:,} orders, daily batch {batch.count():,} rows")
        times: dict[str, list[float]] = {"unclustered": [], "clustered": []}
        for repeat in range(args.repeats):
            layouts = [("unclustered", False), ("clustered", True)]
            for name, clustered in layouts if repeat % 2 == 0 else reversed(layouts):
                target = f"bench.{name}_{repeat}"
                build(spark, target, "bench.orders_source", clustered)
                started = time.perf_counter()
                metrics = merge(spark, target, batch)
                times[name].append(time.perf_counter() - started)
                print(f"{name:<12} repeat {repeat}: MERGE {times[name][-1]:6.1f} s  {metrics}", flush=True)
        unclustered, clustered = (statistics.median(times[name]) for name in ("unclustered", "clustered"))
        print(f"\nmedian MERGE unclustered {unclustered:.1f} s, clustered {clustered:.1f} s, "
              f"ratio clustered / unclustered {clustered / unclustered:.2f}")  # fmt: skip
    finally:
        spark.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
