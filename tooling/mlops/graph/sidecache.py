"""Whole derived results per git tree: a commit's spec files, its asset graph, and whether it validated.

A plan reads two commits. The base is almost always a tree an earlier plan read, and the head
differs from it in a file or two, so reading both in full each time makes a plan's cost grow with
the repository instead of the change. A side is a pure function of its tree's content and of where
the repository is (``file:`` URLs are judged against that path), so its results are kept per
(tree id, repository path): one file per tree under ``.mlops/cache/sides/``, only for trees that
loaded without errors, validated on load (anything malformed is a cold cache, never an error),
dropped with the package version or schemas (the stamp of ``mlops.spec.cache``), the newest few kept.

A head tree not seen before is derived from a validated tree that was (its first parent's, or the
last one read) when all they differ in is the content of regular files that are neither specs nor
read by the validation (lockfiles): validation sees only spec contents, which paths exist and are
tracked, symbolic links and lockfiles, so its answer is the same; and only the pipelines whose
step code changed are recomputed (an asset depends on its spec, and a step also on its code files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import SpecError
from mlops.graph.assets import Asset, AssetGraph, pipeline_assets, touched
from mlops.graph.code import CodeScanner
from mlops.spec.cache import JsonCache, ParseCache, cache_file, stamp
from mlops.spec.loader import SPECS_FIELD, LoadedSpecs, SpecFile, parse_file
from mlops.spec.model import KINDS, Pipeline, Project, Specs, StoreConfig
from mlops.spec.source import PROJECT_FILE, GitSource, is_spec_path

LAYOUT = "side-1"
KEEP = 8  # trees kept: a few branches' worth of bases and heads
SIDES_DIR = "sides"
_ASSET_KINDS = ("environment", "dataset", "step", "pipeline", "model", "stage", "endpoint")
_PLAIN_MODES = (b"100644", b"100755")


@dataclass
class Entry:
    """What is known of one tree: its spec files (path, blob id, kind, name), its asset graph,
    whether the cross-file checks ran (and passed), and which files they read."""

    tree: str
    checked: bool
    files: list[tuple[str, str, str | None, str | None]]
    graph: AssetGraph
    reads: list[str]


class CachedLoad(LoadedSpecs):
    """A side's spec files from the cache; the typed specs are built on first use, table by table (a
    plan's base side needs none, its head a few)."""

    def __init__(self, files: dict[str, SpecFile], label: str, source: GitSource, disk: ParseCache | None):
        self.files = files
        self.label = label
        self._source = source
        self._disk = disk
        self._specs: Specs | None = None

    @property
    def specs(self) -> Specs:
        if self._specs is None:
            project = self._build("Project").get(PROJECT_FILE, Project(name="", stages=(), store=StoreConfig()))
            self._specs = LazySpecs(project, lambda table: self._build(TABLE_KIND[table]))
        return self._specs

    @specs.setter
    def specs(self, value: Specs) -> None:
        self._specs = value

    def _build(self, kind: str) -> dict[str, Any]:
        """name -> typed value of every spec of ``kind`` (the project: by its path), in path order as ``load``
        builds them: from the parse cache, or by parsing the blob."""
        from mlops.spec.build import BUILDERS

        table: dict[str, Any] = {}
        for path in sorted(self.files):
            f = self.files[path]
            if f.kind != kind:
                continue
            parsed = parse_file(self._source.source_file(path, f.digest), self._disk)
            if parsed.diagnostics or parsed.kind != f.kind or parsed.name != f.name or f.name is None:
                raise SpecError(parsed.diagnostics)  # only a forged cache entry gets here: the tree is not valid
            table[path if kind == "Project" else f.name] = parsed.built or BUILDERS[kind](parsed.data, path)
        return table


TABLE_KIND = {table: kind for kind, table in SPECS_FIELD.items()}


class LazySpecs(Specs):
    """``Specs`` whose tables (environments, pipelines, ...) are built when first read."""

    def __init__(self, project: Project, build: Callable[[str], dict[str, Any]] | None = None,
                 **tables: dict[str, Any]):
        object.__setattr__(self, "project", project)
        object.__setattr__(self, "_build_table", build)
        for name, value in tables.items():  # as ``dataclasses.replace`` passes them
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        build = self.__dict__.get("_build_table")
        if name not in TABLE_KIND or build is None:
            raise AttributeError(name)
        value = build(name)
        object.__setattr__(self, name, value)
        return value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Specs):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(Specs))

    __hash__ = None  # type: ignore[assignment]


