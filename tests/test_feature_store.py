"""The features job on tiny churn data: lineage, idempotent and incremental refreshes, lookups, refusals."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from lakeforge import bronze, feature_store, gold, modeling, silver, tables
from lakeforge.config import Settings
from lakeforge.datagen import BatchSpec, generate_batch
from lakeforge.errors import FeatureDefinitionError, TableNotFound
from lakeforge.feature_store import FeatureTableStatus
from lakeforge.provenance import code_version
from lakeforge.text import vectorize
from lakeforge.usecases.churn import ticket_text

ROWS = 1500  # as the shared churn_features fixture


def _medallion(spark, settings: Settings, batch: int) -> None:
    generate_batch(spark, settings.use_case, settings.env.path("landing"), BatchSpec(ROWS, 5, batch))
    bronze.run(spark, settings)
    silver.run(spark, settings)
    gold.run(spark, settings)


@pytest.fixture(scope="module")
def churn(churn_features) -> Settings:
    return churn_features


def _rows(spark, table: str):
    return sorted(tuple(r) for r in spark.read.table(table).collect())


def test_lineage_properties_and_registry_after_a_run(spark, churn):
    use_case = churn.use_case
    for name, table in use_case.features.tables.items():
        status = feature_store.status(spark, churn, name)
        properties = status.properties
        expected_sources = {
            churn.table(*ref.split(".")).replace("`", ""): tables.table_version(spark, churn.table(*ref.split(".")))
            for ref in table.sources
        }
        assert json.loads(properties["sources"]) == expected_sources
        assert properties["config_hash"] == table.config_hash()
        assert properties["code_version"] == code_version()
        assert properties["entity"] == "customer_id"
        bounds = spark.read.table(status.table_name).agg(F.min(table.timestamp), F.max(table.timestamp)).first()
        assert properties["window_start"] == bounds[0].isoformat()
        assert properties["window_end"] == bounds[1].isoformat()
        assert not status.stale
        refreshed = dt.datetime.fromisoformat(properties["refreshed_at"])
        assert feature_store.status(
            spark, churn, name, now=refreshed + dt.timedelta(hours=table.max_age_hours + 1)
        ).stale
        registry = feature_store.registry(spark, churn).where(F.col("feature_table") == name).first()
        assert registry.source_versions == expected_sources
        assert registry.config_hash == table.config_hash()
        assert registry.rows_written == spark.read.table(status.table_name).count()


def test_feature_values_match_silver_for_one_customer(spark, churn):
    orders = spark.read.table(churn.table("silver", "orders"))
    customer, day = orders.select("customer_id", F.to_date("order_ts")).orderBy("customer_id", "order_ts").first()
    known_from = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    row = (
        spark.read.table(churn.table("features", "customer_activity"))
        .where((F.col("customer_id") == customer) & (F.col("feature_ts") == known_from))
        .first()
    )
    window = orders.where(
        (F.col("customer_id") == customer)
        & (F.to_date("order_ts") > day - dt.timedelta(days=30))
        & (F.to_date("order_ts") <= day)
    )
    assert row.orders_30d == window.count()
    counted = window.where(F.col("status").isin("completed", "shipped")).agg(F.sum("amount")).first()[0] or 0.0
    assert row.spend_30d == pytest.approx(counted)


def test_text_table_stores_the_saved_pipelines_vectors_of_the_trailing_text(spark, churn):
    spec = churn.use_case.features.tables["ticket_text"].text
    stored = spark.read.table(churn.table("features", "ticket_text"))
    assert stored.columns == ["customer_id", "feature_ts", "ticket_text_30d_tfidf"]  # vectors, not the text
    tickets = spark.read.table(churn.table("silver", "tickets"))
    text = ticket_text(tickets, window_days=30)
    pipeline = PipelineModel.load(feature_store.status(spark, churn, "ticket_text").properties["text_pipeline"])
    expected = vectorize(pipeline, text, spec)
    assert_df_equality(stored, expected.select(*stored.columns), ignore_row_order=True, ignore_nullable=True)
    vectors = [row.ticket_text_30d_tfidf for row in stored.collect()]
    assert {v.size for v in vectors} == {spec.num_features}
    assert all(v.numNonzeros() > 0 for v in vectors)  # every stored day has ticket words


def test_rerun_is_idempotent_and_reuses_the_text_pipeline(spark, churn):
    names = list(churn.use_case.features.tables)
    before = {n: _rows(spark, churn.table("features", n)) for n in names}
    pipeline_before = feature_store.status(spark, churn, "ticket_text").properties["text_pipeline"]
    refreshes = feature_store.run(spark, churn)
    assert {r.mode for r in refreshes} == {"incremental"}
    assert {n: _rows(spark, churn.table("features", n)) for n in names} == before
    assert feature_store.status(spark, churn, "ticket_text").properties["text_pipeline"] == pipeline_before


def test_incremental_refresh_of_a_new_day_equals_a_full_recompute(spark, churn):
    _medallion(spark, churn, 1)
    refreshes = {r.feature_table: r for r in feature_store.run(spark, churn)}
    activity = refreshes["customer_activity"]
    assert activity.mode == "incremental"
    total = spark.read.table(churn.table("features", "customer_activity")).count()
    assert 0 < activity.rows_written < total  # only the new time slice was computed
    for name, table in churn.use_case.features.tables.items():
        incremental = spark.read.table(churn.table("features", name))
        inputs = {ref.split(".")[1]: spark.read.table(churn.table(*ref.split("."))) for ref in table.sources}
        recomputed = feature_store.compute_feature_rows(inputs, name, table)
        if table.text:  # the incremental run applied the pipeline the first run fitted
            pipeline = feature_store.text_pipeline_path(spark, churn, name)
            recomputed = vectorize(PipelineModel.load(pipeline), recomputed, table.text)
        if table.time_columns:
            assert _differences(incremental, recomputed) == ([], [])
        else:
            # Silver keeps only a customer's latest profile; the feature table also keeps the older
            # rows, which point-in-time lookups before the change still need.
            assert recomputed.exceptAll(incremental).count() == 0
            assert incremental.count() > recomputed.count()


def _differences(left, right, limit=3):
    """Rows only in `left` and rows only in `right` (a few of each); vectors compared as arrays."""
    left, right = modeling.vectors_as_arrays(left), modeling.vectors_as_arrays(right)
    return (
        [tuple(r) for r in left.exceptAll(right).limit(limit).collect()],
        [tuple(r) for r in right.exceptAll(left).limit(limit).collect()],
    )


def test_training_set_is_rebuilt_exactly_from_its_versions(spark, churn):
    current = feature_store.training_set(spark, churn)
    labels_table = churn.table("gold", "churn_labels")
    assert set(current.versions) == {
        labels_table,
        *[churn.table("features", n) for n in churn.use_case.features.tables],
    }
    assert current.rows.where(F.col("churned") == 1).count() > 0
    feature_store.run(spark, churn, full=True)  # new versions
    again = feature_store.training_set(spark, churn, versions=current.versions)
    assert again.versions == current.versions
    assert_df_equality(current.rows, again.rows, ignore_row_order=True)


def test_training_and_scoring_paths_agree_for_an_entity_at_a_time(spark, churn):
    training = feature_store.training_set(spark, churn)
    sample = training.rows.where(F.col("ticket_text_30d_tfidf").isNotNull()).orderBy("customer_id", "label_ts").first()
    scored, _ = feature_store.scoring_set(spark, churn, sample.label_ts, versions=training.versions)
    served = scored.where(F.col("customer_id") == sample.customer_id).first().asDict()
    trained = sample.asDict()
    trained.pop("churned")
    assert served == trained


def test_no_feature_row_after_the_label_time_is_used(spark, churn):
    training = feature_store.training_set(spark, churn).rows
    for name in churn.use_case.features.tables:
        ages = training.where(F.col(f"{name}_age_days") < 0).count()
        assert ages == 0, f"{name} used a row from after the label time"


def test_missing_source_table_stops_before_any_write(spark, churn, tmp_path, environment_for):
    settings = Settings(use_case=churn.use_case, env=environment_for(tmp_path, "nosrc"))
    with pytest.raises(TableNotFound, match="silver_nosrc.*orders.*read by customer_activity"):
        feature_store.run(spark, settings)
    assert not spark.catalog.databaseExists("features_nosrc")


def test_transform_returning_duplicate_keys_writes_nothing(spark, churn, monkeypatch):
    before = tables.table_version(spark, churn.table("features", "customer_profile"))
    compute = feature_store.compute_feature_rows

    def twice(inputs, name, table):
        rows = compute(inputs, name, table)
        return rows.unionByName(rows)

    monkeypatch.setattr(feature_store, "compute_feature_rows", twice)
    table = churn.use_case.features.tables["customer_profile"]
    with pytest.raises(FeatureDefinitionError, match="more than one row per"):
        feature_store.materialize(spark, churn, "customer_profile", table, full=True)
    assert tables.table_version(spark, churn.table("features", "customer_profile")) == before


def test_status_without_a_refresh_is_stale(spark, churn):
    status = FeatureTableStatus("x", "t", {}, None, 36.0)
    assert status.stale
