"""A step's code set: the files whose change must invalidate its cache.

That is the python scripts of its command (``python pipelines/wine/train.py`` or ``-m pkg.mod``),
an executable script inside the repository used as ``argv[0]``, the step's declared ``code``
extras (files or directories), and, transitively, the LOCAL modules those import. Imports are
found with ``ast`` (``import X``, ``from X import Y``, ``from . import z``) and resolved against
the script's directory and the repository root, the way ``sys.path`` would; anything that is not
a file inside the repository (stdlib, site-packages) is ignored.

Parsing is the slow part, so the imports of a file are cached by the file's content digest and
persisted next to the stat cache.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from mlops.pipelines.digests import StatCache, write_json_atomic

# (level, module, names): ``from ..a import b, c`` -> (2, "a", ("b", "c")); ``import a.b`` -> (0, "a.b", ())
ImportSpec = tuple[int, str, tuple[str, ...]]
_FORMAT = 1
_PYTHONS = {"python", "python3"}


class CodeScanner:
    """Finds code sets of steps in one repository. Thread-safe; call ``save()`` to persist."""

    def __init__(self, root: Path, digests: StatCache, cache_path: Path | None = None) -> None:
        self.root = root
        self.digests = digests
        self.cache_path = cache_path
        self._lock = threading.Lock()
        self._imports: dict[str, list[ImportSpec]] = _load(cache_path) if cache_path else {}
        self._used: set[str] = set()
        self._changed = False
        self._closure: dict[tuple[Path, tuple[Path, ...]], frozenset[Path]] = {}
        self._scripts: dict[tuple[str, bool], tuple[Path, tuple[Path, ...]] | None] = {}
        self._relative: dict[Path, str] = {}

    # -- public ------------------------------------------------------------------------
    def code_files(self, argv: Sequence[str], extras: Iterable[str] = ()) -> list[Path]:
        """Absolute paths of every file in the step's code set, sorted.

        ``FileNotFoundError`` if a declared extra does not exist.
        """
        found: set[Path] = set()
        for entry, roots in self._entry_points(argv):
            found |= self._closure_of(entry, roots)
        for extra in extras:
            path = self._inside(self.root / extra)
            if path is None or not path.exists():
                raise FileNotFoundError(f"code {extra!r}")
            files = [path] if path.is_file() else _files_below(path)
            for f in files:
                if f.suffix == ".py":
                    found |= self._closure_of(f, (f.parent, self.root))
                else:
                    found.add(f)
        return sorted(found)

    def relative(self, path: Path) -> str:
        """The repository-relative POSIX path of a code file (memoised: steps share their code)."""
        rel = self._relative.get(path)
        if rel is None:
            rel = self._relative[path] = path.relative_to(self.root).as_posix()
        return rel

    def save(self) -> None:
        """Persist the import cache (only entries of files seen this run, if anything changed)."""
        if self.cache_path is None or not self._changed:
            return
        with self._lock:
            data = {d: [[lvl, mod, list(names)] for lvl, mod, names in self._imports[d]] for d in self._used}
            self._changed = False
        write_json_atomic(self.cache_path, {"format": _FORMAT, "imports": data})

    # -- entry points ------------------------------------------------------------------
    def _entry_points(self, argv: Sequence[str]) -> list[tuple[Path, tuple[Path, ...]]]:
        entries: list[tuple[Path, tuple[Path, ...]]] = []
        args = list(argv)
        for i, arg in enumerate(args):
            if arg == "-m" and i + 1 < len(args) and i > 0 and _is_python(args[0]):
                # ``python -m pkg.mod`` runs with the working directory (the repo root) on sys.path.
                entries.extend((f, (self.root,)) for f in self._main_module_files(args[i + 1]))
                continue
            if not arg.endswith(".py") and i != 0:
                continue
            entry = self._script(arg, i == 0)
            if entry is not None:
                entries.append(entry)
        return entries

    def _script(self, arg: str, first: bool) -> tuple[Path, tuple[Path, ...]] | None:
        # Memoised per run: most steps of a pipeline share their scripts.
        key = (arg, first)
        if key not in self._scripts:
            path = self._inside(self.root / arg)
            self._scripts[key] = (path, (path.parent, self.root)) if path is not None and path.is_file() else None
        return self._scripts[key]

    def _main_module_files(self, dotted: str) -> list[Path]:
        files, package = self._resolve_module(dotted, (self.root,))
        if package is not None and (package / "__main__.py").is_file():
            files.append(package / "__main__.py")
        return files

    def _inside(self, path: Path) -> Path | None:
        """``path`` made absolute and normalised, or None if it is not inside the repository."""
        normal = Path(os.path.normpath(path))
        root = os.fspath(self.root)
        text = os.fspath(normal)
        if text == root or text.startswith(root + os.sep):
            return normal
        return None

    # -- imports -----------------------------------------------------------------------
    def _closure_of(self, entry: Path, roots: tuple[Path, ...]) -> frozenset[Path]:
        memo_key = (entry, roots)
        cached = self._closure.get(memo_key)
        if cached is not None:
            return cached
        seen: set[Path] = set()
        todo = [entry]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            if path.suffix != ".py":
                continue
            for level, module, names in self.imports_of(path):
                todo.extend(self._resolve_import(path, roots, level, module, names))
        result = frozenset(seen)
        self._closure[memo_key] = result
        return result

    def imports_of(self, path: Path) -> list[ImportSpec]:
        """The import statements of a python file, cached by the file's content digest."""
        digest = self.digests.file_digest(path)
        with self._lock:
            self._used.add(digest)
            cached = self._imports.get(digest)
        if cached is not None:
            return cached
        specs = _parse_imports(path)
        with self._lock:
            self._imports[digest] = specs
            self._changed = True
        return specs

    def _resolve_import(
        self, importer: Path, roots: tuple[Path, ...], level: int, module: str, names: tuple[str, ...]
    ) -> list[Path]:
        if level:
            base = importer.parent
            for _ in range(level - 1):
                base = base.parent
            if self._inside(base) is None:
                return []
            files, package = self._resolve_module(module, (base,)) if module else ([], base)
        else:
            files, package = self._resolve_module(module, roots)
        # ``from pkg import name``: name may be a submodule of pkg.
        if names and package is not None:
            for name in names:
                sub = _module_file(package / name) if name != "*" else None
                if sub is not None:
                    files.append(sub)
        return [f for f in files if self._inside(f) is not None]

    def _resolve_module(self, dotted: str, roots: tuple[Path, ...]) -> tuple[list[Path], Path | None]:
        """Files executed by importing ``dotted`` from the first root that has it (package
        ``__init__`` files included), and the package directory when ``dotted`` is a package."""
        parts = dotted.split(".")
        for root in roots:
            files: list[Path] = []
            base = root
            package: Path | None = None
            for part in parts:
                candidate = base / part
                kind = _module_kind(candidate)
                if kind == "module":
                    files.append(candidate.with_name(part + ".py"))
                    package = None
                    break
                if kind is None:
                    package = None
                    break
                if kind == "package":
                    files.append(candidate / "__init__.py")
                base = package = candidate
            if files or package is not None:
                return files, package
        return [], None


