"""Content digests of files and directories, behind a persisted stat cache.

A file's digest is the sha256 of its bytes (the same digest the store gives its blob). A
directory's digest is the sha256 of the canonical JSON of its sorted manifest: a list of
``[relative POSIX path, file digest]`` for every file below it.

The stat cache maps a path to ``(size, mtime_ns, inode, digest, hashed_at_ns)`` so an unchanged
file is never read twice. Like git's index it guards against "racy" entries: a file modified
within the filesystem's timestamp granularity of being hashed could change again without its
stat changing, so an entry is trusted only when the file's mtime is clearly older than the
moment it was hashed; otherwise it is rehashed (cheaply, once) on the next lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import NamedTuple

from mlops.errors import PathError
from mlops.store.digest import is_digest

# Wider than any common filesystem's timestamp granularity (FAT: 2 s, ext4/overlayfs: a jiffy).
RACY_NS = 2_000_000_000
_FORMAT = 1
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class Digest(NamedTuple):
    """The content digest of a file or directory; ``manifest`` lists a directory's files."""

    kind: str  # "file" | "dir"
    digest: str
    manifest: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"kind": self.kind, "digest": self.digest}
        if self.kind == "dir":
            data["manifest"] = [list(e) for e in self.manifest]
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Digest:
        """Raises ValueError, TypeError or KeyError when ``data`` is not a digest (records are untrusted).

        A directory's manifest names the files a cache restore writes below the output: each name
        must be a plain relative path (no ``..``, ``.``, empty or absolute part, no NUL), no name
        may lie inside another's file, and the manifest must hash to the digest it came with.
        """
        kind, manifest = data["kind"], data.get("manifest") or []
        if kind not in ("file", "dir") or not isinstance(manifest, list):
            raise ValueError(f"not a digest: kind {kind!r}")
        digest = data["digest"]
        if not isinstance(digest, str) or not is_digest(digest):
            raise ValueError(f"not a digest: {digest!r}")
        entries = tuple((p, d) for p, d in manifest)
        if kind == "dir":
            _check_manifest(entries)
            if manifest_digest(entries) != digest:
                raise ValueError("a directory manifest does not hash to its digest")
        elif entries:
            raise ValueError("a file digest has no manifest")
        return cls(kind, digest, entries)


def _check_manifest(entries: tuple[tuple[object, object], ...]) -> None:
    """ValueError unless every entry is ``(plain relative path, sha256)``, sorted, with no name
    inside another's file (``a`` and ``a/b``)."""
    names: set[str] = set()
    for name, digest in entries:
        if not isinstance(name, str) or not isinstance(digest, str) or not is_digest(digest):
            raise ValueError(f"not a manifest entry: {name!r}")
        parts = name.split("/")
        if "\0" in name or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"manifest entry {name!r} is not a plain relative path")
        names.add(name)
    if len(names) != len(entries) or [e[0] for e in entries] != sorted(names):
        raise ValueError("manifest entries are repeated or not sorted")
    for name in names:
        parts = name.split("/")
        if any("/".join(parts[:i]) in names for i in range(1, len(parts))):
            raise ValueError(f"manifest entry {name!r} lies inside another file of the manifest")


