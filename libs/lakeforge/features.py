"""Feature transforms: trailing windows, the point-in-time (as-of) join, training and scoring sets.

Everything here takes and returns DataFrames; reading tables at recorded versions and writing
feature tables happens in `feature_store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakeforge.errors import FeatureDefinitionError

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class FeatureSource:
    """A feature table as the as-of join sees it: its rows, entity keys and timestamp key."""

    name: str
    rows: DataFrame
    entity: list[str]
    timestamp: str

    def feature_columns(self) -> list[str]:
        return [c for c in self.rows.columns if c not in self.entity and c != self.timestamp]


def end_of_day(day: Column) -> Column:
    """The instant a day's aggregates become known: midnight after it. Using it avoids same-day leakage."""
    return F.to_timestamp(F.date_add(day, 1))


def trailing_day_windows(
    events: DataFrame,
    entity: list[str],
    event_time: str,
    daily_metrics: dict[str, Column],
    windows_days: Sequence[int],
    recency: Sequence[str] = (),
    timestamp: str = "feature_ts",
) -> DataFrame:
    """One row per entity and active day: each daily metric summed over trailing windows of whole days.

    `daily_metrics` are aggregate expressions evaluated per entity and day (for example
    `F.count("*")`); each becomes `<name>_<w>d` for every window `w`, the sum over the `w` days
    ending with that day. For each metric named in `recency`, `days_since_<name>` counts the days
    since it was last positive within the longest window (null before that), so an incremental run
    that reads only the longest window of history computes the same values as a full one. The
    row's timestamp is the end of the day, when its values are known.
    """
    daily = events.groupBy(*entity, F.to_date(event_time).alias("_day")).agg(
        *[expression.alias(name) for name, expression in daily_metrics.items()]
    )
    day_number = F.unix_date("_day")
    by_day = Window.partitionBy(*entity).orderBy(day_number)
    rolled = [
        F.sum(name).over(by_day.rangeBetween(1 - days, 0)).alias(f"{name}_{days}d")
        for name in daily_metrics
        for days in windows_days
    ]
    longest = by_day.rangeBetween(1 - max(windows_days), 0)
    since = [
        (day_number - F.max(F.when(F.col(name) > 0, day_number)).over(longest)).alias(f"days_since_{name}")
        for name in recency
    ]
    return daily.select(*entity, end_of_day(F.col("_day")).alias(timestamp), *rolled, *since)


def trailing_day_text(
    events: DataFrame,
    entity: list[str],
    event_time: str,
    text: Column,
    window_days: int,
    output: str,
    timestamp: str = "feature_ts",
) -> DataFrame:
    """One row per entity and active day: the trailing `window_days` days of texts in time order, space-joined."""
    # Sorted by time (then text), so the joined text does not depend on how Spark split the rows.
    in_order = F.array_sort(F.collect_list(F.struct(F.col(event_time).alias("t"), text.alias("text"))))
    daily = events.groupBy(*entity, F.to_date(event_time).alias("_day")).agg(
        F.transform(in_order, lambda item: item["text"]).alias("_texts")
    )
    window = Window.partitionBy(*entity).orderBy(F.unix_date("_day")).rangeBetween(1 - window_days, 0)
    return daily.select(
        *entity,
        end_of_day(F.col("_day")).alias(timestamp),
        F.concat_ws(" ", F.flatten(F.collect_list("_texts").over(window))).alias(output),
    )


def duplicate_keys(rows: DataFrame, keys: list[str]) -> DataFrame:
    """Key values that occur more than once: a feature table holds one row per entity and timestamp."""
    return rows.groupBy(*keys).count().where(F.col("count") > 1)


def as_of_join(spine: DataFrame, features: FeatureSource, spine_time: str) -> DataFrame:
    """Attach to every spine row the latest feature row of its entity at or before the spine time.

    A feature row stamped after the spine time is never used (no leakage); one stamped exactly at
    it is. Spine rows without an earlier feature row get nulls. Implemented as one shuffle: spine
    and feature rows are unioned, sorted per entity by time (feature rows first on ties), and each
    spine row takes the last feature row seen; no collect, no Python UDF. Adds
    `<table>_age_days`, how old the feature row was at the spine time.
    """
    columns = features.feature_columns()
    clashes = sorted(set(columns) & set(spine.columns))
    if clashes:
        raise FeatureDefinitionError(f"feature table {features.name} has columns {clashes} that the spine already has")
    missing = [c for c in features.entity if c not in spine.columns]
    if missing:
        raise FeatureDefinitionError(f"the spine lacks entity columns {missing} of feature table {features.name}")
    feature_struct = F.struct(F.col(features.timestamp).alias("_feature_ts"), *columns)
    spine_struct = F.struct(*[F.col(c) for c in spine.columns])
    spine_rows = spine.select(
        *features.entity,
        F.col(spine_time).cast("timestamp").alias("_t"),
        F.lit(1).alias("_is_spine"),
        spine_struct.alias("_spine"),
        F.lit(None).alias("_feature"),
    )
    feature_rows = features.rows.select(
        *features.entity,
        F.col(features.timestamp).cast("timestamp").alias("_t"),
        F.lit(0).alias("_is_spine"),
        F.lit(None).alias("_spine"),
        feature_struct.alias("_feature"),
    )
    aligned = spine_rows.withColumn("_feature", F.col("_feature").cast(feature_rows.schema["_feature"].dataType))
    feature_rows = feature_rows.withColumn("_spine", F.col("_spine").cast(spine_rows.schema["_spine"].dataType))
    latest_first = Window.partitionBy(*features.entity).orderBy("_t", "_is_spine")
    latest = F.last("_feature", ignorenulls=True).over(latest_first.rowsBetween(Window.unboundedPreceding, 0))
    matched = aligned.unionByName(feature_rows).withColumn("_match", latest).where(F.col("_is_spine") == 1)
    age_days = (F.unix_timestamp("_t") - F.unix_timestamp("_match._feature_ts")) / SECONDS_PER_DAY
    return matched.select(
        "_spine.*",
        *[F.col(f"_match.{c}").alias(c) for c in columns],
        age_days.alias(f"{features.name}_age_days"),
    )


def build_training_set(labels: DataFrame, label_time: str, feature_sources: Sequence[FeatureSource]) -> DataFrame:
    """Join labels (entity, label time, label) to every feature table as of the label time."""
    joined = labels
    for source in feature_sources:
        joined = as_of_join(joined, source, label_time)
    return joined


def build_scoring_set(
    entities: DataFrame, as_of: Column, as_of_column: str, feature_sources: Sequence[FeatureSource]
) -> DataFrame:
    """The feature vector of every entity as of one instant, through the same join as training."""
    return build_training_set(entities.withColumn(as_of_column, as_of), as_of_column, feature_sources)
