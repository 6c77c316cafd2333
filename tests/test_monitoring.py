"""The monitoring job: drift rows, the Evidently report, quality against labels, the retraining decision
for each policy clause, and each trigger (in process, recorded, Databricks Jobs API on a loopback stub)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from lakeforge import (
    databricks_jobs,
    drift,
    modeling,
    monitoring,
    offline_docs,
    pipeline,
    reference,
    scoring,
    tables,
    tracking,
    training_data,
)
from lakeforge import status as lakeforge_status
from lakeforge.config import FeatureDrift, RetrainingPolicy, Settings
from lakeforge.errors import LakeforgeError, MissingPredictions, RetrainingFailed
from lakeforge.policy import Evidence, RetrainingDecision, decide

# Label cutoffs fall weekly from 2026-01-22: predictions on these dates get labels.
LABELLED_DATES = [dt.date(2026, 1, 29), dt.date(2026, 2, 5)]


def _with_trigger(settings: Settings, trigger: str, **policy) -> Settings:
    retraining = settings.env.retraining.model_copy(update={"trigger": trigger})
    env = settings.env.model_copy(update={"retraining": retraining})
    monitoring_config = settings.use_case.monitoring.model_copy(
        update={"retraining": settings.use_case.monitoring.retraining.model_copy(update=policy)}
    )
    use_case = settings.use_case.model_copy(update={"monitoring": monitoring_config})
    return settings.model_copy(update={"env": env, "use_case": use_case})


@pytest.fixture(scope="module")
def monitored(spark, churn_champion):
    settings = _with_trigger(churn_champion, "record", max_drifted_share=1.0, max_prediction_psi=100.0)
    for day in LABELLED_DATES:
        scoring.run(spark, settings, day)
    return settings, monitoring.run(spark, settings, LABELLED_DATES[-1])


def _table(spark, settings: Settings, name: str, schema: str = "ops"):
    return spark.read.table(settings.table(schema, name))


def test_drift_rows_cover_every_feature_statistic_and_the_prediction(spark, monitored):
    settings, result = monitored
    config, training = settings.use_case.monitoring, settings.use_case.training
    rows = _table(spark, settings, config.drift_table).where(F.col("scoring_date") == result.scoring_date).collect()
    expected = {(c, t) for c in [*training.numeric_features, "score"] for t in config.numeric_tests}
    expected |= {(c, t) for c in training.categorical_features for t in config.categorical_tests}
    assert {(r.feature, r.statistic) for r in rows} == expected and len(rows) == len(expected)
    assert {r.kind for r in rows if r.feature == "score"} == {"prediction"}
    assert all(r.model_version == result.model_version and r.run_id for r in rows)
    # The shipped churn config marks its ages record-only: their deciding test is written, not counted.
    record_only = {name for name, rule in config.features.items() if not rule.decides}
    assert record_only == {"customer_activity_age_days", "ticket_text_age_days", "customer_profile_age_days"}
    for row in rows:
        assert row.threshold == config.thresholds[row.statistic]
        first_test = row.statistic in (config.numeric_tests[0], config.categorical_tests[0])
        assert row.decides == (first_test and row.feature not in record_only)
        assert row.reference_rows > 0 and row.current_rows > 0 and not np.isnan(row.value)
        assert row.drifted == monitoring.drift.is_drift(row.statistic, row.value, row.threshold)
    scored = spark.read.table(settings.table("gold", settings.use_case.scoring.table))
    assert max(r.current_rows for r in rows) == scored.where(F.col("scoring_date") == result.scoring_date).count()
    share, psi = monitoring.drift_summary(result.drift)
    assert (share, psi) == (result.drifted_share, result.prediction_psi)
    deciding = [r for r in rows if r.decides and r.kind == "feature"]
    assert len(deciding) == len(training.numeric_features) + len(training.categorical_features) - len(record_only)
    assert share == sum(r.drifted for r in deciding) / len(deciding)


def test_report_is_evidently_html_logged_to_mlflow(monitored):
    settings, result = monitored
    html = Path(result.report).read_text(encoding="utf-8")
    assert "Data Drift Summary" in html and "orders_30d" in html and "monthly_fee" in html
    # Opened offline it renders whole: Evidently inlines its scripts, and nothing is loaded from elsewhere.
    assert offline_docs.remote_assets(html) == []
    runs = mlflow.search_runs(filter_string=f"tags.scoring_date = '{result.scoring_date}'", output_format="list")
    assert runs, "no monitoring run in MLflow"
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "drift")]
    assert artifacts == [f"drift/drift-{result.scoring_date}-v{result.model_version}.html"]


def test_quality_matches_sklearn_on_the_labelled_predictions(spark, monitored):
    settings, result = monitored
    labels = settings.use_case.features.labels
    quality_rows = {
        r.scoring_date: r for r in _table(spark, settings, settings.use_case.monitoring.quality_table).collect()
    }
    assert sorted(quality_rows) == LABELLED_DATES
    predictions = spark.read.table(settings.table("gold", settings.use_case.scoring.table))
    label_rows = spark.read.table(settings.table("gold", labels.table))
    for day in LABELLED_DATES:
        joined = (
            predictions.where(F.col("scoring_date") == day)
            .join(
                label_rows.where(F.col(labels.timestamp) == F.lit(dt.datetime.combine(day, dt.time()))), "customer_id"
            )
            .select("score", "predicted_label", F.col(labels.label).alias("y"))
            .toPandas()
        )
        row = quality_rows[day]
        assert row.rows == len(joined) > 0 and row.positives == int(joined.y.sum())
        assert row.auc_roc == pytest.approx(roc_auc_score(joined.y, joined.score), abs=1e-9)
        true_positive = int(((joined.predicted_label == 1) & (joined.y == 1)).sum())
        assert row.recall == pytest.approx(true_positive / joined.y.sum())
        assert row.brier_score == pytest.approx(float(((joined.score - joined.y) ** 2).mean()))
    assert result.recent_auc == [quality_rows[d].auc_roc for d in LABELLED_DATES]


def test_decision_file_and_table_say_why(spark, monitored):
    settings, result = monitored
    recorded = json.loads(monitoring.decision_path(settings).read_text())
    assert recorded["retrain"] is False and recorded["scoring_date"] == str(result.scoring_date)
    row = _table(spark, settings, settings.use_case.monitoring.decisions_table).collect()[0]
    assert (row.retrain, row.trigger, row.outcome) == (False, "record", "no retraining needed")


def _scored_training_set(spark, settings: Settings, model) -> list:
    """The model's training set rebuilt from its logged Delta versions and scored by it: the reference's contents."""
    training, data = training_data.logged_training_set(spark, settings, model.run_id)
    uri = f"models:/{model.model_name}/{model.model_version}"
    rows = data.train.unionByName(data.validation)
    scored = modeling.score_rows(spark, uri, rows, training.decision_threshold)
    return sorted(scored.select(*reference.columns(training)).collect(), key=repr)


def _saved_reference(spark, settings: Settings, model) -> list:
    rows = spark.read.table(reference.table_name(settings))
    mine = rows.where(F.col("run_id") == model.run_id)
    assert {(r.model_name, r.model_version) for r in mine.collect()} <= {(model.model_name, model.model_version)}
    return sorted(mine.drop(*reference.MODEL_COLUMNS).collect(), key=repr)


def _champion(spark, settings: Settings, scoring_date: dt.date):
    predictions = _table(spark, settings, settings.use_case.scoring.table, "gold")
    todays = predictions.where(F.col("scoring_date") == scoring_date)
    return todays, todays.select("model_name", "model_version", "run_id").distinct().collect()[0]


def _drift(spark, settings: Settings, scoring_date: dt.date, todays, model) -> list:
    results, reference_set, current, _, _ = monitoring.measure_drift(spark, settings, scoring_date, model, todays)
    reference_set.unpersist()
    current.unpersist()
    return results


def test_promotion_saved_the_champions_scored_training_set_as_its_reference(spark, monitored):
    settings, result = monitored
    _, model = _champion(spark, settings, result.scoring_date)
    saved = _saved_reference(spark, settings, model)
    assert saved == _scored_training_set(spark, settings, model)
    assert {row.predicted_label for row in saved} == {0, 1}
    assert max(r.reference_rows for r in result.drift) == len(saved)


def test_monitor_reads_the_saved_reference_without_the_logged_delta_versions(spark, monitored, monkeypatch):
    """Time travel to the training run's versions fails once VACUUM or log retention removed them."""
    settings, result = monitored
    todays, model = _champion(spark, settings, result.scoring_date)

    def vacuumed(*_args, **_kwargs):
        raise AssertionError("the monitor rebuilt the training set although its reference was saved")

    monkeypatch.setattr(monitoring.training_data, "logged_training_set", vacuumed)
    assert _drift(spark, settings, result.scoring_date, todays, model) == result.drift


