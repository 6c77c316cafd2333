"""Batch scoring with the champion: idempotent per date, the analyst view, and every refusal path."""

from __future__ import annotations

import datetime as dt

import mlflow
import pytest
from pyspark.sql import functions as F

from lakeforge import feature_store, gate, modeling, scoring, tables, tracking, training
from lakeforge.config import Scoring, SearchDimension, Settings
from lakeforge.errors import ModelNotFound, SchemaMismatch, StaleFeatures

DAY = dt.date(2026, 2, 20)


@pytest.fixture(scope="module")
def champion(churn_champion) -> Settings:
    return churn_champion


def _predictions(spark, settings: Settings):
    return spark.read.table(settings.table("gold", settings.use_case.scoring.table))


def test_rerun_of_a_date_replaces_its_partition(spark, champion):
    customers = {
        r[0] for r in spark.read.table(champion.table("gold", "customer_entity")).select("customer_id").collect()
    }
    entities = len(customers)
    first = scoring.run(spark, champion, DAY)
    stamp = _predictions(spark, champion).where(F.col("scoring_date") == DAY).select("scored_at").distinct().collect()
    second = scoring.run(spark, champion, DAY)
    predictions = _predictions(spark, champion)
    today = predictions.where(F.col("scoring_date") == DAY)
    assert first.rows == second.rows == today.count() == entities
    assert sorted(r[0] for r in today.select("customer_id").collect()) == sorted(customers)  # each once
    assert today.select("scored_at").distinct().collect() != stamp  # replaced, not appended
    scoring.run(spark, champion, DAY + dt.timedelta(days=7))
    ours = predictions.where(F.col("scoring_date").isin(DAY, DAY + dt.timedelta(days=7)))  # the champion is shared
    assert ours.groupBy("scoring_date").count().orderBy("scoring_date").collect() == [
        (DAY, entities),
        (DAY + dt.timedelta(days=7), entities),
    ]
    assert today.select("scored_at").distinct().count() == 1  # the other date left this one alone


def test_predictions_are_the_champion_on_the_scoring_set(spark, champion):
    scoring.run(spark, champion, DAY)
    written = _predictions(spark, champion).where(F.col("scoring_date") == DAY)
    row = written.orderBy("customer_id").first()
    assert row.model_name == "churn_classifier" and row.run_id
    assert row.predicted_label == int(row.score >= champion.use_case.training.decision_threshold)
    rows, _ = feature_store.scoring_set(spark, champion, dt.datetime.combine(DAY, dt.time()))
    model = mlflow.spark.load_model(f"models:/churn_classifier/{row.model_version}")
    expected = modeling.with_score(model.transform(modeling.model_input(rows, champion.use_case.training)))
    again = expected.where(F.col("customer_id") == row.customer_id).select(modeling.SCORE).first()[0]
    assert row.score == pytest.approx(again, abs=1e-12)


def test_scoring_computes_only_the_probabilities_and_they_are_the_full_transforms(spark, champion):
    rows, _ = feature_store.scoring_set(spark, champion, dt.datetime.combine(DAY, dt.time()))
    rows = modeling.model_input(rows, champion.use_case.training)
    tracking.configure(champion)
    uri = f"models:/churn_classifier/{tracking.require_version('churn_classifier', tracking.CHAMPION).version}"
    model = mlflow.spark.load_model(uri)
    lean = modeling.probability_only(model).transform(rows)
    full = model.transform(rows)  # the loaded model itself is left as it was
    assert {"rawPrediction", "prediction"} <= set(full.columns)
    assert not {"rawPrediction", "prediction"} & set(lean.columns)
    scores = [modeling.with_score(df).select("customer_id", modeling.SCORE) for df in (full, lean)]
    joined = scores[0].join(scores[1].withColumnRenamed(modeling.SCORE, "lean"), "customer_id")
    assert joined.count() == rows.count()
    assert joined.where(~F.col(modeling.SCORE).eqNullSafe(F.col("lean"))).count() == 0  # bit for bit, no nulls


def test_analyst_view_joins_the_entity_table(spark, champion):
    scoring.run(spark, champion, DAY)
    view = champion.table("gold", champion.use_case.scoring.view)
    joined = spark.sql(f"SELECT customer_id, score, plan, lifetime_orders FROM {view} WHERE scoring_date = '{DAY}'")
    assert joined.count() == _predictions(spark, champion).where(F.col("scoring_date") == DAY).count()
    assert joined.where(F.col("plan").isNull()).count() == 0


