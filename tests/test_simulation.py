"""`lakeforge simulate` on tiny churn data: a quiet stretch stays quiet, and the timeline says so in every form."""

from __future__ import annotations

import csv
import datetime as dt

import mlflow
import pytest
from pyspark.sql import functions as F

from conftest import CHURN_ROWS, make_environment, with_training
from lakeforge import simulation, tracking
from lakeforge.config import Settings, load_use_case
from lakeforge.datagen import BatchSpec, check_scenario
from lakeforge.errors import LakeforgeError

SEED = 11
# History rows whose daily share (rows / 180) is the generator's floor for a day: later days have the
# history's density, as a quiet stretch must.
ROWS = 3600


@pytest.fixture(scope="module")
def quiet_stretch(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("simulate")
    base = Settings(use_case=load_use_case("churn"), env=make_environment(root, "sim"))
    settings = with_training(base, root / "mlflow")
    return settings, simulation.simulate(spark, settings, days=2, rows=ROWS, seed=SEED)


def test_a_stretch_without_drift_is_quiet_and_never_retrains(quiet_stretch):
    settings, timeline = quiet_stretch
    days = timeline.days
    assert [d.day for d in days] == [0, 1, 2] and [d.batch for d in days] == [0, 1, 2]
    assert [d.scoring_date for d in days] == [dt.date(2026, 4, 1), dt.date(2026, 4, 2), dt.date(2026, 4, 3)]
    assert all(d.scored_by == d.champion == "1" for d in days), "no day trained a new model"
    assert all(d.action != "retrain" and not d.drifting for d in days)
    assert days[0].drifted_share < 0.10 and days[1].drifted_share < 0.10
    # Whatever fires on this tiny sample (150 customers) can only alert: no label is newer than the model's.
    assert all(d.action == "none" or d.held_back.startswith("drift without") for d in days)
    assert all(d.seconds > 0 for d in days)
    tracking.configure(settings)
    name = tracking.registered_model_name(settings)
    assert str(tracking.version_by_alias(name, tracking.CHAMPION).version) == "1"
    # Day 0 trained the only version there is: the daily runs trained nothing.
    assert [str(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name = '{name}'")] == ["1"]


def test_the_timeline_is_a_table_a_csv_and_a_picture(spark, quiet_stretch):
    settings, timeline = quiet_stretch
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


def test_an_unknown_scenario_is_refused_before_any_work(quiet_stretch, spark):
    settings, _ = quiet_stretch
    with pytest.raises(LakeforgeError, match="has no drift scenario 'meteor' \\(offered: price_rise\\)"):
        check_scenario(settings.use_case, "meteor")
    with pytest.raises(LakeforgeError, match="has no drift scenario 'meteor'"):
        simulation.simulate(spark, settings, days=1, rows=ROWS, seed=SEED, scenario="meteor", drift_from=1)
    assert simulation.landed_batches(settings) == [0, 1, 2], "nothing was generated"


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
        assert rise_day + dt.timedelta(days=2) <= after._cancelled_at <= rise_day + dt.timedelta(days=21)
    premium = [c for c in quiet if quiet[c].plan == "premium" and quiet[c]._risk <= churn.CHURN_RISK]
    assert 0.3 < len(changed) / len(premium) < 0.7
    assert {rise[c].monthly_fee for c in rise if rise[c].plan == "premium"} == {churn.PRICE_RISE_FEE}
    assert all(rise[c].monthly_fee == quiet[c].monthly_fee for c in rise if rise[c].plan != "premium")
    # On the day of the rise every premium customer's profile lands, with the new fee, dated that day.
    landed = churn.generate(spark, BatchSpec(CHURN_ROWS, SEED, 3, "price_rise", drift_from=3))["customers"].collect()
    assert {c for c in quiet if quiet[c].plan == "premium"} <= {r.customer_id for r in landed}
    assert {r.monthly_fee for r in landed if r.plan == "premium"} == {churn.PRICE_RISE_FEE}
    assert {r.updated_at for r in landed if not r._late} == {rise_day}
