"""The monitoring job: drift of a model's inputs and scores, its quality once labels arrive, and the
retraining decision.

For one scoring date it takes the model that wrote that date's predictions and
- reads that model's reference: its training set scored by it, saved when the gate promoted it
  (`reference`), so feature and prediction drift share one baseline. A model promoted before the
  reference table existed has its training set rebuilt from its logged Delta versions, scored and
  saved on its first run;
- compares the date's features and scores against it in Spark (`drift.compare`), applies the
  per-feature rules (`monitoring.features`: a feature that only records, or its own threshold) and
  upserts one row per column and statistic into the drift-metrics table, plus an Evidently HTML
  report on a bounded sample stratified by predicted label, logged to MLflow;
- joins every prediction that has a label by now to it and upserts quality per scoring date;
- applies the retraining policy to that evidence (new labels past the model's training window,
  the cool-down since the last retrain) and records the decision and why.
It decides and returns; it never trains. The layer above (`pipeline`, or a scheduler reading the
decision file or the Databricks task value) acts on the decision.
Every write is a MERGE on the row's keys: rerunning a date replaces its rows, never duplicates them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeforge import atomic, drift, feature_store, modeling, quality, reference, tables, tracking, training_data
from lakeforge.config import Monitoring, Settings, Training
from lakeforge.errors import LakeforgeError, MissingPredictions
from lakeforge.platforms import Platform
from lakeforge.policy import Evidence, RetrainingDecision, decide

log = logging.getLogger(__name__)

PREDICTION_COLUMN = modeling.SCORE
DRIFT_KEYS = ["scoring_date", "model_version", "feature", "statistic"]
WINDOW_KEYS = ["scoring_date", "model_version"]


@dataclass(frozen=True)
class MonitorResult:
    scoring_date: dt.date
    model_name: str
    model_version: str
    drift: list[drift.ColumnDrift]
    drifted_share: float
    prediction_psi: float | None
    recent_auc: list[float]
    decision: RetrainingDecision
    triggered: str
    report: str
    evidence: Evidence = Evidence()


def stratified_sample(rows: DataFrame, column: str, size: int, seed: int) -> DataFrame:
    """At most `size` rows, each value of `column` keeping its share (and at least a few rows if it has them)."""
    counts = {row[column]: row["count"] for row in rows.groupBy(column).count().collect()}
    total = sum(counts.values())
    if total <= size:
        return rows
    floor = max(1, size // (10 * len(counts)))
    quota = {value: min(n, max(floor, int(size * n / total))) for value, n in counts.items()}
    fractions = {value: min(1.0, 1.2 * quota[value] / n) for value, n in counts.items()}
    sampled = rows.sampleBy(column, fractions, seed)
    order = Window.partitionBy(column).orderBy(F.rand(seed))
    limits = F.create_map(*[F.lit(x) for value, q in quota.items() for x in (value, q)])
    return sampled.withColumn("_n", F.row_number().over(order)).where(F.col("_n") <= limits[F.col(column)]).drop("_n")


def _monitoring(settings: Settings) -> Monitoring:
    if settings.use_case.monitoring is None:
        raise LakeforgeError(f"use case '{settings.use_case.name}' declares no monitoring: add a 'monitoring' section")
    return settings.use_case.monitoring


def _predictions_for(
    spark: SparkSession, settings: Settings, scoring_date: dt.date | None
) -> tuple[DataFrame, dt.date]:
    table = settings.table("gold", settings.use_case.scoring.table)
    if not tables.table_exists(spark, table):
        raise MissingPredictions(f"{table} does not exist: run `lakeforge run score` first")
    predictions = tables.read_table(spark, table)
    if scoring_date is None:
        scoring_date = predictions.agg(F.max("scoring_date")).first()[0]
        if scoring_date is None:
            raise MissingPredictions(f"{table} is empty: run `lakeforge run score` first")
    return predictions, scoring_date


def reference_rows(spark: SparkSession, settings: Settings, model) -> tuple[Training, DataFrame]:
    """The model's logged training config and its saved reference, saved first if it never was."""
    training = training_data.logged_training(model.run_id)
    saved = reference.load(spark, settings, training, model.run_id)
    if saved is not None:
        return training, saved
    log.info(
        "monitor: no saved reference for %s version %s: rebuilding its training set from the logged Delta versions",
        model.model_name,
        model.model_version,
    )
    _, data = training_data.logged_training_set(spark, settings, model.run_id)
    rows = data.train.unionByName(data.validation)
    reference.save(spark, settings, training, rows, **model.asDict())
    return training, reference.load(spark, settings, training, model.run_id)


