"""Airflow DAG: the lakeforge jobs on open-source Spark, daily, each one a `spark-submit`.

ingest -> silver -> gold -> features -> (train -> gate, only while there is no champion yet)
-> score -> monitor -> (train -> gate, when the retraining policy fired) or no_retraining.

Every Spark task is a `SparkSubmitOperator` on the `spark_default` connection (`local[*]` or a
`spark://` master) running `jobs/<step>.py` with the `cluster` environment, so Spark takes the
master from spark-submit. The branches read small JSON files the jobs write under LAKEFORGE_HOME
(`reports/models/<use case>/champion.json`, `reports/monitoring/<use case>/decision.json`): the
Airflow workers need neither Spark nor MLflow.

Settings come from the environment of the Airflow processes:
LAKEFORGE_REPO (this repository), LAKEFORGE_HOME (the shared data folder), LAKEFORGE_PYTHON (the
pipeline's interpreter, with pyspark and lakeforge), LAKEFORGE_USE_CASE, LAKEFORGE_ENV, LAKEFORGE_RETRIES
(retries per task, default 2, five minutes apart), and
LAKEFORGE_SET: whitespace-separated config overrides passed to every job as `--set`
(for example `env.catalog=main use_case.monitoring.retraining.max_prediction_psi=0.1`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, task

REPO = Path(os.environ.get("LAKEFORGE_REPO", Path(__file__).resolve().parents[1]))
HOME = Path(os.environ.get("LAKEFORGE_HOME", REPO / ".lakeforge"))
PYTHON = os.environ.get("LAKEFORGE_PYTHON", str(REPO / ".venv" / "bin" / "python"))
USE_CASE = os.environ.get("LAKEFORGE_USE_CASE", "churn")
ENV = os.environ.get("LAKEFORGE_ENV", "cluster")
OVERRIDES = [arg for pair in os.environ.get("LAKEFORGE_SET", "").split() for arg in ("--set", pair)]
RETRIES = int(os.environ.get("LAKEFORGE_RETRIES", "2"))
# Airflow's venv has no delta-spark to derive it from: tests/test_architecture.py checks it is lakeforge's own
# (lakeforge.session.delta_package(), from the installed delta-spark and pyspark).
DELTA_PACKAGE = "io.delta:delta-spark_4.1_2.13:4.4.0"


def spark_job(step: str, task_id: str | None = None) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=task_id or step,
        application=str(REPO / "jobs" / f"{step}.py"),
        application_args=["--use-case", USE_CASE, "--env", ENV, *OVERRIDES],
        conn_id="spark_default",
        packages=DELTA_PACKAGE,
        name=f"lakeforge-{USE_CASE}-{step}",
        conf={"spark.pyspark.python": PYTHON, "spark.pyspark.driver.python": PYTHON},
        env_vars={
            "LAKEFORGE_HOME": str(HOME),
            "PYSPARK_PYTHON": PYTHON,
            "PYSPARK_DRIVER_PYTHON": PYTHON,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PATH": f"{Path(PYTHON).parent}:{os.environ.get('PATH', '')}",
        },
    )


def champion_file() -> Path:
    return HOME / "reports" / "models" / USE_CASE / "champion.json"


def decision_file() -> Path:
    return HOME / "reports" / "monitoring" / USE_CASE / "decision.json"


def retraining_fired(path: Path) -> bool:
    """The monitoring job's latest decision; a missing file means nothing was decided."""
    return path.is_file() and bool(json.loads(path.read_text()).get("retrain"))


# Both DAGs: no backfill, one run at a time, each task retried.
RUN_ONE_AT_A_TIME = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {"retries": RETRIES, "retry_delay": timedelta(minutes=5)},
    "tags": ["lakeforge"],
}

with DAG(
    dag_id=f"lakeforge_{USE_CASE}",
    description="raw files to monitored predictions on open-source Spark",
    schedule="@daily",
    **RUN_ONE_AT_A_TIME,
) as dag:
    ingest, silver, gold, features = (spark_job(step) for step in ("ingest", "silver", "gold", "features"))
    score = spark_job("score")
    score.trigger_rule = "none_failed_min_one_success"
    monitor = spark_job("monitor")

    @task.branch
    def champion_exists() -> str:
        """Score straight away when a champion exists, else train and gate the first model."""
        return "score" if champion_file().is_file() else "first_train"

    @task.branch
    def retraining_decision() -> str:
        return "retrain" if retraining_fired(decision_file()) else "no_retraining"

    first_train, first_gate = spark_job("train", "first_train"), spark_job("gate", "first_gate")
    retrain, regate = spark_job("train", "retrain"), spark_job("gate", "regate")
    no_retraining = EmptyOperator(task_id="no_retraining")

    ingest >> silver >> gold >> features >> champion_exists()
    dag.get_task("champion_exists") >> [first_train, score]
    first_train >> first_gate >> score
    score >> monitor >> retraining_decision() >> [retrain, no_retraining]
    retrain >> regate


# Weekly table upkeep (`lakeforge run maintain`): OPTIMIZE and VACUUM every table, keeping the versions live
# models read. Sundays at 04:00, when the daily run is done; a run of one at a time.
with DAG(
    dag_id=f"lakeforge_{USE_CASE}_maintain",
    description="weekly Delta upkeep: compaction and VACUUM, keeping what live models read",
    schedule="0 4 * * 0",
    **RUN_ONE_AT_A_TIME,
) as maintain_dag:
    spark_job("maintain")
