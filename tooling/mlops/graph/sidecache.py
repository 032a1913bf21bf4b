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

The change set between two cached trees is kept too (a plan made again, or by another command,
reads neither the base's graph nor compares the graphs).

The typed specs of a cached side are built one by one as the plan reads them (``LazyTable``), from a
pack of the spec documents written beside the entries (one per set of spec files, shared by the trees
that have them): one read at a known offset, checked against its path and blob id; anything amiss
there falls back to the parse cache or the blob itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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
from mlops.graph.diff import Change, ChangeSet
from mlops.spec.cache import JsonCache, ParseCache, cache_file, stamp
from mlops.spec.lazytable import LazyTable
from mlops.spec.loader import SPECS_FIELD, LoadedSpecs, SpecFile, _build_cached, parse_file
from mlops.spec.model import KINDS, Pipeline, Project, Specs, StoreConfig
from mlops.spec.source import GitSource, is_spec_path

LAYOUT = "side-2"
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
    pack: str = ""  # name of the pack holding the spec documents ("" when none)
    offsets: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # path -> (offset, length)


class CachedLoad(LoadedSpecs):
    """A side's spec files from the cache; each typed spec is built when the plan first reads it."""

    def __init__(self, rows: dict[str, tuple[str, str | None, str | None]], label: str, source: GitSource,
                 disk: ParseCache | None, docs: Docs | None):
        self._rows = rows  # path -> (blob id, kind, name)
        self.files = LazyTable(keys=rows, make=self._spec_file)  # each SpecFile made when asked for
        self.label = label
        self._source = source
        self._disk = disk
        self._docs = docs
        self._specs: Specs | None = None

    def digests(self) -> dict[str, str]:
        return {path: row[0] for path, row in self._rows.items()}

    def _spec_file(self, path: str) -> SpecFile:
        digest, kind, name = self._rows[path]
        return SpecFile(path, digest, kind, name, None, [], None, functools.partial(self._source.read_blob, digest))

    @property
    def specs(self) -> Specs:
        if self._specs is None:
            tables: dict[str, dict[str, Callable[[], Any]]] = {table: {} for table in SPECS_FIELD.values()}
            project = Project(name="", stages=(), store=StoreConfig())
            for path, (_, kind, name) in sorted(self._rows.items()):  # as ``load`` fills the tables: in path order
                if kind == "Project":
                    project = self._value(path)
                elif kind is not None and name is not None:
                    tables[SPECS_FIELD[kind]][name] = functools.partial(self._value, path)
            self._specs = Specs(project=project, **{t: LazyTable(makers=m) for t, m in tables.items()})
        return self._specs

    @specs.setter
    def specs(self, value: Specs) -> None:
        self._specs = value

    def _value(self, path: str) -> Any:
        """The typed value of one spec: from the pack, else as ``load`` makes it (parse cache or blob)."""
        from mlops.spec.build import BUILDERS

        digest, kind, name = self._rows[path]
        doc = self._docs.get(path, digest) if self._docs is not None else None
        if doc is not None and doc[0] == kind and doc[1] == name:
            value = _build_cached(path, doc)
            if value is not None:
                return value
        parsed = parse_file(self._source.source_file(path, digest), self._disk)
        if parsed.diagnostics or parsed.kind != kind or parsed.name != name or kind is None:
            raise SpecError(parsed.diagnostics)  # only a forged cache entry gets here: the tree is not valid
        return parsed.built or BUILDERS[kind](parsed.data, path)


class Docs:
    """The spec documents of a pack, read one at a time at the offsets an entry gives."""

    def __init__(self, path: Path, offsets: dict[str, tuple[int, int]]):
        self.path = path
        self.offsets = offsets
        self._file: Any = None

    def get(self, path: str, digest: str) -> tuple[str, str, dict[str, Any]] | None:
        where = self.offsets.get(path)
        if where is None:
            return None
        try:
            if self._file is None:
                self._file = open(self.path, "rb")  # noqa: SIM115 - kept open for the next look-ups
            self._file.seek(where[0])
            check, _, body = self._file.read(where[1]).partition(b" ")
            if check != _record_check(body):  # damaged (even if it parses): not this document
                return None
            rec = json.loads(body)
        except (OSError, ValueError, RecursionError):
            return None
        if not (isinstance(rec, list) and len(rec) == 5 and rec[0] == path and rec[1] == digest
                and isinstance(rec[2], str) and isinstance(rec[3], str) and isinstance(rec[4], dict)
                and rec[4].get("kind") == rec[2] and rec[4].get("name") == rec[3]):
            return None
        return rec[2], rec[3], rec[4]


# -- reading and writing -------------------------------------------------------------------------
def _root_key(root: Path) -> str:
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]


