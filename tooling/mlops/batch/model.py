"""The ONNX model of a batch run: a table of features in, one row of predictions per row out.

Inputs, as scikit-learn models exported by skl2onnx take them:

* one float tensor ``[N, F]``: the input's feature columns (all but the id), in file order; F must match;
* or one float tensor per feature (``[N]`` or ``[N, 1]``), each named after its column: matched by name.

Outputs: a classifier (first output ``tensor(int64)`` or ``tensor(string)``) gives ``label`` and, when it
has them, one ``probability_<class>`` column per class: from a ZipMap (skl2onnx's default: the classes
are its keys) or a ``[N, classes]`` tensor (``probability_0``... in the model's class order). A regressor
(first output a float tensor) gives ``prediction`` (``prediction_<i>`` for several targets). A mini-batch
that onnxruntime refuses is scored again row by row, so that only the rows it fails on are set aside;
a prediction that is not finite sets its row aside too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops.errors import BatchError

_FLOATS = {"tensor(float)": np.float32, "tensor(double)": np.float64}
_LABELS = ("tensor(int64)", "tensor(int32)", "tensor(string)")


@dataclass
class Scored:
    """Predictions for the rows that scored (``ok``: which of the mini-batch's rows those are)."""

    columns: list[Any]  # one numpy array per output column, rows that scored only
    ok: Any  # numpy bool [rows of the mini-batch]
    failed: list[tuple[int, str]]  # (index in the mini-batch, reason)


class BatchModel:
    """An onnxruntime session on one ``.onnx`` file, bound to an input's feature columns."""

    def __init__(self, path: Path, what: str, threads: int = 1):
        import onnxruntime as ort

        self.what = what
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
            raise BatchError(f"{what}: not a loadable ONNX model: {str(e)[:300]}") from None
        self.inputs = self.session.get_inputs()
        for i in self.inputs:
            if i.type not in _FLOATS:
                raise BatchError(f"{what}: its input {i.name!r} is {i.type}; batch scoring feeds float tensors")
        outputs = self.session.get_outputs()
        first = outputs[0]
        if first.type in _LABELS:
            self.task = "classification"
            self.outputs = [o.name for o in outputs[:2]]
            self.zipmap = len(outputs) > 1 and outputs[1].type.startswith("seq(map(")
        elif first.type in _FLOATS:
            self.task, self.outputs, self.zipmap = "regression", [first.name], False
        else:
            raise BatchError(f"{what}: its first output {first.name!r} is {first.type}: neither labels (int64, "
                             "string) nor predictions (float)")
        shape = list(self.inputs[0].shape or [])
        self.fixed = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
        self.names: list[str] = []
        self.classes: list[Any] = []
        self.feed_kind = "matrix"
        self.index: list[int] = []

    def bind(self, columns: list[str]) -> list[str]:
        """Match the input's feature ``columns`` to the model's inputs; the output column names."""
        if len(self.inputs) == 1:
            shape = list(self.inputs[0].shape or [])
            width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
            if len(shape) != 2:
                raise BatchError(f"{self.what}: its input {self.inputs[0].name!r} has shape {shape}; batch scoring "
                                 "feeds a [rows, features] table")
            if width is not None and width != len(columns):
                raise BatchError(f"{self.what}: its input {self.inputs[0].name!r} takes {width} features, the input "
                                 f"has {len(columns)} feature columns ({', '.join(columns[:20])})")
            self.feed_kind = "matrix"
        else:
            missing = [i.name for i in self.inputs if i.name not in columns]
            if missing:
                raise BatchError(f"{self.what}: it takes one input per feature; no column for "
                                 f"{', '.join(missing[:10])} in the input ({', '.join(columns[:20])})")
            extra = [c for c in columns if c not in {i.name for i in self.inputs}]
            if extra:
                raise BatchError(f"{self.what}: the input has columns the model does not take: "
                                 f"{', '.join(extra[:10])}")
            self.feed_kind = "named"
            self.index = [columns.index(i.name) for i in self.inputs]
        self.names = self._probe(len(columns))
        return self.names

    def _feed(self, x: Any) -> dict[str, Any]:
        if self.feed_kind == "matrix":
            return {self.inputs[0].name: x.astype(_FLOATS[self.inputs[0].type], copy=False)}
        feed = {}
        for i, j in zip(self.inputs, self.index, strict=True):
            col = x[:, j].astype(_FLOATS[i.type])
            feed[i.name] = col.reshape(-1, 1) if len(i.shape or []) == 2 else col
        return feed

    def _run(self, x: Any) -> list[Any]:
        if self.fixed is None or len(x) == self.fixed:
            out: list[Any] = self.session.run(self.outputs, self._feed(x))
            return out
        parts: list[list[Any]] = []
        for start in range(0, len(x), self.fixed):  # a fixed batch dimension: pad the last piece
            part = x[start:start + self.fixed]
            n = len(part)
            if n < self.fixed:
                part = np.concatenate([part, np.repeat(part[-1:], self.fixed - n, axis=0)])
            parts.append([o[:n] for o in self.session.run(self.outputs, self._feed(part))])
        return [np.concatenate([np.asarray(p[k]) for p in parts]) if not isinstance(parts[0][k], list)
                else [r for p in parts for r in p[k]] for k in range(len(self.outputs))]

    def _probe(self, width: int) -> list[str]:
        """The output columns, from the model's answer on one row of zeros."""
        try:
            out = self._run(np.zeros((1, width)))
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise BatchError(f"{self.what}: onnxruntime cannot run it on {width} features: {str(e)[:300]}") from None
        if self.task == "regression":
            k = int(np.asarray(out[0]).reshape(1, -1).shape[1])
            return ["prediction"] if k == 1 else [f"prediction_{i}" for i in range(k)]
        names = ["label"]
        if len(out) > 1:
            if self.zipmap:
                self.classes = list(out[1][0])
            else:
                proba = np.asarray(out[1])
                if proba.ndim != 2 or proba.dtype.kind != "f":
                    self.outputs = self.outputs[:1]  # not probabilities: leave them out
                    return names
                self.classes = list(range(proba.shape[1]))
            names += [f"probability_{c}" for c in self.classes]
        return names

    def score(self, x: Any) -> Scored:
        """The predictions for the rows of ``x`` ([rows, features] float64)."""
        n = len(x)
        if n == 0:
            return Scored([np.empty(0)] * len(self.names), np.zeros(0, dtype=bool), [])
        try:
            out = self._run(x)
        except Exception:  # noqa: BLE001 - some row breaks the model: find which, one row at a time
            return self._one_by_one(x)
        return self._columns(out, n)

    def _columns(self, out: list[Any], n: int) -> Scored:
        if self.task == "regression":
            values = np.asarray(out[0]).reshape(n, -1)
            cols = [values[:, j] for j in range(values.shape[1])]
            finite = np.isfinite(values).all(axis=1)
        else:
            labels = np.asarray(out[0]).reshape(n)
            cols = [labels.astype(str) if labels.dtype.kind in "SO" else labels]
            finite = np.ones(n, dtype=bool)
            if len(self.outputs) > 1:
                if self.zipmap:
                    proba = np.array([[row[c] for c in self.classes] for row in out[1]], dtype=np.float32)
                else:
                    proba = np.asarray(out[1]).reshape(n, -1)
                cols += [proba[:, j] for j in range(proba.shape[1])]
                finite = np.isfinite(proba).all(axis=1)
        if finite.all():
            return Scored(cols, finite, [])
        failed = [(int(i), "the model predicted a value that is not finite") for i in np.flatnonzero(~finite)]
        return Scored([c[finite] for c in cols], finite, failed)

    def _one_by_one(self, x: Any) -> Scored:
        ok = np.ones(len(x), dtype=bool)
        failed: list[tuple[int, str]] = []
        parts: list[Scored] = []
        for i in range(len(x)):
            try:
                s = self._columns(self._run(x[i:i + 1]), 1)
            except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
                ok[i] = False
                failed.append((i, f"the model failed on it: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"))
                continue
            if s.failed:
                ok[i] = False
                failed.append((i, s.failed[0][1]))
            else:
                parts.append(s)
        if not parts:
            return Scored([np.empty(0)] * len(self.names), ok, failed)
        cols = [np.concatenate([p.columns[k] for p in parts]) for k in range(len(parts[0].columns))]
        return Scored(cols, ok, failed)
