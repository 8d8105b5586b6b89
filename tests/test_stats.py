"""bench.stats against scipy/numpy on known inputs and against independent definitions."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from bench.stats import CI_METHOD, compare, expected_best, holm, summarize, t_interval

A = [10.2, 11.5, 9.8, 10.9, 10.4]
B = [14.1, 12.9, 15.3, 13.7]
C = [10.0, 12.5, 11.1, 9.4]


def test_summarize_matches_numpy_and_scipy_t_interval():
    out = summarize(A, confidence=0.9)
    ref = stats.t.interval(0.9, len(A) - 1, loc=np.mean(A), scale=stats.sem(A))
    assert out["n"] == 5
    assert out["mean"] == pytest.approx(np.mean(A))
    assert out["std"] == pytest.approx(np.std(A, ddof=1))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx(ref, abs=1e-12)
    assert out["ci_low"] < out["mean"] < out["ci_high"]
    assert CI_METHOD == "Student-t"


@pytest.mark.parametrize("values", [[1.0, 4.0], [2.0, 2.5, 7.0], B])
def test_t_interval_equals_scipy_and_is_wider_than_the_range_at_n_2(values):
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert t_interval(values) == pytest.approx(ref, abs=1e-12)
    low, high = t_interval([1.0, 4.0])
    # A percentile bootstrap of two values can at best return [1, 4]; Student-t knows n = 2 says little.
    assert low < -5 and high > 10


def test_summarize_edge_cases():
    single = summarize([3.0])
    assert single["mean"] == 3.0 and single["n"] == 1
    assert all(math.isnan(single[k]) for k in ("std", "ci_low", "ci_high"))
    same = summarize([2.5, 2.5, 2.5])
    assert (same["std"], same["ci_low"], same["ci_high"]) == (0.0, 2.5, 2.5)
    with_nan = summarize([1.0, math.nan, 3.0])  # a diverged trial is dropped, not averaged
    assert (with_nan["n"], with_nan["mean"]) == (2, 2.0)
    assert math.isnan(summarize([])["mean"])
    assert t_interval([3.0]) is None and t_interval([1.0, math.nan]) is None


def test_compare_p_values_equal_scipy():
    table = compare({"a": A, "b": B, "c": C}, higher_is_better=False)
    groups = {"a": A, "b": B, "c": C}
    assert list(zip(table["a"], table["b"], strict=True)) == list(combinations("abc", 2))
    for row in table.itertuples():
        x, y = groups[row.a], groups[row.b]
        assert row.p_welch == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
        assert row.p_mwu == pytest.approx(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)
        assert row.diff == pytest.approx(np.mean(x) - np.mean(y))
    np.testing.assert_allclose(table["p_welch_holm"], holm(table["p_welch"]))
    np.testing.assert_allclose(table["p_mwu_holm"], holm(table["p_mwu"]))
    assert (table["significant"] == (table["p_welch_holm"] < 0.05)).all()
    ab = table.iloc[0]
    assert ab["significant"] and ab["better"] == "a"  # lower is better: a's ~10.6 beats b's ~14


def test_compare_direction_and_small_groups():
    up = compare({"a": A, "b": B}, higher_is_better=True).iloc[0]
    assert up["better"] == "b"
    tiny = compare({"a": A, "one": [5.0], "b": B}, higher_is_better=True)
    with_one = tiny[(tiny["a"] == "one") | (tiny["b"] == "one")]
    assert with_one["p_welch"].isna().all() and with_one["p_mwu_holm"].isna().all()
    assert not with_one["significant"].any()
    # The untestable pairs are not counted in the Holm family: one real test, no inflation.
    ab = tiny[(tiny["a"] == "a") & (tiny["b"] == "b")].iloc[0]
    assert ab["p_welch_holm"] == pytest.approx(ab["p_welch"])


def test_holm_worked_example():
    # Sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> raised to 0.06).
    np.testing.assert_allclose(holm([0.03, 0.01, 0.04, 0.02]), [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.4]), [0.8, 0.8])  # 2 x 0.4 = 0.8; 0.5 stays at the running max
    np.testing.assert_allclose(holm([0.9, 0.6]), [1.0, 1.0])  # capped at 1
    out = holm([0.02, math.nan, 0.01])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])  # m = 2 tested hypotheses


def _step_down_rejects(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm (1979) as defined: walk p ascending, reject while p_(i) <= alpha / (m - i + 1)."""
    rejected = np.zeros(len(p), dtype=bool)
    for i, index in enumerate(np.argsort(p, kind="stable")):
        if p[index] > alpha / (len(p) - i):
            break
        rejected[index] = True
    return rejected


