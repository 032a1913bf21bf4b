"""Drift reports for tests, built by hand from the contract in the monitor brief (``kind: DriftReport``).

The real producer is ``mlops.monitoring.drift``; until the HTML tests use it, these helpers make
reports of the same shape from synthetic samples with numpy: histograms and category shares are
computed from the data, statistics with the textbook formulas (normed Wasserstein, Jensen-Shannon
distance, PSI), so plots and numbers look like what users see. ``realistic_report`` is the one to
swap for the producer's output on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

EPS = 1e-4  # floor of a share in PSI, as Evidently's


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = np.maximum(ref, EPS), np.maximum(cur, EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def numerical_entry(name: str, reference: np.ndarray, current: np.ndarray, *, bins: int = 20,
                    threshold: float = 0.1) -> dict[str, Any]:
    """A numerical feature's entry: normed Wasserstein distance, histogram over both samples' range."""
    ref, cur = reference[~np.isnan(reference)], current[~np.isnan(current)]
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=bins)
    rh = np.histogram(ref, edges)[0] / max(len(ref), 1)
    ch = np.histogram(cur, edges)[0] / max(len(cur), 1)
    grid = np.sort(np.concatenate([ref, cur]))
    cdf_r = np.searchsorted(np.sort(ref), grid[:-1], side="right") / len(ref)
    cdf_c = np.searchsorted(np.sort(cur), grid[:-1], side="right") / len(cur)
    wasserstein = float(np.sum(np.abs(cdf_r - cdf_c) * np.diff(grid)))
    std = float(np.std(ref)) or 0.001
    statistic = wasserstein / std
    return {
        "name": name, "kind": "numerical", "test": "wasserstein", "statistic": _finite(statistic),
        "threshold": threshold, "drifted": statistic >= threshold, "statistic_kind": "distance",
        "psi": _finite(_psi(rh, ch)), "reference_rows": len(reference), "current_rows": len(current),
        "missing": {"reference": float(np.isnan(reference).mean()), "current": float(np.isnan(current).mean())},
        "plot": {"type": "histogram", "edges": [float(e) for e in edges], "reference": [float(x) for x in rh],
                 "current": [float(x) for x in ch]},
    }


def categorical_entry(name: str, reference: Sequence[str], current: Sequence[str], *,
                      threshold: float = 0.1) -> dict[str, Any]:
    """A categorical feature's entry: Jensen-Shannon distance over the union of categories."""
    cats = sorted(set(reference) | set(current), key=lambda c: (-list(reference).count(c), c))
    r = np.array([list(reference).count(c) for c in cats], dtype=float) / max(len(reference), 1)
    c = np.array([list(current).count(k) for k in cats], dtype=float) / max(len(current), 1)
    m = (r + c) / 2

    def kl(p: np.ndarray) -> float:
        mask = p > 0
        return float(np.sum(p[mask] * np.log2(p[mask] / m[mask])))

    statistic = math.sqrt(max((kl(r) + kl(c)) / 2, 0.0))
    return {
        "name": name, "kind": "categorical", "test": "jensenshannon", "statistic": statistic,
        "threshold": threshold, "drifted": statistic >= threshold, "statistic_kind": "distance",
        "psi": _psi(r, c), "reference_rows": len(reference), "current_rows": len(current),
        "missing": {"reference": 0.0, "current": 0.0},
        "plot": {"type": "bars", "categories": list(cats), "reference": [float(x) for x in r],
                 "current": [float(x) for x in c]},
    }


