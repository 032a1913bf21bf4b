"""Metrics in plain numpy, computed as scikit-learn computes them (the tests hold them to 1e-9).

Classification: ``accuracy``, ``f1_macro``, ``precision_macro``, ``recall_macro`` (scikit-learn's
defaults: the labels are those of the true and predicted values together, and a ratio with a zero
denominator counts 0), and ``log_loss`` when the model gives probabilities (clipped to
``[eps, 1 - eps]`` of float64). Regression: ``rmse``, ``mae``, ``r2`` (1.0 for a perfect fit of
constant data, 0.0 for an imperfect one, as scikit-learn's ``force_finite``).

For ``log_loss``, ``rmse``, ``mae`` (and any metric named ``*_loss`` or ``*_error``) lower is better.
"""

from __future__ import annotations

from typing import Any

PRIMARY = {"classification": "accuracy", "regression": "r2"}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mse"})


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is the better one (losses and errors)."""
    return metric in LOWER_IS_BETTER or metric.endswith(("_loss", "_error"))


def accuracy(y_true: Any, y_pred: Any) -> float:
    import numpy as np

    return float(np.mean(y_true == y_pred))


def r2(y_true: Any, y_pred: Any) -> float:
    import numpy as np

    residual = float(np.sum((y_true - y_pred) ** 2))
    total = float(np.sum((y_true - np.mean(y_true)) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def score(task: str, y_true: Any, y_pred: Any) -> float:
    """The task's primary metric (accuracy or r2): what permutation importance measures."""
    return accuracy(y_true, y_pred) if task == "classification" else r2(y_true, y_pred)


def classification(y_true: Any, y_pred: Any, proba: Any | None = None,
                   classes: list[Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """The metrics and the confusion matrix (``{"labels", "matrix"}``, rows true, columns predicted)."""
    import numpy as np

    labels = np.unique(np.concatenate([y_true, y_pred]))
    t = np.searchsorted(labels, y_true)
    p = np.searchsorted(labels, y_pred)
    k = len(labels)
    matrix = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = _divide(tp, predicted)
    recall = _divide(tp, actual)
    f1 = _divide(2 * tp, actual + predicted)
    metrics = {
        "accuracy": accuracy(y_true, y_pred),
        "f1_macro": float(np.mean(f1)),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
    }
    if proba is not None and classes is not None:
        loss = log_loss(y_true, proba, classes)
        if loss is not None:
            metrics["log_loss"] = loss
    confusion = {"labels": [_plain(v) for v in labels], "matrix": matrix.astype(int).tolist()}
    return metrics, confusion


def log_loss(y_true: Any, proba: Any, classes: list[Any]) -> float | None:
    """Mean cross-entropy of ``proba`` (columns in ``classes`` order); None when a true label is not
    one of the model's classes (its probability is not defined) or a probability is not a finite number."""
    import numpy as np

    if not np.all(np.isfinite(proba)):
        return None
    order = np.asarray(classes)
    if order.dtype.kind != np.asarray(y_true).dtype.kind and not (order.dtype.kind in "iu" and
                                                                     np.asarray(y_true).dtype.kind in "iu"):
        return None
    sorter = np.argsort(order)
    pos = np.searchsorted(order, y_true, sorter=sorter)
    pos = np.clip(pos, 0, len(order) - 1)
    index = sorter[pos]
    if not np.all(order[index] == y_true) or len(order) < 2:
        return None
    eps = np.finfo(np.float64).eps
    clipped = np.clip(proba.astype(np.float64), eps, 1 - eps)
    return float(np.mean(-np.log(clipped[np.arange(len(index)), index])))


def regression(y_true: Any, y_pred: Any) -> dict[str, float]:
    import numpy as np

    err = y_true - y_pred
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))), "r2": r2(y_true, y_pred)}


def _divide(num: Any, den: Any) -> Any:
    import numpy as np

    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON value it stands for."""
    return value.item() if hasattr(value, "item") else value
