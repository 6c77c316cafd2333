"""One session-scoped Spark (local[2], Delta, Hive metastore in a temp folder) and settings helpers."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lakeforge.config import Environment, Paths, Schemas, SearchDimension, Settings, SparkSettings, TimeSplit

# Every JVM the tests start (this session's Spark, spark-submit drivers under Airflow, the crash test's
# drivers, the cluster's master, workers and executors, spark-sql, Thrift) works on tiny data and lives
# for seconds to minutes: there the C1 compiler alone costs less than profiling for C2. Measured alone:
# the Airflow DAG run took 523 s against 775 s, the in-process pipeline and feature tests 247 s against
# 261 s. C1 code fills the default 48 MB code cache in a long run, hence the larger one.
# For the same reason Spark SQL runs interpreted here (whole-stage and expression code generation off, as
# Spark's own test suites also run it; the results are the same by Spark's contract): on test-sized data,
# compiling each query's Java with Janino costs more than it saves. Read by every JVM's SparkConf as system
# properties. Measured in the same session, three pairs of fresh processes running generate, bronze, silver,
# gold and features on 1,500 orders: 88.0, 79.2, 72.9 s with code generation, 74.2, 69.8, 58.5 s without.
# Adaptive query execution is off too: on a few hundred rows it finds nothing to adapt, and re-planning each
# query stage, running it as a job of its own and describing every new plan for the SQL listener is driver
# work. A Java Flight Recorder profile of the feature and training tests put more of their JVM's samples in
# the driver (45%: query analysis, planning, closure cleaning) than in tasks (33%). For the same reason the plan
# description the listener receives for each query is the simple one. Measured on the feature and training
# tests, in one process: 315 and 322 s with Spark's defaults, 289 and 285 s with AQE off, 274 s with the
# simple description as well (CPU 398 s against 360 s).
# The README main command and the benchmarks keep Spark's defaults, and so do the jobs test_production_settings
# starts (it clears this variable for them): the main path is also tested on Spark as it ships.
TEST_JVM_OPTIONS = (
    "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=512m"
    " -Dspark.sql.codegen.wholeStage=false -Dspark.sql.codegen.factoryMode=NO_CODEGEN"
    " -Dspark.sql.adaptive.enabled=false -Dspark.sql.ui.explainMode=simple"
)
if TEST_JVM_OPTIONS not in os.environ.get("JAVA_TOOL_OPTIONS", ""):
    os.environ["JAVA_TOOL_OPTIONS"] = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {TEST_JVM_OPTIONS}".strip()


# Every Spark the tests run works on a few hundred to a few thousand rows: two shuffle partitions (a task per
# shuffle and a file per table write each), here and in the jobs they start (`FEW_PARTITIONS`).
SHUFFLE_PARTITIONS = "2"


def make_environment(root: Path, suffix: str) -> Environment:
    """A local environment whose folders live under `root` and whose schemas end with `suffix`."""
    return Environment(
        name="test",
        spark=SparkSettings(
            mode="local",
            master="local[2]",
            conf={
                "spark.sql.shuffle.partitions": SHUFFLE_PARTITIONS,
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
            },
        ),
        schemas=Schemas(
            bronze=f"bronze_{suffix}",
            silver=f"silver_{suffix}",
            gold=f"gold_{suffix}",
            features=f"features_{suffix}",
            ops=f"ops_{suffix}",
        ),
        paths=Paths(
            landing=str(root / "landing"),
            data_docs=str(root / "data_docs"),
            gx_project=str(root / "gx"),
            warehouse=str(root / "warehouse"),
            metastore=str(root / "metastore"),
            artifacts=str(root / "artifacts"),
            mlflow=str(root / "mlflow"),
        ),
    )


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lakeforge.platforms import Platform

    root = tmp_path_factory.mktemp("spark")
    os.environ["LAKEFORGE_HOME"] = str(root)
    env = make_environment(root, "session")
    session = Platform(env).session("lakeforge-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def environment_for():
    """Build a test environment: `environment_for(root, suffix)`."""
    return make_environment


CHURN_ROWS = 1500


@pytest.fixture(scope="session")
def churn_features(spark, tmp_path_factory):
    """Tiny churn data through bronze, silver, gold and features, shared by the feature and training tests.

    The feature tests run first (file order) and add a later batch; the training tests only read.
    """
    from lakeforge import bronze, feature_store, gold, silver
    from lakeforge.config import Settings, load_use_case
    from lakeforge.datagen import BatchSpec, generate_batch

    settings = Settings(use_case=load_use_case("churn"), env=make_environment(tmp_path_factory.mktemp("feat"), "feat"))
    generate_batch(spark, settings.use_case, settings.env.path("landing"), BatchSpec(CHURN_ROWS, 5, 0))
    bronze.run(spark, settings)
    silver.run(spark, settings)
    gold.run(spark, settings)
    feature_store.run(spark, settings)
    return settings


# A logistic regression of at most 10 iterations: each iteration is a Spark job, and the tests check what
# the jobs do with a model (track, gate, score, monitor), not how well it fits (test AUC 0.916 against 0.925).
FEW_ITERATIONS = {"maxIter": 10}


def with_training(base: Settings, mlflow_dir, **training_changes) -> Settings:
    """Churn settings with their own MLflow store and a one-trial search of a few iterations (fast, and not
    flattened)."""
    env = base.env.model_copy(update={"paths": base.env.paths.model_copy(update={"mlflow": str(mlflow_dir)})})
    config = base.use_case.training.model_copy(
        update={
            "max_evals": 1,
            # A strong penalty would flatten the one model tried here to a constant score.
            "search_space": {"regParam": SearchDimension(kind="uniform", low=0.001, high=0.01)},
            "split": TimeSplit(validation_from=dt.date(2026, 1, 29), test_from=dt.date(2026, 2, 5)),
            "fixed_params": {**base.use_case.training.fixed_params, **FEW_ITERATIONS},
            **training_changes,
        }
    )
    use_case = base.use_case.model_copy(update={"training": config})
    return base.model_copy(update={"env": env, "use_case": use_case})


@pytest.fixture(scope="session")
def churn_champion(spark, churn_features, tmp_path_factory):
    """A logistic regression trained on the tiny churn features and promoted to champion (scoring, monitoring)."""
    from lakeforge import gate, training

    settings = with_training(churn_features, tmp_path_factory.mktemp("mlflow-champion"))
    training.run(spark, settings)
    assert gate.run(spark, settings).promoted
    return settings


@pytest.fixture(scope="session")
def training_settings():
    """Derive settings with their own MLflow store: `training_settings(base, mlflow_dir, **training_changes)`."""
    return with_training


REPO = Path(__file__).resolve().parents[1]
AIRFLOW = REPO / ".venv-airflow" / "bin" / "airflow"
DAG_ID = "lakeforge_churn"
# The DAG and cluster runs test orchestration, not tuning (test_training does): one Hyperopt trial, in a
# range where a strong penalty cannot flatten that one model to a constant score (the gate would refuse it),
# of at most 10 iterations (AUC 0.916 on their data against 0.925 with 50, in about 70 s instead of 120 s).
ONE_TRIAL = [
    "use_case.training.max_evals=1",
    "use_case.training.search_space.regParam.high=0.01",
    *(f"use_case.training.fixed_params.{name}={value}" for name, value in FEW_ITERATIONS.items()),
]
# The jobs the tests start as processes of their own get the tests' shuffle partitions instead of their
# environment's 8 (local) or 16 (cluster). Measured on the DAG's eight jobs over 3,000 orders, each a fresh
# process: their executor threads used 69, 88 and 89 CPU-s with 16 partitions, 42 and 49 with 2.
FEW_PARTITIONS = [f"env.spark.conf.spark.sql.shuffle.partitions={SHUFFLE_PARTITIONS}"]


def set_arguments(overrides: list[str]) -> list[str]:
    """`["a=1", "b=2"]` as `lakeforge run` arguments: `["--set", "a=1", "--set", "b=2"]`."""
    return [argument for override in overrides for argument in ("--set", override)]


def _run(command: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=1800)
    if done.returncode:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        pytest.fail(f"{' '.join(command[:3])} exited {done.returncode}:\n{tail}")


@pytest.fixture(scope="session")
def pipeline_run(spark, tmp_path_factory):
    """Raw files to monitored predictions through the Airflow DAG, once per session: `airflow dags test` on
    a fresh SQLite Airflow home, every job a real `spark-submit` (SparkSubmitOperator, `spark_default` =
    local[2]). Airflow lives in its own environment (`.venv-airflow`, made by `setup.sh --dev`). The run
    takes the bootstrap branch (no champion yet: train and gate first) and, under the use case's own
    retraining policy, `no_retraining`. The retraining branch runs the same two jobs as the bootstrap
    branch; `test_airflow` checks its decision and wiring on the DAG itself, without two more drivers.
    The notebooks run on its tables.

    Returns (LAKEFORGE_HOME, task states by task id, Airflow log).
    """
    from lakeforge.config import load_use_case
    from lakeforge.datagen import BatchSpec, generate_batch

    if not AIRFLOW.exists():
        pytest.fail(f"{AIRFLOW} is missing: run ./setup.sh --dev (it installs Airflow in its own environment)")
    root = tmp_path_factory.mktemp("airflow")
    home, airflow_home, log = root / "lakeforge", root / "airflow-home", root / "airflow.log"
    env = {
        **os.environ,
        "LAKEFORGE_HOME": str(home),
        "LAKEFORGE_REPO": str(REPO),
        "LAKEFORGE_PYTHON": sys.executable,
        "LAKEFORGE_RETRIES": "0",  # a failing task fails the run now, not after two 5-minute retries
        "LAKEFORGE_SET": " ".join(FEW_PARTITIONS + ONE_TRIAL),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    # What `lakeforge generate-data --rows 3000 --seed 5` writes, in this worker's Spark: a driver of its own
    # would cost a cold JVM.
    churn = load_use_case("churn")
    generate_batch(spark, churn, str(home / "landing"), BatchSpec(3000, 5, 0))
    _run([str(AIRFLOW), "db", "migrate"], env, log)
    _run([str(AIRFLOW), "dags", "test", DAG_ID, "2026-03-01"], env, log)
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)).fetchall())
    return home, states, log


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(items):
    """Two xdist groups (`-n 2 --dist loadgroup` in pyproject.toml): the tests on the Airflow run's
    output (its DAG, the cluster run, the notebooks) share one session fixture and run their own Spark
    processes, so they run on one worker while the in-process Spark tests run on the other. The SQL
    server test also runs only processes of its own (PostgreSQL, Thrift, a writer job) and joins the
    first group; so do the crash test (a driver process it kills), the production-settings run, the
    maintenance use case, the CLI, the own-data and the medallion pipeline tests, which share no fixture with
    the in-process tests, so that the two groups end close together (in CI: 21 min of pytest before the
    production-settings run joined, the in-process group's simulation fixture alone 10 min)."""
    own_fixtures = {
        *("test_crash.py", "test_maintenance.py", "test_cli.py", "test_own_data.py", "test_pipeline.py"),
        "test_production_settings.py",
    }
    for item in items:
        own_processes = {"pipeline_run", "sql_server"} & set(item.fixturenames)
        group = "pipeline" if own_processes or item.path.name in own_fixtures else "in_process"
        item.add_marker(pytest.mark.xdist_group(group))
