"""The Airflow DAG, run whole with `airflow dags test` (the `pipeline_run` fixture in conftest): every
task succeeded or was skipped by its branch, and the jobs wrote their tables and decision files."""

from __future__ import annotations

import json


def test_every_task_ran_in_order_with_both_branches(pipeline_run):
    _, states, log = pipeline_run
    expected = {
        **dict.fromkeys(["ingest", "silver", "gold", "features", "champion_exists"], "success"),
        **dict.fromkeys(["first_train", "first_validate", "score", "monitor", "retraining_decision"], "success"),
        **dict.fromkeys(["retrain", "revalidate"], "success"),
        "no_retraining": "skipped",
    }
    assert states == expected, log.read_text()[-4000:]


def test_the_jobs_wrote_their_tables(spark, pipeline_run):
    home, _, _ = pipeline_run
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
