"""StoreLock: a named lock kept as a record, so it works wherever the store is shared.

    with StoreLock(store, "reconcile", owner="ci run 42"):
        ...   # no other holder of "reconcile" runs here

Records (all through the ArtifactStore record protocol, so local, S3, in-memory and git refs):

    locks/NAME                     the holder (LockInfo), created with ``create_record``
    locks-heartbeat/NAME/TOKEN     the holder's last sign of life, rewritten every ``heartbeat_seconds``
    locks-broken/NAME/TOKEN        who broke the lock TOKEN, when, why and what it was (BreakRecord)

While held, a daemon thread renews the heartbeat. A lock is taken over when its holder is gone:
on this host, at once when its process no longer exists; on any host, when its last sign of
life (the heartbeat, or the acquisition) is older than ``stale_after_seconds`` (60 s by default,
four missed heartbeats: wide enough for a slow store and for clocks a few seconds apart). The
holder writes both intervals into its record, so every contender judges it by the same rule.

The heartbeat is a record of its own, keyed by the holder's token, and never the lock record
itself: the store has no compare-and-swap, so "read the lock, see it is ours, rewrite it" could
overwrite the lock a breaker had just taken, bringing a broken lock back to life. A heartbeat
for a token that no longer holds the lock is inert. The heartbeat writes, then checks that the
lock is still ours; once it is not, it deletes its heartbeat and stops for good (``lost``).

Breaking is guarded by ``create_record("locks-broken/NAME/TOKEN")`` so that of several
processes that found the same stale lock only one deletes it (a slow breaker could otherwise
delete the lock a faster one had just taken). That record stays: it is the history that
``mlops locks`` shows, and ``mlops unlock --force --reason`` writes the same kind of record.

A lock record that cannot be read (not JSON, missing or wrong fields) is never taken over
automatically, since nothing says its holder is gone: acquiring fails with a message
naming ``mlops unlock --force``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from mlops.errors import LockError
from mlops.store.protocol import ArtifactStore

HEARTBEAT_SECONDS = 15.0
STALE_AFTER_SECONDS = 60.0
MAX_STALE_AFTER_SECONDS = 24 * 3600.0  # a record asking for more is not one we wrote
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


class UnreadableLock(ValueError):
    """A lock record that is not a LockInfo we could have written."""


@dataclass(frozen=True)
class LockInfo:
    """What a lock record says about its holder."""

    name: str
    owner: str
    host: str
    pid: int
    acquired_at: float  # seconds since the epoch
    token: str  # uuid4 hex: names this holding (heartbeat and break records are keyed by it)
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    stale_after_seconds: float = STALE_AFTER_SECONDS

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockInfo:
        """Parse a lock record; UnreadableLock says what is wrong with it."""
        try:
            d = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurdly deep nesting
            raise UnreadableLock(f"not JSON ({str(e)[:80]})") from None
        if not isinstance(d, dict):
            raise UnreadableLock(f"a JSON {type(d).__name__}, not an object")
        if "heartbeat_seconds" not in d and "ttl_seconds" in d:
            # Written by an mlops without heartbeats: silent by design, so its ttl is how long it may be.
            d = {**d, "heartbeat_seconds": d["ttl_seconds"], "stale_after_seconds": d["ttl_seconds"]}
        info = cls(_field(d, "name", str), _field(d, "owner", str), _field(d, "host", str), _field(d, "pid", int),
                   _number(d, "acquired_at"), _field(d, "token", str), _number(d, "heartbeat_seconds"),
                   _number(d, "stale_after_seconds"))
        if not _TOKEN_RE.fullmatch(info.token):
            raise UnreadableLock(f"token {info.token[:40]!r} is not 32 hex digits")
        if not 0 < info.heartbeat_seconds <= info.stale_after_seconds <= MAX_STALE_AFTER_SECONDS:
            raise UnreadableLock("heartbeat_seconds/stale_after_seconds out of range")
        return info

    def stale_reason(self, now: float, last_alive: float) -> str | None:
        """Why this lock may be taken over, or None if its holder may still be alive.

        ``last_alive`` is the holder's latest heartbeat (or its acquisition time).
        """
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return f"its process {self.pid} on {self.host} is gone"
        silent = now - last_alive
        if silent < -self.stale_after_seconds:
            # No live holder's clock is that far ahead (clocks are kept within seconds): a forged
            # record, or a broken clock, would otherwise keep the lock "live" for ever.
            return f"its last sign of life is {-silent:.0f}s in the future"
        if silent > self.stale_after_seconds:
            return (f"no heartbeat for {silent:.0f}s (it renews every {self.heartbeat_seconds:g}s and counts as "
                    f"gone after {self.stale_after_seconds:g}s)")
        return None

    def describe(self, last_alive: float | None = None, now: float | None = None) -> str:
        text = f"held by {self.owner!r} (pid {self.pid} on {self.host}) since {_iso(self.acquired_at)}"
        if last_alive is not None:
            text += f", last heartbeat {max(0.0, (now or time.time()) - last_alive):.0f}s ago"
        return text


def _field(d: Mapping[str, Any], key: str, kind: type) -> Any:
    value = d.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UnreadableLock(f"field {key!r} is missing or not a {kind.__name__}")
    return value


def _number(d: Mapping[str, Any], key: str) -> float:
    value = d.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise UnreadableLock(f"field {key!r} is missing or not a finite number")
    return float(value)


@dataclass(frozen=True)
class BreakRecord:
    """Who broke a lock, when, why, and what it broke (``locks-broken/NAME/TOKEN``)."""

    name: str
    token: str  # of the lock that was broken (for an unreadable record: derived from its bytes)
    broken_at: float
    broken_by: str
    host: str
    pid: int
    reason: str
    forced: bool  # by `mlops unlock --force` rather than by a contender finding it stale
    holder: dict[str, Any] | None  # the LockInfo that was broken, if it was readable
    unreadable: str | None = None  # the start of the record, if it was not

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BreakRecord:
        """Parse a break record; ValueError if it is not one."""
        try:
            d = json.loads(data)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        holder = d.get("holder")
        unreadable = d.get("unreadable")
        return cls(str(d["name"]), str(d["token"]), float(d["broken_at"]), str(d["broken_by"]), str(d["host"]),
                   int(d["pid"]), str(d["reason"]), bool(d["forced"]), holder if isinstance(holder, dict) else None,
                   unreadable if isinstance(unreadable, str) else None)

    def describe(self) -> str:
        how = "force-unlocked" if self.forced else "taken over"
        if self.holder is not None:
            what = (f"held by {self.holder.get('owner')!r} (pid {self.holder.get('pid')} on "
                    f"{self.holder.get('host')})")
        else:
            what = f"unreadable record {self.unreadable!r}"
        return (f"lock {self.name!r} {how} at {_iso(self.broken_at)} by {self.broken_by!r} "
                f"(pid {self.pid} on {self.host}): {self.reason}; it was {what}")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # 0 and negatives name process groups, not a holder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def check_name(name: str) -> str:
    """Return ``name`` if it can name a lock (one record key segment), else raise LockError."""
    if not NAME_RE.fullmatch(name) or name.endswith(".lock"):
        raise LockError(f"invalid lock name {name!r}: use letters, digits, '_', '-' and '.'")
    return name


def lock_key(name: str) -> str:
    return f"locks/{name}"


def heartbeat_key(name: str, token: str) -> str:
    return f"locks-heartbeat/{name}/{token}"


def break_key(name: str, token: str) -> str:
    return f"locks-broken/{name}/{token}"


def unreadable_token(raw: bytes) -> str:
    """A stable stand-in token for an unreadable record, so two breakers of it collide."""
    return "unreadable-" + hashlib.sha256(raw).hexdigest()[:32]


def unreadable_message(store: ArtifactStore, name: str, why: str) -> str:
    return (f"lock record {lock_key(name)} in {store.url} is unreadable ({why}); run "
            f"`mlops unlock {name} --force --reason \"...\"` once you know no run holds it")


def last_alive(store: ArtifactStore, info: LockInfo) -> float:
    """The holder's latest sign of life: its heartbeat, or when it took the lock."""
    raw = store.read_record(heartbeat_key(info.name, info.token))
    beat = None
    if raw is not None:
        try:
            d = json.loads(raw)
            beat = float(d["heartbeat_at"]) if isinstance(d, dict) else None
        except (ValueError, KeyError, TypeError, RecursionError):
            beat = None  # a garbled heartbeat is no sign of life; the acquisition time still is
    if beat is None or not math.isfinite(beat):
        return info.acquired_at
    return max(info.acquired_at, beat)


