"""The pipeline layer: `all` trains only while there is no champion, and one run never trains twice."""

from __future__ import annotations

import mlflow
import pytest

from lakeforge import monitoring, pipeline
from lakeforge.policy import Evidence, RetrainingDecision


@pytest.fixture
def recorded_steps(monkeypatch):
    """Every step replaced by a recorder except `train` and `gate`, which stay real unless a test
    replaces them too."""
    calls = []

    def recorder(name):
        return lambda spark, settings, options, state: calls.append(name)

    for name in pipeline.STEPS:
        if name not in pipeline.BOOTSTRAP_STEPS:
            monkeypatch.setitem(pipeline.STEPS, name, recorder(name))
    return calls, recorder


def _runs(settings) -> int:
    from lakeforge import tracking

    tracking.configure(settings)
    return len(mlflow.search_runs(search_all_experiments=True))


def test_all_with_a_champion_skips_train_and_gate(spark, churn_champion, recorded_steps):
    calls, _ = recorded_steps
    before = _runs(churn_champion)
    state = pipeline.run_steps(spark, churn_champion, ["all"])
    assert calls == ["ingest", "silver", "gold", "features", "score", "monitor"]
    assert _runs(churn_champion) == before, "MLflow holds no new run"
    assert list(state.skipped) == ["train", "gate"] and not state.trained
    assert all("is champion and retraining is the monitor's decision" in why for why in state.skipped.values())


def test_all_without_a_champion_trains_and_train_by_name_always_does(
    spark, churn_features, training_settings, recorded_steps, tmp_path, monkeypatch
):
    calls, recorder = recorded_steps
    for name in pipeline.BOOTSTRAP_STEPS:
        monkeypatch.setitem(pipeline.STEPS, name, recorder(name))
    fresh = training_settings(churn_features, tmp_path / "mlflow")
    pipeline.run_steps(spark, fresh, ["all"])
    # Every step but the weekly upkeep, in order.
    assert calls == [name for name in pipeline.STEPS if name != "maintain"] and pipeline.NOT_DAILY == ("maintain",)
    calls.clear()
    monkeypatch.setattr(pipeline, "champion_version", lambda settings: "1")
    pipeline.run_steps(spark, fresh, ["train", "gate"])
    assert calls == ["train", "gate"]
    # `validate`, the gate's old name, still runs it
    calls.clear()
    pipeline.run_steps(spark, fresh, ["train", "validate"])
    assert calls == ["train", "gate"]


def test_a_retrain_the_monitor_asks_for_is_not_started_twice_in_one_run(churn_champion):
    asked = monitoring.MonitorResult(
        None, "m", "1", [], 0.0, None, [], RetrainingDecision(True, ["x"]), "", "", Evidence()
    )
    outcome = pipeline.act_on_retraining(None, churn_champion, asked, None, pipeline.RunState(trained=True))
    assert churn_champion.env.retraining.trigger == "local" and outcome == "not retrained: this run trained already"


def test_steps_whose_section_the_use_case_lacks_do_nothing(recorded_steps, tmp_path):
    from conftest import make_environment
    from lakeforge.config import Settings, load_use_case

    calls, _ = recorded_steps
    medallion_only = Settings(use_case=load_use_case("maintenance"), env=make_environment(tmp_path, "steps"))
    assert medallion_only.use_case.features is None and medallion_only.use_case.monitoring is None
    state = pipeline.run_steps(None, medallion_only, ["all"])
    assert calls == ["ingest", "silver", "gold"] and not state.trained and state.monitored is None


@pytest.mark.parametrize(("steps", "checked"), [(["all"], True), (["ingest", "silver"], True), (["gold"], False)])
def test_a_run_that_validates_builds_every_expectation_before_its_first_step(recorded_steps, tmp_path, steps, checked):
    """An expectation Great Expectations does not know fails the run before ingest, naming the file and
    key; a run without the silver step does not import GX for it."""
    from conftest import make_environment
    from lakeforge.config import Expectation, Settings, load_use_case
    from lakeforge.errors import ConfigError

    calls, _ = recorded_steps
    use_case = load_use_case("maintenance")
    source_name, source = next(iter(use_case.sources.items()))
    purple = Expectation(type="expect_column_values_to_be_purple", action="warn", column=source.key[0])
    broken_source = source.model_copy(update={"expectations": [*source.expectations, purple]})
    broken = use_case.model_copy(update={"sources": {**use_case.sources, source_name: broken_source}})
    settings = Settings(use_case=broken, env=make_environment(tmp_path, "steps"), use_case_file="conf/x.yml")
    if not checked:
        pipeline.run_steps(None, settings, steps)
        assert calls == ["gold"]
        return
    with pytest.raises(ConfigError) as error:
        pipeline.run_steps(None, settings, steps)
    assert calls == [], "no step ran"
    assert (error.value.file, error.value.key) == (
        "conf/x.yml",
        f"sources.{source_name}.expectations.{len(source.expectations)}",
    )
    assert "not a Great Expectations expectation" in error.value.expected
