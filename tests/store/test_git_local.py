"""The git store before the repository has its remote: a default ``origin`` that does not exist yet
keeps the state in the clone (marked ``refs/mlops/local-only``); the first command that finds origin
publishes it atomically, never over other state and never after a pruning fetch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlops.errors import StoreError
from mlops.spec.model import StoreConfig
from mlops.store import gitlocal
from mlops.store.git import RECORDS, GitStore, blob_ref, flush_all
from mlops.store.gitcmd import Git
from mlops.store.open import open_store

MARKER = "refs/mlops/local-only"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout.decode()


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/mlops/")
    return dict(line.split(" ") for line in out.splitlines())


def state(repo: Path) -> dict[str, str]:
    """The records and blobs (what is published), without the marker."""
    return {ref: oid for ref, oid in refs(repo).items() if ref != MARKER}


@pytest.fixture()
def lonely(tmp_path: Path) -> Path:
    """A repository with one commit and no remote, as after `mlops init` and a first commit."""
    repo = tmp_path / "lonely"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "first")
    return repo


def offline_state(repo: Path) -> tuple[GitStore, str]:
    store = GitStore(repo, fallback=True)
    digest = store.put_bytes(b"weights")
    assert store.create_record("registry/m/1.json", digest.encode())
    assert not store.create_record("registry/m/1.json", b"again")
    store.write_record("cache/step.json", b"{}")
    flush_all()
    return store, digest


def add_origin(repo: Path, tmp_path: Path, name: str = "origin.git") -> Path:
    origin = tmp_path / name
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    return origin


def other_state(tmp_path: Path, origin: Path, records: dict[str, bytes]) -> None:
    """Another clone of ``origin`` that wrote ``records`` there (the remote holds mlops state)."""
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    store = GitStore(other)
    for key, data in records.items():
        assert store.create_record(key, data)


def test_without_origin_the_state_stays_in_the_clone_with_one_note(lonely: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    store, digest = offline_state(lonely)
    assert "this clone only" in store.url
    assert GitStore(lonely, fallback=True).read_record("registry/m/1.json") == digest.encode()  # a second store
    assert set(refs(lonely)) == {MARKER, blob_ref(digest), f"{RECORDS}registry/m/1.json", f"{RECORDS}cache/step.json"}
    assert git(lonely, "cat-file", "-s", MARKER).strip() == "0"  # the marker: a ref to the empty blob
    notes = capsys.readouterr().err.splitlines()
    assert notes == [f"note: {lonely} has no remote 'origin': mlops keeps its state in this clone under refs/mlops/ "
                     "until a remote origin exists (git remote add origin URL); then mlops publishes it there"]


def test_only_the_default_remote_falls_back(lonely: Path) -> None:
    """A remote mlops.yaml names must exist; left out, it is origin, which may come later."""
    with pytest.raises(StoreError, match=r"has no remote 'origin': add it \(git remote add origin URL\)"):
        open_store(StoreConfig(type="git", remote="origin"), lonely).read_record("k")
    with pytest.raises(StoreError, match="has no remote 'upstream'"):
        open_store(StoreConfig(type="git", remote="upstream"), lonely).read_record("k")
    assert MARKER not in refs(lonely)
    assert open_store(StoreConfig(type="git"), lonely).read_record("k") is None
    assert MARKER in refs(lonely)


def test_the_first_command_with_origin_publishes_the_local_state(lonely: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, digest = offline_state(lonely)
    local = state(lonely)
    origin = add_origin(lonely, tmp_path)
    capsys.readouterr()
    store = GitStore(lonely, fallback=True)
    assert store.read_record("registry/m/1.json") == digest.encode()  # published, then fetched (pruning)
    assert state(origin) == local and refs(lonely) == local  # everything there; the marker is gone
    assert "note:" not in capsys.readouterr().err
    assert store.create_record("registry/m/2.json", b"2")  # and on it goes, through origin
    git(tmp_path, "clone", "-q", str(origin), "second")
    second = GitStore(tmp_path / "second", fallback=True)
    assert list(second.list_records("")) == ["cache/step.json", "registry/m/1.json", "registry/m/2.json"]
    assert second.get_bytes(digest) == b"weights"


def test_a_remote_with_other_state_is_a_clash_that_keeps_both(lonely: Path, tmp_path: Path) -> None:
    offline_state(lonely)
    local = refs(lonely)
    origin = add_origin(lonely, tmp_path)
    other_state(tmp_path, origin, {"registry/m/1.json": b"theirs", "runs/r1.json": b"{}"})
    theirs = refs(origin)
    for _ in range(2):  # refused every time, until a person chooses: nothing was pruned meanwhile
        with pytest.raises(StoreError) as e:
            list(GitStore(lonely, fallback=True).list_records(""))
        assert refs(lonely) == local and refs(origin) == theirs
    msg = str(e.value)
    assert "\n" not in msg and "mlops cannot merge two histories" in msg and "kept this clone's state" in msg
    assert "1 ref(s) hold other content there (refs/mlops/records/registry/m/1.json)" in msg
    assert "1 record(s) exist only there (refs/mlops/records/runs/r1.json)" in msg
    assert "git ls-remote origin 'refs/mlops/*'" in msg and f"git update-ref -d {MARKER}" in msg
    git(lonely, "update-ref", "-d", MARKER)  # the person keeps the remote's state
    assert GitStore(lonely, fallback=True).read_record("registry/m/1.json") == b"theirs"


def test_records_only_on_the_remote_clash_with_unpublished_records(lonely: Path, tmp_path: Path) -> None:
    """No ref in common, but two histories all the same: nothing is merged, nothing pruned."""
    offline_state(lonely)
    local = refs(lonely)
    origin = add_origin(lonely, tmp_path)
    other_state(tmp_path, origin, {"runs/r1.json": b"{}"})
    with pytest.raises(StoreError, match=r"1 record\(s\) exist only there \(refs/mlops/records/runs/r1.json\)"):
        GitStore(lonely, fallback=True).read_record("cache/step.json")
    assert refs(lonely) == local


def test_the_lease_refuses_state_that_arrived_after_the_look(lonely: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Another clone publishing between our look at the remote and our push: the push's leases
    ("must not exist") refuse it atomically; the second look names the clash."""
    offline_state(lonely)
    local = refs(lonely)
    origin = add_origin(lonely, tmp_path)
    looked: list[int] = []
    real = gitlocal._remote_refs

    def late(git: Git, remote: str, url: str) -> dict[str, str]:
        looked.append(1)
        found = real(git, remote, url)
        if len(looked) == 1:
            other_state(tmp_path, origin, {"registry/m/1.json": b"theirs"})  # lands after the look
        return found

    monkeypatch.setattr(gitlocal, "_remote_refs", late)
    with pytest.raises(StoreError, match=r"hold other content there \(refs/mlops/records/registry/m/1.json\)"):
        GitStore(lonely, fallback=True).read_record("registry/m/1.json")
    assert len(looked) == 2 and refs(lonely) == local
    assert set(state(origin)) == {f"{RECORDS}registry/m/1.json"}  # nothing of ours went: the push was atomic


