"""GitStore beyond the shared behaviour suite: clones that share only a bare origin, blobs fetched
on demand, size limits, hostile origins and names, a missing or unreachable remote, and writers in
separate processes and clones that never lose a record."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlops.errors import IntegrityError, StoreError
from mlops.spec.model import StoreConfig
from mlops.store.digest import sha256_bytes
from mlops.store.git import BLOBS, MAX_RECORD_BYTES, RECORDS, GitStore, blob_ref, flush_all
from mlops.store.open import open_store
from tests.store.conftest import git_clone


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, input=input, check=True, capture_output=True).stdout.decode()


@pytest.fixture()
def first(tmp_path: Path) -> Path:
    return git_clone(tmp_path)


def fresh(tmp_path: Path, name: str) -> Path:
    git(tmp_path, "clone", "-q", "origin.git", name)
    return tmp_path / name


def refs(repo: Path, prefix: str = "refs/mlops/") -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", prefix).split()


def test_a_fresh_clone_sees_records_and_fetches_blobs_only_when_asked(first: Path, tmp_path: Path) -> None:
    a = GitStore(first)
    model, other = a.put_bytes(b"model bytes"), a.put_bytes(b"other")
    assert a.create_record("registry/m/1.json", model.encode())  # pushes the blobs with the record
    second = fresh(tmp_path, "second")
    assert refs(second) == []  # an ordinary clone does not fetch refs/mlops/
    b = GitStore(second)
    assert b.read_record("registry/m/1.json") == model.encode()
    assert refs(second, BLOBS) == []  # records came, no blob did
    assert b.get_bytes(model) == b"model bytes"
    assert refs(second, BLOBS) == [blob_ref(model)]  # that one blob, fetched on demand
    assert b.has_blob(other) and not b.has_blob(sha256_bytes(b"never stored"))
    b.get_file(other, tmp_path / "out" / "o.bin")
    assert (tmp_path / "out" / "o.bin").read_bytes() == b"other"


def test_blobs_no_record_carried_are_pushed_by_flush(first: Path, tmp_path: Path) -> None:
    digest = GitStore(first).put_bytes(b"only a blob")
    assert refs(tmp_path / "origin.git", BLOBS) == []  # not pushed yet: the next push carries it
    flush_all()  # what the CLI does after every command
    assert refs(tmp_path / "origin.git", BLOBS) == [blob_ref(digest)]
    assert GitStore(fresh(tmp_path, "second")).get_bytes(digest) == b"only a blob"


def test_size_limits_are_enforced_with_advice(first: Path, tmp_path: Path) -> None:
    store = GitStore(first, max_blob_bytes=1024)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1025)
    with pytest.raises(StoreError, match=r"1025 bytes, over the git store.s limit of 1024 bytes .*max_blob_mb.*S3"):
        store.put_file(big)
    with pytest.raises(StoreError, match="S3"):
        store.put_bytes(b"x" * 1025)
    with pytest.raises(StoreError, match="limit .* for a record"):
        store.write_record("r/huge", b"x" * (MAX_RECORD_BYTES + 1))
    with pytest.raises(StoreError, match="between 1 byte and 100 MiB"):
        GitStore(first, max_blob_bytes=200 * 1024 * 1024)
    assert store.put_bytes(b"x" * 1024) == sha256_bytes(b"x" * 1024)
    cfg = StoreConfig(type="git", max_blob_mb=0.001)
    with pytest.raises(StoreError, match="limit"):
        open_store(cfg, first).put_bytes(b"x" * 2000)


def test_a_hostile_origin_cannot_pass_other_content_for_a_blob(first: Path, tmp_path: Path) -> None:
    digest = sha256_bytes(b"the real model")
    evil = git(first, "hash-object", "-w", "--stdin", input=b"the evil model").strip()
    git(first, "push", "-q", "origin", f"{evil}:{blob_ref(digest)}")  # a ref named after content it is not
    store = GitStore(fresh(tmp_path, "victim"))
    assert store.has_blob(digest)
    with pytest.raises(IntegrityError, match=digest):
        store.get_bytes(digest)
    with pytest.raises(IntegrityError):
        store.get_file(digest, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    assert store.put_bytes(b"the real model") == digest  # storing it again repairs the ref, on origin too
    flush_all()
    assert GitStore(fresh(tmp_path, "later")).get_bytes(digest) == b"the real model"


def test_a_hostile_origin_cannot_bloat_records_or_plant_odd_names(first: Path, tmp_path: Path) -> None:
    big = git(first, "hash-object", "-w", "--stdin", input=b"x" * (MAX_RECORD_BYTES + 1)).strip()
    small = git(first, "hash-object", "-w", "--stdin", input=b"{}").strip()
    tree = git(first, "write-tree").strip()
    git(first, "push", "-q", "origin", f"{big}:{RECORDS}runs/big.json", f"{small}:{RECORDS}runs/x%y.json",
        f"{tree}:{RECORDS}runs/tree.json", f"{small}:refs/mlops/blobs/sha256/00/not-a-digest")
    store = GitStore(fresh(tmp_path, "victim"))
    assert list(store.list_records("runs/")) == ["runs/big.json"]  # no key, no tree: not records of ours
    with pytest.raises(StoreError, match="over the git store's limit"):
        store.read_record("runs/big.json")
    assert not store.has_blob("0" * 64)


@pytest.mark.parametrize("key", ["a/../b", "a..b/c", "x/y.", "refs:x", "a/*", "a^b", "a~1", "-a b"])
def test_keys_that_are_no_safe_ref_names_are_refused(first: Path, key: str) -> None:
    with pytest.raises(StoreError, match="invalid record key"):
        GitStore(first).create_record(key, b"x")
    assert refs(first) == []


@pytest.mark.parametrize("remote", ["--upload-pack=touch /tmp/pwned", "-o", "../elsewhere", "a b",
                                    "https://evil.example/x.git", "/tmp/x.git", "origin.lock", ""])
def test_a_remote_is_a_configured_name_never_an_option_url_or_path(first: Path, remote: str) -> None:
    with pytest.raises(StoreError, match="invalid git remote name"):
        GitStore(first, remote=remote)


def test_a_missing_remote_is_a_clear_error(tmp_path: Path) -> None:
    repo = tmp_path / "lonely"
    git(tmp_path, "init", "-q", str(repo))
    store = GitStore(repo)
    with pytest.raises(StoreError, match=r"has no remote 'origin': add it \(git remote add origin URL\).*"
                                         r"MLOPS_GIT_STORE_LOCAL=1"):
        store.read_record("x")
    with pytest.raises(StoreError, match="is none"):
        GitStore(tmp_path).read_record("x")  # not a repository at all


def test_an_unreachable_remote_is_a_clear_error(first: Path, tmp_path: Path) -> None:
    git(first, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    store = GitStore(first)
    with pytest.raises(StoreError, match=r"cannot fetch refs/mlops/records/\* from the remote 'origin' \(.*gone"):
        list(store.list_records(""))
    with pytest.raises(StoreError, match=r"cannot push to the remote 'origin'"):
        store.create_record("k", b"v")
    with pytest.raises(StoreError, match="cannot fetch"):
        store.has_blob("1" * 64)


def test_local_only_keeps_state_in_the_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "offline"
    git(tmp_path, "init", "-q", str(repo))
    monkeypatch.setenv("MLOPS_GIT_STORE_LOCAL", "1")
    store = GitStore(repo)
    digest = store.put_bytes(b"b")
    assert store.create_record("k/1", b"1") and not store.create_record("k/1", b"2")
    store.write_record("k/2", b"2")
    store.delete_record("k/2")
    store.delete_record("k/never")
    again = GitStore(repo, local_only=True)
    assert list(again.list_records("k/")) == ["k/1"] and again.get_bytes(digest) == b"b"
    assert refs(repo) == [blob_ref(digest), f"{RECORDS}k/1"]


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mlops.store.git import GitStore, flush_all
    clone, me, n, delay = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    store = GitStore(clone, write_delay=delay)
    won = []
    for i in range(n):
        digest = store.put_bytes(f"{me}-{i}".encode())
        store.write_record(f"mine/{me}/{i:03d}", digest.encode())   # distinct keys: all must survive
        if store.create_record(f"shared/{i:03d}", me.encode()):      # one key, many creators: one wins
            won.append(i)
    flush_all()
    print(",".join(map(str, won)))
""")


