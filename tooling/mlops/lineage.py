"""The git lineage of the workspace: commit, author, commit message and whether the tree is dirty.

Shared by pipeline run records and registry versions (one definition of "which commit, who, why").

Read with the ``git`` command rather than gitpython: importing gitpython alone costs ~140 ms,
which would be most of a no-op ``mlops run``, and gitpython shells out to ``git`` for the dirty
check anyway. One ``git status --porcelain=v2 --branch`` gives both the commit and the dirty
flag; it is started when the run starts and read when it ends. A commit's author and message
never change, so they are remembered by commit id (``git log`` runs once per new commit).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_STATUS = ("status", "--porcelain=v2", "--branch")
NULL = {"git_commit": None, "git_author": None, "git_message": None, "git_dirty": None}
_KEEP_COMMITS = 64


class GitLineage:
    """The lineage of the repository at ``root``, computed in the background.

    ``ignore`` lists repository paths (a pipeline's own outputs) whose changes do not make the tree
    dirty: a run must not call its own products "uncommitted changes". ``untracked`` says whether
    untracked files count. ``commits`` is where authors and messages of commits already seen are
    remembered (None: nowhere).
    """

    def __init__(self, root: Path, ignore: Iterable[str] = (), commits: Path | None = None,
                 untracked: bool = True) -> None:
        self.root = root
        self.commits = commits
        excluded = [f":(top,exclude){p}" for p in sorted(set(ignore))]
        mode = "--untracked-files=normal" if untracked else "--untracked-files=no"
        self._status = _start(root, (*_STATUS, mode, "--", ":/", *excluded))

    def result(self) -> dict[str, Any]:
        """``git_commit``, ``git_author`` ("Name <email>"), ``git_message``, ``git_dirty`` (all None outside git)."""
        status = _finish(self._status)
        if status is None:
            return dict(NULL)
        commit: str | None = None
        dirty = False
        for line in status.splitlines():
            if line.startswith("# branch.oid "):
                oid = line.split()[2]
                commit = None if oid == "(initial)" else oid
            elif line and not line.startswith("#"):
                dirty = True
        author, message = self._describe(commit) if commit else (None, None)
        return {"git_commit": commit, "git_author": author, "git_message": message, "git_dirty": dirty}

    def _describe(self, commit: str) -> tuple[str | None, str | None]:
        known = _load(self.commits)
        if commit in known:
            author, message = known[commit]
            return author, message
        head = _finish(_start(self.root, ("log", "-1", "--format=%an <%ae>%x00%B", commit)))
        if head is None:
            return None, None
        author, _, message = head.partition("\0")
        found = (author or None, message.strip() or None)
        if self.commits is not None:
            known = dict(list(known.items())[-(_KEEP_COMMITS - 1):])
            known[commit] = found
            with contextlib.suppress(OSError):  # only a memo
                _write_json_atomic(self.commits, known)
        return found


def git_lineage(root: Path, ignore: Iterable[str] = (), untracked: bool = False) -> dict[str, Any]:
    """The lineage of the repository at ``root`` now (untracked files do not count by default:
    outputs and stores are untracked)."""
    return GitLineage(root, ignore, untracked=untracked).result()


def _load(path: Path | None) -> dict[str, tuple[str | None, str | None]]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: (v[0], v[1]) for k, v in data.items()
            if isinstance(v, list) and len(v) == 2 and all(x is None or isinstance(x, str) for x in v)}


def _start(root: Path, args: tuple[str, ...]) -> subprocess.Popen[str] | None:
    try:
        return subprocess.Popen(["git", *args], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None


def _finish(proc: subprocess.Popen[str] | None) -> str | None:
    if proc is None:
        return None
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return out if proc.returncode == 0 else None


def _write_json_atomic(path: Path, value: Any) -> None:
    from mlops.paths import write_atomic

    write_atomic(path, json.dumps(value).encode())
