"""Reference use case: customer churn for a subscription business.

Customers have a hidden churn risk that shapes what they do: risky customers order less, spend
less, stop ordering when they cancel, and write unhappy support tickets. A cancellation becomes
known (`recorded_at`) two to six weeks after it happens, as churn labels do. The history batch
starts `WARMUP_DAYS` before the first day labels are cut from, so every feature window is complete
at every label cutoff.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeforge.datagen import BatchSpec, pick, seconds, timestamp_after, unit_random
from lakeforge.features import trailing_day_text, trailing_day_windows

START = dt.datetime(2026, 1, 1)
HISTORY_DAYS = 90
# History also covers the longest feature window (90 days) before START, so every label cutoff (from
# 2026-01-22) sees complete windows, as scoring does later: no train/serve skew from truncated windows.
WARMUP_DAYS = 90
# A later batch (one new day) has the history's orders per day, rows // DAILY_SHARE, and at least
# MIN_DAILY_ORDERS so that a tiny day still carries every kind of defect and clean rows besides.
DAILY_SHARE = WARMUP_DAYS + HISTORY_DAYS
MIN_DAILY_ORDERS = 20
# A cancellation is recorded two to six weeks after it happens.
MIN_LABEL_DELAY_DAYS = 14
LABEL_DELAY_SPREAD_DAYS = 28
CHURN_RISK = 0.7
PRICE_RISE = "price_rise"
PRICE_RISE_FEE = 54.99
RISE_LEAVE_DAYS = 14
SCENARIOS = {
    PRICE_RISE: "from the drift batch's day on the premium plan costs 54.99 instead of 39.99 (every premium "
    "customer gets a profile update that day), and half of the premium customers who would have stayed cancel "
    f"within {RISE_LEAVE_DAYS} days, doing nothing else differently: who churns changes, and only the plan and "
    "fee show it",
}
PLANS = ["basic", "standard", "premium"]
PLAN_FEES = {"basic": 9.99, "standard": 19.99, "premium": 39.99}
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR"]
STATUSES = ["completed", "completed", "completed", "shipped", "cancelled"]
CHANNELS = ["email", "chat", "phone"]
UNHAPPY_SUBJECTS = ["cancel my subscription", "charged twice this month", "app keeps crashing", "too expensive"]
HAPPY_SUBJECTS = ["change my password", "question about premium plan", "update delivery address", "great service"]
UNHAPPY_BODIES = [
    "I am very disappointed, the service stopped working again and nobody answered my emails.",
    "You charged my card twice and I want a refund immediately or I will cancel.",
    "The app crashes every time I open it. This is unacceptable and I am thinking of leaving.",
    "Prices went up again. A competitor offers the same for half the price, please close my account.",
]
HAPPY_BODIES = [
    "Could you tell me how to change my password? Thanks for the quick help last time.",
    "I love the service and would like to know what the premium plan includes.",
    "Please update my delivery address to the new apartment, everything else is great.",
    "Just wanted to say the new features are great, keep it up!",
]


def _timestamp(offset_seconds: Column) -> Column:
    return timestamp_after(START, offset_seconds)


def customer_count(rows: int) -> int:
    return max(50, rows // 10)


def _label_delay_days(spec: BatchSpec, u: Column) -> Column:
    """Whole days from a cancellation to its record: two to six weeks, or 0 to `spec.record_delay_days`."""
    if spec.record_delay_days is not None:
        return F.floor(u * (spec.record_delay_days + 1)).cast("int")
    return (MIN_LABEL_DELAY_DAYS + F.floor(u * LABEL_DELAY_SPREAD_DAYS)).cast("int")


def _price_rise_day(spec: BatchSpec) -> int:
    """Days after START of the first day the price rise applies: the drift batch's day."""
    return HISTORY_DAYS + spec.drift_from - 1