class StoreLock:
    """A context manager holding the lock ``name`` in ``store``; raises LockError if it is held.

    ``wait_seconds`` > 0 polls for that long before giving up. While held, a daemon thread
    renews the heartbeat every ``heartbeat_seconds``; if the lock is broken meanwhile, ``lost``
    says why and ``check()`` raises. Release deletes the record only if it is still ours.
    """

    def __init__(self, store: ArtifactStore, name: str, owner: str, *,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, stale_after_seconds: float = STALE_AFTER_SECONDS,
                 wait_seconds: float = 0.0, poll_seconds: float = 0.2):
        if not 0 < heartbeat_seconds <= stale_after_seconds <= MAX_STALE_AFTER_SECONDS:
            raise ValueError("need 0 < heartbeat_seconds <= stale_after_seconds <= one day")
        self.store = store
        self.name = check_name(name)
        self.key = lock_key(name)
        self.owner = owner
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after_seconds = stale_after_seconds
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.info: LockInfo | None = None
        self.broke: BreakRecord | None = None  # the record of the stale lock we took over, if any
        self.lost: str | None = None  # why the lock is no longer ours, if it was broken while held
        self.heartbeat_error: str | None = None  # the last failure to renew (the thread keeps trying)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> LockInfo:
        """Take the lock (taking over a stale one) or raise LockError."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            reason = self._try_once()
            if reason is None:
                assert self.info is not None
                self._start_heartbeat()
                return self.info
            if time.monotonic() >= deadline:
                raise LockError(reason)
            time.sleep(self.poll_seconds)

    def release(self) -> None:
        """Stop the heartbeat and give the lock back, if we still hold it."""
        info = self.info
        if info is None:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        try:
            if self.lost is None and self._lost_reason(info) is None:
                self.store.delete_record(self.key)
        finally:
            self.store.delete_record(heartbeat_key(self.name, info.token))
            self.info = None

    def check(self) -> None:
        """Raise LockError if the lock was broken while we held it (call before irreversible work)."""
        if self.lost is None and self.info is not None:
            self.lost = self._lost_reason(self.info)
        if self.lost is not None:
            raise LockError(f"lost lock {self.name!r} in {self.store.url}: {self.lost}")

    def __enter__(self) -> LockInfo:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # -- acquiring ---------------------------------------------------------------------
    def _new_info(self) -> LockInfo:
        return LockInfo(self.name, self.owner, socket.gethostname(), os.getpid(), time.time(), uuid.uuid4().hex,
                        float(self.heartbeat_seconds), float(self.stale_after_seconds))

    def _try_once(self) -> str | None:
        """None on success, else why the lock cannot be had now."""
        info = self._new_info()
        if self.store.create_record(self.key, info.to_json()):
            self.info = info
            return None
        raw = self.store.read_record(self.key)
        if raw is None:  # released between our create and read
            return None if self._take(info, None) else f"lock {self.name!r} in {self.store.url} is contended"
        try:
            held = LockInfo.from_json(raw)
        except UnreadableLock as e:
            return unreadable_message(self.store, self.name, str(e))
        now = time.time()
        alive = last_alive(self.store, held)
        stale = held.stale_reason(now, alive)
        if stale is None:
            return f"lock {self.name!r} in {self.store.url} is {held.describe(alive, now)}"
        record = BreakRecord(self.name, held.token, now, self.owner, info.host, info.pid, stale, False,
                             asdict(held))
        if not claim_break(self.store, record):
            return f"lock {self.name!r} in {self.store.url} is {held.describe(alive, now)} and being taken over"
        finish_break(self.store, self.name, held.token)
        if self._take(info, record):
            return None
        return f"lock {self.name!r} in {self.store.url} was taken by another process"

    def _take(self, info: LockInfo, broke: BreakRecord | None) -> bool:
        if not self.store.create_record(self.key, info.to_json()):
            return False
        self.info = info
        self.broke = broke
        return True

    # -- heartbeat ---------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self.lost = None
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        info = self.info
        assert info is not None
        while not self._stop.wait(self.heartbeat_seconds):
            if not self.renew(info):
                return

    def renew(self, info: LockInfo) -> bool:
        """Write one heartbeat; False (and ``lost`` set) once the lock is no longer ours.

        Writing first and checking after means a heartbeat written just as a breaker took the
        lock is deleted here again (the breaker deletes the heartbeat only after its guard record,
        which this check sees).
        """
        beat_key = heartbeat_key(self.name, info.token)
        try:
            self.store.write_record(beat_key, json.dumps({"heartbeat_at": time.time(), "pid": os.getpid(),
                                                          "host": info.host}).encode())
            lost = self._lost_reason(info)
            if lost is not None:
                self.lost = lost
                self.store.delete_record(beat_key)
                return False
            self.heartbeat_error = None
        except Exception as e:  # noqa: BLE001 - a store hiccup must not kill the heartbeat; retry next period
            self.heartbeat_error = f"{type(e).__name__}: {e}"
        return True

    def _lost_reason(self, info: LockInfo) -> str | None:
        if self.store.read_record(break_key(self.name, info.token)) is not None:
            return f"it was broken (see {break_key(self.name, info.token)})"
        raw = self.store.read_record(self.key)
        if raw is None:
            return "its record is gone"
        try:
            current = LockInfo.from_json(raw)
        except UnreadableLock:
            return "its record was overwritten with something unreadable"
        if current.token != info.token:
            return f"it is now {current.describe()}"
        return None


def claim_break(store: ArtifactStore, record: BreakRecord) -> bool:
    """Create the break record of ``record.token``; False if another process claimed it first.

    A claim older than the stale interval is from a breaker that died halfway (before deleting
    the lock): the lock would stay stuck behind it, so finishing its work is ours to do.
    """
    key = break_key(record.name, record.token)
    if store.create_record(key, record.to_json()):
        return True
    raw = store.read_record(key)
    try:
        earlier = BreakRecord.from_json(raw) if raw is not None else None
    except (ValueError, KeyError, TypeError):
        earlier = None
    if earlier is not None and time.time() - earlier.broken_at <= STALE_AFTER_SECONDS:
        return False
    store.write_record(f"{key}+{time.time_ns()}", record.to_json())  # the first claim's record stays
    return True


def finish_break(store: ArtifactStore, name: str, token: str) -> None:
    """Delete the lock record if it still has ``token``, and that token's heartbeat."""
    current = store.read_record(lock_key(name))
    if current is not None and _token_of(current) == token:
        store.delete_record(lock_key(name))
    store.delete_record(heartbeat_key(name, token))


