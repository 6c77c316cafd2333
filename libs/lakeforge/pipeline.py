"""The steps of a use case, run in order, and what happens on the monitor's decision.

This layer stands above every stage: it calls them in data-flow order and is the one place that
acts on the monitor's retraining decision (the monitor only decides). Within one run, training
happens at most once: `all` skips `train` and `gate` while a champion exists (retraining is the
monitor's call, acted on after it), and a retrain the monitor asks for is not started when this run
has trained already.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lakeforge.config import Settings
from lakeforge.errors import LakeforgeError
from lakeforge.platforms import Platform

log = logging.getLogger("lakeforge.pipeline")


@dataclass(frozen=True)
class StepOptions:
    """Options a step may use; each step reads only its own."""

    full: bool = False
    scoring_date: dt.date | None = None
    training_job_id: int | None = None


@dataclass
class RunState:
    """What the steps of one run did so far (the pipeline consults it before training twice), and the
    steps it skipped with why."""

    trained: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    monitored: Any = None  # the monitor step's result (monitoring.MonitorResult), with what was done on it


def _ingest(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import bronze

    bronze.run(spark, settings)


def _silver(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import silver

    silver.run(spark, settings)


def _gold(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import gold

    gold.run(spark, settings)


def _features(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import feature_store

    feature_store.run(spark, settings, full=options.full)


def _train(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import training

    result = training.run(spark, settings)
    state.trained = True
    print(
        f"trained {result.model_name} version {result.version} (run {result.run_id}, {result.trials} trials): "
        f"test AUC-ROC {result.test_metrics['auc_roc']:.4f}, AUC-PR {result.test_metrics['auc_pr']:.4f}"
    )


def _gate(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import gate

    decision = gate.run(spark, settings)
    verdict = "promoted to champion" if decision.promoted else "kept as challenger: " + "; ".join(decision.reasons)
    print(f"{decision.model_name} version {decision.version}: {verdict}")
    if decision.baseline is not None:
        print(
            f"test AUC-ROC {decision.challenger_auc:.4f} against {decision.baseline.auc_roc:.4f} for the best single "
            f"feature as a score ({decision.baseline.feature})"
        )


def _score(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import scoring

    result = scoring.run(spark, settings, options.scoring_date)
    print(
        f"scored {result.rows} entities for {result.scoring_date} into {result.table} "
        f"with {result.model_name} version {result.model_version}"
    )


def _monitor(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import monitoring

    result = monitoring.run(spark, settings, options.scoring_date)
    if result.decision.retrain:
        try:
            outcome = act_on_retraining(spark, settings, result, options.training_job_id, state)
        except LakeforgeError as exc:
            monitoring.record_outcome(spark, settings, result, f"trigger failed: {exc}")
            raise
        monitoring.record_outcome(spark, settings, result, outcome)
        result = replace(result, triggered=outcome)
    state.monitored = result
    psi = "n/a" if result.prediction_psi is None else f"{result.prediction_psi:.3f}"
    decision = result.decision
    verdict = {
        "retrain": f"RETRAIN: {'; '.join(decision.reasons)}",
        "alert": f"ALERT: {'; '.join(decision.reasons)}",
        "none": "no retraining",
    }[decision.action]
    print(
        f"monitored {result.model_name} version {result.model_version} on {result.scoring_date}: "
        f"{result.drifted_share:.0%} of features drifted, prediction PSI {psi}; {verdict} ({result.triggered}); "
        f"report {result.report}"
    )


def _maintain(spark, settings: Settings, options: StepOptions, state: RunState) -> None:
    from lakeforge import upkeep

    reports = upkeep.run(spark, settings, pinned_versions(settings))
    kept = [report for report in reports if report.kept_for]
    log.info("maintain: %d tables compacted and vacuumed, %d kept longer for a live model", len(reports), len(kept))


def pinned_versions(settings: Settings) -> dict[str, list]:
    """The Delta versions live models read by time travel: the training sets of the champion and challenger
    (`reproduce` and the monitor's fallback rebuild them), by table."""
    from lakeforge import tracking, training_data, upkeep

    if settings.use_case.training is None:
        return {}
    tracking.configure(settings)
    name = tracking.registered_model_name(settings)
    pins: dict[str, list] = {}
    for alias in (tracking.CHAMPION, tracking.CHALLENGER):
        version = tracking.version_by_alias(name, alias)
        if version is None:
            continue
        for table, table_version in training_data.logged_run_versions(version.run_id).items():
            pins.setdefault(table, []).append(upkeep.Pin(table_version, f"the {alias} ({name} v{version.version})"))
    return pins


STEPS: dict[str, Callable] = {
    "ingest": _ingest,
    "silver": _silver,
    "gold": _gold,
    "features": _features,
    "train": _train,
    "gate": _gate,
    "score": _score,
    "monitor": _monitor,
    "maintain": _maintain,
}
# Steps `all` (the daily run) leaves out: table upkeep runs weekly, on its own schedule.
NOT_DAILY = ("maintain",)
# The use case section a step needs: without it the step has nothing to do.
SECTIONS = {"features": "features", "train": "training", "gate": "training", "score": "scoring"}
SECTIONS["monitor"] = "monitoring"
# Steps that `all` runs only when there is no champion yet: afterwards the monitor decides on retraining.
BOOTSTRAP_STEPS = ("train", "gate")
# Steps that check data with Great Expectations: their expectations are built before the first step runs.
VALIDATING_STEPS = ("silver",)
# Old step names that still work: `validate` was the gate before the data expectations kept the word.
STEP_ALIASES = {"validate": "gate"}


def act_on_retraining(spark, settings: Settings, result, job_id: int | None, state: RunState | None = None) -> str:
    """Start training the way this platform does (`retraining.trigger`); returns what was done."""
    platform = Platform(settings.env)
    if not platform.trains_in_process:
        return platform.start_training(settings.use_case.name, result.decision.reasons, result.scoring_date, job_id)
    if state is not None and state.trained:
        return "not retrained: this run trained already"
    from lakeforge import gate, training

    trained = training.run(spark, settings)
    verdict = "promoted" if gate.run(spark, settings).promoted else "kept as challenger"
    if state is not None:
        state.trained = True
    return f"trained version {trained.version} in process: {verdict}"


def champion_version(settings: Settings) -> str | None:
    """The registered version behind the `champion` alias, if any."""
    from lakeforge import tracking

    tracking.configure(settings)
    champion = tracking.version_by_alias(tracking.registered_model_name(settings), tracking.CHAMPION)
    return str(champion.version) if champion else None


def expand(steps: list[str]) -> list[tuple[str, bool]]:
    """The step names in order, each marked whether it came from `all` (and so may be skipped)."""
    named = [STEP_ALIASES.get(step, step) for step in steps]
    daily = [name for name in STEPS if name not in NOT_DAILY]
    return [(name, step == "all") for step in named for name in (daily if step == "all" else [step])]


def run_steps(spark, settings: Settings, steps: list[str], options: StepOptions | None = None) -> RunState:
    """Run the steps given in order (`all`: every step), logging each one's duration. `train` and `gate`
    asked by name always run; from `all` they run only while there is no champion."""
    options = options or StepOptions()
    state = RunState()
    champion = None
    planned = expand(steps)
    if any(name in VALIDATING_STEPS for name, _ in planned):
        from lakeforge import validation

        validation.check_expectations(settings.use_case, settings.use_case_file)
    for name, from_all in planned:
        section = SECTIONS.get(name)
        if section and getattr(settings.use_case, section) is None:
            log.info("step %s: use case %s declares no %s, nothing to do", name, settings.use_case.name, section)
            continue
        if from_all and name in BOOTSTRAP_STEPS:
            champion = champion or champion_version(settings)
            if champion is not None:
                state.skipped[name] = (
                    f"version {champion} is champion and retraining is the monitor's decision "
                    "(run `lakeforge run train gate` to train anyway)"
                )
                log.info("step %s: skipped: %s", name, state.skipped[name])
                continue
        started = time.monotonic()
        log.info("step %s: started", name)
        STEPS[name](spark, settings, options, state)
        log.info("step %s: done in %.1fs", name, time.monotonic() - started)
    return state
