"""A tiny tuning run end to end against a temporary MLflow store: runs, lineage, model, aliases, reproduce."""

from __future__ import annotations

import datetime as dt
import json

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pyspark.ml.linalg import SparseVector, VectorUDT
from pyspark.sql import functions as F

from conftest import FEW_ITERATIONS
from lakeforge import gate, modeling, tracking, training, training_data
from lakeforge.config import SearchDimension, Settings, TimeSplit
from lakeforge.errors import ModelRejected, TrainingDataError

T = dt.datetime


def _with_training(settings: Settings, **changes) -> Settings:
    updated = settings.use_case.training.model_copy(update=changes)
    return settings.model_copy(update={"use_case": settings.use_case.model_copy(update={"training": updated})})


@pytest.fixture(scope="module")
def tiny(churn_features) -> Settings:
    return _with_training(
        churn_features,
        max_evals=3,
        early_stop_rounds=5,
        fixed_params={**churn_features.use_case.training.fixed_params, **FEW_ITERATIONS},
        split=TimeSplit(validation_from=dt.date(2026, 1, 29), test_from=dt.date(2026, 2, 5)),
    )


@pytest.fixture(scope="module")
def first(spark, tiny):
    result = training.run(spark, tiny)
    decision = gate.run(spark, tiny)
    return result, decision


def test_parent_run_has_one_nested_run_per_trial(first):
    result, _ = first
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'", output_format="list")
    assert len(children) == result.trials == 3
    for child in children:
        assert set(child.data.params) == {"regParam", "elasticNetParam"}
        assert 0 <= child.data.metrics["validation_auc_roc"] <= 1
        assert child.data.metrics["duration_seconds"] > 0
    parent = mlflow.get_run(result.run_id)
    assert parent.data.params["family"] == "logistic_regression"
    assert parent.data.params["seed"] == "42"
    assert {"test_auc_roc", "test_auc_pr", "test_log_loss", "test_precision", "test_recall"} <= set(parent.data.metrics)
    assert parent.data.tags["lakeforge.code_version"]


def test_a_trial_on_features_built_once_scores_as_the_whole_pipeline_would(spark, first, tiny):
    """Trials fit only the classifier on features built once: the validation metrics are the full pipeline's."""
    config = tiny.use_case.training
    data = training.prepare(spark, tiny, config)
    params = {"regParam": 0.05, "elasticNetParam": 0.5}
    trial_data = training.TrialData(config, data)
    try:
        once = trial_data.fit_and_evaluate(config, params)
    finally:
        trial_data.release()
    _, whole, _ = training.fit_and_evaluate(config, params, data, data.train, data.validation)
    assert once == pytest.approx(whole, abs=1e-9) and once["rows"] == data.validation.count() > 0


