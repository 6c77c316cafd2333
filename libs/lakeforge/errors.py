"""Named exceptions: every error a user can meet says what failed and what to do next."""

from __future__ import annotations


class LakeforgeError(Exception):
    """Base class for errors lakeforge raises on purpose."""


class ConfigError(LakeforgeError):
    """A config file is missing, malformed, or has a wrong or missing key."""

    def __init__(self, file: str, key: str, expected: str, more: list[tuple[str, str]] | None = None) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        # Every other mistake of the same file, (key, expected), so one run names them all.
        self.more = more or []
        others = "".join(f"; key '{other}': {what}" for other, what in self.more)
        count = f" ({1 + len(self.more)} mistakes)" if self.more else ""
        super().__init__(f"{file}{count}: key '{key}': {expected}{others}")


class JavaMissingError(LakeforgeError):
    """Spark needs a Java runtime and none was found."""


class ValidationFailed(LakeforgeError):
    """An expectation whose action is `fail` did not hold; nothing was written."""


class LandingIncomplete(LakeforgeError):
    """A strict source left a file unread (it could not be read, or no pattern matches it); every other file
    landed, and `reports` says what each source did."""

    def __init__(self, message: str, reports: dict | None = None) -> None:
        super().__init__(message)
        self.reports = reports or {}


class AccountingMismatch(LakeforgeError):
    """Rows read from bronze do not add up to rows merged, quarantined and collapsed."""


class TableNotFound(LakeforgeError):
    """A table a step reads does not exist yet (run the step that writes it first)."""


class OrphanedTableError(LakeforgeError):
    """A table's folder holds Delta data the metastore does not know about."""


class FeatureDefinitionError(LakeforgeError):
    """A feature table's transform returned rows that cannot be stored or joined as declared."""


class TrainingDataError(LakeforgeError):
    """The training set cannot train or evaluate a model as configured (an empty or one-class window)."""


class ModelNotFound(LakeforgeError):
    """The registry has no model version behind the alias a step needs."""


class ModelRejected(LakeforgeError):
    """The validation gate kept the champion: the challenger missed a threshold or fell behind."""


class ReproductionMismatch(LakeforgeError):
    """A reproduced run's metrics differ from the logged ones by more than the tolerance."""


class StaleFeatures(LakeforgeError):
    """A feature table is older than its configured max age: refresh it before scoring."""


class SchemaMismatch(LakeforgeError):
    """The rows to score do not match the model's input signature."""


class MissingPredictions(LakeforgeError):
    """Monitoring found no predictions for the date it was asked to watch."""


class RetrainingFailed(LakeforgeError):
    """The triggered training job did not finish successfully."""
