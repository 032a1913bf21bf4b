"""Registry records as git refs pushed to origin: atomic creation across clones, and they
outlive the clone that made them (an ephemeral CI runner)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import StoreError
from mlops.registry.composite import CompositeStore, open_registry_store
from mlops.registry.gitrefs import GitRefRecords
from mlops.registry.models import get_model, list_versions, register_model, set_tags
from mlops.spec.model import Project, Stage, StoreConfig
from mlops.store.local import LocalStore
from mlops.store.protocol import ArtifactStore
from tests.race import race
from tests.registry.conftest import git, make_repo


@pytest.fixture()
def origin(tmp_path: Path) -> Path:
    work = make_repo(tmp_path / "seed")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def clone(origin: Path, dest: Path) -> Path:
    git(origin.parent, "clone", "-q", str(origin), str(dest))
    return dest


def test_record_semantics(origin: Path, tmp_path: Path) -> None:
    a = GitRefRecords(clone(origin, tmp_path / "a"))
    b = GitRefRecords(clone(origin, tmp_path / "b"), refresh_seconds=0)
    assert a.read_record("x/1.json") is None
    assert a.create_record("x/1.json", b"one") is True
    assert b.create_record("x/1.json", b"two") is False  # b had never seen it: the remote refused
    assert b.create_record("x/1.json", b"one") is False  # even with identical content
    assert b.read_record("x/1.json") == b"one"
    a.write_record("x/2.json", b"2")
    a.write_record("x/2.json", b"2b")
    assert b.read_record("x/2.json") == b"2b"
    assert list(b.list_records("x/")) == ["x/1.json", "x/2.json"]
    a.delete_record("x/2.json")
    a.delete_record("x/never")
    assert list(b.list_records("x/")) == ["x/1.json"]
    assert b.read_record("x/2.json") is None
    refs = git(origin, "for-each-ref", "--format=%(refname) %(objecttype)", "refs/mlops/")
    assert refs.split("\n")[0] == "refs/mlops/records/x/1.json blob"


def test_unreachable_remote_is_a_store_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    git(repo, "remote", "add", "origin", str(tmp_path / "missing.git"))
    records = GitRefRecords(repo)
    with pytest.raises(StoreError, match="cannot"):
        records.create_record("k", b"v")
    with pytest.raises(StoreError, match="cannot fetch"):
        list(records.list_records(""))


def test_registry_survives_the_clone(origin: Path, tmp_path: Path) -> None:
    blobs = LocalStore(tmp_path / "blobs")  # stands for a shared blob store (S3 in CI)
    runner = clone(origin, tmp_path / "runner")
    model = tmp_path / "w.bin"
    model.write_bytes(b"weights")
    store = CompositeStore(blobs, GitRefRecords(runner))
    mv = register_model(store, "m", [model], "raw", {"acc": 1.0})
    set_tags(store, "m", 1, {"stage": "prod"})
    subprocess.run(["rm", "-rf", str(runner)], check=True)  # the runner is gone

    later = CompositeStore(blobs, GitRefRecords(clone(origin, tmp_path / "later")))
    got = get_model(later, "m", 1)
    assert got.files == mv.files and got.tags == {"stage": "prod"}
    assert register_model(later, "m", [model], "raw", {"acc": 1.0}).version == 1  # idempotent across clones


PER_PROCESS = 6


def _registrar(repo: str, blobs: str, model: str, me: str, barrier: Any, results: Any) -> None:
    store = CompositeStore(LocalStore(Path(blobs)), GitRefRecords(Path(repo)))
    barrier.wait()
    got = [register_model(store, "m", [Path(model)], "raw", {"proc": me, "i": i}).version
           for i in range(PER_PROCESS)]
    results.put((me, got))


def test_two_clones_register_concurrently(origin: Path, tmp_path: Path) -> None:
    model = tmp_path / "w.bin"
    model.write_bytes(b"weights")
    got = race(_registrar, lambda me: (str(clone(origin, tmp_path / me)), str(tmp_path / "blobs"), str(model), me))
    assert sorted(got["a"] + got["b"]) == list(range(1, 2 * PER_PROCESS + 1)), got
    fresh = CompositeStore(LocalStore(tmp_path / "blobs"), GitRefRecords(clone(origin, tmp_path / "c")))
    stored = list_versions(fresh, "m")
    assert [m.version for m in stored] == list(range(1, 2 * PER_PROCESS + 1))
    assert len({(m.metrics["proc"], m.metrics["i"]) for m in stored}) == 2 * PER_PROCESS


def test_open_registry_store_picks_the_backend(origin: Path, tmp_path: Path) -> None:
    repo = clone(origin, tmp_path / "r")
    project = Project("p", (Stage("dev"),), StoreConfig(), registry_backend="git")
    store: ArtifactStore = open_registry_store(project, repo)
    assert isinstance(store, CompositeStore) and isinstance(store, ArtifactStore)
    assert isinstance(store.blobs, LocalStore) and store.blobs.root == repo / ".mlops"
    assert isinstance(open_registry_store(Project("p", (), StoreConfig()), repo), LocalStore)
    with pytest.raises(StoreError, match="unknown registry backend 'svn'"):
        open_registry_store(Project("p", (), StoreConfig(), registry_backend="svn"), repo)