def measure_drift(
    spark: SparkSession, settings: Settings, scoring_date: dt.date, model, current_predictions: DataFrame
) -> tuple[list[drift.ColumnDrift], DataFrame, DataFrame, list[str], list[str]]:
    """The model's reference (its training set, scored by it) against the date's features and predictions."""
    monitoring = _monitoring(settings)
    training, reference_set = reference_rows(spark, settings, model)
    numeric, categorical = list(training.numeric_features), list(training.categorical_features)
    columns = reference.columns(training)
    features, _ = feature_store.rows_to_score(spark, settings, scoring_date)
    keys = feature_store.prediction_keys(settings)
    current = (
        modeling.model_input(features, training)
        .join(current_predictions.select(*keys, PREDICTION_COLUMN, "predicted_label"), keys)
        .select(*columns)
    )
    reference_set, current = reference_set.persist(), current.persist()
    results = drift.compare(
        reference_set,
        current,
        [*numeric, PREDICTION_COLUMN],
        categorical,
        monitoring.numeric_tests,
        monitoring.categorical_tests,
        monitoring.thresholds,
    )
    return drift.apply_rules(results, monitoring.features), reference_set, current, numeric, categorical


def drift_rows(spark: SparkSession, results: list[drift.ColumnDrift], scoring_date: dt.date, model) -> DataFrame:
    rows = [
        (
            scoring_date,
            model.model_name,
            model.model_version,
            model.run_id,
            r.column,
            "prediction" if r.column == PREDICTION_COLUMN else "feature",
            r.statistic,
            float(r.value),
            float(r.threshold),
            r.drifted,
            r.decides,
            r.reference_rows,
            r.current_rows,
        )
        for r in results
    ]
    schema = (
        "scoring_date date, model_name string, model_version string, run_id string, feature string, kind string, "
        "statistic string, value double, threshold double, drifted boolean, decides boolean, "
        "reference_rows long, current_rows long"
    )
    return spark.createDataFrame(rows, schema).withColumn("monitored_at", F.current_timestamp())


def drift_summary(results: list[drift.ColumnDrift]) -> tuple[float, float | None]:
    """The share of features whose deciding test drifted, and the prediction's PSI (if measured)."""
    deciding = [r for r in results if r.decides and r.column != PREDICTION_COLUMN]
    share = sum(r.drifted for r in deciding) / len(deciding) if deciding else 0.0
    psi = next((r.value for r in results if r.column == PREDICTION_COLUMN and r.statistic == "psi"), None)
    return share, psi


