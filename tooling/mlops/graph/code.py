"""Which files are a step's code: the scripts in its argv, its declared extras, and the local modules they import.

Works on a spec source (a git revision or the working tree), so a plan sees a helper-module change
at any commit. Only modules that resolve to files inside the repository count; the standard
library and installed packages are the environment's business. Import scans are cached by the
file's git blob id.
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterable
from typing import Protocol

from mlops.spec.cache import JsonCache
from mlops.spec.model import REF_RE, Step


class CodeSource(Protocol):
    def read(self, path: str) -> bytes | None: ...

    def digest(self, path: str) -> str | None: ...

    def exists(self, path: str) -> bool: ...


def entry_scripts(step: Step) -> list[str]:
    """Python files named in the command (``python x.py``, ``python -m pkg.mod``)."""
    out: list[str] = []
    argv = step.command
    for i, arg in enumerate(argv):
        if REF_RE.search(arg):
            continue
        if arg.endswith(".py") and not arg.startswith("-"):
            out.append(posixpath.normpath(arg))
        elif arg == "-m" and i + 1 < len(argv):
            out.append(argv[i + 1].replace(".", "/") + ".py")
    return out


def parse_imports(source: bytes) -> list[list[str | int]]:
    """[module, level] for every import statement; level > 0 for relative imports."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found: list[list[str | int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend([a.name, 0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found.append([base, node.level])
            # `from pkg import mod` may import a submodule
            found.extend([(base + "." if base else "") + a.name, node.level] for a in node.names)
    return found


def _candidates(module: str, level: int, importer: str) -> Iterable[str]:
    parts = [p for p in module.split(".") if p]
    if level:
        base = posixpath.dirname(importer)
        for _ in range(level - 1):
            base = posixpath.dirname(base)
        roots = [base]
    else:
        roots = [posixpath.dirname(importer), ""]  # the script's own folder (sys.path[0]) and the repo root
    for root in roots:
        stem = posixpath.join(root, *parts) if parts else root
        yield posixpath.normpath(stem + ".py")
        yield posixpath.normpath(posixpath.join(stem, "__init__.py"))


class CodeScanner:
    """Finds code closures at one revision, with import scans cached by blob id."""

    def __init__(self, source: CodeSource, cache: JsonCache | None = None):
        self.source = source
        self.cache = cache if cache is not None else JsonCache(None)
        self.used: set[str] = set()
        self._resolved: dict[tuple[str, int, str], str | None] = {}
        self._closures: dict[str, frozenset[str]] = {}

    def imports(self, path: str) -> list[list[str | int]]:
        digest = self.source.digest(path)
        if digest is None:
            return []
        self.used.add(digest)
        hit = self.cache.get(digest)
        if hit is None:
            hit = parse_imports(self.source.read(path) or b"")
            self.cache.put(digest, hit)
        return list(hit)

    def resolve(self, module: str, level: int, importer: str) -> str | None:
        """The repository file an import statement in ``importer`` loads, if any."""
        key = (module, level, posixpath.dirname(importer))
        if key not in self._resolved:
            self._resolved[key] = next((c for c in _candidates(module, level, importer) if self.source.exists(c)),
                                       None)
        return self._resolved[key]

    def closure(self, paths: Iterable[str]) -> set[str]:
        """The given files plus every repository-local module they import, transitively."""
        out: set[str] = set()
        for p in paths:
            out |= self._closure_of(posixpath.normpath(p))
        return out

    def _closure_of(self, entry: str) -> frozenset[str]:
        hit = self._closures.get(entry)
        if hit is not None:
            return hit
        seen: set[str] = set()
        todo = [entry]
        while todo:
            path = todo.pop()
            if path in seen or not self.source.exists(path):
                continue
            seen.add(path)
            if path.endswith(".py"):
                for module, level in self.imports(path):
                    found = self.resolve(str(module), int(level), path)
                    if found is not None and found not in seen:
                        todo.append(found)
        self._closures[entry] = frozenset(seen)
        return self._closures[entry]

    def step_code(self, step: Step) -> set[str]:
        """All code files of a step; extras that are directories are returned as ``dir/`` prefixes."""
        files = self.closure(entry_scripts(step))
        for extra in step.code:
            norm = posixpath.normpath(extra)
            if norm.endswith(".py"):
                files |= self.closure([norm])
            else:
                files.add(norm if self.source.digest(norm) is not None else norm.rstrip("/") + "/")
        return files
