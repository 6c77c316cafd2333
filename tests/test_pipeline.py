"""End to end on tiny data: generate -> bronze -> silver -> gold, then reruns and a new batch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakeforge import bronze, gold, offline_docs, silver, tables
from lakeforge.config import Expectation, Settings, load_use_case
from lakeforge.datagen import BatchSpec, generate_batch, read_manifest
from lakeforge.errors import AccountingMismatch, ValidationFailed

ROWS = 600
NO_MODELS = {"features": None, "training": None, "scoring": None, "monitoring": None}  # use cases cut to one source


def _landed_lines(settings: Settings, source: str, batches=None) -> list[str]:
    folder = Path(settings.env.path("landing")) / settings.use_case.name / source
    lines: list[str] = []
    for part in sorted(folder.glob("batch_*/part-*")):
        if batches is not None and int(part.parent.name.split("_")[1]) not in batches:
            continue
        content = part.read_text().splitlines()
        lines += content[1:] if settings.use_case.sources[source].format == "csv" else content
    return lines


def _manifest(settings: Settings, source: str) -> dict[str, int]:
    return read_manifest(settings.env.path("landing"), settings.use_case.name, source)


@pytest.fixture(scope="module")
def medallion(spark, tmp_path_factory, environment_for) -> Settings:
    settings = Settings(use_case=load_use_case("churn"), env=environment_for(tmp_path_factory.mktemp("e2e"), "e2e"))
    for batch in (0, 1):
        generate_batch(spark, settings.use_case, settings.env.path("landing"), BatchSpec(ROWS, 11, batch))
    bronze.run(spark, settings)
    silver.run(spark, settings)
    gold.run(spark, settings)
    return settings


def _table(spark, settings: Settings, layer: str, name: str):
    return spark.read.table(settings.table(layer, name))


@pytest.mark.parametrize("source", ["customers", "orders", "tickets", "cancellations"])
def test_bronze_keeps_every_landed_line(spark, medallion, source):
    lines = _landed_lines(medallion, source)
    rows = _table(spark, medallion, "bronze", source)
    assert rows.count() == len(lines)
    if medallion.use_case.sources[source].format == "json":
        malformed = sorted(line for line in lines if not _is_json(line))
        kept = sorted(r[0] for r in rows.where(F.col(bronze.CORRUPT).isNotNull()).select(bronze.CORRUPT).collect())
        assert kept == malformed
        assert rows.where(F.col(bronze.RESCUED).isNotNull()).count() == 0  # every key the generator writes is a column


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_new_column_in_later_batch_is_kept(spark, medallion):
    assert "coupon_code" in _table(spark, medallion, "bronze", "orders").columns
    silver_orders = _table(spark, medallion, "silver", "orders")
    assert silver_orders.where(F.col("coupon_code") == "SPRING10").count() > 0
    assert silver_orders.where(F.col("order_id").startswith("O00")).where(F.col("coupon_code").isNotNull()).count() == 0


@pytest.mark.parametrize(
    ("source", "reasons"),
    [
        (
            "orders",
            {
                "malformed": "malformed_record",
                "wrong_type": "cast_failed:amount",
                "null_key": "expect_column_values_to_not_be_null:order_id",
                "out_of_range": "expect_column_values_to_be_between:amount",
            },
        ),
        (
            "customers",
            {
                "malformed": "malformed_record",
                "wrong_type": "cast_failed:age",
                "null_key": "expect_column_values_to_not_be_null:customer_id",
                "out_of_range": "expect_column_values_to_be_between:age",
            },
        ),
        (
            "tickets",
            {
                "malformed": "malformed_record",
                "wrong_type": "cast_failed:created_at",
                "null_key": "expect_column_values_to_not_be_null:ticket_id",
            },
        ),
    ],
)
def test_every_defect_is_quarantined_with_its_reason(spark, medallion, source, reasons):
    manifest = _manifest(medallion, source)
    quarantine = _table(spark, medallion, "silver", f"{source}_quarantine")
    found = silver.count_reasons(quarantine)
    for defect, reason in reasons.items():
        assert manifest[defect] > 0, f"the generator injected no {defect} into {source}"
        assert found.get(reason, 0) == manifest[defect], (defect, reason, found)


def test_quarantine_keeps_values_as_they_arrived(spark, medallion):
    quarantine = _table(spark, medallion, "silver", "orders_quarantine")
    wrong = (
        quarantine.where(F.array_contains(silver.REASONS, "cast_failed:amount")).select("amount").distinct().collect()
    )
    assert [r[0] for r in wrong] == ["not-a-number"]
    assert quarantine.where(F.col("_source_file").isNull() | F.col("_run_id").isNull()).count() == 0


def _late_winners(spark, settings: Settings, source: str, key: str) -> set[str]:
    """Keys whose silver row is a late (epoch) update although a newer record of the key was valid."""
    late = _table(spark, settings, "silver", source).where(F.year("updated_at") == 1970).select(key)
    quarantined = _table(spark, settings, "silver", f"{source}_quarantine").select(key)
    return {r[0] for r in late.subtract(quarantined).collect()}


def test_silver_has_one_row_per_key_and_late_updates_lose(spark, medallion):
    orders = _table(spark, medallion, "silver", "orders")
    assert orders.count() == orders.select("order_id").distinct().count()
    assert orders.where(F.col("status") == "refunded").count() > 0
    # A late update only survives when it is the sole valid record of its key.
    assert _late_winners(spark, medallion, "orders", "order_id") == set()
    assert _late_winners(spark, medallion, "customers", "customer_id") == set()
    assert dict(orders.dtypes)["amount"] == "double" and dict(orders.dtypes)["updated_at"] == "timestamp"


def test_accounting_adds_up_and_covers_bronze(spark, medallion):
    audit = _table(spark, medallion, "ops", "run_audit").collect()
    assert {r["target_table"] for r in audit} == {medallion.table("silver", s) for s in medallion.use_case.sources}
    for row in audit:
        assert row["rows_read"] == row["rows_merged"] + row["rows_quarantined"] + row["duplicates_collapsed"]
        source = row["target_table"].split(".")[-1].strip("`")
        assert row["duplicates_collapsed"] >= _manifest(medallion, source)["duplicate_copy"]
        assert row["rows_read"] == _table(spark, medallion, "bronze", source).count()
        assert row["rows_merged"] >= _table(spark, medallion, "silver", source).count()


def test_gx_counts_match_rows_tagged_in_quarantine(spark, medallion):
    results = _table(spark, medallion, "ops", "validation_results").where(F.col("action") == "quarantine").collect()
    assert results
    for result in results:
        source = result["table_name"].removeprefix("churn_")
        quarantine = _table(spark, medallion, "silver", f"{source}_quarantine")
        tagged = quarantine.where(F.array_contains(silver.REASONS, result["expectation"])).count()
        assert tagged == result["unexpected_count"], result["expectation"]


def test_data_docs_open_offline_with_every_validation(spark, medallion):
    docs = Path(medallion.env.path("data_docs"))
    page = (docs / "index.html").read_text()
    assert "<script" not in page and "<link" not in page, "the index loads nothing"
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page)
    missing = [ref for ref in referenced if "://" in ref or not (docs / ref).is_file()]
    assert referenced and missing == [], f"the index points at what is not on disk: {missing}"
    results = _table(spark, medallion, "ops", "validation_results").collect()
    for table_name in {row["table_name"] for row in results}:
        assert f"<td>{table_name}</td>" in page
    for row in results:
        if not row["success"]:
            assert row["expectation"] in page, row["expectation"]
    # GX's result pages hold their results as static HTML (readable without their scripts and styles).
    linked = [docs / ref for ref in referenced if ref.startswith("validations/")]
    assert linked and all("Evaluated Expectations" in path.read_text() for path in linked)
    assert (docs / offline_docs.GX_INDEX).is_file()


def test_gold_agrees_with_silver(spark, medallion):
    orders = _table(spark, medallion, "silver", "orders")
    expected = orders.where(F.col("status").isin("completed", "shipped")).agg(F.sum("amount")).first()[0]
    revenue = _table(spark, medallion, "gold", "daily_revenue").agg(F.sum("revenue")).first()[0]
    assert revenue == pytest.approx(expected, abs=0.05)
    entity = _table(spark, medallion, "gold", "customer_entity")
    assert entity.count() == _table(spark, medallion, "silver", "customers").count()
    churned = entity.where(F.col("cancelled_at").isNotNull()).count()
    assert churned == _table(spark, medallion, "silver", "cancellations").count()


def _versions(spark, settings: Settings, more: list[tuple[str, str]] = ()) -> dict[str, int | None]:
    names = [("bronze", s) for s in settings.use_case.sources] + [("silver", s) for s in settings.use_case.sources]
    names += list(more)
    names += [("silver", f"{s}_quarantine") for s in settings.use_case.sources] + [("ops", "run_audit")]
    return {f"{layer}.{name}": tables.table_version(spark, settings.table(layer, name)) for layer, name in names}


def test_rerun_changes_nothing_then_a_new_batch_is_incremental(spark, medallion):
    gold_tables = [("gold", name) for name in medallion.use_case.gold]
    before = _versions(spark, medallion, gold_tables)
    bronze.run(spark, medallion)
    assert silver.run(spark, medallion, validate=True) == {s: None for s in medallion.use_case.sources}
    assert gold.run(spark, medallion) == dict.fromkeys(medallion.use_case.gold, False)  # nothing new: skipped
    assert _versions(spark, medallion, gold_tables) == before

    generate_batch(spark, medallion.use_case, medallion.env.path("landing"), BatchSpec(ROWS, 11, 2))
    bronze.run(spark, medallion)
    counts = silver.run(spark, medallion)
    assert counts["orders"].rows_read == len(_landed_lines(medallion, "orders", batches={2}))
    orders = _table(spark, medallion, "silver", "orders")
    assert orders.count() == orders.select("order_id").distinct().count()
    assert gold.run(spark, medallion) == dict.fromkeys(medallion.use_case.gold, True)  # every input changed
    test_gold_agrees_with_silver(spark, medallion)


def test_fail_expectation_stops_before_writing(spark, tmp_path, environment_for):
    use_case = load_use_case("churn")
    cancellations = use_case.sources["cancellations"].model_copy(
        update={
            "expectations": [
                Expectation(type="expect_table_row_count_to_be_between", action="fail", kwargs={"max_value": 1}),
            ]
        }
    )
    use_case = use_case.model_copy(update={"sources": {"cancellations": cancellations}, "gold": {}, **NO_MODELS})
    settings = Settings(use_case=use_case, env=environment_for(tmp_path, "failing"))
    generate_batch(spark, load_use_case("churn"), settings.env.path("landing"), BatchSpec(ROWS, 11, 0))
    bronze.run(spark, settings)
    with pytest.raises(ValidationFailed, match="expect_table_row_count_to_be_between"):
        silver.run(spark, settings)
    for layer, name in [("silver", "cancellations"), ("silver", "cancellations_quarantine"), ("ops", "run_audit")]:
        assert not tables.table_exists(spark, settings.table(layer, name))


def test_keys_that_cannot_be_columns_are_rescued_in_bronze(spark, tmp_path, environment_for):
    """Silver ignores `_rescued_data` like every `_` column: the medallion above runs with it on every JSON table."""
    use_case = load_use_case("churn")
    use_case = use_case.model_copy(update={"sources": {"orders": use_case.sources["orders"]}, "gold": {}, **NO_MODELS})
    settings = Settings(use_case=use_case, env=environment_for(tmp_path, "rescue"))
    order = {"customer_id": "C1", "order_ts": "2026-03-01 10:00:00", "amount": "5", "status": "completed"}
    batches = [
        [{"order_id": "O1", "updated_at": "2026-03-01 10:00:00", **order}],
        [
            {"order_id": "O1", "updated_at": "2026-03-02 10:00:00", **order, "_record_id": "up-1", "Amount": "9"},
            {"order_id": "O2", "updated_at": "2026-03-02 10:00:00", **order, "gift wrap": True},
        ],
    ]
    for number, lines in enumerate(batches):
        folder = Path(settings.env.path("landing")) / "churn" / "orders" / f"batch_{number:05d}"
        folder.mkdir(parents=True)
        (folder / "part-00000.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    bronze.run(spark, settings)

    landed = _table(spark, settings, "bronze", "orders")
    assert not {"Amount", "gift wrap"} & set(landed.columns)
    rows = landed.select("order_id", bronze.RESCUED, "_record_id", "_source_file").collect()
    assert {(r["order_id"], r[bronze.RESCUED]) for r in rows} == {
        ("O1", None),
        ("O1", '{"_record_id":"up-1","Amount":"9"}'),
        ("O2", '{"gift wrap":"true"}'),
    }
    assert all(r["_record_id"].startswith(r["_source_file"] + "#") for r in rows)  # lakeforge's id, not upstream's


def test_dedup_keeping_other_than_one_row_per_key_fails_before_writing(spark, tmp_path, environment_for, monkeypatch):
    use_case = load_use_case("churn")
    use_case = use_case.model_copy(update={"sources": {"orders": use_case.sources["orders"]}, "gold": {}, **NO_MODELS})
    settings = Settings(use_case=use_case, env=environment_for(tmp_path, "accounting"))
    generate_batch(spark, load_use_case("churn"), settings.env.path("landing"), BatchSpec(ROWS, 11, 0))
    bronze.run(spark, settings)
    # A dedup that keeps every row: the MERGE would receive the duplicates too.
    monkeypatch.setattr(
        silver, "latest_per_key", lambda rows, keys, event_time: rows.withColumn("_duplicate", F.lit(False))
    )
    with pytest.raises(AccountingMismatch, match=r"kept as latest per key, but \d+ distinct keys; nothing was written"):
        silver.run(spark, settings, validate=False)
    for layer, name in [("silver", "orders"), ("silver", "orders_quarantine"), ("ops", "run_audit")]:
        assert not tables.table_exists(spark, settings.table(layer, name))
    monkeypatch.undo()
    counts = silver.run(spark, settings, validate=False)["orders"]
    assert counts.duplicates_collapsed > 0
    silver_rows = spark.read.table(settings.table("silver", "orders"))
    assert silver_rows.count() == silver_rows.select("order_id").distinct().count() == counts.rows_merged


def test_overwriting_a_table_prints_no_false_hive_error(spark):
    from lakeforge.session import HIVE_FALSE_ALARM

    log4j = spark._jvm.org.apache.logging.log4j
    assert not log4j.LogManager.getLogger(HIVE_FALSE_ALARM).isErrorEnabled()
    assert log4j.LogManager.getLogger("org.apache.spark.sql.hive.HiveExternalCatalog").isErrorEnabled()