# -- reading and writing -------------------------------------------------------------------------
def _root_key(root: Path) -> str:
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]


def _entry_file(root: Path, tree: str) -> Path | None:
    return cache_file(root, f"{SIDES_DIR}/{tree}-{_root_key(root)}.json")


def _stamp_of() -> str:
    return f"{stamp()}:{LAYOUT}"


def load_entry(root: Path, tree: str, need_checked: bool) -> Entry | None:
    """The cached results of ``tree``, or None (absent, malformed, stale, or unchecked when ``need_checked``)."""
    path = _entry_file(root, tree)
    if path is None:
        return None
    try:
        data = path.read_bytes()
        check, _, body = data.partition(b"\n")
        # A checksum line first: a damaged file (a bad disk, a truncated copy) that still parses as
        # JSON must not pass for the results of a tree.
        raw = json.loads(body) if check == hashlib.sha256(body).hexdigest().encode() else None
    except (ValueError, OSError, RecursionError):
        return None
    try:
        entry = _decode(raw, tree)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return None
    if entry is None or (need_checked and not entry.checked):
        return None
    return entry


def _decode(raw: Any, tree: str) -> Entry | None:
    if not isinstance(raw, dict) or raw.get("stamp") != _stamp_of() or raw.get("tree") != tree:
        return None
    files = []
    for path, digest, kind, name in raw["files"]:
        if not (isinstance(path, str) and _is_oid(digest) and (kind is None or kind in KINDS)
                and (name is None or isinstance(name, str)) and (kind is None) == (name is None)):
            return None
        files.append((path, digest, kind, name))
    graph = AssetGraph()
    for aid, kind, name, fp, deps, paths, spec_file in raw["assets"]:
        if not (isinstance(aid, str) and kind in _ASSET_KINDS and aid == f"{kind}/{name}" and _is_hex(fp)
                and isinstance(spec_file, str) and _strings(deps) and _strings(paths)):
            return None
        graph.add(Asset(aid, kind, name, fp, tuple(deps), tuple(paths), spec_file))
    reads = raw["reads"]
    if not (isinstance(raw["checked"], bool) and _strings(reads)):
        return None
    return Entry(tree, raw["checked"], files, graph, list(reads))


