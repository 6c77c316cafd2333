"""Pure transforms on small inline DataFrames, compared by content."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakeforge import bronze, silver, tables, transforms
from lakeforge.config import Expectation, Source, load_use_case
from lakeforge.usecases import churn
from lakeforge.validation import filter_from_index_query

ORDERS = Source(
    format="json",
    key=["order_id"],
    event_time="updated_at",
    columns={"order_id": "string", "amount": "double", "updated_at": "timestamp"},
    expectations=[
        Expectation(type="expect_column_values_to_not_be_null", column="order_id", action="quarantine"),
        Expectation(
            type="expect_column_values_to_be_between",
            column="amount",
            action="quarantine",
            kwargs={"min_value": 0, "max_value": 100},
        ),
    ],
)


def _bronze_rows(spark, rows):
    columns = ["order_id", "amount", "updated_at", "_corrupt_record", "_record_id", "_source_file", "_ingested_at"]
    schema = ", ".join(f"{column} string" for column in columns)
    return spark.createDataFrame(rows, schema).withColumn("_ingested_at", F.col("_ingested_at").cast("timestamp"))


def test_parse_json_lines_keeps_new_keys_and_malformed_text(spark):
    lines = spark.createDataFrame(
        [
            ('{"order_id": "O1", "amount": 12.50, "coupon": "X"}', "f1"),
            ('{"order_id": "O2", "amo', "f2"),
            ("[1, 2]", "f3"),
            ('{"order_id": "O4", "amount": {"value": 3}}', "f4"),
        ],
        ["value", "_source_file"],
    )
    assert bronze.json_keys(lines) == ["amount", "coupon", "order_id"]
    parsed = bronze.parse_json_lines(lines, ["order_id", "amount", "coupon"])
    assert [tuple(r) for r in parsed.orderBy("_source_file").collect()] == [
        ("O1", "12.5", "X", None, None, None, "f1"),
        (None, None, None, '{"order_id": "O2", "amo', None, None, "f2"),
        (None, None, None, "[1, 2]", None, None, "f3"),
        ("O4", '{"value":3}', None, None, None, ["amount"], "f4"),  # kept as text, named as nested
    ]


def test_split_new_keys_rescues_keys_that_cannot_be_columns():
    columns = ["order_id", "amount", "coupon"]
    keys = ["Amount", "_record_id", "_note", "amount", "first name", "gift", "Gift", "order_id", "1st"]
    rescued = ["Amount", "_record_id", "_note", "first name", "Gift", "1st"]
    assert bronze.split_new_keys(keys, columns) == (["gift"], rescued)


def test_parse_json_lines_rescues_values_of_keys_that_cannot_be_columns(spark):
    odd_keys = '{"order_id": "O1", "Amount": 3, "_record_id": "x", "first name": {"a": [1]}, "_corrupt_record": "c"}'
    lines = spark.createDataFrame(
        [
            (odd_keys, "f1"),
            ('{"order_id": "O2", "amount": 4}', "f2"),
            ('{"order_id": "O3", "Amount": ', "f3"),
        ],
        ["value", "_source_file"],
    )
    rescued_keys = ["Amount", "_record_id", "first name", "_corrupt_record"]
    parsed = bronze.parse_json_lines(lines, ["order_id", "amount"], rescued_keys)
    rows = [tuple(r) for r in parsed.orderBy("_source_file").collect()]
    assert rows == [
        (
            "O1",
            None,
            None,
            '{"Amount":"3","_record_id":"x","first name":"{\\"a\\":[1]}","_corrupt_record":"c"}',
            None,
            "f1",
        ),
        ("O2", "4", None, None, None, "f2"),
        (None, None, '{"order_id": "O3", "Amount": ', None, None, "f3"),
    ]


def test_to_bronze_rows_adds_new_column_once(spark):
    lines = spark.createDataFrame(
        [('{"order_id": "O1", "amount": 1, "updated_at": "2026-01-01", "coupon": "C"}', "f")], ["value", "_source_file"]
    )
    rows = bronze.to_bronze_rows(lines, ORDERS, known_columns=["order_id", "amount", "updated_at"])
    assert rows.columns[:4] == ["order_id", "amount", "updated_at", "coupon"]
    assert set(bronze.METADATA_COLUMNS) <= set(rows.columns)


def test_to_bronze_rows_keeps_its_own_metadata_when_a_key_has_the_same_name(spark):
    lines = spark.createDataFrame(
        [('{"order_id": "O1", "_record_id": "upstream-7", "_source_file": "s3://x", "COUPON": "C"}', "f")],
        ["value", "_source_file"],
    )
    rows = bronze.to_bronze_rows(lines, ORDERS, known_columns=["coupon"])
    assert len(rows.columns) == len(set(rows.columns))
    [row] = rows.collect()
    assert (row["_source_file"], row["coupon"]) == ("f", None)
    assert row["_record_id"].startswith("f#")
    assert json.loads(row[bronze.RESCUED]) == {"COUPON": "C", "_record_id": "upstream-7", "_source_file": "s3://x"}


def test_type_columns_explains_rows_it_cannot_type(spark):
    rows = _bronze_rows(
        spark,
        [
            ("O1", "12.5", "2026-01-01 10:00:00", None, "r1", "f", "2026-01-02"),
            ("O2", "twelve", "2026-01-01 10:00:00", None, "r2", "f", "2026-01-02"),
            (None, None, None, '{"order_id": "O3"', "r3", "f", "2026-01-02"),
            ("O4", None, "yesterday", None, "r4", "f", "2026-01-02"),
        ],
    )
    typed = silver.type_columns(rows, ORDERS)
    result = {r["_record_id"]: (r["amount"], r[silver.REASONS], r["_raw"]["amount"]) for r in typed.collect()}
    assert result == {
        "r1": (12.5, [], "12.5"),
        "r2": (None, ["cast_failed:amount"], "twelve"),
        "r3": (None, ["malformed_record"], None),
        "r4": (None, ["cast_failed:updated_at"], None),
    }


def test_a_nested_value_fails_every_declared_type_but_json(spark):
    """Bronze names the columns whose value was a JSON object or array; only a `json` column takes one."""
    source = Source(
        format="json",
        key=["order_id"],
        columns={"order_id": "string", "amount": "double", "updated_at": "timestamp", "payload": "json"},
    )
    rows = _bronze_rows(
        spark,
        [
            ('{"id": 1}', "1", "2026-01-01 10:00:00", None, "r1", "f", "2026-01-02"),
            ("O2", "[1, 2]", "2026-01-01 10:00:00", None, "r2", "f", "2026-01-02"),
            ("O3", "3", "2026-01-01 10:00:00", None, "r3", "f", "2026-01-02"),
        ],
    )
    rows = rows.withColumn("payload", F.lit('{"a": [1]}')).withColumn(
        bronze.NESTED,
        F.when(F.col("_record_id") == "r1", F.array(F.lit("order_id"), F.lit("payload")))
        .when(F.col("_record_id") == "r2", F.array(F.lit("amount"), F.lit("payload")))
        .otherwise(F.array(F.lit("payload"))),
    )
    typed = silver.type_columns(rows, source)
    result = {r["_record_id"]: (r["order_id"], r["payload"], r[silver.REASONS]) for r in typed.collect()}
    assert result == {
        "r1": ('{"id": 1}', '{"a": [1]}', ["cast_failed:order_id"]),
        "r2": ("O2", '{"a": [1]}', ["cast_failed:amount"]),
        "r3": ("O3", '{"a": [1]}', []),
    }


def test_quarantine_keeps_rescued_keys_and_silver_rows_leave_them(spark):
    rows = _bronze_rows(
        spark,
        [
            ("O1", "12.5", "2026-01-01 10:00:00", None, "r1", "f", "2026-01-02"),
            ("O2", "twelve", "2026-01-01 10:00:00", None, "r2", "f", "2026-01-02"),
            (None, None, None, '{"order_id": "O3"', "r3", "f", "2026-01-02"),
        ],
    ).withColumn(bronze.RESCUED, F.when(F.col("_record_id") != "r3", F.lit('{"Amount":"12"}')))
    tagged = silver.add_expectation_failures(silver.type_columns(rows, ORDERS), {})
    quarantined = silver.quarantine_rows(tagged, "run-1").orderBy("_record_id").collect()
    assert [(r["order_id"], r["amount"], r[bronze.RESCUED]) for r in quarantined] == [
        ("O2", "twelve", '{"Amount":"12"}'),
        (None, None, None),
    ]
    kept = silver.silver_rows(tagged, ["order_id"], "updated_at")
    assert bronze.RESCUED not in kept.columns
    assert [r["order_id"] for r in kept.collect()] == ["O1"]


def test_latest_passing_record_per_key_wins_by_event_time(spark):
    rows = spark.createDataFrame(
        [
            ("O1", "new", dt.datetime(2026, 1, 2), dt.datetime(2026, 1, 1), "a", []),
            ("O1", "late-old", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 5), "b", []),
            ("O2", "only", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1), "c", []),
            ("O3", "dup", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1), "d", []),
            ("O3", "dup", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1), "e", []),
            # The newest O4 failed an expectation: the older passing row is still the one kept.
            ("O4", "passed", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1), "f", []),
            ("O4", "failed", dt.datetime(2026, 1, 3), dt.datetime(2026, 1, 3), "g", ["between:amount"]),
        ],
        f"order_id string, status string, updated_at timestamp, _ingested_at timestamp, _record_id string, "
        f"{silver.REASONS} array<string>",
    )
    flagged = {
        r["_record_id"]: r["_duplicate"] for r in silver.latest_per_key(rows, ["order_id"], "updated_at").collect()
    }
    assert flagged == {"a": False, "b": True, "c": False, "d": True, "e": False, "f": False, "g": False}
    kept = {(r["order_id"], r["status"]) for r in silver.silver_rows(rows, ["order_id"], "updated_at").collect()}
    assert kept == {("O1", "new"), ("O2", "only"), ("O3", "dup"), ("O4", "passed")}


def test_expectation_failures_only_tag_typed_rows(spark):
    rows = spark.createDataFrame(
        [("r1", -5.0, []), ("r2", 5.0, []), ("r3", None, ["malformed_record"])],
        f"_record_id string, amount double, {silver.REASONS} array<string>",
    )
    tagged = silver.add_expectation_failures(rows, {"between:amount": F.col("amount") < 0})
    expected = spark.createDataFrame(
        [("r1", -5.0, ["between:amount"]), ("r2", 5.0, []), ("r3", None, ["malformed_record"])],
        f"_record_id string, amount double, {silver.REASONS} array<string>",
    )
    assert_df_equality(tagged, expected, ignore_row_order=True)


def test_counts_take_one_row_per_key_and_count_the_rest_as_duplicates(spark):
    rows = [("k1", ["x"]), ("k1", []), ("k2", []), ("k2", []), ("k2", []), (None, []), (None, []), ("k3", ["y"])]
    tagged = spark.createDataFrame(
        [(key, i, dt.datetime(2026, 1, 1), f"r{i}", reasons) for i, (key, reasons) in enumerate(rows)],
        f"key string, t int, _ingested_at timestamp, _record_id string, {silver.REASONS} array<string>",
    )
    counts = silver.count_outcomes(tagged, ["key"], "t")
    assert counts == silver.SilverCounts(rows_read=8, rows_merged=3, rows_quarantined=2, duplicates_collapsed=3)
    assert silver.count_outcomes(tagged.limit(0), ["key"], "t") == silver.SilverCounts(0, 0, 0, 0)


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        ("df.filter(F.expr('NOT (a IS NOT NULL)'))", "NOT (a IS NOT NULL)"),
        (
            "df.filter(F.expr(\"(p IS NOT NULL) AND (NOT (p IN ('x', 'y')))\"))",
            "(p IS NOT NULL) AND (NOT (p IN ('x', 'y')))",
        ),
        ("__import__('os').system('echo no')", None),
        (None, None),
        ("not python", None),
    ],
)
def test_filter_from_index_query_never_evaluates_code(query, condition):
    assert filter_from_index_query(query) == condition


def test_daily_revenue_excludes_refunds(spark):
    orders = spark.createDataFrame(
        [
            ("O1", "C1", dt.datetime(2026, 1, 1, 9), 10.0, "completed"),
            ("O2", "C2", dt.datetime(2026, 1, 1, 18), 20.0, "refunded"),
            ("O3", "C1", dt.datetime(2026, 1, 2, 9), 5.5, "shipped"),
        ],
        ["order_id", "customer_id", "order_ts", "amount", "status"],
    )
    expected = spark.createDataFrame(
        [(dt.date(2026, 1, 1), 2, 2, 10.0), (dt.date(2026, 1, 2), 1, 1, 5.5)],
        "order_date date, orders long, active_customers long, revenue double",
    )
    assert_df_equality(churn.daily_revenue(orders), expected, ignore_row_order=True, ignore_nullable=True)


def test_customer_entity_keeps_customers_without_activity(spark):
    customers = spark.createDataFrame(
        [("C1", "basic", "US", 30, dt.date(2025, 1, 1), 9.99), ("C2", "premium", "DE", 40, dt.date(2025, 2, 1), 39.99)],
        ["customer_id", "plan", "country", "age", "signup_date", "monthly_fee"],
    )
    orders = spark.createDataFrame([("C1", dt.datetime(2026, 1, 1), 10.0)], ["customer_id", "order_ts", "amount"])
    tickets = spark.createDataFrame([("C2",)], ["customer_id"])
    cancellations = spark.createDataFrame(
        [("C2", dt.datetime(2026, 2, 1), dt.datetime(2026, 3, 1))], ["customer_id", "cancelled_at", "recorded_at"]
    )
    rows = {r["customer_id"]: r for r in churn.customer_entity(customers, orders, tickets, cancellations).collect()}
    assert (rows["C1"]["lifetime_orders"], rows["C1"]["lifetime_spend"], rows["C1"]["lifetime_tickets"]) == (1, 10.0, 0)
    assert (rows["C2"]["lifetime_orders"], rows["C2"]["lifetime_tickets"]) == (0, 1)
    assert rows["C2"]["cancelled_at"] == dt.datetime(2026, 2, 1) and rows["C1"]["cancelled_at"] is None


def test_for_each_table_finishes_every_table_then_raises_the_first_error_in_order():
    finished = []

    def action(name):
        if name.startswith("bad"):
            raise ValueError(name)
        time.sleep(0.05)
        finished.append(name)
        return name.upper()

    assert tables.for_each_table(["a", "b", "c"], action) == {"a": "A", "b": "B", "c": "C"}
    finished.clear()
    with pytest.raises(ValueError, match="^bad1$"):
        tables.for_each_table(["bad1", "a", "bad2", "b", "c", "d"], action)
    assert sorted(finished) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("`features`.`customer_activity`", "spark_catalog.features.customer_activity"),
        ("`main`.`features`.`customer_activity`", "main.features.customer_activity"),
    ],
)
def test_full_name_puts_a_local_table_in_the_session_catalog_and_keeps_a_unity_catalog_one(table, expected):
    assert tables.full_name(table) == expected


DAILY_REVENUE_SQL = """
SELECT to_date(order_ts) AS order_date,
       count(*) AS orders,
       count(DISTINCT customer_id) AS active_customers,
       round(sum(CASE WHEN status IN ('completed', 'shipped') THEN amount ELSE 0.0 END), 2) AS revenue
