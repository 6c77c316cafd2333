"""Point-in-time joins, trailing windows and the text pipeline on hand-made inline data."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from lakeforge.config import TextPipeline
from lakeforge.errors import FeatureDefinitionError
from lakeforge.features import (
    FeatureSource,
    as_of_join,
    build_scoring_set,
    build_training_set,
    duplicate_keys,
    trailing_day_windows,
)
from lakeforge.text import column_names, fit_text_pipeline
from lakeforge.usecases import churn

T = dt.datetime


def _labels(spark, rows):
    return spark.createDataFrame(rows, "customer_id string, label_ts timestamp, churned int")


def _activity(spark, rows):
    rows_df = spark.createDataFrame(rows, "customer_id string, feature_ts timestamp, orders_7d long")
    return FeatureSource("activity", rows_df, ["customer_id"], "feature_ts")


def test_as_of_join_takes_latest_row_at_or_before_label_time_never_after(spark):
    labels = _labels(spark, [("a", T(2026, 1, 10), 1), ("b", T(2026, 1, 10), 0)])
    activity = _activity(
        spark,
        [
            ("a", T(2026, 1, 5), 1),
            ("a", T(2026, 1, 9, 23), 2),
            ("a", T(2026, 1, 10, 0, 0, 1), 99),  # one second after the label time: never used
            ("b", T(2026, 1, 10), 3),  # exactly at the label time: used
            ("b", T(2026, 1, 11), 98),
        ],
    )
    joined = as_of_join(labels, activity, "label_ts")
    assert sorted(tuple(r) for r in joined.collect()) == [
        ("a", T(2026, 1, 10), 1, 2, pytest.approx(1 / 24)),
        ("b", T(2026, 1, 10), 0, 3, 0.0),
    ]


def test_entity_without_earlier_features_gets_nulls(spark):
    labels = _labels(spark, [("a", T(2026, 1, 1), 0), ("c", T(2026, 1, 20), 1)])
    activity = _activity(spark, [("a", T(2026, 1, 2), 5), ("b", T(2025, 12, 1), 7)])
    joined = as_of_join(labels, activity, "label_ts")
    assert sorted(tuple(r) for r in joined.collect()) == [
        ("a", T(2026, 1, 1), 0, None, None),
        ("c", T(2026, 1, 20), 1, None, None),
    ]


def test_several_feature_tables_on_different_grids(spark):
    labels = _labels(spark, [("a", T(2026, 1, 10), 1), ("a", T(2026, 1, 20), 0), ("a", T(2026, 1, 20), 0)])
    daily = _activity(spark, [("a", T(2026, 1, d), d) for d in range(1, 25)])
    profile_rows = spark.createDataFrame(
        [("a", T(2026, 1, 3, 14, 30), "basic"), ("a", T(2026, 1, 15, 9), "premium")],
        "customer_id string, updated_at timestamp, plan string",
    )
    profile = FeatureSource("profile", profile_rows, ["customer_id"], "updated_at")
    joined = build_training_set(labels, "label_ts", [daily, profile])
    assert sorted((r.label_ts, r.orders_7d, r.plan) for r in joined.collect()) == [
        (T(2026, 1, 10), 10, "basic"),
        (T(2026, 1, 20), 20, "premium"),
        (T(2026, 1, 20), 20, "premium"),  # duplicate label rows stay two rows
    ]
    assert joined.columns == [
        "customer_id",
        "label_ts",
        "churned",
        "orders_7d",
        "activity_age_days",
        "plan",
        "profile_age_days",
    ]


def test_scoring_path_equals_training_path_at_the_same_instant(spark):
    activity = _activity(spark, [("a", T(2026, 1, 2), 1), ("a", T(2026, 1, 6), 2), ("b", T(2026, 1, 4), 3)])
    at = T(2026, 1, 5)
    training = build_training_set(_labels(spark, [("a", at, 0), ("b", at, 1)]), "label_ts", [activity])
    entities = spark.createDataFrame([("a",), ("b",)], "customer_id string")
    scoring = build_scoring_set(entities, F.lit(at), "label_ts", [activity])
    assert_df_equality(
        training.drop("churned"), scoring, ignore_row_order=True, ignore_column_order=True, ignore_nullable=True
    )


@pytest.mark.parametrize(
    ("spine_columns", "message"),
    [
        ("customer_id string, label_ts timestamp, orders_7d long", "spine already has"),
        ("account string, label_ts timestamp", "lacks entity columns"),
    ],
)
def test_as_of_join_rejects_clashing_or_missing_columns(spark, spine_columns, message):
    spine = spark.createDataFrame([], spine_columns)
    with pytest.raises(FeatureDefinitionError, match=message):
        as_of_join(spine, _activity(spark, []), "label_ts")


def test_trailing_windows_sum_whole_days_and_count_recency(spark):
    events = spark.createDataFrame(
        [
            ("a", T(2026, 1, 1, 9), 1, 10.0),
            ("a", T(2026, 1, 1, 18), 1, 5.0),
            ("a", T(2026, 1, 3, 8), 0, 0.0),
            ("a", T(2026, 1, 9, 12), 1, 2.0),
            ("b", T(2026, 1, 2, 1), 1, 7.0),
        ],
        "customer_id string, event_ts timestamp, is_order int, spend double",
    )
    metrics = {"orders": F.sum("is_order"), "spend": F.sum("spend")}
    windows = trailing_day_windows(events, ["customer_id"], "event_ts", metrics, [1, 7], recency=["orders"])
    assert sorted(tuple(r) for r in windows.collect()) == [
        # customer, known from (end of the day), orders 1d/7d, spend 1d/7d, days since an order
        ("a", T(2026, 1, 2), 2, 2, 15.0, 15.0, 0),
        ("a", T(2026, 1, 4), 0, 2, 0.0, 15.0, 2),
        ("a", T(2026, 1, 10), 1, 1, 2.0, 2.0, 0),  # Jan 1 fell out of the 7-day window
        ("b", T(2026, 1, 3), 1, 1, 7.0, 7.0, 0),
    ]


def test_duplicate_keys_are_found(spark):
    rows = _activity(spark, [("a", T(2026, 1, 1), 1), ("a", T(2026, 1, 1), 2), ("b", T(2026, 1, 1), 1)]).rows
    assert [(r.customer_id, r["count"]) for r in duplicate_keys(rows, ["customer_id", "feature_ts"]).collect()] == [
        ("a", 2)
    ]


def test_churn_labels_window_and_eligibility(spark):
    customers = spark.createDataFrame(
        [("a", dt.date(2025, 6, 1)), ("b", dt.date(2025, 6, 1)), ("c", dt.date(2026, 1, 10))],
        "customer_id string, signup_date date",
    )
    cancellations = spark.createDataFrame(
        [("a", T(2026, 1, 20), T(2026, 2, 10)), ("b", T(2026, 1, 3), T(2026, 3, 20))],
        "customer_id string, cancelled_at timestamp, recorded_at timestamp",
    )
    labels = churn.churn_labels(
        customers, cancellations, first_cutoff="2026-01-01", every_days=7, horizon_days=14, label_delay_days=7
    )
    # Cutoffs Jan 1 .. Feb 26 (recorded until Mar 20, minus 14 + 7 days); a: churns Jan 20; b: Jan 3;
    # c: signed up Jan 10, eligible from the Jan 15 cutoff.
    rows = sorted((r.customer_id, r.label_ts.date().isoformat(), r.churned) for r in labels.collect())
    assert rows[:4] == [("a", "2026-01-01", 0), ("a", "2026-01-08", 1), ("a", "2026-01-15", 1), ("b", "2026-01-01", 1)]
    assert [r for r in rows if r[0] == "c"][0] == ("c", "2026-01-15", 0)
    assert len([r for r in rows if r[0] == "c"]) == 7  # Jan 15 .. Feb 26
    assert {r[0] for r in rows} == {"a", "b", "c"}


SENTENCES = [
    ("The app keeps crashing when I open it!",),
    ("You charged my card twice; refund me.",),
    ("Great service, thanks for the quick help",),
]


def test_text_pipeline_tokens_stems_and_ngrams(spark):
    spec = TextPipeline(column="text", num_features=64, min_doc_freq=0, ngrams=2)
    texts = spark.createDataFrame([*SENTENCES, (None,)], "text string")
    model = fit_text_pipeline(texts, spec)
    names = column_names(spec)
    out = model.transform(texts).collect()
    assert out[0][names["words"]] == ["app", "keeps", "crashing", "open"]
    assert out[0][names["stems"]] == ["app", "keep", "crash", "open"]
    assert out[1][names["stems"]] == ["charg", "card", "twice", "refund"]
    assert out[0][names["ngrams"]] == ["app keep", "keep crash", "crash open"]
    assert out[3][names["terms"]] == []  # a missing text is an empty document, not an error
    assert out[0][names["tfidf"]].size == 64
    assert out[3][names["tfidf"]].numNonzeros() == 0


def test_saved_text_pipeline_applies_the_fitted_weights(spark, tmp_path):
    spec = TextPipeline(column="text", num_features=64, min_doc_freq=0, ngrams=1)
    texts = spark.createDataFrame(SENTENCES, "text string")
    model = fit_text_pipeline(texts, spec)
    model.write().overwrite().save(str(tmp_path / "text"))
    other = spark.createDataFrame([("crashing app app",)], "text string")
    reloaded = PipelineModel.load(str(tmp_path / "text")).transform(other).first()[column_names(spec)["tfidf"]]
    assert reloaded == model.transform(other).first()[column_names(spec)["tfidf"]]
    # "app" appears in one of three fitted documents: idf = ln(4/2); twice in the text.
    assert sorted(reloaded.values) == pytest.approx(sorted([2 * 0.6931471805599453, 0.6931471805599453]))
