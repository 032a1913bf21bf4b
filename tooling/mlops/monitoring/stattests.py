"""Drift statistics, vectorised with numpy, defined as Evidently 0.7 (its ``legacy.calculations.stattests``)
and scipy define them, so that verdicts agree with Evidently and values with scipy (tests check 1e-6).

Numerical samples arrive *sorted* and without missing values (``columns.numeric_values``); categorical
samples arrive as counts over one shared list of categories (``columns.aligned_counts``).

- ``wasserstein``: scipy's ``wasserstein_distance`` divided by the reference's standard deviation
  (``max(std, 0.001)``); drifted when >= threshold (0.1).
- ``jensenshannon``: scipy's ``jensenshannon`` (natural log) of the two sides' shares; drifted when >= 0.1.
- ``ks``: the two-sample Kolmogorov-Smirnov p-value (scipy's ``ks_2samp``, the only test that imports
  scipy: it is chosen for references of at most 1,000 rows); drifted when p <= 0.05 (as Evidently).
- ``chisquare``: Pearson's chi-squared p-value of current counts against reference shares; p < 0.05.
- ``z``: the two-proportion Z-test p-value (two-sided); p < 0.05.
- ``psi``: the population stability index over Evidently's bins, zero shares replaced as it does; >= 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DISTANCE = "distance"
P_VALUE = "p_value"
TESTS = {"wasserstein": DISTANCE, "jensenshannon": DISTANCE, "psi": DISTANCE,
         "ks": P_VALUE, "chisquare": P_VALUE, "z": P_VALUE}
DEFAULT_THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1, "ks": 0.05, "chisquare": 0.05,
                      "z": 0.05}
NUMERICAL_ONLY = {"wasserstein", "ks"}


@dataclass(frozen=True)
class Bins:
    """Two samples as shares over the same bins (histogram bins or categories)."""

    reference: np.ndarray  # float64 shares, summing to 1
    current: np.ndarray
    edges: np.ndarray | None = None  # histogram edges (n+1), or None for categories


def is_drifted(test: str, statistic: float, threshold: float) -> bool:
    """The verdict: distances drift at or above the threshold; p-values below it (KS: at or below)."""
    if TESTS[test] == DISTANCE:
        return statistic >= threshold
    return statistic <= threshold if test == "ks" else statistic < threshold


# -- numerical ------------------------------------------------------------------------------------------
def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """The first Wasserstein distance between two sorted samples (scipy's ``wasserstein_distance``).

    Computed as the integral over t in (0, 1] of |U^-1(t) - V^-1(t)|, the quantile functions being step
    functions that change at k/n and l/m: on sorted samples this needs no search and no float sort, only
    the merge of two integer progressions (k*m and l*n, in units of 1/(n*m)), which timsort does in one pass.
    """
    n, m = len(u), len(v)
    if n == m:  # equal sizes: the quantile functions pair the order statistics one to one
        return float(np.abs(u - v).mean())
    t = np.concatenate((np.arange(m, n * m + 1, m, dtype=np.int64), np.arange(n, n * m + 1, n, dtype=np.int64)))
    t.sort(kind="stable")
    dt = np.diff(t, prepend=0)
    iu = (t + (m - 1)) // m - 1  # the order statistic of u in force on (t - dt, t]
    iv = (t + (n - 1)) // n - 1
    return float(np.dot(np.abs(u[iu] - v[iv]), dt)) / (n * m)


def std(x: np.ndarray) -> float:
    """Population standard deviation (numpy's default, ``ddof=0``, as Evidently uses)."""
    return float(np.std(x)) if len(x) else 0.0


def wasserstein_norm(ref: np.ndarray, cur: np.ndarray, ref_std: float | None = None) -> float:
    """Wasserstein distance in units of the reference's standard deviation (at least 0.001)."""
    norm = max(std(ref) if ref_std is None else ref_std, 0.001)
    return wasserstein(ref, cur) / norm


def ks_pvalue(ref: np.ndarray, cur: np.ndarray) -> float:
    """The two-sided two-sample KS p-value (scipy's ``ks_2samp``, method ``auto``)."""
    from scipy.stats import ks_2samp  # only for small references: its import costs more than the test

    return float(ks_2samp(ref, cur).pvalue)


def histogram_edges(lo: float, hi: float, size: int) -> np.ndarray:
    """numpy's ``histogram_bin_edges(data, "sturges")`` for data of ``size`` values spanning [lo, hi]."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
        n = 1
    else:
        width = (hi - lo) / (math.log2(size) + 1.0)
        n = int(math.ceil((hi - lo) / width)) if width else 1
    return np.linspace(lo, hi, n + 1, endpoint=True)


def sorted_histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(x, edges)[0]`` for sorted ``x`` inside [edges[0], edges[-1]]: bins are half open
    except the last, which holds its right edge."""
    pos = np.searchsorted(x, edges, "left")
    counts = np.diff(pos)
    counts[-1] += len(x) - pos[-1]
    return counts


def numerical_bins(ref: np.ndarray, cur: np.ndarray) -> Bins:
    """Evidently's bins for a numerical feature with more than 20 distinct reference values: Sturges'
    rule over both samples together."""
    lo = min(ref[0], cur[0])
    hi = max(ref[-1], cur[-1])
    edges = histogram_edges(float(lo), float(hi), len(ref) + len(cur))
    return Bins(sorted_histogram(ref, edges) / len(ref), sorted_histogram(cur, edges) / len(cur), edges)


def distinct_sorted(x: np.ndarray) -> int:
    """How many distinct values a sorted array holds."""
    return int(np.count_nonzero(x[1:] != x[:-1])) + 1 if len(x) else 0


def value_counts_sorted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, counts) of a sorted array."""
    if not len(x):
        return x, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
    return x[starts], np.diff(np.append(starts, len(x)))


# -- shares ---------------------------------------------------------------------------------------------
def shares(ref_counts: np.ndarray, cur_counts: np.ndarray) -> Bins:
    """Counts over shared categories as shares of each side's total."""
    return Bins(ref_counts / max(int(ref_counts.sum()), 1), cur_counts / max(int(cur_counts.sum()), 1))


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """scipy's ``spatial.distance.jensenshannon`` (natural log): the square root of the JS divergence."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    js = float(left.sum() + right.sum())
    return math.sqrt(max(js, 0.0) / 2.0)


def fill_zeroes(p: np.ndarray) -> np.ndarray:
    """Evidently's replacement of empty bins before PSI: a millionth of the smallest share when that is at
    most 0.0001, else 0.0001."""
    nonzero = p[p != 0]
    if not len(nonzero) or len(nonzero) == len(p):
        return p
    smallest = float(nonzero.min())
    return np.where(p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, p)


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index of reference shares ``p`` and current shares ``q`` (zeroes filled)."""
    p, q = fill_zeroes(p), fill_zeroes(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((p - q) * np.log(p / q)))


# -- tests on counts ------------------------------------------------------------------------------------
def chisquare_pvalue(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Pearson's chi-squared test of current counts against the reference's shares, scaled to the current
    total (Evidently's use of ``scipy.stats.chisquare``); a category the reference never saw gives 0."""
    k = len(ref_counts)
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    if k < 2 or not n_ref:
        return 1.0
    expected = ref_counts * (n_cur / n_ref)
    if np.any((expected == 0) & (cur_counts > 0)):
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (cur_counts - expected) ** 2 / expected, 0.0)
    return chi2_sf(float(terms.sum()), k - 1)


def z_pvalue(ref_counts: np.ndarray, cur_counts: np.ndarray, first: int = 0) -> float:
    """The two-sided two-proportion Z-test of the share of category ``first`` (Evidently: the smallest
    category in sorted order) in both samples; 1 when both samples hold the same one value."""
    n1, n2 = int(ref_counts.sum()), int(cur_counts.sum())
    if not n1 or not n2:
        return 1.0
    p1, p2 = 1.0 - ref_counts[first] / n1, 1.0 - cur_counts[first] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0:  # one value everywhere: nothing moved
        return 1.0
    z = (p1 - p2) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2.0))


def chi2_sf(x: float, df: int) -> float:
    """The survival function of the chi-squared distribution: Q(df/2, x/2), the regularised upper
    incomplete gamma function (series below a+1, Lentz's continued fraction above)."""
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    return _gammaincc(df / 2.0, x / 2.0)


def _gammaincc(a: float, x: float) -> float:
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:  # P by its series, Q = 1 - P
        term = total = 1.0 / a
        ap = a
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_front) * h)