def test_a_model_promoted_without_a_reference_gets_it_on_its_first_monitor_run(spark, monitored):
    settings, result = monitored
    todays, model = _champion(spark, settings, result.scoring_date)
    table = reference.table_name(settings)
    saved = _saved_reference(spark, settings, model)
    spark.sql(f"DELETE FROM {table} WHERE run_id = '{model.run_id}'")
    assert _saved_reference(spark, settings, model) == []
    assert _drift(spark, settings, result.scoring_date, todays, model) == result.drift
    assert _saved_reference(spark, settings, model) == saved


def test_saving_a_reference_again_replaces_its_rows(spark, monitored):
    settings, result = monitored
    _, model = _champion(spark, settings, result.scoring_date)
    saved = _saved_reference(spark, settings, model)
    table = reference.table_name(settings)
    before = tables.table_version(spark, table)
    training, data = training_data.logged_training_set(spark, settings, model.run_id)
    rows = data.train.unionByName(data.validation)
    reference.save(spark, settings, training, rows, **model.asDict())
    assert tables.table_version(spark, table) == before + 1  # written again, in one commit
    assert _saved_reference(spark, settings, model) == saved


def test_a_use_case_without_monitoring_saves_no_reference(spark, monitored):
    settings, result = monitored
    unmonitored = settings.model_copy(update={"use_case": settings.use_case.model_copy(update={"monitoring": None})})
    _, model = _champion(spark, settings, result.scoring_date)
    training = training_data.logged_training(model.run_id)
    assert reference.table_name(unmonitored) is None
    assert reference.load(spark, unmonitored, training, model.run_id) is None
    before = tables.table_version(spark, reference.table_name(settings))
    reference.save(spark, unmonitored, training, spark.range(0), **model.asDict())
    assert tables.table_version(spark, reference.table_name(settings)) == before


