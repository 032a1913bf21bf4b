"""`mlops reconcile` against locks left by others, `mlops unlock --force` and `mlops locks`, for real."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from mlops.store.local import LocalStore
from mlops.store.lock import LockInfo, heartbeat_key
from tests.gitrepo import Repo, init_repo, mlops


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: p\nstages:\n  - name: dev\n")
    repo.write(".gitignore", ".mlops/\n")
    repo.commit("project")
    return repo


def _plant(repo: Repo, *, beat_age: float, host: str = "ci-runner-7") -> LockInfo:
    store = LocalStore(repo.path / ".mlops")
    now = time.time()
    info = LockInfo("reconcile", "ci run 7", host, 4242, now - 3600, uuid.uuid4().hex, 15.0, 60.0)
    store.write_record("locks/reconcile", info.to_json())
    store.write_record(heartbeat_key("reconcile", info.token), json.dumps({"heartbeat_at": now - beat_age}).encode())
    return info


def test_reconcile_takes_over_a_silent_lock_and_it_is_on_record(repo: Repo) -> None:
    stale = _plant(repo, beat_age=61)
    mlops(repo, "reconcile")
    listing = json.loads(mlops(repo, "locks", "--output", "json").stdout)
    assert listing["locks"] == []
    [entry] = listing["broken"]
    assert entry["token"] == stale.token and entry["holder"]["host"] == "ci-runner-7"
    assert not entry["forced"] and re.match(r"no heartbeat for 6\ds ", entry["reason"])
    assert "taken over" in mlops(repo, "locks").stdout


def test_live_lock_blocks_until_unlocked_on_record(repo: Repo) -> None:
    live = _plant(repo, beat_age=1)
    out = mlops(repo, "reconcile", check=False)
    assert out.returncode == 8
    assert "held by 'ci run 7' (pid 4242 on ci-runner-7)" in out.stderr
    assert re.search(r"last heartbeat \d+s ago", out.stderr)
    text = mlops(repo, "locks").stdout
    assert "reconcile: held by 'ci run 7'" in text and "(live)" in text

    refused = mlops(repo, "unlock", check=False)
    assert refused.returncode == 64 and "--force and --reason" in refused.stderr
    assert mlops(repo, "unlock", "--force", check=False).returncode == 64  # a reason is required too

    out = mlops(repo, "unlock", "--force", "--reason", "runner 7 was killed")
    assert "lock 'reconcile' force-unlocked" in out.stdout and "by 'Test User <test@example.com>'" in out.stdout
    assert "runner 7 was killed" in out.stdout and "held by 'ci run 7'" in out.stdout
    assert f"locks-broken/reconcile/{live.token}" in out.stdout
    [entry] = json.loads(mlops(repo, "locks", "--output", "json").stdout)["broken"]
    assert (entry["forced"], entry["reason"], entry["holder"]["owner"]) == (True, "runner 7 was killed", "ci run 7")
    mlops(repo, "reconcile")
    assert "not held" in mlops(repo, "unlock", "--force", "--reason", "again").stderr


def test_unreadable_lock_record_is_one_clear_line(repo: Repo) -> None:
    LocalStore(repo.path / ".mlops").write_record("locks/reconcile", b"\x00 not a lock")
    out = mlops(repo, "reconcile", check=False)
    assert out.returncode == 8, out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert "error: lock record locks/reconcile in file://" in out.stderr
    assert "is unreadable (not JSON" in out.stderr and "mlops unlock reconcile --force --reason" in out.stderr
    assert "unreadable record" in mlops(repo, "locks").stdout
    out = mlops(repo, "unlock", "--force", "--reason", "garbage")
    assert "unreadable record" in out.stdout
    mlops(repo, "reconcile")
