"""Which files are a step's code: the scripts its command runs, its declared extras, and, transitively,
the local modules they import.

One implementation of Python's import rules serves both the planner (which looks at a git revision)
and the pipeline runner (which looks at the working tree and hashes what it finds), so a plan and a
cache key never disagree about what a step's code is. Imports are found with ``ast`` (``import X``,
``from X import Y``, ``from . import z``) and resolved the way ``sys.path`` would: against the
script's folder and the repository root (only the root for ``python -m``), through packages'
``__init__`` files and namespace folders. Anything that is not a file inside the repository
(the standard library, site-packages) is the environment's business and ignored. Import scans are
cached by file content digest.
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterable, Sequence
from typing import Protocol

from mlops.spec.cache import JsonCache
from mlops.spec.model import REF_RE, Step

# (level, module, names): ``from ..a import b, c`` -> (2, "a", ("b", "c")); ``import a.b`` -> (0, "a.b", ())
ImportSpec = tuple[int, str, tuple[str, ...]]
PYTHONS = ("python", "python3")


class CodeTree(Protocol):
    """Files of one revision, by repository-relative POSIX path."""

    def is_file(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes | None: ...

    def digest(self, path: str) -> str | None:
        """An identity of the file's content (for caching its import scan)."""
        ...


def parse_imports(source: bytes) -> list[ImportSpec]:
    """Every import statement of a Python file, wherever it is (inside functions too)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []  # a script that does not parse fails when it runs; its imports cannot be known
    specs: list[ImportSpec] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            specs.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            specs.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    return specs


def is_python(arg0: str) -> bool:
    base = posixpath.basename(arg0)
    return base in PYTHONS or base.startswith("python3.")


def inside(path: str) -> str | None:
    """``path`` normalised, or None when it is absolute or leaves the repository."""
    norm = posixpath.normpath(path)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        return None
    return "" if norm == "." else norm


class CodeScanner:
    """Finds code sets in one tree, memoising resolutions and closures."""

    def __init__(self, tree: CodeTree, cache: JsonCache | None = None):
        self.tree = tree
        self.cache = cache if cache is not None else JsonCache(None)
        self.used: set[str] = set()
        self._closures: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {}
        self._modules: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], str | None]] = {}

    # -- what a step runs ------------------------------------------------------------------
    def code_set(self, argv: Sequence[str], extras: Iterable[str] = ()) -> tuple[set[str], set[str]]:
        """(files, directories) of the step's code. FileNotFoundError names a missing extra."""
        files: set[str] = set()
        for entry, roots in self.entry_points(argv):
            files |= self.closure(entry, roots)
        dirs: set[str] = set()
        for extra in extras:
            path = inside(extra)
            if path is None or not (self.tree.is_file(path) or self.tree.is_dir(path)):
                raise FileNotFoundError(f"code {extra!r}")
            if self.tree.is_dir(path):
                dirs.add(path)
            elif path.endswith(".py"):
                files |= self.closure(path, (posixpath.dirname(path), ""))
            else:
                files.add(path)
        return files, dirs

    def step_code(self, step: Step) -> set[str]:
        """A step's code files, with directories as ``dir/`` prefixes (missing extras are the
        validator's to report, so they are skipped here)."""
        files, dirs = self.code_set(step.command)
        for extra in step.code:
            try:
                more, more_dirs = self.code_set((), (extra,))
            except FileNotFoundError:
                continue
            files |= more
            dirs |= more_dirs
        return files | {d.rstrip("/") + "/" for d in dirs}

    def entry_points(self, argv: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """(file, import roots) of what the command executes: ``x.py`` arguments, an executable in
        the repository as argv[0], and ``python -m pkg.mod`` (with ``__main__`` of a package)."""
        entries: list[tuple[str, tuple[str, ...]]] = []
        args = [a for a in argv if not REF_RE.search(a)]
        for i, arg in enumerate(args):
            if arg == "-m" and 0 < i < len(args) - 1 and is_python(args[0]):
                files, package = self.resolve_module(args[i + 1], ("",))
                main = posixpath.join(package, "__main__.py") if package is not None else None
                entries.extend((f, ("",)) for f in [*files, *([main] if main and self.tree.is_file(main) else [])])
                continue
            if not arg.endswith(".py") and i != 0:
                continue
            path = inside(arg)
            if path and self.tree.is_file(path):
                entries.append((path, (posixpath.dirname(path), "")))
        return entries

    # -- imports ---------------------------------------------------------------------------
    def imports(self, path: str) -> list[ImportSpec]:
        digest = self.tree.digest(path)
        if digest is None:
            return []
        self.used.add(digest)
        hit = self.cache.get(digest)
        if hit is not None:
            try:
                return [(int(lvl), str(mod), tuple(str(n) for n in names)) for lvl, mod, names in hit]
            except (TypeError, ValueError):  # a damaged cache entry: scan the file again
                pass
        found = parse_imports(self.tree.read(path) or b"")
        self.cache.put(digest, [[lvl, mod, list(names)] for lvl, mod, names in found])
        return found

    def closure(self, entry: str, roots: tuple[str, ...]) -> frozenset[str]:
        """``entry`` and every repository module it imports, transitively."""
        key = (entry, roots)
        hit = self._closures.get(key)
        if hit is not None:
            return hit
        seen: set[str] = set()
        todo = [entry]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            if path.endswith(".py"):
                for level, module, names in self.imports(path):
                    todo.extend(self.resolve_import(path, roots, level, module, names))
        self._closures[key] = frozenset(seen)
        return self._closures[key]

    def resolve_import(self, importer: str, roots: tuple[str, ...], level: int, module: str,
                       names: tuple[str, ...]) -> list[str]:
        if level:
            base: str | None = posixpath.dirname(importer)
            for _ in range(level - 1):
                base = inside(posixpath.join(base or "", "..")) if base else None
            if base is None:
                return []
            files, package = self.resolve_module(module, (base,)) if module else ((), base)
        else:
            files, package = self.resolve_module(module, roots)
        out = list(files)
        if names and package is not None:  # ``from pkg import name``: name may be a submodule
            for name in names:
                sub = self._module_file(posixpath.join(package, name)) if name != "*" else None
                if sub is not None:
                    out.append(sub)
        return out

    def resolve_module(self, dotted: str, roots: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
        """Files executed by importing ``dotted`` from the first root that has it (packages'
        ``__init__`` included), and the package folder when ``dotted`` is a package."""
        key = (dotted, roots)
        hit = self._modules.get(key)
        if hit is not None:
            return hit
        result: tuple[tuple[str, ...], str | None] = ((), None)
        for root in roots:
            files: list[str] = []
            base = root
            package: str | None = None
            for part in dotted.split("."):
                candidate = posixpath.join(base, part)
                kind = self._module_kind(candidate)
                if kind == "module":
                    files.append(candidate + ".py")
                    package = None
                    break
                if kind is None:
                    package = None
                    break
                if kind == "package":
                    files.append(posixpath.join(candidate, "__init__.py"))
                base = package = candidate
            if files or package is not None:
                result = (tuple(files), package)
                break
        self._modules[key] = result
        return result

    def _module_kind(self, path: str) -> str | None:
        if self.tree.is_file(posixpath.join(path, "__init__.py")):
            return "package"
        if self.tree.is_file(path + ".py"):
            return "module"
        if self.tree.is_dir(path):
            return "namespace"
        return None

    def _module_file(self, path: str) -> str | None:
        init = posixpath.join(path, "__init__.py")
        if self.tree.is_file(init):
            return init
        return path + ".py" if self.tree.is_file(path + ".py") else None