def test_replace_rows_keeps_other_rows_adds_new_columns_and_refuses_rows_outside_the_match(spark):
    spark.sql("CREATE SCHEMA IF NOT EXISTS replace_rows_test")
    table = "replace_rows_test.versions"
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    rows = [("m", "1", 0.1), ("m", "1", 0.2), ("m", "2", 0.3)]
    first = spark.createDataFrame(rows, "name string, v string, x double")
    tables.replace_rows(first.where("v = '1'"), table, {"name": "m", "v": "1"})
    tables.replace_rows(first.where("v = '2'"), table, {"name": "m", "v": "2"})
    again = spark.createDataFrame([("m", "1", 0.5, "new")], "name string, v string, x double, y string")
    tables.replace_rows(again, table, {"name": "m", "v": "1"})
    assert sorted(spark.read.table(table).collect()) == [("m", "1", 0.5, "new"), ("m", "2", 0.3, None)]
    version = tables.table_version(spark, table)
    with pytest.raises(ValueError, match="rows outside"):
        tables.replace_rows(first, table, {"name": "m", "v": "2"})
    assert tables.table_version(spark, table) == version
    spark.sql("DROP SCHEMA replace_rows_test CASCADE")


def test_missing_predictions_write_nothing(spark, monitored):
    settings, _ = monitored
    drift_table = settings.table("ops", settings.use_case.monitoring.drift_table)
    before = tables.table_version(spark, drift_table)
    with pytest.raises(MissingPredictions, match="no predictions for 2025-01-01"):
        monitoring.run(spark, settings, dt.date(2025, 1, 1))
    assert tables.table_version(spark, drift_table) == before


