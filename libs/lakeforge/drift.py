"""Drift statistics over full tables, computed in Spark with one pass over the data whatever the column count.

`value_counts` reads both sides once and counts every distinct value of every column per side
(one explode and one aggregation). Everything else works on that aggregate, which is persisted:
value ranges and distinct counts, equal-width bin counts, the Kolmogorov-Smirnov cumulative
counts (one window per column) and category counts. Only counts reach the driver, where numpy and
scipy turn them into statistics.

Binning follows Evidently 0.7 so verdicts can be cross-checked: a numeric column with more than
20 distinct reference values is cut into equal-width Sturges bins over reference and current
together; otherwise every distinct value is its own bucket. PSI replaces empty buckets by 1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from lakeforge.config import FeatureDrift

PSI_EMPTY = 1e-4
# Evidently bins a numeric column only when the reference has more distinct values than this.
MAX_DISCRETE_VALUES = 20
P_VALUE_TESTS = ("ks", "chisquare")


class NumericRange(NamedTuple):
    low: float | None
    high: float | None
    count: int
    reference_distinct: int


@dataclass(frozen=True)
class ColumnDrift:
    """One statistic of one column: drifted when a distance reaches its threshold or a p-value falls below it."""

    column: str
    statistic: str
    value: float
    threshold: float
    drifted: bool
    decides: bool
    reference_rows: int
    current_rows: int


def is_drift(statistic: str, value: float, threshold: float) -> bool:
    """Evidently's reading: p-values (ks, chisquare) drift at or below the threshold, distances at or above."""
    return value <= threshold if statistic in P_VALUE_TESTS else value >= threshold


def sturges_bins(rows: int) -> int:
    """numpy's 'sturges' bin count for `rows` values."""
    return int(math.ceil(math.log2(rows)) + 1) if rows > 0 else 1


def value_counts(reference: DataFrame, current: DataFrame, numeric: list[str], categorical: list[str]) -> DataFrame:
    """One pass over both sides: per column and distinct non-null value, the reference and current counts.

    Rows: `column`, `number` (numeric columns) or `category` (categorical ones), `ref`, `cur`.
    """
    columns = [*numeric, *categorical]
    tagged = reference.select(*columns, F.lit(1).alias("_ref")).unionByName(
        current.select(*columns, F.lit(0).alias("_ref"))
    )
    no_number, no_category = F.lit(None).cast("double"), F.lit(None).cast("string")
    cells = [
        F.struct(F.lit(c).alias("column"), F.col(c).cast("double").alias("number"), no_category.alias("category"))
        for c in numeric
    ]
    cells += [
        F.struct(F.lit(c).alias("column"), no_number.alias("number"), F.col(c).cast("string").alias("category"))
        for c in categorical
    ]
    return (
        tagged.select("_ref", F.explode(F.array(*cells)).alias("cell"))
        .where(F.col("cell.number").isNotNull() | F.col("cell.category").isNotNull())
        .groupBy("cell.column", "cell.number", "cell.category")
        .agg(F.sum("_ref").alias("ref"), F.sum(1 - F.col("_ref")).alias("cur"))
    )


def numeric_ranges(counts: DataFrame, columns: list[str]) -> dict[str, NumericRange]:
    """Min, max and non-null count over both sides, and the exact number of distinct reference values."""
    rows = (
        counts.where(F.col("column").isin(columns))
        .groupBy("column")
        .agg(
            F.min("number"),
            F.max("number"),
            F.sum(F.col("ref") + F.col("cur")),
            F.sum((F.col("ref") > 0).cast("long")),
        )
        .collect()
    )
    found = {r[0]: NumericRange(r[1], r[2], int(r[3]), int(r[4])) for r in rows}
    return {c: found.get(c, NumericRange(None, None, 0, 0)) for c in columns}