def _entry_file(root: Path, tree: str) -> Path | None:
    return cache_file(root, f"{SIDES_DIR}/{tree}-{_root_key(root)}.json")


def _stamp_of() -> str:
    return f"{stamp()}:{LAYOUT}"


_MEMO: dict[tuple[str, str], Entry] = {}  # entries read or written by this process (a derived head's base)


def load_entry(root: Path, tree: str, need_checked: bool) -> Entry | None:
    """The cached results of ``tree``, or None (absent, malformed, stale, or unchecked when ``need_checked``)."""
    hit = _MEMO.get((_root_key(root), tree))
    if hit is not None and (hit.checked or not need_checked):
        return hit
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
    if len(_MEMO) > 16:
        _MEMO.clear()
    _MEMO[(_root_key(root), tree)] = entry
    return entry


def _decode(raw: Any, tree: str) -> Entry | None:
    if not isinstance(raw, dict) or raw.get("stamp") != _stamp_of() or raw.get("tree") != tree:
        return None
    files = []
    offsets: dict[str, tuple[int, int]] = {}
    for path, digest, kind, name, offset, length in raw["files"]:
        if not (type(path) is str and _is_oid(digest) and (kind is None or kind in KINDS)
                and (name is None if kind is None else type(name) is str)
                and type(offset) is int and type(length) is int):
            return None
        files.append((path, digest, kind, name))
        if length > 0 and offset >= 0:
            offsets[path] = (offset, length)
    graph = AssetGraph()
    assets = graph.assets
    kinds = _ASSET_KINDS
    for aid, kind, name, fp, deps, paths, spec_file in raw["assets"]:
        # "".join refuses anything but strings: one cheap check of a whole list
        if not (kind in kinds and aid == f"{kind}/{name}" and type(fp) is str and type(spec_file) is str
                and type(deps) is list and type(paths) is list):
            return None
        "".join(deps) + "".join(paths)
        assets[aid] = Asset(aid, kind, name, fp, tuple(deps), tuple(paths), spec_file)
    reads, pack = raw["reads"], raw["pack"]
    if not (isinstance(raw["checked"], bool) and _strings(reads) and (pack == "" or _is_hex(pack))):
        return None
    return Entry(tree, raw["checked"], files, graph, list(reads), pack, offsets)


