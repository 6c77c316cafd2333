"""Training sets: built point in time, split by time, and rebuilt from what a training run logged.

The training job builds a set here; the gate and the monitor rebuild a run's own set from the Delta
versions, text pipeline and resolved time window it logged, so neither needs the training job.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import mlflow
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeforge import feature_store, modeling, tables
from lakeforge.config import Settings, TimeSplit, Training
from lakeforge.errors import LakeforgeError, TrainingDataError
from lakeforge.text import vector_column

log = logging.getLogger(__name__)

LINEAGE_ARTIFACT = "lineage.json"
PARAMS_ARTIFACT = "best_params.json"
TRAINING_ARTIFACT = "training_config.json"
# The newest label date a run trained or tested on: the monitor compares it with the labels that exist now.
LABELS_UNTIL_TAG = "lakeforge.labels_until"


@dataclass(frozen=True)
class PreparedData:
    """The time-split training set and what it was built from (Delta versions, the text pipeline that
    computed the stored TF-IDF vectors, the time window with a relative split resolved to dates)."""

    train: DataFrame
    validation: DataFrame
    test: DataFrame
    versions: dict[str, int]
    text_vector: str | None
    text_size: int | None
    text_pipeline_path: str | None
    raw_columns: list[str]
    split: TimeSplit
    labels_until: dt.date


def training_config(settings: Settings) -> Training:
    if settings.use_case.training is None:
        raise LakeforgeError(f"use case '{settings.use_case.name}' declares no training: add a 'training' section")
    return settings.use_case.training


def prepare(
    spark: SparkSession,
    settings: Settings,
    training: Training,
    versions: dict[str, int] | None = None,
    text_pipeline_path: str | None = None,
) -> PreparedData:
    """Build the point-in-time training set (at `versions` when reproducing) and split it by time."""
    built = feature_store.training_set(spark, settings, versions)
    text_vector = text_size = None
    if training.text_feature_table:
        spec = settings.use_case.features.tables[training.text_feature_table].text
        text_pipeline_path = text_pipeline_path or feature_store.text_pipeline_path(
            spark, settings, training.text_feature_table
        )
        text_vector, text_size = vector_column(spec), spec.num_features
    rows = modeling.with_label(modeling.model_input(built.rows, training), built.label).persist()
    newest = rows.agg(F.max(F.to_date(built.timestamp))).first()[0]
    if newest is None:
        raise TrainingDataError(f"{tables.plain_name(next(iter(built.versions)))} has no labels to train on")
    split = training.split.resolve(newest)
    train, validation, test = modeling.split_by_time(rows, built.timestamp, split)
    counts = modeling.require_rows({"train": train, "validation": validation, "test": test}, modeling.LABEL)
    labels_until = min(newest, split.test_until - dt.timedelta(days=1)) if split.test_until else newest
    log.info("training set: %s rows by window %s, versions %s", counts, window_params(split), built.versions)
    return PreparedData(
        train,
        validation,
        test,
        built.versions,
        text_vector,
        text_size,
        text_pipeline_path,
        modeling.raw_feature_columns(training, text_vector),
        split,
        labels_until,
    )


def window_params(split: TimeSplit) -> dict[str, str]:
    """A resolved split as run parameters: the dates each window starts and ends ('' when open)."""
    names = ("train_from", "validation_from", "test_from", "test_until")
    return {name: (getattr(split, name).isoformat() if getattr(split, name) else "") for name in names}


def logged_training(run_id: str) -> Training:
    """The training config a run logged (its features, threshold, search and resolved window), not today's."""
    return Training.model_validate(mlflow.artifacts.load_dict(f"runs:/{run_id}/{TRAINING_ARTIFACT}"))


def logged_versions(lineage: dict[str, Any]) -> dict[str, int]:
    return {tables.quoted_name(table): int(version) for table, version in lineage["versions"].items()}


def logged_run_versions(run_id: str) -> dict[str, int]:
    """The Delta version of every table a training run's training set was built from."""
    return logged_versions(mlflow.artifacts.load_dict(f"runs:/{run_id}/{LINEAGE_ARTIFACT}"))


def logged_training_set(spark: SparkSession, settings: Settings, run_id: str) -> tuple[Training, PreparedData]:
    """A training run's own config and its training set, rebuilt from the Delta versions it logged."""
    training = logged_training(run_id)
    lineage = mlflow.artifacts.load_dict(f"runs:/{run_id}/{LINEAGE_ARTIFACT}")
    return training, prepare(spark, settings, training, logged_versions(lineage), lineage.get("text_pipeline"))


def logged_labels_until(run_id: str) -> dt.date | None:
    """The newest label date a run used, if it recorded one (runs before the tag existed did not)."""
    value = mlflow.get_run(run_id).data.tags.get(LABELS_UNTIL_TAG)
    return dt.date.fromisoformat(value) if value else None
