"""Permutation feature importance: how much a metric drops when one feature's column is shuffled.

The procedure, and its random numbers, are scikit-learn's ``permutation_importance`` (Breiman 2001):
from ``seed``, one seed for every column; per column, a fresh ``RandomState`` shuffles the row order
``repeats`` times, each shuffle applied to the column as the previous one left it; importance =
baseline score - permuted score; mean and (population) std over the repeats. Same seed, same model,
same data: the same numbers as ``sklearn.inspection.permutation_importance(..., random_state=seed)``.
Memory: one working copy of the features, each column restored after its shuffles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def permutation_importance(score: Callable[[Any], float], features: Any, names: tuple[str, ...], repeats: int,
                           seed: int) -> list[dict[str, Any]]:
    """``[{"feature", "mean", "std"}]`` sorted by mean, largest first (ties keep column order).
    ``score(features) -> float`` is the metric of the model's predictions on ``features`` (higher is better)."""
    import numpy as np

    baseline = score(features)
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    work = features.copy()
    rows = np.arange(work.shape[0])
    out = []
    for col, name in enumerate(names):
        rng = np.random.RandomState(column_seed)
        original = work[:, col].copy()
        order = rows.copy()
        drops = []
        for _ in range(repeats):
            rng.shuffle(order)
            work[:, col] = work[order, col]
            drops.append(baseline - score(work))
        work[:, col] = original
        out.append({"feature": name, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
    return sorted(out, key=lambda item: -item["mean"])
