"""One behaviour suite for LocalStore, S3Store (on moto) and MemoryStore."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.errors import IntegrityError, StoreError
from mlops.store.digest import sha256_bytes
from mlops.store.git import GitStore, blob_ref
from mlops.store.local import LocalStore
from mlops.store.memory import MemoryStore
from mlops.store.protocol import ArtifactStore
from mlops.store.s3 import S3Store
from tests.race import race
from tests.store.conftest import StoreSpec, open_spec


def test_is_an_artifact_store(store: ArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)
    assert store.url


def test_bytes_round_trip(store: ArtifactStore) -> None:
    data = b"hello \x00 world" * 1000
    digest = store.put_bytes(data)
    assert digest == sha256_bytes(data)
    assert store.has_blob(digest)
    assert store.get_bytes(digest) == data
    assert not store.has_blob("0" * 64)


def test_file_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(bytes(range(256)) * 5000)
    digest = store.put_file(src)
    dest = tmp_path / "out" / "deep" / "copy.onnx"
    store.get_file(digest, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["copy.onnx"]  # no temp file left behind


def test_put_is_idempotent(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"same")
    assert store.put_file(src) == store.put_file(src) == store.put_bytes(b"same")
    assert store.get_bytes(sha256_bytes(b"same")) == b"same"


def test_missing_blob_is_a_store_error(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="0{64}"):
        store.get_bytes("0" * 64)
    with pytest.raises(StoreError):
        store.get_file("0" * 64, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(StoreError, match="invalid blob digest"):
        store.has_blob("../etc/passwd")


def _tamper(store: ArtifactStore, digest: str, data: bytes) -> str:
    """Overwrite a blob behind the store's back; return where it lives."""
    if isinstance(store, LocalStore):
        path = store.blob_path(digest)
        path.write_bytes(data)
        return str(path)
    if isinstance(store, S3Store):
        key = store.blob_key(digest)
        boto3.client("s3", endpoint_url=store.endpoint_url).put_object(Bucket=store.bucket, Key=key, Body=data)
        return key
    if isinstance(store, GitStore):  # the clone's ref now names other content (as a hostile origin could)
        store.flush()
        evil = subprocess.run(["git", "-C", str(store.repo_root), "hash-object", "-w", "--stdin"], input=data,
                              check=True, capture_output=True).stdout.decode().strip()
        subprocess.run(["git", "-C", str(store.repo_root), "update-ref", blob_ref(digest), evil], check=True)
        store._m.blobs = None  # what this process knew of the refs is gone too
        return store.url
    assert isinstance(store, MemoryStore)
    store.blobs[digest] = data
    return store.url


def test_tampered_blob_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"the real model")
    where = _tamper(store, digest, b"the evil model")
    with pytest.raises(IntegrityError) as e:
        store.get_bytes(digest)
    assert digest in str(e.value) and where in str(e.value)
    dest = tmp_path / "dl" / "model.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    with pytest.raises(IntegrityError):
        store.get_file(digest, dest)
    assert dest.read_bytes() == b"previous"  # the bad copy never replaced the destination
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]


