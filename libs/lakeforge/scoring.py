"""Batch scoring: the champion scores every entity's features as of a date (or, with `scoring.mode: events`,
every event of the date with its features as of its own time), distributed.

Features come through `feature_store.rows_to_score`, the as-of lookup training uses. A Spark ML champion
scores with its own `transform`; a scikit-learn champion (single-node engine) through
`mlflow.pyfunc.spark_udf`. Predictions replace that date's partition (`replaceWhere`), so a rerun
never duplicates. A missing champion, a stale feature table or rows that do not match the model's
signature stop the job before anything is written.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import mlflow
from mlflow.types.schema import SparkMLVector
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeforge import feature_store, modeling, tables, tracking
from lakeforge.config import Scoring, Settings
from lakeforge.errors import LakeforgeError, SchemaMismatch, StaleFeatures

log = logging.getLogger(__name__)

SCORING_DATE = "scoring_date"
SIGNATURE_TYPES = {
    "double": (T.DoubleType, T.FloatType),
    "float": (T.DoubleType, T.FloatType),
    "long": (T.LongType, T.IntegerType),
    "integer": (T.IntegerType,),
    "string": (T.StringType,),
    "boolean": (T.BooleanType,),
}


@dataclass(frozen=True)
class ScoringResult:
    table: str
    scoring_date: dt.date
    rows: int
    model_name: str
    model_version: str
    run_id: str


def _scoring(settings: Settings) -> Scoring:
    if settings.use_case.scoring is None or settings.use_case.training is None:
        raise LakeforgeError(f"use case '{settings.use_case.name}' declares no training and scoring sections")
    return settings.use_case.scoring


def latest_feature_date(spark: SparkSession, settings: Settings) -> dt.date:
    """The default scoring date: the day after the newest data any feature table holds."""
    ends = [
        dt.datetime.fromisoformat(status.properties["window_end"]).date()
        for status in feature_store.statuses(spark, settings)
        if status.properties.get("window_end")
    ]
    if not ends:
        raise StaleFeatures("no feature table has been computed yet: run `lakeforge run features` first")
    return max(ends)


def check_fresh(spark: SparkSession, settings: Settings, now: dt.datetime | None = None) -> None:
    """Refuse to score from a feature table older than its configured max age."""
    stale = [
        status
        for status in (feature_store.status(spark, settings, n, now) for n in settings.use_case.features.tables)
        if status.stale
    ]
    if stale:
        described = ", ".join(
            f"{s.name} (refreshed {s.properties.get('refreshed_at', 'never')}, max age {s.max_age_hours:g} h)"
            for s in stale
        )
        raise StaleFeatures(f"feature tables older than their max age: {described}; run `lakeforge run features`")


def check_signature(rows: DataFrame, schema) -> None:
    """Every input the model declares must be present with a compatible type."""
    problems = []
    for spec in schema.inputs:
        if spec.name not in rows.columns:
            problems.append(f"{spec.name} is missing")
            continue
        actual = rows.schema[spec.name].dataType
        if isinstance(spec.type, SparkMLVector):
            if not isinstance(actual, VectorUDT):
                problems.append(f"{spec.name} is {actual.simpleString()}, the model expects a Spark ML vector")
            continue
        expected = str(getattr(spec.type, "name", spec.type)).lower()
        allowed = SIGNATURE_TYPES.get(expected)
        if allowed and not isinstance(actual, allowed):
            problems.append(f"{spec.name} is {actual.simpleString()}, the model expects {expected}")
    if problems:
        raise SchemaMismatch(f"the rows to score do not match the model's signature: {'; '.join(problems)}")


def prediction_rows(
    scored: DataFrame, keys: list[str], scoring_date: dt.date, model_name: str, version: str, run_id: str
) -> DataFrame:
    """The predictions table's columns: the key (entity, or event with its entity and time), the date,
    score and label, and the model."""
    return scored.select(
        *keys,
        F.lit(scoring_date).alias(SCORING_DATE),
        F.col(modeling.SCORE).alias("score"),
        "predicted_label",
        F.lit(model_name).alias("model_name"),
        F.lit(version).alias("model_version"),
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("scored_at"),
    )


def run(
    spark: SparkSession,
    settings: Settings,
    scoring_date: dt.date | None = None,
    now: dt.datetime | None = None,
) -> ScoringResult:
    """Score every entity as of the start of `scoring_date` (default: the newest feature date)."""
    scoring = _scoring(settings)
    training = settings.use_case.training
    tracking.configure(settings)
    name = tracking.registered_model_name(settings)
    champion = tracking.require_version(name, tracking.CHAMPION)
    check_fresh(spark, settings, now)
    scoring_date = scoring_date or default_scoring_date(spark, settings)
    features, _ = feature_store.rows_to_score(spark, settings, scoring_date)
    rows = modeling.model_input(features, training)
    model_uri = f"models:/{name}/{champion.version}"
    check_signature(rows, mlflow.models.get_model_info(model_uri).signature)
    keys = prediction_columns(settings)
    scored = modeling.score_rows(spark, model_uri, rows, training.decision_threshold)
    if scoring.mode == "events":
        scored = scored.withColumnRenamed(feature_store.spine_time(settings), scoring.event_time)
    predictions = prediction_rows(scored, keys, scoring_date, name, str(champion.version), champion.run_id)
    target = settings.table("gold", scoring.table)
    tables.ensure_schema(spark, settings.schema("gold"))
    tables.replace_partition(predictions, target, SCORING_DATE, scoring_date.isoformat())
    _register_view(spark, settings, scoring, feature_store.prediction_keys(settings))
    count = tables.read_table(spark, target).where(F.col(SCORING_DATE) == F.lit(scoring_date)).count()
    log.info("score: %d predictions for %s from %s version %s", count, scoring_date, name, champion.version)
    return ScoringResult(target, scoring_date, count, name, str(champion.version), champion.run_id)


def prediction_columns(settings: Settings) -> list[str]:
    """The key columns a prediction row carries: the entity keys, or the event key, entity keys and event time."""
    scoring = settings.use_case.scoring
    keys = feature_store.prediction_keys(settings)
    if scoring.mode == "entities":
        return keys
    return [*feature_store.with_entity_keys(settings, keys), scoring.event_time]


def default_scoring_date(spark: SparkSession, settings: Settings) -> dt.date:
    """The newest feature date, or (events mode) the date of the newest event."""
    if settings.use_case.scoring.mode == "entities":
        return latest_feature_date(spark, settings)
    newest = feature_store.newest_event_date(spark, settings)
    if newest is None:
        raise LakeforgeError(f"the events table {settings.use_case.scoring.events} holds no event to score")
    return newest


def _register_view(spark: SparkSession, settings: Settings, scoring: Scoring, entity: list[str]) -> None:
    predictions = settings.table("gold", scoring.table)
    entities = feature_store.source_table(settings, scoring.view_table)
    extra = ", ".join(f"e.`{c}`" for c in scoring.entity_columns)
    keys = " AND ".join(f"p.`{k}` = e.`{k}`" for k in entity)
    query = f"SELECT p.*{', ' + extra if extra else ''} FROM {predictions} p LEFT JOIN {entities} e ON {keys}"
    tables.replace_view(spark, settings.table("gold", scoring.view), query)
