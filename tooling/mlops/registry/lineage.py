"""Lineage from git: which commit a registration came from, who made it and why."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def git_lineage(repo_root: Path) -> dict[str, Any]:
    """``git_commit``, ``git_author`` ("Name <email>"), ``git_message`` and ``git_dirty`` of the
    repository at ``repo_root``; all None outside a git repository or before the first commit
    (``git_dirty`` is still known in an empty repository)."""
    import git

    out: dict[str, Any] = {"git_commit": None, "git_author": None, "git_message": None, "git_dirty": None}
    try:
        repo = git.Repo(repo_root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return out
    with repo:
        # Untracked files (model outputs, the local store) do not make the specs dirty.
        out["git_dirty"] = repo.is_dirty(untracked_files=False)
        try:
            commit = repo.head.commit
        except ValueError:  # no commit yet
            return out
        out["git_commit"] = commit.hexsha
        out["git_author"] = f"{commit.author.name} <{commit.author.email}>"
        message = commit.message
        out["git_message"] = (message.decode(errors="replace") if isinstance(message, bytes) else message).strip()
    return out


def registered_by() -> str:
    """Who is registering: the GitHub actor in Actions, else user@host."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def utc_now() -> str:
    """The current time as UTC ISO 8601 with a Z suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