def write_report(
    monitoring: Monitoring,
    reference: DataFrame,
    current: DataFrame,
    numeric: list[str],
    categorical: list[str],
    path: Path,
) -> Path:
    """Evidently's DataDriftPreset, with our deciding tests and thresholds, on a stratified sample of each side."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    size, seed = monitoring.report_sample_rows, 17
    ref_pd = stratified_sample(reference, "predicted_label", size, seed).toPandas()
    cur_pd = stratified_sample(current, "predicted_label", size, seed).toPandas()
    definition = DataDefinition(numerical_columns=[*numeric, PREDICTION_COLUMN], categorical_columns=categorical)
    numeric_test, categorical_test = monitoring.numeric_tests[0], monitoring.categorical_tests[0]
    preset = DataDriftPreset(
        columns=[*numeric, PREDICTION_COLUMN, *categorical],
        num_method=numeric_test,
        cat_method=categorical_test,
        num_threshold=monitoring.thresholds[numeric_test],
        cat_threshold=monitoring.thresholds[categorical_test],
        drift_share=monitoring.retraining.max_drifted_share or 0.5,
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(cur_pd, data_definition=definition),
        Dataset.from_pandas(ref_pd, data_definition=definition),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path


def measure_quality(spark: SparkSession, settings: Settings, predictions: DataFrame) -> DataFrame:
    """Quality per scoring date of every prediction whose label has arrived, upserted; returns the table."""
    labels_config = settings.use_case.features.labels
    target = settings.table("ops", _monitoring(settings).quality_table)
    labels = tables.read_table(spark, settings.table("gold", labels_config.table))
    if settings.use_case.scoring.mode == "events":
        labelled = quality.labelled_events(predictions, labels, labels_config.entity, labels_config.label)
    else:
        labelled = quality.labelled_predictions(
            predictions, labels, labels_config.entity, labels_config.timestamp, labels_config.label
        )
    measured = quality.model_quality(labelled).withColumn("measured_at", F.current_timestamp())
    # One row per scoring date and model version: computing the join once and keeping the result on
    # the driver is cheaper than joining again for the MERGE.
    windows = measured.collect()
    if windows:
        tables.upsert(spark.createDataFrame(windows, measured.schema), target, WINDOW_KEYS)
    return tables.read_table(spark, target) if tables.table_exists(spark, target) else measured


def evidence(spark: SparkSession, settings: Settings, scoring_date: dt.date, model) -> Evidence:
    """The labels the model trained on against the labels that exist now, and the last retrain asked for."""
    labels = settings.use_case.features.labels
    newest = tables.read_table(spark, settings.table("gold", labels.table)).agg(F.max(F.to_date(labels.timestamp)))
    decisions = settings.table("ops", _monitoring(settings).decisions_table)
    last_retrain = drift_since = None
    if tables.table_exists(spark, decisions):
        earlier = tables.read_table(spark, decisions).where(F.col("scoring_date") < scoring_date)
        fired = F.col("model_version") == model.model_version
        fired &= F.size("reasons") > 0
        last_retrain, drift_since = earlier.agg(
            F.max(F.when(F.col("retrain"), F.col("scoring_date"))), F.min(F.when(fired, F.col("scoring_date")))
        ).first()
    split = settings.use_case.training.split
    return Evidence(
        scoring_date,
        training_data.logged_labels_until(model.run_id),
        newest.first()[0],
        last_retrain,
        drift_since,
        split.test_days if split.relative else None,
    )


def record_outcome(spark: SparkSession, settings: Settings, result: MonitorResult, outcome: str) -> None:
    """Upsert the date's decision, its reasons and what came of it, and rewrite the decision file."""
    decision = result.decision
    row = (
        result.scoring_date,
        result.model_name,
        result.model_version,
        decision.retrain,
        decision.action,
        decision.reasons,
        decision.held_back,
        result.drifted_share,
        result.prediction_psi,
        result.recent_auc[-1] if result.recent_auc else None,
        settings.env.retraining.trigger,
        outcome,
    )
    schema = (
        "scoring_date date, model_name string, model_version string, retrain boolean, action string, "
        "reasons array<string>, held_back string, drifted_share double, prediction_psi double, "
        "latest_auc_roc double, trig string, outcome string"
    )
    decided = spark.createDataFrame([row], schema).withColumnRenamed("trig", "trigger")
    tables.upsert(
        decided.withColumn("decided_at", F.current_timestamp()),
        settings.table("ops", _monitoring(settings).decisions_table),
        WINDOW_KEYS,
    )
    path = decision_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "retrain": decision.retrain,
        "action": decision.action,
        "reasons": decision.reasons,
        "held_back": decision.held_back,
        "scoring_date": result.scoring_date.isoformat(),
        "outcome": outcome,
        "model_version": result.model_version,
    }
    atomic.write_text(path, json.dumps(record, indent=2))


