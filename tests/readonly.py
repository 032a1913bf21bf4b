"""Run a command with one directory read-only, for real (not a mocked OSError).

Root ignores permission bits, so as root the directory is bind-mounted read-only in a private
mount namespace (``unshare -rm``; nothing outside the command sees it). Other users get the
write bits removed for the duration of the command.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def run_with_readonly(directory: Path, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv)`` while ``directory`` (which must exist) cannot be written."""
    if os.geteuid() == 0:
        if not _can_unshare():
            pytest.skip("needs `unshare -rm` to make a read-only directory as root")
        script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
        return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(directory), *argv],
                              capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    modes = {}
    for p in [directory, *directory.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            modes[p] = p.stat().st_mode
            p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        return subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
