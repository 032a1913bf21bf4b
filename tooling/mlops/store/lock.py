"""StoreLock: a named lock kept as a record, so it works wherever the store is shared.

    with StoreLock(store, "reconcile", owner="ci run 42", ttl_seconds=600):
        ...   # no other holder of "reconcile" runs here

Acquiring is ``create_record("locks/NAME")``. A lock whose holder is gone can be broken:
it is older than its ttl, or was taken on this host by a process that no longer exists.
Breaking is itself guarded by ``create_record("locks-broken/NAME/TOKEN")`` so that of
several processes that found the same stale lock only one deletes it (otherwise a slow
breaker could delete the lock a faster one had just taken).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from mlops.errors import LockError
from mlops.store.protocol import ArtifactStore


@dataclass(frozen=True)
class LockInfo:
    """What a lock record says about its holder."""

    name: str
    owner: str
    host: str
    pid: int
    acquired_at: float  # seconds since the epoch
    ttl_seconds: float
    token: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockInfo:
        d: dict[str, Any] = json.loads(data)
        return cls(str(d["name"]), str(d["owner"]), str(d["host"]), int(d["pid"]), float(d["acquired_at"]),
                   float(d["ttl_seconds"]), str(d["token"]))

    def stale_reason(self, now: float) -> str | None:
        """Why this lock may be broken, or None if its holder may still be alive."""
        if now - self.acquired_at > self.ttl_seconds:
            return f"older than its ttl of {self.ttl_seconds:g}s"
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return f"its process {self.pid} on {self.host} is gone"
        return None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.acquired_at))
        return f"held by {self.owner!r} (pid {self.pid} on {self.host}) since {when}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreLock:
    """A context manager holding the lock ``name`` in ``store``; raises LockError if it is held.

    ``wait_seconds`` > 0 polls for that long before giving up. Release deletes the record
    only if it is still ours (it may have been broken as stale meanwhile).
    """

    def __init__(self, store: ArtifactStore, name: str, owner: str, ttl_seconds: float,
                 wait_seconds: float = 0.0, poll_seconds: float = 0.2):
        self.store = store
        self.name = name
        self.key = f"locks/{name}"
        self.owner = owner
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.info: LockInfo | None = None
        self.broke: LockInfo | None = None  # the stale lock we broke to get in, if any

    def acquire(self) -> LockInfo:
        """Take the lock (breaking a stale one) or raise LockError."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            reason = self._try_once()
            if reason is None:
                assert self.info is not None
                return self.info
            if time.monotonic() >= deadline:
                raise LockError(f"lock {self.name!r} in {self.store.url} is {reason}")
            time.sleep(self.poll_seconds)

    def release(self) -> None:
        """Give the lock back, if we still hold it."""
        if self.info is None:
            return
        current = self.store.read_record(self.key)
        if current is not None and LockInfo.from_json(current).token == self.info.token:
            self.store.delete_record(self.key)
        self.info = None

    def __enter__(self) -> LockInfo:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _try_once(self) -> str | None:
        """None on success, else a description of the holder."""
        info = LockInfo(self.name, self.owner, socket.gethostname(), os.getpid(), time.time(),
                        float(self.ttl_seconds), uuid.uuid4().hex)
        if self.store.create_record(self.key, info.to_json()):
            self.info = info
            return None
        raw = self.store.read_record(self.key)
        if raw is None:  # released between our create and read: just try again
            return self._try_create_only(info)
        held = LockInfo.from_json(raw)
        stale = held.stale_reason(time.time())
        if stale is None:
            return held.describe()
        if not self.store.create_record(f"locks-broken/{self.name}/{held.token}", info.to_json()):
            return f"{held.describe()} and being broken by another process"
        again = self.store.read_record(self.key)
        # Its holder may have released it and someone else taken it since we read it.
        if again is not None and LockInfo.from_json(again).token == held.token:
            self.store.delete_record(self.key)
        if self.store.create_record(self.key, info.to_json()):
            self.info = info
            self.broke = held
            return None
        raw = self.store.read_record(self.key)
        return LockInfo.from_json(raw).describe() if raw else "contended"

    def _try_create_only(self, info: LockInfo) -> str | None:
        if self.store.create_record(self.key, info.to_json()):
            self.info = info
            return None
        return "contended"
