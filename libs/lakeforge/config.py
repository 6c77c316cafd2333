"""Typed, validated configuration: one YAML file per use case plus one overlay per environment.

A wrong or missing key fails here, before Spark starts, with the file, the key and what was
expected. Identifiers that end up in SQL (schemas, tables, columns) are checked against a strict
pattern so a config file can never inject SQL through a table name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import inspect
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lakeforge.errors import ConfigError
from lakeforge.table_ref import TableRef

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SPARK_TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp")
ACTIONS = ("warn", "quarantine", "fail")
DEFAULT_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def conf_dir() -> Path:
    """The config folder: `LAKEFORGE_CONF` if set, else the repository's `conf/`."""
    return Path(os.environ.get("LAKEFORGE_CONF", DEFAULT_CONF_DIR))


def available(kind: str) -> list[str]:
    """The names of the use cases (`usecases`) or environments (`envs`) in the config folder."""
    return sorted(path.stem for path in (conf_dir() / kind).glob("*.yml"))


def lakeforge_home() -> Path:
    """Everything a local run writes lives under this one folder (default `./.lakeforge`)."""
    return Path(os.environ.get("LAKEFORGE_HOME", ".lakeforge")).resolve()


def check_identifier(name: str) -> str:
    """Return `name` if it is a plain SQL identifier, else raise ValueError."""
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.match(name):
        raise ValueError(f"'{name}' is not a valid identifier (letters, digits, underscore; not starting with a digit)")
    return name


# A name Spark SQL takes unquoted: a table, column, schema or catalog name in config.
Identifier = Annotated[str, AfterValidator(check_identifier)]


def check_key_columns(columns: list[str]) -> list[str]:
    """At least one key column, each a plain identifier."""
    if not columns:
        raise ValueError("at least one key column is required")
    return [check_identifier(column) for column in columns]


