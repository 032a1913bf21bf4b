"""open_store picks the store a project's StoreConfig describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import StoreError
from mlops.spec.model import StoreConfig
from mlops.store.local import LocalStore
from mlops.store.open import open_store
from mlops.store.s3 import S3Store


def test_local_default_is_dot_mlops_under_the_repo(tmp_path: Path) -> None:
    store = open_store(StoreConfig(), tmp_path)
    assert isinstance(store, LocalStore) and store.root == tmp_path / ".mlops"
    digest = store.put_bytes(b"x")
    assert (tmp_path / ".mlops" / "blobs" / "sha256" / digest[:2] / digest).is_file()


def test_local_path_is_relative_to_the_repo(tmp_path: Path) -> None:
    store = open_store(StoreConfig(type="local", path="var/artifacts"), tmp_path)
    assert isinstance(store, LocalStore) and store.root == tmp_path / "var" / "artifacts"


def test_s3_uses_environment_credentials(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    cfg = StoreConfig(type="s3", bucket=s3_bucket, prefix="team/a/", endpoint_url=s3_endpoint, region="us-east-1")
    store = open_store(cfg, tmp_path)
    assert isinstance(store, S3Store) and store.url == f"s3://{s3_bucket}/team/a/"
    assert store.create_record("k", b"v")
    assert store.read_record("k") == b"v"


def test_s3_missing_bucket_is_a_clear_error(tmp_path: Path, s3_endpoint: str) -> None:
    store = open_store(StoreConfig(type="s3", bucket="no-such-bucket", endpoint_url=s3_endpoint), tmp_path)
    with pytest.raises(StoreError, match="no-such-bucket.*NoSuchBucket"):
        store.read_record("k")
    with pytest.raises(StoreError, match="needs a bucket"):
        open_store(StoreConfig(type="s3"), tmp_path)


def test_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown store type 'ftp'"):
        open_store(StoreConfig(type="ftp"), tmp_path)
