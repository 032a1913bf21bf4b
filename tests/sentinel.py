"""A directory outside the repository that nothing may touch, and a way to prove it was not."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SECRET = "root:$6$not-a-real-hash:19000:0:99999:7:::\n"


def make_sentinel(path: Path) -> Path:
    """A host directory with a "secret" file and a subdirectory, standing for /etc and friends."""
    (path / "sub").mkdir(parents=True)
    (path / "shadow").write_text(SECRET)
    (path / "sub" / "keep.txt").write_text("keep me\n")
    return path


def snapshot(path: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every entry below ``path``: file content digests, link targets, directories (``skip`` names
    are left out, e.g. git's index, which ``git status`` may refresh)."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in dirnames + filenames:
            if name in skip:
                continue
            p = Path(dirpath, name)
            rel = p.relative_to(path).as_posix()
            if p.is_symlink():
                found[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def secret_digest() -> str:
    return hashlib.sha256(SECRET.encode()).hexdigest()
