"""Evaluation records: what mlops measured when it scored one model version on held-out data.

    release/models/<model>/evaluations/<version:010d>-<data digest[:16]>-<settings[:8]>.json

Immutable like every release record (``create_record``, never rewritten) and reused: scoring the
same version on the same bytes with the same settings (label, task, importance repeats and seed)
finds the record instead of scoring again. The settings are part of the key so that a changed label
column or seed never reuses a record computed otherwise. Records are untrusted input: a damaged one
is a CorruptRecordError naming it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from mlops.errors import CorruptRecordError
from mlops.store.protocol import ArtifactStore

TASKS = ("classification", "regression")
FIX = "delete that record: mlops scores the version again when it needs it"
_KEY_RE = re.compile(r"(\d{10})-([0-9a-f]{16})-([0-9a-f]{8})\.json")


@dataclass(frozen=True)
class Evaluation:
    """One version scored on one data file. ``confusion`` (classifiers): rows are true labels, columns
    predicted ones. ``importance``: permutation importance of each feature on ``importance_metric``
    (the drop of that metric when the feature's column is shuffled), mean and std over ``repeats``,
    sorted by mean, largest first."""

    model: str
    version: int
    data: str  # what it was scored on, as the spec names it ("prepare.test", "${datasets.x}", a path)
    data_digest: str  # sha256 of the data file scored
    task: str  # classification | regression
    label: str
    rows: int
    metrics: dict[str, float]
    confusion: dict[str, Any] | None
    importance: list[dict[str, Any]]
    importance_metric: str
    repeats: int
    seed: int
    at: str
    by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n").encode()

    @property
    def settings(self) -> str:
        return settings_digest(self.label, self.task, self.repeats, self.seed)


def settings_digest(label: str, task: str, repeats: int, seed: int) -> str:
    """What, besides the data, decides an evaluation's numbers (hex sha256)."""
    doc = json.dumps({"label": label, "task": task, "repeats": repeats, "seed": seed}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


def evaluations_prefix(model: str) -> str:
    return f"release/models/{model}/evaluations/"


def evaluation_key(model: str, version: int, data_digest: str, settings: str) -> str:
    return f"{evaluations_prefix(model)}{version:010d}-{data_digest[:16]}-{settings[:8]}.json"


def save_evaluation(store: ArtifactStore, ev: Evaluation) -> Evaluation:
    """Record ``ev`` (once). When a concurrent scoring recorded the same evaluation first, that
    record is kept and returned: records are never rewritten."""
    from mlops.registry.versions import check_name

    check_name(ev.model, "model")
    _check(ev)
    key = evaluation_key(ev.model, ev.version, ev.data_digest, ev.settings)
    if store.create_record(key, ev.to_json()):
        return ev
    return _read(store, key, ev.model, ev.version)


def load_evaluation(store: ArtifactStore, model: str, version: int, data_digest: str | None = None,
                    settings: str | None = None) -> Evaluation | None:
    """The newest evaluation of ``model@version`` (on ``data_digest``, with ``settings`` when given),
    or None. A damaged record is a CorruptRecordError naming it."""
    found = [ev for ev in list_evaluations(store, model, version)
             if (data_digest is None or ev.data_digest == data_digest) and (settings is None or ev.settings == settings)]
    return found[-1] if found else None


def list_evaluations(store: ArtifactStore, model: str, version: int) -> list[Evaluation]:
    """Every evaluation of ``model@version``, oldest first."""
    from mlops.registry.versions import check_name

    prefix = evaluations_prefix(check_name(model, "model"))
    out = []
    for key in store.list_records(f"{prefix}{version:010d}-"):
        if _KEY_RE.fullmatch(key[len(prefix):]):
            out.append(_read(store, key, model, version))
    return sorted(out, key=lambda ev: ev.at)


def _read(store: ArtifactStore, key: str, model: str, version: int) -> Evaluation:
    from mlops.recordjson import fields_of, parse_json

    where = f"evaluation record {key} in {store.url}"
    raw = store.read_record(key)
    if raw is None:
        raise CorruptRecordError(f"{where} vanished while it was read; {FIX}")
    ev = fields_of(Evaluation, parse_json(raw, where, FIX), where, FIX)
    try:
        _check(ev)
    except ValueError as e:
        raise CorruptRecordError(f"{where}: {e}; {FIX}") from None
    if (ev.model, ev.version) != (model, version) or key != evaluation_key(model, version, ev.data_digest, ev.settings):
        raise CorruptRecordError(f"{where} does not describe the evaluation its key names; {FIX}")
    return ev


def _check(ev: Evaluation) -> None:
    """ValueError when ``ev`` is not a well-formed evaluation (records are read back by cards and gates)."""
    if ev.task not in TASKS:
        raise ValueError(f"task {ev.task!r} is not one of {', '.join(TASKS)}")
    if not re.fullmatch(r"[0-9a-f]{64}", ev.data_digest):
        raise ValueError(f"data digest {ev.data_digest!r} is no sha256")
    if ev.version < 1 or ev.rows < 1 or ev.repeats < 1:
        raise ValueError("version, rows and repeats must be positive")
    if ev.confusion is not None:
        labels, matrix = ev.confusion.get("labels"), ev.confusion.get("matrix")
        if not (isinstance(labels, list) and isinstance(matrix, list) and len(matrix) == len(labels)
                and all(isinstance(r, list) and len(r) == len(labels)
                        and all(isinstance(c, int) and not isinstance(c, bool) for c in r) for r in matrix)):
            raise ValueError("the confusion matrix is not a square list of counts, one row per label")
    for item in ev.importance:
        if not (isinstance(item.get("feature"), str) and all(isinstance(item.get(k), (int, float))
                                                              and not isinstance(item.get(k), bool)
                                                              for k in ("mean", "std"))):
            raise ValueError("an importance entry lacks its feature, mean or std")
