"""StoreLock on every store: exclusion, stale locks broken, live ones respected."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import threading
import time
from typing import Any

import pytest

from mlops.errors import LockError
from mlops.store.lock import LockInfo, StoreLock
from mlops.store.protocol import ArtifactStore
from tests.store.conftest import StoreSpec, open_spec


def _dead_pid() -> int:
    p = mp.get_context("fork").Process(target=os._exit, args=(0,))
    p.start()
    p.join()
    assert p.pid is not None
    return p.pid


def _plant(store: ArtifactStore, name: str, *, age: float = 0.0, ttl: float = 60.0, pid: int | None = None,
           host: str | None = None) -> LockInfo:
    info = LockInfo(name, "someone", host or socket.gethostname(), pid or os.getpid(), time.time() - age, ttl,
                    f"token-{name}-{age}")
    store.write_record(f"locks/{name}", info.to_json())
    return info


def test_lock_excludes_and_releases(store: ArtifactStore) -> None:
    with StoreLock(store, "reconcile", owner="run 1", ttl_seconds=60) as info:
        assert info.owner == "run 1"
        with pytest.raises(LockError, match=r"lock 'reconcile' .* held by 'run 1'"):
            StoreLock(store, "reconcile", owner="run 2", ttl_seconds=60).acquire()
        with StoreLock(store, "other", owner="run 2", ttl_seconds=60):
            pass  # different names do not interfere
    assert store.read_record("locks/reconcile") is None
    with StoreLock(store, "reconcile", owner="run 2", ttl_seconds=60):
        pass


def test_lock_older_than_ttl_is_broken(store: ArtifactStore) -> None:
    stale = _plant(store, "r", age=120, ttl=60, host="some-other-host")
    lock = StoreLock(store, "r", owner="me", ttl_seconds=60)
    with lock:
        assert lock.broke == stale
        raw = store.read_record("locks/r")
        assert raw is not None and LockInfo.from_json(raw).owner == "me"


def test_lock_of_dead_local_process_is_broken(store: ArtifactStore) -> None:
    _plant(store, "r", pid=_dead_pid(), ttl=3600)
    lock = StoreLock(store, "r", owner="me", ttl_seconds=60)
    with lock:
        assert lock.broke is not None


def test_live_lock_on_other_host_is_respected(store: ArtifactStore) -> None:
    # A pid we cannot check (other host) and within its ttl: must not be broken.
    _plant(store, "r", pid=_dead_pid(), host="some-other-host", ttl=3600)
    with pytest.raises(LockError, match="some-other-host"):
        StoreLock(store, "r", owner="me", ttl_seconds=60).acquire()


def test_release_leaves_someone_elses_lock_alone(store: ArtifactStore) -> None:
    first = StoreLock(store, "r", owner="slow", ttl_seconds=0.01)
    first.acquire()
    time.sleep(0.05)
    with StoreLock(store, "r", owner="fast", ttl_seconds=60):  # breaks the expired one
        first.release()
        raw = store.read_record("locks/r")
        assert raw is not None and LockInfo.from_json(raw).owner == "fast"


def test_wait_for_a_lock(store: ArtifactStore) -> None:
    holder = StoreLock(store, "r", owner="a", ttl_seconds=60)
    holder.acquire()
    threading.Timer(0.3, holder.release).start()
    t0 = time.monotonic()
    with StoreLock(store, "r", owner="b", ttl_seconds=60, wait_seconds=10, poll_seconds=0.05):
        assert time.monotonic() - t0 >= 0.25


BREAK_ROUNDS = 20


def _breaker(spec: StoreSpec, me: str, barrier: Any, results: Any) -> None:
    store = open_spec(spec)
    won = []
    for i in range(BREAK_ROUNDS):
        barrier.wait()
        try:
            StoreLock(store, f"r{i}", owner=me, ttl_seconds=60).acquire()  # held, never released
            won.append(i)
        except LockError:
            pass
    results.put((me, won))


def test_two_processes_breaking_one_stale_lock(shared_spec: StoreSpec) -> None:
    store = open_spec(shared_spec)
    for i in range(BREAK_ROUNDS):
        _plant(store, f"r{i}", age=600, ttl=60)
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
