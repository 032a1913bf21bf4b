"""Lineage from git: which commit a registration came from, who made it and why."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime, timezone

from mlops.lineage import git_lineage

__all__ = ["git_lineage", "registered_by", "utc_now"]


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
