"""The baseline of a model version: its training data, named in its lineage at registration.

At registration (``mlops.apply.executors.registry``) the reference a version's live inputs are later
compared with is fixed: which data (``monitoring.reference`` of the model spec, or the tabular input
nearest the model's artifact in its pipeline that is not its evaluation data), the digest of the
bytes the run recorded, the label column, the feature names in order (the columns of a model's one
2-D input tensor are these features), and a compact profile (``profile.profile_table``). It is stored
in ``Lineage.training_data``, so ``mlops monitor ENDPOINT`` needs no more configuration, and a later
edit of the spec cannot change what an old version is compared with.

The record is untrusted when read back: ``read_baseline`` checks its shape.
"""

from __future__ import annotations

import re
import tempfile
from collections import deque
from pathlib import Path, PurePosixPath
from typing import Any

from mlops.errors import MonitorError
from mlops.spec.model import Model, Pipeline, data_source
from mlops.store.protocol import ArtifactStore

TABULAR = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".arrow", ".feather", ".ipc")
MAX_PROFILED_BYTES = 2 << 30  # larger training data keeps its digest but gets no profile at registration
_STEP_REF = re.compile(r"\$\{steps\.([^.{}]+)\.outputs\.([^.{}]+)\}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_tabular(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in TABULAR


def default_reference(model: Model, pipeline: Pipeline) -> str | None:
    """``STEP.OUTPUT`` of the tabular data nearest the model's artifact (breadth first through the
    steps' inputs), leaving out the evaluation data; None when there is none."""
    if not model.source.artifact:
        return None
    held_out = model.evaluation.data if model.evaluation is not None else None
    start = model.source.artifact.partition(".")[0]
    steps = {s.name: s for s in pipeline.steps}
    queue, seen = deque([start]), {start}
    while queue:
        step = steps.get(queue.popleft())
        if step is None:
            continue
        for value in step.inputs.values():
            m = _STEP_REF.fullmatch(value)
            if m is None or m.group(1) not in steps:
                continue
            ref = f"{m.group(1)}.{m.group(2)}"
            rel = steps[m.group(1)].outputs.get(m.group(2), "")
            if ref != held_out and is_tabular(rel):
                return ref
            if m.group(1) not in seen:
                seen.add(m.group(1))
                queue.append(m.group(1))
    return None


def training_baseline(store: ArtifactStore, model: Model, pipeline: Pipeline, run: Any) -> dict[str, Any] | None:
    """The ``training_data`` lineage entry of a version built by ``run`` (a pipeline run record), or
    None when the model has no tabular training data in its pipeline. MonitorError when the spec names
    a reference that the run did not record or that cannot be read as a table."""
    ref = model.monitoring.reference or default_reference(model, pipeline)
    if ref is None:
        return None
    where = f"{model.file or model.name}: $.monitoring.reference"
    kind, step, out = data_source(ref, {s.name for s in pipeline.steps})
    if kind != "step":
        return None  # a dataset or repository file: compared by path at monitor time, nothing to pin here
    try:
        digest = run.step(step).outputs[out]
        rel = pipeline.step(step).outputs[out]
    except (KeyError, TypeError, AttributeError):
        raise MonitorError(f"{where}: the run {getattr(run, 'run_id', '?')} recorded no output {ref}") from None
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest) or not is_tabular(rel):
        return None  # a directory output, or no table: nothing to profile
    label = model.monitoring.label or (model.evaluation.label if model.evaluation is not None else None)
    entry: dict[str, Any] = {"reference": ref, "path": rel, "digest": digest, "label": label,
                             "features": None, "rows": None, "profile": None}
    table = load_blob_table(store, digest, rel, where, max_bytes=MAX_PROFILED_BYTES)
    if table is None:
        return entry
    from mlops.monitoring.profile import profile_table

    features = [c for c in table.column_names if c != label]
    entry.update(features=features, rows=table.num_rows, profile=profile_table(table.select(features)))
    return entry


def load_blob_table(store: ArtifactStore, digest: str, rel: str, where: str, *, max_bytes: int | None = None) -> Any:
    """The table in blob ``digest`` (read as its name ``rel`` says), or None when it is over ``max_bytes``."""
    from mlops.monitoring.columns import read_table

    with tempfile.TemporaryDirectory(prefix="mlops-baseline-") as tmp:
        path = Path(tmp) / ("data" + PurePosixPath(rel).suffix.lower())
        try:
            store.get_file(digest, path)
        except (OSError, KeyError) as e:
            raise MonitorError(f"{where}: the training data {rel} ({digest[:12]}) is not in the store: {e}") from None
        if max_bytes is not None and path.stat().st_size > max_bytes:
            return None
        return read_table(path)


def read_baseline(lineage: Any, where: str) -> dict[str, Any] | None:
    """A version's ``training_data`` lineage entry, checked (records are untrusted); None when absent."""
    entry = getattr(lineage, "training_data", None)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise MonitorError(f"{where}: lineage.training_data is not an object")
    digest, rel, features = entry.get("digest"), entry.get("path"), entry.get("features")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise MonitorError(f"{where}: lineage.training_data.digest is not a sha256")
    if not isinstance(rel, str) or not is_tabular(rel):
        raise MonitorError(f"{where}: lineage.training_data.path is not a table's file name")
    if features is not None and not (isinstance(features, list) and all(isinstance(f, str) for f in features)):
        raise MonitorError(f"{where}: lineage.training_data.features is not a list of names")
    label = entry.get("label")
    if label is not None and not isinstance(label, str):
        raise MonitorError(f"{where}: lineage.training_data.label is not a name")
    profile = entry.get("profile")
    if profile is not None and not isinstance(profile, dict):
        raise MonitorError(f"{where}: lineage.training_data.profile is not an object")
    return entry
