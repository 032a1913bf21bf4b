"""Real small ONNX models for the evaluation and gate tests: scikit-learn estimators trained on its
bundled data sets, converted with skl2onnx, and the held-out rows as CSV bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Trained:
    path: Path  # the .onnx file
    csv: bytes  # held-out rows: features, then the label column "target"
    x: Any  # held-out features (float64)
    y: Any  # held-out labels (as trained)
    names: list[str]


def split(dataset: str) -> tuple[Any, Any, Any, Any, list[str]]:
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
    from sklearn.model_selection import train_test_split

    data = {"iris": load_iris, "wine": load_wine, "diabetes": load_diabetes, "cancer": load_breast_cancer}[dataset]()
    x, y = data.data, data.target
    strat = None if dataset == "diabetes" else y
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=strat)
    names = [n.replace(" ", "_").replace("(", "").replace(")", "") for n in data.feature_names]
    return x_tr, x_te, y_tr, y_te, names


def to_csv(x: Any, y: Any, names: list[str], label: str = "target") -> bytes:
    lines = [",".join([*names, label])]
    lines += [",".join([*(repr(float(v)) for v in row), str(t)]) for row, t in zip(x, y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def train(dataset: str, path: Path, *, kind: str = "logistic", zipmap: bool = False, string_labels: bool = False,
          features: int | None = None, C: float = 1.0, input_name: str = "input") -> Trained:
    """A classifier (``logistic``: standardised LogisticRegression; ``tree``: a depth-1 decision tree, a
    deliberately worse model) or, for ``diabetes``, a Ridge regressor; ``features``: only the first N columns."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    x_tr, x_te, y_tr, y_te, names = split(dataset)
    if features is not None:
        x_tr, x_te, names = x_tr[:, :features], x_te[:, :features], names[:features]
    if string_labels:
        classes = np.array(["setosa", "versicolor", "virginica", "x3", "x4"])
        y_tr, y_te = classes[y_tr], classes[y_te]
    if dataset == "diabetes":
        est: Any = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    elif kind == "tree":
        est = DecisionTreeClassifier(max_depth=1, random_state=0)
    else:
        est = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    est.fit(x_tr, y_tr)
    options = None
    if dataset != "diabetes":
        clf = est.steps[-1][1] if hasattr(est, "steps") else est
        options = {id(clf): {"zipmap": zipmap}}
    onx = to_onnx(est, initial_types=[(input_name, FloatTensorType([None, x_tr.shape[1]]))], options=options,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(onx.SerializeToString())
    return Trained(path, to_csv(x_te, y_te, names), x_te, y_te, names)


def run_onnx(path: Path, x: Any) -> list[Any]:
    """The model's raw outputs on ``x`` (float32), as onnxruntime gives them."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})
