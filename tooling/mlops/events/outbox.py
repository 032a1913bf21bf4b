"""Events a sink has not taken yet, kept in the store until a later run delivers them.

    events/outbox/<sink id>/<queued ns>-<event id>.json          the event, waiting (immutable)
    events/attempts/<sink id>/<queued ns>-<event id>/0003.json   attempt 3 claimed: by whom, until when
    events/attempts/<sink id>/<queued ns>-<event id>/0003-failed.json   ... and how it failed
    events/dead/<sink id>/<queued ns>-<event id>.json            given up: the event, the attempts, the last error

Entry names sort by the time they were queued, so each sink's outbox is delivered oldest first.

Several processes may flush at once (a reconcile, a pipeline run, ``mlops events flush``), and the
store has no compare-and-swap, so nothing here is rewritten: an attempt is *claimed* by creating
its numbered record (``create_record``, which only one process can win), and its failure is one
more record. A process that loses the claim, or finds an attempt still within its claimed time and
without an outcome, leaves the entry (and the rest of that sink's outbox) to the other. So an entry
that has been delivered and removed is never brought back, and one attempt number is never made
twice. Delivery is at least once: a process that dies after the sink took the event but before
the entry is removed leaves it to be sent again (receivers dedupe on the event id, ``ce-id``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlops.events.cloudevent import CloudEvent, from_dict
from mlops.secrets import MASKER
from mlops.store.protocol import ArtifactStore

OUTBOX = "events/outbox/"
ATTEMPTS = "events/attempts/"
DEAD = "events/dead/"
MAX_CLAIM = 3600.0  # a claim promising more than an hour is not one we made: it does not hold anything up
_STEM_RE = re.compile(r"^[0-9]{20}-[0-9a-f-]{36}$")
_ATTEMPT_RE = re.compile(r"^([0-9]{4})(-failed)?\.json$")
_MAX_RAW = 64 << 10


@dataclass(frozen=True)
class Entry:
    """One waiting event. ``event`` is None when the record is unreadable (``problem`` says why)."""

    key: str
    sink: str
    stem: str
    event: CloudEvent | None
    attempts: int = 0  # attempts made before it was queued
    last_error: str | None = None
    problem: str | None = None
    raw: bytes = b""


@dataclass(frozen=True)
class Attempts:
    """What the attempt records of an entry say: how many were made, and whether one is under way."""

    made: int
    busy: bool
    last_error: str | None


def entry_key(sink: str, stem: str) -> str:
    return f"{OUTBOX}{sink}/{stem}.json"


def dead_key(sink: str, stem: str) -> str:
    return f"{DEAD}{sink}/{stem}.json"


def stem_for(event: CloudEvent) -> str:
    return f"{time.time_ns():020d}-{event.id}"


def event_id_of(key: str) -> str:
    """The event id in an entry's key (without reading it)."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".json")
    return stem[21:] if _STEM_RE.match(stem) else stem


def enqueue(store: ArtifactStore, sink: str, description: str, event: CloudEvent, attempts: int,
            error: str | None) -> Entry:
    """Put ``event`` at the end of ``sink``'s outbox (``attempts`` already made, the last ``error``)."""
    stem = stem_for(event)
    doc = {"event": event.to_dict(), "sink": description, "queued_at": _now(), "attempts": attempts,
           "last_error": MASKER.mask(error) if error is not None else None}
    key = entry_key(sink, stem)
    store.create_record(key, _dump(doc))
    return Entry(key, sink, stem, event, attempts, error)


def pending(store: ArtifactStore, sink: str) -> list[str]:
    """The keys of ``sink``'s waiting entries, oldest first."""
    return waiting(store, f"{OUTBOX}{sink}/").get(sink, [])


def waiting(store: ArtifactStore, prefix: str = OUTBOX) -> dict[str, list[str]]:
    """The keys of the waiting entries per sink id, oldest first, in one listing (on a store of git
    refs a listing is a fetch); sinks no longer configured included."""
    found: dict[str, list[str]] = {}
    for key in store.list_records(prefix):
        parts = key[len(OUTBOX):].split("/")
        if key.startswith(OUTBOX) and len(parts) == 2 and parts[1].endswith(".json"):
            found.setdefault(parts[0], []).append(key)
    return {sink: sorted(keys, key=lambda k: k.rsplit("/", 1)[1]) for sink, keys in found.items()}


