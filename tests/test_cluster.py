"""Ingest through scoring on a real standalone cluster (a master and two workers on loopback, started by
`scripts/spark-cluster.sh`) gives the same tables, counts and predictions as the same raw files run by
the Airflow DAG on local[2] (`pipeline_run`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import FEW_PARTITIONS, ONE_TRIAL, set_arguments
from lakeforge.session import delta_package

REPO = Path(__file__).resolve().parents[1]
STEPS = ["ingest", "silver", "gold", "features", "train", "gate", "score"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster_home(pipeline_run, tmp_path_factory):
    local_home = pipeline_run[0]
    home = tmp_path_factory.mktemp("cluster") / "lakeforge"
    shutil.copytree(local_home / "landing", home / "landing")  # the very same raw files
    port, ui = _free_port(), _free_port()
    env = {
        **os.environ,
        "LAKEFORGE_HOME": str(home),
        "LAKEFORGE_SPARK_PORT": str(port),
        "LAKEFORGE_SPARK_UI_PORT": str(ui),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    script = str(REPO / "scripts" / "spark-cluster.sh")
    subprocess.run([script, "start"], env=env, check=True, timeout=180)
    log = home / "submit.log"
    try:
        command = [
            str(Path(sys.executable).with_name("spark-submit")),
            "--master", f"spark://127.0.0.1:{port}",
            "--packages", delta_package(),
            "--conf", f"spark.pyspark.python={sys.executable}",
            str(REPO / "libs" / "lakeforge" / "cli.py"),
            "run", *STEPS, "--use-case", "churn", "--env", "cluster",
            *set_arguments(FEW_PARTITIONS + ONE_TRIAL),
        ]  # fmt: skip
        with log.open("w") as out:
            done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=1800)
        applications = list((home / "spark-cluster").glob("worker*/app-*"))
    finally:
        subprocess.run([script, "stop"], env=env, check=False, timeout=60)
    if done.returncode:
        pytest.fail(f"spark-submit on the cluster exited {done.returncode}:\n{log.read_text()[-4000:]}")
    assert applications, "no executor ran on the cluster's workers"
    return home


def _table(spark, home: Path, schema: str, table: str):
    return spark.read.format("delta").load(str(home / "warehouse" / f"{schema}.db" / table))


@pytest.mark.parametrize(
    ("schema", "table"),
    [
        ("bronze", "orders"),
        ("silver", "orders"),
        ("silver", "orders_quarantine"),
        ("silver", "customers"),
        ("gold", "customer_entity"),
        ("gold", "daily_revenue"),
        ("features", "customer_activity"),
        ("features", "customer_profile"),
        ("gold", "churn_labels"),
    ],
)
def test_same_tables_as_local_mode(spark, pipeline_run, cluster_home, schema, table):
    local, cluster = _table(spark, pipeline_run[0], schema, table), _table(spark, cluster_home, schema, table)
    # Columns starting with "_" record where and when a row was read (paths, ingestion times).
    columns = [c for c in local.columns if not c.startswith("_") or c == "_quarantine_reasons"]
    local, cluster = local.select(*columns), cluster.select(*columns)
    assert cluster.count() == local.count() > 0
    assert cluster.exceptAll(local).count() == 0 and local.exceptAll(cluster).count() == 0


def test_same_predictions_as_local_mode(spark, pipeline_run, cluster_home):
    local = _table(spark, pipeline_run[0], "gold", "churn_predictions").where(F.col("model_version") == "1")
    cluster = _table(spark, cluster_home, "gold", "churn_predictions")
    assert cluster.select("scoring_date").distinct().collect() == local.select("scoring_date").distinct().collect()
    pairs = local.alias("l").join(cluster.alias("c"), ["customer_id", "scoring_date"], "full_outer")
    compared = pairs.select(
        F.count("*").alias("rows"),
        F.sum(F.col("l.score").isNull().cast("int") + F.col("c.score").isNull().cast("int")).alias("unmatched"),
        F.max(F.abs(F.col("l.score") - F.col("c.score"))).alias("largest_difference"),
        F.sum((F.col("l.predicted_label") != F.col("c.predicted_label")).cast("int")).alias("label_changes"),
    ).first()
    assert compared.rows == local.count() > 0
    assert (compared.unmatched, compared.label_changes) == (0, 0)
    assert compared.largest_difference < 1e-6