def store_entry(root: Path, entry: Entry) -> None:
    """Write ``entry`` (atomically) and drop the oldest trees beyond KEEP. Never an error."""
    path = _entry_file(root, entry.tree)
    if path is None:
        return
    from mlops.paths import write_atomic

    raw = {"stamp": _stamp_of(), "tree": entry.tree, "checked": entry.checked, "reads": sorted(entry.reads),
           "files": [list(f) for f in entry.files],
           "assets": [[a.id, a.kind, a.name, a.fingerprint, list(a.deps), list(a.files), a.spec_file]
                      for a in entry.graph.assets.values()]}
    with contextlib.suppress(OSError):  # read-only or full: the next plan is just slower
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(raw, separators=(",", ":")).encode()
        write_atomic(path, hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        _prune(path.parent)


def _prune(folder: Path) -> None:
    entries = sorted((e.stat().st_mtime, e.path) for e in os.scandir(folder) if e.name.endswith(".json")
                     and e.is_file(follow_symlinks=False))
    for _, old in entries[:-KEEP]:
        with contextlib.suppress(OSError):
            os.unlink(old)


def _recent(root: Path) -> list[str]:
    """Trees of the cached entries, newest first."""
    probe = _entry_file(root, "0" * 40)
    if probe is None or not probe.parent.is_dir():
        return []
    found = []
    with contextlib.suppress(OSError):
        for e in os.scandir(probe.parent):
            tree, _, rest = e.name.partition("-")
            if rest == f"{_root_key(root)}.json" and _is_oid(tree):
                found.append((e.stat(follow_symlinks=False).st_mtime, tree))
    return [t for _, t in sorted(found, reverse=True)]


# -- sides -------------------------------------------------------------------------------------------
def loaded_of(entry: Entry, source: GitSource, disk: ParseCache | None) -> CachedLoad:
    files = {path: SpecFile(path, digest, kind, name, None, [], None, source.source_file(path, digest).load)
             for path, digest, kind, name in entry.files}
    return CachedLoad(files, source.label, source, disk)


def entry_of(tree: str, loaded: LoadedSpecs, graph: AssetGraph, checked: bool, reads: set[str]) -> Entry:
    files = [(path, f.digest, f.kind, f.name if f.kind else None) for path, f in sorted(loaded.files.items())]
    return Entry(tree, checked, files, graph, sorted(reads))


def derive(root: Path, source: GitSource, disk: ParseCache | None, imports: JsonCache | None) -> Entry | None:
    """The results of ``source``'s tree, derived from a cached validated tree it barely differs from (see
    the module docstring), or None."""
    for tree in _candidates(root, source):
        entry = load_entry(root, tree, need_checked=True)
        if entry is None:
            continue
        changed = _modified_plain_files(root, tree, source.tree)
        if changed is None or any(is_spec_path(p) for p in changed) or changed & set(entry.reads):
            continue
        try:
            graph = _regraph(entry, changed, source, disk, imports)
        except (ValueError, KeyError, SpecError):  # an entry that does not fit its tree: recompute instead
            continue
        return Entry(source.tree, True, entry.files, graph, entry.reads)
    return None


def _candidates(root: Path, source: GitSource) -> list[str]:
    from mlops.spec.gitobjects import git

    proc = git(root, "rev-parse", "--verify", "-q", f"{source.label}^1^{{tree}}")
    parent = proc.stdout.decode("ascii", "replace").strip() if proc.returncode == 0 else ""
    recent = [t for t in _recent(root) if t != source.tree][:2]
    return ([parent] if _is_oid(parent) else []) + [t for t in recent if t != parent]


def _modified_plain_files(root: Path, a: str, b: str) -> set[str] | None:
    """Paths whose content differs between trees ``a`` and ``b``, when every difference is that (a regular
    file modified, its mode kept); None when a path was added, removed, or changed type or mode."""
    from mlops.spec.gitobjects import git

    proc = git(root, "diff-tree", "-r", "-z", "--no-renames", "--raw", a, b)
    if proc.returncode != 0:
        return None
    fields = proc.stdout.split(b"\0")
    if len(fields) % 2 != 1 or fields[-1] != b"":
        return None
    changed: set[str] = set()
    for meta, path in zip(fields[0:-1:2], fields[1::2], strict=True):
        parts = meta.split()
        if len(parts) != 5 or parts[4] != b"M" or parts[0][1:] != parts[1] or parts[1] not in _PLAIN_MODES:
            return None
        changed.add(os.fsdecode(path))
    return changed


def _regraph(entry: Entry, changed: set[str], source: GitSource, disk: ParseCache | None,
             imports: JsonCache | None) -> AssetGraph:
    """``entry``'s graph with the assets of every pipeline whose step code changed recomputed, in place
    (the order of the assets is part of the answer: it orders the reasons a change travels with)."""
    from mlops.spec.build import BUILDERS

    stale = sorted({a.spec_file for a in entry.graph.assets.values() if a.kind == "step" and touched(a.files, changed)})
    graph = AssetGraph(dict(entry.graph.assets))
    if not stale:
        return graph
    scanner = CodeScanner(source, imports)
    digests = {path: digest for path, digest, _, _ in entry.files}
    for spec_file in stale:
        parsed = parse_file(source.source_file(spec_file, digests[spec_file]), disk)
        if parsed.diagnostics:
            raise ValueError(f"{spec_file} is not a valid spec")
        pipeline = parsed.built or BUILDERS["Pipeline"](parsed.data, spec_file)
        if not isinstance(pipeline, Pipeline):
            raise ValueError(f"{spec_file} is not a valid pipeline spec")
        for asset in pipeline_assets(pipeline, scanner):
            if asset.id not in graph.assets:
                raise ValueError(f"{asset.id} is not in the cached graph")  # never: the spec is unchanged
            graph.assets[asset.id] = asset
    if imports is not None:
        imports.save(keep=None)
    return graph


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_HEX64 = re.compile(r"[0-9a-f]{64}")
_OID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def _is_hex(text: Any) -> bool:
    return isinstance(text, str) and _HEX64.fullmatch(text) is not None


def _is_oid(text: Any) -> bool:
    return isinstance(text, str) and _OID.fullmatch(text) is not None