def resolve_callable(reference: str) -> Callable[..., Any]:
    """Import `package.module:function` and return the function."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ValueError(f"'{reference}' must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"module '{module_name}' cannot be imported ({exc})") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise ValueError(f"'{module_name}' has no function '{attr}'")
    return function


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expectation(_Strict):
    """One Great Expectations expectation on a silver table, with what to do when it fails."""

    type: str
    action: Literal["warn", "quarantine", "fail"]
    column: Identifier | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_to_great_expectations(self, info: ValidationInfo) -> Expectation:
        # Building the GX object imports GX (7 s of CPU): loaders of steps that never validate skip it.
        if (info.context or {}).get("check_expectations", True):
            from lakeforge.validation import build_expectation

            build_expectation(self)
        return self

    @property
    def name(self) -> str:
        """A stable, readable name used in quarantine reasons and result tables."""
        return f"{self.type}:{self.column}" if self.column else self.type


class Source(_Strict):
    """A raw feed landing as files, and the typed silver table it becomes."""

    format: Literal["csv", "json"]
    key: list[str]
    event_time: str
    columns: dict[str, str]
    expectations: list[Expectation] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _keys_are_identifiers(cls, value: list[str]) -> list[str]:
        return check_key_columns(value)

    @field_validator("columns")
    @classmethod
    def _columns_are_typed(cls, value: dict[str, str]) -> dict[str, str]:
        for column, spark_type in value.items():
            check_identifier(column)
            if column.startswith("_"):
                raise ValueError(f"column '{column}' starts with '_', which is kept for lakeforge's own columns")
            if spark_type not in SPARK_TYPES:
                raise ValueError(f"column '{column}' has type '{spark_type}', expected one of {', '.join(SPARK_TYPES)}")
        return value

    @model_validator(mode="after")
    def _keys_and_time_are_columns(self) -> Source:
        for column in [*self.key, self.event_time]:
            if column not in self.columns:
                raise ValueError(f"'{column}' is used as key or event_time but is not in columns")
        for expectation in self.expectations:
            if expectation.column and expectation.column not in self.columns:
                raise ValueError(f"expectation {expectation.name} names column '{expectation.column}', not in columns")
        return self


class GoldTable(_Strict):
    """An analyst-facing table computed from silver tables by a named transform."""

    transform: str
    inputs: list[str]

    @field_validator("transform")
    @classmethod
    def _transform_exists(cls, value: str) -> str:
        resolve_callable(value)
        return value


LAYERS = ("bronze", "silver", "gold", "features")


def check_table_reference(reference: str) -> tuple[str, str]:
    """Split `layer.table` (for example `silver.orders`) and check both parts."""
    layer, _, name = reference.partition(".")
    if layer not in LAYERS or not name:
        raise ValueError(f"'{reference}' must look like 'layer.table' with layer one of {', '.join(LAYERS)}")
    return layer, check_identifier(name)


def _check_transform_accepts(reference: str, inputs: list[str], params: dict[str, Any]) -> None:
    """Fail on load, not mid-job, when a transform cannot take the inputs and params config gives it."""
    function = resolve_callable(reference)
    try:
        inspect.signature(function).bind(**dict.fromkeys(inputs), **params)
    except TypeError as exc:
        raise ValueError(
            f"{reference} cannot be called with inputs {inputs} and params {sorted(params)}: {exc}"
        ) from exc


class TextPipeline(_Strict):
    """A text column turned into TF-IDF vectors by a pipeline fitted once in the features job."""

    column: Identifier
    num_features: int = Field(default=4096, ge=16, le=1 << 20)
    min_doc_freq: int = Field(default=2, ge=0)
    ngrams: int = Field(default=2, ge=1, le=3)


class FeatureTable(_Strict):
    """A Delta feature table: entity keys, a timestamp key, its sources and the transform computing it.

    The transform takes one DataFrame per source (named after the table) plus `params`, and returns
    rows keyed by `entity` and `timestamp`. An incremental run recomputes only timestamps from the
    last one already written, reading `lookback_days` of history before it for the windows.
    """

    entity: list[str]
    timestamp: Identifier
    sources: list[str]
    transform: str
    params: dict[str, Any] = Field(default_factory=dict)
    time_columns: dict[str, str] = Field(default_factory=dict)
    lookback_days: int = Field(default=0, ge=0)
    max_age_hours: float = Field(default=36.0, gt=0)
    text: TextPipeline | None = None

    @field_validator("entity")
    @classmethod
    def _entity_are_identifiers(cls, value: list[str]) -> list[str]:
        return check_key_columns(value)

    @field_validator("sources")
    @classmethod
    def _sources_are_table_references(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one source table is required")
        for reference in value:
            check_table_reference(reference)
        return value

    @model_validator(mode="after")
    def _transform_fits(self) -> FeatureTable:
        _check_transform_accepts(self.transform, self.source_names(), self.params)
        for name, column in self.time_columns.items():
            check_identifier(column)
            if name not in self.source_names():
                raise ValueError(f"time_columns names '{name}', which is not one of the sources {self.source_names()}")
        return self

    def source_names(self) -> list[str]:
        return [check_table_reference(reference)[1] for reference in self.sources]

    def config_hash(self) -> str:
        """A short, stable hash of this table's definition: it changes when the computation does, or what
        is stored (a text table stores TF-IDF vectors since layout 2; a table written before is recomputed)."""
        definition = {**self.model_dump(), "layout": 2}
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


class Labels(_Strict):
    """How the label table (entity, label time, label) is computed from source tables."""

    table: Identifier
    entity: list[str]
    timestamp: Identifier
    label: Identifier
    sources: list[str]
    transform: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("entity")
    @classmethod
    def _entity_are_identifiers(cls, value: list[str]) -> list[str]:
        return check_key_columns(value)

    @field_validator("sources")
    @classmethod
    def _sources_are_table_references(cls, value: list[str]) -> list[str]:
        for reference in value:
            check_table_reference(reference)
        return value

    @model_validator(mode="after")
    def _transform_fits(self) -> Labels:
        _check_transform_accepts(self.transform, [check_table_reference(s)[1] for s in self.sources], self.params)
        return self


class Features(_Strict):
    """Feature tables of a use case and the labels a training set joins them to."""

    tables: dict[str, FeatureTable]
    entities: str
    labels: Labels | None = None

    @field_validator("entities")
    @classmethod
    def _entities_is_table_reference(cls, value: str) -> str:
        check_table_reference(value)
        return value

    @field_validator("tables")
    @classmethod
    def _table_names_are_identifiers(cls, value: dict[str, FeatureTable]) -> dict[str, FeatureTable]:
        for name in value:
            check_identifier(name)
        return value


class SearchDimension(_Strict):
    """One hyperparameter's search space, as hyperopt expresses it."""

    kind: Literal["choice", "uniform", "loguniform", "quniform"]
    options: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    q: float | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchDimension:
        if self.kind == "choice" and not self.options:
            raise ValueError("a 'choice' needs a non-empty 'options' list")
        if self.kind != "choice":
            if self.low is None or self.high is None or self.low >= self.high:
                raise ValueError(f"a '{self.kind}' needs 'low' < 'high'")
            if self.kind == "loguniform" and self.low <= 0:
                raise ValueError("a 'loguniform' needs 'low' > 0 (bounds are given as values, not logs)")
            if self.kind == "quniform" and not self.q:
                raise ValueError("a 'quniform' needs a step 'q'")
        return self


