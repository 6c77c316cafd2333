"""One session-scoped Spark (local[2], Delta, Hive metastore in a temp folder) and settings helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lakeforge.config import Environment, Paths, Schemas, SparkSettings


def make_environment(root: Path, suffix: str) -> Environment:
    """A local environment whose folders live under `root` and whose schemas end with `suffix`."""
    return Environment(
        name="test",
        spark=SparkSettings(
            mode="local",
            master="local[2]",
            conf={
                "spark.sql.shuffle.partitions": "2",
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
            checkpoints=str(root / "checkpoints"),
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
    from lakeforge.session import build_spark

    root = tmp_path_factory.mktemp("spark")
    os.environ["LAKEFORGE_HOME"] = str(root)
    env = make_environment(root, "session")
    session = build_spark(env, "lakeforge-tests")
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
