"""Specs and asset graphs of two revisions, and the change set between them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlops.errors import SpecError
from mlops.graph import sidecache
from mlops.graph.assets import AssetGraph, Reuse, build_graph
from mlops.graph.code import CodeScanner
from mlops.graph.diff import ChangeSet, diff_graphs
from mlops.graph.files import changed_files
from mlops.spec.cache import JsonCache, ParseCache, open_cache, open_imports_cache
from mlops.spec.loader import LoadedSpecs, load
from mlops.spec.model import Project, Specs, StoreConfig
from mlops.spec.source import EmptySource, GitSource, SpecSource, open_source


@dataclass
class Side:
    """One revision: where it was read from, its specs and its asset graph."""

    rev: str  # "empty", "worktree" or a commit sha
    loaded: LoadedSpecs
    graph: AssetGraph
    source: SpecSource

    @property
    def specs(self) -> Specs:
        return self.loaded.specs

    def fingerprint(self) -> str:
        """Identity of every spec file's content at this revision (what a plan was made from)."""
        h = hashlib.sha256()
        for path, digest in sorted(self.loaded.digests().items()):
            h.update(f"{path}\0{digest}\n".encode())
        return h.hexdigest()


class _LaterSide(Side):
    """A side whose specs and graph are read only if something asks for them (the base of a plan whose
    change set was cached asks for neither)."""

    def __init__(self, rev: str, source: SpecSource, fingerprint: str, read: Callable[[], Side]):
        self.rev = rev
        self.source = source
        self._fingerprint = fingerprint
        self._read = read
        self._side: Side | None = None

    def _full(self) -> Side:
        if self._side is None:
            self._side = self._read()
        return self._side

    @property
    def loaded(self) -> LoadedSpecs:
        return self._full().loaded

    @loaded.setter
    def loaded(self, value: LoadedSpecs) -> None:
        self._full().loaded = value

    @property
    def graph(self) -> AssetGraph:
        return self._full().graph

    @graph.setter
    def graph(self, value: AssetGraph) -> None:
        self._full().graph = value

    def fingerprint(self) -> str:
        return self._fingerprint


@dataclass
class Comparison:
    base: Side
    head: Side
    changes: ChangeSet
    base_invalid: list[str]  # diagnostics of a base whose specs did not validate (then treated as empty)


def read_side(root: Path, rev: str | None, disk: ParseCache | None = None,
              imports: JsonCache | None = None) -> Side:
    """Load and validate one revision (None = working tree). Raises SpecError.

    A commit's results are cached by tree id (see ``mlops.graph.sidecache``)."""
    source = open_source(root, rev)
    if not isinstance(source, GitSource):
        return _graph_side(source, load(source, disk), imports, None)
    cached = _cached_side(root, source, disk, imports, need_checked=True)
    if cached is not None:
        return cached
    loaded = load(source, disk)
    reads = set(source.reads)  # what the cross-file checks read (lockfiles, links), before code scanning reads more
    side = _graph_side(source, loaded, imports, None)
    sidecache.store_entry(root, *sidecache.entry_of(source.tree, loaded, side.graph, True, reads))
    return side


def _cached_side(root: Path, source: GitSource, disk: ParseCache | None, imports: JsonCache | None,
                 need_checked: bool) -> Side | None:
    """The side of a commit from the cache: its own tree's entry, or (validated) one derived from a
    cached tree it barely differs from."""
    entry = sidecache.load_entry(root, source.tree, need_checked)
    if entry is None and need_checked:
        entry = sidecache.derive(root, source, disk, imports)
        if entry is not None:
            sidecache.store_entry(root, entry)
    if entry is None:
        return None
    return Side(source.label, sidecache.loaded_of(entry, source, disk, root), entry.graph, source)


def _graph_side(source: SpecSource, loaded: LoadedSpecs, imports: JsonCache | None, reuse: Reuse | None) -> Side:
    scanner = CodeScanner(source, imports)
    graph = build_graph(loaded.specs, source, scanner, reuse)
    if imports is not None:
        imports.save(keep=scanner.used)
    return Side(source.label, loaded, graph, source)


def _digests(loaded: LoadedSpecs) -> dict[str, str]:
    return loaded.digests()


def empty_side() -> Side:
    src = EmptySource()
    loaded = LoadedSpecs(Specs(Project(name="", stages=(), store=StoreConfig())), {}, "empty")
    return Side("empty", loaded, AssetGraph(), src)


def compare(root: Path, base: str, head: str | None, head_side: Side | None = None,
            disk: ParseCache | None = None) -> Comparison:
    """Compare ``base`` (a revision or "empty") with ``head`` (a revision, or None for the working tree).

    ``head_side`` may be passed when the head was already read (and so validated).
    """
    disk = disk or open_cache(root)
    imports = open_imports_cache(root)
    head_side = head_side or read_side(root, head, disk, imports)
    base_invalid: list[str] = []
    base_source = open_source(root, base)
    trees = (base_source.tree, head_side.source.tree) \
        if isinstance(base_source, GitSource) and isinstance(head_side.source, GitSource) else None
    pair = sidecache.load_pair(root, *trees) if trees is not None else None
    if pair is not None and isinstance(base_source, GitSource):
        def read_base(source: GitSource = base_source) -> Side:
            side = _cached_side(root, source, disk, None, need_checked=False)
            return side or _graph_side(source, load(source, disk, cross_check=False), None, None)

        later = _LaterSide(base_source.label, base_source, pair.base_fingerprint, read_base)
        return Comparison(later, head_side, pair.changes, [])
    files = changed_files(root, base_source.label, None if head is None else head_side.rev)
    cached = None
    if isinstance(base_source, GitSource):
        cached = _cached_side(root, base_source, disk, None, need_checked=False)
    if base == "empty":
        base_side = empty_side()
    elif cached is not None:
        base_side = cached
    else:
        try:
            loaded = load(base_source, disk, cross_check=False)
        except SpecError as e:  # a broken base must not make its own fix unplannable
            base_invalid = [str(d) for d in e.diagnostics]
            base_side = empty_side()
            base_side.rev = base_source.label
        else:
            moved = any(p.endswith(".py") and base_source.exists(p) != head_side.source.exists(p) for p in files)
            reuse = Reuse(head_side.graph, _digests(head_side.loaded), _digests(loaded), files, moved)
            base_side = _graph_side(base_source, loaded, imports, reuse)
            if isinstance(base_source, GitSource):
                sidecache.store_entry(root, *sidecache.entry_of(base_source.tree, loaded, base_side.graph, False,
                                                                set()))
    if disk.dirty:
        disk.save(keep={ParseCache.key(path, digest) for side in (base_side, head_side)
                        for path, digest in side.loaded.digests().items()})
    changes = diff_graphs(base_side.graph, head_side.graph, files)
    if trees is not None and not base_invalid:
        sidecache.store_pair(root, *trees, sidecache.Pair(base_side.fingerprint(), changes))
    return Comparison(base_side, head_side, changes, base_invalid)
