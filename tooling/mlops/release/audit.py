"""Which model versions served an endpoint at a given time, from the audit trail.

Serving records one ``deployed`` event per deployment it creates or changes (evidence:
``endpoint``, ``deployment``, ``target``, ``traffic`` in percent) and one ``undeployed`` event per
deployment it removes, in the trail of the model deployed. An endpoint's deployments are slots
named by ``deployment``: a ``deployed`` event puts a model version with its traffic weight into
its slot (replacing what was there, of whichever model), an ``undeployed`` event empties it.
Replaying every model's events in time order gives *periods*: this version, in this slot, with
this weight, from this time until the next change of the slot.

So "what served the endpoint at T" is every period that contains T (start <= T < end), each with
its weight: with a canary or a traffic split, several versions served at once, and the answer
lists them all. A deployment with weight 0 (a shadow, or one drained before removal) was deployed
but answered no requests; it is listed, marked so. For a whole day, every period that overlaps it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from mlops.release.history import read_events
from mlops.release.records import ReleaseEvent, parse_time
from mlops.store.protocol import ArtifactStore

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PREFIX = "release/models/"


@dataclass(frozen=True)
class Period:
    """One version in one deployment slot of an endpoint, with one traffic weight, from ``start``
    until ``end`` (None: still so). ``traffic`` is None when the event recorded no valid weight."""

    endpoint: str
    deployment: str
    model: str
    version: int | None
    target: str | None
    traffic: float | None
    start: str
    end: str | None
    by: str
    why: str
    commit: str | None
    seq: int
    ended_by: str | None = None  # "deployed" (replaced or re-weighted) | "undeployed"

    @property
    def serving(self) -> bool:
        """Whether it answered requests (a weight of 0 is deployed, not serving)."""
        return self.traffic is None or self.traffic > 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "serving": self.serving}


@dataclass(frozen=True)
class Window:
    """What was asked: an instant (``start == end``) or a span such as a day (``[start, end)``)."""

    start: datetime
    end: datetime
    text: str

    @property
    def instant(self) -> bool:
        return self.start == self.end


def parse_window(text: str, now: datetime | None = None) -> Window:
    """``now``, a date (``2026-11-29``: that whole UTC day) or an ISO 8601 time (UTC when it has no
    offset). ValueError, saying what is accepted, otherwise."""
    t = text.strip()
    if t.lower() == "now":
        instant = now or datetime.now(timezone.utc)
        return Window(instant, instant, instant.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if _DATE.match(t):
        try:
            day = date.fromisoformat(t)
        except ValueError:
            raise ValueError(f"{text!r} is not a date (e.g. 2026-11-29)") from None
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        return Window(start, start + timedelta(days=1), f"{t} (the whole UTC day)")
    try:
        instant = parse_time(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give an ISO 8601 time (2026-11-29T10:00:00Z), "
                         "a date (2026-11-29) or now") from None
    instant = instant.astimezone(timezone.utc)
    return Window(instant, instant, instant.strftime("%Y-%m-%dT%H:%M:%SZ"))


def models_with_events(store: ArtifactStore) -> list[str]:
    """Every model that has a release trail (including models no longer in the registry)."""
    names = set()
    for key in store.list_records(_PREFIX):
        name, _, rest = key[len(_PREFIX):].partition("/")
        if rest.startswith("events/"):
            names.add(name)
    return sorted(names)


def endpoint_periods(store: ArtifactStore, endpoint: str, problems: list[str]) -> list[Period]:
    """Every period of ``endpoint``, in the order they started. Damaged events and deployment
    events without a usable endpoint/deployment are described in ``problems`` and skipped."""
    moves: list[ReleaseEvent] = []
    for model in models_with_events(store):
        for e in read_events(store, model, problems):
            if e.kind in ("deployed", "undeployed") and e.evidence.get("endpoint") == endpoint:
                moves.append(e)
    # Across models only the time orders events (to the second); within a model, its sequence.
    moves.sort(key=lambda e: (e.when, e.model, e.seq))
    open_: dict[str, Period] = {}
    done: list[Period] = []
    for e in moves:
        slot = e.evidence.get("deployment")
        if not isinstance(slot, str) or not slot:
            problems.append(f"release event {e.seq} of model {e.model!r} ({e.kind} on endpoint {endpoint!r}) names "
                            "no deployment; it is left out of the answer")
            continue
        prior = open_.pop(slot, None)
        if prior is not None:
            done.append(_close(prior, e))
        if e.kind == "deployed":
            open_[slot] = _open(e, endpoint, slot, problems)
    return sorted(done + list(open_.values()), key=lambda p: (parse_time(p.start), p.deployment))


def served(store: ArtifactStore, endpoint: str, window: Window, problems: list[str]) -> list[Period]:
    """The periods of ``endpoint`` that contain the instant, or overlap the span, of ``window``."""
    out = []
    for p in endpoint_periods(store, endpoint, problems):
        start = parse_time(p.start)
        end = None if p.end is None else parse_time(p.end)
        if window.instant:
            hit = start <= window.start and (end is None or window.start < end)
        else:
            hit = start < window.end and (end is None or end > window.start)
        if hit:
            out.append(p)
    return out


def ever_deployed(store: ArtifactStore, endpoint: str) -> bool:
    """Whether any deployment record ever named ``endpoint``."""
    return bool(endpoint_periods(store, endpoint, []))


def traffic_note(periods: list[Period], window: Window) -> str | None:
    """A warning when the weights recorded for one instant do not add up to 100%."""
    if not window.instant or not periods or any(p.traffic is None for p in periods):
        return None
    total = sum(p.traffic or 0.0 for p in periods)
    if abs(total - 100.0) < 1e-6:
        return None
    return (f"the recorded traffic weights add up to {total:g}%, not 100%: the deployment events of this "
            "endpoint may be incomplete")


def _open(e: ReleaseEvent, endpoint: str, slot: str, problems: list[str]) -> Period:
    traffic = e.evidence.get("traffic")
    weight: float | None = None
    if isinstance(traffic, (int, float)) and not isinstance(traffic, bool) and 0 <= traffic <= 100:
        weight = float(traffic)
    else:
        problems.append(f"release event {e.seq} of model {e.model!r} (deployed to {endpoint}/{slot}) records "
                        f"traffic {traffic!r}, not a percentage from 0 to 100; its weight is shown as unknown")
    target = e.evidence.get("target")
    return Period(endpoint, slot, e.model, e.version, target if isinstance(target, str) else None, weight,
                  e.at, None, e.by, e.why, e.commit, e.seq)


def _close(p: Period, e: ReleaseEvent) -> Period:
    return Period(**{**asdict(p), "end": e.at, "ended_by": e.kind})
