"""StoreLock on every store: exclusion, heartbeats, takeover of silent holders, breaking on record."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import LockError
from mlops.store import lock as lock_module
from mlops.store.lock import (
    BreakRecord,
    LockInfo,
    StoreLock,
    break_history,
    break_key,
    force_break,
    heartbeat_key,
    held_locks,
)
from mlops.store.protocol import ArtifactStore
from tests.store.conftest import StoreSpec, open_spec


def _dead_pid() -> int:
    p = mp.get_context("fork").Process(target=os._exit, args=(0,))
    p.start()
    p.join()
    assert p.pid is not None
    return p.pid


def _plant(store: ArtifactStore, name: str, *, age: float = 0.0, beat_age: float | None = None,
           stale_after: float = 60.0, pid: int | None = None, host: str | None = None) -> LockInfo:
    """A lock record as another holder would have written it, with its last heartbeat ``beat_age`` ago."""
    now = time.time()
    info = LockInfo(name, "someone", host or socket.gethostname(), pid or os.getpid(), now - age, uuid.uuid4().hex,
                    min(15.0, stale_after), stale_after)
    store.write_record(f"locks/{name}", info.to_json())
    if beat_age is not None:
        store.write_record(heartbeat_key(name, info.token), json.dumps({"heartbeat_at": now - beat_age}).encode())
    return info


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_lock_excludes_and_releases(store: ArtifactStore) -> None:
    with StoreLock(store, "reconcile", owner="run 1") as info:
        assert info.owner == "run 1"
        with pytest.raises(LockError, match=r"lock 'reconcile' .* held by 'run 1'"):
            StoreLock(store, "reconcile", owner="run 2").acquire()
        with StoreLock(store, "other", owner="run 2"):
            pass  # different names do not interfere
    assert store.read_record("locks/reconcile") is None
    assert list(store.list_records("locks-heartbeat/")) == []
    with StoreLock(store, "reconcile", owner="run 2"):
        pass


def test_silent_holder_on_another_host_is_taken_over(store: ArtifactStore) -> None:
    # A CI runner killed an hour ago: its pid cannot be checked, its heartbeat stopped 61s ago.
    stale = _plant(store, "r", age=3600, beat_age=61, stale_after=60, host="ci-runner-7")
    lock = StoreLock(store, "r", owner="me")
    with lock:
        assert lock.broke is not None and lock.broke.holder == json.loads(stale.to_json())
        assert lock.broke.reason.startswith("no heartbeat for 6")
        raw = store.read_record("locks/r")
        assert raw is not None and LockInfo.from_json(raw).owner == "me"
    assert store.read_record(heartbeat_key("r", stale.token)) is None
    [(key, record)] = break_history(store, "r")
    assert key == break_key("r", stale.token)
    assert record is not None and record.broken_by == "me" and not record.forced


def test_recent_heartbeat_keeps_an_old_lock(store: ArtifactStore) -> None:
    # Held for 7 hours (past the 6h ttl of old), but its heartbeat is 5s old: the holder is alive.
    _plant(store, "r", age=7 * 3600, beat_age=5, stale_after=60, host="ci-runner-7")
    with pytest.raises(LockError, match=r"held by 'someone' \(pid \d+ on ci-runner-7\).*last heartbeat \ds ago"):
        StoreLock(store, "r", owner="me").acquire()


def test_without_heartbeat_the_acquisition_time_counts(store: ArtifactStore) -> None:
    _plant(store, "fresh", age=10, host="ci-runner-7")
    with pytest.raises(LockError, match="ci-runner-7"):
        StoreLock(store, "fresh", owner="me").acquire()
    _plant(store, "old", age=61, host="ci-runner-7")
    with StoreLock(store, "old", owner="me"):
        pass


def test_lock_of_an_mlops_without_heartbeats_keeps_its_ttl(store: ArtifactStore) -> None:
    def plant(name: str, age: float) -> None:
        old = {"name": name, "owner": "old mlops", "host": "ci-runner-7", "pid": 7, "acquired_at": time.time() - age,
               "ttl_seconds": 6 * 3600.0, "token": uuid.uuid4().hex}
        store.write_record(f"locks/{name}", json.dumps(old).encode())

    plant("young", 3600)
    with pytest.raises(LockError, match="held by 'old mlops'"):
        StoreLock(store, "young", owner="me").acquire()
    plant("expired", 7 * 3600)
    with StoreLock(store, "expired", owner="me"):
        pass


def test_garbled_heartbeat_is_no_sign_of_life(store: ArtifactStore) -> None:
    held = _plant(store, "r", age=120, host="ci-runner-7")
    store.write_record(heartbeat_key("r", held.token), b"{not json")
    with StoreLock(store, "r", owner="me"):
        pass


def test_lock_of_dead_local_process_is_taken_over_at_once(store: ArtifactStore) -> None:
    _plant(store, "r", pid=_dead_pid(), beat_age=0)
    lock = StoreLock(store, "r", owner="me")
    with lock:
        assert lock.broke is not None and "is gone" in lock.broke.reason


@pytest.mark.parametrize("garbage", [b"\x00\xffgarbage", b"[1, 2]", b'{"name": "r", "owner": 3}',
                                     b'{"name":"r","owner":"o","host":"h","pid":1,"acquired_at":1e400,"token":"x",'
                                     b'"heartbeat_seconds":15,"stale_after_seconds":60}'])
def test_unreadable_lock_record_is_a_clear_error_and_can_be_broken(store: ArtifactStore, garbage: bytes) -> None:
    store.write_record("locks/r", garbage)
    with pytest.raises(LockError, match=r"lock record locks/r in .* is unreadable \(.*\); run "
                                        r"`mlops unlock r --force --reason"):
        StoreLock(store, "r", owner="me").acquire()
    assert held_locks(store)[0][0] == "r" and isinstance(held_locks(store)[0][1], str)
    record = force_break(store, "r", by="admin", reason="garbage in the store")
    assert record is not None and record.holder is None and record.unreadable
    assert record.token.startswith("unreadable-")
    with StoreLock(store, "r", owner="me"):
        pass
    [(_, on_record)] = break_history(store, "r")
    assert on_record == record


def test_force_break_is_on_record(store: ArtifactStore) -> None:
    assert force_break(store, "r", by="admin", reason="nothing held") is None
    holder = StoreLock(store, "r", owner="ci run 42")
    info = holder.acquire()
    with pytest.raises(LockError, match="needs a reason"):
        force_break(store, "r", by="admin", reason="  ")
    record = force_break(store, "r", by="admin <a@example.com>", reason="runner was killed")
    assert record is not None
    assert (record.forced, record.broken_by, record.reason, record.token) == (True, "admin <a@example.com>",
                                                                              "runner was killed", info.token)
    assert record.holder is not None and record.holder["owner"] == "ci run 42"
    assert store.read_record("locks/r") is None
    raw = store.read_record(break_key("r", info.token))
    assert raw is not None and BreakRecord.from_json(raw) == record
    assert "force-unlocked" in record.describe() and "runner was killed" in record.describe()
    with pytest.raises(LockError, match="lost lock 'r'.*broken"):
        holder.check()
    holder.release()  # the holder's release must not fail, nor delete anything but its own heartbeat


def test_heartbeat_stops_renewing_once_broken(store: ArtifactStore) -> None:
    holder = StoreLock(store, "r", owner="old", heartbeat_seconds=0.02, stale_after_seconds=5)
    old = holder.acquire()
    _wait_for(lambda: store.read_record(heartbeat_key("r", old.token)) is not None)
    force_break(store, "r", by="admin", reason="test")
    successor = StoreLock(store, "r", owner="new")
    new = successor.acquire()
    _wait_for(lambda: holder.lost is not None)
    assert holder._thread is not None
    holder._thread.join(timeout=10)
    assert not holder._thread.is_alive()
    time.sleep(0.1)  # several heartbeat periods: nothing may come back
    raw = store.read_record("locks/r")
    assert raw is not None and LockInfo.from_json(raw).token == new.token
    assert store.read_record(heartbeat_key("r", old.token)) is None
    holder.release()
    assert store.read_record("locks/r") is not None
    successor.release()


def test_heartbeat_racing_a_breaker_never_resurrects_the_lock(store: ArtifactStore) -> None:
    # Renewals and breaks interleaved as tightly as the GIL allows, many times.
    for i in range(20):
        holder = StoreLock(store, f"r{i}", owner="old", heartbeat_seconds=0.001, stale_after_seconds=5)
        old = holder.acquire()
        force_break(store, f"r{i}", by="admin", reason="race")
        new = StoreLock(store, f"r{i}", owner="new").acquire()
        _wait_for(lambda h=holder: h.lost is not None)  # type: ignore[misc]
        assert holder._thread is not None
        holder._thread.join(timeout=10)
        raw = store.read_record(f"locks/r{i}")
        assert raw is not None and LockInfo.from_json(raw).token == new.token
        assert store.read_record(heartbeat_key(f"r{i}", old.token)) is None


def test_release_leaves_someone_elses_lock_alone(store: ArtifactStore) -> None:
    first = StoreLock(store, "r", owner="slow", heartbeat_seconds=0.01, stale_after_seconds=0.01)
    first.acquire()
    first._stop.set()  # its heartbeat "hangs"
    time.sleep(0.05)
    with StoreLock(store, "r", owner="fast"):  # takes over the silent one
        first.release()
        raw = store.read_record("locks/r")
        assert raw is not None and LockInfo.from_json(raw).owner == "fast"


def test_wait_for_a_lock(store: ArtifactStore) -> None:
    holder = StoreLock(store, "r", owner="a")
    holder.acquire()
    threading.Timer(0.3, holder.release).start()
    t0 = time.monotonic()
    with StoreLock(store, "r", owner="b", wait_seconds=10, poll_seconds=0.05):
        assert time.monotonic() - t0 >= 0.25


def test_a_breaker_that_died_halfway_does_not_wedge_the_lock(store: ArtifactStore) -> None:
    stale = _plant(store, "r", age=600, host="ci-runner-7")
    claim = BreakRecord("r", stale.token, time.time() - 120, "dead breaker", "ci-runner-8", 1, "stale", False, None)
    store.write_record(break_key("r", stale.token), claim.to_json())  # claimed, then killed before deleting
    lock = StoreLock(store, "r", owner="me")
    with lock:
        assert lock.broke is not None
    keys = [key for key, _ in break_history(store, "r")]
    assert break_key("r", stale.token) in keys and len(keys) == 2


def test_invalid_names_are_refused(store: ArtifactStore) -> None:
    for bad in ("", "../x", "a/b", ".hidden", "x.lock"):
        with pytest.raises(LockError, match="invalid lock name"):
            StoreLock(store, bad, owner="me")


# -- real processes ---------------------------------------------------------------------------

def _hold_on_another_host(spec: StoreSpec, ready: Any) -> None:
    lock_module.socket.gethostname = lambda: "ci-runner-7"  # type: ignore[attr-defined]  # this child only
    StoreLock(open_spec(spec), "reconcile", owner="ci run 7", heartbeat_seconds=0.1,
              stale_after_seconds=1.5).acquire()
    ready.put("held")
    time.sleep(600)  # until killed, like a CI runner that is torn down


def test_killed_holder_on_another_host_is_taken_over(shared_spec: StoreSpec) -> None:
    store = open_spec(shared_spec)
    ctx = mp.get_context("fork")
    ready = ctx.Queue()
    child = ctx.Process(target=_hold_on_another_host, args=(shared_spec, ready))
    child.start()
    try:
        assert ready.get(timeout=60) == "held"
        time.sleep(2.5)  # longer than its stale interval: only the heartbeat keeps it held
        with pytest.raises(LockError, match=r"held by 'ci run 7' \(pid \d+ on ci-runner-7\)"):
            StoreLock(store, "reconcile", owner="next run").acquire()
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    taker = StoreLock(store, "reconcile", owner="next run", wait_seconds=60, poll_seconds=0.1)
    with taker:
        assert taker.broke is not None and taker.broke.holder is not None
        assert taker.broke.holder["host"] == "ci-runner-7" and "no heartbeat" in taker.broke.reason


BREAK_ROUNDS = 20


def _breaker(spec: StoreSpec, me: str, barrier: Any, results: Any) -> None:
    store = open_spec(spec)
    won = []
    for i in range(BREAK_ROUNDS):
        barrier.wait()
        try:
            lock = StoreLock(store, f"r{i}", owner=me)
            lock.acquire()
            lock._stop.set()  # held, never released; no heartbeats needed
            won.append(i)
        except LockError:
            pass
    results.put((me, won))


def test_two_processes_breaking_one_stale_lock(shared_spec: StoreSpec) -> None:
    store = open_spec(shared_spec)
    for i in range(BREAK_ROUNDS):
        _plant(store, f"r{i}", age=600, stale_after=60)
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_breaker, args=(shared_spec, me, barrier, results)) for me in "ab"]
    for p in procs:
        p.start()
    won = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=10)
    a, b = set(won["a"]), set(won["b"])
    assert not a & b, "two processes hold the same lock"
    assert a | b == set(range(BREAK_ROUNDS))
    for i in range(BREAK_ROUNDS):
        raw = store.read_record(f"locks/r{i}")
        assert raw is not None and LockInfo.from_json(raw).owner == ("a" if i in a else "b")


def test_lock_through_git_refs(tmp_path: Path) -> None:
    """The git registry backend keeps locks as refs on origin: one clone's holder is seen by another."""
    import subprocess

    from mlops.registry.composite import CompositeStore
    from mlops.registry.gitrefs import GitRefRecords
    from mlops.store.local import LocalStore

    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    stores = []
    for name in ("a", "b"):
        subprocess.run(["git", "clone", "-q", str(origin), str(tmp_path / name)], check=True, capture_output=True)
        stores.append(CompositeStore(LocalStore(tmp_path / "blobs"), GitRefRecords(tmp_path / name,
                                                                                   refresh_seconds=0)))
    a, b = stores
    holder = StoreLock(a, "reconcile", owner="runner a", heartbeat_seconds=0.2, stale_after_seconds=30)
    info = holder.acquire()
    _wait_for(lambda: b.read_record(heartbeat_key("reconcile", info.token)) is not None, timeout=30)
    with pytest.raises(LockError, match="held by 'runner a'"):
        StoreLock(b, "reconcile", owner="runner b").acquire()
    record = force_break(b, "reconcile", by="admin", reason="runner a is gone")
    assert record is not None
    _wait_for(lambda: holder.lost is not None, timeout=30)
    with StoreLock(b, "reconcile", owner="runner b"):
        assert [r for _, r in break_history(a, "reconcile")] == [record]
    holder.release()


@pytest.mark.parametrize("future", ["acquired", "heartbeat"])
def test_a_lock_whose_signs_of_life_lie_in_the_future_is_stale(store: ArtifactStore, future: str) -> None:
    """A record with a time in 2100 (a forged record, or a clock that far off) was "live, last
    heartbeat 0s ago" forever: every reconcile failed until someone broke it by hand."""
    if future == "acquired":
        _plant(store, "r", age=-(80 * 365 * 86400), host="ci-runner-7")
    else:
        _plant(store, "r", age=10, beat_age=-(80 * 365 * 86400), host="ci-runner-7")
    lock = StoreLock(store, "r", owner="me")
    with lock:
        assert lock.broke is not None and "in the future" in lock.broke.reason
