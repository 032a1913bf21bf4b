"""Read spec files at a git revision (through git's plumbing, no checkout) or from the working tree."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from mlops import paths
from mlops.errors import MissingRevisionError, RevisionError
from mlops.spec.limits import MAX_SPEC_BYTES

SPEC_DIRS = ("environments", "datasets", "pipelines", "models", "endpoints")
PROJECT_FILE = "mlops.yaml"
YAML_SUFFIXES = (".yaml", ".yml")


def is_spec_path(path: str) -> bool:
    """Whether a repository path is where specs live (the project file or YAML under an asset folder)."""
    if path == PROJECT_FILE:
        return True
    top, _, rest = path.partition("/")
    return top in SPEC_DIRS and bool(rest) and path.endswith(YAML_SUFFIXES)


@dataclass(frozen=True)
class SourceFile:
    """One spec file. ``data`` is read lazily so that a parse cache keyed by digest can skip it."""

    path: str  # repository-relative POSIX path
    digest: str  # git blob sha1 of the content, for commits and the working tree alike (so they compare)
    load: Callable[[], bytes]
    size: int = -1  # bytes, when known before reading (-1: ask ``sizer``); checked against MAX_SPEC_BYTES first
    sizer: Callable[[], int] | None = None  # the size, looked up only when the file must be read

    @property
    def data(self) -> bytes:
        return self.load()

    def measure(self) -> int:
        """The size in bytes, without reading the content (-1 if unknown)."""
        return self.size if self.size >= 0 or self.sizer is None else self.sizer()


class SpecSource(Protocol):
    """Where specs are read from."""

    label: str  # e.g. "worktree" or the commit sha

    def spec_files(self) -> Iterator[SourceFile]: ...

    def exists(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes | None: ...

    def digest(self, path: str) -> str | None:
        """The git blob id of a file's content, or None when there is no such file."""
        ...

    def is_file(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def resolve(self, path: str, write: bool = False) -> str:
        """``path`` (normalised) with its symbolic links resolved. ``PathError`` when a link leads
        outside the repository, or (``write``) when a directory above the path is a link at all."""
        ...

    def tracked(self, rels: Iterable[str]) -> dict[str, str]:
        """For each of ``rels`` that is a tracked file or holds tracked files: one such file."""
        ...


class WorktreeSource:
    """The files as they are on disk (tracked or not)."""

    label = "worktree"

    def __init__(self, root: Path):
        self.root = root

    def spec_files(self) -> Iterator[SourceFile]:
        found = []
        if (self.root / PROJECT_FILE).is_file():
            found.append(PROJECT_FILE)
        for top in SPEC_DIRS:
            base = self.root / top
            if not base.is_dir() or base.is_symlink():  # as at a revision: a link holds no files
                continue
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    if f.endswith(YAML_SUFFIXES):
                        found.append(Path(dirpath, f).relative_to(self.root).as_posix())
        for p in sorted(found):
            yield self.source_file(p)

    def source_file(self, p: str) -> SourceFile:
        """The spec file at repository path ``p`` (which must exist)."""
        full = self.root / p
        if full.is_symlink():
            # A spec file that is a link is read as git stores it (its target's name), as at a
            # revision: never the content of a host file, which error messages would echo.
            data = os.fsencode(os.readlink(full))
            return SourceFile(p, git_blob_sha(data), _const(data), len(data))
        size = full.stat().st_size
        if size > MAX_SPEC_BYTES:  # never held in memory: parse_file refuses it by its size
            return SourceFile(p, _git_blob_sha_of_file(full, size), functools.partial(_head, full), size)
        data = full.read_bytes()
        return SourceFile(p, git_blob_sha(data), _const(data), len(data))

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def digest(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else git_blob_sha(data)

    def is_file(self, path: str) -> bool:
        return (self.root / path).is_file()

    def is_dir(self, path: str) -> bool:
        return (self.root / path).is_dir()

    def resolve(self, path: str, write: bool = False) -> str:
        return paths.resolve(path, paths.fs_readlink(self.root), paths.fs_roots(self.root), write)

    def tracked(self, rels: Iterable[str]) -> dict[str, str]:
        # The index decides what is tracked: one `git ls-files` limited to these paths.
        return paths.tracked(self.root, rels)


class EmptySource:
    """The state before the first commit: nothing at all."""

    label = "empty"

    def spec_files(self) -> Iterator[SourceFile]:
        return iter(())

    def exists(self, path: str) -> bool:
        return False

    def read(self, path: str) -> bytes | None:
        return None

    def digest(self, path: str) -> str | None:
        return None

    def is_file(self, path: str) -> bool:
        return False

    def is_dir(self, path: str) -> bool:
        return False

    def resolve(self, path: str, write: bool = False) -> str:
        return path

    def tracked(self, rels: Iterable[str]) -> dict[str, str]:
        return {}


class GitSource:
    """The files of one commit, read from the object database (no checkout).

    One ``git ls-tree -r`` lists every path with its blob id (on first need: a plan whose results
    are cached by tree id needs no listing), so existence checks and digests are dictionary
    look-ups and only the blobs actually needed are read (see ``mlops.spec.gitobjects``).
    """

    def __init__(self, root: Path, rev: str):
        from mlops.spec.gitobjects import BlobReader, is_repository, resolve_commit

        self.root = Path(root)
        if not is_repository(self.root):
            raise RevisionError(f"{root} is not a git repository")
        found = resolve_commit(self.root, rev)
        if found is None:
            raise missing_revision(root, rev)
        self.label, self.tree = found
        self._listing: tuple[dict[str, str], set[str]] | None = None
        self._dirs: set[str] | None = None
        self._sizes: dict[str, int] = {}  # blob id -> size, learnt when it is read
        self._blob_reader = BlobReader(self.root)
        self._inside: dict[str, str] | None = None
        self.reads: set[str] = set()  # paths read through ``read`` (what validation depended on)

    @property
    def blobs(self) -> dict[str, str]:
        """Every file of the commit: path -> blob id."""
        return self._list()[0]

    @property
    def links(self) -> set[str]:
        """Symbolic links: blobs whose content is the target."""
        return self._list()[1]

    @property
    def dirs(self) -> set[str]:
        if self._dirs is None:
            self._dirs = {d for p in self.blobs for d in _parent_dirs(p)}
        return self._dirs

    def _list(self) -> tuple[dict[str, str], set[str]]:
        if self._listing is None:
            from mlops.spec.gitobjects import list_tree

            self._listing = list_tree(self.root, self.tree)
        return self._listing

    def spec_files(self) -> Iterator[SourceFile]:
        for path in sorted(p for p in self.blobs if is_spec_path(p)):
            if not any(part.startswith(".") for part in PurePosixPath(path).parts):
                yield self.source_file(path, self.blobs[path])

    def source_file(self, path: str, sha: str) -> SourceFile:
        """The file ``path`` with blob id ``sha``, read on demand."""
        # The size comes with the content (`ls-tree -l` would read every blob's header up front).
        return SourceFile(path, sha, self._reader(sha), sizer=functools.partial(self._size, sha))

    def read_blob(self, sha: str) -> bytes:
        """The content of blob ``sha`` (one too large to be a spec: only its first MAX_SPEC_BYTES + 1 bytes)."""
        return self._reader(sha)()

    def _size(self, sha: str) -> int:
        return self._sizes.get(sha, -1)

    def _reader(self, sha: str) -> Callable[[], bytes]:
        """Reads the blob; one too large to be a spec only up to MAX_SPEC_BYTES + 1 bytes."""
        def read() -> bytes:
            data, self._sizes[sha] = self._blob_reader.read(sha, MAX_SPEC_BYTES)
            return data
        return read

    def digest(self, path: str) -> str | None:
        return self.blobs.get(path)

    def is_file(self, path: str) -> bool:
        return path in self.blobs

    def is_dir(self, path: str) -> bool:
        return path == "" or path in self.dirs

    def exists(self, path: str) -> bool:
        path = path.rstrip("/")
        return path in self.blobs or path in self.dirs

    def read(self, path: str) -> bytes | None:
        self.reads.add(path)
        sha = self.blobs.get(path)
        return None if sha is None else self._reader(sha)()

    def resolve(self, path: str, write: bool = False) -> str:
        def readlink(rel: str) -> str | None:
            data = self.read(rel) if rel in self.links else None
            return None if data is None else os.fsdecode(data)

        return paths.resolve(path, readlink, (), write)

    def tracked(self, rels: Iterable[str]) -> dict[str, str]:
        if self._inside is None:  # directory -> one file below it, built once
            self._inside = {}
            for p in sorted(self.blobs):
                for d in _parent_dirs(p):
                    self._inside.setdefault(d, p)
        found = {}
        for r in rels:
            hit = r if r in self.blobs else self._inside.get(r)
            if r and hit:
                found[r] = hit
        return found


def _parent_dirs(path: str) -> Iterator[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def missing_revision(root: Path, rev: str) -> MissingRevisionError:
    """The error for a revision this clone does not have, with the ways to get it."""
    shallow = (Path(root) / ".git" / "shallow").is_file()
    where = "this shallow clone" if shallow else f"the repository at {root}"
    return MissingRevisionError(
        f"unknown revision {rev!r}: it is not in {where}; if it exists upstream, fetch it "
        f"(`git fetch origin {rev}`) or the whole history (`git fetch --unshallow`; in GitHub Actions, "
        "actions/checkout with `fetch-depth: 0`), or pass another --base", rev)


def open_source(root: Path, rev: str | None) -> SpecSource:
    """``rev=None`` means the working tree; ``rev="empty"`` the empty state; else a git revision."""
    if rev is None:
        return WorktreeSource(root)
    if rev == "empty":
        return EmptySource()
    return GitSource(root, rev)


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _head(path: Path) -> bytes:
    """The first MAX_SPEC_BYTES of a file."""
    with open(path, "rb") as f:
        return f.read(MAX_SPEC_BYTES)


def _git_blob_sha_of_file(path: Path, size: int) -> str:
    """``git_blob_sha`` of a file's content, streamed (for files too large to hold)."""
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha(data: bytes) -> str:
    """The id git gives this content as a blob, so working-tree files compare with committed ones."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
