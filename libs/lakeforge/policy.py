"""The retraining policy: from what the monitor measured to retrain, alert or nothing, and why.

Pure: the evidence (drift, quality windows, labels there are, the last retrain) comes in as values and
the decision goes out as one; the monitor gathers the first and records the second.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lakeforge.config import RetrainingPolicy


@dataclass(frozen=True)
class RetrainingDecision:
    """What the policy concluded. `reasons` are the clauses that fired; `held_back` says why they only
    alert instead of retraining (drift set to alert, no new labels, cool-down)."""

    retrain: bool
    reasons: list[str] = field(default_factory=list)
    held_back: str | None = None

    @property
    def action(self) -> str:
        """`retrain`, `alert` (a clause fired but does not retrain) or `none`."""
        return "retrain" if self.retrain else "alert" if self.reasons else "none"


@dataclass(frozen=True)
class Evidence:
    """What a retrain would have to learn from. Unknown values (None) hold nothing back."""

    scoring_date: dt.date | None = None
    labels_until: dt.date | None = None  # the newest label the model trained or tested on
    newest_label: dt.date | None = None  # the newest label that exists now
    last_retrain: dt.date | None = None  # the last scoring date whose decision was to retrain
    drift_since: dt.date | None = None  # the first scoring date a clause fired for this model (None: today)
    test_days: int | None = None  # a relative split's test window: labels there test, they do not train
    auc_dates: tuple[dt.date, ...] = ()  # the labelled scoring dates of the model's AUC windows, oldest first

    @property
    def new_labels(self) -> bool:
        if self.labels_until is None:
            return True
        return self.newest_label is not None and self.newest_label > self.labels_until

    def fits_labels_since(self, since: dt.date | None) -> bool:
        """Whether a retrain now would fit on labels cut on or after `since` (when the trouble began): with
        a relative split the newest `test_days` of labels only test, so the labels must reach further."""
        if since is None or self.newest_label is None:
            return self.new_labels
        fitted_until = self.newest_label - dt.timedelta(days=self.test_days or 0)
        return self.new_labels and fitted_until >= since

    def trouble_since(self, drifted: bool, degraded_windows: int | None) -> dt.date | None:
        """The first day a retrain must learn from: the day drift first fired for this model (today if it
        first fires today), or the first of the `degraded_windows` labelled windows, whichever is earlier."""
        starts = []
        if drifted:
            starts.append(self.drift_since or self.scoring_date)
        if degraded_windows and len(self.auc_dates) >= degraded_windows:
            starts.append(self.auc_dates[-degraded_windows])
        return min((day for day in starts if day is not None), default=None)


def decide(
    policy: RetrainingPolicy,
    drifted_share: float,
    prediction_psi: float | None,
    recent_auc: list[float],
    evidence: Evidence = Evidence(),
) -> RetrainingDecision:
    """Apply each configured clause, then what holds a retrain back; `recent_auc` is the model's AUC per
    labelled window, oldest first."""
    drifted = []
    if policy.max_drifted_share is not None and drifted_share > policy.max_drifted_share:
        drifted.append(f"{drifted_share:.0%} of features drifted, above {policy.max_drifted_share:.0%}")
    psi_limit = policy.max_prediction_psi
    if psi_limit is not None and prediction_psi is not None and prediction_psi > psi_limit:
        drifted.append(f"prediction PSI {prediction_psi:.3f} above {psi_limit}")
    degraded = []
    if policy.min_auc_roc is not None and len(recent_auc) >= policy.auc_windows:
        window = recent_auc[-policy.auc_windows :]
        if all(auc < policy.min_auc_roc for auc in window):
            shown = ", ".join(f"{auc:.3f}" for auc in window)
            degraded.append(f"AUC-ROC below {policy.min_auc_roc} in the last {policy.auc_windows} windows ({shown})")
    reasons = drifted + degraded
    if not reasons:
        return RetrainingDecision(False)
    kind = "quality below the policy" if degraded else "drift"
    if not degraded and policy.on_drift == "alert":
        return RetrainingDecision(False, reasons, "drift alone only alerts (on_drift: alert)")
    newest = evidence.newest_label.isoformat() if evidence.newest_label else "none"
    if policy.require_new_labels and not evidence.new_labels:
        return RetrainingDecision(
            False,
            reasons,
            f"{kind} without new labels: alert only (newest label {newest}; the model's training window "
            f"ends {evidence.labels_until.isoformat()})",
        )
    since = evidence.trouble_since(
        bool(drifted) and policy.on_drift == "retrain", policy.auc_windows if degraded else None
    )
    if policy.require_new_labels and not evidence.fits_labels_since(since):
        testing = f", of which the last {evidence.test_days} days only test" if evidence.test_days else ""
        return RetrainingDecision(
            False,
            reasons,
            f"{kind} without labels from after it to train on: alert only (it began {since.isoformat()}, "
            f"newest label {newest}{testing})",
        )
    if policy.cooldown_days and evidence.last_retrain and evidence.scoring_date:
        days = (evidence.scoring_date - evidence.last_retrain).days
        if days < policy.cooldown_days:
            return RetrainingDecision(
                False,
                reasons,
                f"cool-down: the last retrain was asked on {evidence.last_retrain.isoformat()}, "
                f"{days} of {policy.cooldown_days} days ago",
            )
    return RetrainingDecision(True, reasons)
