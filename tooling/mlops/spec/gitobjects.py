"""A commit's files, read with git's own plumbing instead of gitpython.

Planning reads two commits. Importing gitpython costs more than everything git itself does here:
one ``git rev-parse`` names the commit and its tree, one ``git ls-tree -r`` (only when a listing
is needed) gives every path with its blob id, and one long-lived ``git cat-file --batch`` reads
the few blobs that the caches do not already hold.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import weakref
from pathlib import Path
from typing import IO

from mlops.errors import RevisionError


def is_repository(root: Path) -> bool:
    """Whether ``root`` itself is a git work tree (as gitpython's ``Repo(root)``: parents are not searched)."""
    return (Path(root) / ".git").exists()


def git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run git in ``root`` (no stdin); RevisionError when git cannot be started."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise RevisionError(f"cannot run git in {root}: {e}") from e


def resolve_commit(root: Path, rev: str) -> tuple[str, str] | None:
    """(commit id, tree id) of ``rev``, or None when this repository has no such commit."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n\r"):
        return None  # never an option for git, never two lines of input
    proc = git(root, "rev-parse", f"{rev}^{{commit}}", f"{rev}^{{tree}}")
    lines = proc.stdout.decode("ascii", "replace").split()
    if proc.returncode != 0 or len(lines) != 2 or not all(_is_oid(x) for x in lines):
        return None  # unknown, ambiguous, or not one commit (a range such as A..B)
    return lines[0], lines[1]


def list_tree(root: Path, tree: str) -> tuple[dict[str, str], set[str]]:
    """Every file below ``tree``: path -> blob id, and the paths that are symbolic links."""
    proc = git(root, "ls-tree", "-r", "-z", "--full-tree", tree)
    if proc.returncode != 0:
        raise RevisionError(f"git could not list tree {tree} in {root}: {proc.stderr.decode(errors='replace').strip()}")
    blobs: dict[str, str] = {}
    links: set[str] = set()
    for entry in proc.stdout.split(b"\0"):
        meta, _, raw = entry.partition(b"\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == b"blob":
            path = os.fsdecode(raw)
            blobs[path] = parts[2].decode("ascii")
            if parts[0] == b"120000":
                links.add(path)
    return blobs, links


class BlobReader:
    """Blob contents by id, through one ``git cat-file --batch`` started on the first read."""

    def __init__(self, root: Path):
        self.root = root
        self._proc: subprocess.Popen[bytes] | None = None

    def read(self, sha: str, limit: int) -> tuple[bytes, int]:
        """(content, size) of blob ``sha``; a blob larger than ``limit`` only up to ``limit + 1`` bytes."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(sha.encode("ascii") + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
        except (OSError, ValueError) as e:
            self.close()
            raise RevisionError(f"git cat-file failed in {self.root}: {e}") from e
        if len(header) != 3 or header[1] != b"blob":
            self.close()  # "missing", or not a blob: the stream holds no content to skip
            raise RevisionError(f"git object {sha} is not a blob in {self.root}")
        size = int(header[2])
        data = _read_exactly(proc.stdout, min(size, limit + 1))
        _skip(proc.stdout, size - len(data) + 1)  # the rest of a large blob, and the newline after it
        return data, size

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            try:
                self._proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.root, stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            except OSError as e:
                raise RevisionError(f"cannot run git in {self.root}: {e}") from e
            weakref.finalize(self, _stop, self._proc)
        return self._proc

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            raise RevisionError("git cat-file ended early")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _skip(stream: IO[bytes], n: int) -> None:
    while n > 0:  # in chunks: a huge blob is never held whole
        n -= len(_read_exactly(stream, min(n, 1 << 20)))


def _is_oid(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)