class TimeSplit(_Strict):
    """Where training, validation and test labels come from: fixed dates, or durations that move with the data.

    Fixed: train on labels before `validation_from` (from `train_from`, if set), tune on those before
    `test_from`, test on the rest (before `test_until`, if set). Relative: the last `test_days` of labels
    up to the newest labelled cutoff test, the `validation_days` before them tune, and the rest trains
    (at most `train_days` of it, if set). A relative split is resolved to dates when a training set is
    built (`resolve`), and the resolved dates are what a run logs, so a retrain after new labels trains
    on a window that includes them and `reproduce` rebuilds exactly the window a run used.
    """

    train_from: dt.date | None = None
    validation_from: dt.date | None = None
    test_from: dt.date | None = None
    test_until: dt.date | None = None
    train_days: int | None = Field(default=None, ge=1)
    validation_days: int | None = Field(default=None, ge=1)
    test_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_form_ordered(self) -> TimeSplit:
        fixed = {"train_from": self.train_from, "validation_from": self.validation_from, "test_from": self.test_from}
        fixed["test_until"] = self.test_until
        relative = {"train_days": self.train_days, "validation_days": self.validation_days, "test_days": self.test_days}
        if any(v is not None for v in relative.values()):
            given = sorted(k for k, v in fixed.items() if v is not None)
            if given:
                raise ValueError(f"give dates or durations, not both: {', '.join(given)} beside *_days")
            if self.validation_days is None or self.test_days is None:
                raise ValueError("a relative split needs validation_days and test_days (train_days is optional)")
            return self
        if self.validation_from is None or self.test_from is None:
            raise ValueError("give validation_from and test_from (dates), or validation_days and test_days")
        if self.train_from and not self.train_from < self.validation_from:
            raise ValueError("train_from must come before validation_from")
        if not self.validation_from < self.test_from:
            raise ValueError("validation_from must come before test_from")
        if self.test_until and not self.test_from < self.test_until:
            raise ValueError("test_from must come before test_until")
        return self

    @property
    def relative(self) -> bool:
        return self.test_days is not None

    def resolve(self, newest_label: dt.date) -> TimeSplit:
        """These dates as they are, or the durations counted back from the newest labelled cutoff."""
        if not self.relative:
            return self
        test_until = newest_label + dt.timedelta(days=1)
        test_from = test_until - dt.timedelta(days=self.test_days)
        validation_from = test_from - dt.timedelta(days=self.validation_days)
        train_from = validation_from - dt.timedelta(days=self.train_days) if self.train_days else None
        return TimeSplit(
            train_from=train_from, validation_from=validation_from, test_from=test_from, test_until=test_until
        )


class Gate(_Strict):
    """What a challenger must reach to become champion."""

    min_auc_roc: float = Field(default=0.5, ge=0, le=1)
    min_auc_pr: float = Field(default=0.0, ge=0, le=1)
    max_auc_drop: float = Field(default=0.01, ge=0, le=1)
    # Set, the challenger must beat the best single numeric feature (as a score) by this much in AUC-ROC;
    # unset, that baseline is measured and tagged on the version only.
    min_lift_over_baseline: float | None = Field(default=None, ge=-1, le=1)
    fail_on_reject: bool = False


class SingleNode(_Strict):
    """The single-node engine: a scikit-learn learner on an in-memory sample, trials in parallel (SparkTrials)."""

    sample_rows: int = Field(default=200_000, ge=100)
    parallelism: int = Field(default=2, ge=1)


