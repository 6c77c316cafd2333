"""What differs between the places lakeforge runs, answered in one place.

`Platform(env)` for an environment's `spark.mode`:
- local: a laptop; `local[*]` (or the environment's master), Derby metastore and warehouse under
  LAKEFORGE_HOME, and a `spark-defaults.conf` written for spark-sql and beeline;
- cluster: open-source Spark launched by spark-submit, which gives the master;
- databricks: the runtime's session, experiments under `/Shared/lakeforge/`, task values for the jobs.
No other module asks which platform it is on. That includes how a retrain starts (`start_training`):
in this process, by the scheduler reading the recorded decision, or as the bundle's Databricks job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

from lakeforge import session
from lakeforge.config import Environment
from lakeforge.errors import LakeforgeError

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
        """The SparkSession: the runtime's on Databricks, else one configured by `session.build_session`
        (locally, after making LAKEFORGE_HOME owner-only: see `session.private_home`)."""
        if self.kind == "databricks":
            from pyspark.sql import SparkSession

            return SparkSession.builder.getOrCreate()
        if self.kind == "local":
            session.private_home()
        return session.build_session(self.env, app_name, self.master)

    def experiment_name(self, name: str) -> str:
        """The deployment's own experiment path when it declares one; else Databricks keeps experiments in the
        workspace tree, and elsewhere the name is the path."""
        if self.env.tracking.experiment_path:
            return self.env.tracking.experiment_path
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

    @property
    def trains_in_process(self) -> bool:
        """Whether a retrain the monitor asks for runs in this process (`retraining.trigger: local`)."""
        return self.env.retraining.trigger == "local"

    def start_training(self, use_case: str, reasons: list[str], scoring_date: dt.date, job_id: int | None) -> str:
        """Start a retrain elsewhere and say what was done: leave it to the scheduler (`record`: the Airflow
        DAG branches on the recorded decision) or run the bundle's training job (`databricks`), idempotent
        per use case and scoring date. A platform that trains in process has nothing to start here."""
        retraining = self.env.retraining
        if retraining.trigger == "record":
            return "recorded: the scheduler starts training"
        if retraining.trigger != "databricks":
            raise LakeforgeError(f"retraining trigger '{retraining.trigger}' trains in process, not through a job")
        from lakeforge import databricks_jobs

        run_id = databricks_jobs.run_training_job(
            self.training_job_id(job_id),
            {"use_case": use_case, "retraining_reason": "; ".join(reasons)[:1000]},
            idempotency_token=f"lakeforge-retrain-{use_case}-{scoring_date.isoformat()}",
            wait=retraining.wait,
            timeout=dt.timedelta(minutes=retraining.timeout_minutes),
        )
        return f"Databricks run {run_id}"

    def training_job_id(self, override: int | None) -> int:
        """The bundle's training job: `--training-job-id`, else the environment file, else its variable."""
        retraining = self.env.retraining
        raw = override or retraining.training_job_id or os.environ.get(retraining.training_job_id_env)
        if not raw:
            raise LakeforgeError(
                f"retraining fired but no Databricks training job id is set: pass --training-job-id, set "
                f"retraining.training_job_id in the environment file, or ${retraining.training_job_id_env}"
            )
        try:
            return int(raw)
        except ValueError as exc:
            raise LakeforgeError(f"the Databricks training job id must be a number, not {raw!r}") from exc
