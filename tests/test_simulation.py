"""`lakeforge simulate` on tiny churn data, in a world whose labels arrive within days instead of weeks:
the days before the price rise stay quiet, the rise alerts the day it starts, the one retrain waits
until labels from after the rise reach its fit window, and the new champion beats the old one on them."""

from __future__ import annotations

import csv
import datetime as dt

import mlflow
import pytest
from pyspark.sql import functions as F

from conftest import CHURN_ROWS, make_environment, with_training
from lakeforge import simulation, tracking, training, training_data
from lakeforge.config import Settings, TimeSplit, load_use_case
from lakeforge.datagen import BatchSpec, check_scenario
from lakeforge.errors import LakeforgeError

SEED = 11
ROWS = 7200
DRIFT_FROM = 2
DAYS = 7
# Daily label cutoffs counting cancellations over the next 2 days, recorded the day they happen: labels
# from after the rise exist days after it, not the six weeks of the demo's weekly 28-day horizon.
RECORD_DELAY_DAYS = 0
SHORT_LABELS = {
    "features.labels.params.every_days": "1",
    "features.labels.params.horizon_days": "2",
    "features.labels.params.label_delay_days": "0",
}
# The newest two cutoffs test, the one before validates, the 14 before that train: a retrain learns
# from recent weeks, where the cutoffs after the rise weigh.
SPLIT = TimeSplit(train_days=14, validation_days=1, test_days=2)
HELD = {"drift", "quality below the policy"}
DRIFT_DATE = dt.date(2026, 4, 1) + dt.timedelta(days=DRIFT_FROM)  # the first scoring date after the rise


