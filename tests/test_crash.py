"""A driver killed with SIGKILL mid-write, then rerun, leaves exactly the tables an uninterrupted run leaves.

The uninterrupted run is the same steps on the same files in this test session's Spark; the killed and
rerun drivers are `lakeforge run` processes of their own.

Also checks that `spark-sql` (shipped with pyspark) reads the gold tables through the metastore
the jobs registered them in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import FEW_PARTITIONS, set_arguments
from lakeforge.config import Settings, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch
from lakeforge.pipeline import run_steps

pytestmark = pytest.mark.slow

TABLES = [
    ("bronze", "customers"), ("bronze", "orders"), ("bronze", "tickets"), ("bronze", "cancellations"),
    ("silver", "customers"), ("silver", "orders"), ("silver", "tickets"), ("silver", "cancellations"),
    ("silver", "orders_quarantine"), ("silver", "customers_quarantine"), ("silver", "tickets_quarantine"),
    ("gold", "daily_revenue"), ("gold", "daily_ticket_volume"), ("gold", "customer_entity"),
]  # fmt: skip
VOLATILE = ["_ingested_at", "_run_id", "_record_id", "_source_file"]
MEDALLION = ["ingest", "silver", "gold"]


def _start(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "LAKEFORGE_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "lakeforge.cli", *args, *set_arguments(FEW_PARTITIONS)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _run_all(home: Path) -> None:
    process = _start(home, "run", *MEDALLION, "--use-case", "churn")
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]


def _kill_when(home: Path, marker: str) -> None:
    """Run the whole pipeline and SIGKILL its driver as soon as `marker` (a path under home) exists."""
    process = _start(home, "run", *MEDALLION, "--use-case", "churn")
    deadline = time.monotonic() + 600
    while not (home / marker).exists():
        if process.poll() is not None:
            pytest.fail(f"finished before {marker} appeared: {process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # The JVM child of a killed Python driver exits when its stdin (the gateway pipe) closes.
    time.sleep(2)


def _stable(df):
    """Table contents without run-specific bookkeeping, with file names relative to their home."""
    volatile = [c for c in VOLATILE if c in df.columns]
    if "_source_file" in df.columns:
        df = df.withColumn("_file", F.regexp_extract("_source_file", r"landing/(.*)$", 1))
    return df.drop(*volatile)


def _rows(df, columns: list[str]) -> list[str]:
    """Every row, nested values included, as a sorted list: equal lists mean equal tables, duplicates counted.
    The tables hold hundreds of rows, so one collect each is cheaper than Spark set differences."""
    return sorted(repr(row) for row in df.select(*columns).collect())


def test_killed_driver_then_rerun_equals_uninterrupted_run(spark, tmp_path, environment_for):
    baseline = Settings(use_case=load_use_case("churn"), env=environment_for(tmp_path / "baseline", "crashbase"))
    crashed = tmp_path / "crashed"
    for batch in (0, 1):
        generate_batch(spark, baseline.use_case, baseline.env.path("landing"), BatchSpec(300, 5, batch))
    shutil.copytree(baseline.env.path("landing"), crashed / "landing")

    run_steps(spark, baseline, MEDALLION)  # what `lakeforge run` does, in this process
    _kill_when(crashed, "warehouse/bronze.db/orders/_delta_log/00000000000000000000.json")
    _kill_when(crashed, "warehouse/silver.db/orders_quarantine/_delta_log/00000000000000000001.json")
    _run_all(crashed)

    spark_sql = subprocess.Popen(  # runs while the tables are compared; it only reads
        [
            str(Path(sys.executable).parent / "spark-sql"), "-S", "-e",
            "SELECT order_date, revenue FROM gold.daily_revenue ORDER BY order_date LIMIT 3",
        ],
        env={**os.environ, "SPARK_CONF_DIR": str(crashed / "spark-conf")},
        cwd=crashed, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for layer, name in TABLES:
            table = f"{layer}.{name}"
            expected = _stable(spark.read.table(baseline.table(layer, name)))
            actual = _stable(spark.read.format("delta").load(str(crashed / "warehouse" / f"{layer}.db" / name)))
            assert sorted(actual.columns) == sorted(expected.columns), table
            assert _rows(actual, expected.columns) == _rows(expected, expected.columns), table
    finally:
        stdout, stderr = spark_sql.communicate(timeout=300)
    assert spark_sql.returncode == 0, stderr[-3000:]
    first = spark.read.format("delta").load(str(crashed / "warehouse/gold.db/daily_revenue")).orderBy("order_date")
    expected_first = first.first()
    assert stdout.strip().splitlines()[0].split("\t") == [str(expected_first[0]), str(expected_first[3])]
