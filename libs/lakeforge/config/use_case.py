"""The use-case schema: a data set's feeds, gold tables, features, training, scoring and monitoring.

One YAML file per use case (`conf/usecases/<name>.yml`) is parsed into `UseCase`; a wrong or missing
key fails here, before Spark starts, with the key and what was expected (`loading` adds the file).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lakeforge.config.fields import (
    CallableReference,
    Identifier,
    KeyColumns,
    Strict,
    TableReference,
    check_sql,
    check_table_reference,
    check_transform_accepts,
)
from lakeforge.globs import GlobError, glob_regex

# `json`: a value that may be a JSON object or array, kept as its JSON text (any other type refuses one:
# silver quarantines the row as `cast_failed:<column>`).
SPARK_TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp", "json")
UNCAST_TYPES = ("string", "json")
ACTIONS = ("warn", "quarantine", "fail")
INGESTED_AT = "_ingested_at"  # bronze's ingest time, kept in silver


class Expectation(Strict):
    """One Great Expectations expectation on a silver table, with what to do when it fails.

    Config checks its shape only; whether Great Expectations knows the type and takes the arguments is
    checked by `validation.check_expectations` before a step that validates runs (importing GX costs
    seconds that the other steps do not pay).
    """

    type: str
    action: Literal["warn", "quarantine", "fail"]
    column: Identifier | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        """A stable, readable name used in quarantine reasons and result tables."""
        return f"{self.type}:{self.column}" if self.column else self.type


class Source(Strict):
    """A raw feed landing as files, and the typed silver table it becomes.

    Silver keeps the latest row per key: by `event_time` when the feed has one, else (a reference table
    such as a product list, sent whole now and then) by when it was ingested, the last file winning.
    """

    format: Literal["csv", "json"]
    key: KeyColumns
    event_time: Identifier | None = None
    # Which files under `<landing>/<use case>/<source>/` are this source's: a Hadoop glob (`*` within one
    # folder level, `{a,b}` alternatives). The default is the batch layout `generate-data` writes. Every
    # other file there is named in a warning on each run (`strict: true` fails the run instead).
    files: str = Field(default="*/part-*", min_length=1)
    # `multiline: true`: a CSV field in quotes may hold line breaks; a JSON file is one document (an array of
    # objects, or one object) over any number of lines, instead of one object per line.
    multiline: bool = False
    # What the files are encoded in. UTF-8 is checked (a line or field that is not valid UTF-8 lands with its
    # bytes kept, and silver quarantines it); the two single-byte code pages decode every byte.
    encoding: Literal["utf-8", "iso-8859-1", "windows-1252"] = "utf-8"
    # With `strict: true` a file that is not read (no pattern matches it, or it cannot be read) fails the
    # ingest step, after every readable file has landed; by default each is named in a warning.
    strict: bool = False
    columns: dict[Identifier, str]
    expectations: list[Expectation] = Field(default_factory=list)

    @field_validator("columns")
    @classmethod
    def _columns_are_typed(cls, value: dict[str, str]) -> dict[str, str]:
        for column, spark_type in value.items():
            if column.startswith("_"):
                raise ValueError(f"column '{column}' starts with '_', which is kept for lakeforge's own columns")
            if spark_type not in SPARK_TYPES:
                raise ValueError(f"column '{column}' has type '{spark_type}', expected one of {', '.join(SPARK_TYPES)}")
        return value

    @model_validator(mode="after")
    def _keys_and_time_are_columns(self) -> Source:
        for column in [*self.key, *([self.event_time] if self.event_time else [])]:
            if column not in self.columns:
                raise ValueError(f"'{column}' is used as key or event_time but is not in columns")
        for expectation in self.expectations:
            if expectation.column and expectation.column not in self.columns:
                raise ValueError(f"expectation {expectation.name} names column '{expectation.column}', not in columns")
        return self

    @field_validator("files")
    @classmethod
    def _files_stay_in_the_source_folder(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/") or "://" in value:
            raise ValueError(f"'{value}' must be a pattern relative to the source's landing folder")
        try:
            glob_regex(value)
        except GlobError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @property
    def latest_by(self) -> str:
        """The column that decides which row of a key is the latest: the event time, or the ingest time."""
        return self.event_time or INGESTED_AT


class Transformed(Strict):
    """Rows computed from named inputs: a Python function (`transform: package.module:function`, called with
    one DataFrame per input and `params` as keywords) or a Spark SQL query (`sql:`) that reads each input
    by its name and each of `params` as a named marker (`:horizon_days`). Both are checked on load."""

    transform: CallableReference | None = None
    sql: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    def input_names(self) -> list[str]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _computation_fits_its_inputs(self) -> Transformed:
        if (self.transform is None) == (self.sql is None):
            raise ValueError("give either 'transform' (a Python function) or 'sql' (a Spark SQL query), not both")
        if self.sql is not None:
            check_sql(self.sql, self.input_names(), self.params)
        else:
            check_transform_accepts(self.transform, self.input_names(), self.params)
        return self

    @property
    def computed_by(self) -> str:
        """What computes the rows, for messages: the function's reference, or `SQL`."""
        return self.transform or "SQL"


