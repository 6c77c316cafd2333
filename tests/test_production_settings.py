"""The main path on Spark as it ships: every other test runs Spark interpreted, without adaptive execution and
on the C1 compiler (conftest's JAVA_TOOL_OPTIONS); here the jobs run as processes with JAVA_TOOL_OPTIONS
cleared and the shipped `local` environment's settings (code generation and AQE on, its shuffle partitions).

One history and a new day through `run all`, the weekly `maintain` with no retention (the shortest there is),
then `reproduce` of the champion within the tolerance the fast tests hold it to, and a rerun of `score` that
gives the same predictions bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ONE_TRIAL, set_arguments
from lakeforge.config import load_use_case
from lakeforge.datagen import BatchSpec, generate_batch

LAKEFORGE = Path(sys.executable).with_name("lakeforge")
ROWS = 3000


def _lakeforge(arguments: list[str], env: dict[str, str], log: Path) -> str:
    with log.open("a") as out:
        out.write(f"\n$ lakeforge {' '.join(arguments)}\n")
    done = subprocess.run(
        [str(LAKEFORGE), *arguments], env=env, capture_output=True, text=True, check=False, timeout=1200
    )
    with log.open("a") as out:
        out.write(done.stdout + done.stderr)
    if done.returncode:
        pytest.fail(f"lakeforge {' '.join(arguments[:2])} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def production_run(spark, tmp_path_factory):
    home = tmp_path_factory.mktemp("production")
    log = home / "run.log"
    env = {key: value for key, value in os.environ.items() if key != "JAVA_TOOL_OPTIONS"}
    env.update(LAKEFORGE_HOME=str(home / "lakeforge"), SPARK_LOCAL_IP="127.0.0.1")
    use_case = ["--use-case", "churn"]
    one_trial = set_arguments(ONE_TRIAL)
    outputs = {}
    # The landing files `lakeforge generate-data --rows 3000 --seed 5` writes, made in this worker's Spark (the
    # files are what the jobs read; a driver of its own would cost a cold JVM).
    churn, landing = load_use_case("churn"), str(home / "lakeforge" / "landing")
    generate_batch(spark, churn, landing, BatchSpec(ROWS, 5, 0))
    outputs["first"] = _lakeforge(["run", "all", *use_case, *one_trial], env, log)
    # The score rerun comes before the new day: features as of a date may change when late records for it
    # arrive (cancellations come weeks late), and the rerun is meant to see the same inputs.
    predictions = home / "lakeforge" / "warehouse" / "gold.db" / "churn_predictions"
    scored = {"first": _scores(spark, predictions)}
    (date,) = {row[0] for row in scored["first"]}
    _lakeforge(["run", "score", *use_case, "--date", date.isoformat()], env, log)
    scored["rerun"] = _scores(spark, predictions)
    # A new day to the feature tables: the champion's training set now reads versions that are not the latest.
    generate_batch(spark, churn, landing, BatchSpec(ROWS, 5, 1))
    outputs["day"] = _lakeforge(["run", "ingest", "silver", "gold", "features", *use_case], env, log)
    no_retention = set_arguments(["env.maintenance.retain_hours=0"])
    outputs["maintain"] = _lakeforge(["run", "maintain", *use_case, *no_retention], env, log)
    champion = json.loads((home / "lakeforge" / "reports" / "models" / "churn" / "champion.json").read_text())
    outputs["reproduce"] = _lakeforge(["reproduce", champion["run_id"], *use_case, "--tolerance", "1e-6"], env, log)
    return home / "lakeforge", champion, outputs, env, scored


def _scores(spark, table: Path) -> list[tuple]:
    rows = spark.read.format("delta").load(str(table)).select("scoring_date", "customer_id", "score", "predicted_label")
    return sorted(tuple(row) for row in rows.collect())


def test_the_jvms_ran_with_code_generation_and_adaptive_execution(production_run):
    _, _, outputs, env, _ = production_run
    # This process runs Spark interpreted and without AQE (conftest); the jobs' JVMs did not inherit it: a JVM
    # prints "Picked up JAVA_TOOL_OPTIONS" on stderr whenever the variable is set.
    assert "spark.sql.adaptive.enabled=false" in os.environ["JAVA_TOOL_OPTIONS"]
    assert "JAVA_TOOL_OPTIONS" not in env
    assert all("Picked up JAVA_TOOL_OPTIONS" not in output for output in outputs.values())


def test_run_all_trains_a_champion_scores_and_monitors(spark, production_run):
    home, champion, _, _, _ = production_run
    assert champion["model_name"] == "churn_classifier" and champion["version"] == "1"
    warehouse = home / "warehouse"
    predictions = spark.read.format("delta").load(str(warehouse / "gold.db" / "churn_predictions"))
    entities = spark.read.format("delta").load(str(warehouse / "gold.db" / "customer_entity"))
    assert predictions.count() == predictions.select("customer_id").distinct().count() > 0
    assert predictions.select("scoring_date").distinct().count() == 1
    assert predictions.join(entities, "customer_id", "left_anti").count() == 0
    decision = json.loads((home / "reports" / "monitoring" / "churn" / "decision.json").read_text())
    assert "retrain" in decision and isinstance(decision["reasons"], list)


def test_maintain_kept_what_the_champion_reads_and_reproduce_matches(production_run):
    _, _, outputs, _, _ = production_run
    kept = re.findall(r"maintain (\S+): retention \d+ h instead of 0 h, for the champion", outputs["maintain"])
    assert kept, outputs["maintain"][-3000:]
    compacted = re.findall(r"files (\d+) -> (\d+)", outputs["maintain"])
    assert compacted and all(int(after) <= int(before) for before, after in compacted)
    differences = re.findall(r"^(\w+)\s+\S+\s+\S+\s+([-+]\d\.\d+e[-+]\d+)$", outputs["reproduce"], re.MULTILINE)
    assert {metric for metric, _ in differences} >= {"auc_roc", "log_loss"}
    assert all(abs(float(difference)) <= 1e-6 for _, difference in differences)


def test_a_rerun_of_score_gives_the_same_predictions_bit_for_bit(production_run):
    *_, scored = production_run
    assert scored["first"] and scored["rerun"] == scored["first"]
