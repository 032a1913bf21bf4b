"""The ArtifactStore protocol: content-addressed blobs plus small named records.

Blobs are immutable and addressed by their sha256 (hex, 64 chars). Writes are atomic
(a reader never sees a partial blob) and reads verify the digest, raising
``IntegrityError`` on mismatch.

Records are small JSON-ish documents under slash-separated keys (``registry/models/x/3.json``).
``create_record`` is the one concurrency primitive: it creates a key only if it does not
exist yet, atomically, and says whether it did. Version numbers, locks and run records
are all built on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifacts and registry records live (local directory, S3, in-memory fake)."""

    url: str  # human-readable location, e.g. file:///repo/.mlops or s3://bucket/prefix

    # -- blobs -------------------------------------------------------------------------
    def put_file(self, path: Path) -> str:
        """Store a file's bytes; return its sha256 hex digest. Idempotent."""
        ...

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their sha256 hex digest. Idempotent."""
        ...

    def has_blob(self, digest: str) -> bool: ...

    def get_file(self, digest: str, dest: Path) -> None:
        """Write the blob to ``dest`` atomically, verifying its digest (IntegrityError if it differs)."""
        ...

    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified against the digest."""
        ...

    # -- records -----------------------------------------------------------------------
    def read_record(self, key: str) -> bytes | None:
        """The record's bytes, or None if there is no such key."""
        ...

    def create_record(self, key: str, data: bytes) -> bool:
        """Atomically create ``key`` if it does not exist. True if created, False if it existed."""
        ...

    def write_record(self, key: str, data: bytes) -> None:
        """Create or overwrite ``key`` atomically (readers see old or new, never a mix)."""
        ...

    def delete_record(self, key: str) -> None: ...

    def list_records(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix``, sorted."""
        ...
