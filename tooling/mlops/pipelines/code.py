"""A step's code set in the working tree: the files whose change must invalidate its cache.

The import rules live in ``mlops.graph.code`` (the planner uses the same ones at any git
revision, so a plan and a cache key agree on what a step's code is). This adapter runs them on
the working tree, identifies files by the stat cache's digests (so unchanged files are not
re-read), persists import scans next to the stat cache, and expands code folders into files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from mlops import paths
from mlops.errors import PathError
from mlops.graph.code import CodeScanner as _Scanner
from mlops.pipelines.digests import StatCache
from mlops.spec.cache import IMPORTS_LAYOUT, JsonCache

MAX_CODE_BYTES = 64 << 20  # larger "source files" are not scanned for imports


class _Worktree:
    """The working tree as a ``CodeTree``: POSIX paths relative to ``root``."""

    def __init__(self, root: Path, digests: StatCache) -> None:
        self.root = root
        self.digests = digests
        self._real: dict[str, Path] = {}  # links followed (inside the repository only)

    def is_file(self, path: str) -> bool:
        return os.path.isfile(os.path.join(self.root, path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(os.path.join(self.root, path))

    def read(self, path: str) -> bytes | None:
        try:  # never through a link out of the repository (the runner refuses such code anyway)
            return paths.read_bytes_inside(self.root, path, MAX_CODE_BYTES)
        except (OSError, PathError):
            return None

    def digest(self, path: str) -> str | None:
        full = self._real.get(path)
        if full is None:
            try:
                full = self._real[path] = paths.resolve_inside(self.root, path)
            except PathError:
                return None
        return self.digests.file_digest(full) if full.is_file() else None


class CodeScanner:
    """Finds code sets of steps in one repository. Thread-safe; call ``save()`` to persist."""

    def __init__(self, root: Path, digests: StatCache, cache_path: Path | None = None) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._cache = JsonCache(cache_path, IMPORTS_LAYOUT)
        self._scanner = _Scanner(_Worktree(root, digests), self._cache)
        self._relative: dict[Path, str] = {}

    def code_files(self, argv: Sequence[str], extras: Iterable[str] = ()) -> list[Path]:
        """Absolute paths of every file in the step's code set, sorted.

        ``FileNotFoundError`` if a declared extra does not exist.
        """
        with self._lock:
            files, dirs = self._scanner.code_set(argv, extras)
        found = {self.root / f for f in files}
        for d in dirs:
            found.update(_files_below(self.root / d))
        return sorted(found)

    def relative(self, path: Path) -> str:
        """The repository-relative POSIX path of a code file (memoised: steps share their code)."""
        rel = self._relative.get(path)
        if rel is None:
            rel = self._relative[path] = path.relative_to(self.root).as_posix()
        return rel

    def save(self) -> None:
        """Persist the import scans of the files seen this run (if anything was scanned anew)."""
        with self._lock:
            self._cache.save(keep=self._scanner.used)


def _files_below(directory: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        found.extend(Path(dirpath) / f for f in filenames if not f.endswith(".pyc"))
    return found