FROM orders
GROUP BY to_date(order_ts)
"""

CHURN_LABELS_SQL = """
WITH bounds AS (
  SELECT date_sub(to_date(max(recorded_at)), :horizon_days + :label_delay_days) AS last_cutoff
  FROM cancellations
),
cutoffs AS (
  SELECT explode(sequence(to_date(:first_cutoff), last_cutoff, make_interval(0, 0, 0, :every_days))) AS cutoff
  FROM bounds
  WHERE last_cutoff >= to_date(:first_cutoff)
)
SELECT c.customer_id,
       to_timestamp(k.cutoff) AS label_ts,
       CAST(x.cancelled_at IS NOT NULL
            AND x.cancelled_at < to_timestamp(k.cutoff) + make_interval(0, 0, 0, :horizon_days) AS INT) AS churned
FROM customers c
CROSS JOIN cutoffs k
LEFT JOIN cancellations x ON x.customer_id = c.customer_id
WHERE c.signup_date < k.cutoff AND (x.cancelled_at IS NULL OR x.cancelled_at >= to_timestamp(k.cutoff))
"""


def _same_rows(left, right) -> None:
    assert left.columns == right.columns
    assert left.exceptAll(right).count() == 0 and right.exceptAll(left).count() == 0


def test_sql_transforms_give_the_rows_of_the_python_ones_they_replace(spark, churn_features):
    """Churn's daily revenue and its labels, declared in SQL in a config, against the Python transforms."""
    settings = churn_features
    in_sql = load_use_case(
        "churn",
        overrides={
            "gold.daily_revenue.transform": "null",
            "gold.daily_revenue.sql": json.dumps(DAILY_REVENUE_SQL),
            "features.labels.transform": "null",
            "features.labels.sql": json.dumps(CHURN_LABELS_SQL),
        },
    )

    def silver_table(name):
        return tables.read_table(spark, settings.table("silver", name))

    orders = {"orders": silver_table("orders")}
    revenue = transforms.compute(in_sql.gold["daily_revenue"], orders)
    _same_rows(revenue, churn.daily_revenue(**orders))
    assert revenue.count() > 30 and revenue.where(F.col("revenue") > 0).count() > 30

    labels = in_sql.features.labels
    inputs = {"customers": silver_table("customers"), "cancellations": silver_table("cancellations")}
    from_sql = transforms.compute(labels, inputs)
    _same_rows(from_sql, churn.churn_labels(**inputs, **labels.params))
    assert from_sql.where("churned = 1").count() > 0 and from_sql.where("churned = 0").count() > 0
    # The inputs were views only while Spark analysed the query.
    assert not {t.name for t in spark.catalog.listTables() if t.isTemporary} & {"orders", "customers", "cancellations"}