def test_concurrent_writers_in_separate_clones_never_lose_a_record(first: Path, tmp_path: Path) -> None:
    writers, rounds = ["w0", "w1", "w2", "w3"], 12
    # two push every write at once, two defer their writes (as the CLI does): none may lose a record
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(fresh(tmp_path, w)), w, str(rounds),
                               "0" if n < 2 else "0.05"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n, w in enumerate(writers)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    won = {w: {int(i) for i in out.strip().split(",") if i} for w, (out, _) in zip(writers, outs, strict=True)}
    assert set().union(*won.values()) == set(range(rounds))
    assert sum(len(v) for v in won.values()) == rounds  # exactly one creator per shared key
    check = GitStore(fresh(tmp_path, "check"))
    for w in writers:
        assert len(list(check.list_records(f"mine/{w}/"))) == rounds
        for i in range(rounds):
            digest = check.read_record(f"mine/{w}/{i:03d}")
            assert digest is not None and check.get_bytes(digest.decode()) == f"{w}-{i}".encode()
    for i in range(rounds):
        winner = next(w for w, v in won.items() if i in v)
        assert check.read_record(f"shared/{i:03d}") == winner.encode()


def count_pushes(origin: Path) -> Path:
    """A post-receive hook on the bare origin: one line per push it receives."""
    log = origin / "pushes.log"
    hook = origin / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\necho push >> '{log}'\n")
    hook.chmod(0o755)
    return log


