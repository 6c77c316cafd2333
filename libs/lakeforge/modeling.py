"""Model building blocks as pure functions: time split, search space, Spark ML pipeline, metrics.

The pipeline holds every preparation step (zeros for a missing text vector, imputation, one-hot
encoding, assembling) before the classifier, so a saved model scores feature rows as the feature
tables store them.
"""

from __future__ import annotations

import math
from typing import Any

import mlflow
import numpy as np
from hyperopt import hp
from hyperopt.pyll import scope
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import (
    GBTClassifier,
    LogisticRegression,
    ProbabilisticClassificationModel,
    RandomForestClassifier,
)
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeforge.config import SearchDimension, TimeSplit, Training
from lakeforge.errors import TrainingDataError
from lakeforge.text import zero_filled_vector_stages

LABEL = "label"
SCORE = "score"
CALIBRATION_BINS = 10
CLASSIFIERS = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "gbt": GBTClassifier,
}
INTEGER_PARAMS = {"maxIter", "maxDepth", "numTrees", "maxBins", "minInstancesPerNode"}


def split_by_time(rows: DataFrame, label_time: str, split: TimeSplit) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Train before `validation_from` (from `train_from`), validate before `test_from`, test from then on
    (before `test_until`): never a random split. A relative split must be resolved to dates first."""
    if split.relative:
        raise ValueError("a relative split must be resolved to dates (TimeSplit.resolve) before splitting rows")
    at = F.to_date(label_time)
    train = rows.where(at < F.lit(split.validation_from))
    if split.train_from:
        train = train.where(at >= F.lit(split.train_from))
    validation = rows.where((at >= F.lit(split.validation_from)) & (at < F.lit(split.test_from)))
    test = rows.where(at >= F.lit(split.test_from))
    if split.test_until:
        test = test.where(at < F.lit(split.test_until))
    return train, validation, test


def require_rows(windows: dict[str, DataFrame], label: str) -> dict[str, int]:
    """Count rows and positives per window; a window without both classes cannot train or score AUC."""
    counts = {}
    for name, rows in windows.items():
        total, positives = rows.agg(F.count("*"), F.sum(F.col(label).cast("int"))).first()
        positives = positives or 0
        if total == 0 or positives in (0, total):
            raise TrainingDataError(
                f"the {name} window has {total} labels of which {positives} positive: it needs both classes; "
                "move the split dates in training.split or generate more data"
            )
        counts[name] = total
    return counts


def build_space(search_space: dict[str, SearchDimension]) -> dict[str, Any]:
    """Hyperopt expressions from the config's search space (bounds given as values, not logs)."""
    space: dict[str, Any] = {}
    for name, dim in search_space.items():
        if dim.kind == "choice":
            space[name] = hp.choice(name, dim.options)
        elif dim.kind == "uniform":
            space[name] = hp.uniform(name, dim.low, dim.high)
        elif dim.kind == "loguniform":
            space[name] = hp.loguniform(name, math.log(dim.low), math.log(dim.high))
        else:
            quantized = hp.quniform(name, dim.low, dim.high, dim.q)
            space[name] = scope.int(quantized) if float(dim.q).is_integer() else quantized
    return space


def plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON-friendly Python values, integers where Spark wants them."""
    out = {}
    for name, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        if name in INTEGER_PARAMS and isinstance(value, float):
            value = int(value)
        out[name] = value
    return out


def raw_feature_columns(training: Training, text_vector: str | None) -> list[str]:
    """The columns a model reads: the signature of every logged model."""
    return [*training.numeric_features, *training.categorical_features, *([text_vector] if text_vector else [])]


def build_feature_pipeline(training: Training, text_vector: str | None, text_size: int | None) -> Pipeline:
    """Zeros for a missing text vector, imputation, one-hot encoding, assembling into `features`: what every
    model of a use case shares, whatever its hyperparameters."""
    stages: list[Any] = zero_filled_vector_stages(text_vector, text_size) if text_vector else []
    numeric = training.numeric_features
    imputed = [f"{c}__imputed" for c in numeric]
    stages.append(Imputer(inputCols=numeric, outputCols=imputed, strategy="median"))
    encoded = []
    for column in training.categorical_features:
        stages.append(StringIndexer(inputCol=column, outputCol=f"{column}__index", handleInvalid="keep"))
        encoded.append(f"{column}__onehot")
    if encoded:
        stages.append(
            OneHotEncoder(
                inputCols=[f"{c}__index" for c in training.categorical_features],
                outputCols=encoded,
                handleInvalid="keep",
            )
        )
    assembled = [*imputed, *encoded, *([text_vector] if text_vector else [])]
    stages.append(VectorAssembler(inputCols=assembled, outputCol="features", handleInvalid="keep"))
    return Pipeline(stages=stages)


def build_classifier(training: Training, params: dict[str, Any]):
    """The use case's classifier with these hyperparameters, reading `features` and the label."""
    classifier = CLASSIFIERS[training.family](
        featuresCol="features", labelCol=LABEL, **plain_params({**training.fixed_params, **params})
    )
    return classifier if training.family == "logistic_regression" else classifier.setSeed(training.seed)


def build_model_pipeline(
    training: Training,
    params: dict[str, Any],
    text_vector: str | None,
    text_size: int | None,
) -> Pipeline:
    """The features pipeline, then the classifier: the model that is logged, registered and scored with."""
    features = build_feature_pipeline(training, text_vector, text_size).getStages()
    return Pipeline(stages=[*features, build_classifier(training, params)])


def model_input(rows: DataFrame, training: Training) -> DataFrame:
    """Numeric features as doubles (a missing value is NaN-able, whatever the feature table's type):
    training and scoring both pass rows through here, so the model sees the same types."""
    return rows.withColumns({c: F.col(c).cast("double") for c in training.numeric_features})


def plain_column(rows: DataFrame, name: str, vector_size: int | None = None) -> Column:
    """A column as pandas, JSON and `mlflow.pyfunc.spark_udf` take it: a vector as an array of doubles.

    A null vector stays null, or becomes `vector_size` zeros when given (pyfunc's Spark wrapper
    cannot take a null array)."""
    if not isinstance(rows.schema[name].dataType, VectorUDT):
        return F.col(name)
    array = F.when(F.col(name).isNotNull(), vector_to_array(name))
    return F.coalesce(array, F.array_repeat(F.lit(0.0), vector_size)) if vector_size else array


def vectors_as_arrays(rows: DataFrame) -> DataFrame:
    return rows.select(*[plain_column(rows, c).alias(c) for c in rows.columns])


def with_label(rows: DataFrame, label: str) -> DataFrame:
    return rows.withColumn(LABEL, F.col(label).cast("double"))


def probability_only(model: PipelineModel) -> PipelineModel:
    """A copy of the model whose classifier writes only the class probabilities: no raw-prediction or
    predicted-class column, which scoring derives from the probability and never reads. The
    probabilities are the same; each row skips two vector columns' computation and serialization."""
    classifier = model.stages[-1]
    if not isinstance(classifier, ProbabilisticClassificationModel):
        return model
    lean = classifier.copy({classifier.rawPredictionCol: "", classifier.predictionCol: ""})
    return PipelineModel(stages=[*model.stages[:-1], lean])


def with_score(predictions: DataFrame) -> DataFrame:
    """The positive class's probability as a plain column."""
    return predictions.withColumn(SCORE, vector_to_array("probability")[1])