class GoldTable(Transformed):
    """An analyst-facing table computed from silver tables by a transform or a query."""

    inputs: list[Identifier]

    def input_names(self) -> list[str]:
        return list(self.inputs)


class TextPipeline(Strict):
    """A text column turned into TF-IDF vectors by a pipeline fitted once in the features job."""

    column: Identifier
    num_features: int = Field(default=4096, ge=16, le=1 << 20)
    min_doc_freq: int = Field(default=2, ge=0)
    ngrams: int = Field(default=2, ge=1, le=3)


class FeatureTable(Transformed):
    """A Delta feature table: entity keys, a timestamp key, its sources and the transform computing it.

    The transform (or query) reads one input per source (named after the table) plus `params`, and returns
    rows keyed by `entity` and `timestamp`. An incremental run recomputes only timestamps from the
    last one already written, reading `lookback_days` of history before it for the windows.
    """

    entity: KeyColumns
    timestamp: Identifier
    sources: list[TableReference] = Field(min_length=1)
    time_columns: dict[str, Identifier] = Field(default_factory=dict)
    lookback_days: int = Field(default=0, ge=0)
    max_age_hours: float = Field(default=36.0, gt=0)
    text: TextPipeline | None = None

    @model_validator(mode="after")
    def _time_columns_name_sources(self) -> FeatureTable:
        for name in self.time_columns:
            if name not in self.source_names():
                raise ValueError(f"time_columns names '{name}', which is not one of the sources {self.source_names()}")
        return self

    def source_names(self) -> list[str]:
        return [check_table_reference(reference)[1] for reference in self.sources]

    def input_names(self) -> list[str]:
        return self.source_names()

    def config_hash(self) -> str:
        """A short, stable hash of this table's definition: it changes when the computation does, or what
        is stored (a text table stores TF-IDF vectors since layout 2; a table written before is recomputed)."""
        definition = {**self.model_dump(), "layout": 2}
        if definition["sql"] is None:  # tables defined before `sql` existed keep their hash
            del definition["sql"]
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


class Labels(Transformed):
    """How the label table (entity, label time, label) is computed from source tables."""

    table: Identifier
    entity: KeyColumns
    timestamp: Identifier
    label: Identifier
    sources: list[TableReference]

    def input_names(self) -> list[str]:
        return [check_table_reference(reference)[1] for reference in self.sources]


class Features(Strict):
    """Feature tables of a use case and the labels a training set joins them to."""

    tables: dict[Identifier, FeatureTable]
    entities: TableReference
    labels: Labels | None = None


class SearchDimension(Strict):
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


class TimeSplit(Strict):
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