def test_a_burst_of_writes_is_one_push_and_reads_see_it_at_once(first: Path, tmp_path: Path) -> None:
    log = count_pushes(tmp_path / "origin.git")
    store = GitStore(first, write_delay=600)  # the deferred push never fires on its own in this test
    assert store.read_record("cache/00") is None  # the command's one fetch (it would push pending writes first)
    for i in range(20):
        store.write_record(f"cache/{i:02d}", store.put_bytes(f"out {i}".encode()).encode())
    assert store.read_record("cache/07") == sha256_bytes(b"out 7").encode()  # read-your-writes, unpushed
    assert not log.exists()
    assert GitStore(fresh(tmp_path, "early")).read_record("cache/07") is None
    flush_all()  # the end of the command
    assert log.read_text().splitlines() == ["push"]  # twenty records and twenty blobs in one push
    later = GitStore(fresh(tmp_path, "later"))
    assert len(list(later.list_records("cache/"))) == 20 and later.get_bytes(sha256_bytes(b"out 3")) == b"out 3"


def test_deferred_writes_ride_with_the_next_create_and_never_fight_it(first: Path, tmp_path: Path) -> None:
    log = count_pushes(tmp_path / "origin.git")
    store = GitStore(first, write_delay=600)
    store.write_record("state.json", b"1")
    store.write_record("gone", b"x")
    store.delete_record("gone")  # a deferred write of a deleted record is void
    assert store.create_record("state.json", b"2") is False  # it exists: our own write made it
    assert store.create_record("locks/reconcile", b"me") is True
    assert len(log.read_text().splitlines()) == 2  # the delete, then the create carrying state.json
    other = GitStore(fresh(tmp_path, "other"))
    assert other.read_record("state.json") == b"1" and other.read_record("gone") is None


def test_deferred_writes_are_pushed_by_the_timer(first: Path, tmp_path: Path) -> None:
    store = GitStore(first, write_delay=0.05)
    store.write_record("k", b"v")
    other = GitStore(fresh(tmp_path, "other"), refresh_seconds=0)
    for _ in range(600):
        if other.read_record("k") == b"v":
            break
        time.sleep(0.05)
    assert other.read_record("k") == b"v"


def test_a_record_read_is_never_newer_than_the_blob_list(first: Path, tmp_path: Path) -> None:
    """A blob list taken before a record was fetched must not deny the blobs that record names."""
    a, b = GitStore(first), GitStore(fresh(tmp_path, "b"), refresh_seconds=3600)
    digest = sha256_bytes(b"new model")
    assert not b.has_blob(digest)  # b lists the remote's blobs now
    assert a.create_record("registry/m/2.json", a.put_bytes(b"new model").encode())
    b.refresh()  # b's next command (or a stale view: a create that lost) fetches the records again
    assert b.read_record("registry/m/2.json") == digest.encode()
    assert b.has_blob(digest) and b.get_bytes(digest) == b"new model"


def test_a_read_only_job_reads_origin_and_writes_only_in_its_process(first: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull request's job holds a read-only token: it reuses origin's state, and pushes nothing."""
    a = GitStore(first)
    model = a.put_bytes(b"main's model")
    assert a.create_record("cache/step.json", model.encode()) and a.create_record("outbox/e1", b"e")
    log = count_pushes(tmp_path / "origin.git")
    before = refs(tmp_path / "origin.git")
    monkeypatch.setenv("MLOPS_GIT_STORE_PUSH", "0")
    pr = GitStore(fresh(tmp_path, "pr"))
    assert "read-only" in pr.url
    assert pr.get_bytes(pr.read_record("cache/step.json").decode()) == b"main's model"  # type: ignore[union-attr]
    assert pr.create_record("cache/step.json", b"other") is False  # origin's view still counts
    assert pr.create_record("runs/pr-1.json", b"run") is True and pr.create_record("runs/pr-1.json", b"x") is False
    mine = pr.put_bytes(b"pr output")
    pr.write_record("cache/new.json", mine.encode())
    pr.delete_record("outbox/e1")
    pr.refresh()  # a later fetch keeps this process's view on top of origin's
    assert list(pr.list_records("")) == ["cache/new.json", "cache/step.json", "runs/pr-1.json"]
    assert pr.get_bytes(mine) == b"pr output" and pr.create_record("outbox/e1", b"again") is True
    flush_all()
    assert not log.exists() and refs(tmp_path / "origin.git") == before  # origin is as it was
