"""The gate: a challenger becomes champion only on evidence, judged on its own (newest) test window.

It sits between training and scoring: it reads the challenger's logged lineage and split (through
`training_data`), scores champion and challenger on the same rows, moves the `champion` alias when the
challenger passes, and saves the promoted version's monitoring reference (`reference`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from sklearn.metrics import roc_auc_score

from lakeforge import modeling, reference, single_node, tracking
from lakeforge.config import Settings, Training
from lakeforge.errors import ModelRejected
from lakeforge.training_data import (
    LINEAGE_ARTIFACT,
    PreparedData,
    logged_training,
    logged_versions,
    prepare,
    training_config,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Baseline:
    """The simplest model worth beating: one numeric feature used as the score. The feature and its
    direction are chosen on the fit window (train and validation); `auc_roc` is measured on the test window."""

    feature: str
    direction: int  # 1: a higher value means the positive class, -1: a lower one
    auc_roc: float


@dataclass(frozen=True)
class GateDecision:
    model_name: str
    version: str
    promoted: bool
    reasons: list[str]
    challenger_auc: float
    champion_version: str | None
    champion_auc: float | None
    baseline: Baseline | None = None


def best_single_feature(fit: pd.DataFrame, test: pd.DataFrame, features: list[str], label: str) -> Baseline | None:
    """The numeric feature whose values rank the fit rows' labels best (either way round), scored on the
    test rows; None when either side has one class only. Missing values count as the fit median."""
    if fit[label].nunique() < 2 or test[label].nunique() < 2:
        return None
    best = None
    for feature in features:
        median = fit[feature].astype(float).median()
        if np.isnan(median):
            continue
        auc = roc_auc_score(fit[label], fit[feature].astype(float).fillna(median))
        strength, direction = max((auc, 1), (1 - auc, -1))
        if best is None or strength > best[0]:
            best = (strength, feature, direction, median)
    if best is None:
        return None
    _, feature, direction, median = best
    test_auc = roc_auc_score(test[label], direction * test[feature].astype(float).fillna(median))
    return Baseline(feature, direction, float(test_auc))


def single_feature_baseline(data: PreparedData, training: Training) -> Baseline | None:
    """`best_single_feature` on samples of the fit and test windows (`single_node.sample_rows` at most)."""
    fit = single_node.to_pandas_sample(data.train.unionByName(data.validation), training, modeling.LABEL)
    test = single_node.to_pandas_sample(data.test, training, modeling.LABEL)
    return best_single_feature(fit, test, training.numeric_features, modeling.LABEL)


def run(spark: SparkSession, settings: Settings) -> GateDecision:
    """The gate: the challenger becomes champion only if it passes the thresholds and is not worse than
    the champion by more than the margin, both scored on the challenger's test window."""
    training = training_config(settings)
    tracking.configure(settings)
    name = tracking.registered_model_name(settings)
    challenger = tracking.require_version(name, tracking.CHALLENGER)
    champion = tracking.version_by_alias(name, tracking.CHAMPION)
    # Both are judged on the challenger's own (newest) window: its Delta versions and its resolved split.
    lineage = mlflow.artifacts.load_dict(f"runs:/{challenger.run_id}/{LINEAGE_ARTIFACT}")
    window = training.model_copy(update={"split": logged_training(challenger.run_id).split})
    data = prepare(spark, settings, window, logged_versions(lineage), lineage.get("text_pipeline"))
    challenger_metrics = _score(name, challenger.version, data, training)
    reasons = []
    if challenger_metrics["auc_roc"] < training.gate.min_auc_roc:
        reasons.append(f"test AUC-ROC {challenger_metrics['auc_roc']:.4f} < minimum {training.gate.min_auc_roc}")
    if challenger_metrics["auc_pr"] < training.gate.min_auc_pr:
        reasons.append(f"test AUC-PR {challenger_metrics['auc_pr']:.4f} < minimum {training.gate.min_auc_pr}")
    baseline = single_feature_baseline(data, training)
    lift = training.gate.min_lift_over_baseline
    if lift is not None and baseline is not None and challenger_metrics["auc_roc"] - baseline.auc_roc < lift:
        reasons.append(
            f"test AUC-ROC {challenger_metrics['auc_roc']:.4f} does not beat the single-feature baseline "
            f"({baseline.feature}: {baseline.auc_roc:.4f}) by {lift}"
        )
    champion_auc = None
    if champion is not None and champion.version != challenger.version:
        champion_auc = _score(name, champion.version, data, training)["auc_roc"]
        if champion_auc - challenger_metrics["auc_roc"] > training.gate.max_auc_drop:
            reasons.append(
                f"test AUC-ROC {challenger_metrics['auc_roc']:.4f} is more than {training.gate.max_auc_drop} below "
                f"champion version {champion.version} ({champion_auc:.4f})"
            )
    promoted = not reasons
    if promoted:
        reference.save(
            spark,
            settings,
            training,
            data.train.unionByName(data.validation),
            model_name=name,
            model_version=challenger.version,
            run_id=challenger.run_id,
        )
        tracking.set_alias(name, tracking.CHAMPION, challenger.version)
    tracking.export_champion(settings, name)
    tracking.tag_version(
        name,
        challenger.version,
        {
            "validation_status": "approved" if promoted else "rejected",
            "validation_reason": "; ".join(reasons) or "passed every threshold",
            "validation_auc_roc": round(challenger_metrics["auc_roc"], 6),
            "champion_auc_roc": "" if champion_auc is None else round(champion_auc, 6),
            "baseline_auc_roc": "" if baseline is None else round(baseline.auc_roc, 6),
            "baseline_feature": "" if baseline is None else baseline.feature,
        },
    )
    decision = GateDecision(
        name,
        challenger.version,
        promoted,
        reasons,
        challenger_metrics["auc_roc"],
        champion.version if champion else None,
        champion_auc,
        baseline,
    )
    log.info("gate: %s", decision)
    if not promoted and training.gate.fail_on_reject:
        raise ModelRejected(f"{name} version {challenger.version} was not promoted: {'; '.join(reasons)}")
    return decision


def _score(name: str, version: str, data: PreparedData, training: Training) -> dict[str, float]:
    """Test-window metrics of a registered version: Spark models score the whole window, scikit-learn
    models (pyfunc, predicting probabilities) the same sample they are trained and tested on."""
    uri = f"models:/{name}/{version}"
    if "spark" in mlflow.models.get_model_info(uri).flavors:
        return modeling.evaluate(mlflow.spark.load_model(uri).transform(data.test), training.decision_threshold)
    model = mlflow.pyfunc.load_model(uri)
    columns = model.metadata.get_input_schema().input_names()
    test = single_node.to_pandas_sample(data.test, training, modeling.LABEL)
    scores = np.asarray(model.predict(test[columns]))[:, 1]
    return single_node.evaluate_scores(test[modeling.LABEL].astype(int).to_numpy(), scores, training.decision_threshold)
