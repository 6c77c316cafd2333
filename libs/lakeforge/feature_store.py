"""Feature tables on Delta: materialize them with lineage, list them, and look features up point in time.

The features job computes every feature table the use case declares, MERGEs the new time slice (a
full run replaces the table in one transaction), records lineage (source tables and the Delta
versions read, code version, config hash, time window, refresh time) as table properties and in
the `feature_registry` table, fits and saves the text pipeline (a text feature table stores the
TF-IDF vectors it computes, not the text), and writes the label table.
Training (`training_set`) and scoring (`scoring_set`) go through the same as-of join, so an entity's
features at a time are the same on both paths.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass, field

from pyspark.errors import AnalysisException
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeforge import tables, transforms
from lakeforge.config import Features, FeatureTable, Settings, check_table_reference
from lakeforge.errors import FeatureDefinitionError, LakeforgeError, TableNotFound
from lakeforge.features import FeatureSource, build_scoring_set, build_training_set, duplicate_keys
from lakeforge.provenance import code_version
from lakeforge.text import fit_text_pipeline, vectorize

log = logging.getLogger(__name__)

REGISTRY_TABLE = "feature_registry"
PROPERTY = "lakeforge.{}"

REGISTRY_SCHEMA = T.StructType(
    [
        T.StructField("feature_table", T.StringType()),
        T.StructField("table_name", T.StringType()),
        T.StructField("mode", T.StringType()),
        T.StructField("entity", T.ArrayType(T.StringType())),
        T.StructField("timestamp_key", T.StringType()),
        T.StructField("window_start", T.TimestampType()),
        T.StructField("window_end", T.TimestampType()),
        T.StructField("rows_written", T.LongType()),
        T.StructField("source_versions", T.MapType(T.StringType(), T.LongType())),
        T.StructField("code_version", T.StringType()),
        T.StructField("config_hash", T.StringType()),
        T.StructField("text_pipeline", T.StringType()),
        T.StructField("max_age_hours", T.DoubleType()),
        T.StructField("refreshed_at", T.TimestampType()),
    ]
)


@dataclass(frozen=True)
class Refresh:
    """What one features run wrote to one feature table; one row of the feature registry."""

    feature_table: str
    table_name: str
    mode: str
    entity: list[str]
    timestamp_key: str
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    rows_written: int
    source_versions: dict[str, int]
    code_version: str
    config_hash: str
    text_pipeline: str | None
    max_age_hours: float
    refreshed_at: dt.datetime


@dataclass(frozen=True)
class TrainingSet:
    """Labels joined point in time to every feature table, and the Delta versions it was built from."""

    rows: DataFrame
    entity: list[str]
    timestamp: str
    label: str
    versions: dict[str, int] = field(default_factory=dict)


def _features(settings: Settings) -> Features:
    if settings.use_case.features is None:
        raise LakeforgeError(f"use case '{settings.use_case.name}' declares no features: add a 'features' section")
    return settings.use_case.features


def source_table(settings: Settings, reference: str) -> str:
    """The qualified name of a `layer.table` reference from config."""
    layer, name = check_table_reference(reference)
    return settings.table(layer, name)


def check_sources_exist(spark: SparkSession, settings: Settings) -> None:
    """Fail before any write when a table the features job reads does not exist."""
    features = _features(settings)
    produced = {f"features.{name}" for name in features.tables}
    wanted = {ref: owner for owner, table in features.tables.items() for ref in table.sources}
    if features.labels:
        wanted.update(dict.fromkeys(features.labels.sources, "labels"))
    missing = [
        f"{source_table(settings, ref)} (read by {owner})"
        for ref, owner in sorted(wanted.items())
        if ref not in produced and not tables.table_exists(spark, source_table(settings, ref))
    ]
    if missing:
        raise TableNotFound(f"the features job reads tables that do not exist yet: {', '.join(missing)}")


def run(spark: SparkSession, settings: Settings, full: bool = False) -> list[Refresh]:
    """Refresh every feature table (incrementally unless `full`), then the label table."""
    features = _features(settings)
    check_sources_exist(spark, settings)
    tables.ensure_schema(spark, settings.schema("features"))
    tables.ensure_schema(spark, settings.schema("ops"))
    refreshes = [materialize(spark, settings, name, table, full) for name, table in features.tables.items()]
    if features.labels:
        write_labels(spark, settings)
    return refreshes


SINCE = "_recompute_since"


def changed_entities(
    spark: SparkSession, settings: Settings, table: FeatureTable, recorded: dict[str, int], versions: dict[str, int]
) -> DataFrame | None:
    """Entities whose source rows changed since the versions the last refresh read, each with the
    earliest event time among those changes (null: recompute all of that entity's history).

    Read from the sources' change data feeds, so late updates to old events are found, not only new
    days. None means an incremental refresh is not possible (a source without a change feed for that
    range, or whose rows lack the entity keys): the caller recomputes everything.
    """
    changes = []
    for reference in table.sources:
        name = check_table_reference(reference)[1]
        source = source_table(settings, reference)
        start = recorded.get(tables.plain_name(source))
        if start is None:
            return None
        if versions[reference] == start:
            continue
        try:
            rows = tables.read_changes(spark, source, start + 1, versions[reference])
            rows.schema  # noqa: B018 - resolving the plan is what fails when the feed is missing
        except AnalysisException as exc:
            log.warning("features: no change feed for %s since version %d (%s): full refresh", source, start, exc)
            return None
        if any(key not in rows.columns for key in table.entity):
            return None
        event_time = F.col(table.time_columns[name]) if name in table.time_columns else F.lit(None)
        changes.append(rows.select(*table.entity, event_time.cast("timestamp").alias(SINCE)))
    if not changes:
        return spark.createDataFrame([], f"{', '.join(f'`{k}` string' for k in table.entity)}, {SINCE} timestamp")
    union = changes[0]
    for more in changes[1:]:
        union = union.unionByName(more)
    whole_history = F.max(F.col(SINCE).isNull().cast("int")) == 1
    return union.groupBy(*table.entity).agg(F.when(whole_history, None).otherwise(F.min(SINCE)).alias(SINCE))


def _read_inputs(
    spark: SparkSession,
    settings: Settings,
    table: FeatureTable,
    versions: dict[str, int],
    changed: DataFrame | None,
) -> dict[str, DataFrame]:
    """Each source at the version recorded for this refresh; for an incremental one, only the changed
    entities' rows, from `lookback_days` before their earliest change."""
    inputs = {}
    for reference in table.sources:
        name = check_table_reference(reference)[1]
        rows = tables.read_table(spark, source_table(settings, reference), versions[reference])
        if changed is not None:
            rows = (
                rows.join(F.broadcast(changed), table.entity, "left_semi")
                if name not in table.time_columns
                else (
                    rows.join(F.broadcast(changed), table.entity)
                    .where(
                        F.col(SINCE).isNull()
                        | (
                            F.col(table.time_columns[name])
                            >= F.col(SINCE) - F.make_interval(days=F.lit(table.lookback_days))
                        )
                    )
                    .drop(SINCE)
                )
            )
        inputs[name] = rows
    return inputs


def compute_feature_rows(inputs: dict[str, DataFrame], name: str, table: FeatureTable) -> DataFrame:
    """Run the table's transform and check it returned what the config declares."""
    rows = transforms.compute(table, inputs)
    missing = [c for c in [*table.entity, table.timestamp] if c not in rows.columns]
    if missing:
        raise FeatureDefinitionError(f"{table.computed_by} for feature table {name} returned no column(s) {missing}")
    if table.text and table.text.column not in rows.columns:
        raise FeatureDefinitionError(f"feature table {name} declares text column {table.text.column}, not returned")
    return rows


def _only_changed(rows: DataFrame, table: FeatureTable, changed: DataFrame) -> DataFrame:
    """Keep the rows from each changed entity's earliest change on: older rows did not change."""
    return (
        rows.join(F.broadcast(changed), table.entity)
        .where(F.col(SINCE).isNull() | (F.col(table.timestamp) >= F.col(SINCE)))
        .drop(SINCE)
    )


def materialize(spark: SparkSession, settings: Settings, name: str, table: FeatureTable, full: bool) -> Refresh:
    """Compute one feature table (only what changed, unless `full`) and write it with its lineage."""
    started = time.monotonic()
    target = settings.table("features", name)
    keys = [*table.entity, table.timestamp]
    properties = tables.table_properties(spark, target)
    versions = {ref: tables.table_version(spark, source_table(settings, ref)) for ref in table.sources}
    changed = None
    if not full and properties.get(PROPERTY.format("config_hash")) == table.config_hash():
        recorded = json.loads(properties.get(PROPERTY.format("sources"), "{}"))
        changed = changed_entities(spark, settings, table, recorded, versions)
    incremental = changed is not None
    if incremental:
        changed = changed.persist()
    rows = compute_feature_rows(_read_inputs(spark, settings, table, versions, changed), name, table)
    if incremental:
        rows = _only_changed(rows, table, changed)
    rows = rows.persist()
    try:
        duplicates = duplicate_keys(rows, keys).limit(3).collect()
        if duplicates:
            raise FeatureDefinitionError(
                f"{table.computed_by} returned more than one row per {keys} for feature table {name}, "
                f"for example {[row.asDict() for row in duplicates]}"
            )
        summary = rows.agg(F.count("*"), F.min(table.timestamp), F.max(table.timestamp)).first()
        text_pipeline = properties.get(PROPERTY.format("text_pipeline")) if incremental else None
        stored = rows
        if table.text:
            if not text_pipeline:
                text_pipeline = _save_text_pipeline(settings, name, table, rows)
            stored = vectorize(PipelineModel.load(text_pipeline), rows, table.text)
        if incremental:
            tables.upsert(stored, target, keys)
        else:
            tables.overwrite(stored, target)
    finally:
        rows.unpersist()
        if changed is not None:
            changed.unpersist()
    refresh = Refresh(
        feature_table=name,
        table_name=target,
        mode="incremental" if incremental else "full",
        entity=table.entity,
        timestamp_key=table.timestamp,
        window_start=summary[1],
        window_end=summary[2],
        rows_written=summary[0],
        source_versions={tables.plain_name(source_table(settings, ref)): version for ref, version in versions.items()},
        code_version=code_version(),
        config_hash=table.config_hash(),
        text_pipeline=text_pipeline,
        max_age_hours=table.max_age_hours,
        refreshed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    tables.set_properties(spark, target, lineage_properties(refresh, settings))
    tables.append(spark.createDataFrame([asdict(refresh)], REGISTRY_SCHEMA), settings.table("ops", REGISTRY_TABLE))
    log.info(
        "features %s: %s refresh of %d rows in %.1fs",
        name,
        refresh.mode,
        refresh.rows_written,
        time.monotonic() - started,
    )
    return refresh


def lineage_properties(refresh: Refresh, settings: Settings) -> dict[str, str]:
    """Lineage and freshness as Delta table properties (`lakeforge.*`)."""
    values = {
        "entity": ",".join(refresh.entity),
        "timestamp_key": refresh.timestamp_key,
        "sources": json.dumps(refresh.source_versions, sort_keys=True),
        "code_version": refresh.code_version,
        "config_hash": refresh.config_hash,
        "window_start": _iso(refresh.window_start),
        "window_end": _iso(refresh.window_end),
        "refreshed_at": _iso(refresh.refreshed_at),
        "max_age_hours": str(refresh.max_age_hours),
        "text_pipeline": refresh.text_pipeline or "",
    }
    if refresh.window_start is None:  # nothing changed: the table still covers the window it covered
        del values["window_start"], values["window_end"]
    return {PROPERTY.format(key): value for key, value in values.items()}


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat() if value else ""


def _save_text_pipeline(settings: Settings, name: str, table: FeatureTable, rows: DataFrame) -> str:
    started = time.monotonic()
    model = fit_text_pipeline(rows, table.text)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    path = f"{settings.env.path('artifacts')}/features/{settings.use_case.name}/{name}/text_pipeline/{stamp}"
    model.write().overwrite().save(path)
    log.info("features %s: text pipeline fitted and saved to %s in %.1fs", name, path, time.monotonic() - started)
    return path


def text_pipeline_path(spark: SparkSession, settings: Settings, name: str) -> str:
    """Where the fitted text pipeline recorded on a feature table lives: apply it, never refit it."""
    path = tables.table_properties(spark, settings.table("features", name)).get(PROPERTY.format("text_pipeline"))
    if not path:
        raise FeatureDefinitionError(f"feature table {name} records no fitted text pipeline: run the features job")
    return path


def write_labels(spark: SparkSession, settings: Settings) -> None:
    """Recompute the label table from its sources, replacing it in one transaction."""
    labels = _features(settings).labels
    target = settings.table("gold", labels.table)
    inputs = {
        check_table_reference(ref)[1]: tables.read_table(spark, source_table(settings, ref)) for ref in labels.sources
    }
    rows = transforms.compute(labels, inputs)
    # Labels keyed by an event carry the entity keys the feature tables are joined on.
    keys = with_entity_keys(settings, labels.entity)
    missing = [c for c in [*keys, labels.timestamp, labels.label] if c not in rows.columns]
    if missing:
        raise FeatureDefinitionError(f"{labels.computed_by} returned no column(s) {missing} for the label table")
    tables.overwrite(rows.select(*keys, labels.timestamp, labels.label), target)


def feature_sources(
    spark: SparkSession, settings: Settings, versions: dict[str, int] | None = None
) -> tuple[list[FeatureSource], dict[str, int]]:
    """Every feature table as of `versions` (Delta time travel) or its latest version, and the versions used."""
    sources, used = [], {}
    for name, table in _features(settings).tables.items():
        table_name = settings.table("features", name)
        used[table_name] = tables.version_or_latest(spark, table_name, versions)
        rows = tables.read_table(spark, table_name, used[table_name])
        sources.append(FeatureSource(name, rows, table.entity, table.timestamp))
    return sources, used


def training_set(spark: SparkSession, settings: Settings, versions: dict[str, int] | None = None) -> TrainingSet:
    """Labels joined point in time to every feature table, at the given Delta versions or the latest."""
    labels = _features(settings).labels
    if labels is None:
        raise LakeforgeError(f"use case '{settings.use_case.name}' declares no labels: add features.labels")
    labels_table = settings.table("gold", labels.table)
    label_version = tables.version_or_latest(spark, labels_table, versions)
    label_rows = tables.read_table(spark, labels_table, label_version)
    sources, used = feature_sources(spark, settings, versions)
    rows = build_training_set(label_rows, labels.timestamp, sources)
    return TrainingSet(rows, labels.entity, labels.timestamp, labels.label, {labels_table: label_version, **used})


def entity_keys(settings: Settings) -> list[str]:
    """The entity key columns of every feature table together: what a scored row is keyed by."""
    return sorted({key for table in _features(settings).tables.values() for key in table.entity})


def with_entity_keys(settings: Settings, keys: list[str]) -> list[str]:
    """`keys` (an event's key, say) followed by the feature tables' entity keys not among them: the columns a
    row needs to be joined to every feature table."""
    return [*keys, *[key for key in entity_keys(settings) if key not in keys]]


def scoring_set(
    spark: SparkSession, settings: Settings, as_of: dt.datetime, versions: dict[str, int] | None = None
) -> tuple[DataFrame, dict[str, int]]:
    """Every entity's features as of one instant, through the same lookup as training."""
    features = _features(settings)
    entity = entity_keys(settings)
    entities = tables.read_table(spark, source_table(settings, features.entities)).select(*entity).distinct()
    sources, used = feature_sources(spark, settings, versions)
    return build_scoring_set(entities, F.lit(as_of).cast("timestamp"), spine_time(settings), sources), used


def spine_time(settings: Settings) -> str:
    """The name of the time a feature vector is looked up at: the labels' timestamp, as in training."""
    labels = _features(settings).labels
    return labels.timestamp if labels else "as_of"


def prediction_keys(settings: Settings) -> list[str]:
    """What a prediction is keyed by: the event key when scoring events, else the entity keys."""
    scoring = settings.use_case.scoring
    return list(scoring.event_key) if scoring is not None and scoring.mode == "events" else entity_keys(settings)


def events_on(spark: SparkSession, settings: Settings, scoring_date: dt.date) -> DataFrame:
    """The events of one date (by their event time), one row per event key, with their entity keys and time."""
    scoring = settings.use_case.scoring
    keys = with_entity_keys(settings, scoring.event_key)
    events = tables.read_table(spark, source_table(settings, scoring.events))
    missing = [column for column in [*keys, scoring.event_time] if column not in events.columns]
    if missing:
        raise FeatureDefinitionError(f"the events table {scoring.events} has no column(s) {missing}")
    return (
        events.where(F.to_date(scoring.event_time) == F.lit(scoring_date))
        .select(*keys, F.col(scoring.event_time).cast("timestamp").alias(spine_time(settings)))
        .dropDuplicates(list(scoring.event_key))
    )


def newest_event_date(spark: SparkSession, settings: Settings) -> dt.date | None:
    scoring = settings.use_case.scoring
    events = tables.read_table(spark, source_table(settings, scoring.events))
    return events.agg(F.max(F.to_date(scoring.event_time))).first()[0]


def rows_to_score(
    spark: SparkSession, settings: Settings, scoring_date: dt.date, versions: dict[str, int] | None = None
) -> tuple[DataFrame, dict[str, int]]:
    """What a scoring run scores, with its features: every entity as of the start of the date, or (events
    mode) every event of the date as of its own time, through the as-of join training uses."""
    scoring = settings.use_case.scoring
    if scoring is None or scoring.mode == "entities":
        return scoring_set(spark, settings, dt.datetime.combine(scoring_date, dt.time()), versions)
    sources, used = feature_sources(spark, settings, versions)
    return build_training_set(events_on(spark, settings, scoring_date), spine_time(settings), sources), used


def registry(spark: SparkSession, settings: Settings) -> DataFrame:
    """Every refresh ever recorded, newest first."""
    return tables.read_table(spark, settings.table("ops", REGISTRY_TABLE)).orderBy(F.col("refreshed_at").desc())


@dataclass(frozen=True)
class FeatureTableStatus:
    """A feature table's latest refresh and whether it is older than its configured max age."""

    name: str
    table_name: str
    properties: dict[str, str]
    age_hours: float | None
    max_age_hours: float

    @property
    def stale(self) -> bool:
        return self.age_hours is None or self.age_hours > self.max_age_hours


def status(spark: SparkSession, settings: Settings, name: str, now: dt.datetime | None = None) -> FeatureTableStatus:
    """Lineage and freshness of one feature table, read from its properties."""
    features = _features(settings)
    if name not in features.tables:
        raise LakeforgeError(
            f"no feature table '{name}' in use case '{settings.use_case.name}': {sorted(features.tables)}"
        )
    table_name = settings.table("features", name)
    properties = {
        key.removeprefix("lakeforge."): value
        for key, value in tables.table_properties(spark, table_name).items()
        if key.startswith("lakeforge.")
    }
    refreshed = properties.get("refreshed_at")
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    age = (now - dt.datetime.fromisoformat(refreshed)).total_seconds() / 3600 if refreshed else None
    return FeatureTableStatus(name, table_name, properties, age, features.tables[name].max_age_hours)


def statuses(spark: SparkSession, settings: Settings) -> list[FeatureTableStatus]:
    return [status(spark, settings, name) for name in _features(settings).tables]