def evaluate(predictions: DataFrame, threshold: float = 0.5) -> dict[str, float]:
    """AUC-ROC, AUC-PR, log loss, precision and recall at the threshold, and the row count."""
    scored = with_score(predictions)
    evaluator = BinaryClassificationEvaluator(labelCol=LABEL, rawPredictionCol="rawPrediction")
    p = F.least(F.greatest(F.col(SCORE), F.lit(1e-15)), F.lit(1 - 1e-15))
    predicted = (F.col(SCORE) >= threshold).cast("double")
    stats = scored.agg(
        F.count("*").alias("rows"),
        F.avg(-(F.col(LABEL) * F.log(p) + (1 - F.col(LABEL)) * F.log(1 - p))).alias("log_loss"),
        F.sum(predicted * F.col(LABEL)).alias("tp"),
        F.sum(predicted).alias("predicted_positive"),
        F.sum(F.col(LABEL)).alias("positive"),
    ).first()
    return {
        "auc_roc": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderROC"}),
        "auc_pr": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderPR"}),
        "log_loss": float(stats["log_loss"]),
        "precision": float(stats["tp"] / stats["predicted_positive"]) if stats["predicted_positive"] else 0.0,
        "recall": float(stats["tp"] / stats["positive"]) if stats["positive"] else 0.0,
        "rows": float(stats["rows"]),
    }


def calibration_table(predictions: DataFrame, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Per score bin: rows, mean predicted probability and observed positive rate."""
    scored = with_score(predictions)
    bin_index = F.least(F.floor(F.col(SCORE) * bins), F.lit(bins - 1)).cast("int")
    rows = (
        scored.groupBy(bin_index.alias("bin"))
        .agg(F.count("*").alias("rows"), F.avg(SCORE).alias("mean_score"), F.avg(LABEL).alias("positive_rate"))
        .orderBy("bin")
        .collect()
    )
    return [row.asDict() for row in rows]


def roc_points(predictions: DataFrame, points: int = 100) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate) at score thresholds, computed by Spark over score bins."""
    scored = with_score(predictions)
    per_bin = (
        scored.groupBy(F.floor(F.col(SCORE) * points).alias("bin"))
        .agg(F.sum(LABEL).alias("pos"), F.sum(1 - F.col(LABEL)).alias("neg"))
        .orderBy(F.col("bin").desc())
        .collect()
    )
    total_pos = sum(r.pos for r in per_bin) or 1.0
    total_neg = sum(r.neg for r in per_bin) or 1.0
    curve, tp, fp = [(0.0, 0.0)], 0.0, 0.0
    for row in per_bin:
        tp += row.pos
        fp += row.neg
        curve.append((fp / total_neg, tp / total_pos))
    return curve


def feature_importances(model: PipelineModel, predictions: DataFrame) -> list[tuple[str, float]]:
    """Importance per raw feature: tree importances, or absolute coefficients for logistic regression.

    Vector slots (one-hot categories, text terms) are summed back to the column they came from,
    using the slot names VectorAssembler writes into the `features` column's metadata.
    """
    classifier = model.stages[-1]
    weights = (
        classifier.featureImportances.toArray()
        if hasattr(classifier, "featureImportances")
        else np.abs(classifier.coefficients.toArray())
    )
    inputs = model.stages[-2].getInputCols()
    attributes = predictions.schema["features"].metadata.get("ml_attr", {}).get("attrs", {})
    slot_names = {attr["idx"]: attr["name"] for group in attributes.values() for attr in group}
    totals: dict[str, float] = {}
    for index, weight in enumerate(weights):
        slot = slot_names.get(index, "")
        column = next((c for c in sorted(inputs, key=len, reverse=True) if slot.startswith(c)), "text terms")
        name = column.removesuffix("__imputed").removesuffix("__onehot")
        totals[name] = totals.get(name, 0.0) + float(weight)
    return sorted(totals.items(), key=lambda item: -item[1])


def score_rows(spark: SparkSession, model_uri: str, rows: DataFrame, threshold: float) -> DataFrame:
    """Add `score` (positive-class probability) and `predicted_label` with the model's own engine."""
    info = mlflow.models.get_model_info(model_uri)
    if "spark" in info.flavors:
        model = probability_only(mlflow.spark.load_model(model_uri))
        scored = with_score(model.transform(rows))
    else:
        columns = info.signature.inputs.input_names()
        predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="array<double>", env_manager="local")
        scored = rows.withColumn(SCORE, predict(*[plain_column(rows, c) for c in columns])[1])
    return scored.withColumn("predicted_label", (F.col(SCORE) >= threshold).cast("int"))