def test_sql_params_become_literals_outside_strings_comments_and_casts(spark):
    """Markers are bound here (Delta's extension leaves Spark's own binding unbound); a string param with a
    quote or a backslash reads back exactly."""
    statement = "SELECT :name AS name, ':name' AS text, CAST(:n AS INT) AS n, 2::int AS two, :day AS day -- :name"
    bound = transforms.bind_params(statement, {"name": "O'Brien \\ x", "n": 3, "day": dt.date(2026, 1, 22)})
    assert bound.endswith("-- :name") and "':name'" in bound and "2::int" in bound
    row = spark.sql(bound).first()
    assert (row.name, row.text, row.n, row.two, row.day) == ("O'Brien \\ x", ":name", 3, 2, dt.date(2026, 1, 22))
    with pytest.raises(ValueError, match="a SQL param cannot be"):
        transforms.sql_literal({"a": 1})


def test_a_definition_fingerprint_changes_with_the_query_its_params_or_the_functions_source(tmp_path, monkeypatch):
    from lakeforge.config import GoldTable

    query = GoldTable(inputs=["orders"], sql="SELECT * FROM orders WHERE amount > :low", params={"low": 1})
    assert transforms.definition_fingerprint(query) == transforms.definition_fingerprint(query.model_copy())
    for changed in (
        query.model_copy(update={"params": {"low": 2}}),
        query.model_copy(update={"sql": "SELECT * FROM orders WHERE amount >= :low"}),
    ):
        assert transforms.definition_fingerprint(changed) != transforms.definition_fingerprint(query)
    module = tmp_path / "gold_of_mine.py"
    module.write_text("def rows(orders):\n    return orders\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    python = GoldTable(inputs=["orders"], transform="gold_of_mine:rows")
    first = transforms.definition_fingerprint(python)
    module.write_text("def rows(orders):\n    return orders.limit(1)\n")
    assert transforms.definition_fingerprint(python) != first  # the function's file, read again
