"""Every statistic agrees with scipy's reference implementation to 1e-6, on random and edge-case data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from mlops.monitoring import stattests

TOL = 1e-6
rng = np.random.default_rng(20261129)


def samples() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Pairs of numerical samples: random, with ties, constant, single values, very unequal sizes."""
    return [
        ("normal", rng.normal(0, 1, 500), rng.normal(0.2, 1.3, 731)),
        ("equal sizes", rng.normal(0, 1, 1000), rng.normal(0.1, 1, 1000)),
        ("ties", rng.integers(0, 7, 300).astype(float), rng.integers(1, 9, 211).astype(float)),
        ("rounded", rng.normal(0, 1, 2000).round(1), rng.normal(0, 1, 1500).round(1)),
        ("constant both", np.full(50, 3.0), np.full(70, 3.0)),
        ("constant reference", np.full(40, 1.0), rng.normal(1, 1, 60)),
        ("single rows", np.array([1.5]), np.array([-2.0])),
        ("single vs many", np.array([0.0]), rng.normal(0, 1, 99)),
        ("unequal sizes", rng.exponential(1, 3), rng.exponential(2, 10_001)),
        ("large", rng.lognormal(0, 1, 20_000), rng.lognormal(0.1, 1, 17_000)),
    ]


@pytest.mark.parametrize(("name", "u", "v"), samples(), ids=[s[0] for s in samples()])
def test_wasserstein_agrees_with_scipy(name: str, u: np.ndarray, v: np.ndarray) -> None:
    ours = stattests.wasserstein(np.sort(u), np.sort(v))
    assert ours == pytest.approx(stats.wasserstein_distance(u, v), abs=TOL, rel=TOL)


@pytest.mark.parametrize(("name", "u", "v"), samples(), ids=[s[0] for s in samples()])
def test_normed_wasserstein_is_evidentlys(name: str, u: np.ndarray, v: np.ndarray) -> None:
    expected = stats.wasserstein_distance(u, v) / max(float(np.std(u)), 0.001)
    assert stattests.wasserstein_norm(np.sort(u), np.sort(v)) == pytest.approx(expected, abs=TOL, rel=TOL)


@pytest.mark.parametrize(("name", "u", "v"), samples(), ids=[s[0] for s in samples()])
def test_ks_agrees_with_scipy(name: str, u: np.ndarray, v: np.ndarray) -> None:
    assert stattests.ks_pvalue(np.sort(u), np.sort(v)) == pytest.approx(stats.ks_2samp(u, v).pvalue, abs=TOL)


def count_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Category counts of reference and current over the same categories."""
    return [
        ("random", rng.integers(1, 500, 6), rng.integers(1, 500, 6)),
        ("same shares", np.array([10, 20, 30]), np.array([20, 40, 60])),
        ("two", np.array([700, 300]), np.array([650, 350])),
        ("only in reference", np.array([5, 10, 0, 7]), np.array([0, 12, 3, 9])),
        ("one side one category", np.array([100, 0]), np.array([0, 50])),
        ("many", rng.integers(0, 1000, 300), rng.integers(0, 1000, 300)),
        ("tiny", np.array([1, 1]), np.array([1, 0])),
    ]


@pytest.mark.parametrize(("name", "r", "c"), count_pairs(), ids=[p[0] for p in count_pairs()])
def test_jensenshannon_agrees_with_scipy(name: str, r: np.ndarray, c: np.ndarray) -> None:
    b = stattests.shares(r, c)
    assert stattests.jensenshannon(b.reference, b.current) == pytest.approx(
        distance.jensenshannon(r / r.sum(), c / c.sum()), abs=TOL)


@pytest.mark.parametrize(("name", "r", "c"), count_pairs(), ids=[p[0] for p in count_pairs()])
def test_chisquare_agrees_with_scipy(name: str, r: np.ndarray, c: np.ndarray) -> None:
    expected_counts = r * (c.sum() / r.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = stats.chisquare(c, expected_counts).pvalue
    expected = 0.0 if math.isnan(expected) else expected  # scipy: 0/0 where the reference had none
    assert stattests.chisquare_pvalue(r, c) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize(("name", "r", "c"), [p for p in count_pairs() if len(p[1]) == 2],
                         ids=[p[0] for p in count_pairs() if len(p[1]) == 2])
def test_z_test_is_the_two_proportion_formula(name: str, r: np.ndarray, c: np.ndarray) -> None:
    n1, n2 = r.sum(), c.sum()
    p1, p2 = r[0] / n1, c[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert stattests.z_pvalue(r, c) == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), abs=TOL)


def test_z_test_of_one_shared_value_is_one() -> None:
    assert stattests.z_pvalue(np.array([10, 0]), np.array([7, 0])) == 1.0


@pytest.mark.parametrize("df", [1, 2, 3, 7, 30, 200])
@pytest.mark.parametrize("x", [0.0, 0.01, 0.5, 1.0, 4.0, 12.5, 60.0, 400.0])
def test_chi2_sf_agrees_with_scipy(df: int, x: float) -> None:
    assert stattests.chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), abs=1e-12)


def evidently_psi(r: np.ndarray, c: np.ndarray) -> float:
    """Evidently 0.7's PSI (``legacy.calculations.stattests.psi``) on shares, zero shares filled as it does."""
    def fill(p: np.ndarray) -> np.ndarray:
        p = p.copy()
        m = min(p[p != 0])
        np.place(p, p == 0, m / 10**6 if m <= 0.0001 else 0.0001)
        return p
    p, q = fill(r / r.sum()), fill(c / c.sum())
    return float(np.sum((p - q) * np.log(p / q)))


