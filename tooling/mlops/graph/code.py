"""Which files are a step's code: the scripts in its argv, its declared extras, and the local modules they import.

Works on any ``read(path) -> bytes | None`` so it can look at a git revision as well as the working tree.
Only modules that resolve to files inside the repository count; the standard library and installed
packages are the environment's business.
"""

from __future__ import annotations

import ast
import hashlib
import posixpath
from collections.abc import Callable, Iterable

from mlops.spec.model import REF_RE, Step

Reader = Callable[[str], bytes | None]
_IMPORTS_CACHE: dict[str, list[tuple[str, int]]] = {}


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


def _imports(source: bytes) -> list[tuple[str, int]]:
    """(module, level) for every import statement; level > 0 for relative imports."""
    key = hashlib.sha1(source).hexdigest()
    hit = _IMPORTS_CACHE.get(key)
    if hit is not None:
        return hit
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        found: list[tuple[str, int]] = []
    else:
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((a.name, 0) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                found.append((base, node.level))
                # `from pkg import mod` may import a submodule
                found.extend(((base + "." if base else "") + a.name, node.level) for a in node.names)
    _IMPORTS_CACHE[key] = found
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
        yield stem + ".py"
        yield posixpath.join(stem, "__init__.py")


def code_closure(paths: Iterable[str], read: Reader) -> set[str]:
    """The given python files plus every repository-local module they import, transitively."""
    seen: set[str] = set()
    todo = [posixpath.normpath(p) for p in paths]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        data = read(path)
        if data is None:
            continue
        seen.add(path)
        if not path.endswith(".py"):
            continue
        for module, level in _imports(data):
            for cand in _candidates(module, level, path):
                cand = posixpath.normpath(cand)
                if cand not in seen and read(cand) is not None:
                    todo.append(cand)
                    break
    return seen


def step_code(step: Step, read: Reader) -> set[str]:
    """All code files of a step; extras that are directories are returned as ``dir/`` prefixes."""
    files = code_closure(entry_scripts(step), read)
    for extra in step.code:
        norm = posixpath.normpath(extra)
        files.add(norm if read(norm) is not None else norm.rstrip("/") + "/")
        if norm.endswith(".py"):
            files |= code_closure([norm], read)
    return files