@pytest.mark.parametrize(
    ("policy", "share", "psi", "aucs", "reason"),
    [
        ({"max_drifted_share": 0.3}, 0.5, 0.0, [], "50% of features drifted, above 30%"),
        ({"max_drifted_share": 0.3}, 0.3, 0.0, [], None),
        ({"max_prediction_psi": 0.2}, 0.0, 0.25, [], "prediction PSI 0.250 above 0.2"),
        ({"max_prediction_psi": 0.2}, 0.0, 0.2, [], None),
        ({"min_auc_roc": 0.7, "auc_windows": 2}, 0.0, 0.0, [0.8, 0.65, 0.6], "AUC-ROC below 0.7 in the last 2"),
        ({"min_auc_roc": 0.7, "auc_windows": 2}, 0.0, 0.0, [0.6, 0.75, 0.6], None),  # not consecutive
        ({"min_auc_roc": 0.7, "auc_windows": 2}, 0.0, 0.0, [0.6], None),  # too few windows yet
        ({}, 1.0, 9.0, [0.1, 0.1], None),  # no clause configured
    ],
)
def test_each_policy_clause(policy, share, psi, aucs, reason):
    decision = decide(RetrainingPolicy(**policy), share, psi, aucs)
    assert decision.retrain == (reason is not None)
    assert (reason in decision.reasons[0]) if reason else decision.reasons == []


class _JobsStub(BaseHTTPRequestHandler):
    """Databricks' Jobs API as far as run_now and its waiter use it."""

    requests: list = []
    result_state = "SUCCESS"

    def log_message(self, *args):  # keep the test output clean
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(("GET", self.path, self.headers.get("Authorization"), None))
        if self.path.startswith("/api/2.2/jobs/runs/get"):
            polls = sum(1 for r in self.requests if r[1].startswith("/api/2.2/jobs/runs/get"))
            state = {"life_cycle_state": "RUNNING"}
            if polls > 1:
                state = {"life_cycle_state": "TERMINATED", "result_state": self.result_state, "state_message": "done"}
            return self._reply(200, {"run_id": 991, "job_id": 123, "state": state})
        self._reply(404, {"error_code": "NOT_FOUND", "message": "no such endpoint"})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, self.headers.get("Authorization"), body))
        if self.path == "/api/2.2/jobs/run-now":
            return self._reply(200, {"run_id": 991, "number_in_job": 1})
        self._reply(404, {"error_code": "NOT_FOUND", "message": "no such endpoint"})


@pytest.fixture
def jobs_api(monkeypatch):
    _JobsStub.requests = []
    _JobsStub.result_state = "SUCCESS"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobsStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for key in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test-token")
    yield _JobsStub
    server.shutdown()


def test_databricks_trigger_calls_run_now_and_waits(spark, monitored, jobs_api, monkeypatch):
    settings, result = monitored
    monkeypatch.setenv("LAKEFORGE_TRAINING_JOB_ID", "123")
    on_databricks = _with_trigger(settings, "databricks")
    decision = RetrainingDecision(True, ["prediction PSI 0.300 above 0.25"])
    outcome = pipeline.act_on_retraining(spark, on_databricks, replace(result, decision=decision), None)
    assert outcome == "Databricks run 991"
    posts = [r for r in jobs_api.requests if r[0] == "POST"]
    assert len(posts) == 1
    _, path, auth, body = posts[0]
    assert path == "/api/2.2/jobs/run-now" and auth == "Bearer dapi-test-token"
    assert body == {
        "job_id": 123,
        "job_parameters": {"use_case": "churn", "retraining_reason": "prediction PSI 0.300 above 0.25"},
        "idempotency_token": f"lakeforge-retrain-churn-{result.scoring_date}",
    }
    polls = [r for r in jobs_api.requests if r[1].startswith("/api/2.2/jobs/runs/get")]
    assert len(polls) == 2 and all("run_id=991" in r[1] for r in polls)


def test_a_failed_databricks_run_raises(jobs_api):
    jobs_api.result_state = "FAILED"
    with pytest.raises(RetrainingFailed, match="job 123 run 991 ended FAILED: done"):
        databricks_jobs.run_training_job(123, {}, "token-1")