def test_training_set_versions_are_logged_as_datasets(spark, first, tiny):
    result, _ = first
    run = MlflowClient().get_run(result.run_id)
    logged = {}
    for dataset_input in run.inputs.dataset_inputs:
        source = json.loads(dataset_input.dataset.source)
        context = {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"]
        assert "is_databricks_uc_table" not in source, source  # a local table, not a Unity Catalog one
        catalog, table = source["delta_table_name"].split(".", 1)
        assert catalog == "spark_catalog"
        logged[table] = (int(source["delta_table_version"]), context)
        # Profiled by the exact row count of the version logged, not mlflow's approximate one.
        at_version = spark.read.option("versionAsOf", logged[table][0]).table(source["delta_table_name"])
        assert json.loads(dataset_input.dataset.profile) == {"num_rows": at_version.count()}, table
    lineage = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/lineage.json")["versions"]
    assert {name: version for name, (version, _) in logged.items()} == lineage
    assert logged["gold_feat.churn_labels"][1] == "labels"
    assert {name for name, (_, context) in logged.items() if context == "features"} == {
        f"features_feat.{name}" for name in tiny.use_case.features.tables
    }


def test_evaluation_artifacts_are_logged(first):
    result, _ = first
    names = {a.path for a in MlflowClient().list_artifacts(result.run_id, "evaluation")}
    assert names == {
        "evaluation/calibration.json",
        "evaluation/roc_curve.png",
        "evaluation/feature_importances.json",
        "evaluation/feature_importances.png",
    }
    bins = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/evaluation/calibration.json")["bins"]
    assert sum(b["rows"] for b in bins) == result.test_metrics["rows"]


def test_champion_loads_back_and_scores_raw_feature_rows(spark, first, tiny):
    result, decision = first
    assert decision.promoted and decision.champion_version is None  # the first model becomes champion
    assert tracking.version_by_alias(result.model_name, "champion").version == result.version
    model = mlflow.spark.load_model(f"models:/{result.model_name}@champion")
    data = training.prepare(spark, tiny, tiny.use_case.training)
    raw = data.test.select(*data.raw_columns)
    scored = modeling.with_score(model.transform(raw)).select(modeling.SCORE).collect()
    assert len(scored) == raw.count() == result.test_metrics["rows"]
    assert all(0.0 <= row[0] <= 1.0 for row in scored)
    signature = mlflow.models.get_model_info(f"models:/{result.model_name}@champion").signature
    assert signature.inputs.input_names() == data.raw_columns


def test_an_entity_without_text_scores_as_one_with_empty_text(spark, first, tiny):
    result, _ = first
    model = mlflow.spark.load_model(f"models:/{result.model_name}/{result.version}")
    data = training.prepare(spark, tiny, tiny.use_case.training)
    size = data.text_size
    raw = data.test.select("customer_id", *data.raw_columns)
    empty = F.udf(lambda: SparseVector(size, [], []), VectorUDT())
    without = raw.withColumn(data.text_vector, F.lit(None).cast(VectorUDT()))
    with_empty = raw.withColumn(data.text_vector, empty())

    def scores(rows):
        return dict(modeling.with_score(model.transform(rows)).select("customer_id", modeling.SCORE).collect())

    assert scores(without) == scores(with_empty)
    assert scores(without) != scores(raw)  # the text vector does move the score


def test_reproduce_matches_the_logged_metrics(spark, first, tiny):
    result, _ = first
    comparison = training.reproduce(spark, tiny, result.run_id)
    assert set(comparison) == {"auc_roc", "auc_pr", "log_loss", "precision", "recall", "rows"}
    for values in comparison.values():
        assert values["reproduced"] == pytest.approx(values["logged"], abs=1e-6)


def test_worse_challenger_is_rejected_and_champion_stays(spark, first, tiny):
    result, _ = first
    worse = _with_training(
        tiny,
        max_evals=1,
        numeric_features=["age"],
        categorical_features=[],
        text_feature_table=None,
        search_space={"regParam": SearchDimension(kind="uniform", low=5.0, high=10.0)},
    )
    challenger = training.run(spark, worse)
    decision = gate.run(spark, worse)
    assert not decision.promoted
    assert "below champion version" in decision.reasons[0]
    assert tracking.version_by_alias(result.model_name, "champion").version == result.version
    tags = MlflowClient().get_model_version(result.model_name, challenger.version).tags
    assert tags["validation_status"] == "rejected"
    assert "below champion" in tags["validation_reason"]
    strict = _with_training(worse, gate=worse.use_case.training.gate.model_copy(update={"fail_on_reject": True}))
    with pytest.raises(ModelRejected, match="not promoted"):
        gate.run(spark, strict)


def test_as_good_challenger_is_promoted(spark, first, tiny):
    result, _ = first
    # One trial at exactly the champion's parameters: the same model again, which must not be refused.
    same = {name: SearchDimension(kind="choice", options=[value]) for name, value in result.params.items()}
    again = training.run(spark, _with_training(tiny, max_evals=1, search_space=same))
    decision = gate.run(spark, tiny)
    assert decision.promoted and decision.champion_version == result.version
    assert decision.challenger_auc == pytest.approx(decision.champion_auc, abs=0.01)
    assert tracking.version_by_alias(result.model_name, "champion").version == again.version


def test_absolute_threshold_rejects_even_the_first_model(spark, tiny, tmp_path):
    env = tiny.env.model_copy(update={"paths": tiny.env.paths.model_copy(update={"mlflow": str(tmp_path / "mlflow")})})
    demanding = _with_training(
        tiny.model_copy(update={"env": env}),
        max_evals=1,
        gate=tiny.use_case.training.gate.model_copy(update={"min_auc_roc": 0.999, "min_lift_over_baseline": 1.0}),
    )
    result = training.run(spark, demanding)
    decision = gate.run(spark, demanding)
    assert not decision.promoted and "< minimum 0.999" in decision.reasons[0]
    baseline = decision.baseline
    assert baseline.feature in demanding.use_case.training.numeric_features and 0 <= baseline.auc_roc <= 1
    assert decision.reasons[1] == (
        f"test AUC-ROC {decision.challenger_auc:.4f} does not beat the single-feature baseline "
        f"({baseline.feature}: {baseline.auc_roc:.4f}) by 1.0"
    )
    tags = MlflowClient().get_model_version(result.model_name, result.version).tags
    assert (tags["baseline_feature"], float(tags["baseline_auc_roc"])) == (baseline.feature, round(baseline.auc_roc, 6))
    assert tracking.version_by_alias(result.model_name, "champion") is None


def test_the_baseline_is_the_best_single_feature_chosen_on_the_fit_rows():
    fit = pd.DataFrame(
        {
            "calls": [9.0, 8.0, 7.0, 1.0, 2.0, None],  # fewer calls, more churn: the strongest, reversed
            "noise": [1.0, 2.0, 1.0, 2.0, 1.0, 2.0],
            "churned": [0, 0, 0, 1, 1, 1],
        }
    )
    test = pd.DataFrame({"calls": [5.0, 3.0, None, 8.0], "noise": [1.0, 1.0, 2.0, 2.0], "churned": [0, 1, 1, 0]})
    baseline = gate.best_single_feature(fit, test, ["noise", "calls"], "churned")
    # `calls` with its sign flipped; the missing test value counts as the fit median (7.0): ranks 0.75
    assert (baseline.feature, baseline.direction) == ("calls", -1)
    assert baseline.auc_roc == pytest.approx(0.75)
    assert gate.best_single_feature(fit, test.assign(churned=0), ["calls"], "churned") is None


def test_a_relative_split_is_resolved_logged_and_reproduced(spark, tiny, tmp_path):
    env = tiny.env.model_copy(update={"paths": tiny.env.paths.model_copy(update={"mlflow": str(tmp_path / "mlflow")})})
    relative = _with_training(
        tiny.model_copy(update={"env": env}), max_evals=1, split=TimeSplit(validation_days=7, test_days=7)
    )
    labels = relative.use_case.features.labels
    label_dates = sorted(
        r[0]
        for r in spark.read.table(relative.table("gold", labels.table))
        .select(F.to_date("label_ts"))
        .distinct()
        .collect()
    )
    newest, week = label_dates[-1], dt.timedelta(days=7)
    result = training.run(spark, relative)
    run = mlflow.get_run(result.run_id)
    expected = {
        "split": "relative",
        "train_from": "",
        "validation_from": str(newest - 2 * week + dt.timedelta(days=1)),
        "test_from": str(newest - week + dt.timedelta(days=1)),
        "test_until": str(newest + dt.timedelta(days=1)),
        "labels_until": str(newest),
    }
    assert {k: run.data.params[k] for k in expected} == expected
    assert run.data.tags["lakeforge.labels_until"] == str(newest)
    logged = training_data.logged_training(result.run_id).split
    assert not logged.relative and str(logged.test_from) == expected["test_from"]
    # Only the newest cutoff tests, the one before validates, everything earlier trains.
    data = training.prepare(spark, relative, training_data.logged_training(result.run_id))
    windows = [
        sorted({r[0] for r in part.select(F.to_date("label_ts")).collect()})
        for part in (data.train, data.validation, data.test)
    ]
    assert windows == [label_dates[:-2], [label_dates[-2]], [newest]]
    for values in training.reproduce(spark, relative, result.run_id).values():
        assert values["reproduced"] == pytest.approx(values["logged"], abs=1e-6)


def test_split_by_time_never_mixes_windows(spark):
    rows = spark.createDataFrame([(T(2026, 1, d), d % 2) for d in range(1, 29)], "label_ts timestamp, churned int")
    split = TimeSplit(validation_from=dt.date(2026, 1, 10), test_from=dt.date(2026, 1, 20))
    train, validation, test = modeling.split_by_time(rows, "label_ts", split)
    days = [sorted(r.label_ts.day for r in part.collect()) for part in (train, validation, test)]
    assert days == [list(range(1, 10)), list(range(10, 20)), list(range(20, 29))]


def test_one_class_window_is_refused(spark):
    rows = spark.createDataFrame([(1.0,), (1.0,)], "label double")
    with pytest.raises(TrainingDataError, match="the test window has 2 labels of which 2 positive"):
        modeling.require_rows({"test": rows}, "label")


def test_search_space_from_config():
    from hyperopt.pyll.stochastic import sample

    space = modeling.build_space(
        {
            "maxDepth": SearchDimension(kind="quniform", low=2, high=6, q=1),
            "regParam": SearchDimension(kind="loguniform", low=0.001, high=0.1),
            "impurity": SearchDimension(kind="choice", options=["gini", "entropy"]),
        }
    )
    import numpy as np

    for seed in range(20):
        drawn = sample(space, rng=np.random.default_rng(seed))
        assert isinstance(drawn["maxDepth"], int) and 2 <= drawn["maxDepth"] <= 6
        assert 0.001 <= drawn["regParam"] <= 0.1
        assert drawn["impurity"] in ("gini", "entropy")


@pytest.mark.parametrize(
    ("dimension", "message"),
    [
        ({"kind": "choice"}, "non-empty 'options'"),
        ({"kind": "uniform", "low": 2, "high": 1}, "'low' < 'high'"),
        ({"kind": "loguniform", "low": 0, "high": 1}, "'low' > 0"),
        ({"kind": "quniform", "low": 1, "high": 5}, "step 'q'"),
    ],
)
def test_bad_search_dimension_is_refused(dimension, message):
    with pytest.raises(ValueError, match=message):
        SearchDimension(**dimension)


def test_labels_of_the_tiny_set_have_both_classes(spark, tiny):
    labels = spark.read.table(tiny.table("gold", "churn_labels"))
    assert labels.where(F.col("churned") == 1).count() > 0


def test_single_node_engine_tunes_with_spark_trials_and_passes_the_gate(spark, tiny, tmp_path):
    env = tiny.env.model_copy(update={"paths": tiny.env.paths.model_copy(update={"mlflow": str(tmp_path / "mlflow")})})
    sklearn_settings = _with_training(
        tiny.model_copy(update={"env": env}),
        engine="single_node",
        max_evals=2,
        search_space={"C": SearchDimension(kind="loguniform", low=0.01, high=10.0)},
        fixed_params={"max_iter": 200},
    )
    result = training.run(spark, sklearn_settings)
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'", output_format="list")
    assert len(children) == result.trials == 2
    assert all(set(child.data.params) == {"C"} and "validation_auc_roc" in child.data.metrics for child in children)
    assert 0.0 <= result.test_metrics["auc_roc"] <= 1.0
    decision = gate.run(spark, sklearn_settings)
    assert decision.promoted  # the first model of this registry
    model = mlflow.pyfunc.load_model(f"models:/{result.model_name}@champion")
    assert model.metadata.get_input_schema().input_names() == [
        *sklearn_settings.use_case.training.numeric_features,
        *sklearn_settings.use_case.training.categorical_features,
    ]
    for values in training.reproduce(spark, sklearn_settings, result.run_id).values():
        assert values["reproduced"] == pytest.approx(values["logged"], abs=1e-9)


def test_early_stop_ignores_running_trials_and_counts_rounds_without_progress():
    class FakeTrials:
        def __init__(self, results):
            self.trials = [{"result": r} for r in results]

    stop = training.stop_without_progress(2)
    assert stop(FakeTrials([{"status": "new"}])) == (False, [None, 0, 0])
    state = stop(FakeTrials([{"loss": -0.7}]))[1]
    assert state == [-0.7, 0, 1]
    running = FakeTrials([{"loss": -0.7}, {"status": "running"}])
    assert stop(running, *state) == (False, [-0.7, 0, 1])  # asked again while trial 2 runs: nothing new
    assert stop(FakeTrials([{"loss": -0.7}, {"loss": -0.6}]), *state) == (False, [-0.7, 1, 2])
    assert stop(FakeTrials([{"loss": -0.7}, {"loss": -0.6}, {"loss": -0.65}]), -0.7, 1, 2) == (True, [-0.7, 2, 3])
    assert stop(FakeTrials([{"loss": -0.7}, {"loss": -0.6}, {"loss": -0.8}]), -0.7, 1, 2) == (False, [-0.8, 0, 3])