def binned_counts(counts: DataFrame, ranges: dict[str, NumericRange]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per column, the reference and current counts in equal-width Sturges bins over both sides together."""
    bins = {c: sturges_bins(r.count) for c, r in ranges.items()}
    index = None
    for column, (low, high, _, _) in ranges.items():
        if low is None:
            continue
        width = (high - low) / bins[column] if high > low else 1.0
        position = F.least(F.floor((F.col("number") - F.lit(low)) / F.lit(width)), F.lit(bins[column] - 1))
        index = (
            F.when(F.col("column") == column, position)
            if index is None
            else index.when(F.col("column") == column, position)
        )
    out = {c: (np.zeros(bins[c]), np.zeros(bins[c])) for c in ranges}
    if index is None:
        return out
    rows = (
        counts.where(F.col("column").isin(list(ranges)))
        .groupBy("column", index.cast("int").alias("bin"))
        .agg(F.sum("ref").alias("ref"), F.sum("cur").alias("cur"))
        .collect()
    )
    for row in rows:
        out[row["column"]][0][row["bin"]] += row["ref"]
        out[row["column"]][1][row["bin"]] += row["cur"]
    return out


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index with empty buckets set to 1e-4 (as Evidently)."""
    reference = reference_counts / reference_counts.sum()
    current = current_counts / current_counts.sum()
    reference = np.where(reference == 0, PSI_EMPTY, reference)
    current = np.where(current == 0, PSI_EMPTY, current)
    return float(np.sum((current - reference) * np.log(current / reference)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log), the square root of the divergence."""
    p = reference_counts / reference_counts.sum()
    q = current_counts / current_counts.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


def ks_statistics(counts: DataFrame, columns: list[str]) -> dict[str, tuple[float, int, int]]:
    """Exact two-sample Kolmogorov-Smirnov statistic D per numeric column, with both sample sizes.

    The two empirical CDFs are compared at every distinct value, one window partition per column.
    """
    by_value = Window.partitionBy("column").orderBy("number").rowsBetween(Window.unboundedPreceding, 0)
    whole = Window.partitionBy("column")
    cdfs = counts.where(F.col("column").isin(columns)).select(
        "column",
        # One side may have no value in a column: try_divide gives null there instead of failing (ANSI).
        F.try_divide(F.sum("ref").over(by_value), F.sum("ref").over(whole)).alias("ref_cdf"),
        F.try_divide(F.sum("cur").over(by_value), F.sum("cur").over(whole)).alias("cur_cdf"),
        F.sum("ref").over(whole).alias("n_ref"),
        F.sum("cur").over(whole).alias("n_cur"),
    )
    rows = cdfs.groupBy("column").agg(
        F.max(F.abs(F.col("ref_cdf") - F.col("cur_cdf"))).alias("d"), F.first("n_ref"), F.first("n_cur")
    )
    return {r[0]: (math.nan if r[1] is None else float(r[1]), int(r[2]), int(r[3])) for r in rows.collect()}


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided p-value of D, as scipy's `ks_2samp` computes it for large samples (asymptotic)."""
    from scipy.stats import kstwo

    effective = round(n_reference * n_current / (n_reference + n_current))
    return float(min(1.0, kstwo.sf(statistic, effective)))


def category_counts(counts: DataFrame, columns: list[str]) -> dict[str, tuple[list, np.ndarray, np.ndarray]]:
    """Per column, every value seen on either side (a category, or a number of a discrete numeric column)
    and its reference and current counts."""
    rows = counts.where(F.col("column").isin(columns)).collect()
    out: dict[str, tuple[list, np.ndarray, np.ndarray]] = {}
    for column in columns:
        found = sorted(
            (r["category"] if r["category"] is not None else r["number"], r["ref"], r["cur"])
            for r in rows
            if r["column"] == column
        )
        out[column] = (
            [v for v, _, _ in found],
            np.array([r for _, r, _ in found], float),
            np.array([c for _, _, c in found], float),
        )
    return out


def chi_square_p_value(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Chi-square goodness of fit of current against reference proportions (as Evidently's `chisquare`).

    A category absent from the reference makes the expected count zero: the p-value is 0 (drift).
    """
    from scipy.stats import chisquare

    expected = reference_counts / reference_counts.sum() * current_counts.sum()
    if np.any((expected == 0) & (current_counts > 0)):
        return 0.0
    keep = expected > 0
    return float(chisquare(current_counts[keep], expected[keep]).pvalue)


def _statistic(name: str, reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    if name == "psi":
        return psi(reference_counts, current_counts)
    if name == "jensenshannon":
        return jensen_shannon(reference_counts, current_counts)
    return chi_square_p_value(reference_counts, current_counts)


def compare(
    reference: DataFrame,
    current: DataFrame,
    numeric: list[str],
    categorical: list[str],
    numeric_tests: list[str],
    categorical_tests: list[str],
    thresholds: dict[str, float],
) -> list[ColumnDrift]:
    """Every test of every column, reference against current; the first test of each list decides.

    A column with values on one side only (a feature that stopped arriving, or a new one) drifts
    with a NaN value: no statistic is defined, and it is the strongest drift there is.
    """
    counts = value_counts(reference, current, numeric, categorical).persist()
    try:
        ranges = numeric_ranges(counts, numeric) if numeric else {}
        binned = [c for c in numeric if ranges[c].reference_distinct > MAX_DISCRETE_VALUES]
        discrete = [c for c in numeric if c not in binned]
        bins = binned_counts(counts, {c: ranges[c] for c in binned}) if binned and set(numeric_tests) - {"ks"} else {}
        ks = ks_statistics(counts, numeric) if numeric and "ks" in numeric_tests else {}
        counted = categorical + (discrete if set(numeric_tests) - {"ks"} else [])
        categories = category_counts(counts, counted) if counted else {}
    finally:
        counts.unpersist()
    results = []
    for column, tests in [(c, numeric_tests) for c in numeric] + [(c, categorical_tests) for c in categorical]:
        for position, test in enumerate(tests):
            if test == "ks":
                statistic, n_ref, n_cur = ks.get(column, (math.nan, 0, 0))
                value = ks_p_value(statistic, n_ref, n_cur) if n_ref and n_cur else math.nan
            else:
                ref_counts, cur_counts = bins[column] if column in bins else categories[column][1:]
                n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
                value = _statistic(test, ref_counts, cur_counts) if n_ref and n_cur else math.nan
            one_sided = bool(n_ref) != bool(n_cur)
            drifted = one_sided or (not math.isnan(value) and is_drift(test, value, thresholds[test]))
            results.append(ColumnDrift(column, test, value, thresholds[test], drifted, position == 0, n_ref, n_cur))
    return results


def apply_rules(results: list[ColumnDrift], rules: dict[str, FeatureDrift]) -> list[ColumnDrift]:
    """A feature's own threshold for its deciding test, or its deciding test turned into a record only."""
    ruled = []
    for result in results:
        rule = rules.get(result.column)
        if rule is None or not result.decides:
            ruled.append(result)
            continue
        threshold = result.threshold if rule.threshold is None else rule.threshold
        drifted = is_drift(result.statistic, result.value, threshold)
        ruled.append(replace(result, threshold=threshold, drifted=drifted, decides=rule.decides))
    return ruled
