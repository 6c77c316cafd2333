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
    values = drift.value_counts(ref_df, cur_df, ["x"], [])
    ranges = drift.numeric_ranges(values, ["x"])
    assert ranges["x"].count == 900 and ranges["x"].reference_distinct == len(set(reference))
    counts = drift.binned_counts(values, ranges)["x"]
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
    statistic, n_ref, n_cur = drift.ks_statistics(drift.value_counts(ref_df, cur_df, ["x"], []), ["x"])["x"]
    expected = ks_2samp(reference, current)
    assert (n_ref, n_cur) == (12_000, 11_000)
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert drift.ks_p_value(statistic, n_ref, n_cur) == pytest.approx(expected.pvalue, rel=1e-6)


def test_categories_and_chi_square(spark):
    from scipy.stats import chisquare

    ref = spark.createDataFrame([("a",)] * 60 + [("b",)] * 40 + [(None,)] * 5, "plan string")
    cur = spark.createDataFrame([("a",)] * 30 + [("b",)] * 60 + [("c",)] * 10, "plan string")
    values, ref_counts, cur_counts = drift.category_counts(drift.value_counts(ref, cur, [], ["plan"]), ["plan"])["plan"]
    assert values == ["a", "b", "c"]
    assert ref_counts.tolist() == [60, 40, 0] and cur_counts.tolist() == [30, 60, 10]
    assert drift.chi_square_p_value(ref_counts, cur_counts) == 0.0  # "c" never seen in the reference
    same = np.array([30.0, 70.0])
    expected = chisquare(same, np.array([60.0, 40.0]) / 100 * 100).pvalue
    assert drift.chi_square_p_value(np.array([60.0, 40.0]), same) == pytest.approx(expected)


SHIFT_TESTS = {"psi": 0.1, "ks": 0.05, "jensenshannon": 0.1, "chisquare": 0.05}


def _frames(spark, rows: int, shift: float, seed: int):
    """A numeric, a discrete numeric and a categorical column; `shift` moves the current side."""
    rng = np.random.default_rng(seed)
    import pandas as pd

    def side(offset: float, plan_weights: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "spend": rng.gamma(2.0, 30.0 * (1 + offset), rows).round(2),
                "tickets": rng.poisson(1.0 + offset * 2, rows).astype(float),
                "plan": rng.choice(["basic", "plus", "pro"], rows, p=plan_weights),
            }
        )

    reference = side(0.0, [0.5, 0.3, 0.2])
    current = side(shift, [0.5 - shift, 0.3, 0.2 + shift])
    schema = "spend double, tickets double, plan string"
    return reference, current, spark.createDataFrame(reference, schema), spark.createDataFrame(current, schema)


def _verdicts(results):
    return {(r.column, r.statistic): r.drifted for r in results}


def test_known_shift_is_detected_and_no_shift_is_not(spark):
    for shift, expected in ((0.0, False), (0.4, True)):
        _, _, reference, current = _frames(spark, 4000, shift, seed=11)
        tests = (["psi", "ks"], ["jensenshannon", "chisquare"])
        results = drift.compare(reference, current, ["spend", "tickets"], ["plan"], *tests, SHIFT_TESTS)
        assert [(r.column, r.statistic) for r in results] == [
            ("spend", "psi"), ("spend", "ks"), ("tickets", "psi"), ("tickets", "ks"),
            ("plan", "jensenshannon"), ("plan", "chisquare"),
        ]  # fmt: skip
        assert set(_verdicts(results).values()) == {expected}, results
        assert all(r.reference_rows == r.current_rows == 4000 for r in results)
        assert [r.decides for r in results] == [True, False] * 3


def test_a_column_missing_on_one_side_drifts(spark):
    reference = spark.createDataFrame([(float(i), "a") for i in range(50)], "x double, plan string")
    current = spark.createDataFrame([(None, None)] * 50, "x double, plan string")
    results = drift.compare(reference, current, ["x"], ["plan"], ["psi", "ks"], ["chisquare"], SHIFT_TESTS)
    assert all(r.drifted and np.isnan(r.value) and r.current_rows == 0 for r in results)


def test_statistics_and_verdicts_agree_with_evidently(spark):
    """The same columns and the same named tests on both sides; more than 10,000 rows per side, where
    scipy's ks_2samp (inside Evidently) uses the asymptotic distribution, as we do."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    for shift in (0.0, 0.02, 0.25):
        ref_pd, cur_pd, reference, current = _frames(spark, 12_000, shift, seed=7)
        ours = drift.compare(
            reference, current, ["spend", "tickets"], ["plan"], ["psi", "ks", "jensenshannon"],
            ["jensenshannon", "chisquare", "psi"], SHIFT_TESTS,
        )  # fmt: skip
        metrics = [ValueDrift(column=r.column, method=r.statistic, threshold=r.threshold) for r in ours]
        definition = DataDefinition(numerical_columns=["spend", "tickets"], categorical_columns=["plan"])
        snapshot = Report(metrics, include_tests=True).run(
            Dataset.from_pandas(cur_pd, data_definition=definition),
            Dataset.from_pandas(ref_pd, data_definition=definition),
        )
        report = snapshot.dict()
        theirs = [float(m["value"]) for m in report["metrics"]]
        failed = [t["status"].name == "FAIL" for t in report["tests"]]
        for result, value, evidently_drifted in zip(ours, theirs, failed, strict=True):
            assert result.value == pytest.approx(value, rel=1e-6, abs=1e-9), (shift, result)
            assert result.drifted == evidently_drifted, (shift, result)
