"""What differs between the places lakeforge runs, answered in one place.

`Platform(env)` for an environment's `spark.mode`:
- local: a laptop; `local[*]` (or the environment's master), Derby metastore and warehouse under
  LAKEFORGE_HOME, and a `spark-defaults.conf` written for spark-sql and beeline;
- cluster: open-source Spark launched by spark-submit, which gives the master;
- databricks: the runtime's session, experiments under `/Shared/lakeforge/`, task values for the jobs.
No other module asks which platform it is on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from lakeforge import session
from lakeforge.config import Environment

log = logging.getLogger(__name__)

RUNTIME_VARIABLE = "DATABRICKS_RUNTIME_VERSION"


def on_databricks_runtime() -> bool:
    """Whether this process runs on a Databricks runtime (a notebook or a job there)."""
    return RUNTIME_VARIABLE in os.environ


def default_environment() -> str:
    """The environment a notebook opens without being told: `databricks` there, `local` elsewhere."""
    return "databricks" if on_databricks_runtime() else "local"


def dbutils() -> Any | None:
    """Databricks' dbutils when running there, else None."""
    if not on_databricks_runtime():
        return None
    from databricks.sdk.runtime import dbutils as runtime_dbutils

    return runtime_dbutils


@dataclass(frozen=True)
class Platform:
    env: Environment

    @property
    def kind(self) -> str:
        return self.env.spark.mode

    @property
    def master(self) -> str | None:
        """The master this process sets: only a local one (spark-submit and Databricks give theirs)."""
        return (self.env.spark.master or "local[*]") if self.kind == "local" else None

    @property
    def writes_spark_defaults(self) -> bool:
        """Whether a run leaves `spark-defaults.conf` for spark-sql and beeline on the same metastore."""
        return self.kind == "local"

    def spark_conf(self, app_name: str) -> dict[str, str]:
        return session.spark_conf(self.env, app_name, self.master)

    def session(self, app_name: str = "lakeforge"):
        """The SparkSession: the runtime's on Databricks, else one configured by `session.build_session`."""
        if self.kind == "databricks":
            from pyspark.sql import SparkSession

            return SparkSession.builder.getOrCreate()
        return session.build_session(self.env, app_name, self.master)

    def experiment_name(self, name: str) -> str:
        """Databricks keeps experiments in the workspace tree; elsewhere the name is the path."""
        return f"/Shared/lakeforge/{name}" if self.env.tracking.tracking_uri == "databricks" else name

    def set_task_value(self, key: str, value: str) -> bool:
        """Set a Databricks job task value; False where there are none (off Databricks, or no runtime)."""
        if self.kind != "databricks":
            return False
        try:
            from databricks.sdk.runtime import dbutils as runtime_dbutils
        except ImportError:
            log.warning("no Databricks runtime here: task value '%s' not set", key)
            return False
        runtime_dbutils.jobs.taskValues.set(key=key, value=value)
        return True
