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
from typing import TYPE_CHECKING, Any

from mlops.errors import PathError, PipelineError, StoreError
from mlops.pipelines.digests import Digest, StatCache, write_json_atomic
from mlops.store.protocol import ArtifactStore

if TYPE_CHECKING:
    from mlops.paths import TreeWriter

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
# An output holds files and directories only: a link in it fails the step (it would be cached
# as whatever it points at, host files included). Writes go through ``mlops.paths.TreeWriter``,
# so they never follow a link, even one a step put there after it was checked.
def capture_outputs(
    store: ArtifactStore, digests: StatCache, root: Path, outputs: Mapping[str, str]
) -> dict[str, Digest]:
    """Digest every declared output and put its files in the store as blobs.

    ``PipelineError`` names an output that was not produced, or holds a symbolic link.
    """
    from mlops import paths

    captured: dict[str, Digest] = {}
    for name, rel in outputs.items():
        path = root / rel
        try:
            digest = digests.digest(path, links=False)
        except FileNotFoundError:
            raise PipelineError(f"output {name!r} ({rel}) was not produced") from None
        except PathError as e:
            raise PipelineError(f"output {name!r} ({rel}): {e}") from None
        files = [(rel, digest.digest)] if digest.kind == "file" else [(f"{rel}/{p}", d) for p, d in digest.manifest]
        for file, expected in files:
            if store.has_blob(expected):
                continue
            try:
                with paths.opened_file(root, file) as (opened, _size):
                    stored = store.put_file(opened)
            except (PathError, OSError) as e:
                raise PipelineError(f"output {name!r} ({rel}) changed while it was being stored: {e}") from None
            if stored != expected:
                raise PipelineError(f"output {name!r} ({rel}) changed while it was being stored")
        captured[name] = digest
    return captured


def workspace_digest(digests: StatCache, path: Path) -> Digest | None:
    """The digest of what the workspace holds at ``path`` now, or None if nothing usable
    (missing, or holding a link: restoring replaces it)."""
    try:
        return digests.digest(path, links=False)
    except (FileNotFoundError, NotADirectoryError, PathError):
        return None


def holds(digests: StatCache, path: Path, expected: Digest) -> bool:
    """Whether the workspace already holds exactly ``expected`` at ``path`` (the no-op case)."""
    current = workspace_digest(digests, path)
    return current is not None and current.kind == expected.kind and current.digest == expected.digest


def restore_output(store: ArtifactStore, digests: StatCache, writer: TreeWriter, rel: str, expected: Digest,
                   scratch: Path) -> bool:
    """Make the output ``rel`` hold exactly ``expected``, copying only what differs. True if
    anything was copied. Blobs are fetched into ``scratch`` (a directory of ours) and moved into
    place through ``writer``.

    Raises ``StoreError`` (or ``IntegrityError``) when a blob is missing or corrupt, ``PathError``
    when a directory on the way is (or became) a link.
    """
    path = writer.root / rel
    current = workspace_digest(digests, path)
    if current is not None and current.kind == expected.kind and current.digest == expected.digest:
        return False
    if expected.kind == "file":
        _fetch(store, expected.digest, writer, rel, scratch)
        digests.forget(path)
        return True
    have = dict(current.manifest) if current is not None and current.kind == "dir" else {}
    if not have:
        writer.remove(rel)  # a file, a link, or a directory we could not read: start afresh
    want = dict(expected.manifest)
    for name in sorted(have.keys() - want.keys()):
        writer.remove(f"{rel}/{name}")
    writer.makedirs(rel)
    for name, digest in sorted(want.items()):
        if have.get(name) != digest:
            _fetch(store, digest, writer, f"{rel}/{name}", scratch)
            digests.forget(path / name)
    return True


def _fetch(store: ArtifactStore, digest: str, writer: TreeWriter, rel: str, scratch: Path) -> None:
    if not store.has_blob(digest):
        raise StoreError(f"blob {digest} is missing from {store.url}")
    tmp = scratch / f"restore-{os.urandom(8).hex()}"
    try:
        store.get_file(digest, tmp)
        writer.place(rel, tmp)
    finally:
        tmp.unlink(missing_ok=True)


def remove_output(writer: TreeWriter, rel: str) -> None:
    """Delete a declared output before its step runs, so a stale one is never taken for new
    (a link is removed itself, never followed)."""
    writer.remove(rel)
