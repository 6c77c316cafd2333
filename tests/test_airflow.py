"""The Airflow DAG, run whole with `airflow dags test` (the `pipeline_run` fixture in conftest): every
task succeeded or was skipped by its branch, and the jobs wrote their tables and decision files. The
retraining branch, which the run skips, is checked on the DAG itself with real decision files."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import AIRFLOW, REPO


def test_every_task_ran_or_was_skipped_by_its_branch(pipeline_run):
    _, states, log = pipeline_run
    expected = {
        **dict.fromkeys(["ingest", "silver", "gold", "features", "champion_exists"], "success"),
        **dict.fromkeys(["first_train", "first_gate", "score", "monitor", "retraining_decision"], "success"),
        "no_retraining": "success",
        **dict.fromkeys(["retrain", "regate"], "skipped"),
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
    assert decision["retrain"] is False and decision["reasons"] == []
    champion = json.loads((home / "reports" / "models" / "churn" / "champion.json").read_text())
    assert champion["model_name"] == "churn_classifier" and champion["version"] == "1"


# Run in Airflow's own environment: imports the DAG file, then asks its branch tasks what they would follow
# for each state of the files the jobs write, and prints what it found as JSON.
BRANCHES = """
import importlib.util, json, sys

spec = importlib.util.spec_from_file_location("lakeforge_pipeline", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.dag
retraining, champion_exists = (dag.get_task(t).python_callable for t in ("retraining_decision", "champion_exists"))
decision, champion = module.decision_file(), module.champion_file()
decision.parent.mkdir(parents=True)
champion.parent.mkdir(parents=True)
follows = {"no decision": retraining()}
for retrain in (True, False):
    decision.write_text(json.dumps({"retrain": retrain, "reasons": []}))
    follows[f"retrain {retrain}"] = retraining()
follows["no champion"] = champion_exists()
champion.write_text(json.dumps({"model_name": "m", "version": "1"}))
follows["champion"] = champion_exists()
tasks = {
    task_id: {
        "downstream": sorted(task.downstream_task_ids),
        "application": getattr(task, "application", None),
        "application_args": getattr(task, "application_args", None),
        "conn_id": getattr(task, "conn_id", None),
        "trigger_rule": str(task.trigger_rule),
    }
    for task_id, task in dag.task_dict.items()
}
upkeep = module.maintain_dag
maintain = {
    "schedule": str(upkeep.schedule),
    "tasks": {task_id: getattr(task, "application_args", None) for task_id, task in upkeep.task_dict.items()},
    "application": getattr(upkeep.get_task("maintain"), "application", None),
}
print(json.dumps({"follows": follows, "tasks": tasks, "maintain": maintain}))
"""


def test_retraining_branch_follows_the_decision_file_and_reruns_train_and_gate(tmp_path):
    python = AIRFLOW.with_name("python")
    env = {**os.environ, "LAKEFORGE_HOME": str(tmp_path), "LAKEFORGE_REPO": str(REPO), "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [str(python), "-c", BRANCHES, str(REPO / "dags" / "lakeforge_pipeline.py")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["follows"] == {
        "no decision": "no_retraining",
        "retrain True": "retrain",
        "retrain False": "no_retraining",
        "no champion": "first_train",
        "champion": "score",
    }
    tasks = found["tasks"]
    assert tasks["retraining_decision"]["downstream"] == ["no_retraining", "retrain"]
    assert tasks["retrain"]["downstream"] == ["regate"] and tasks["regate"]["downstream"] == []
    # The retraining branch runs the very jobs the bootstrap branch ran in `pipeline_run`, with the same arguments.
    for branch_task, bootstrap_task in (("retrain", "first_train"), ("regate", "first_gate")):
        assert {**tasks[branch_task], "downstream": None} == {**tasks[bootstrap_task], "downstream": None}
    assert tasks["retrain"]["application"] == str(REPO / "jobs" / "train.py")
    assert tasks["regate"]["application"] == str(REPO / "jobs" / "gate.py")
    # Table upkeep is a DAG of its own, weekly, with the daily jobs' arguments.
    maintain = found["maintain"]
    assert maintain["schedule"] == "0 4 * * 0" and maintain["application"] == str(REPO / "jobs" / "maintain.py")
    assert maintain["tasks"] == {"maintain": tasks["score"]["application_args"]}