def test_an_interrupted_publish_finishes_and_blobs_alone_never_clash(lonely: Path, tmp_path: Path) -> None:
    _, digest = offline_state(lonely)
    origin = add_origin(lonely, tmp_path)
    git(lonely, "push", "-q", "origin", *(f"{ref}:{ref}" for ref in state(lonely)))  # published, marker left
    blob_there = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(origin), str(blob_there))
    GitStore(blob_there).put_bytes(b"a blob of theirs")  # blobs are content-addressed: no history to merge
    flush_all()
    assert GitStore(lonely, fallback=True).get_bytes(digest) == b"weights"
    assert MARKER not in refs(lonely)


def test_a_read_only_job_neither_publishes_nor_prunes_nor_marks(lonely: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_GIT_STORE_PUSH", "0")
    ro = GitStore(lonely, fallback=True)  # no remote, read-only: writes stay in the process
    assert ro.create_record("runs/pr.json", b"x") and ro.read_record("runs/pr.json") == b"x"
    flush_all()
    assert refs(lonely) == {}
    monkeypatch.delenv("MLOPS_GIT_STORE_PUSH")
    offline_state(lonely)
    local = refs(lonely)
    add_origin(lonely, tmp_path)
    monkeypatch.setenv("MLOPS_GIT_STORE_PUSH", "0")
    with pytest.raises(StoreError, match="publish it first: run an mlops command without MLOPS_GIT_STORE_PUSH=0"):
        GitStore(lonely, fallback=True).read_record("registry/m/1.json")
    assert refs(lonely) == local
