"""The monitoring reference: a model version's training set, scored by that version, saved once.

The gate saves it when it promotes a version, from the training set it has just rebuilt to judge
it. The monitor reads it on every run instead of rebuilding that set from the Delta versions the
training run logged: time travel to those versions stops working once VACUUM or log retention
removes them, which a champion that lives for months outlasts. A version promoted before this table
existed gets its reference on its first monitor run.

One table per environment (`ops.<monitoring.reference_table>`), rows keyed by the version's
training run id (unique across registries; its model name and version are stored beside it); saving
a version again replaces its rows in one transaction.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeforge import modeling, tables
from lakeforge.config import Settings, Training

MODEL_COLUMNS = ["model_name", "model_version", "run_id"]


def columns(training: Training) -> list[str]:
    """What drift compares: the model's numeric and categorical inputs, its score and predicted label."""
    return [*training.numeric_features, *training.categorical_features, modeling.SCORE, "predicted_label"]


def table_name(settings: Settings) -> str | None:
    """The reference table, or None when the use case declares no monitoring."""
    monitoring = settings.use_case.monitoring
    return None if monitoring is None else settings.table("ops", monitoring.reference_table)


def save(
    spark: SparkSession,
    settings: Settings,
    training: Training,
    rows: DataFrame,
    *,
    model_name: str,
    model_version: str,
    run_id: str,
) -> None:
    """Score the training rows (train and validation windows) with the version and replace its reference."""
    table = table_name(settings)
    if table is None:
        return
    tables.ensure_schema(spark, settings.schema("ops"))
    scored = modeling.score_rows(spark, f"models:/{model_name}/{model_version}", rows, training.decision_threshold)
    keyed = scored.select(
        F.lit(model_name).alias("model_name"),
        F.lit(str(model_version)).alias("model_version"),
        F.lit(run_id).alias("run_id"),
        *columns(training),
    )
    tables.replace_rows(keyed, table, {"run_id": run_id})


def load(spark: SparkSession, settings: Settings, training: Training, run_id: str) -> DataFrame | None:
    """The reference of the version trained by `run_id` (the drift columns only), or None when never saved."""
    table = table_name(settings)
    if table is None or not tables.table_exists(spark, table):
        return None
    rows = tables.read_table(spark, table).where(F.col("run_id") == F.lit(run_id))
    if not rows.limit(1).count():
        return None
    return rows.select(*columns(training))
