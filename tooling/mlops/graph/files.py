"""Which repository files differ between two revisions (git is the source of truth)."""

from __future__ import annotations

import os
from pathlib import Path

from mlops.errors import RevisionError


def changed_files(root: Path, base: str, head: str | None) -> set[str]:
    """Paths that differ between ``base`` and ``head`` (None = the working tree, untracked files included).

    A rename counts as a change of both the old and the new path. ``base="empty"`` means every file of head.
    """
    from mlops.spec.gitobjects import git, is_repository

    if not is_repository(root):
        raise RevisionError(f"{root} is not a git repository")

    def run(*args: str) -> str:
        proc = git(root, *args)
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()
            raise RevisionError(f"git could not compare {base!r} and {head or 'the working tree'!r}: "
                                f"{detail or f'exit code {proc.returncode}'}")
        return os.fsdecode(proc.stdout)

    if base == "empty":
        if head is None:
            listed = run("ls-files", "-z") + "\0" + run("ls-files", "-z", "--others", "--exclude-standard")
            return {p for p in listed.split("\0") if p}
        return {p for p in run("ls-tree", "-r", "--name-only", "-z", head).split("\0") if p}
    out = run("diff", "--name-status", "-z", "-M", base, *([head] if head else []))
    untracked = run("ls-files", "-z", "--others", "--exclude-standard") if head is None else ""
    files: set[str] = set()
    fields = out.split("\0")
    i = 0
    while i < len(fields):
        status = fields[i]
        if not status:
            i += 1
            continue
        if status[0] in "RC":
            files.update(fields[i + 1:i + 3])
            i += 3
        else:
            files.add(fields[i + 1])
            i += 2
    files.update(p for p in untracked.split("\0") if p)
    return files
