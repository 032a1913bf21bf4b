"""The held-out data a model is scored on: found from its spec, read with bounded memory, parsed as a table.

``evaluation.data`` names one CSV file:

* ``STEP.OUTPUT`` (a step of the model's pipeline): the bytes the pipeline's latest successful run
  recorded for that output, read from the store by digest, never the workspace file (which may have
  been edited, or swapped for a link, since the run);
* ``${datasets.NAME}``: the dataset's path in the repository;
* a repository path.

Repository files are read confined to the repository (``mlops.paths``: no link out of it, never
``.git`` or ``.mlops``). Data files larger than ``MAX_DATA_BYTES`` are refused, so scoring never needs
more memory than a few copies of that much.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import EvaluationError, PathError
from mlops.spec.model import STEP_OUTPUT_RE, Dataset, Model
from mlops.store.protocol import ArtifactStore

MAX_DATA_BYTES = 64 * 1024 * 1024  # documented in the README (Release: evaluation)


@dataclass(frozen=True)
class EvalData:
    """One data file to score on: as the spec names it, its sha256 and its bytes."""

    ref: str
    digest: str
    content: bytes


@dataclass(frozen=True)
class Table:
    """A CSV split into numeric features (``float64``, rows x features, in column order) and the label column (text)."""

    features: Any  # numpy.ndarray
    names: tuple[str, ...]
    labels: Any  # numpy.ndarray of str


def resolve_data(store: ArtifactStore, model: Model, root: Path, ref: str | None = None,
                 datasets: Mapping[str, Dataset] | None = None) -> EvalData:
    """The bytes ``ref`` (default: the model's ``evaluation.data``) names. ``datasets`` are the specs'
    datasets; when left out and ``ref`` names one, the working tree's specs are read."""
    where = f"{model.file or model.name}: $.evaluation.data"
    if model.evaluation is None:
        raise EvaluationError(f"{model.file or model.name}: model {model.name!r} has no evaluation data: add "
                              "evaluation: {data: STEP.OUTPUT | ${datasets.NAME} | PATH, label: COLUMN, task: "
                              "classification | regression}")
    ev = model.evaluation if ref is None else _with_data(model, ref)
    # Only STEP.OUTPUT needs the run records (reading them all costs time with a long history).
    run = _latest_run(store, model.source.pipeline) if model.source.pipeline and ev.step_shaped() else None
    steps = {s.name: s for s in run.steps} if run is not None else {}
    kind, name, out = ev.source(steps)
    if kind == "step":
        return _step_output(store, where, ev.data, run, name, out)
    if kind == "dataset":
        if datasets is None:
            from mlops.spec.loader import load_specs

            datasets = load_specs(root).datasets
        if name not in datasets:
            raise EvaluationError(f"{where}: dataset {name!r} does not exist")
        return _repo_file(root, where, ev.data, datasets[name].path)
    if model.source.pipeline and STEP_OUTPUT_RE.fullmatch(name) and not (root / name).exists():
        raise EvaluationError(f"{where}: pipeline {model.source.pipeline!r} has no successful run with a step "
                              f"{name.partition('.')[0]!r} recorded in {store.url}: run `mlops run "
                              f"{model.source.pipeline}` (or reconcile) first")
    return _repo_file(root, where, ev.data, name)


def _with_data(model: Model, ref: str) -> Any:
    import dataclasses

    assert model.evaluation is not None
    return dataclasses.replace(model.evaluation, data=ref)


def _latest_run(store: ArtifactStore, pipeline: str) -> Any:
    from mlops.pipelines.record import list_runs

    runs = [r for r in list_runs(store, pipeline) if r.status == "succeeded"]
    return runs[-1] if runs else None


def _step_output(store: ArtifactStore, where: str, ref: str, run: Any, step: str, out: str) -> EvalData:
    record = run.step(step)
    digest = record.outputs.get(out)
    what = f"output {out!r} of step {step!r} in run {run.run_id} of pipeline {run.pipeline!r}"
    if not isinstance(digest, str):
        raise EvaluationError(f"{where}: the run recorded no {what}")
    if not store.has_blob(digest):
        raise EvaluationError(f"{where}: {what} is no file in {store.url} (a directory, or its blob was "
                              "removed): evaluation data must be one CSV file")
    with tempfile.TemporaryDirectory(prefix="mlops-eval-") as tmp:
        path = Path(tmp) / "data.csv"
        store.get_file(digest, path)  # verified against its digest; sized before it is read into memory
        size = path.stat().st_size
        if size > MAX_DATA_BYTES:
            raise EvaluationError(_too_large(where, what, size))
        content = path.read_bytes()
    return EvalData(ref, digest, content)


def _repo_file(root: Path, where: str, ref: str, rel: str) -> EvalData:
    from mlops import paths

    try:
        real = paths.resolve_inside(root, rel)
        if real.is_dir():
            raise EvaluationError(f"{where}: {rel} is a directory: evaluation data must be one CSV file")
        size = real.stat().st_size if real.exists() else 0
        if size > MAX_DATA_BYTES:
            raise EvaluationError(_too_large(where, rel, size))
        content = paths.read_bytes_inside(root, rel, MAX_DATA_BYTES)
    except PathError as e:
        raise EvaluationError(f"{where}: {e}") from None
    except FileNotFoundError:
        raise EvaluationError(f"{where}: {rel} does not exist") from None
    return EvalData(ref, hashlib.sha256(content).hexdigest(), content)


def _too_large(where: str, what: str, size: int) -> str:
    return (f"{where}: {what} has {size} bytes; evaluation data may have at most {MAX_DATA_BYTES} "
            "(score a sample of the held-out rows)")


def read_table(content: bytes, label: str, where: str) -> Table:
    """The features and labels of a CSV with a header row. EvaluationError (naming ``where``, the line
    and the column) when it is not one: no label column, a value that is not a number, a short row."""
    import numpy as np

    if len(content) > MAX_DATA_BYTES:
        raise EvaluationError(_too_large(where, "the data", len(content)))
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EvaluationError(f"{where}: not UTF-8 text (at byte offset {e.start}): evaluation data must be a CSV file") from None
    header_line, _, body = text.partition("\n")
    header = [h.strip() for h in next(csv.reader([header_line]), [])]
    if label not in header:
        close = difflib.get_close_matches(label, header, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EvaluationError(f"{where}: the header has no label column {label!r}{hint}; columns: "
                              + ", ".join(header[:20]) + (" ..." if len(header) > 20 else ""))
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        raise EvaluationError(f"{where}: the header names column(s) {', '.join(map(repr, dupes))} twice")
    li = header.index(label)
    fi = [i for i in range(len(header)) if i != li]
    if not fi:
        raise EvaluationError(f"{where}: the data has no feature columns besides {label!r}")
    if not body.strip():
        raise EvaluationError(f"{where}: the data has a header but no rows")
    opts: dict[str, Any] = {"delimiter": ",", "skiprows": 1, "quotechar": '"', "comments": None, "encoding": None}
    try:
        features = np.loadtxt(io.StringIO(text), dtype=np.float64, usecols=fi, ndmin=2, **opts)
        labels = np.loadtxt(io.StringIO(text), dtype=str, usecols=[li], ndmin=1, **opts)
    except ValueError:
        raise EvaluationError(f"{where}: {_first_bad_row(text, header, li)}") from None
    finite = np.isfinite(features)
    if not finite.all():  # nan, inf and overflowing numbers like 1e999 parse, but no model scores them
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise EvaluationError(f"{where}: data row {row + 1}, column {header[fi[col]]!r}: "
                              f"{features[row, col]} is not a finite number")
    return Table(features, tuple(header[i] for i in fi), np.char.strip(labels))


def _first_bad_row(text: str, header: list[str], label_index: int) -> str:
    """Where numpy's parser gave up, said as a person counts: line and column name."""
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if n == 1 or not row:
            continue
        if len(row) != len(header):
            return f"line {n} has {len(row)} fields, the header {len(header)}"
        for i, value in enumerate(row):
            if i == label_index:
                continue
            try:
                float(value)
            except ValueError:
                return f"line {n}, column {header[i]!r}: {value.strip()[:40]!r} is not a number"
    return "not a CSV table of numbers"
