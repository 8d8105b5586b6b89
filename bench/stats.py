"""Statistics for comparing variants: Student-t summaries, pairwise tests with Holm, budget curves.

NaN marks a trial that produced no number (diverged or failed). `summarize` and `compare` drop
NaN, so callers must count those trials themselves; `expected_best` ranks them as the worst
possible outcome, because a search that hits a diverged trial did spend the budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

CI_METHOD = "Student-t"  # the interval summarize() reports, named for the report's captions
COMPARE_COLUMNS = ["a", "b", "n_a", "n_b", "mean_a", "mean_b", "diff", "better",
                   "p_welch", "p_welch_holm", "p_mwu", "p_mwu_holm", "significant"]


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def t_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean of the finite values, None below 2 of them.

    mean ± t_{(1+confidence)/2, n-1} · s / √n: exact for normal data at any n, which matters here
    because runs come in 2-5 seeds. A percentile bootstrap at n = 2 returns [min, max], far
    narrower than a 95 % interval should be; t's wide quantile at small n (12.7 for n = 2) is honest.
    """
    x = _finite(values)
    n = len(x)
    if n < 2:
        return None
    # Computed directly rather than with stats.t.interval, which gives NaN when every value is equal.
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    mean = float(x.mean())
    return mean - half, mean + half


def summarize(values: Sequence[float], *, confidence: float = 0.95) -> dict[str, float]:
    """Mean, std (ddof=1), n and the CI_METHOD interval of the mean (t_interval) over the finite
    values; ci_low and ci_high are NaN below 2 values."""
    x = _finite(values)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n >= 2 else float("nan")
    low, high = t_interval(x, confidence=confidence) or (float("nan"), float("nan"))
    return {"mean": mean, "std": std, "n": n, "ci_low": low, "ci_high": high}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (same order as given); NaN stays NaN and is not counted.

    Adjusted p_(i) = max over j <= i of min(1, (m - j + 1) · p_(j)) for p sorted ascending, so
    `adjusted < alpha` rejects exactly the hypotheses Holm's step-down procedure rejects.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    q = p[tested]
    m = len(q)
    order = np.argsort(q, kind="stable")
    stepped = np.minimum(np.maximum.accumulate((m - np.arange(m)) * q[order]), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = stepped
    out[tested] = adjusted
    return out


def _better(name_a: str, name_b: str, diff: float, higher_is_better: bool) -> str | None:
    if not np.isfinite(diff) or diff == 0:
        return None
    return name_a if (diff > 0) == higher_is_better else name_b


def compare(groups: Mapping[str, Sequence[float]], *, higher_is_better: bool,
            alpha: float = 0.05) -> pd.DataFrame:
    """Every pair of groups (in the mapping's order): Welch's t-test and two-sided Mann–Whitney U,
    each Holm-corrected across the pairs.

    `significant` is p_welch_holm < alpha: the report ranks by means, so the test of means
    decides; Mann–Whitney is shown as a check that assumes no normality. A group with fewer
    than 2 finite values gets NaN p-values and is never significant.
    """
    finite = {name: _finite(values) for name, values in groups.items()}
    rows = []
    for name_a, name_b in combinations(finite, 2):
        a, b = finite[name_a], finite[name_b]
        mean_a = float(a.mean()) if len(a) else float("nan")
        mean_b = float(b.mean()) if len(b) else float("nan")
        p_welch = p_mwu = float("nan")
        if len(a) >= 2 and len(b) >= 2:
            p_welch = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
            p_mwu = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        diff = mean_a - mean_b
        rows.append({"a": name_a, "b": name_b, "n_a": len(a), "n_b": len(b), "mean_a": mean_a,
                     "mean_b": mean_b, "diff": diff, "better": _better(name_a, name_b, diff, higher_is_better),
                     "p_welch": p_welch, "p_mwu": p_mwu})
    table = pd.DataFrame(rows, columns=["a", "b", "n_a", "n_b", "mean_a", "mean_b", "diff", "better",
                                        "p_welch", "p_mwu"])
    table["p_welch_holm"] = holm(table["p_welch"].to_numpy(dtype=float))
    table["p_mwu_holm"] = holm(table["p_mwu"].to_numpy(dtype=float))
    # NaN < alpha is False, so untestable pairs are never significant.
    table["significant"] = table["p_welch_holm"].to_numpy() < alpha
    return table[COMPARE_COLUMNS]


def expected_best(values: Sequence[float], *, higher_is_better: bool, n_resamples: int = 1000,
                  confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Best value found after k = 1..n trials when the n trials are run in random order
    (Lucic et al. 2018, "Are GANs Created Equal?", budget curves).

    mean: expected best after k trials over orders; low/high: the central `confidence` range of
    that best across orders (where one search of k trials may land), not a CI of the mean.
    NaN trials rank below every finite value (±inf), so mean is infinite while some order of
    k trials contains only diverged ones. Orders come in blocks of one random permutation and
    its n rotations (n_resamples rounded up to a multiple of n): each is still a uniformly
    random order, and every trial leads equally often, so k=1 is exactly the plain mean.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return pd.DataFrame({"k": pd.Series(dtype=int), "mean": pd.Series(dtype=float),
                             "low": pd.Series(dtype=float), "high": pd.Series(dtype=float)})
    worst = -np.inf if higher_is_better else np.inf
    x = np.where(np.isnan(x), worst, x)
    rng = np.random.default_rng(seed)
    rotations = (np.arange(n)[:, None] + np.arange(n)[None, :]) % n
    blocks = -(-n_resamples // n)
    orders = np.concatenate([rng.permutation(n)[rotations] for _ in range(blocks)])
    running = (np.maximum if higher_is_better else np.minimum).accumulate(x[orders], axis=1)
    tail = (1 - confidence) / 2
    # A quantile method without interpolation: interpolating between two infinities gives NaN.
    low, high = np.quantile(running, [tail, 1 - tail], axis=0, method="inverted_cdf")
    return pd.DataFrame({"k": np.arange(1, n + 1), "mean": running.mean(axis=0), "low": low, "high": high})