def test_databricks_trigger_without_a_job_id_names_the_variable(spark, monitored, monkeypatch):
    settings, result = monitored
    monkeypatch.delenv("LAKEFORGE_TRAINING_JOB_ID", raising=False)
    decision = RetrainingDecision(True, ["x"])
    with pytest.raises(LakeforgeError, match=r"\$LAKEFORGE_TRAINING_JOB_ID"):
        pipeline.act_on_retraining(
            spark, _with_trigger(settings, "databricks"), replace(result, decision=decision), None
        )


def _decision_row(spark, settings: Settings, scoring_date: dt.date):
    rows = (
        _table(spark, settings, settings.use_case.monitoring.decisions_table)
        .where(F.col("scoring_date") == scoring_date)
        .collect()
    )
    assert len(rows) == 1
    return rows[0]


def _versions(name: str) -> list[str]:
    return sorted(v.version for v in mlflow.MlflowClient().search_model_versions(f"name = '{name}'"))


def test_evidence_reads_the_champions_training_window_and_the_labels_there_are(spark, monitored):
    settings, result = monitored
    labels = settings.use_case.features.labels
    newest = _table(spark, settings, labels.table, "gold").agg(F.max(F.to_date(labels.timestamp))).first()[0]
    champion = tracking.version_by_alias(result.model_name, tracking.CHAMPION)
    logged = mlflow.get_run(champion.run_id).data
    # The champion was trained on every label there is (its test window is open-ended): nothing is new.
    assert result.evidence.labels_until == newest == dt.date.fromisoformat(logged.params["labels_until"])
    assert result.evidence.scoring_date == result.scoring_date and not result.evidence.new_labels
    assert logged.params["test_from"] == "2026-02-05" and logged.params["split"] == "fixed"


def test_drift_without_new_labels_alerts_and_trains_nothing(spark, monitored):
    settings, result = monitored
    firing = _with_trigger(settings, "local", max_prediction_psi=1e-12)
    before = _versions(result.model_name)
    pipeline.run_steps(spark, firing, ["monitor"], pipeline.StepOptions(scoring_date=result.scoring_date))
    row = _decision_row(spark, settings, result.scoring_date)
    assert (row.retrain, row.action) == (False, "alert") and "prediction PSI" in row.reasons[0]
    assert row.held_back.startswith("drift without new labels: alert only")
    assert row.outcome == f"alert only: {row.held_back}"
    recorded = json.loads(monitoring.decision_path(settings).read_text())
    assert (recorded["retrain"], recorded["action"], recorded["held_back"]) == (False, "alert", row.held_back)
    assert _versions(result.model_name) == before


def test_status_says_where_the_use_case_stands(spark, monitored):
    settings, result = monitored
    status = lakeforge_status.collect(spark, settings)
    by_name = {table.name: table for table in status.tables}
    predictions = settings.table_ref("gold", settings.use_case.scoring.table)
    assert by_name[predictions.plain].version == spark.sql(f"DESCRIBE HISTORY {predictions} LIMIT 1").first().version
    assert by_name[predictions.plain].operation in ("MERGE", "WRITE", "CREATE TABLE AS SELECT", "DELETE")
    decisions = settings.table_ref("ops", settings.use_case.monitoring.decisions_table).plain
    view = settings.table_ref("gold", settings.use_case.scoring.view).plain
    assert decisions in by_name and by_name[view].version is None, "a view is listed, without Delta history"
    assert all(t.version is not None for t in status.tables if t.name.startswith("gold_") and t.name != view)
    assert {f.name for f in status.features} == set(settings.use_case.features.tables)
    champion = tracking.version_by_alias(tracking.registered_model_name(settings), tracking.CHAMPION)
    assert [(m.alias, m.version, m.run_id) for m in status.models][0] == (
        "champion",
        str(champion.version),
        champion.run_id,
    )
    assert status.models[0].window["test_from"] == "2026-02-05" and 0.5 < status.models[0].auc_roc <= 1
    assert status.last_scoring_date == result.scoring_date == LABELLED_DATES[-1]
    decision = status.last_decision
    # Earlier tests of this module decide the same date again: the status shows the newest decision.
    newest = (
        _table(spark, settings, settings.use_case.monitoring.decisions_table)
        .orderBy(F.col("scoring_date").desc(), F.col("decided_at").desc())
        .first()
    )
    assert (decision["scoring_date"], decision["action"]) == (newest.scoring_date, newest.action)
    assert decision["scoring_date"] == result.scoring_date
    screen = "\n".join(lakeforge_status.render(status))
    assert f"last scoring date: {result.scoring_date}" in screen
    assert f"champion   version {champion.version}  test AUC-ROC {status.models[0].auc_roc:.4f}" in screen
    assert f"last decision: {result.scoring_date} version {newest.model_version}: {newest.action}" in screen
    assert "mlflow ui --backend-store-uri sqlite:" in screen and "Evidently reports:" in screen