def test_storing_content_again_repairs_a_same_size_corrupt_blob(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"the real model")
    _tamper(store, digest, b"the evil model")  # same size: only the content tells
    assert store.put_bytes(b"the real model") == digest
    assert store.get_bytes(digest) == b"the real model"
    _tamper(store, digest, b"the evil model")
    src = tmp_path / "model.bin"
    src.write_bytes(b"the real model")
    assert store.put_file(src) == digest
    store.get_file(digest, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"the real model"


def test_records(store: ArtifactStore) -> None:
    assert store.read_record("runs/a.json") is None
    assert store.create_record("runs/a.json", b"1") is True
    assert store.create_record("runs/a.json", b"2") is False
    assert store.read_record("runs/a.json") == b"1"
    store.write_record("runs/a.json", b"3")
    assert store.read_record("runs/a.json") == b"3"
    store.write_record("runs/b.json", b"4")
    store.delete_record("runs/a.json")
    store.delete_record("runs/never")  # deleting a missing record is fine
    assert store.read_record("runs/a.json") is None
    assert store.create_record("runs/a.json", b"5") is True


def test_list_records_prefix_sorted(store: ArtifactStore) -> None:
    for key in ["m/x/versions/0000000010.json", "m/x/versions/0000000002.json", "m/xy/versions/1.json",
                "m/x/tags/1.json", "n/1", "m/x/versions/0000000001.json"]:
        store.write_record(key, b"{}")
    assert list(store.list_records("m/x/versions/")) == [
        "m/x/versions/0000000001.json", "m/x/versions/0000000002.json", "m/x/versions/0000000010.json"]
    assert list(store.list_records("m/x")) == [
        "m/x/tags/1.json", "m/x/versions/0000000001.json", "m/x/versions/0000000002.json",
        "m/x/versions/0000000010.json", "m/xy/versions/1.json"]
    assert list(store.list_records("nothing/")) == []
    assert len(list(store.list_records(""))) == 6


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../up", "a/.hidden", "a/b.lock", "sp ace", "a/"])
def test_bad_keys_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(StoreError, match="invalid record key"):
        store.create_record(key, b"x")


# moto answers a request in ~13 ms, a local link takes microseconds.
ROUNDS = {"local": 200, "s3": 60, "git": 30}


def _racer(spec: StoreSpec, me: str, barrier: Any, results: Any) -> None:
    store = open_spec(spec)
    won = []
    for i in range(ROUNDS[spec[0]]):
        barrier.wait()
        if store.create_record(f"race/{i:04d}", me.encode() * 100):
            won.append(i)
    results.put((me, won))


def test_create_record_is_atomic_across_processes(shared_spec: StoreSpec) -> None:
    store = open_spec(shared_spec)
    won = race(_racer, lambda me: (shared_spec, me), timeout=60)
    a, b = set(won["a"]), set(won["b"])
    assert not a & b, "two processes both created the same record"
    assert a | b == set(range(ROUNDS[shared_spec[0]])), "a record was created by nobody"
    assert a and b, "no real contention happened: one process won every round"
    for i in range(ROUNDS[shared_spec[0]]):
        winner = "a" if i in a else "b"
        assert store.read_record(f"race/{i:04d}") == winner.encode() * 100


def test_create_record_is_atomic_across_threads() -> None:
    store = MemoryStore()
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def race(me: str) -> None:
        barrier.wait()
        if store.create_record("k", me.encode()):
            wins.append(me)

    threads = [threading.Thread(target=race, args=(str(i),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and store.read_record("k") == wins[0].encode()


def _plant(store: ArtifactStore, key: str) -> None:
    """A record under a name no store writes: a stray file, an object put in the bucket by hand."""
    from mlops.store.local import LocalStore
    from mlops.store.memory import MemoryStore
    from mlops.store.s3 import S3Store

    if isinstance(store, GitStore):  # a ref git allows and no key is ("a b" is no ref name at all)
        ref = "refs/mlops/records/" + key.replace(" ", "%")
        oid = subprocess.run(["git", "-C", str(store.repo_root), "hash-object", "-w", "--stdin"], input=b"{}",
                             check=True, capture_output=True).stdout.decode().strip()
        subprocess.run(["git", "-C", str(store.repo_root), "push", "-q", "origin", f"{oid}:{ref}"], check=True)
    elif isinstance(store, LocalStore):
        path = store.root / "records" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}")
    elif isinstance(store, MemoryStore):
        store.records[key] = b"{}"
    else:
        assert isinstance(store, S3Store)
        store._client.put_object(Bucket=store.bucket, Key=f"{store.prefix}records/{key}", Body=b"{}")


def test_a_listing_skips_what_is_no_record_key(store: ArtifactStore) -> None:
    """One stray name among the records (``runs/p/a b.json``) made every listing a StoreError: `mlops
    runs` printed nothing, and reconcile could not find a pipeline's runs."""
    store.create_record("runs/p/good.json", b"{}")
    _plant(store, "runs/p/a b.json")
    assert list(store.list_records("runs/")) == ["runs/p/good.json"]