@pytest.mark.parametrize(("name", "r", "c"), count_pairs(), ids=[p[0] for p in count_pairs()])
def test_psi_is_evidentlys(name: str, r: np.ndarray, c: np.ndarray) -> None:
    b = stattests.shares(r, c)
    assert stattests.psi(b.reference, b.current) == pytest.approx(evidently_psi(r, c), abs=TOL, rel=TOL)


@pytest.mark.parametrize(("name", "u", "v"), samples(), ids=[s[0] for s in samples()])
def test_numerical_bins_are_numpys_sturges_histogram(name: str, u: np.ndarray, v: np.ndarray) -> None:
    edges = np.histogram_bin_edges(np.concatenate([u, v]), bins="sturges")
    bins = stattests.numerical_bins(np.sort(u), np.sort(v))
    np.testing.assert_allclose(bins.edges, edges, rtol=1e-12)
    np.testing.assert_allclose(bins.reference, np.histogram(u, edges)[0] / len(u), atol=1e-12)
    np.testing.assert_allclose(bins.current, np.histogram(v, edges)[0] / len(v), atol=1e-12)


def test_verdicts_follow_evidentlys_comparisons() -> None:
    assert stattests.is_drifted("wasserstein", 0.1, 0.1)
    assert not stattests.is_drifted("jensenshannon", 0.0999, 0.1)
    assert stattests.is_drifted("ks", 0.05, 0.05)  # Evidently's KS: p <= threshold
    assert not stattests.is_drifted("chisquare", 0.05, 0.05)  # chi-squared and Z: p < threshold
    assert stattests.is_drifted("z", 0.0499, 0.05)


@pytest.mark.parametrize("seed", range(30))
def test_random_sizes_and_shapes_agree_with_scipy(seed: int) -> None:
    """Random sizes (1 to 3,000 each side), scales, ties and offsets: Wasserstein, KS and JS all agree."""
    r = np.random.default_rng(seed)
    n, m = (int(k) for k in r.integers(1, 3000, 2))
    u = r.normal(r.normal(0, 5), r.uniform(0.01, 10), n)
    v = r.standard_t(3, m) * r.uniform(0.01, 10) + r.normal(0, 5)
    if seed % 3 == 0:
        u, v = u.round(0), v.round(0)  # many ties, shared values across sides
    us, vs = np.sort(u), np.sort(v)
    assert stattests.wasserstein(us, vs) == pytest.approx(stats.wasserstein_distance(u, v), abs=TOL, rel=TOL)
    assert stattests.ks_pvalue(us, vs) == pytest.approx(stats.ks_2samp(u, v).pvalue, abs=TOL)
    rc, cc = r.integers(0, 50, 12), r.integers(0, 50, 12)
    rc[0] += 1
    cc[1] += 1
    b = stattests.shares(rc, cc)
    assert stattests.jensenshannon(b.reference, b.current) == pytest.approx(
        distance.jensenshannon(rc / rc.sum(), cc / cc.sum()), abs=TOL)