def test_rerun_that_fires_locally_trains_a_new_version_and_replaces_the_dates_rows(spark, monitored):
    """Run last among the monitoring tests: it promotes a new champion."""
    settings, result = monitored
    drift_table = _table(spark, settings, settings.use_case.monitoring.drift_table)
    before = drift_table.where(F.col("scoring_date") == result.scoring_date).count()
    firing = _with_trigger(settings, "local", max_prediction_psi=1e-12, require_new_labels=False)
    pipeline.run_steps(spark, firing, ["monitor"], pipeline.StepOptions(scoring_date=result.scoring_date))
    assert drift_table.where(F.col("scoring_date") == result.scoring_date).count() == before
    champion = tracking.version_by_alias(result.model_name, tracking.CHAMPION)
    promoted = Row(model_name=result.model_name, model_version=str(champion.version), run_id=champion.run_id)
    assert promoted.model_version == "2" and _saved_reference(spark, firing, promoted) == _scored_training_set(
        spark, firing, promoted
    )
    row = _decision_row(spark, settings, result.scoring_date)
    assert row.retrain and row.action == "retrain" and "prediction PSI" in row.reasons[0] and row.held_back is None
    assert row.outcome == "trained version 2 in process: promoted"

    # A trigger inside the cool-down after that retrain only alerts.
    three_days_later = result.scoring_date + dt.timedelta(days=3)
    seen = monitoring.evidence(spark, firing, three_days_later, promoted)
    assert seen.last_retrain == result.scoring_date
    for cooldown, retrains in ((7, False), (3, True)):
        policy = RetrainingPolicy(max_prediction_psi=0.1, require_new_labels=False, cooldown_days=cooldown)
        decision = decide(policy, 0.0, 0.5, [], seen)
        assert decision.retrain == retrains
        held = f"cool-down: the last retrain was asked on {result.scoring_date}, 3 of 7 days ago"
        assert retrains or decision.held_back == held


LATER = dt.date(2026, 3, 1)
FEB_19, FEB_20, FEB_27 = dt.date(2026, 2, 19), dt.date(2026, 2, 20), dt.date(2026, 2, 27)
MAR_10, MAR_13 = dt.date(2026, 3, 10), dt.date(2026, 3, 13)


def _low_from(first_low: dt.date, newest_label: dt.date, drift_since: dt.date | None = None) -> Evidence:
    """Evidence of AUC windows a week apart whose last two (from `first_low`) are low, under a 14-day test window."""
    windows = (first_low - dt.timedelta(days=7), first_low, first_low + dt.timedelta(days=7))
    return Evidence(LATER, FEB_19, newest_label, drift_since=drift_since, test_days=14, auc_dates=windows)


