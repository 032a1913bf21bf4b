"""The git lineage of a run: commit, author, commit message and whether the work tree is dirty.

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

from mlops.pipelines.digests import write_json_atomic

_STATUS = ("status", "--porcelain=v2", "--branch", "--untracked-files=normal")
_KEEP_COMMITS = 64


class GitLineage:
    """The lineage of the repository at ``root``, computed in the background.

    ``ignore`` lists paths (the pipeline's own outputs) whose changes do not make the tree dirty:
    a run must not call its own products "uncommitted changes". ``commits`` is where authors and
    messages of commits already seen are remembered (None: nowhere).
    """

    def __init__(self, root: Path, ignore: Iterable[str] = (), commits: Path | None = None) -> None:
        self.root = root
        self.commits = commits
        excluded = [f":(exclude){p}" for p in sorted(set(ignore))]
        self._status = _start(root, (*_STATUS, "--", ".", *excluded))

    def result(self) -> dict[str, Any]:
        """``{"commit", "author", "message", "dirty"}`` (None values when not a git repository)."""
        status = _finish(self._status)
        if status is None:
            return {"commit": None, "author": None, "message": None, "dirty": None}
        commit: str | None = None
        dirty = False
        for line in status.splitlines():
            if line.startswith("# branch.oid "):
                oid = line.split()[2]
                commit = None if oid == "(initial)" else oid
            elif line and not line.startswith("#"):
                dirty = True
        author, message = self._describe(commit) if commit else (None, None)
        return {"commit": commit, "author": author, "message": message, "dirty": dirty}

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
                write_json_atomic(self.commits, known)
        return found


def git_lineage(root: Path, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """The lineage of the repository at ``root`` now."""
    return GitLineage(root, ignore).result()


def _load(path: Path | None) -> dict[str, tuple[str | None, str | None]]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: (v[0], v[1]) for k, v in data.items() if isinstance(v, list) and len(v) == 2}


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