def _customers(spark: SparkSession, spec: BatchSpec, count: int) -> DataFrame:
    seed, idx = spec.seed, F.col("id")
    risk = unit_random(seed, "risk", idx)
    plan = pick(PLANS, unit_random(seed, "plan", idx))
    first_day = (START - dt.timedelta(days=WARMUP_DAYS)).date()
    signup = F.date_sub(F.lit(first_day), F.floor(unit_random(seed, "signup", idx) * 610).cast("int"))
    cancel_day = F.when(risk > CHURN_RISK, 20 + unit_random(seed, "cancel", idx) * (HISTORY_DAYS + 40))
    fee = F.coalesce(*[F.when(plan == p, F.lit(fee)) for p, fee in PLAN_FEES.items()])
    if spec.drifting(PRICE_RISE):
        premium = plan == "premium"
        leaves = premium & (risk <= CHURN_RISK) & (unit_random(seed, "rise", idx) < 0.5)
        rise_cancel_day = _price_rise_day(spec) + unit_random(seed, "risecancel", idx) * RISE_LEAVE_DAYS
        cancel_day = F.when(leaves, rise_cancel_day).otherwise(cancel_day)
        fee = F.when(premium, F.lit(PRICE_RISE_FEE)).otherwise(fee)
    return spark.range(count).select(
        F.col("id").alias("_idx"),
        F.format_string("C%07d", idx).alias("customer_id"),
        F.format_string("user%d@example.com", idx).alias("email"),
        plan.alias("plan"),
        pick(COUNTRIES, unit_random(seed, "country", idx)).alias("country"),
        (18 + F.floor(unit_random(seed, "age", idx) * 60)).cast("int").alias("age"),
        signup.alias("signup_date"),
        fee.alias("monthly_fee"),
        _timestamp(F.lit(0) - F.floor(unit_random(seed, "upd", idx) * 86400 * 30).cast("long")).alias("updated_at"),
        risk.alias("_risk"),
        _timestamp((cancel_day * 86400).cast("long")).alias("_cancelled_at"),
        _label_delay_days(spec, unit_random(seed, "delay", idx)).alias("_label_delay_days"),
    )


def _stayers(customers: DataFrame) -> DataFrame:
    """Customers who never cancel, numbered densely from 0 (`_stayer`): a tenth of the rows, so one window is cheap."""
    return customers.where(F.col("_cancelled_at").isNull()).select(
        (F.row_number().over(Window.orderBy("_idx")) - 1).alias("_stayer"),
        F.col("customer_id").alias("_stayer_customer_id"),
        F.col("_risk").alias("_stayer_risk"),
    )