def _module_kind(path: Path) -> str | None:
    """How python would import ``path``: "package", "module", "namespace" (a bare directory) or None."""
    if (path / "__init__.py").is_file():
        return "package"
    if path.with_name(path.name + ".py").is_file():
        return "module"
    if path.is_dir():
        return "namespace"
    return None


def _module_file(path: Path) -> Path | None:
    init = path / "__init__.py"
    if init.is_file():
        return init
    module = path.with_name(path.name + ".py")
    return module if module.is_file() else None


def _is_python(arg0: str) -> bool:
    return os.path.basename(arg0) in _PYTHONS or os.path.basename(arg0).startswith("python3.")


def _files_below(directory: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        found.extend(Path(dirpath) / f for f in filenames if not f.endswith(".pyc"))
    return found


def _parse_imports(path: Path) -> list[ImportSpec]:
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        # A script that does not parse fails when it runs; its imports cannot be known.
        return []
    specs: list[ImportSpec] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            specs.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            specs.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    return specs


def _load(path: Path) -> dict[str, list[ImportSpec]]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return {}
    raw = data.get("imports")
    if not isinstance(raw, dict):
        return {}
    return {d: [(int(lvl), str(mod), tuple(names)) for lvl, mod, names in specs] for d, specs in raw.items()}
