"""OverlayStore: a store whose writes never reach the store below it.

Reads look in the overlay first, then below; every write (blobs, records, deletions) stays in the
overlay, a scratch LocalStore. A pull request's preview runs pipelines and registers candidates
against the shared state this way: step cache hits and the stage holders come from below, and
nothing it makes (or that the pull request's code makes it write) is ever shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mlops.store.local import LocalStore
from mlops.store.protocol import ArtifactStore


class OverlayStore:
    """``below`` read-only, with writes kept in a LocalStore at ``scratch``."""

    def __init__(self, below: ArtifactStore, scratch: Path):
        self.below = below
        self.top = LocalStore(scratch)
        self._deleted: set[str] = set()
        self.url = f"{below.url} (read-only; writes kept in {self.top.url})"

    def __repr__(self) -> str:
        return f"OverlayStore({self.below!r}, {self.top!r})"

    def put_file(self, path: Path) -> str:
        return self.top.put_file(path)

    def put_bytes(self, data: bytes) -> str:
        return self.top.put_bytes(data)

    def has_blob(self, digest: str) -> bool:
        return self.top.has_blob(digest) or self.below.has_blob(digest)

    def get_file(self, digest: str, dest: Path) -> None:
        (self.top if self.top.has_blob(digest) else self.below).get_file(digest, dest)

    def get_bytes(self, digest: str) -> bytes:
        return (self.top if self.top.has_blob(digest) else self.below).get_bytes(digest)

    def read_record(self, key: str) -> bytes | None:
        if key in self._deleted:
            return self.top.read_record(key)
        data = self.top.read_record(key)
        return data if data is not None else self.below.read_record(key)

    def create_record(self, key: str, data: bytes) -> bool:
        if self.read_record(key) is not None:
            return False
        created = self.top.create_record(key, data)
        if created:
            self._deleted.discard(key)
        return created

    def write_record(self, key: str, data: bytes) -> None:
        self.top.write_record(key, data)
        self._deleted.discard(key)

    def delete_record(self, key: str) -> None:
        self.top.delete_record(key)
        self._deleted.add(key)

    def list_records(self, prefix: str) -> Iterator[str]:
        keys = set(self.top.list_records(prefix))
        keys.update(k for k in self.below.list_records(prefix) if k not in self._deleted)
        yield from sorted(keys)
