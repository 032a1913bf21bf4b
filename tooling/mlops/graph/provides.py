"""Does each step's environment provide the third-party modules its code imports?

A step that imports ``onnxruntime`` in an environment that does not list it works on a machine whose
host happens to have it (``system_site_packages``) and fails elsewhere. ``mlops validate`` warns about
it, pointing at the import line, without failing: the answer depends on what is installed on this
host, which is not the specs' fault.

An import is the step's own business when it resolves inside the repository (``mlops.graph.code``
resolves the step's import closure the way ``sys.path`` would), or names a standard-library module.
Any other top-level module must come from a distribution the environment provides: the names of its
requirements and lockfile lines, plus, as installed on this host, their dependencies, transitively
(listing ``scikit-learn`` provides ``numpy``). Which distribution a module comes from is read from this
host's metadata (``importlib.metadata.packages_distributions``); a module no installed distribution
provides is reported only when every requirement of the environment is installed here (otherwise one
of the missing ones may provide it). Imports guarded by ``try: ... except ImportError`` (optional
dependencies) and ``if TYPE_CHECKING:`` blocks are not reported. Steps without an environment run
with the host's packages and are skipped.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from mlops.graph.code import CodeScanner, CodeTree, inside
from mlops.host import normalise
from mlops.spec.model import Environment, Specs, Step
from mlops.spec.requirements import parse_lockfile, requirement_extras, requirement_name

_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


@dataclass(frozen=True, order=True)
class MissingImport:
    """A third-party import in a step's code that the step's environment does not provide."""

    file: str
    line: int
    module: str
    steps: tuple[str, ...]  # PIPELINE/STEP names whose code holds the import
    environment: str
    environment_file: str

    @property
    def message(self) -> str:
        who = f"step {self.steps[0]}" if len(self.steps) == 1 else f"steps {', '.join(self.steps)}"
        verb = "imports" if len(self.steps) == 1 else "import"
        where = f" ({self.environment_file})" if self.environment_file else ""
        return f"{who} {verb} {self.module}, which environment {self.environment}{where} does not provide"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: warning: {self.message}"

    def github_annotation(self) -> str:
        """The same warning as a GitHub Actions workflow command."""
        from mlops.errors import gh_data, gh_property

        return f"::warning file={gh_property(self.file)},line={self.line}::{gh_data(self.message)}"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "module": self.module, "steps": list(self.steps),
                "environment": self.environment, "message": self.message}


class HostPackages:
    """What this host has installed, as far as the check needs it (read lazily: it costs ~0.5 s)."""

    @cached_property
    def modules(self) -> dict[str, set[str]]:
        """Top-level import name -> PEP 503 names of the installed distributions that provide it."""
        from importlib.metadata import packages_distributions

        return {m: {normalise(d) for d in dists} for m, dists in packages_distributions().items()}

    def requires(self, name: str) -> list[str] | None:
        """The requirement strings of installed distribution ``name``; None when it is not installed."""
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            return list(distribution(name).requires or [])
        except PackageNotFoundError:
            return None


def missing_imports(specs: Specs, tree: CodeTree, host: HostPackages | None = None) -> list[MissingImport]:
    """Every third-party import of a step's code that its environment does not provide, sorted."""
    host = host or HostPackages()
    scanner = CodeScanner(tree)
    provided: dict[str, tuple[set[str], bool]] = {}
    found: dict[tuple[str, int, str, str], list[str]] = {}
    for pipeline in specs.pipelines.values():
        for step in pipeline.steps:
            env_name = pipeline.step_environment(step)
            env = specs.environments.get(env_name) if env_name else None
            if env is None:
                continue
            if env.name not in provided:
                provided[env.name] = _provided(env, tree, host)
            names, complete = provided[env.name]
            for file, line, module in _third_party(scanner, step):
                dists = host.modules.get(module)
                if dists is not None:
                    if dists & names:
                        continue
                elif not complete or normalise(module) in names:
                    continue  # an uninstalled requirement may provide it: we cannot tell
                found.setdefault((file, line, module, env.name), []).append(f"{pipeline.name}/{step.name}")
    return sorted(
        MissingImport(file, line, module, tuple(sorted(set(steps))), env_name,
                      specs.environments[env_name].file)
        for (file, line, module, env_name), steps in found.items()
    )


def _third_party(scanner: CodeScanner, step: Step) -> Iterable[tuple[str, int, str]]:
    """(file, line, top-level module) of each import in the step's code that is neither local nor stdlib."""
    entries = list(scanner.entry_points(step.command))
    for extra in step.code:
        path = inside(extra)
        if path and path.endswith(".py") and scanner.tree.is_file(path):
            entries.append((path, (path.rpartition("/")[0], "")))
    seen: set[tuple[str, int, str]] = set()
    for entry, roots in entries:
        for file in sorted(scanner.closure(entry, roots)):
            if not file.endswith(".py"):
                continue
            for line, module in _absolute_imports(scanner.tree.read(file) or b""):
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or (file, line, top) in seen:
                    continue
                files, package = scanner.resolve_module(top, roots)
                if files or package is not None:
                    continue  # a module of the repository
                seen.add((file, line, top))
                yield file, line, top


def _absolute_imports(source: bytes) -> list[tuple[int, str]]:
    """(line, module) of each absolute import that is not optional (see the module docstring)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    optional: set[int] = set()
    for node in ast.walk(tree):
        if _is_optional_block(node):
            for stmt in node.body:  # type: ignore[attr-defined]
                optional.update(id(n) for n in ast.walk(stmt))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _is_optional_block(node: ast.AST) -> bool:
    """``try: ... except ImportError`` or ``if TYPE_CHECKING:``: what its body imports may be missing."""
    if isinstance(node, ast.Try):
        return any(_catches_import_error(h) for h in node.handlers)
    return isinstance(node, ast.If) and _is_type_checking(node.test)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _IMPORT_ERRORS for t in types)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _provided(env: Environment, tree: CodeTree, host: HostPackages) -> tuple[set[str], bool]:
    """(PEP 503 names of the distributions ``env`` provides, whether all of them are installed here)."""
    wanted: list[tuple[str, tuple[str, ...]]] = []
    requirements = list(env.requirements)
    if env.lockfile is not None:
        data = tree.read(env.lockfile)
        if data is not None:
            lines, _problems = parse_lockfile(data)  # the problems are validate's errors, not this check's
            requirements += [ln.requirement for ln in lines]
    complete = True
    for req in requirements:
        name = requirement_name(req)
        if name is None:
            complete = False
            continue
        wanted.append((name, requirement_extras(req)))
    names: set[str] = set()
    while wanted:
        name, extras = wanted.pop()
        key = name if not extras else f"{name}[{','.join(extras)}]"
        if key in names:
            continue
        names.add(key)
        names.add(name)
        requires = host.requires(name)
        if requires is None:
            complete = False
            continue
        wanted.extend(_dependencies(requires, extras))
    return names, complete


def _dependencies(requires: list[str], extras: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    from packaging.markers import UndefinedEnvironmentName
    from packaging.requirements import InvalidRequirement, Requirement

    out = []
    for text in requires:
        try:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                continue
        except (InvalidRequirement, UndefinedEnvironmentName):
            continue
        out.append((normalise(req.name), tuple(sorted(req.extras))))
    return out