def publish_task_value(settings: Settings, decision: RetrainingDecision) -> bool:
    """On Databricks, set the task value `retrain` ("true"/"false"): the bundle's monitor job has a
    condition task on it that runs the training job. Elsewhere nothing is set (False)."""
    return Platform(settings.env).set_task_value("retrain", str(decision.retrain).lower())


def decision_path(settings: Settings) -> Path:
    """The latest decision as JSON, for schedulers that branch on it without starting Spark (Airflow)."""
    return Path(settings.env.path("reports")) / "monitoring" / settings.use_case.name / "decision.json"


def run(spark: SparkSession, settings: Settings, scoring_date: dt.date | None = None) -> MonitorResult:
    """Drift, quality and the retraining decision for one scoring date (default: the newest). Decides only:
    the caller acts on `result.decision` and records what it did with `record_outcome`."""
    monitoring = _monitoring(settings)
    tracking.configure(settings)
    predictions, scoring_date = _predictions_for(spark, settings, scoring_date)
    todays = predictions.where(F.col("scoring_date") == F.lit(scoring_date))
    models = todays.select("model_name", "model_version", "run_id").distinct().collect()
    if not models:
        raise MissingPredictions(
            f"no predictions for {scoring_date}: run `lakeforge run score --date {scoring_date}` first"
        )
    model = models[0]
    tables.ensure_schema(spark, settings.schema("ops"))
    results, reference_set, current, numeric, categorical = measure_drift(spark, settings, scoring_date, model, todays)
    tables.upsert(
        drift_rows(spark, results, scoring_date, model), settings.table("ops", monitoring.drift_table), DRIFT_KEYS
    )
    share, prediction_psi = drift_summary(results)
    report_name = f"drift-{scoring_date.isoformat()}-v{model.model_version}.html"
    report = Path(settings.env.path("reports")) / "monitoring" / settings.use_case.name / report_name
    write_report(monitoring, reference_set, current, numeric, categorical, report)
    reference_set.unpersist()
    current.unpersist()
    history = measure_quality(spark, settings, predictions)
    labelled = [
        row
        for row in history.where(F.col("model_version") == model.model_version).orderBy("scoring_date").collect()
        if row["auc_roc"] is not None
    ]
    recent_auc = [row["auc_roc"] for row in labelled]
    seen = replace(
        evidence(spark, settings, scoring_date, model), auc_dates=tuple(row["scoring_date"] for row in labelled)
    )
    decision = decide(monitoring.retraining, share, prediction_psi, recent_auc, seen)
    with mlflow.start_run(run_name=f"monitor-{scoring_date.isoformat()}"):
        mlflow.set_tags(
            {"model_version": model.model_version, "scoring_date": scoring_date.isoformat(), "action": decision.action}
        )
        psi_metric = {} if prediction_psi is None else {"prediction_psi": prediction_psi}
        mlflow.log_metrics({"drifted_share": share, **psi_metric})
        mlflow.log_artifact(str(report), "drift")
    outcome = {
        "retrain": f"retraining due: the '{settings.env.retraining.trigger}' trigger acts on it",
        "alert": f"alert only: {decision.held_back}",
        "none": "no retraining needed",
    }[decision.action]
    result = MonitorResult(
        scoring_date,
        model.model_name,
        model.model_version,
        results,
        share,
        prediction_psi,
        recent_auc,
        decision,
        outcome,
        str(report),
        seen,
    )
    if decision.reasons:
        log.warning("monitor: %s on %s: %s (%s)", decision.action, scoring_date, "; ".join(decision.reasons), outcome)
    record_outcome(spark, settings, result, outcome)
    publish_task_value(settings, decision)
    log.info("monitor: %s drifted share %.2f, prediction PSI %s: %s", scoring_date, share, prediction_psi, outcome)
    return result