def drift_report(features: list[dict[str, Any]], *, prediction: dict[str, Any] | None = None,
                 findings: Sequence[dict[str, Any]] = (), share_threshold: float = 0.5,
                 reference_rows: int = 133, current_rows: int = 5000,
                 created: str = "2026-11-29T17:00:00Z") -> dict[str, Any]:
    """A whole report around ``features`` (the verdict computed as the producer does)."""
    drifted = sum(1 for f in features if f.get("drifted"))
    share = drifted / len(features) if features else 0.0
    return {
        "kind": "DriftReport", "schema": 1, "created": created,
        "reference": {"source": "registry wine-classifier@1 train data", "digest": "ab" * 32,
                      "rows": reference_rows},
        "current": {"source": "captures 2026-11-28..2026-11-29", "digest": None, "rows": current_rows},
        "dataset_drift": bool(features) and share >= share_threshold, "drift_share": share,
        "drifted_count": drifted, "features_count": len(features), "share_threshold": share_threshold,
        "features": features, "prediction": prediction,
        "quality": {"passed": not any(f.get("severity") == "error" for f in findings), "findings": list(findings)},
    }


WINE = ("alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
        "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines",
        "proline")


def realistic_report(seed: int = 0, *, names: Sequence[str] = WINE, shifted: Sequence[str] = ("alcohol", "proline"),
                     rows: tuple[int, int] = (2000, 5000)) -> dict[str, Any]:
    """A report like one of the example project's wine endpoint: numerical features (``shifted`` ones
    moved by half a standard deviation and widened), a categorical region, prediction drift on the
    label, and data-quality findings."""
    rng = np.random.default_rng(seed)
    n_ref, n_cur = rows
    features = []
    for i, name in enumerate(names):
        loc, scale = 10.0 + i, 1.0 + i / 10
        ref = rng.normal(loc, scale, n_ref)
        cur = rng.normal(loc + (0.5 * scale if name in shifted else 0.0),
                         scale * (1.3 if name in shifted else 1.0), n_cur)
        if name == "magnesium":  # a few values missing in production
            cur[rng.random(n_cur) < 0.12] = np.nan
        features.append(numerical_entry(name, ref, cur))
    regions = ["north", "south", "east", "west"]
    features.append(categorical_entry("region", list(rng.choice(regions, n_ref, p=[.4, .3, .2, .1])),
                                      list(rng.choice([*regions, "coast"], n_cur, p=[.2, .2, .2, .2, .2]))))
    labels = ["class_0", "class_1", "class_2"]
    prediction = categorical_entry("prediction.label", list(rng.choice(labels, n_ref, p=[.33, .4, .27])),
                                   list(rng.choice(labels, n_cur, p=[.2, .3, .5])))
    findings = [
        {"feature": "magnesium", "check": "missing", "severity": "error", "value": 0.12, "threshold": 0.05,
         "message": "12.0% missing in current (reference 0.0%, allowed 5.0%)"},
        {"feature": "region", "check": "new_category", "severity": "warning", "value": 0.2, "threshold": None,
         "message": "new category 'coast' in 20.0% of current rows"},
        {"feature": "alcohol", "check": "out_of_range", "severity": "warning", "value": 0.031, "threshold": 0.01,
         "message": "3.1% of current values outside the reference range [6.8, 13.2]"},
    ]
    return drift_report(features, prediction=prediction, findings=findings, reference_rows=n_ref,
                        current_rows=n_cur)


def many_features_report(count: int, seed: int = 1, *, name_length: int = 0) -> dict[str, Any]:
    """``count`` features, every third drifted, half of them categorical with many categories; names
    padded to ``name_length`` characters when given."""
    rng = np.random.default_rng(seed)
    features = []
    for i in range(count):
        name = f"feature_{i:04d}"
        name = name + "_x" * max(0, (name_length - len(name)) // 2)
        if i % 2:
            cats = [f"c{j}" for j in range(40)]
            features.append(categorical_entry(name, list(rng.choice(cats, 300)),
                                              list(rng.choice(cats[: 20 if i % 3 == 0 else 40], 300))))
        else:
            features.append(numerical_entry(name, rng.normal(0, 1, 500),
                                            rng.normal(0.5 if i % 3 == 0 else 0.0, 1, 500), bins=30))
    return drift_report(features, reference_rows=500, current_rows=500)