class Training(_Strict):
    """How a model is trained, tuned, tracked and promoted.

    `engine: spark_ml` (default) fits distributed Spark ML models one trial at a time; `single_node`
    fits scikit-learn models on a sample, several trials at once. Search-space names are the
    engine's own parameter names (Spark ML `regParam`, scikit-learn `C`).
    """

    model_name: Identifier
    experiment: Identifier
    engine: Literal["spark_ml", "single_node"] = "spark_ml"
    single_node: SingleNode = SingleNode()
    family: Literal["logistic_regression", "random_forest", "gbt"]
    search_space: dict[str, SearchDimension]
    fixed_params: dict[str, Any] = Field(default_factory=dict)
    max_evals: int = Field(default=8, ge=1)
    early_stop_rounds: int = Field(default=5, ge=1)
    seed: int = 42
    split: TimeSplit
    numeric_features: list[Identifier]
    categorical_features: list[Identifier] = Field(default_factory=list)
    text_feature_table: str | None = None
    decision_threshold: float = Field(default=0.5, gt=0, lt=1)
    gate: Gate = Gate()


class Scoring(_Strict):
    """Where batch predictions go and the analyst view joining them to the entity table."""

    table: Identifier
    view: Identifier
    entity_table: str
    entity_columns: list[Identifier] = Field(default_factory=list)

    @field_validator("entity_table")
    @classmethod
    def _entity_table_is_reference(cls, value: str) -> str:
        check_table_reference(value)
        return value


class RetrainingPolicy(_Strict):
    """When the monitoring job asks for a new model, and when it only alerts.

    The clauses: share of drifted features above `max_drifted_share`, prediction PSI above
    `max_prediction_psi`, AUC-ROC below `min_auc_roc` for `auc_windows` consecutive labelled windows.
    Unset clauses never fire. A drift clause retrains or only alerts (`on_drift`); the quality clause
    always asks to retrain. A retrain is held back (the decision says why) when no label newer than the
    champion's training window exists (`require_new_labels`: a retrain on the same labels refits the
    same model) or when the last retrain is fewer than `cooldown_days` old.
    """

    max_drifted_share: float | None = Field(default=None, ge=0, le=1)
    max_prediction_psi: float | None = Field(default=None, gt=0)
    min_auc_roc: float | None = Field(default=None, ge=0, le=1)
    auc_windows: int = Field(default=2, ge=1)
    on_drift: Literal["retrain", "alert"] = "retrain"
    require_new_labels: bool = True
    cooldown_days: int = Field(default=0, ge=0)


class FeatureDrift(_Strict):
    """One feature's drift decision: `decides: false` records its statistics without counting it in the
    drifted share (a feature that drifts by construction, such as an age or a time since); `threshold`
    replaces the deciding test's threshold for this feature."""

    decides: bool = True
    threshold: float | None = Field(default=None, ge=0)


class Monitoring(_Strict):
    """Drift of features and predictions against the champion's training set, and quality once labels arrive.

    The first test of each list decides whether a column drifted; the others are recorded beside it.
    `thresholds` are drift-if-at-least for distances (psi, jensenshannon) and drift-if-below for
    p-values (ks, chisquare), as Evidently reads them.
    """

    drift_table: Identifier = "drift_metrics"
    quality_table: Identifier = "model_quality"
    decisions_table: Identifier = "retraining_decisions"
    reference_table: Identifier = "monitoring_reference"
    numeric_tests: list[Literal["psi", "ks", "jensenshannon"]] = Field(default=["psi", "ks"], min_length=1)
    categorical_tests: list[Literal["jensenshannon", "chisquare", "psi"]] = Field(
        default=["jensenshannon", "chisquare"], min_length=1
    )
    thresholds: dict[Literal["psi", "ks", "jensenshannon", "chisquare"], float] = Field(
        default={"psi": 0.2, "ks": 0.05, "jensenshannon": 0.1, "chisquare": 0.05}
    )
    report_sample_rows: int = Field(default=5000, ge=100)
    retraining: RetrainingPolicy = RetrainingPolicy()
    features: dict[str, FeatureDrift] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_test_has_a_threshold(self) -> Monitoring:
        missing = sorted(set(self.numeric_tests + self.categorical_tests) - set(self.thresholds))
        if missing:
            raise ValueError(f"thresholds has no value for {', '.join(missing)}")
        return self

    @field_validator("features")
    @classmethod
    def _feature_names_are_identifiers(cls, value: dict[str, FeatureDrift]) -> dict[str, FeatureDrift]:
        for name in value:
            check_identifier(name)
        return value