def _version(spark, settings):
    return tables.table_version(spark, settings.table("gold", settings.use_case.scoring.table))


def test_missing_champion_writes_nothing(spark, champion, training_settings, tmp_path):
    scoring.run(spark, champion, DAY)
    before = _version(spark, champion)
    nobody = training_settings(champion, tmp_path / "empty-mlflow")
    with pytest.raises(ModelNotFound, match="no 'champion' version"):
        scoring.run(spark, nobody, DAY)
    assert _version(spark, champion) == before


def test_stale_feature_table_writes_nothing(spark, champion):
    before = _version(spark, champion)
    with pytest.raises(StaleFeatures, match="older than their max age: customer_activity"):
        scoring.run(spark, champion, DAY, now=dt.datetime(2030, 1, 1))
    assert _version(spark, champion) == before


def test_rows_not_matching_the_signature_write_nothing(spark, champion, monkeypatch):
    before = _version(spark, champion)
    original = modeling.model_input

    def without_age(rows, config):
        return original(rows, config).drop("age").withColumn("monthly_fee", F.lit("free"))

    monkeypatch.setattr(modeling, "model_input", without_age)
    with pytest.raises(SchemaMismatch, match="age is missing; monthly_fee is string, the model expects double"):
        scoring.run(spark, champion, DAY)
    assert _version(spark, champion) == before


def test_text_as_a_string_instead_of_its_vector_writes_nothing(spark, champion, monkeypatch):
    before = _version(spark, champion)
    original = modeling.model_input

    def raw_text(rows, config):
        return original(rows, config).withColumn("ticket_text_30d_tfidf", F.lit("my invoice is wrong"))

    monkeypatch.setattr(modeling, "model_input", raw_text)
    with pytest.raises(SchemaMismatch, match="ticket_text_30d_tfidf is string, the model expects a Spark ML vector"):
        scoring.run(spark, champion, DAY)
    assert _version(spark, champion) == before


def test_single_node_champion_scores_through_spark_udf(spark, champion, training_settings, tmp_path):
    sklearn_settings = training_settings(
        champion,
        tmp_path / "mlflow-sklearn",
        engine="single_node",
        search_space={"C": SearchDimension(kind="loguniform", low=0.1, high=1.0)},
        fixed_params={"max_iter": 200},
    )
    training.run(spark, sklearn_settings)
    assert gate.run(spark, sklearn_settings).promoted
    result = scoring.run(spark, sklearn_settings, DAY + dt.timedelta(days=1))
    written = _predictions(spark, sklearn_settings).where(F.col("scoring_date") == result.scoring_date)
    assert written.count() == result.rows > 0
    assert written.where((F.col("score") < 0) | (F.col("score") > 1) | F.col("score").isNull()).count() == 0
    # The score written for a customer is the pyfunc model's probability on that customer's features.
    row = written.orderBy("customer_id").first()
    config = sklearn_settings.use_case.training
    features, _ = feature_store.scoring_set(
        spark, sklearn_settings, dt.datetime.combine(result.scoring_date, dt.time())
    )
    model = mlflow.pyfunc.load_model(f"models:/{result.model_name}/{result.model_version}")
    columns = model.metadata.get_input_schema().input_names()
    one = modeling.model_input(features, config).where(F.col("customer_id") == row.customer_id).select(*columns)
    assert row.score == pytest.approx(float(model.predict(one.toPandas())[0][1]), abs=1e-9)


# Churn's champion scoring each order as a churn risk at the order's own time. Churn's labels are per customer,
# so the config check that event labels share the event key would refuse this use case as a file: the test
# swaps the scoring section in place to exercise the scoring path with a trained champion.
ORDERS_AS_EVENTS = Scoring(
    mode="events",
    table="order_predictions",
    view="order_predictions_view",
    events="silver.orders",
    event_key=["order_id"],
    event_time="order_ts",
    entity_columns=["amount", "status"],
)


def _scoring_orders(settings: Settings) -> Settings:
    return settings.model_copy(update={"use_case": settings.use_case.model_copy(update={"scoring": ORDERS_AS_EVENTS})})


