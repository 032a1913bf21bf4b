"""sha256 digests, computed in a streaming way so large files never sit in memory."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_bytes(data: bytes) -> str:
    """The sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter_chunks(f):
            h.update(chunk)
    return h.hexdigest()


def iter_chunks(f: BinaryIO, size: int = CHUNK) -> Iterable[bytes]:
    """Chunks of a binary stream until EOF."""
    while True:
        chunk = f.read(size)
        if not chunk:
            return
        yield chunk


def is_digest(text: str) -> bool:
    """True for a lowercase sha256 hex digest."""
    return bool(_DIGEST_RE.fullmatch(text))