class UseCase(_Strict):
    """A data set: its feeds, how to generate demo data, its gold tables, features, training and scoring."""

    name: Identifier
    description: str = ""
    generator: str
    sources: dict[str, Source]
    gold: dict[str, GoldTable] = Field(default_factory=dict)
    features: Features | None = None
    training: Training | None = None
    scoring: Scoring | None = None
    monitoring: Monitoring | None = None

    @field_validator("generator")
    @classmethod
    def _generator_exists(cls, value: str) -> str:
        resolve_callable(value)
        return value

    @field_validator("sources", "gold")
    @classmethod
    def _table_names_are_identifiers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            check_identifier(name)
        return value

    @model_validator(mode="after")
    def _gold_inputs_exist(self) -> UseCase:
        for table_name, table in self.gold.items():
            for input_name in table.inputs:
                if input_name not in self.sources:
                    raise ValueError(f"gold table '{table_name}' reads '{input_name}', which is not a source")
        if self.features:
            labels = [self.features.labels] if self.features.labels else []
            owners = [(n, t.sources) for n, t in self.features.tables.items()]
            owners += [("labels", label.sources) for label in labels] + [("entities", [self.features.entities])]
            for owner, references in owners:
                for reference in references:
                    self._check_declared(owner, reference)
        return self

    @model_validator(mode="after")
    def _training_uses_declared_features(self) -> UseCase:
        if self.monitoring is not None and (self.scoring is None or self.training is None):
            raise ValueError("monitoring needs 'training' and 'scoring' sections: it watches the champion")
        if self.training is None:
            return self
        if self.features is None or self.features.labels is None:
            raise ValueError("training needs a 'features' section with labels")
        text_table = self.training.text_feature_table
        if text_table and (text_table not in self.features.tables or not self.features.tables[text_table].text):
            raise ValueError(f"training.text_feature_table '{text_table}' is not a feature table with a text pipeline")
        if self.monitoring is not None:
            known = {*self.training.numeric_features, *self.training.categorical_features}
            unknown = sorted(set(self.monitoring.features) - known)
            if unknown:
                raise ValueError(
                    f"monitoring.features names {', '.join(unknown)}: not a numeric or categorical training feature"
                )
        return self

    def _check_declared(self, owner: str, reference: str) -> None:
        layer, name = check_table_reference(reference)
        declared = {
            "bronze": self.sources,
            "silver": self.sources,
            "gold": self.gold,
            "features": self.features.tables if self.features else {},
        }[layer]
        if name not in declared:
            raise ValueError(f"'{owner}' reads {reference}, but no {layer} table '{name}' is declared in this use case")


class Tracking(_Strict):
    """Where MLflow tracks runs and registers models.

    Unset, runs go to an embedded SQLite store under LAKEFORGE_HOME (no server). Set `tracking_uri`
    to an `http://` MLflow server or `databricks`; `registry_uri` `databricks-uc` registers models
    in Unity Catalog as `catalog.schema.model`.
    """

    tracking_uri: str | None = None
    registry_uri: str | None = None
    model_schema: str | None = None


class SparkSettings(_Strict):
    """How to get a SparkSession in this environment."""

    mode: Literal["local", "cluster", "databricks"]
    master: str | None = None
    conf: dict[str, str] = Field(default_factory=dict)


class Schemas(_Strict):
    bronze: Identifier = "bronze"
    silver: Identifier = "silver"
    gold: Identifier = "gold"
    features: Identifier = "features"
    ops: Identifier = "ops"


class Paths(_Strict):
    """Folders; relative ones are resolved under LAKEFORGE_HOME."""

    landing: str = "landing"
    checkpoints: str = "checkpoints"
    data_docs: str = "reports/data_docs"
    gx_project: str = "gx"
    warehouse: str = "warehouse"
    metastore: str = "metastore"
    artifacts: str = "artifacts"
    mlflow: str = "mlflow"
    reports: str = "reports"


class Retraining(_Strict):
    """What the monitoring job does when the policy fires.

    `local` runs training and the gate in the same process; `record` only records the decision (an
    Airflow DAG branches on it); `databricks` triggers the bundle's training job through the Jobs
    API, its id from `training_job_id` or the environment variable named by `training_job_id_env`.
    """

    trigger: Literal["local", "record", "databricks"] = "local"
    training_job_id: int | None = None
    training_job_id_env: str = "LAKEFORGE_TRAINING_JOB_ID"
    wait: bool = True
    timeout_minutes: int = Field(default=120, ge=1)


class Environment(_Strict):
    """Where the jobs run: Spark settings, catalog and schema names, paths."""

    name: str
    spark: SparkSettings
    catalog: Identifier | None = None
    schemas: Schemas = Schemas()
    paths: Paths = Paths()
    tracking: Tracking = Tracking()
    retraining: Retraining = Retraining()

    def path(self, name: str) -> str:
        """An absolute path for one of `paths`, resolved under LAKEFORGE_HOME when relative."""
        raw = getattr(self.paths, name)
        if "://" in raw or raw.startswith("/"):
            return raw
        return str(lakeforge_home() / raw)


