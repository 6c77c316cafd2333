"""Model quality against ground truth: predictions joined to the labels that arrived later, per scoring date.

Pure DataFrame transforms. AUC comes from rank statistics over score groups, so every scoring date
and model version is measured in one grouped pass, without a collect or one job per date.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

CALIBRATION_BINS = 10
GROUP = ["scoring_date", "model_name", "model_version"]


def labelled_predictions(
    predictions: DataFrame, labels: DataFrame, entity: list[str], label_time: str, label: str
) -> DataFrame:
    """Predictions that have a label: the label at the cutoff equal to the start of their scoring date."""
    cutoffs = labels.select(
        *entity,
        F.to_date(label_time).alias("scoring_date"),
        F.col(label_time).alias("_cutoff"),
        F.col(label).cast("double").alias("label"),
    ).where(F.col("_cutoff") == F.to_timestamp(F.col("scoring_date")))
    return predictions.join(cutoffs, [*entity, "scoring_date"]).drop("_cutoff")


def labelled_events(predictions: DataFrame, labels: DataFrame, key: list[str], label: str) -> DataFrame:
    """Event predictions that have a label by now: joined on the event key, whenever the label arrived."""
    known = labels.select(*key, F.col(label).cast("double").alias("label")).dropDuplicates(key)
    return predictions.join(known, key)


def _auc_by_group(rows: DataFrame) -> DataFrame:
    """AUC-ROC per group: the chance a positive outscores a negative, ties counting half."""
    by_score = rows.groupBy(*GROUP, "score").agg(F.sum("label").alias("pos"), F.sum(1 - F.col("label")).alias("neg"))
    below = Window.partitionBy(*GROUP).orderBy("score").rowsBetween(Window.unboundedPreceding, -1)
    pairs = by_score.withColumn("neg_below", F.coalesce(F.sum("neg").over(below), F.lit(0.0)))
    return pairs.groupBy(*GROUP).agg(
        F.try_divide(
            F.sum(F.col("pos") * F.col("neg_below") + 0.5 * F.col("pos") * F.col("neg")),
            F.sum("pos") * F.sum("neg"),
        ).alias("auc_roc")
    )


def _calibration_error(rows: DataFrame) -> DataFrame:
    """Expected calibration error: the row-weighted gap between mean score and positive rate per score bin."""
    bin_index = F.least(F.floor(F.col("score") * CALIBRATION_BINS), F.lit(CALIBRATION_BINS - 1))
    bins = rows.groupBy(*GROUP, bin_index.alias("bin")).agg(
        F.count("*").alias("n"), F.avg("score").alias("mean_score"), F.avg("label").alias("positive_rate")
    )
    return bins.groupBy(*GROUP).agg(
        (F.sum(F.col("n") * F.abs(F.col("mean_score") - F.col("positive_rate"))) / F.sum("n")).alias(
            "calibration_error"
        )
    )


def model_quality(labelled: DataFrame) -> DataFrame:
    """Per scoring date and model version: rows, positives, AUC-ROC, precision and recall at the decision
    threshold (the predicted label), Brier score, calibration error, mean score and positive rate."""
    counts = labelled.groupBy(*GROUP).agg(
        F.count("*").alias("rows"),
        F.sum("label").cast("long").alias("positives"),
        F.sum(F.col("predicted_label") * F.col("label")).alias("_tp"),
        F.sum("predicted_label").alias("_predicted_positive"),
        F.avg((F.col("score") - F.col("label")) ** 2).alias("brier_score"),
        F.avg("score").alias("mean_score"),
        F.avg("label").alias("positive_rate"),
    )
    return (
        counts.join(_auc_by_group(labelled), GROUP)
        .join(_calibration_error(labelled), GROUP)
        .select(
            *GROUP,
            "rows",
            "positives",
            "auc_roc",
            F.coalesce(F.try_divide(F.col("_tp"), F.col("_predicted_positive")), F.lit(0.0)).alias("precision"),
            F.coalesce(F.try_divide(F.col("_tp"), F.col("positives")), F.lit(0.0)).alias("recall"),
            "brier_score",
            "calibration_error",
            "mean_score",
            "positive_rate",
        )
    )
