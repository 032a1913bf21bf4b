"""Load every spec of a repository at one revision: parse, validate, cross-check, build values.

All problems are collected and raised together as one ``SpecError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import Diagnostic, SpecError
from mlops.spec import crossref
from mlops.spec.build import BUILDERS, build_project
from mlops.spec.cache import ParseCache, open_cache
from mlops.spec.limits import MAX_SPEC_BYTES
from mlops.spec.model import KINDS, Project, Specs, StoreConfig
from mlops.spec.schema import did_you_mean, validate_document
from mlops.spec.source import PROJECT_FILE, SourceFile, SpecSource, open_source
from mlops.spec.yamlpos import YamlDoc, YamlSyntaxError, load_yaml

FOLDER_KIND = {
    "environments": "Environment",
    "datasets": "Dataset",
    "pipelines": "Pipeline",
    "models": "Model",
    "endpoints": "Endpoint",
}
SPECS_FIELD = {
    "Environment": "environments",
    "Dataset": "datasets",
    "Pipeline": "pipelines",
    "Model": "models",
    "Endpoint": "endpoints",
}


@dataclass
class SpecFile:
    """One parsed spec document and where it came from.

    ``doc`` (with positions) is parsed lazily for documents that came from the parse cache.
    """

    path: str
    digest: str
    kind: str | None
    name: str | None
    _doc: YamlDoc | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    _data: dict[str, Any] | None = None
    _load: Callable[[], bytes] | None = None
    built: Any = None  # the typed value, when already built (documents from the parse cache)

    @property
    def doc(self) -> YamlDoc:
        if self._doc is None:
            assert self._load is not None
            try:
                self._doc = load_yaml(self._load())
            except YamlSyntaxError:  # it was valid when cached; without positions, errors point at line 1
                self._doc = YamlDoc(self._data)
        return self._doc

    @property
    def data(self) -> dict[str, Any]:
        if self._data is not None:
            return self._data
        return self.doc.data if isinstance(self.doc.data, dict) else {}


@dataclass
class LoadedSpecs:
    """Specs plus the per-file information needed to locate problems and detect changes."""

    specs: Specs
    files: dict[str, SpecFile]
    label: str

    def digests(self) -> dict[str, str]:
        """Spec path -> blob id of every spec file."""
        return {path: f.digest for path, f in self.files.items()}

    def asset_file(self, kind: str, name: str) -> SpecFile | None:
        for f in self.files.values():
            if f.kind == kind and f.name == name:
                return f
        return None


# Parsed documents by content digest: both sides of a diff share most files.
_PARSE_CACHE: dict[tuple[str, str], SpecFile] = {}


def parse_file(sf: SourceFile, disk: ParseCache | None = None) -> SpecFile:
    """Parse and schema-check one file (cached by path and content digest, in memory and on disk)."""
    key = (sf.path, sf.digest)
    hit = _PARSE_CACHE.get(key)
    if hit is not None:
        return hit
    # A cached document passed the limits (they are part of the cache's stamp), so only misses are measured.
    cached = disk.get_doc(sf.path, sf.digest) if disk is not None else None
    built = _build_cached(sf.path, cached) if cached is not None else None
    if cached is not None and built is not None:
        kind, name, data = cached
        result = SpecFile(sf.path, sf.digest, kind, name, None, [], data, sf.load, built)
    elif (size := sf.measure()) > MAX_SPEC_BYTES:  # refused by its size alone: never parsed, never read whole
        return _oversized(sf, size, sf.load())
    else:
        content = sf.data
        if len(content) > MAX_SPEC_BYTES:  # a source that learns the size while reading returns just the head
            return _oversized(sf, max(sf.measure(), len(content)), content)
        result = _parse(sf.path, sf.digest, content)
        if disk is not None and not result.diagnostics and result.kind and result.name:
            disk.put_doc(sf.path, sf.digest, result.kind, result.name, result.data)
    if len(_PARSE_CACHE) > 20000:
        _PARSE_CACHE.clear()
    _PARSE_CACHE[key] = result
    return result


def _build_cached(path: str, cached: tuple[str, str, dict[str, Any]]) -> Any:
    """The value of a cached document, or None when the entry is damaged (then the file is parsed)."""
    kind, _, data = cached
    if kind != _expected_kind(path):
        return None
    try:
        return BUILDERS[kind](data, path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None


def _expected_kind(path: str) -> str | None:
    return "Project" if path == PROJECT_FILE else FOLDER_KIND.get(path.split("/")[0])


def _build_partial(f: SpecFile) -> Any:
    """The value of a file that failed its schema, if its builder can make one anyway (else None)."""
    if f.kind is None or f.kind != _expected_kind(f.path) or not isinstance(f.doc.data, dict):
        return None
    try:
        return BUILDERS[f.kind](f.data, f.path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None


def _overlaps(a: str, b: str) -> bool:
    """Whether two JSON paths are the same field or one contains the other."""
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def _is_nested(path: str) -> bool:
    """A YAML file in a sub-folder of an asset folder (data or config next to step code, unless it has a kind)."""
    return path != PROJECT_FILE and "/" in path.partition("/")[2]


def _oversized(sf: SourceFile, size: int, head: bytes) -> SpecFile:
    """A file too large to be a spec: refused, unless it is data next to step code (no top-level kind)."""
    if _is_nested(sf.path) and not re.search(rb"(?m)^kind[ \t]*:", head[:MAX_SPEC_BYTES]):
        return SpecFile(sf.path, sf.digest, None, None, YamlDoc(None))  # a large data file, not a spec
    return SpecFile(sf.path, sf.digest, None, None, YamlDoc(None), [Diagnostic(
        sf.path, 1, 1, "$", f"refused: the file has {size} bytes; a spec file may have at most {MAX_SPEC_BYTES}")])


def _parse(path: str, digest: str, data: bytes) -> SpecFile:
    try:
        doc = load_yaml(data)
    except YamlSyntaxError as e:
        return SpecFile(path, digest, None, None, YamlDoc(None),
                        [Diagnostic(path, e.line, e.column, "$", str(e))])
    diags = [Diagnostic(path, line, col, _jp(p), f"duplicate key {p[-1]!r}: a later value would silently replace "
                                                  "the earlier one")
             for p, line, col in doc.duplicates]
    diags.extend(Diagnostic(path, line, col, _jp(p), message) for p, line, col, message in doc.problems)
    if not isinstance(doc.data, dict):
        if doc.data is None and _is_nested(path):
            return SpecFile(path, digest, None, None, doc)  # empty helper file in a sub-folder: not a spec
        return SpecFile(path, digest, None, None, doc,
                        [Diagnostic(path, 1, 1, "$", "a spec must be a YAML mapping with 'kind' and 'name'")])
    kind = doc.data.get("kind")
    expected = _expected_kind(path)
    if kind is None:
        if _is_nested(path):  # e.g. pipelines/wine/params.yaml: data or config next to step code, not a spec
            return SpecFile(path, digest, None, None, doc)
        line, col = doc.locate(())
        diags.append(Diagnostic(path, line, col, "$.kind", f"required field 'kind' is missing (expected {expected!r})"))
        return SpecFile(path, digest, None, None, doc, diags)
    if kind not in KINDS:
        line, col = doc.locate(("kind",))
        diags.append(Diagnostic(path, line, col, "$.kind", f"unknown kind {kind!r}{did_you_mean(str(kind), KINDS)}"))
        return SpecFile(path, digest, None, None, doc, diags)
    if kind != expected:
        line, col = doc.locate(("kind",))
        where = "mlops.yaml" if kind == "Project" else next(k for k, v in FOLDER_KIND.items() if v == kind) + "/"
        diags.append(Diagnostic(path, line, col, "$.kind", f"a {kind} spec belongs in {where}, not {path}"))
        return SpecFile(path, digest, kind, None, doc, diags)
    diags.extend(validate_document(path, kind, doc))
    name = doc.data.get("name") if isinstance(doc.data.get("name"), str) else None
    return SpecFile(path, digest, kind, name, doc, diags)


def _jp(p: tuple[Any, ...]) -> str:
    from mlops.spec.yamlpos import json_path

    return json_path(p)


def load(source: SpecSource, disk: ParseCache | None = None, cross_check: bool = True) -> LoadedSpecs:
    """Load, validate and cross-check every spec in ``source``. Raises SpecError with every problem.

    ``disk`` is an optional persistent parse cache (see ``mlops.spec.cache``). ``cross_check=False``
    skips the checks between files (for the base of a diff, which only needs to be readable).
    """
    files = {sf.path: parse_file(sf, disk) for sf in source.spec_files()}
    diags: list[Diagnostic] = []
    for path in [p for p in files if not p.isprintable()]:
        # A newline in a file name would forge lines of everything that prints it (a GitHub
        # workflow command such as ::add-mask:: in `mlops validate` under Actions): never loaded.
        del files[path]
        diags.append(Diagnostic(path.encode("unicode_escape").decode("ascii"), 1, 1, "$",
                                "a spec file name may not contain control characters: rename it"))
    diags += [d for f in files.values() for d in f.diagnostics]
    is_empty = source.label == "empty"
    project_file = files.get(PROJECT_FILE)
    if project_file is None and not is_empty:
        diags.append(Diagnostic(PROJECT_FILE, 1, 1, "$", "the project file mlops.yaml is missing "
                                                          "(run from the repository root, or pass -C)"))
    valid = {p: f for p, f in files.items() if not f.diagnostics and f.kind}
    partial: dict[str, Any] = {}  # values built from files that failed their schema: their references are checked
    if PROJECT_FILE in valid:
        project = valid[PROJECT_FILE].built or build_project(valid[PROJECT_FILE].data, PROJECT_FILE)
    else:
        project = Project(name="", stages=(), store=StoreConfig())
        if project_file is not None and (value := _build_partial(project_file)) is not None:
            partial[PROJECT_FILE] = value
    tables: dict[str, dict[str, Any]] = {v: {} for v in SPECS_FIELD.values()}
    seen: dict[tuple[str, str], str] = {}
    for f in sorted(files.values(), key=lambda f: f.path):
        if f.kind in (None, "Project") or f.name is None:
            continue
        other = seen.get((f.kind, f.name))
        if other is not None:
            line, col = f.doc.locate(("name",))
            diags.append(Diagnostic(f.path, line, col, "$.name", f"{f.kind} {f.name!r} is already defined in {other}"))
            continue
        seen[(f.kind, f.name)] = f.path
        if f.path in valid:
            tables[SPECS_FIELD[f.kind]][f.name] = f.built or BUILDERS[f.kind](f.data, f.path)
            continue
        # invalid files still reserve their name, so references to them are not reported twice
        tables[SPECS_FIELD[f.kind]][f.name] = None
        if (value := _build_partial(f)) is not None:
            partial[f.path] = value
    specs = Specs(project=project, **{k: {n: v for n, v in t.items() if v is not None} for k, t in tables.items()})
    reserved = {k: {n for n, v in t.items() if v is None} for k, t in tables.items()}
    if not is_empty and cross_check:
        def locate(file: str, path: tuple[Any, ...]) -> tuple[int, int]:
            return files[file].doc.locate(path, key=False)

        project_valid = PROJECT_FILE in valid
        root = _root_of(source)
        diags.extend(crossref.check(specs, locate, source.exists, reserved, project_valid, source.read, root,
                                    source))
        for path, value in partial.items():
            # Only what the schema errors of that file do not already cover: no follow-on errors.
            own = [d.path for d in files[path].diagnostics]
            diags.extend(d for d in crossref.check_partial(specs, value, locate, source.exists, reserved,
                                                           project_valid, source.read, root, source)
                         if d.file == path and not any(_overlaps(d.path, o) for o in own))
    if diags:
        raise SpecError(diags)
    return LoadedSpecs(specs, files, source.label)


def _root_of(source: SpecSource) -> str | None:
    """The repository's absolute path behind ``source`` (worktree or git revision), if it has one."""
    root = getattr(source, "root", None)
    if root is None:
        repo = getattr(source, "repo", None)
        root = getattr(repo, "working_tree_dir", None)
    return str(Path(root).resolve()) if root is not None else None


def load_specs(root: Path, rev: str | None = None) -> Specs:
    """The validated specs of the repository at ``root``: the working tree, or git revision ``rev``."""
    return load(open_source(Path(root), rev)).specs


def load_project(root: Path) -> Project:
    """Just the project file (mlops.yaml) of the working tree, validated."""
    from mlops.spec.source import WorktreeSource

    src = WorktreeSource(Path(root))
    path = Path(root) / PROJECT_FILE
    if not path.is_file():
        raise SpecError([Diagnostic(PROJECT_FILE, 1, 1, "$", f"the project file {path} is missing "
                                                             "(run from the repository root, or pass -C)")])
    # Just this file (not a walk of every spec folder), through the parse cache that loading the specs
    # fills (read-only here): a parse of our own loads the schema validator, which costs more than the
    # rest of a cached plan.
    parsed = parse_file(src.source_file(PROJECT_FILE), open_cache(Path(root)))
    if parsed.diagnostics:
        raise SpecError(parsed.diagnostics)
    return build_project(parsed.data, PROJECT_FILE)