def store_entry(root: Path, entry: Entry, docs: dict[str, tuple[str, str, dict[str, Any]]] | None = None) -> None:
    """Write ``entry`` (atomically; with ``docs``, path -> (kind, name, data) of its specs, a pack of them when
    there is none yet) and drop the oldest entries and packs beyond KEEP. Never an error."""
    path = _entry_file(root, entry.tree)
    if path is None:
        return
    from mlops.paths import write_atomic

    with contextlib.suppress(OSError, TypeError, ValueError):  # read-only or full: the next plan is just slower
        path.parent.mkdir(parents=True, exist_ok=True)
        if docs is not None and not entry.pack:
            entry.pack, entry.offsets = _write_pack(root, entry.files, docs)
        elif entry.pack and (pack := _pack_file(root, entry.pack)) is not None:
            os.utime(pack)  # in use: kept by _prune
        raw = {"stamp": _stamp_of(), "tree": entry.tree, "checked": entry.checked, "reads": sorted(entry.reads),
               "pack": entry.pack,
               "files": [[*f, *entry.offsets.get(f[0], (-1, -1))] for f in entry.files],
               "assets": [[a.id, a.kind, a.name, a.fingerprint, list(a.deps), list(a.files), a.spec_file]
                          for a in entry.graph.assets.values()]}
        body = json.dumps(raw, separators=(",", ":")).encode()
        write_atomic(path, hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        _prune(path.parent)
    _MEMO[(_root_key(root), entry.tree)] = entry


def _write_pack(root: Path, files: list[tuple[str, str, str | None, str | None]],
                docs: dict[str, tuple[str, str, dict[str, Any]]]) -> tuple[str, dict[str, tuple[int, int]]]:
    """One record per spec document; named after the set of (path, blob id) it holds."""
    from mlops.paths import write_atomic

    name = hashlib.sha256("".join(f"{p}\0{d}\n" for p, d, _, _ in files).encode()).hexdigest()
    target = _pack_file(root, name)
    if target is None:
        return "", {}
    chunks: list[bytes] = []
    offsets: dict[str, tuple[int, int]] = {}
    at = 0
    for path, digest, _, _ in files:
        if path in docs:
            kind, doc_name, data = docs[path]
            body = json.dumps([path, digest, kind, doc_name, data], separators=(",", ":")).encode() + b"\n"
            rec = _record_check(body) + b" " + body
            offsets[path] = (at, len(rec))
            chunks.append(rec)
            at += len(rec)
    write_atomic(target, b"".join(chunks))
    return name, offsets


def _record_check(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=8).hexdigest().encode()


def _pack_file(root: Path, name: str) -> Path | None:
    return cache_file(root, f"{SIDES_DIR}/{name}-{_root_key(root)}.pack")


def _prune(folder: Path) -> None:
    for prefix, suffix in (("", ".json"), ("", ".pack"), ("pair-", ".json")):
        found = sorted((e.stat().st_mtime, e.path) for e in os.scandir(folder) if e.name.endswith(suffix)
                       and e.name.startswith("pair-") == (prefix == "pair-") and e.is_file(follow_symlinks=False))
        for _, old in found[:-KEEP]:
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


# -- pairs: the change set between two trees ---------------------------------------------------------
@dataclass
class Pair:
    base_fingerprint: str
    changes: ChangeSet


_CHANGE_KINDS = ("created", "changed", "affected", "removed")


def _pair_file(root: Path, base: str, head: str) -> Path | None:
    return cache_file(root, f"{SIDES_DIR}/pair-{base}-{head}-{_root_key(root)}.json")


def load_pair(root: Path, base: str, head: str) -> Pair | None:
    """The change set from tree ``base`` to tree ``head``, when cached (None: absent, malformed or stale)."""
    path = _pair_file(root, base, head)
    if path is None:
        return None
    try:
        check, _, body = path.read_bytes().partition(b"\n")
        if check != hashlib.sha256(body).hexdigest().encode():
            return None
        raw = json.loads(body)
        if not (isinstance(raw, dict) and raw["stamp"] == _stamp_of() and raw["base"] == base and raw["head"] == head
                and _is_hex(raw["base_fingerprint"]) and _strings(raw["changed_files"])):
            return None
        changes = []
        for asset, change, reasons in raw["changes"]:
            if not (type(asset) is str and change in _CHANGE_KINDS and _strings(reasons)):
                return None
            changes.append(Change(asset, change, tuple(reasons)))
    except (OSError, ValueError, RecursionError, TypeError, KeyError):
        return None
    return Pair(raw["base_fingerprint"], ChangeSet(changes, list(raw["changed_files"])))


def store_pair(root: Path, base: str, head: str, pair: Pair) -> None:
    """Keep the change set between two trees (at most KEEP pairs). Never an error."""
    path = _pair_file(root, base, head)
    if path is None:
        return
    from mlops.paths import write_atomic

    raw = {"stamp": _stamp_of(), "base": base, "head": head, "base_fingerprint": pair.base_fingerprint,
           "changed_files": list(pair.changes.changed_files),
           "changes": [[c.asset, c.change, list(c.reasons)] for c in pair.changes.changes]}
    with contextlib.suppress(OSError, TypeError, ValueError):
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(raw, separators=(",", ":")).encode()
        write_atomic(path, hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        _prune(path.parent)


# -- sides -------------------------------------------------------------------------------------------
def loaded_of(entry: Entry, source: GitSource, disk: ParseCache | None, root: Path) -> CachedLoad:
    rows = {path: (digest, kind, name) for path, digest, kind, name in entry.files}
    pack = _pack_file(root, entry.pack) if entry.pack else None
    return CachedLoad(rows, source.label, source, disk, Docs(pack, entry.offsets) if pack is not None else None)


def entry_of(tree: str, loaded: LoadedSpecs, graph: AssetGraph, checked: bool,
             reads: set[str]) -> tuple[Entry, dict[str, tuple[str, str, dict[str, Any]]]]:
    """The entry of a side read afresh, and its spec documents (for the pack)."""
    files = [(path, f.digest, f.kind, f.name if f.kind else None) for path, f in sorted(loaded.files.items())]
    docs = {path: (f.kind, f.name, f.data) for path, f in loaded.files.items()
            if f.kind is not None and f.name is not None and not f.diagnostics}
    return Entry(tree, checked, files, graph, sorted(reads)), docs


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
        return Entry(source.tree, True, entry.files, graph, entry.reads, entry.pack, entry.offsets)
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
