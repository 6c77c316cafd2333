"""Train, tune, track and register: the training job, and `reproduce`.

Tuning runs Spark ML fits one after another under `hyperopt.Trials`: each fit is already
distributed, and a Spark ML fit inside `SparkTrials` fails (`CONTEXT_ONLY_VALID_ON_DRIVER`). The
`single_node` engine tunes scikit-learn on a sample with `SparkTrials` instead. One
MLflow parent run per job, a nested run per trial; the best parameters are refit on train +
validation, evaluated on the test window, logged with the training set's Delta versions, and
registered as the `challenger`; only the gate (`gate.py`) promotes it to `champion`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from hyperopt import STATUS_OK, SparkTrials, Trials, fmin, space_eval, tpe
from mlflow.models import infer_signature
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeforge import modeling, single_node, tables, tracking
from lakeforge.config import Settings, Training
from lakeforge.provenance import code_version
from lakeforge.training_data import (
    LABELS_UNTIL_TAG,
    LINEAGE_ARTIFACT,
    PARAMS_ARTIFACT,
    TRAINING_ARTIFACT,
    PreparedData,
    logged_training_set,
    prepare,
    training_config,
    window_params,
)

log = logging.getLogger(__name__)

TEST_METRIC_PREFIX = "test_"


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    params: dict[str, Any]
    test_metrics: dict[str, float]
    trials: int


def fit_and_evaluate(
    training: Training, params: dict[str, Any], data: PreparedData, fit_rows: DataFrame, eval_rows: DataFrame
) -> tuple[PipelineModel, dict[str, float], DataFrame]:
    pipeline = modeling.build_model_pipeline(training, params, data.text_vector, data.text_size)
    model = pipeline.fit(fit_rows)
    predictions = model.transform(eval_rows)
    return model, modeling.evaluate(predictions, training.decision_threshold), predictions


def run(spark: SparkSession, settings: Settings) -> TrainResult:
    """Tune, refit the best, evaluate on the test window, log everything, register the challenger."""
    training = training_config(settings)
    tracking.configure(settings)
    data = prepare(spark, settings, training)
    model_name = tracking.registered_model_name(settings)
    with mlflow.start_run(run_name=f"tune-{training.engine}-{training.family}") as parent:
        _log_lineage(spark, settings, training, data)
        tune = _tune_spark_ml if training.engine == "spark_ml" else _tune_single_node
        params, metrics, trials, model_uri = tune(training, data)
        mlflow.log_params({f"best_{k}": v for k, v in params.items()})
        mlflow.log_dict(params, PARAMS_ARTIFACT)
        mlflow.log_metrics({f"{TEST_METRIC_PREFIX}{k}": v for k, v in metrics.items()})
        mlflow.log_metric("trials", trials)
        run_id = parent.info.run_id
    version = mlflow.register_model(model_uri or f"runs:/{run_id}/model", model_name).version
    tracking.set_alias(model_name, tracking.CHALLENGER, version)
    tracking.tag_version(
        model_name, version, {"run_id": run_id, "engine": training.engine, "test_auc_roc": round(metrics["auc_roc"], 6)}
    )
    log.info("train: %s version %s is the challenger (test AUC %.4f)", model_name, version, metrics["auc_roc"])
    return TrainResult(run_id, model_name, version, params, metrics, trials)


def stop_without_progress(rounds: int):
    """Hyperopt early stopping after `rounds` finished trials without a better loss.

    Like `hyperopt.early_stop.no_progress_loss`, but it skips trials still running and counts each
    finished trial once: under `SparkTrials` the last trial often has no loss yet, and the stock
    function then raises KeyError in hyperopt's dispatcher thread, which leaves `fmin` waiting.
    """

    def stop(trials, best_loss=None, without_progress=0, seen=0):
        losses = [t["result"]["loss"] for t in trials.trials if "loss" in t.get("result", {})]
        for loss in losses[seen:]:  # each finished trial counts once, however often hyperopt asks
            if best_loss is None or loss < best_loss:
                best_loss, without_progress = loss, 0
            else:
                without_progress += 1
        return without_progress >= rounds, [best_loss, without_progress, len(losses)]

    return stop


def _minimize(objective, training: Training, trials) -> dict[str, Any]:
    space = modeling.build_space(training.search_space)
    best = fmin(
        objective,
        space,
        algo=tpe.suggest,
        max_evals=training.max_evals,
        trials=trials,
        early_stop_fn=stop_without_progress(training.early_stop_rounds),
        rstate=np.random.default_rng(training.seed),
        show_progressbar=False,
    )
    return modeling.plain_params(space_eval(space, best))


class TrialData:
    """The train and validation windows as the classifier reads them, built once for every trial.

    The features pipeline (imputer medians, category indexes, the assembled vector) is fitted on the train
    window whatever the hyperparameters, so a trial fitting it again would compute the same thing: it is
    fitted once, and both windows are kept transformed (`features` and the label only) in memory. A trial
    then fits and evaluates the classifier alone; its model is the one `fit_and_evaluate` would give.
    """

    def __init__(self, training: Training, data: PreparedData) -> None:
        featurizer = modeling.build_feature_pipeline(training, data.text_vector, data.text_size).fit(data.train)
        self.train, self.validation = (
            featurizer.transform(rows).select("features", modeling.LABEL).persist()
            for rows in (data.train, data.validation)
        )

    def fit_and_evaluate(self, training: Training, params: dict[str, Any]) -> dict[str, float]:
        model = modeling.build_classifier(training, params).fit(self.train)
        return modeling.evaluate(model.transform(self.validation), training.decision_threshold)

    def release(self) -> None:
        self.train.unpersist()
        self.validation.unpersist()


def _tune_spark_ml(training: Training, data: PreparedData) -> tuple[dict[str, Any], dict[str, float], int, None]:
    """Spark ML fits one after another (`Trials`), each distributed, on features built once; a nested run per trial."""
    trial_number = iter(range(1, training.max_evals + 1))
    trial_data = TrialData(training, data)

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        params = modeling.plain_params(params)
        started = time.monotonic()
        with mlflow.start_run(run_name=f"trial-{next(trial_number)}", nested=True):
            metrics = trial_data.fit_and_evaluate(training, params)
            mlflow.log_params(params)
            mlflow.log_metrics({f"validation_{k}": v for k, v in metrics.items()})
            mlflow.log_metric("duration_seconds", time.monotonic() - started)
        return {"loss": -metrics["auc_roc"], "status": STATUS_OK}

    trials = Trials()
    try:
        params = _minimize(objective, training, trials)
    finally:
        trial_data.release()
    model, metrics, predictions = _refit_spark_ml(training, params, data)
    _log_evaluation(model, predictions)
    _log_model(model, data)
    return params, metrics, len(trials.trials), None


def _refit_spark_ml(
    training: Training, params: dict[str, Any], data: PreparedData
) -> tuple[PipelineModel, dict[str, float], DataFrame]:
    """The final model: fitted on train + validation, evaluated on the test window."""
    return fit_and_evaluate(training, params, data, data.train.unionByName(data.validation), data.test)


def _refit_single_node(training: Training, params: dict[str, Any], samples: list[pd.DataFrame]):
    """The final scikit-learn model: fitted on the train + validation samples, evaluated on the test sample."""
    train, validation, test = samples
    both = pd.concat([train, validation], ignore_index=True)
    return single_node.fit_and_evaluate(training, params, both, test, modeling.LABEL)


def _single_node_samples(training: Training, data: PreparedData) -> list[pd.DataFrame]:
    return [
        single_node.to_pandas_sample(rows, training, modeling.LABEL)
        for rows in (data.train, data.validation, data.test)
    ]


def _tune_single_node(training: Training, data: PreparedData) -> tuple[dict[str, Any], dict[str, float], int, str]:
    """scikit-learn fits on an in-memory sample, several at once on the executors (`SparkTrials`).

    The trials run in executor processes, so their nested MLflow runs are logged from the driver
    afterwards, from what each trial returned.
    """
    samples = _single_node_samples(training, data)
    train, validation, test = samples

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        _, metrics = single_node.fit_and_evaluate(
            training, modeling.plain_params(params), train, validation, modeling.LABEL
        )
        return {
            "loss": -metrics["auc_roc"],
            "status": STATUS_OK,
            "metrics": metrics,
            "seconds": time.monotonic() - started,
        }

    trials = SparkTrials(parallelism=training.single_node.parallelism)
    params = _minimize(objective, training, trials)
    space = modeling.build_space(training.search_space)
    for number, trial in enumerate(trials.trials, start=1):
        if trial["result"].get("status") != STATUS_OK:
            continue
        values = {name: value[0] for name, value in trial["misc"]["vals"].items() if value}
        with mlflow.start_run(run_name=f"trial-{number}", nested=True):
            mlflow.log_params(modeling.plain_params(space_eval(space, values)))
            mlflow.log_metrics({f"validation_{k}": v for k, v in trial["result"]["metrics"].items()})
            mlflow.log_metric("duration_seconds", trial["result"]["seconds"])
    model, metrics = _refit_single_node(training, params, samples)
    example = test[single_node.feature_columns(training)].head(5)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(example, model.predict_proba(example)),
        input_example=example,
        pyfunc_predict_fn="predict_proba",
        # MLflow 3 saves scikit-learn models with skops, which refuses to load types not listed here.
        skops_trusted_types=["numpy.dtype"],
    )
    return params, metrics, len(trials.trials), info.model_uri


def _log_lineage(spark: SparkSession, settings: Settings, training: Training, data: PreparedData) -> None:
    mlflow.set_tags(
        {
            "lakeforge.code_version": code_version(),
            "lakeforge.use_case": settings.use_case.name,
            LABELS_UNTIL_TAG: data.labels_until.isoformat(),
        }
    )
    mlflow.log_params(
        {
            "engine": training.engine,
            "family": training.family,
            "seed": training.seed,
            "max_evals": training.max_evals,
            "split": "relative" if training.split.relative else "fixed",
            **window_params(data.split),
            "labels_until": data.labels_until.isoformat(),
            "text_pipeline": data.text_pipeline_path or "",
        }
    )
    versions = {tables.plain_name(table): version for table, version in data.versions.items()}
    mlflow.log_dict({"versions": versions, "text_pipeline": data.text_pipeline_path}, LINEAGE_ARTIFACT)
    # The window actually used: a relative split is logged resolved, so `reproduce` rebuilds these dates.
    resolved = training.model_copy(update={"split": data.split})
    mlflow.log_dict(json.loads(resolved.model_dump_json()), TRAINING_ARTIFACT)
    labels_table = settings.table("gold", settings.use_case.features.labels.table)
    for table, version in data.versions.items():
        tracking.log_table_input(
            tables.read_table(spark, table, version),
            tables.full_name(table),
            version,
            name=tables.plain_name(table),
            context="labels" if table == labels_table else "features",
        )


def _log_evaluation(model: PipelineModel, predictions: DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mlflow.log_dict({"bins": modeling.calibration_table(predictions)}, "evaluation/calibration.json")
    curve = modeling.roc_points(predictions)
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot([x for x, _ in curve], [y for _, y in curve], label="model")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test window")
    axes.legend(loc="lower right")
    mlflow.log_figure(figure, "evaluation/roc_curve.png")
    plt.close(figure)
    importances = modeling.feature_importances(model, predictions)[:15]
    mlflow.log_dict(dict(importances), "evaluation/feature_importances.json")
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.barh([n for n, _ in reversed(importances)], [v for _, v in reversed(importances)])
    axes.set(title="feature importance")
    figure.tight_layout()
    mlflow.log_figure(figure, "evaluation/feature_importances.png")
    plt.close(figure)


def _log_model(model: PipelineModel, data: PreparedData) -> None:
    with_text = data.test.where(F.col(data.text_vector).isNotNull()) if data.text_vector else data.test
    example = with_text.select(*data.raw_columns).limit(5)
    # Output: the predicted label only. mlflow's pyfunc wrapper of a Spark model returns that column
    # and fails (UNRESOLVED_COLUMN) when the signature declares a second one such as `probability`.
    # The signature types a vector column as SparkMLVector; the JSON example holds it as an array.
    signature = infer_signature(example, model.transform(example).select("prediction"))
    mlflow.spark.log_model(
        model,
        artifact_path="model",
        signature=signature,
        input_example=modeling.vectors_as_arrays(example).toPandas(),
        pip_requirements=mlflow.spark.get_default_pip_requirements(),
    )


def reproduce(spark: SparkSession, settings: Settings, run_id: str) -> dict[str, dict[str, float]]:
    """Rebuild a run's training set from its logged Delta versions, refit with its logged parameters
    and seed, and compare the test metrics with the ones it logged."""
    tracking.configure(settings)
    run = mlflow.get_run(run_id)
    training, data = logged_training_set(spark, settings, run_id)
    params = mlflow.artifacts.load_dict(f"runs:/{run_id}/{PARAMS_ARTIFACT}")
    if training.engine == "spark_ml":
        _, metrics, _ = _refit_spark_ml(training, params, data)
    else:
        _, metrics = _refit_single_node(training, params, _single_node_samples(training, data))
    logged = {
        k.removeprefix(TEST_METRIC_PREFIX): v for k, v in run.data.metrics.items() if k.startswith(TEST_METRIC_PREFIX)
    }
    return {name: {"logged": logged[name], "reproduced": value} for name, value in metrics.items() if name in logged}