def read_entry(store: ArtifactStore, key: str) -> Entry | None:
    """The entry at ``key`` (None once it is gone: delivered, or dead, by another run)."""
    sink, name = key[len(OUTBOX):].split("/", 1)
    stem = name.removesuffix(".json")
    raw = store.read_record(key)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        event = from_dict(doc.get("event"))
        attempts = doc.get("attempts", 0)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValueError("attempts is not a count")
        error = doc.get("last_error")
        return Entry(key, sink, stem, event, attempts, str(error)[:2000] if error is not None else None)
    except (ValueError, UnicodeDecodeError) as e:
        return Entry(key, sink, stem, None, problem=f"outbox record {key} is unreadable ({str(e)[:200]})",
                     raw=raw[:_MAX_RAW])


def attempts(store: ArtifactStore, entry: Entry, now: float | None = None) -> Attempts:
    """How many attempts ``entry`` has had, and whether the last one is still under way elsewhere."""
    prefix = f"{ATTEMPTS}{entry.sink}/{entry.stem}/"
    claimed: set[int] = set()
    failed: set[int] = set()
    for key in store.list_records(prefix):
        m = _ATTEMPT_RE.match(key[len(prefix):])
        if m:
            (failed if m.group(2) else claimed).add(int(m.group(1)))
    made = max([entry.attempts, *claimed])
    busy = False
    last_error = entry.last_error
    if claimed:
        last = max(claimed)
        if last in failed:
            last_error = _field(store.read_record(f"{prefix}{last:04d}-failed.json"), "error") or last_error
        else:
            until = _field(store.read_record(f"{prefix}{last:04d}.json"), "until")
            t = time.time() if now is None else now
            busy = isinstance(until, (int, float)) and t < until <= t + MAX_CLAIM
    return Attempts(made, busy, last_error if isinstance(last_error, str) else None)


def claim(store: ArtifactStore, entry: Entry, n: int, until: float) -> bool:
    """Claim attempt ``n`` of ``entry`` until the wall-clock time ``until``; False if another run has it."""
    doc = {"at": _now(), "until": until, "host": socket.gethostname(), "pid": os.getpid()}
    return store.create_record(f"{ATTEMPTS}{entry.sink}/{entry.stem}/{n:04d}.json", _dump(doc))


def failed(store: ArtifactStore, entry: Entry, n: int, error: str) -> None:
    """Record how attempt ``n`` failed (the entry stays for the next run)."""
    store.create_record(f"{ATTEMPTS}{entry.sink}/{entry.stem}/{n:04d}-failed.json",
                        _dump({"at": _now(), "error": MASKER.mask(error[:2000])}))


def remove(store: ArtifactStore, entry: Entry) -> None:
    """Drop a delivered (or buried) entry: the entry first, so no other run starts on it, then its attempts."""
    store.delete_record(entry.key)
    clear_attempts(store, entry.sink, entry.stem)


def clear_attempts(store: ArtifactStore, sink: str, stem: str) -> None:
    for key in list(store.list_records(f"{ATTEMPTS}{sink}/{stem}/")):
        store.delete_record(key)


def bury(store: ArtifactStore, entry: Entry, description: str, made: int, error: str) -> str:
    """Move ``entry`` to the dead letters (kept for people to look at); its key there."""
    doc: dict[str, Any] = {"sink": description, "died_at": _now(), "attempts": made, "error": MASKER.mask(error[:2000])}
    if entry.event is not None:
        doc["event"] = entry.event.to_dict()
    else:
        doc["unreadable"] = entry.raw.decode("utf-8", "replace")
    key = dead_key(entry.sink, entry.stem)
    store.create_record(key, _dump(doc))
    remove(store, entry)
    return key


def bury_new(store: ArtifactStore, sink: str, description: str, event: CloudEvent, made: int, error: str) -> str:
    """Record ``event`` as dead at once (its sink refused it for good); its key."""
    key = dead_key(sink, stem_for(event))
    store.create_record(key, _dump({"sink": description, "died_at": _now(), "attempts": made,
                                    "error": MASKER.mask(error[:2000]), "event": event.to_dict()}))
    return key


def sweep(store: ArtifactStore) -> int:
    """Remove attempt records left by runs that died between delivering and cleaning up; how many."""
    groups: dict[tuple[str, str], list[str]] = {}
    for key in store.list_records(ATTEMPTS):
        parts = key[len(ATTEMPTS):].split("/")
        if len(parts) == 3:
            groups.setdefault((parts[0], parts[1]), []).append(key)
    removed = 0
    for (sink, stem), keys in groups.items():
        if store.read_record(entry_key(sink, stem)) is not None:
            continue
        entry = Entry(entry_key(sink, stem), sink, stem, None)
        if attempts(store, entry).busy:
            continue  # its run may still be finishing
        for key in keys:
            store.delete_record(key)
            removed += 1
    return removed


def _field(raw: bytes | None, name: str) -> Any:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc.get(name) if isinstance(doc, dict) else None


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
