"""Scoring a model version on its held-out data, and the cached record of it.

    ev = evaluate_version(store, specs.models["wine-classifier"], 3, root)   # scored once, then reused
    ev.metrics["accuracy"], ev.confusion, ev.importance

``Evaluator`` is the same for several versions of one model: it resolves the data once, so a
champion and its challenger are scored on the very same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import EvaluationError
from mlops.evaluation.data import EvalData, read_table, resolve_data
from mlops.registry.records import ModelVersion
from mlops.release.evaluations import Evaluation, load_evaluation, save_evaluation, settings_digest
from mlops.spec.model import Dataset, Model
from mlops.store.protocol import ArtifactStore


@dataclass(frozen=True)
class Scores:
    """What scoring a model on a table gave (an Evaluation without who, when and which data)."""

    rows: int
    metrics: dict[str, float]
    confusion: dict[str, Any] | None
    importance: list[dict[str, Any]]
    importance_metric: str


def score_model(model_path: Path, content: bytes, *, label: str, task: str, repeats: int = 5, seed: int = 0,
                where: str = "data", what: str = "the model") -> Scores:
    """Score the ONNX model at ``model_path`` on the CSV ``content``: metrics, confusion matrix
    (classifiers) and permutation importance on the primary metric (accuracy or r2)."""
    from mlops.evaluation import metrics as m
    from mlops.evaluation.importance import permutation_importance
    from mlops.evaluation.onnxmodel import OnnxModel

    if task not in m.PRIMARY:
        raise EvaluationError(f"unknown task {task!r}: classification or regression")
    table = read_table(content, label, where)
    model = OnnxModel(model_path, task, what)
    pred = model.predict(table.features)
    y_true = _truth(table.labels, pred.labels, task, where, label)

    def primary(features: Any) -> float:
        return m.score(task, y_true, model.predict(features).labels)

    confusion = None
    if task == "classification":
        classes = pred.classes if pred.classes is not None else _classes_from_rows(y_true, pred)
        metrics, confusion = m.classification(y_true, pred.labels, pred.proba, classes)
    else:
        metrics = m.regression(y_true, pred.labels)
    importance = permutation_importance(primary, table.features, table.names, repeats, seed)
    return Scores(len(y_true), metrics, confusion, importance, m.PRIMARY[task])


def _truth(text: Any, predicted: Any, task: str, where: str, label: str) -> Any:
    """The label column as values comparable with the model's: numbers for a regressor or a classifier
    of integer labels, text for a classifier of string labels."""
    import numpy as np

    if task == "classification" and predicted.dtype.kind in "US":
        return text.astype(str)
    try:
        values = text.astype(np.float64)
    except ValueError:
        bad = next(v for v in text if not _is_number(v))
        raise EvaluationError(f"{where}: label {bad[:40]!r} in column {label!r} is not a number, and the model "
                              "predicts numbers") from None
    finite = np.isfinite(values)
    if not finite.all():
        bad = str(text[int(np.argmin(finite))])
        raise EvaluationError(f"{where}: label {bad[:40]!r} in column {label!r} is not a finite number")
    if task == "regression":
        return values
    if not np.all(values == np.round(values)):
        raise EvaluationError(f"{where}: column {label!r} holds fractional labels; the classifier predicts integers")
    return values.astype(np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _classes_from_rows(y_true: Any, pred: Any) -> list[Any] | None:
    """The probability columns' labels when the graph does not say: scikit-learn orders a classifier's
    classes sorted, so the sorted labels seen are them when there are as many as columns and every
    row's most probable column is its predicted label."""
    import numpy as np

    if pred.proba is None:
        return None
    seen = np.unique(np.concatenate([y_true, pred.labels]))
    if len(seen) != pred.proba.shape[1] or not np.all(seen[np.argmax(pred.proba, axis=1)] == pred.labels):
        return None
    return [v.item() for v in seen]


class Evaluator:
    """Scores versions of one model on its held-out data: resolved once per data reference, each
    evaluation recorded and reused. It is the ``EvaluationProvider`` the gates use."""

    def __init__(self, store: ArtifactStore, model: Model, root: Path,
                 datasets: Mapping[str, Dataset] | None = None):
        self.store = store
        self.model = model
        self.root = Path(root)
        self.datasets = datasets
        self._data: dict[str | None, EvalData] = {}

    def data(self, ref: str | None = None) -> EvalData:
        """The bytes scored for ``ref`` (default: the spec's ``evaluation.data``), resolved once."""
        if ref not in self._data:
            self._data[ref] = resolve_data(self.store, self.model, self.root, ref, self.datasets)
        return self._data[ref]

    def cached(self, version: int, ref: str | None = None) -> Evaluation | None:
        """The recorded evaluation of ``version`` on this data with these settings, if any."""
        data = self.data(ref)
        return load_evaluation(self.store, self.model.name, version, data.digest, self._settings())

    def __call__(self, version: ModelVersion | int, ref: str | None = None) -> Evaluation:
        """The evaluation of ``version`` on the data (the recorded one when there is one)."""
        from mlops.evaluation.onnxmodel import version_file
        from mlops.registry.lineage import registered_by
        from mlops.registry.models import get_model

        mv = version if isinstance(version, ModelVersion) else get_model(self.store, self.model.name, version)
        if mv.name != self.model.name:
            raise EvaluationError(f"{mv.ref} is not a version of model {self.model.name!r}")
        found = self.cached(mv.version, ref)
        if found is not None:
            return found
        data = self.data(ref)
        spec = self.model.evaluation
        assert spec is not None  # resolve_data refused a model without one
        where = f"{data.ref} ({data.digest[:12]})"
        with version_file(self.store, mv) as path:
            scores = score_model(path, data.content, label=spec.label, task=spec.task, repeats=spec.repeats,
                                 seed=spec.seed, where=where, what=mv.ref)
        ev = Evaluation(model=mv.name, version=mv.version, data=data.ref, data_digest=data.digest, task=spec.task,
                        label=spec.label, rows=scores.rows, metrics=scores.metrics, confusion=scores.confusion,
                        importance=scores.importance, importance_metric=scores.importance_metric,
                        repeats=spec.repeats, seed=spec.seed, at=_now(), by=registered_by())
        return save_evaluation(self.store, ev)

    def _settings(self) -> str:
        spec = self.model.evaluation
        assert spec is not None
        return settings_digest(spec.label, spec.task, spec.repeats, spec.seed)


def _now() -> str:
    """UTC with microseconds: records of one version sort by it (the newest is the one reused)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def evaluate_version(store: ArtifactStore, model_spec: Model, version: ModelVersion | int, root: Path,
                     datasets: Mapping[str, Dataset] | None = None) -> Evaluation:
    """``model_spec``'s ``version`` scored on its ``evaluation.data`` with onnxruntime, recorded in the
    store, or the record of an earlier scoring of the same bytes with the same settings.
    ``datasets`` (the specs' datasets) are needed only when the data is ``${datasets.NAME}``; without
    them the working tree's specs are read."""
    return Evaluator(store, model_spec, root, datasets)(version)