def test_holm_matches_step_down_procedure():
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 9))
        p = rng.uniform(0, 0.1, m) ** rng.uniform(0.5, 3)
        for alpha in (0.01, 0.05, 0.1):
            # Adjusted p <= alpha exactly when the step-down procedure rejects.
            np.testing.assert_array_equal(holm(p) <= alpha, _step_down_rejects(p, alpha))


def _exact_expected_min(values: list[float], k: int) -> float:
    """E[min of a uniformly random k-subset]: the i-th smallest is the minimum in C(n-i, k-1) subsets."""
    ordered, n = sorted(values), len(values)
    weights = [math.comb(n - i, k - 1) for i in range(1, n + 1)]
    return sum(v * w for v, w in zip(ordered, weights, strict=True) if w) / math.comb(n, k)  # skip inf x 0


def test_expected_best_against_exact_order_statistics():
    values = [31.0, 12.5, 20.0, 44.0, 18.0, 25.0]
    curve = expected_best(values, higher_is_better=False, n_resamples=30_000, seed=1)
    assert list(curve["k"]) == list(range(1, 7))
    assert curve["mean"].iloc[0] == pytest.approx(np.mean(values))
    assert curve["mean"].iloc[-1] == pytest.approx(min(values))
    assert curve["low"].iloc[-1] == curve["high"].iloc[-1] == min(values)
    exact = [_exact_expected_min(values, k) for k in range(1, 7)]
    np.testing.assert_allclose(curve["mean"], exact, rtol=0.01)
    assert (np.diff(curve["mean"]) <= 0).all()
    assert (curve["low"] <= curve["mean"]).all() and (curve["mean"] <= curve["high"]).all()


def test_expected_best_higher_is_better_is_negated_lower():
    values = [0.61, 0.72, 0.55, 0.80, 0.67]
    up = expected_best(values, higher_is_better=True, seed=3)
    down = expected_best([-v for v in values], higher_is_better=False, seed=3)
    np.testing.assert_allclose(up["mean"], -down["mean"])
    assert up["mean"].iloc[0] == pytest.approx(np.mean(values))
    assert up["mean"].iloc[-1] == pytest.approx(max(values)) and up["low"].iloc[-1] == max(values)
    assert (np.diff(up["mean"]) >= 0).all()


def test_expected_best_counts_nan_as_worst():
    values = [20.0, math.nan, 15.0, 30.0]
    curve = expected_best(values, higher_is_better=False)
    assert math.isinf(curve["mean"].iloc[0])  # a one-trial search that diverged found nothing
    assert curve["mean"].iloc[1:].map(math.isfinite).all()  # any two trials hold a finished one
    assert curve["mean"].iloc[-1] == 15.0
    # With NaN as +inf, the best of k >= 2 trials is the exact expectation over the 3 finished
    # ones with the diverged trial never winning.
    exact = [_exact_expected_min([20.0, 15.0, 30.0, math.inf], k) for k in range(2, 5)]
    np.testing.assert_allclose(curve["mean"].iloc[1:], exact, rtol=0.02)
    high = expected_best([0.5, math.nan], higher_is_better=True)
    assert math.isinf(high["mean"].iloc[0]) and high["mean"].iloc[0] < 0 and high["mean"].iloc[1] == 0.5


def test_expected_best_empty_and_deterministic():
    assert expected_best([], higher_is_better=True).empty
    first = expected_best([3.0, 1.0, 2.0], higher_is_better=False, seed=5)
    assert first.equals(expected_best([3.0, 1.0, 2.0], higher_is_better=False, seed=5))
