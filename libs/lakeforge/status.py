"""`lakeforge status`: where a use case stands, on one screen.

Every table of the environment's schemas with its Delta version and last write, the freshness of each
feature table, the champion and challenger with their test metrics and training window, the last
scoring date, the last drift verdict and retraining decision, and where the web views are. It reads
only: nothing is written, and a table or model that does not exist yet reads as missing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import mlflow
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeforge import feature_store, tables, tracking
from lakeforge.config import Settings
from lakeforge.feature_store import FeatureTableStatus

LAYERS = ("bronze", "silver", "gold", "features", "ops")
WINDOW_PARAMS = ("train_from", "validation_from", "test_from", "test_until", "labels_until")


@dataclass(frozen=True)
class TableState:
    name: str
    version: int | None
    last_write: dt.datetime | None
    operation: str | None


@dataclass(frozen=True)
class ModelState:
    alias: str
    version: str
    run_id: str
    auc_roc: float | None
    window: dict[str, str]


@dataclass(frozen=True)
class Status:
    use_case: str
    tables: list[TableState]
    features: list[FeatureTableStatus]
    models: list[ModelState]
    last_scoring_date: dt.date | None
    last_decision: dict[str, object] | None
    views: dict[str, str] = field(default_factory=dict)


def table_states(spark: SparkSession, settings: Settings) -> list[TableState]:
    """Each table in the environment's five schemas: its Delta version, last write and operation."""
    states = []
    for layer in LAYERS:
        for table_name in tables.schema_tables(spark, settings.schema(layer)):
            name = settings.table_ref(layer, table_name)
            try:
                last = spark.sql(f"DESCRIBE HISTORY {name.sql} LIMIT 1").first()
            except Exception:  # a view, or a table that is not Delta: listed without a version
                states.append(TableState(name.plain, None, None, None))
                continue
            states.append(TableState(name.plain, last.version, last.timestamp, last.operation))
    return states


def model_states(settings: Settings) -> list[ModelState]:
    """The champion and the challenger (when they differ), with test AUC and the logged training window."""
    if settings.use_case.training is None:
        return []
    tracking.configure(settings)
    name = tracking.registered_model_name(settings)
    states, seen = [], set()
    for alias in (tracking.CHAMPION, tracking.CHALLENGER):
        version = tracking.version_by_alias(name, alias)
        if version is None or version.version in seen:
            continue
        seen.add(version.version)
        run = mlflow.get_run(version.run_id)
        window = {key: run.data.params[key] for key in WINDOW_PARAMS if run.data.params.get(key)}
        auc = run.data.metrics.get("test_auc_roc")
        states.append(ModelState(alias, str(version.version), version.run_id, auc, window))
    return states


def _rows_if_written(spark: SparkSession, table: str):
    """The table's rows, or None while no step has written it."""
    return tables.read_table(spark, table) if tables.table_exists(spark, table) else None


def last_scoring_date(spark: SparkSession, settings: Settings) -> dt.date | None:
    scoring = settings.use_case.scoring
    if scoring is None:
        return None
    rows = _rows_if_written(spark, settings.table("gold", scoring.table))
    return None if rows is None else rows.agg(F.max("scoring_date")).first()[0]


def last_decision(spark: SparkSession, settings: Settings) -> dict[str, object] | None:
    """The newest retraining decision: date, version, action, drifted share, prediction PSI, why."""
    monitoring = settings.use_case.monitoring
    if monitoring is None:
        return None
    rows = _rows_if_written(spark, settings.table("ops", monitoring.decisions_table))
    row = None if rows is None else rows.orderBy(F.col("scoring_date").desc(), F.col("decided_at").desc()).first()
    if row is None:
        return None
    keys = ("scoring_date", "model_version", "action", "drifted_share", "prediction_psi", "reasons", "held_back")
    return {key: row[key] for key in keys} | {"outcome": row["outcome"]}


def views(settings: Settings) -> dict[str, str]:
    """Where to look next: the MLflow UI, Great Expectations' Data Docs, the Evidently reports."""
    uri = tracking.tracking_uri(settings)
    mlflow_ui = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1" if uri.startswith("sqlite:") else f"open {uri}"
    reports = settings.env.path("reports")
    return {
        "MLflow UI": mlflow_ui,
        "Data Docs": f"{settings.env.path('data_docs')}/index.html",
        "Evidently reports": f"{reports}/monitoring/{settings.use_case.name}/",
    }


def collect(spark: SparkSession, settings: Settings) -> Status:
    features = feature_store.statuses(spark, settings) if settings.use_case.features else []
    return Status(
        settings.use_case.name,
        table_states(spark, settings),
        features,
        model_states(settings),
        last_scoring_date(spark, settings),
        last_decision(spark, settings),
        views(settings),
    )


def render(status: Status) -> list[str]:
    """The screen, as lines."""
    lines = [f"use case {status.use_case}", "", "tables:"]
    for table in status.tables:
        written = (
            "no Delta history" if table.version is None else f"v{table.version}  {table.last_write:%Y-%m-%d %H:%M:%S}"
        )
        lines.append(f"  {table.name:<48} {written}  {table.operation or ''}".rstrip())
    if not status.tables:
        lines.append("  none yet: run `lakeforge run all`")
    lines += ["", "feature freshness:"]
    for feature in status.features:
        age = "never refreshed" if feature.age_hours is None else f"{feature.age_hours:.1f} h old"
        verdict = "STALE" if feature.stale else "fresh"
        lines.append(f"  {feature.name:<28} {verdict}  ({age}, max {feature.max_age_hours:g} h)")
    lines += ["", "models:"]
    for model in status.models:
        auc = "-" if model.auc_roc is None else f"{model.auc_roc:.4f}"
        window = ", ".join(f"{key} {value}" for key, value in model.window.items())
        lines.append(f"  {model.alias:<10} version {model.version}  test AUC-ROC {auc}  {window}  run {model.run_id}")
    if not status.models:
        lines.append("  none registered")
    lines += ["", f"last scoring date: {status.last_scoring_date or 'never scored'}"]
    decision = status.last_decision
    if decision is None:
        lines.append("last decision: never monitored")
    else:
        psi = decision["prediction_psi"]
        lines.append(
            f"last decision: {decision['scoring_date']} version {decision['model_version']}: {decision['action']} "
            f"(drifted share {decision['drifted_share']:.0%}, prediction PSI {'-' if psi is None else f'{psi:.3f}'})"
        )
        why = "; ".join(decision["reasons"] or []) or "no clause fired"
        lines.append(f"  why: {why}" + (f" (held back: {decision['held_back']})" if decision["held_back"] else ""))
    lines += ["", "web views:"]
    lines += [f"  {name}: {where}" for name, where in status.views.items()]
    return lines
