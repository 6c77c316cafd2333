"""The Airflow DAG, run whole with `airflow dags test` on a fresh SQLite Airflow home: every job is a real
`spark-submit` (SparkSubmitOperator on `spark_default` = local[2]) over raw files generated for the test.

Airflow lives in its own virtual environment (`.venv-airflow`, made by `setup.sh --dev`): its pins
are its own. The retraining policy is set to fire (prediction PSI above 1e-9), so the run takes the
bootstrap branch (no champion yet: train and gate first) and the retraining branch.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = REPO / ".venv-airflow" / "bin" / "airflow"
DAG_ID = "lakeforge_churn"


def _run(command: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=1800)
    if done.returncode:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        pytest.fail(f"{' '.join(command[:3])} exited {done.returncode}:\n{tail}")


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory):
    if not AIRFLOW.exists():
        pytest.fail(f"{AIRFLOW} is missing: run ./setup.sh --dev (it installs Airflow in its own environment)")
    root = tmp_path_factory.mktemp("airflow")
    home, airflow_home, log = root / "lakeforge", root / "airflow-home", root / "airflow.log"
    env = {
        **os.environ,
        "LAKEFORGE_HOME": str(home),
        "LAKEFORGE_REPO": str(REPO),
        "LAKEFORGE_PYTHON": sys.executable,
        "LAKEFORGE_SET": "use_case.monitoring.retraining.max_prediction_psi=1e-9",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    lakeforge = str(Path(sys.executable).with_name("lakeforge"))
    _run([lakeforge, "generate-data", "--use-case", "churn", "--rows", "3000", "--seed", "5"], env, log)
    _run([str(AIRFLOW), "db", "migrate"], env, log)
    _run([str(AIRFLOW), "dags", "test", DAG_ID, "2026-03-01"], env, log)
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)).fetchall())
    return home, states, log


def test_every_task_ran_in_order_with_both_branches(dag_run):
    _, states, log = dag_run
    expected = {
        **dict.fromkeys(["ingest", "silver", "gold", "features", "champion_exists"], "success"),
        **dict.fromkeys(["first_train", "first_validate", "score", "monitor", "retraining_decision"], "success"),
        **dict.fromkeys(["retrain", "revalidate"], "success"),
        "no_retraining": "skipped",
    }
    assert states == expected, log.read_text()[-4000:]


def test_the_jobs_wrote_their_tables(spark, dag_run):
    home, _, _ = dag_run
    warehouse = home / "warehouse"
    for schema, table in [
        ("bronze", "orders"),
        ("silver", "orders"),
        ("gold", "customer_entity"),
        ("features", "customer_activity"),
        ("gold", "churn_predictions"),
        ("ops", "drift_metrics"),
        ("ops", "retraining_decisions"),
    ]:
        rows = spark.read.format("delta").load(str(warehouse / f"{schema}.db" / table))
        assert rows.count() > 0, f"{schema}.{table} is empty"
    decision = json.loads((home / "reports" / "monitoring" / "churn" / "decision.json").read_text())
    assert decision["retrain"] is True and "prediction PSI" in decision["reasons"][0]
    champion = json.loads((home / "reports" / "models" / "churn" / "champion.json").read_text())
    assert champion["model_name"] == "churn_classifier" and champion["version"] in {"1", "2"}
