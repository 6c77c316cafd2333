"""Drift statistics over full tables, computed in Spark in a few passes whatever the column count.

`compare` reads each side at most four times: value ranges, binned counts, the Kolmogorov-Smirnov
cumulative counts and the category counts, each one aggregation over every column at once. Only
the aggregated counts reach the driver, where numpy and scipy turn them into statistics.

Binning follows Evidently 0.7 so verdicts can be cross-checked: a numeric column with more than
20 distinct reference values is cut into equal-width Sturges bins over reference and current
together; otherwise every distinct value is its own bucket. PSI replaces empty buckets by 1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

SIDE = "_side"
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


def _tagged(reference: DataFrame, current: DataFrame, columns: list[str]) -> DataFrame:
    """Both sides stacked, `_ref` 1 on reference rows and 0 on current rows."""
    return reference.select(*columns, F.lit(1).alias("_ref")).unionByName(
        current.select(*columns, F.lit(0).alias("_ref"))
    )


def numeric_ranges(reference: DataFrame, current: DataFrame, columns: list[str]) -> dict[str, NumericRange]:
    """Min, max and non-null count over both sides, and distinct reference values, of every column in one pass.

    Distinct values are counted with HyperLogLog++, exact at the small counts that decide binning.
    """
    both = _tagged(reference, current, columns)
    aggregates = [
        agg
        for c in columns
        for agg in (
            F.min(c),
            F.max(c),
            F.count(c),
            F.approx_count_distinct(F.when(F.col("_ref") == 1, F.col(c)), 0.01),
        )
    ]
    values = both.agg(*aggregates).first()
    return {c: NumericRange(*values[4 * i : 4 * i + 4]) for i, c in enumerate(columns)}


def binned_counts(
    reference: DataFrame, current: DataFrame, ranges: dict[str, NumericRange]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per column, the counts of reference and current rows in equal-width Sturges bins, in one pass."""
    bins = {c: sturges_bins(r.count) for c, r in ranges.items()}
    tagged = reference.select(*ranges, F.lit("reference").alias(SIDE)).unionByName(
        current.select(*ranges, F.lit("current").alias(SIDE))
    )
    cells = []
    for column, (low, high, _, _) in ranges.items():
        width = (high - low) / bins[column] if high > low else 1.0
        # least() skips nulls: without the when(), a missing value would land in the last bin.
        index = F.when(
            F.col(column).isNotNull(),
            F.least(F.floor((F.col(column) - F.lit(low)) / F.lit(width)), F.lit(bins[column] - 1)).cast("int"),
        )
        cells.append(F.struct(F.lit(column).alias("column"), index.alias("bin")))
    counts = (
        tagged.select(SIDE, F.explode(F.array(*cells)).alias("cell"))
        .where(F.col("cell.bin").isNotNull())
        .groupBy(SIDE, "cell.column", "cell.bin")
        .count()
        .collect()
    )
    out = {c: (np.zeros(bins[c]), np.zeros(bins[c])) for c in ranges}
    for row in counts:
        out[row["column"]][0 if row[SIDE] == "reference" else 1][row["bin"]] += row["count"]
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


def ks_statistics(reference: DataFrame, current: DataFrame, columns: list[str]) -> dict[str, tuple[float, int, int]]:
    """Exact two-sample Kolmogorov-Smirnov statistic D per column (with both sample sizes), in one pass.

    Distinct values are counted per side and the two empirical CDFs are compared at every value,
    one window partition per column: no collect of raw values, no per-column job.
    """
    tagged = _tagged(reference, current, columns)
    cells = F.array(*[F.struct(F.lit(c).alias("column"), F.col(c).cast("double").alias("value")) for c in columns])
    counts = (
        tagged.select("_ref", F.explode(cells).alias("cell"))
        .where(F.col("cell.value").isNotNull())
        .groupBy("cell.column", "cell.value")
        .agg(F.sum("_ref").alias("ref"), F.sum(1 - F.col("_ref")).alias("cur"))
    )
    by_value = Window.partitionBy("column").orderBy("value").rowsBetween(Window.unboundedPreceding, 0)
    whole = Window.partitionBy("column")
    cdfs = counts.select(
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


def category_counts(
    reference: DataFrame, current: DataFrame, columns: list[str]
) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """Per categorical column, the categories seen on either side and their counts, in one pass."""
    tagged = _tagged(reference, current, columns)
    cells = F.array(*[F.struct(F.lit(c).alias("column"), F.col(c).cast("string").alias("value")) for c in columns])
    rows = (
        tagged.select("_ref", F.explode(cells).alias("cell"))
        .where(F.col("cell.value").isNotNull())
        .groupBy("cell.column", "cell.value")
        .agg(F.sum("_ref").alias("ref"), F.sum(1 - F.col("_ref")).alias("cur"))
        .collect()
    )
    out: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    for column in columns:
        found = sorted((r["value"], r["ref"], r["cur"]) for r in rows if r["column"] == column)
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
    ranges = numeric_ranges(reference, current, numeric) if numeric else {}
    binned = [c for c in numeric if ranges[c].reference_distinct > MAX_DISCRETE_VALUES]
    discrete = [c for c in numeric if c not in binned]
    bins = (
        binned_counts(reference, current, {c: ranges[c] for c in binned})
        if binned and set(numeric_tests) - {"ks"}
        else {}
    )
    ks = ks_statistics(reference, current, numeric) if numeric and "ks" in numeric_tests else {}
    counted = categorical + (discrete if set(numeric_tests) - {"ks"} else [])
    categories = category_counts(reference, current, counted) if counted else {}
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
