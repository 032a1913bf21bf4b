"""Run records: what one ``run_pipeline`` did, saved as ``runs/<pipeline>/<run_id>.json``.

Run ids sort by time (``20261123T164200123456Z-1a2b3c``), so listing a pipeline's records in key
order lists its runs oldest first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mlops.errors import CorruptRecordError, StoreError
from mlops.recordjson import fields_of, parse_json
from mlops.store.protocol import ArtifactStore

STEP_STATUSES = ("ran", "cached", "failed", "skipped")
FIX = "delete that record (it only describes a past run; `mlops run` makes a new one)"


@dataclass(frozen=True)
class StepRecord:
    """One step of a run. ``inputs``/``outputs`` map names to content digests."""

    name: str
    status: str  # ran | cached | failed | skipped
    duration: float = 0.0
    cache_key: str | None = None
    command: tuple[str, ...] = ()
    environment: str | None = None  # the environment's identity
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    stdout: str | None = None  # blob digest of the captured stdout
    stderr: str | None = None  # blob digest of the captured stderr
    exit_code: int | None = None
    error: str | None = None  # why it failed or was skipped (with the tail of stderr)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "run record") -> StepRecord:
        """Raises CorruptRecordError when ``data`` is not a step record."""
        return fields_of(cls, data, f"{where}: a step", FIX)


@dataclass(frozen=True)
class RunRecord:
    """One run of one pipeline, with the git lineage of the workspace it ran in."""

    run_id: str
    pipeline: str
    status: str  # succeeded | failed
    started: str  # ISO 8601, UTC
    finished: str
    git_commit: str | None = None
    git_author: str | None = None
    git_dirty: bool | None = None
    git_message: str | None = None
    steps: tuple[StepRecord, ...] = ()

    def step(self, name: str) -> StepRecord:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def failed_steps(self) -> tuple[StepRecord, ...]:
        return tuple(s for s in self.steps if s.status == "failed")

    def counts(self) -> dict[str, int]:
        """Number of steps per status."""
        return {status: sum(1 for s in self.steps if s.status == status) for status in STEP_STATUSES}

    def to_json(self) -> dict[str, Any]:
        # Shallow copies, not dataclasses.asdict: its deep copy is most of saving a 100-step record.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["steps"] = [{f.name: getattr(s, f.name) for f in _STEP_FIELDS} for s in self.steps]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "run record") -> RunRecord:
        """Raises CorruptRecordError (naming ``where``) when ``data`` is not a run record."""
        def steps(value: Any) -> tuple[StepRecord, ...]:
            if not isinstance(value, list):
                raise ValueError("not a list")
            return tuple(StepRecord.from_json(s, where) for s in value)

        return fields_of(cls, data, where, FIX, {"steps": steps})


_STEP_FIELDS = fields(StepRecord)


# time, not datetime: one import fewer on the no-op path.
def new_run_id(now_ns: int | None = None) -> str:
    """A unique, time-sortable run id (UTC, microseconds, then random)."""
    ns = time.time_ns() if now_ns is None else now_ns
    seconds, rest = divmod(ns, 1_000_000_000)
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(seconds))}{rest // 1000:06d}Z-{os.urandom(3).hex()}"


def now_iso() -> str:
    """Now, as ISO 8601 UTC with milliseconds: ``2026-11-23T16:42:00.123+00:00``."""
    seconds, rest = divmod(time.time_ns(), 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{rest // 1_000_000:03d}+00:00"


def record_key(pipeline: str, run_id: str) -> str:
    return f"runs/{pipeline}/{run_id}.json"


def save_run(store: ArtifactStore, record: RunRecord) -> None:
    """Save the record (once: run ids are unique), with secret values masked in its error texts."""
    from mlops.secrets import MASKER

    if MASKER.active:
        record = replace(record, steps=tuple(replace(s, error=MASKER.mask(s.error)) if s.error else s
                                             for s in record.steps))
    data = json.dumps(record.to_json(), separators=(",", ":")).encode()
    if not store.create_record(record_key(record.pipeline, record.run_id), data):
        raise StoreError(f"run record {record.run_id} of {record.pipeline} already exists in {store.url}")


def load_run(store: ArtifactStore, pipeline: str, run_id: str) -> RunRecord | None:
    """The record of one run, None if there is none; CorruptRecordError (naming it) if it is damaged."""
    key = record_key(pipeline, run_id)
    raw = store.read_record(key)
    return None if raw is None else _parse(store, key, raw)


def _parse(store: ArtifactStore, key: str, raw: bytes) -> RunRecord:
    where = f"run record {key} in {store.url}"
    record = RunRecord.from_json(parse_json(raw, where, FIX), where)
    if key != record_key(record.pipeline, record.run_id):
        raise CorruptRecordError(f"{where} describes run {record.run_id} of {record.pipeline!r}, "
                                 f"not the run its key names; {FIX}")
    return record


def list_runs(store: ArtifactStore, pipeline: str | None = None,
              problems: list[str] | None = None) -> list[RunRecord]:
    """Run records, oldest first (of one pipeline, or of all).

    A damaged record raises CorruptRecordError, unless ``problems`` is given: then it is skipped
    and one line saying which record and why is appended there (listings show the good ones).
    """
    prefix = f"runs/{pipeline}/" if pipeline else "runs/"
    records: list[RunRecord] = []
    for key in store.list_records(prefix):
        if not key.endswith(".json"):
            continue
        raw = store.read_record(key)
        if raw is None:
            continue
        try:
            records.append(_parse(store, key, raw))
        except CorruptRecordError as e:
            if problems is None:
                raise
            problems.append(str(e))
    records.sort(key=lambda r: (r.run_id, r.pipeline))
    return records
