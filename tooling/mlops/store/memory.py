"""MemoryStore: the in-memory ArtifactStore fake for tests (one process, thread-safe)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from mlops.errors import IntegrityError, StoreError
from mlops.store.digest import sha256_bytes
from mlops.store.keys import check_digest, check_key, is_key


class MemoryStore:
    """Blobs and records in dicts. ``blobs`` is public so tests can tamper with a blob."""

    def __init__(self, name: str = "") -> None:
        self.url = f"memory://{name or uuid.uuid4().hex[:8]}"
        self.blobs: dict[str, bytes] = {}
        self.records: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({self.url!r})"

    def put_file(self, path: Path) -> str:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror or e}") from e
        return self.put_bytes(data)

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        with self._lock:
            old = self.blobs.get(digest)
            if old is None or sha256_bytes(old) != digest:  # absent or corrupt: (re)write it
                self.blobs[digest] = bytes(data)
        return digest

    def has_blob(self, digest: str) -> bool:
        return check_digest(digest) in self.blobs

    def get_file(self, digest: str, dest: Path) -> None:
        data = self.get_bytes(digest)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp.write_bytes(data)
        os.replace(tmp, dest)

    def get_bytes(self, digest: str) -> bytes:
        data = self.blobs.get(check_digest(digest))
        if data is None:
            raise StoreError(f"blob {digest} is not in {self.url}")
        actual = sha256_bytes(data)
        if actual != digest:
            raise IntegrityError(f"blob {digest} at {self.url} is corrupt: its content hashes to {actual}")
        return data

    def read_record(self, key: str) -> bytes | None:
        return self.records.get(check_key(key))

    def create_record(self, key: str, data: bytes) -> bool:
        with self._lock:
            if check_key(key) in self.records:
                return False
            self.records[key] = bytes(data)
            return True

    def write_record(self, key: str, data: bytes) -> None:
        with self._lock:
            self.records[check_key(key)] = bytes(data)

    def delete_record(self, key: str) -> None:
        with self._lock:
            self.records.pop(key, None)

    def list_records(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self.records if k.startswith(prefix) and is_key(k))
        return iter(keys)
