"""Small persistent caches keyed by content (git blob ids), kept under ``.mlops/cache/``.

Both sides of a diff, and consecutive plans, share almost every file, so a plan mostly reads
these instead of parsing YAML, validating schemas or scanning Python imports. Only results of
valid documents are cached (their data, not their positions: positions are recomputed from the
file on the rare path that reports an error). A cache is dropped as a whole when the schemas,
the limits or the package version change. A broken cache file (garbage, wrong types) is just a
cold cache, and one that cannot be written (a read-only ``.mlops``) is no cache: never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import mlops

CACHE_DIR = ".mlops/cache"


@cache
def _stamp() -> str:
    """Identity of what cached results depend on: the package version and the schemas' content."""
    from mlops.spec.limits import STAMP

    h = hashlib.sha256(f"{mlops.__version__}:{STAMP}".encode())
    schemas = Path(__file__).with_name("schemas")
    for entry in sorted(os.listdir(schemas)):
        h.update(entry.encode() + (schemas / entry).read_bytes())
    return h.hexdigest()[:16]


class JsonCache:
    """key -> JSON value, loaded once, written atomically when something was added.

    ``layout`` names the shape of the values; change it whenever that shape changes, so an old
    file is dropped instead of misread.
    """

    layout = "json-1"

    def __init__(self, path: Path | None, layout: str | None = None):
        self.path = path
        self.layout = layout or self.layout
        self._entries: dict[str, Any] | None = None  # read on first use: a plan whose sides are cached needs none
        self.dirty = False

    @property
    def entries(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                try:
                    raw = json.loads(self.path.read_bytes())
                except (ValueError, OSError, RecursionError):  # missing, unreadable or garbage: a cold cache
                    raw = None
                if isinstance(raw, dict) and raw.get("stamp") == self.stamp() and isinstance(raw.get("entries"), dict):
                    self._entries = raw["entries"]
        return self._entries

    @entries.setter
    def entries(self, value: dict[str, Any]) -> None:
        self._entries = value

    def stamp(self) -> str:
        return f"{_stamp()}:{self.layout}"

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        self.dirty = True

    def save(self, keep: set[str] | None = None) -> None:
        """Write atomically; ``keep`` (keys in use) bounds the file's growth."""
        if self.path is None or not self.dirty:
            return
        if keep is not None and len(self.entries) > 4 * max(len(keep), 256):
            self.entries = {k: v for k, v in self.entries.items() if k in keep}
        self.dirty = False
        from mlops.paths import write_atomic

        with contextlib.suppress(OSError):  # read-only or full: the next run is just slower
            write_atomic(self.path, json.dumps({"stamp": self.stamp(), "entries": self.entries},
                                               separators=(",", ":")).encode())


class ParseCache(JsonCache):
    """path+blob id -> (kind, name, data) of spec documents that passed their schema."""

    layout = "specs-1"

    @staticmethod
    def key(path: str, digest: str) -> str:
        return f"{path}\0{digest}"

    def get_doc(self, path: str, digest: str) -> tuple[str, str, dict[str, Any]] | None:
        hit = self.get(self.key(path, digest))
        if not (isinstance(hit, list) and len(hit) == 3 and isinstance(hit[0], str) and isinstance(hit[1], str)
                and isinstance(hit[2], dict) and hit[2].get("kind") == hit[0] and hit[2].get("name") == hit[1]):
            return None  # absent, or not what put_doc writes: parse the file instead
        return hit[0], hit[1], hit[2]

    def put_doc(self, path: str, digest: str, kind: str, name: str, data: dict[str, Any]) -> None:
        self.put(self.key(path, digest), [kind, name, data])


def _cache_file(root: Path, name: str) -> Path | None:
    """``.mlops/cache/NAME``, or None (no cache) when a link is on the way: a cache is never read or
    written through one (a ``.mlops`` restored from an untrusted CI cache may hold links out)."""
    from mlops import paths
    from mlops.errors import PathError

    try:
        return paths.own_path(Path(root), f"{CACHE_DIR}/{name}")
    except PathError:
        return None


stamp = _stamp  # for the other caches keyed by content (mlops.graph.sidecache)
cache_file = _cache_file


def open_cache(root: Path) -> ParseCache:
    return ParseCache(_cache_file(root, "specs.json"))


IMPORTS_LAYOUT = "imports-2"  # digest -> [[level, module, [names]], ...]


def open_imports_cache(root: Path | None) -> JsonCache:
    return JsonCache(None if root is None else _cache_file(root, "imports.json"), IMPORTS_LAYOUT)
