"""The store behaviour suite runs against every ArtifactStore implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops.store.local import LocalStore
from mlops.store.memory import MemoryStore
from mlops.store.protocol import ArtifactStore
from mlops.store.s3 import S3Store

# (kind, args): picklable, so a child process can open its own handle on the same store.
StoreSpec = tuple[str, tuple[Any, ...]]


def open_spec(spec: StoreSpec) -> ArtifactStore:
    kind, args = spec
    if kind == "local":
        return LocalStore(Path(args[0]))
    if kind == "s3":
        return S3Store(*args)
    if kind == "git":
        from mlops.store.git import GitStore

        return GitStore(Path(args[0]), refresh_seconds=0)
    raise ValueError(kind)


def _spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "local":
        return ("local", (str(tmp_path / "store"),))
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        return ("s3", (bucket, "pre/fix", endpoint, "us-east-1"))
    if request.param == "git":
        return ("git", (str(git_clone(tmp_path)),))
    return ("memory", ())


def git_clone(tmp_path: Path) -> Path:
    """A clone of a fresh bare origin (one commit), the git store's home."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "--bare", "origin.git")
    git("clone", "-q", "origin.git", "clone")
    git("-C", "clone", "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty",
        "-m", "first")
    git("-C", "clone", "push", "-q", "origin", "HEAD")
    return tmp_path / "clone"


@pytest.fixture(params=["local", "s3", "memory", "git"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    return _spec(request, tmp_path)


@pytest.fixture(params=["local", "s3", "git"])
def shared_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """Stores that several processes can open at once."""
    return _spec(request, tmp_path)


@pytest.fixture()
def store(store_spec: StoreSpec) -> ArtifactStore:
    if store_spec[0] == "memory":
        return MemoryStore()
    return open_spec(store_spec)
