"""Scores agree with scikit-learn to 1e-9, on real skl2onnx models run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.base import BaseEstimator
from sklearn.inspection import permutation_importance as sk_importance

from mlops.evaluation import metrics as m
from mlops.evaluation import score_model
from tests.evaluation.models import run_onnx, train

TOL = 1e-9


class OnnxEstimator(BaseEstimator):
    """The ONNX model as a scikit-learn estimator, for sklearn's own permutation importance."""

    def __init__(self, path: Path | None = None, regression: bool = False):
        self.path = path
        self.regression = regression

    def fit(self, x: Any, y: Any) -> OnnxEstimator:
        return self

    def predict(self, x: Any) -> Any:
        out = np.asarray(run_onnx(self.path, np.asarray(x))[0])
        return out.reshape(-1).astype(np.float64) if self.regression else out


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32 probabilities
@pytest.mark.parametrize("zipmap", [False, True])
@pytest.mark.parametrize("string_labels", [False, True])
def test_classifier_metrics_match_sklearn(tmp_path: Path, zipmap: bool, string_labels: bool) -> None:
    t = train("iris", tmp_path / "m.onnx", zipmap=zipmap, string_labels=string_labels, C=0.05)
    scores = score_model(t.path, t.csv, label="target", task="classification", repeats=4, seed=7)
    labels, proba = run_onnx(t.path, t.x)
    classes = sorted(proba[0]) if zipmap else sorted(set(t.y.tolist()))
    proba = np.array([[row[c] for c in classes] for row in proba]) if zipmap else np.asarray(proba, np.float64)
    y = t.y
    assert scores.rows == len(y)
    expected = {
        "accuracy": skm.accuracy_score(y, labels),
        "f1_macro": skm.f1_score(y, labels, average="macro"),
        "precision_macro": skm.precision_score(y, labels, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(y, labels, average="macro", zero_division=0),
        "log_loss": skm.log_loss(y, proba, labels=classes),
    }
    assert set(scores.metrics) == set(expected)
    for name, value in expected.items():
        assert scores.metrics[name] == pytest.approx(value, abs=TOL), name
    assert scores.metrics["accuracy"] < 1.0  # a weak model, so the macro averages are not all trivially 1
    assert scores.confusion is not None
    assert scores.confusion["labels"] == sorted(set(y.tolist()) | set(labels.tolist()))
    assert scores.confusion["matrix"] == skm.confusion_matrix(y, labels, labels=scores.confusion["labels"]).tolist()
    sk = sk_importance(OnnxEstimator(t.path), t.x, y, scoring="accuracy", n_repeats=4, random_state=7)
    ours = {i["feature"]: i for i in scores.importance}
    for j, name in enumerate(t.names):
        assert ours[name]["mean"] == pytest.approx(sk.importances_mean[j], abs=TOL)
        assert ours[name]["std"] == pytest.approx(sk.importances_std[j], abs=TOL)
    means = [i["mean"] for i in scores.importance]
    assert means == sorted(means, reverse=True) and scores.importance_metric == "accuracy"


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
@pytest.mark.parametrize("zipmap", [False, True])
def test_binary_classifier_metrics_match_sklearn(tmp_path: Path, zipmap: bool) -> None:
    t = train("cancer", tmp_path / "b.onnx", zipmap=zipmap, C=0.01)
    scores = score_model(t.path, t.csv, label="target", task="classification", repeats=1)
    labels, proba = run_onnx(t.path, t.x)
    proba = np.array([[row[0], row[1]] for row in proba]) if zipmap else np.asarray(proba, np.float64)
    assert scores.metrics["f1_macro"] == pytest.approx(skm.f1_score(t.y, labels, average="macro"), abs=TOL)
    assert scores.metrics["log_loss"] == pytest.approx(skm.log_loss(t.y, proba, labels=[0, 1]), abs=TOL)
    assert scores.confusion == {"labels": [0, 1], "matrix": skm.confusion_matrix(t.y, labels).tolist()}
    assert len(scores.importance) == 30


def test_regressor_metrics_and_importance_match_sklearn(tmp_path: Path) -> None:
    t = train("diabetes", tmp_path / "r.onnx")
    scores = score_model(t.path, t.csv, label="target", task="regression", repeats=3, seed=1)
    pred = np.asarray(run_onnx(t.path, t.x)[0], np.float64).reshape(-1)
    assert scores.metrics["rmse"] == pytest.approx(skm.root_mean_squared_error(t.y, pred), abs=TOL)
    assert scores.metrics["mae"] == pytest.approx(skm.mean_absolute_error(t.y, pred), abs=TOL)
    assert scores.metrics["r2"] == pytest.approx(skm.r2_score(t.y, pred), abs=TOL)
    assert set(scores.metrics) == {"rmse", "mae", "r2"} and scores.confusion is None
    sk = sk_importance(OnnxEstimator(t.path, regression=True), t.x, t.y, scoring="r2", n_repeats=3, random_state=1)
    ours = {i["feature"]: i for i in scores.importance}
    for j, name in enumerate(t.names):
        assert ours[name]["mean"] == pytest.approx(sk.importances_mean[j], abs=TOL)
        assert ours[name]["std"] == pytest.approx(sk.importances_std[j], abs=TOL)
    assert scores.importance_metric == "r2" and scores.importance[0]["mean"] > 0.05  # some feature matters


@pytest.mark.parametrize("seed", range(6))
def test_label_sets_that_differ_between_truth_and_prediction(seed: int) -> None:
    """Classes never predicted, predictions of classes not in the truth: the zero-division cases."""
    rng = np.random.default_rng(seed)
    kinds: list[Any] = [np.array(["a", "b", "c", "d"]), np.array([3, 7, 11, 20, 21])]
    values = kinds[seed % 2]
    y_true = rng.choice(values[:-1], size=40)
    y_pred = rng.choice(values[1:], size=40)
    ours, confusion = m.classification(y_true, y_pred)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    for name, fn in (("f1_macro", skm.f1_score), ("precision_macro", skm.precision_score),
                     ("recall_macro", skm.recall_score)):
        assert ours[name] == pytest.approx(fn(y_true, y_pred, average="macro", zero_division=0), abs=TOL), name
    assert confusion["matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()


def test_log_loss_clips_like_sklearn_and_needs_the_true_class() -> None:
    y = np.array([0, 1, 2, 1])
    proba = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.7, 0.1]])
    assert m.log_loss(y, proba, [0, 1, 2]) == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2]), abs=TOL)
    assert m.log_loss(np.array([0, 5]), proba[:2], [0, 1, 2]) is None  # 5 is not a class of the model


def test_r2_of_constant_truth_is_finite_as_in_sklearn() -> None:
    y = np.array([2.0, 2.0, 2.0])
    assert m.r2(y, y) == skm.r2_score(y, y) == 1.0
    assert m.r2(y, np.array([1.0, 2.0, 3.0])) == skm.r2_score(y, np.array([1.0, 2.0, 3.0])) == 0.0


def test_lower_is_better_names() -> None:
    assert all(m.lower_is_better(n) for n in ("log_loss", "rmse", "mae", "hinge_loss", "mean_error"))
    assert not any(m.lower_is_better(n) for n in ("accuracy", "f1_macro", "r2", "precision_macro"))


def test_probability_columns_without_the_onnx_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the graph's class labels, sorted labels that agree with every row's argmax name the columns."""
    from mlops.evaluation import onnxmodel

    t = train("iris", tmp_path / "m.onnx", C=0.05)
    with_graph = score_model(t.path, t.csv, label="target", task="classification", repeats=1)
    monkeypatch.setattr(onnxmodel, "_graph_classes", lambda path: None)
    without = score_model(t.path, t.csv, label="target", task="classification", repeats=1)
    assert without.metrics["log_loss"] == with_graph.metrics["log_loss"]
