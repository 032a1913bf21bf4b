"""The release audit trail: one immutable record per fact about a model's versions and stages.

    release/models/<model>/events/0000000001.json   registered, gates_evaluated, approved, promoted,
    release/models/<model>/events/0000000002.json   rolled_back, deployed, undeployed ... never rewritten

Each event is claimed like a version number (create-if-absent on the next sequence number), so
two processes never write the same number and none is rewritten: the trail only grows. Which
version a stage holds is *derived* from it (the last ``promoted`` or ``rolled_back`` of that stage),
as is whether an approval still counts (an approval is for one version and stage).

Events are untrusted input like every record: a damaged one is a CorruptRecordError naming it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlops.errors import CorruptRecordError, RegistryError, StoreError
from mlops.store.protocol import ArtifactStore

KINDS = ("registered", "gates_evaluated", "approved", "promoted", "rolled_back", "deployed", "undeployed",
         "deprecated")
MOVES = ("promoted", "rolled_back")  # the events that change which version a stage holds
_MAX_EVENTS = 1_000_000


@dataclass(frozen=True)
class ReleaseEvent:
    """One fact: who (``by``) did what (``kind``) to which version and stage, when, why, at which commit,
    with its evidence (gate results, the pull request that approved it, the endpoint it went to...)."""

    seq: int
    kind: str
    model: str
    version: int | None
    stage: str | None
    at: str  # UTC, ISO 8601 with a Z
    by: str
    why: str
    commit: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, indent=2) + "\n").encode()

    @property
    def when(self) -> datetime:
        return parse_time(self.at)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """A UTC ISO 8601 time (``2026-11-29T10:00:00Z``, or with an offset) as an aware datetime."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-29T10:00:00Z)") from e
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def events_prefix(model: str) -> str:
    return f"release/models/{model}/events/"


def event_key(model: str, seq: int) -> str:
    return f"{events_prefix(model)}{seq:010d}.json"


def append_event(store: ArtifactStore, model: str, kind: str, *, version: int | None, stage: str | None, by: str,
                 why: str, commit: str | None = None, evidence: dict[str, Any] | None = None,
                 at: str | None = None) -> ReleaseEvent:
    """Record one more fact about ``model``; returns it with its sequence number."""
    from mlops.registry.versions import check_name

    check_name(model, "model")
    if kind not in KINDS:
        raise ValueError(f"unknown release event kind {kind!r}")
    seqs = _sequence_numbers(store, model)
    n = (seqs[-1] if seqs else 0) + 1
    when = at or utc_now()
    for _ in range(10_000):
        event = ReleaseEvent(n, kind, model, version, stage, when, by, why, commit, dict(evidence or {}))
        if store.create_record(event_key(model, n), event.to_json()):
            return event
        n += 1  # claimed by a concurrent writer: the next number leaves no gap
    raise StoreError(f"could not append a release event for {model!r} after 10000 attempts")


def model_events(store: ArtifactStore, model: str, problems: list[str] | None = None) -> list[ReleaseEvent]:
    """Every event of ``model``, oldest first. A damaged one is a CorruptRecordError naming it, unless
    ``problems`` is given (for listings): then it is skipped and described there. Decisions (gates,
    holders) must read the whole trail strictly."""
    out = []
    for n in _sequence_numbers(store, model):
        try:
            out.append(_read(store, model, n))
        except CorruptRecordError as e:
            if problems is None:
                raise
            problems.append(str(e))
    return out


def stage_history(events: list[ReleaseEvent], stage: str) -> list[ReleaseEvent]:
    """The events that moved ``stage`` (promotions and rollbacks), oldest first."""
    return [e for e in events if e.kind in MOVES and e.stage == stage]


def stage_holder(events: list[ReleaseEvent], stage: str) -> int | None:
    """The version ``stage`` holds now (None: it never held one)."""
    moves = stage_history(events, stage)
    return moves[-1].version if moves else None


def entered_at(events: list[ReleaseEvent], stage: str, version: int) -> datetime | None:
    """When ``version`` last entered ``stage``, if it holds it now and was not rolled back from it since."""
    moves = stage_history(events, stage)
    if not moves or moves[-1].version != version:
        return None
    start = moves[-1]
    for e in reversed(moves):  # the start of its uninterrupted tenure
        if e.version != version:
            break
        start = e
    return start.when


def held(events: list[ReleaseEvent], stage: str, version: int) -> bool:
    """Whether ``version`` entered ``stage`` and was not rolled back out of it since (it may hold it
    now, or have been replaced by a later promotion): what entering the next stage requires."""
    state = False
    for e in stage_history(events, stage):
        if e.version == version:
            state = True
        elif e.kind == "rolled_back" and e.evidence.get("from_version") == version:
            state = False
    return state


def approvals(events: list[ReleaseEvent], version: int, stage: str) -> list[ReleaseEvent]:
    """The approvals recorded for ``version`` entering ``stage`` (one per approver: the latest counts)."""
    latest: dict[str, ReleaseEvent] = {}
    for e in events:
        if e.kind == "approved" and e.version == version and e.stage == stage:
            latest[e.by] = e
    return list(latest.values())


def all_stage_holders(store: ArtifactStore) -> dict[str, dict[str, int]]:
    """model -> stage -> the version it holds now, for every model with a release trail (one listing)."""
    prefix = "release/models/"
    models = sorted({key[len(prefix):].partition("/")[0] for key in store.list_records(prefix)
                     if key[len(prefix):].partition("/")[2].startswith("events/")})
    out: dict[str, dict[str, int]] = {}
    for model in models:
        events = model_events(store, model)
        holders = {e.stage: e.version for e in events if e.kind in MOVES and e.stage and e.version is not None}
        if holders:
            out[model] = holders
    return out


def deployed_now(events: list[ReleaseEvent]) -> dict[tuple[str, str], ReleaseEvent]:
    """(endpoint, deployment) -> the ``deployed`` event of what that slot serves now (by this model's trail)."""
    slots: dict[tuple[str, str], ReleaseEvent] = {}
    for e in events:
        slot = (str(e.evidence.get("endpoint")), str(e.evidence.get("deployment")))
        if e.kind == "deployed":
            slots[slot] = e
        elif e.kind == "undeployed":
            slots.pop(slot, None)
    return slots


def _sequence_numbers(store: ArtifactStore, model: str) -> list[int]:
    prefix = events_prefix(model)
    out = []
    for key in store.list_records(prefix):
        name = key[len(prefix):]
        if len(name) == 15 and name.endswith(".json") and name[:10].isdigit():
            out.append(int(name[:10]))
    if len(out) > _MAX_EVENTS:
        raise RegistryError(f"model {model!r} has more than {_MAX_EVENTS} release events in {store.url}")
    return sorted(out)


def _read(store: ArtifactStore, model: str, seq: int) -> ReleaseEvent:
    from mlops.recordjson import fields_of, parse_json

    key = event_key(model, seq)
    raw = store.read_record(key)
    where = f"release event {key} in {store.url}"
    fix = "restore it from a backup; events are never rewritten, so a damaged one was changed outside mlops"
    if raw is None:
        raise CorruptRecordError(f"{where} vanished while it was read; {fix}")
    event = fields_of(ReleaseEvent, parse_json(raw, where, fix), where, fix)
    if event.seq != seq or event.model != model or event.kind not in KINDS:
        raise CorruptRecordError(f"{where} does not describe event {seq} of model {model!r}; {fix}")
    try:
        parse_time(event.at)
    except ValueError as e:
        raise CorruptRecordError(f"{where}: {e}; {fix}") from None
    return event
