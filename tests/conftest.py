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
