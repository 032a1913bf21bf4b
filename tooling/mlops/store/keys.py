"""Validation of record keys, shared by every store so a key valid in one is valid in all."""

from __future__ import annotations

import re

from mlops.errors import StoreError
from mlops.store.digest import is_digest

# Conservative on purpose: a key must be usable as a file path, an S3 key and a git ref name.
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_@+=,-][A-Za-z0-9_.@+=,-]*$")


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid record key, else raise StoreError naming it.

    Keys are slash-separated segments of letters, digits and ``_ . @ + = , -``; a segment
    must not start with a dot (temp files do) nor end with ``.lock`` (git reserves it), and,
    as git's ref names, a key holds no ``..`` and does not end with a dot.
    """
    segments = key.split("/")
    if not key or len(key) > 512 or ".." in key or key.endswith(".") \
            or any(not _SEGMENT_RE.fullmatch(s) or s.endswith(".lock") for s in segments):
        raise StoreError(f"invalid record key {key!r}: use slash-separated segments of letters, digits "
                         "and _ . @ + = , - (a segment may not start with '.' or end with '.lock'; "
                         "no '..', no final '.')")
    return key


def is_key(key: str) -> bool:
    """Whether ``key`` is a valid record key. Listings keep only those: whatever else lies among the
    records (a stray file, an object someone put in the bucket) is no record of ours, and must not
    stop the listing of the good ones."""
    try:
        check_key(key)
    except StoreError:
        return False
    return True


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a lowercase sha256 hex digest, else raise StoreError."""
    if not is_digest(digest):
        raise StoreError(f"invalid blob digest {digest!r}: expected 64 lowercase hex characters (sha256)")
    return digest