def test_events_mode_scores_each_event_of_the_date_once_and_a_rerun_replaces_them(spark, champion):
    settings = _scoring_orders(champion)
    orders = spark.read.table(settings.table("silver", "orders")).where(F.to_date("order_ts") == DAY)
    expected = {r.order_id: (r.customer_id, r.order_ts) for r in orders.collect()}
    assert len(expected) > 5
    first = scoring.run(spark, settings, DAY)
    table = settings.table("gold", "order_predictions")
    stamp = spark.read.table(table).select("scored_at").distinct().collect()
    second = scoring.run(spark, settings, DAY)
    written = spark.read.table(table).where(F.col("scoring_date") == DAY).collect()
    assert first.rows == second.rows == len(written) == len(expected)
    assert {r.order_id: (r.customer_id, r.order_ts) for r in written} == expected
    assert spark.read.table(table).select("scored_at").distinct().collect() != stamp
    assert all(r.predicted_label == int(r.score >= 0.5) and r.model_version == first.model_version for r in written)
    view = spark.read.table(settings.table("gold", "order_predictions_view")).where(F.col("scoring_date") == DAY)
    assert {r.order_id: r.amount for r in view.collect()} == {r.order_id: r.amount for r in orders.collect()}
    # With no date, the newest event's date is scored.
    newest = spark.read.table(settings.table("silver", "orders")).agg(F.max(F.to_date("order_ts"))).first()[0]
    assert scoring.default_scoring_date(spark, settings) == newest


def test_an_event_sees_the_features_known_at_its_own_time_and_none_written_after(spark, champion, monkeypatch):
    """Two feature rows planted for a customer on the day of their order: one a minute before the order
    (it must be used, over the day-start row), one a minute after (it must not reach the order)."""
    from dataclasses import replace

    settings = _scoring_orders(champion)
    order = (
        spark.read.table(settings.table("silver", "orders"))
        .where((F.to_date("order_ts") == DAY) & (F.hour("order_ts") >= 1))
        .orderBy("order_id")
        .first()
    )
    real_sources = feature_store.feature_sources

    def with_planted_rows(spark_session, settings_, versions=None):
        sources, used = real_sources(spark_session, settings_, versions)
        planted = []
        for source in sources:
            if source.name != "customer_activity":
                planted.append(source)
                continue
            latest = source.rows.where(F.col("customer_id") == order.customer_id).orderBy(F.desc("feature_ts")).limit(1)
            before = latest.withColumns(
                {"feature_ts": F.lit(order.order_ts) - F.expr("INTERVAL 1 MINUTE"), "spend_90d": F.lit(12345.0)}
            )
            after = latest.withColumns(
                {"feature_ts": F.lit(order.order_ts) + F.expr("INTERVAL 1 MINUTE"), "spend_90d": F.lit(99999.0)}
            )
            planted.append(replace(source, rows=source.rows.unionByName(before).unionByName(after)))
        return planted, used

    monkeypatch.setattr(feature_store, "feature_sources", with_planted_rows)
    rows, _ = feature_store.rows_to_score(spark, settings, DAY)
    mine = rows.where(F.col("order_id") == order.order_id).first()
    assert mine.spend_90d == 12345.0 and mine.label_ts == order.order_ts
    assert mine.customer_activity_age_days == pytest.approx(1 / (24 * 60))
    # Orders of the same customer earlier that day saw neither planted row.
    earlier = rows.where((F.col("customer_id") == order.customer_id) & (F.col("label_ts") < order.order_ts))
    assert all(r.spend_90d not in (12345.0, 99999.0) for r in earlier.collect())
    assert rows.where(F.col("spend_90d") == 99999.0).count() == 0


def test_event_quality_joins_labels_by_key_whenever_they_arrive(spark):
    from lakeforge import quality

    predictions = spark.createDataFrame(
        [("e1", DAY, 0.9, 1, "m", "1"), ("e2", DAY, 0.2, 0, "m", "1"), ("e3", DAY, 0.7, 1, "m", "1")],
        "event_id string, scoring_date date, score double, predicted_label int, model_name string, "
        "model_version string",
    )
    # Labels arrive days later, stamped with the event time (not the scoring instant); e3 has none yet.
    labels = spark.createDataFrame(
        [("e1", dt.datetime(2026, 2, 20, 14, 5), 1), ("e2", dt.datetime(2026, 2, 20, 9, 30), 0)],
        "event_id string, event_ts timestamp, outcome int",
    )
    labelled = quality.labelled_events(predictions, labels, ["event_id"], "outcome")
    assert sorted((r.event_id, r.label) for r in labelled.collect()) == [("e1", 1.0), ("e2", 0.0)]
    measured = quality.model_quality(labelled).first()
    assert (measured.scoring_date, measured.auc_roc) == (DAY, 1.0)