def manifest_digest(manifest: tuple[tuple[str, str], ...]) -> str:
    """The digest of a directory from its sorted manifest."""
    text = json.dumps([list(e) for e in manifest], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_file(path: Path) -> str:
    """sha256 hex digest of a file's bytes (never through a link: a file swapped for one after
    it was looked at fails instead)."""
    with os.fdopen(os.open(path, _READ_FLAGS), "rb") as f:
        if hasattr(hashlib, "file_digest"):  # python >= 3.11: reads into one reused buffer
            return hashlib.file_digest(f, "sha256").hexdigest()
        h = hashlib.sha256()  # python 3.10, which the README allows
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
        return h.hexdigest()


class StatCache:
    """Digests of files under ``root``, remembered by stat so unchanged files are not reread.

    Thread-safe. ``path`` is where the cache is persisted (``None`` keeps it in memory only);
    call ``save()`` to write it back atomically (a no-op when nothing changed).
    """

    def __init__(self, root: Path, path: Path | None = None) -> None:
        self.root = root
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, list[int | str]] = {}
        self._changed = False
        if path is not None:
            self._entries = _load(path)

    def _key(self, path: Path) -> str:
        text = os.fspath(path)
        root = os.fspath(self.root)
        if text.startswith(root + os.sep):
            return text[len(root) + 1:]
        return text

    def file_digest(self, path: Path, st: os.stat_result | None = None) -> str:
        """The sha256 of a file, from the cache when its size, mtime and inode are unchanged."""
        if st is None:
            st = os.stat(path)
        key = self._key(path)
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry[0] == st.st_size
            and entry[1] == st.st_mtime_ns
            and entry[2] == st.st_ino
            and st.st_mtime_ns + RACY_NS < int(entry[4])
        ):
            return str(entry[3])
        hashed_at = time.time_ns()
        digest = hash_file(path)
        with self._lock:
            self._entries[key] = [st.st_size, st.st_mtime_ns, st.st_ino, digest, hashed_at]
            self._changed = True
        return digest

    def digest(self, path: Path, links: bool = True) -> Digest:
        """The digest of a file or a directory (``FileNotFoundError`` if it does not exist).

        ``path`` itself must not be a link (resolve it first, see ``mlops.paths``). Inside a
        directory, links to files are hashed by the content they point at when ``links`` and
        the target is inside the repository (``root``); a link that leads outside is
        ``PathError``, and so is any link at all when not ``links`` (a step's outputs hold
        files and directories only). Links to directories are not followed (cycles).
        """
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise PathError(f"{self._key(path)} is a symbolic link (-> {os.readlink(path)})")
        if not stat.S_ISDIR(st.st_mode):
            if not stat.S_ISREG(st.st_mode):
                raise PathError(f"{self._key(path)} is not a regular file")
            return Digest("file", self.file_digest(path, st))
        # Sorting whole relative paths (not per level) keeps "a/b" vs "a.b" ordering canonical.
        manifest = tuple(sorted(self._walk(path, "", links)))
        return Digest("dir", manifest_digest(manifest), manifest)

    def _walk(self, directory: Path, prefix: str, links: bool) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        with os.scandir(directory) as it:
            entries = list(it)
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_symlink():
                target = self._link_target(Path(entry.path), links)
                if target is not None:
                    found.append((rel, self.file_digest(target)))
            elif entry.is_dir(follow_symlinks=False):
                found.extend(self._walk(Path(entry.path), rel + "/", links))
            elif entry.is_file(follow_symlinks=False):
                found.append((rel, self.file_digest(Path(entry.path), entry.stat(follow_symlinks=False))))
        return found

    def _link_target(self, link: Path, links: bool) -> Path | None:
        """The regular file a link inside a directory stands for, None to leave it out."""
        from mlops import paths

        rel = self._key(link)
        if not links:
            raise PathError(f"{rel} is a symbolic link (-> {os.readlink(link)}): "
                            "only files and directories are kept")
        real = paths.resolve_inside(self.root, rel)
        return real if real.is_file() and not real.is_symlink() else None

    def forget(self, path: Path) -> None:
        """Drop a path's entry (after we delete or replace the file ourselves)."""
        with self._lock:
            if self._entries.pop(self._key(path), None) is not None:
                self._changed = True

    def save(self) -> None:
        """Write the cache back atomically if it changed, dropping entries of vanished files."""
        if self.path is None or not self._changed:
            return
        with self._lock:
            entries = {k: v for k, v in self._entries.items() if os.path.exists(os.path.join(self.root, k))}
            self._changed = False
        with contextlib.suppress(OSError):  # a read-only workspace cache: the next run just rehashes
            write_json_atomic(self.path, {"format": _FORMAT, "entries": entries})


def _load(path: Path) -> dict[str, list[int | str]]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        # A missing or corrupt cache only costs rehashing.
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    # Entries of the wrong shape (a damaged file) are dropped: they only cost a rehash.
    return {k: v for k, v in data["entries"].items() if _is_entry(v)}


def _is_entry(v: object) -> bool:
    """``[size, mtime_ns, inode, digest, hashed_at_ns]``."""
    return (isinstance(v, list) and len(v) == 5 and all(type(x) is int for x in (v[0], v[1], v[2], v[4]))
            and isinstance(v[3], str))


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see ``mlops.paths.write_atomic``), creating parents."""
    from mlops.paths import write_atomic

    write_atomic(path, json.dumps(data, separators=(",", ":")).encode())