@pytest.fixture(scope="module")
def price_rise(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("simulate")
    base = Settings(use_case=load_use_case("churn", overrides=SHORT_LABELS), env=make_environment(root, "sim"))
    settings = with_training(base, root / "mlflow", split=SPLIT)
    timeline = simulation.simulate(
        spark,
        settings,
        days=DAYS,
        rows=ROWS,
        seed=SEED,
        scenario="price_rise",
        drift_from=DRIFT_FROM,
        record_delay_days=RECORD_DELAY_DAYS,
    )
    tracking.configure(settings)
    return settings, timeline


def _versions(settings: Settings) -> dict[str, mlflow.entities.model_registry.ModelVersion]:
    tracking.configure(settings)
    name = tracking.registered_model_name(settings)
    return {str(v.version): v for v in mlflow.MlflowClient().search_model_versions(f"name = '{name}'")}


def _label_dates(spark, settings: Settings, run_id: str) -> list[list[dt.date]]:
    """The label cutoffs of a run's train, validation and test windows, rebuilt from what it logged."""
    data = training.prepare(spark, settings, training_data.logged_training(run_id))
    return [
        sorted({r[0] for r in part.select(F.to_date("label_ts")).distinct().collect()})
        for part in (data.train, data.validation, data.test)
    ]


def test_the_days_before_the_rise_are_quiet(price_rise):
    _, timeline = price_rise
    days = timeline.days
    assert [d.day for d in days] == list(range(DAYS + 1)) and [d.batch for d in days] == list(range(DAYS + 1))
    assert [d.scoring_date for d in days] == [dt.date(2026, 4, 1) + dt.timedelta(days=d) for d in range(DAYS + 1)]
    quiet = days[:DRIFT_FROM]
    assert [d.drifting for d in days] == [False] * DRIFT_FROM + [True] * (DAYS + 1 - DRIFT_FROM)
    # New labels arrive every day, so only a quiet monitor keeps these days from retraining.
    assert all(d.drifted_share < 0.10 and d.action == "none" for d in quiet), quiet
    assert all(d.scored_by == d.champion == "1" for d in quiet)
    assert all(d.seconds > 0 for d in days)


def test_the_rise_alerts_the_day_it_starts_and_says_why_it_does_not_retrain(spark, price_rise):
    settings, timeline = price_rise
    first = timeline.days[DRIFT_FROM]
    assert first.scoring_date == DRIFT_DATE and first.action == "alert"
    assert first.held_back.startswith("drift without labels from after it to train on")
    drift = spark.read.table(settings.table("ops", settings.use_case.monitoring.drift_table))
    drifted = {
        r.feature
        for r in drift.where((F.col("scoring_date") == DRIFT_DATE) & F.col("drifted") & F.col("decides")).collect()
    }
    assert "monthly_fee" in drifted, drifted


def test_the_one_retrain_waits_for_labels_from_after_the_rise(spark, price_rise):
    settings, timeline = price_rise
    after = timeline.days[DRIFT_FROM:]
    retrains = [d for d in after if d.action == "retrain"]
    assert [d.day for d in retrains] == [DAYS], [(d.day, d.action, d.held_back) for d in after]
    waiting = [d for d in after if d.action != "retrain"]
    # Until then each day alerts, for drift and (once low AUC windows arrive) for quality, and says why.
    assert waiting and all(d.held_back.split(" without labels from after it to train on")[0] in HELD for d in waiting)
    retrain = retrains[0]
    assert retrain.outcome == "trained version 2 in process: promoted" and retrain.champion == "2"
    # Version 2 fits on labels cut after the rise began; its test window is all after it.
    train, validation, test = _label_dates(spark, settings, _versions(settings)["2"].run_id)
    fitted = train + validation
    assert max(fitted) >= DRIFT_DATE and min(test) > DRIFT_DATE and len(test) == SPLIT.test_days
    # A day earlier the fit would have ended before the rise: the newest labels then only tested.
    assert max(fitted) - dt.timedelta(days=1) < DRIFT_DATE


def test_the_new_champion_beats_the_old_on_labels_from_after_the_rise(price_rise):
    settings, _ = price_rise
    versions = _versions(settings)
    assert sorted(versions) == ["1", "2"]
    assert str(tracking.version_by_alias(tracking.registered_model_name(settings), tracking.CHAMPION).version) == "2"
    gate = versions["2"].tags
    # Both versions scored the same test window: version 2's, cut after the rise.
    assert gate["validation_status"] == "approved"
    assert float(gate["validation_auc_roc"]) > float(gate["champion_auc_roc"]) + 0.05, gate


def test_a_relative_split_moves_with_new_labels_and_both_runs_reproduce(spark, price_rise):
    settings, _ = price_rise
    versions = _versions(settings)
    first, second = (mlflow.get_run(versions[v].run_id).data.params for v in ("1", "2"))
    assert first["split"] == second["split"] == "relative"
    moved = [
        key
        for key in ("train_from", "validation_from", "test_from", "test_until", "labels_until")
        if first[key] < second[key]
    ]
    assert moved == ["train_from", "validation_from", "test_from", "test_until", "labels_until"], (first, second)
    assert dt.date.fromisoformat(second["labels_until"]) - dt.date.fromisoformat(first["labels_until"]) >= dt.timedelta(
        days=DAYS
    )
    for version in ("1", "2"):
        for metric, values in training.reproduce(spark, settings, versions[version].run_id).items():
            assert values["reproduced"] == pytest.approx(values["logged"], abs=1e-6), (version, metric)


def test_the_timeline_is_a_table_a_csv_and_a_picture(spark, price_rise):
    settings, timeline = price_rise
    stored = spark.read.table(timeline.table).where(F.col("use_case") == "churn").orderBy("day").collect()
    assert [(r.day, r.scoring_date, r.action, r.drifted_share) for r in stored] == [
        (d.day, d.scoring_date, d.action, d.drifted_share) for d in timeline.days
    ]
    with timeline.csv.open() as rows:
        written = list(csv.DictReader(rows))
    assert [(int(r["day"]), r["scoring_date"], r["outcome"]) for r in written] == [
        (d.day, str(d.scoring_date), d.outcome) for d in timeline.days
    ]
    assert timeline.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and timeline.plot.stat().st_size > 20_000
    assert (
        timeline.plot.parent
        == timeline.csv.parent
        == simulation.Path(settings.env.path("reports")) / "simulation" / "churn"
    )


def test_an_unknown_scenario_is_refused_before_any_work(price_rise, spark):
    settings, _ = price_rise
    with pytest.raises(LakeforgeError, match="has no drift scenario 'meteor' \\(offered: price_rise\\)"):
        check_scenario(settings.use_case, "meteor")
    with pytest.raises(LakeforgeError, match="has no drift scenario 'meteor'"):
        simulation.simulate(spark, settings, days=1, rows=ROWS, seed=SEED, scenario="meteor", drift_from=1)
    assert simulation.landed_batches(settings) == list(range(DAYS + 1)), "nothing was generated"


def test_the_price_rise_changes_the_premium_fee_and_who_cancels(spark):
    from lakeforge.usecases import churn

    count = churn.customer_count(CHURN_ROWS)
    quiet = {r.customer_id: r for r in churn._customers(spark, BatchSpec(CHURN_ROWS, SEED, 5), count).collect()}
    rise_spec = BatchSpec(CHURN_ROWS, SEED, 5, "price_rise", drift_from=3)
    rise = {r.customer_id: r for r in churn._customers(spark, rise_spec, count).collect()}
    rise_day = churn.START + dt.timedelta(days=churn.HISTORY_DAYS + 2)
    changed = {c for c in quiet if quiet[c]._cancelled_at != rise[c]._cancelled_at}
    assert changed, "the rise makes customers cancel who would have stayed"
    for customer in changed:
        before, after = quiet[customer], rise[customer]
        assert before._cancelled_at is None and before.plan == "premium" and before._risk <= churn.CHURN_RISK
        assert rise_day <= after._cancelled_at < rise_day + dt.timedelta(days=churn.RISE_LEAVE_DAYS)
    premium = [c for c in quiet if quiet[c].plan == "premium" and quiet[c]._risk <= churn.CHURN_RISK]
    assert 0.3 < len(changed) / len(premium) < 0.7
    assert {rise[c].monthly_fee for c in rise if rise[c].plan == "premium"} == {churn.PRICE_RISE_FEE}
    assert all(rise[c].monthly_fee == quiet[c].monthly_fee for c in rise if rise[c].plan != "premium")
    # On the day of the rise every premium customer's profile lands, with the new fee, dated that day.
    landed = churn.generate(spark, BatchSpec(CHURN_ROWS, SEED, 3, "price_rise", drift_from=3))["customers"].collect()
    assert {c for c in quiet if quiet[c].plan == "premium"} <= {r.customer_id for r in landed}
    assert {r.monthly_fee for r in landed if r.plan == "premium"} == {churn.PRICE_RISE_FEE}
    assert {r.updated_at for r in landed if not r._late} == {rise_day}


def test_a_customer_orders_nothing_after_cancelling_and_every_order_row_stays(spark):
    """Orders drawn for a customer after their cancellation go to one who never cancels: nothing before a
    cancellation gives it away (the history once squeezed a churner's later orders into the weeks before)."""
    from lakeforge.usecases import churn

    customers = churn._customers(spark, BatchSpec(CHURN_ROWS, SEED, 0), churn.customer_count(CHURN_ROWS)).collect()
    cancelled = {c.customer_id: c._cancelled_at for c in customers if c._cancelled_at is not None}
    never = {c.customer_id for c in customers if c._cancelled_at is None}
    assert cancelled and never
    for batch, new_rows in ((0, CHURN_ROWS), (40, churn.MIN_DAILY_ORDERS)):
        orders = [
            o for o in churn.generate(spark, BatchSpec(CHURN_ROWS, SEED, batch))["orders"].collect() if not o._late
        ]
        after = [o for o in orders if o.customer_id in cancelled and o.order_ts >= cancelled[o.customer_id]]
        assert not after, after[:3]
        fresh = [o for o in orders if o.order_id.startswith(f"O{batch:02d}")]
        assert sorted(o._row for o in fresh) == list(range(new_rows)), "a redrawn order keeps its row"
