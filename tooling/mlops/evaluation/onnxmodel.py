"""Running a registered ONNX model on a feature table with onnxruntime, as skl2onnx exports them.

The input is the model's first input: the features in CSV column order (label left out), as
``float32`` (or ``float64`` when the input is ``tensor(double)``), fed in chunks. A classifier's first
output is the predicted label (``tensor(int64)`` or ``tensor(string)``); its probabilities, when it
has them, are the next output: a ``[N, classes]`` tensor, or skl2onnx's ZipMap (a list of
``{label: probability}`` dicts). A regressor's first output is the prediction (``[N]`` or ``[N, 1]``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import EvaluationError
from mlops.registry.records import ModelVersion
from mlops.store.protocol import ArtifactStore

CHUNK_ROWS = 8192  # rows per session.run: bounds onnxruntime's own buffers on large data
_FLOATS = {"tensor(float)": "float32", "tensor(double)": "float64"}


@dataclass(frozen=True)
class Prediction:
    """What the model said about every row. ``classes`` orders the columns of ``proba`` (None when
    the model gave no probabilities, or their labels could not be told)."""

    labels: Any  # numpy.ndarray: class labels (classification) or float64 values (regression)
    proba: Any | None = None  # numpy.ndarray float64 [N, classes]
    classes: list[Any] | None = None


@contextlib.contextmanager
def version_file(store: ArtifactStore, mv: ModelVersion) -> Iterator[Path]:
    """A verified copy of the version's ``.onnx`` file, in a temporary directory removed afterwards."""
    onnx = [f for f in mv.files if f.path.endswith(".onnx")]
    if not onnx:
        raise EvaluationError(f"{mv.ref} has no .onnx file (flavor {mv.flavor}; files: "
                              f"{', '.join(f.path for f in mv.files)}): mlops scores ONNX models")
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
        path = Path(tmp) / "model.onnx"
        store.get_file(onnx[0].digest, path)
        yield path


def session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime session on the CPU with ``threads`` intra-op threads (one: stable timings,
    and it leaves the machine's other cores to others)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        raise EvaluationError(f"not a loadable ONNX model: {e}") from None


class OnnxModel:
    """An ONNX model that takes one table of numeric features."""

    def __init__(self, path: Path, task: str, what: str):
        self.what = what
        self.task = task
        self.session = session(path)
        inputs = self.session.get_inputs()
        first = inputs[0]
        if first.type not in _FLOATS:
            raise EvaluationError(f"{what}: its first input {first.name!r} is {first.type}; mlops feeds the "
                                  "features as one float tensor")
        if len(inputs) > 1:
            raise EvaluationError(f"{what}: it takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                                  "mlops feeds the features as one float tensor")
        self.input = first.name
        self.dtype = _FLOATS[first.type]
        shape = list(first.shape or [])
        self.width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        self.chunk = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else CHUNK_ROWS
        self.outputs = self.session.get_outputs()
        self._path = path
        self._classes: list[Any] | None | bool = False  # False: not looked up yet

    def predict(self, features: Any) -> Prediction:
        """The model's prediction for every row of ``features`` ([N, F] float64)."""
        import numpy as np

        if features.ndim != 2 or (self.width is not None and features.shape[1] != self.width):
            raise EvaluationError(f"{self.what}: the data has {features.shape[-1]} feature columns, the model's "
                                  f"input {self.input!r} takes {self.width}")
        x = features.astype(self.dtype)
        labels, probas = [], []
        for start in range(0, len(x), self.chunk):
            part = x[start:start + self.chunk]
            if len(part) < self.chunk and self.chunk != CHUNK_ROWS:  # a fixed batch dimension: pad the last one
                part = np.concatenate([part, np.repeat(part[-1:], self.chunk - len(part), axis=0)])
            try:
                out = self.session.run(None, {self.input: part})
            except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
                raise EvaluationError(f"{self.what}: onnxruntime failed to run it: {str(e)[:300]}") from None
            n = min(self.chunk, len(x) - start)
            labels.append(np.asarray(out[0]).reshape(len(part), -1)[:n] if self.task == "regression"
                          else np.asarray(out[0]).reshape(-1)[:n])
            if self.task == "classification" and len(out) > 1:
                probas.append(self._proba(out[1])[:n])
        if self.task == "regression":
            values = np.concatenate(labels).astype(np.float64)
            if values.shape[1] != 1:
                raise EvaluationError(f"{self.what}: a regressor must predict one value per row, it gives "
                                      f"{values.shape[1]}")
            values = values.reshape(-1)
            if not np.all(np.isfinite(values)):
                raise EvaluationError(f"{self.what}: it predicted NaN or infinity for "
                                      f"{int(np.sum(~np.isfinite(values)))} row(s)")
            return Prediction(values)
        predicted = np.concatenate(labels)
        if predicted.dtype.kind not in "iuUSO":
            raise EvaluationError(f"{self.what}: a classifier's first output must be its labels "
                                  f"(int64 or string), not {self.outputs[0].type}")
        if predicted.dtype.kind in "SO":
            predicted = predicted.astype(str)
        if not probas or any(p is None for p in probas):
            return Prediction(predicted)
        zipmap = [p for p in probas if isinstance(p, tuple)]
        if zipmap:
            classes = zipmap[0][1]
            proba = np.concatenate([p[0] for p in zipmap])
        else:
            proba = np.concatenate(probas)
            classes = self.classes(proba.shape[1])
        return Prediction(predicted, proba, classes)

    def _proba(self, value: Any) -> Any:
        """Probabilities as float64 [rows, classes]; a ZipMap comes back as (array, its labels)."""
        import numpy as np

        if isinstance(value, list):  # ZipMap: one {label: probability} per row, every row the same labels
            if not value:
                return np.zeros((0, 0))
            classes = sorted(value[0])
            return np.array([[row[c] for c in classes] for row in value], dtype=np.float64), classes
        arr = np.asarray(value)
        if arr.dtype.kind != "f" or arr.ndim != 2:
            return None  # not probabilities: leave them out
        return arr.astype(np.float64)

    def classes(self, n: int) -> list[Any] | None:
        """The class label of each probability column, from the classifier node of the graph (skl2onnx
        writes them as ``classlabels_*`` attributes), when the onnx package is there to read it."""
        if self._classes is False:
            self._classes = _graph_classes(self._path)
        found = self._classes
        return found if isinstance(found, list) and len(found) == n else None


def _graph_classes(path: Path) -> list[Any] | None:
    try:
        import onnx
    except ImportError:
        return None
    try:
        graph = onnx.load(str(path)).graph
    except Exception:  # noqa: BLE001 - a model onnxruntime loads but onnx cannot: fall back
        return None
    found: list[list[Any]] = []
    for node in graph.node:
        for a in node.attribute:
            if a.name in ("classlabels_ints", "classlabels_int64s") and a.ints:
                found.append([int(v) for v in a.ints])
            elif a.name == "classlabels_strings" and a.strings:
                found.append([v.decode() for v in a.strings])
    distinct = {tuple(f) for f in found}
    return list(distinct.pop()) if len(distinct) == 1 else None
