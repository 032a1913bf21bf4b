"""A full ArtifactStore from two halves: blobs from one store, records from another
(e.g. model files in S3 or ``.mlops/``, registry records as git refs on origin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from mlops.errors import StoreError
from mlops.spec.model import Project
from mlops.store.open import open_store
from mlops.store.protocol import ArtifactStore


class RecordStore(Protocol):
    """The record half of the ArtifactStore protocol."""

    url: str

    def read_record(self, key: str) -> bytes | None: ...

    def create_record(self, key: str, data: bytes) -> bool: ...

    def write_record(self, key: str, data: bytes) -> None: ...

    def delete_record(self, key: str) -> None: ...

    def list_records(self, prefix: str) -> Iterator[str]: ...


class CompositeStore:
    """An ArtifactStore whose blob methods go to ``blobs`` and record methods to ``records``."""

    def __init__(self, blobs: ArtifactStore, records: RecordStore):
        self.blobs = blobs
        self.records = records
        self.url = f"{blobs.url} (records: {records.url})"

    def __repr__(self) -> str:
        return f"CompositeStore({self.blobs!r}, {self.records!r})"

    def put_file(self, path: Path) -> str:
        return self.blobs.put_file(path)

    def put_bytes(self, data: bytes) -> str:
        return self.blobs.put_bytes(data)

    def has_blob(self, digest: str) -> bool:
        return self.blobs.has_blob(digest)

    def get_file(self, digest: str, dest: Path) -> None:
        self.blobs.get_file(digest, dest)

    def get_bytes(self, digest: str) -> bytes:
        return self.blobs.get_bytes(digest)

    def read_record(self, key: str) -> bytes | None:
        return self.records.read_record(key)

    def create_record(self, key: str, data: bytes) -> bool:
        return self.records.create_record(key, data)

    def write_record(self, key: str, data: bytes) -> None:
        self.records.write_record(key, data)

    def delete_record(self, key: str) -> None:
        self.records.delete_record(key)

    def list_records(self, prefix: str) -> Iterator[str]:
        return self.records.list_records(prefix)


def open_registry_store(project: Project, repo_root: Path) -> ArtifactStore:
    """The store registry records go to: the project's store, or with ``registry_backend: git``
    the project's store for blobs and git refs on ``registry_remote`` for records."""
    blobs = open_store(project.store, repo_root)
    if project.registry_backend in ("", "store"):
        return blobs
    if project.registry_backend == "git":
        from mlops.store.git import WRITE_DELAY_SECONDS, GitStore

        return CompositeStore(blobs, GitStore(repo_root, project.registry_remote or "origin",
                                              fallback=not project.registry_remote,
                                              write_delay=WRITE_DELAY_SECONDS))
    raise StoreError(f"unknown registry backend {project.registry_backend!r} in {project.file} "
                     "(use store or git)")
