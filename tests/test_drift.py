"""Drift statistics in Spark agree with the same statistics computed by numpy and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import distance

from lakeforge import drift


def test_sturges_matches_numpy():
    for rows in (1, 2, 10, 1000, 123_457):
        assert drift.sturges_bins(rows) == len(np.histogram_bin_edges(np.arange(rows, dtype=float), bins="sturges")) - 1


def test_binned_counts_equal_numpy_histogram(spark):
    rng = np.random.default_rng(3)
    reference, current = rng.normal(0, 1, 500), rng.normal(0.5, 1.2, 400)
    ref_df = spark.createDataFrame([(float(x),) for x in reference], "x double")
    cur_df = spark.createDataFrame([(float(x),) for x in current], "x double")
    ranges = drift.numeric_ranges(ref_df, cur_df, ["x"])
    counts = drift.binned_counts(ref_df, cur_df, ranges)["x"]
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    assert counts[0].tolist() == np.histogram(reference, edges)[0].tolist()
    assert counts[1].tolist() == np.histogram(current, edges)[0].tolist()


def test_psi_and_jensen_shannon():
    reference, current = np.array([50.0, 30.0, 20.0, 0.0]), np.array([40.0, 30.0, 20.0, 10.0])
    p, q = reference / 100, current / 100
    p_filled = np.where(p == 0, 1e-4, p)
    assert drift.psi(reference, current) == pytest.approx(float(np.sum((q - p_filled) * np.log(q / p_filled))))
    assert drift.jensen_shannon(reference, current) == pytest.approx(distance.jensenshannon(p, q))
    assert drift.psi(reference, reference) == pytest.approx(0.0)


def test_ks_equals_scipy_on_large_samples(spark):
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(5)
    reference, current = rng.normal(0, 1, 12_000).round(3), rng.normal(0.03, 1, 11_000).round(3)
    ref_df = spark.createDataFrame([(float(x),) for x in reference], "x double")
    cur_df = spark.createDataFrame([(float(x),) for x in current], "x double")
    statistic, n_ref, n_cur = drift.ks_statistics(ref_df, cur_df, ["x"])["x"]
    expected = ks_2samp(reference, current)
    assert (n_ref, n_cur) == (12_000, 11_000)
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert drift.ks_p_value(statistic, n_ref, n_cur) == pytest.approx(expected.pvalue, rel=1e-6)


def test_categories_and_chi_square(spark):
    from scipy.stats import chisquare

    ref = spark.createDataFrame([("a",)] * 60 + [("b",)] * 40 + [(None,)] * 5, "plan string")
    cur = spark.createDataFrame([("a",)] * 30 + [("b",)] * 60 + [("c",)] * 10, "plan string")
    values, ref_counts, cur_counts = drift.category_counts(ref, cur, ["plan"])["plan"]
    assert values == ["a", "b", "c"]
    assert ref_counts.tolist() == [60, 40, 0] and cur_counts.tolist() == [30, 60, 10]
    assert drift.chi_square_p_value(ref_counts, cur_counts) == 0.0  # "c" never seen in the reference
    same = np.array([30.0, 70.0])
    expected = chisquare(same, np.array([60.0, 40.0]) / 100 * 100).pvalue
    assert drift.chi_square_p_value(np.array([60.0, 40.0]), same) == pytest.approx(expected)