def _orders(spark: SparkSession, seed: int, customers: DataFrame, rows: int, batch: int) -> DataFrame:
    count = customers.count()
    day_start, day_length = (-WARMUP_DAYS, WARMUP_DAYS + HISTORY_DAYS) if batch == 0 else (HISTORY_DAYS + batch - 1, 1)
    new_rows = rows if batch == 0 else max(MIN_DAILY_ORDERS, rows // DAILY_SHARE)
    base = spark.range(new_rows).select(
        F.col("id").alias("_row"),
        F.floor(unit_random(seed, f"ocust{batch}", F.col("id")) * count).alias("_idx"),
        (day_start * 86400 + unit_random(seed, f"ots{batch}", F.col("id")) * day_length * 86400).alias("_offset"),
        unit_random(seed, f"amt{batch}", F.col("id")).alias("_u"),
    )
    order_ts = _timestamp(F.col("_offset").cast("long"))
    # Customers who cancelled stop ordering: an order drawn for one after the cancellation goes to a customer
    # who never cancels. Nothing before a cancellation hints at it but risk itself (no look-ahead), and every
    # row number stays, so the first rows of a tiny day still carry every defect.
    drawn = base.join(F.broadcast(customers.select("_idx", "_cancelled_at")), "_idx")
    after_cancel = F.col("_cancelled_at").isNotNull() & (order_ts >= F.col("_cancelled_at"))
    stayers = _stayers(customers)
    stayer_count = stayers.count()
    redrawn = F.floor(unit_random(seed, f"ostay{batch}", F.col("_row")) * stayer_count)
    joined = (
        drawn.withColumn("_stayer", F.when(after_cancel, redrawn))
        .drop("_cancelled_at")
        .join(F.broadcast(stayers), "_stayer", "left")
        .join(F.broadcast(customers.select("_idx", "customer_id", "_risk")), "_idx")
        .select(
            "_row",
            "_offset",
            "_u",
            F.coalesce("_stayer_customer_id", "customer_id").alias("customer_id"),
            F.coalesce("_stayer_risk", "_risk").alias("_risk"),
        )
    )
    orders = joined.select(
        "_row",
        F.format_string("O%02d%09d", F.lit(batch), F.col("_row")).alias("order_id"),
        "customer_id",
        order_ts.alias("order_ts"),
        F.round(10 + 90 * F.col("_u") * (1.3 - F.col("_risk")), 2).alias("amount"),
        pick(STATUSES, unit_random(seed, f"st{batch}", F.col("_row"))).alias("status"),
        order_ts.alias("updated_at"),
        F.lit(False).alias("_late"),
    )
    if batch == 0:
        return orders
    orders = orders.withColumn(
        "coupon_code", F.when(unit_random(seed, f"cp{batch}", F.col("_row")) < 0.2, F.lit("SPRING10"))
    )
    # Updates to orders of the history batch: most are refunds that win, some arrive late and lose.
    updates = spark.range(max(1, new_rows // 10)).select(
        (F.lit(rows) + F.col("id")).alias("_row"),
        F.format_string("O00%09d", F.floor(unit_random(seed, f"upd{batch}", F.col("id")) * rows).cast("long")).alias(
            "order_id"
        ),
        (unit_random(seed, f"late{batch}", F.col("id")) < 0.3).alias("_late"),
    )
    history = _orders(spark, seed, customers, rows, 0).drop("_row", "_late")
    late_time = F.timestamp_seconds(F.lit(0))
    new_time = _timestamp(F.lit(seconds(HISTORY_DAYS + batch - 1)) + F.lit(3600))
    updated = updates.join(history, "order_id").select(
        "_row",
        "order_id",
        "customer_id",
        "order_ts",
        "amount",
        F.when(F.col("_late"), F.lit("completed")).otherwise(F.lit("refunded")).alias("status"),
        F.when(F.col("_late"), late_time).otherwise(new_time).alias("updated_at"),
        "_late",
        F.lit(None).cast("string").alias("coupon_code"),
    )
    return orders.unionByName(updated)


def _tickets(seed: int, orders_like: DataFrame, batch: int) -> DataFrame:
    u = unit_random(seed, f"tk{batch}", F.col("_row"))
    unhappy = F.col("_risk") > CHURN_RISK
    subject = F.when(unhappy, pick(UNHAPPY_SUBJECTS, u)).otherwise(pick(HAPPY_SUBJECTS, u))
    body = F.when(unhappy, pick(UNHAPPY_BODIES, u)).otherwise(pick(HAPPY_BODIES, u))
    return orders_like.where(unit_random(seed, f"keep{batch}", F.col("_row")) < 0.1 + 0.4 * F.col("_risk")).select(
        "_row",
        F.format_string("T%02d%09d", F.lit(batch), F.col("_row")).alias("ticket_id"),
        "customer_id",
        F.col("order_ts").alias("created_at"),
        pick(CHANNELS, unit_random(seed, f"ch{batch}", F.col("_row"))).alias("channel"),
        subject.alias("subject"),
        body.alias("body"),
    )


def generate(spark: SparkSession, spec: BatchSpec) -> dict[str, DataFrame]:
    """Clean rows of every churn source for one batch (history for batch 0, a new day after)."""
    count = customer_count(spec.rows)
    customers = _customers(spark, spec, count).cache()
    orders = _orders(spark, spec.seed, customers, spec.rows, spec.batch)
    with_risk = orders.where(~F.col("_late")).join(F.broadcast(customers.select("customer_id", "_risk")), "customer_id")
    tickets = _tickets(spec.seed, with_risk, spec.batch)
    known_until = HISTORY_DAYS if spec.batch == 0 else HISTORY_DAYS + spec.batch
    known_from = 0 if spec.batch == 0 else known_until - 1
    recorded_at = F.col("_cancelled_at") + F.make_interval(days=F.col("_label_delay_days"))
    cancellations = customers.where(
        F.col("_cancelled_at").isNotNull()
        & (recorded_at >= _timestamp(F.lit(seconds(known_from))))
        & (recorded_at < _timestamp(F.lit(seconds(known_until))))
    ).select(
        F.col("_idx").alias("_row"),
        "customer_id",
        F.col("_cancelled_at").alias("cancelled_at"),
        recorded_at.alias("recorded_at"),
    )
    if spec.batch == 0:
        customer_rows = customers
    else:
        # A few plan changes (the fee follows the plan); a third of them carry an old timestamp and must
        # not win. On the day of a price rise, every premium customer's profile changes too (the new fee).
        replan = unit_random(spec.seed, f"chg{spec.batch}", F.col("_idx")) < 0.05
        chosen = replan
        if spec.drifting(PRICE_RISE) and spec.batch == spec.drift_from:
            chosen = replan | (F.col("plan") == "premium")
        late = replan & (unit_random(spec.seed, f"chglate{spec.batch}", F.col("_idx")) < 0.33)
        plan = F.when(replan, pick(PLANS, unit_random(spec.seed, f"newplan{spec.batch}", F.col("_idx"))))
        plan = plan.otherwise(F.col("plan"))
        fees = {**PLAN_FEES, "premium": PRICE_RISE_FEE} if spec.drifting(PRICE_RISE) else PLAN_FEES
        changed = customers.where(chosen)
        customer_rows = changed.select(
            *[c for c in changed.columns if c not in ("plan", "monthly_fee", "updated_at")],
            plan.alias("plan"),
            F.coalesce(*[F.when(plan == p, F.lit(fee)) for p, fee in fees.items()]).alias("monthly_fee"),
            F.when(late, F.timestamp_seconds(F.lit(0)))
            .otherwise(_timestamp(F.lit(seconds(HISTORY_DAYS + spec.batch - 1))))
            .alias("updated_at"),
            late.alias("_late"),
        )
    return {
        "customers": customer_rows.withColumnRenamed("_idx", "_row").select(
            "_row",
            "customer_id",
            "email",
            "plan",
            "country",
            "age",
            "signup_date",
            "monthly_fee",
            "updated_at",
            *(["_late"] if "_late" in customer_rows.columns else []),
        ),
        "orders": orders,
        "tickets": tickets,
        "cancellations": cancellations,
    }


def daily_revenue(orders: DataFrame) -> DataFrame:
    """Orders and revenue per day, refunds and cancellations excluded from revenue."""
    counted = F.col("status").isin("completed", "shipped")
    return orders.groupBy(F.to_date("order_ts").alias("order_date")).agg(
        F.count("*").alias("orders"),
        F.countDistinct("customer_id").alias("active_customers"),
        F.round(F.sum(F.when(counted, F.col("amount")).otherwise(0.0)), 2).alias("revenue"),
    )


def daily_ticket_volume(tickets: DataFrame) -> DataFrame:
    """Support tickets per day and channel."""
    return tickets.groupBy(F.to_date("created_at").alias("ticket_date"), "channel").agg(F.count("*").alias("tickets"))


def customer_entity(customers: DataFrame, orders: DataFrame, tickets: DataFrame, cancellations: DataFrame) -> DataFrame:
    """One row per customer: profile, lifetime activity and (once known) cancellation; features start here."""
    order_stats = orders.groupBy("customer_id").agg(
        F.count("*").alias("lifetime_orders"),
        F.round(F.sum("amount"), 2).alias("lifetime_spend"),
        F.min("order_ts").alias("first_order_at"),
        F.max("order_ts").alias("last_order_at"),
    )
    ticket_stats = tickets.groupBy("customer_id").agg(F.count("*").alias("lifetime_tickets"))
    labels = cancellations.select("customer_id", "cancelled_at", F.col("recorded_at").alias("cancellation_recorded_at"))
    return (
        customers.select("customer_id", "plan", "country", "age", "signup_date", "monthly_fee")
        .join(order_stats, "customer_id", "left")
        .join(ticket_stats, "customer_id", "left")
        .join(labels, "customer_id", "left")
        .fillna({"lifetime_orders": 0, "lifetime_spend": 0.0, "lifetime_tickets": 0})
    )


COUNTED_STATUSES = ("completed", "shipped")


def customer_activity(orders: DataFrame, tickets: DataFrame, *, windows_days: list[int]) -> DataFrame:
    """Orders, spend and tickets over trailing windows, and days since the last order, per customer and active day."""
    events = orders.select(
        "customer_id",
        F.col("order_ts").alias("event_ts"),
        F.lit(1).alias("is_order"),
        F.when(F.col("status").isin(*COUNTED_STATUSES), F.col("amount")).otherwise(0.0).alias("spend"),
        F.lit(0).alias("is_ticket"),
    ).unionByName(
        tickets.select(
            "customer_id",
            F.col("created_at").alias("event_ts"),
            F.lit(0).alias("is_order"),
            F.lit(0.0).alias("spend"),
            F.lit(1).alias("is_ticket"),
        )
    )
    metrics = {"orders": F.sum("is_order"), "spend": F.sum("spend"), "tickets": F.sum("is_ticket")}
    windows = trailing_day_windows(events, ["customer_id"], "event_ts", metrics, windows_days, recency=["orders"])
    # Sums of doubles depend on the order Spark adds them in; cents are what the amounts mean.
    return windows.select(*[F.round(c, 2).alias(c) if c.startswith("spend_") else F.col(c) for c in windows.columns])


def ticket_text(tickets: DataFrame, *, window_days: int) -> DataFrame:
    """Subjects and bodies of a customer's tickets over the trailing window, per customer and day with tickets."""
    text = F.concat_ws(". ", "subject", "body")
    return trailing_day_text(tickets, ["customer_id"], "created_at", text, window_days, f"ticket_text_{window_days}d")


def customer_profile(customers: DataFrame) -> DataFrame:
    """Plan, country, age and fee of each customer as of their last update."""
    return customers.select(
        "customer_id",
        F.col("updated_at").alias("feature_ts"),
        "plan",
        "country",
        "age",
        "monthly_fee",
        F.datediff(F.to_date("updated_at"), "signup_date").alias("tenure_days"),
    )


def churn_labels(
    customers: DataFrame,
    cancellations: DataFrame,
    *,
    first_cutoff: str,
    every_days: int,
    horizon_days: int,
    label_delay_days: int,
) -> DataFrame:
    """One row per active customer and cutoff: `churned` is 1 when they cancelled within the horizon after it.

    Cutoffs run every `every_days` from `first_cutoff`, up to the last one whose horizon ended
    `label_delay_days` before the latest cancellation record, so labels of that window had time to arrive.
    """
    known_until = cancellations.agg(F.max("recorded_at").alias("known_until"))
    last_cutoff = F.date_sub(F.to_date("known_until"), horizon_days + label_delay_days)
    first = F.to_date(F.lit(first_cutoff))
    cutoffs = known_until.where(last_cutoff >= first).select(
        F.explode(F.sequence(first, last_cutoff, F.make_interval(days=F.lit(every_days)))).alias("cutoff")
    )
    cancelled = cancellations.select("customer_id", "cancelled_at")
    label_ts = F.to_timestamp("cutoff")
    horizon_end = label_ts + F.make_interval(days=F.lit(horizon_days))
    return (
        customers.select("customer_id", "signup_date")
        .crossJoin(F.broadcast(cutoffs))
        .join(cancelled, "customer_id", "left")
        .where(
            (F.col("signup_date") < F.col("cutoff"))
            & (F.col("cancelled_at").isNull() | (F.col("cancelled_at") >= label_ts))
        )
        .select(
            "customer_id",
            label_ts.alias("label_ts"),
            (F.col("cancelled_at").isNotNull() & (F.col("cancelled_at") < horizon_end)).cast("int").alias("churned"),
        )
    )