def _token_of(raw: bytes) -> str:
    try:
        return LockInfo.from_json(raw).token
    except UnreadableLock:
        return unreadable_token(raw)


def force_break(store: ArtifactStore, name: str, *, by: str, reason: str) -> BreakRecord | None:
    """Break the lock ``name`` whoever holds it (``mlops unlock --force``), on record.

    Returns the BreakRecord written (``locks-broken/NAME/TOKEN``), or None if the lock is not held.
    A holder still running notices at its next heartbeat and stops renewing (see ``StoreLock.lost``).
    """
    check_name(name)
    if not reason.strip():
        raise LockError("breaking a lock needs a reason (--reason)")
    raw = store.read_record(lock_key(name))
    if raw is None:
        return None
    holder: dict[str, Any] | None
    try:
        info = LockInfo.from_json(raw)
        token, holder, unreadable = info.token, asdict(info), None
    except UnreadableLock:
        token, holder = unreadable_token(raw), None
        unreadable = raw[:200].decode("utf-8", "replace")
    record = BreakRecord(name, token, time.time(), by, socket.gethostname(), os.getpid(), reason.strip(), True,
                         holder, unreadable)
    key = break_key(name, token)
    if not store.create_record(key, record.to_json()):
        store.write_record(f"{key}+{time.time_ns()}", record.to_json())
    finish_break(store, name, token)
    return record


def held_locks(store: ArtifactStore) -> list[tuple[str, LockInfo | str, float | None]]:
    """Every lock record: ``(name, info or why it is unreadable, last sign of life)``."""
    out: list[tuple[str, LockInfo | str, float | None]] = []
    for key in store.list_records("locks/"):
        raw = store.read_record(key)
        if raw is None:
            continue
        name = key[len("locks/"):]
        try:
            info = LockInfo.from_json(raw)
        except UnreadableLock as e:
            out.append((name, str(e), None))
            continue
        out.append((name, info, last_alive(store, info)))
    return out


def break_history(store: ArtifactStore, name: str | None = None) -> list[tuple[str, BreakRecord | None]]:
    """Break records (``locks-broken/...``), oldest first; None for one that cannot be read."""
    rows: list[tuple[str, BreakRecord | None]] = []
    for key in store.list_records(f"locks-broken/{name}/" if name else "locks-broken/"):
        raw = store.read_record(key)
        if raw is None:
            continue
        try:
            rows.append((key, BreakRecord.from_json(raw)))
        except (ValueError, KeyError, TypeError):
            rows.append((key, None))
    rows.sort(key=lambda r: (r[1].broken_at if r[1] else 0.0, r[0]))
    return rows