@pytest.mark.parametrize(
    ("policy", "aucs", "evidence", "action", "held_back"),
    [
        # drift without labels past the model's window only alerts; with them it retrains
        ({}, [], Evidence(LATER, dt.date(2026, 2, 19), dt.date(2026, 2, 19)), "alert", "drift without new"),
        ({}, [], Evidence(LATER, FEB_19, dt.date(2026, 2, 26), drift_since=FEB_20), "retrain", None),
        # new labels, but all from before the drift began (today, or the first day it fired): alert only
        ({}, [], Evidence(LATER, FEB_19, dt.date(2026, 2, 26)), "alert", "drift without labels from after"),
        # with a relative split the newest test_days only test: labels after the drift must reach past them
        ({}, [], Evidence(LATER, FEB_19, MAR_10, drift_since=FEB_27, test_days=14), "alert", "drift witho"),
        ({}, [], Evidence(LATER, FEB_19, MAR_13, drift_since=FEB_27, test_days=14), "retrain", None),
        ({"require_new_labels": False}, [], Evidence(LATER, dt.date(2026, 2, 19), None), "retrain", None),
        # drift set to alert never retrains; falling quality still does
        ({"on_drift": "alert"}, [], Evidence(), "alert", "drift alone only alerts"),
        ({"on_drift": "alert", "min_auc_roc": 0.7}, [0.6, 0.6], Evidence(), "retrain", None),
        ({"min_auc_roc": 0.7}, [0.6, 0.6], Evidence(LATER, LATER, LATER), "alert", "quality below"),
        # falling quality retrains once the fit reaches its first low window (Feb 27: the test week ends Mar 13)
        ({"min_auc_roc": 0.7}, [0.8, 0.6, 0.6], _low_from(FEB_27, MAR_10), "alert", "quality below the policy with"),
        ({"min_auc_roc": 0.7}, [0.8, 0.6, 0.6], _low_from(FEB_27, MAR_13), "retrain", None),
        # drift that began earlier (Feb 20) than the low windows counts from its own start
        ({"min_auc_roc": 0.7}, [0.8, 0.6, 0.6], _low_from(FEB_27, MAR_10, drift_since=FEB_20), "retrain", None),
        # inside the cool-down only an alert; on its last day a retrain
        ({"cooldown_days": 7}, [], Evidence(LATER, last_retrain=dt.date(2026, 2, 23)), "alert", "cool-down"),
        ({"cooldown_days": 7}, [], Evidence(LATER, last_retrain=dt.date(2026, 2, 22)), "retrain", None),
    ],
)
def test_the_policy_retrains_only_on_evidence(policy, aucs, evidence, action, held_back):
    decision = decide(RetrainingPolicy(max_prediction_psi=0.2, **policy), 0.0, 0.3, aucs, evidence)
    assert decision.action == action and decision.retrain == (action == "retrain") and decision.reasons
    assert (held_back is None) == (decision.held_back is None)
    assert (decision.held_back or "").startswith(held_back or "")


def test_a_quiet_policy_neither_alerts_nor_retrains():
    decision = decide(RetrainingPolicy(max_prediction_psi=0.2), 0.0, 0.1, [], Evidence())
    assert (decision.action, decision.retrain, decision.reasons, decision.held_back) == ("none", False, [], None)


def _column_drift(
    column: str, statistic: str, value: float, threshold: float, decides: bool = True
) -> drift.ColumnDrift:
    drifted = drift.is_drift(statistic, value, threshold)
    return drift.ColumnDrift(column, statistic, value, threshold, drifted, decides, 9, 9)


def test_feature_rules_record_without_deciding_or_set_their_own_threshold():
    results = [
        _column_drift("customer_profile_age_days", "psi", 14.7, 0.2),
        _column_drift("customer_profile_age_days", "ks", 0.0, 0.05, decides=False),
        _column_drift("orders_90d", "psi", 0.3, 0.2),
        _column_drift("spend_90d", "psi", 0.3, 0.2),
        _column_drift("plan", "jensenshannon", 0.05, 0.1),
    ]
    rules = {"customer_profile_age_days": FeatureDrift(decides=False), "orders_90d": FeatureDrift(threshold=0.5)}
    ruled = drift.apply_rules(results, rules)
    by_key = {(r.column, r.statistic): r for r in ruled}
    age = by_key[("customer_profile_age_days", "psi")]
    assert age.drifted and not age.decides and age.value == 14.7  # recorded as measured, not counted
    assert by_key[("customer_profile_age_days", "ks")] == results[1]
    assert (by_key[("orders_90d", "psi")].threshold, by_key[("orders_90d", "psi")].drifted) == (0.5, False)
    assert by_key[("spend_90d", "psi")] == results[3] and by_key[("plan", "jensenshannon")] == results[4]
    assert monitoring.drift_summary(results)[0] == pytest.approx(3 / 4)
    assert monitoring.drift_summary(ruled)[0] == pytest.approx(1 / 3)
