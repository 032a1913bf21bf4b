"""Step cache entries: what a successful step produced, kept in the artifact store.

An entry is the record ``pipelines/cache/<key>.json`` (outputs: name -> kind, digest, manifest;
plus the step's metrics and log blobs) and the output files themselves as store blobs. The blobs
are written before the record, so a record never points at a missing blob even if the process
dies in between.

Entries are immutable (the key is a content hash), so the workspace keeps a memo of the last
entry of each step (``.mlops/cache/pipelines/memo/<pipeline>.json``): a no-op run then needs no store
read at all, which matters when the store is remote.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import PipelineError, StoreError
from mlops.pipelines.digests import Digest, StatCache, write_json_atomic
from mlops.store.protocol import ArtifactStore

_MEMO_FORMAT = 1


@dataclass(frozen=True)
class CacheEntry:
    """The outputs (and logs, metrics) of one successful run of a step with a given key."""

    key: str
    step: str
    outputs: dict[str, Digest]
    metrics: dict[str, Any] | None = None
    stdout: str | None = None
    stderr: str | None = None
    duration: float = 0.0
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "step": self.step,
            "outputs": {name: d.to_json() for name, d in sorted(self.outputs.items())},
            "metrics": self.metrics,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration": self.duration,
            "created": self.created,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CacheEntry:
        return cls(
            key=str(data["key"]),
            step=str(data.get("step", "")),
            outputs={name: Digest.from_json(d) for name, d in data["outputs"].items()},
            metrics=data.get("metrics"),
            stdout=data.get("stdout"),
            stderr=data.get("stderr"),
            duration=float(data.get("duration", 0.0)),
            created=str(data.get("created", "")),
            extra=dict(data.get("extra") or {}),
        )


def record_key(key: str) -> str:
    """The store record holding the cache entry of ``key``."""
    return f"pipelines/cache/{key}.json"


class StepCache:
    """Cache entries of one pipeline: looked up in the workspace memo first, then in the store."""

    def __init__(self, store: ArtifactStore, memo_path: Path | None = None) -> None:
        self.store = store
        self.memo_path = memo_path
        self._memo: dict[str, dict[str, Any]] = _load_memo(memo_path) if memo_path else {}
        self._changed = False

    def lookup(self, step: str, key: str) -> CacheEntry | None:
        """The entry of ``key`` or None. A corrupt record counts as missing (the step reruns)."""
        memo = self._memo.get(step)
        if memo is not None and memo.get("key") == key:
            try:
                return CacheEntry.from_json(memo)
            except (KeyError, TypeError, ValueError, AttributeError):
                pass
        raw = self.store.read_record(record_key(key))
        if raw is None:
            return None
        try:
            entry = CacheEntry.from_json(json.loads(raw))
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            return None
        self._remember(step, entry)
        return entry

    def save(self, entry: CacheEntry) -> None:
        """Write the entry's record (its blobs must already be in the store)."""
        data = json.dumps(entry.to_json(), sort_keys=True, indent=1).encode()
        # Two runs may race to cache the same key; they produced equivalent entries.
        self.store.create_record(record_key(entry.key), data)
        self._remember(entry.step, entry)

    def forget(self, step: str) -> None:
        """Drop the memo of a step (its workspace outputs can no longer be trusted)."""
        if self._memo.pop(step, None) is not None:
            self._changed = True

    def save_memo(self) -> None:
        if self.memo_path is not None and self._changed:
            self._changed = False
            with contextlib.suppress(OSError):  # read-only workspace cache: the store still has the entries
                write_json_atomic(self.memo_path, {"format": _MEMO_FORMAT, "steps": self._memo})

    def _remember(self, step: str, entry: CacheEntry) -> None:
        if self._memo.get(step, {}).get("key") != entry.key:
            self._memo[step] = entry.to_json()
            self._changed = True


def _load_memo(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _MEMO_FORMAT or not isinstance(data.get("steps"), dict):
        return {}
    # A memo of the wrong shape only costs a store read: keep what looks like entries.
    return {k: v for k, v in data["steps"].items() if isinstance(v, dict)}


# -- outputs in the workspace ------------------------------------------------------------
def capture_outputs(
    store: ArtifactStore, digests: StatCache, root: Path, outputs: Mapping[str, str]
) -> dict[str, Digest]:
    """Digest every declared output and put its files in the store as blobs.

    ``PipelineError`` names an output that was not produced.
    """
    captured: dict[str, Digest] = {}
    for name, rel in outputs.items():
        path = root / rel
        try:
            digest = digests.digest(path)
        except FileNotFoundError:
            raise PipelineError(f"output {name!r} ({rel}) was not produced") from None
        files = [(path, digest.digest)] if digest.kind == "file" else [(path / p, d) for p, d in digest.manifest]
        for file, expected in files:
            if store.has_blob(expected):
                continue
            stored = store.put_file(file)
            if stored != expected:
                raise PipelineError(f"output {name!r} ({rel}) changed while it was being stored")
        captured[name] = digest
    return captured


def workspace_digest(digests: StatCache, path: Path) -> Digest | None:
    """The digest of what the workspace holds at ``path`` now, or None if nothing."""
    try:
        return digests.digest(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def restore_output(store: ArtifactStore, digests: StatCache, path: Path, expected: Digest) -> bool:
    """Make ``path`` hold exactly ``expected``, copying only what differs. True if anything was copied.

    Raises ``StoreError`` (or ``IntegrityError``) when a blob is missing or corrupt.
    """
    current = workspace_digest(digests, path)
    if current is not None and current.kind == expected.kind and current.digest == expected.digest:
        return False
    import shutil  # not at module level: the no-op path never gets here

    if expected.kind == "file":
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _fetch(store, expected.digest, path)
        digests.forget(path)
        return True
    if path.exists() and not path.is_dir():
        path.unlink()
    have = dict(current.manifest) if current is not None and current.kind == "dir" else {}
    want = dict(expected.manifest)
    for rel, digest in want.items():
        if have.get(rel) != digest:
            target = path / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            _fetch(store, digest, target)
            digests.forget(target)
    for rel in have.keys() - want.keys():
        (path / rel).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return True


def _fetch(store: ArtifactStore, digest: str, dest: Path) -> None:
    if not store.has_blob(digest):
        raise StoreError(f"blob {digest} is missing from {store.url}")
    store.get_file(digest, dest)


def remove_output(path: Path) -> None:
    """Delete a declared output before its step runs, so a stale one is never taken for new."""
    import shutil

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
