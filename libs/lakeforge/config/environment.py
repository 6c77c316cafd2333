"""The environment schema: where the jobs run (Spark, catalog and schema names, paths, tracking).

One overlay per environment (`conf/envs/<name>.yml`) holds only what differs from the defaults here;
an overlay may name another it extends (`extends: local`), merged key by key beneath it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from lakeforge.config.fields import Identifier, Strict

CATALOG_PLACEHOLDER = "{catalog}"


def lakeforge_home() -> Path:
    """Everything a local run writes lives under this one folder (default `./.lakeforge`)."""
    return Path(os.environ.get("LAKEFORGE_HOME", ".lakeforge")).resolve()


class Tracking(Strict):
    """Where MLflow tracks runs and registers models.

    Unset, runs go to an embedded SQLite store under LAKEFORGE_HOME (no server). Set `tracking_uri`
    to an `http://` MLflow server or `databricks`; `registry_uri` `databricks-uc` registers models
    in Unity Catalog as `catalog.schema.model`. `experiment_path` names the experiment's workspace path when
    a deployment declares the experiment itself (the bundle does, one per target); unset, it is derived from
    the use case's `training.experiment`.
    """

    tracking_uri: str | None = None
    registry_uri: str | None = None
    model_schema: str | None = None
    experiment_path: str | None = None


class SparkSettings(Strict):
    """How to get a SparkSession in this environment."""

    mode: Literal["local", "cluster", "databricks"]
    master: str | None = None
    conf: dict[str, str] = Field(default_factory=dict)


class Schemas(Strict):
    bronze: Identifier = "bronze"
    silver: Identifier = "silver"
    gold: Identifier = "gold"
    features: Identifier = "features"
    ops: Identifier = "ops"


class Paths(Strict):
    """Folders; relative ones are resolved under LAKEFORGE_HOME. `{catalog}` stands for the environment's catalog
    (a Unity Catalog volume per catalog keeps each deployment target's files apart)."""

    landing: str = "landing"
    data_docs: str = "reports/data_docs"
    gx_project: str = "gx"
    warehouse: str = "warehouse"
    metastore: str = "metastore"
    artifacts: str = "artifacts"
    mlflow: str = "mlflow"
    reports: str = "reports"


class Retraining(Strict):
    """What the monitoring job does when the policy fires.

    `local` runs training and the gate in the same process; `record` only records the decision (an
    Airflow DAG branches on it); `databricks` triggers the bundle's training job through the Jobs
    API, its id from `training_job_id` or the environment variable named by `training_job_id_env`.
    """

    trigger: Literal["local", "record", "databricks"] = "local"
    training_job_id: int | None = None
    training_job_id_env: str = "LAKEFORGE_TRAINING_JOB_ID"
    wait: bool = True
    timeout_minutes: int = Field(default=120, ge=1)


class Maintenance(Strict):
    """`lakeforge run maintain`: VACUUM keeps the files of every version younger than `retain_hours` (Delta's
    default is 168, 7 days; below it the environment overrides Delta's safety check, so keep it there wherever
    another process may read or write the tables). Versions that live models read are kept regardless."""

    retain_hours: int = Field(default=168, ge=0)


class Environment(Strict):
    """Where the jobs run: Spark settings, catalog and schema names, paths."""

    name: str
    spark: SparkSettings
    catalog: Identifier | None = None
    schemas: Schemas = Schemas()
    paths: Paths = Paths()
    tracking: Tracking = Tracking()
    retraining: Retraining = Retraining()
    maintenance: Maintenance = Maintenance()

    @model_validator(mode="after")
    def _catalog_for_paths(self) -> Environment:
        needing = [name for name, value in self.paths if CATALOG_PLACEHOLDER in value]
        if needing and not self.catalog:
            raise ValueError(f"paths {', '.join(needing)} name {CATALOG_PLACEHOLDER}, and no catalog is set")
        return self

    def path(self, name: str) -> str:
        """An absolute path for one of `paths`, resolved under LAKEFORGE_HOME when relative."""
        raw = getattr(self.paths, name).replace(CATALOG_PLACEHOLDER, self.catalog or CATALOG_PLACEHOLDER)
        if "://" in raw or raw.startswith("/"):
            return raw
        return str(lakeforge_home() / raw)
