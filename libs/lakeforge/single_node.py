"""The second training engine: a scikit-learn learner on a sample that fits in memory, tuned with
hyperopt `SparkTrials` so several trials fit at once on the Spark executors.

Only numeric and categorical features: the text vectors stay in the Spark ML engine, whose fitted
text transform must never be refit. The model is logged with `mlflow.sklearn` and predicts the
positive-class probability through pyfunc, so the gate and `reproduce` handle both engines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from lakeforge.config import Training

ESTIMATORS = {
    "logistic_regression": "sklearn.linear_model:LogisticRegression",
    "random_forest": "sklearn.ensemble:RandomForestClassifier",
    "gbt": "sklearn.ensemble:HistGradientBoostingClassifier",
}
SAMPLE_SEED = 17


def feature_columns(training: Training) -> list[str]:
    return [*training.numeric_features, *training.categorical_features]


def to_pandas_sample(rows: DataFrame, training: Training, label: str) -> pd.DataFrame:
    """At most `single_node.sample_rows` rows, drawn with a fixed seed (the same rows on a rerun)."""
    total = rows.count()
    fraction = min(1.0, training.single_node.sample_rows / max(total, 1))
    sample = rows if fraction >= 1.0 else rows.sample(fraction=fraction, seed=SAMPLE_SEED)
    return sample.select(*feature_columns(training), label).toPandas()


def build_model(training: Training, params: dict[str, Any]):
    """Imputation and scaling of numbers, one-hot categories, then the configured scikit-learn learner."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from lakeforge.config import resolve_callable

    prepare = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), training.numeric_features),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), training.categorical_features),
        ]
    )
    estimator = resolve_callable(ESTIMATORS[training.family])
    arguments = {**training.fixed_params, **params}
    if "random_state" in estimator().get_params():
        arguments.setdefault("random_state", training.seed)
    return Pipeline([("prepare", prepare), ("model", estimator(**arguments))])


def evaluate_scores(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """The same metrics as the Spark engine, on in-memory arrays."""
    from sklearn.metrics import average_precision_score, log_loss, precision_score, recall_score, roc_auc_score

    predicted = (scores >= threshold).astype(int)
    return {
        "auc_roc": float(roc_auc_score(labels, scores)),
        "auc_pr": float(average_precision_score(labels, scores)),
        "log_loss": float(log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "rows": float(len(labels)),
    }


def fit_and_evaluate(
    training: Training, params: dict[str, Any], fit_rows: pd.DataFrame, eval_rows: pd.DataFrame, label: str
):
    model = build_model(training, params)
    model.fit(fit_rows[feature_columns(training)], fit_rows[label].astype(int))
    scores = model.predict_proba(eval_rows[feature_columns(training)])[:, 1]
    return model, evaluate_scores(eval_rows[label].astype(int).to_numpy(), scores, training.decision_threshold)