class Settings(_Strict):
    """A use case in an environment: everything a job needs."""

    use_case: UseCase
    env: Environment

    def table_ref(self, layer: str, name: str) -> TableRef:
        """A table of a layer as its parts: `catalog.schema.table` on Unity Catalog, else `schema.table`."""
        return TableRef(getattr(self.env.schemas, layer), check_identifier(name), self.env.catalog)

    def table(self, layer: str, name: str) -> str:
        """The quoted SQL name of a table of a layer, as a plain `str` (Delta's builders accept no subclass)."""
        return self.table_ref(layer, name).sql

    def schema(self, layer: str) -> str:
        schema = getattr(self.env.schemas, layer)
        return ".".join(f"`{part}`" for part in [self.env.catalog, schema] if part)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(str(path), "<file>", "the file does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "<file>", f"valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(str(path), "<root>", "a mapping of keys to values")
    return data


def _parse(model: type[BaseModel], data: dict[str, Any], path: Path, context: dict[str, Any] | None = None) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        mistakes = [(".".join(str(part) for part in error["loc"]) or "<root>", error["msg"]) for error in exc.errors()]
        (key, expected), *more = mistakes
        raise ConfigError(str(path), key, expected, more) from exc


SPARK_CONF_KEY = "spark.conf."


def apply_overrides(data: dict[str, Any], overrides: dict[str, str], path: Path) -> dict[str, Any]:
    """Set dotted keys (`catalog`, `tracking.model_schema`) to YAML-parsed values, as `--set` asks.

    Spark settings are named by their whole dotted name: `spark.conf.spark.sql.shuffle.partitions=2`
    sets the one key `spark.sql.shuffle.partitions` of `spark.conf`, to the string "2", as Spark reads it.
    """
    for key, raw in overrides.items():
        node = data
        if key.startswith(SPARK_CONF_KEY) and key != SPARK_CONF_KEY:
            parents, leaf, value = ["spark", "conf"], key.removeprefix(SPARK_CONF_KEY), raw
        else:
            *parents, leaf = key.split(".")
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} (--set)", key, f"a YAML value ({exc})") from exc
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{path} (--set)", key, f"'{part}' to be a mapping, it is {child!r}")
            node = child
        node[leaf] = value
    return data


def split_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """`["env.catalog=main", "use_case.training.max_evals=3"]` into per-file overrides."""
    split: dict[str, dict[str, str]] = {"env": {}, "use_case": {}}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        scope, dot, rest = key.partition(".")
        if not sep or not dot or scope not in split or not rest:
            raise ConfigError("--set", pair, "env.KEY=VALUE or use_case.KEY=VALUE")
        split[scope][rest] = value
    return split


def load_use_case(
    name: str,
    directory: Path | None = None,
    overrides: dict[str, str] | None = None,
    check_expectations: bool = True,
) -> UseCase:
    """Load and validate `conf/usecases/<name>.yml`.

    `check_expectations=False` skips building each expectation with Great Expectations (which
    imports it): for the steps that never validate. Everything else is validated either way.
    """
    check_identifier(name)
    path = (directory or conf_dir()) / "usecases" / f"{name}.yml"
    data = apply_overrides(_read_yaml(path), overrides or {}, path)
    return _parse(UseCase, data, path, {"check_expectations": check_expectations})


def load_environment(name: str, directory: Path | None = None, overrides: dict[str, str] | None = None) -> Environment:
    """Load and validate `conf/envs/<name>.yml`."""
    check_identifier(name)
    path = (directory or conf_dir()) / "envs" / f"{name}.yml"
    data = apply_overrides(_read_yaml(path), overrides or {}, path)
    data.setdefault("name", name)
    return _parse(Environment, data, path)


def load_settings(
    use_case: str,
    env: str,
    directory: Path | None = None,
    overrides: list[str] = (),
    check_expectations: bool = True,
) -> Settings:
    """Load a use case and an environment overlay together, with `--set` overrides applied to each."""
    split = split_overrides(list(overrides))
    return Settings(
        use_case=load_use_case(use_case, directory, split["use_case"], check_expectations),
        env=load_environment(env, directory, split["env"]),
    )