class Gate(Strict):
    """What a challenger must reach to become champion."""

    min_auc_roc: float = Field(default=0.5, ge=0, le=1)
    min_auc_pr: float = Field(default=0.0, ge=0, le=1)
    max_auc_drop: float = Field(default=0.01, ge=0, le=1)
    # Set, the challenger must beat the best single numeric feature (as a score) by this much in AUC-ROC;
    # unset, that baseline is measured and tagged on the version only.
    min_lift_over_baseline: float | None = Field(default=None, ge=-1, le=1)
    fail_on_reject: bool = False


class SingleNode(Strict):
    """The single-node engine: a scikit-learn learner on an in-memory sample, trials in parallel (SparkTrials)."""

    sample_rows: int = Field(default=200_000, ge=100)
    parallelism: int = Field(default=2, ge=1)


class Training(Strict):
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


class Scoring(Strict):
    """What a scoring run scores, where its predictions go, and the analyst view over them.

    `mode: entities` (default) scores every entity of `features.entities` as of the start of the scoring
    date, keyed by the entity. `mode: events` scores the rows of the `events` table whose `event_time`
    falls on the scoring date, each with its features as of its own time (the as-of join training uses,
    so the labels' timestamp must be the event time), keyed by `event_key`. The view joins predictions to
    `entity_table` (events mode: the events table unless set) and adds its `entity_columns`.
    """

    mode: Literal["entities", "events"] = "entities"
    table: Identifier
    view: Identifier
    entity_table: TableReference | None = None
    entity_columns: list[Identifier] = Field(default_factory=list)
    events: TableReference | None = None
    event_key: list[Identifier] = Field(default_factory=list)
    event_time: Identifier | None = None

    @model_validator(mode="after")
    def _mode_is_complete(self) -> Scoring:
        if self.mode == "entities":
            if self.entity_table is None:
                raise ValueError("scoring entities needs entity_table (the table the view joins predictions to)")
            given = [name for name in ("events", "event_time") if getattr(self, name)] + (
                ["event_key"] * bool(self.event_key)
            )
            if given:
                raise ValueError(f"{', '.join(given)} belong to mode: events")
        elif not (self.events and self.event_key and self.event_time):
            raise ValueError("mode: events needs events (a table), event_key (its key columns) and event_time")
        return self

    @property
    def view_table(self) -> str:
        """The table the view joins predictions to."""
        return self.entity_table or self.events


class RetrainingPolicy(Strict):
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


class FeatureDrift(Strict):
    """One feature's drift decision: `decides: false` records its statistics without counting it in the
    drifted share (a feature that drifts by construction, such as an age or a time since); `threshold`
    replaces the deciding test's threshold for this feature."""

    decides: bool = True
    threshold: float | None = Field(default=None, ge=0)


class Monitoring(Strict):
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
    features: dict[Identifier, FeatureDrift] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_test_has_a_threshold(self) -> Monitoring:
        missing = sorted(set(self.numeric_tests + self.categorical_tests) - set(self.thresholds))
        if missing:
            raise ValueError(f"thresholds has no value for {', '.join(missing)}")
        return self


class UseCase(Strict):
    """A data set: its feeds, how to generate demo data, its gold tables, features, training and scoring."""

    name: Identifier
    description: str = ""
    # Makes demo data for `generate-data` and `simulate`; a use case of real files needs none.
    generator: CallableReference | None = None
    sources: dict[Identifier, Source]
    gold: dict[Identifier, GoldTable] = Field(default_factory=dict)
    features: Features | None = None
    training: Training | None = None
    scoring: Scoring | None = None
    monitoring: Monitoring | None = None

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
            if self.scoring:
                owners.append(("scoring", [t for t in (self.scoring.entity_table, self.scoring.events) if t]))
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
        scoring, labels = self.scoring, self.features.labels
        if scoring is not None and scoring.mode == "events" and list(labels.entity) != list(scoring.event_key):
            raise ValueError(
                f"scoring mode events keys predictions by {scoring.event_key}: the labels must be keyed by it too "
                f"(labels.entity is {labels.entity}), with the event time as their timestamp"
            )
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
