"""``emit`` and ``flush``: deliver lifecycle events to every configured sink without ever failing
the caller.

    emit(project, store, root, "model.promoted", model_subject("wine-classifier", 3),
         {"model": "wine-classifier", "version": 3, "stage": "prod", "from_version": 2})

For each sink whose ``events`` filter takes the event, oldest first: what waits in its outbox is
retried, then the new event is sent. A sink that fails keeps the event in its outbox (and every
later one, so the order holds) for the next ``emit`` or ``mlops events flush``; a sink that refuses
it for good (a 4xx), or fails ``Limits.attempts`` times, makes it dead (``events/dead/...``), with a
warning. One call spends at most ``Limits.total_wait`` seconds delivering, shared among the sinks,
so a slow one cannot starve the others; what does not fit waits for the next call.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import DeliveryError, MlopsError
from mlops.events import outbox
from mlops.events.cloudevent import CloudEvent, new_event
from mlops.events.sinks import Budget, EventSink, Limits, configured_sinks
from mlops.spec.model import Project
from mlops.store.protocol import ArtifactStore

Warn = Callable[[str], None]
STATUSES = ("delivered", "kept", "dead", "lost")


@dataclass(frozen=True)
class Outcome:
    """What became of one event at one sink in this call."""

    sink: str  # the sink's description
    sink_id: str
    event_id: str
    name: str  # the event's name, when known
    status: str  # delivered | kept (in the outbox) | dead | lost (not delivered, and the store refused it)
    detail: str = ""
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"sink": self.sink, "sink_id": self.sink_id, "event_id": self.event_id, "name": self.name,
                "status": self.status, "detail": self.detail, "attempts": self.attempts}


@dataclass
class Report:
    """Everything one ``emit``/``flush`` did, and the warnings it gave."""

    event: CloudEvent | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    orphans: dict[str, int] = field(default_factory=dict)  # sink id -> entries waiting for a sink no longer configured

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event.to_dict() if self.event else None,
                "counts": {s: self.count(s) for s in STATUSES},
                "outcomes": [o.to_dict() for o in self.outcomes], "warnings": list(self.warnings),
                "orphans": dict(self.orphans)}


def stderr_warn(message: str) -> None:
    """The default: one ``warning:`` line on stderr (which the CLI masks)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def emit(project: Project, store: ArtifactStore | None, root: Path, name: str, subject: str,
         data: Mapping[str, Any] | None = None, *, sinks: list[EventSink] | None = None,
         limits: Limits | None = None, environ: Mapping[str, str] | None = None,
         warn: Warn | None = None) -> Report:
    """Build the event ``dev.mlops.<name>`` about ``subject`` and deliver it (see the module docstring).

    Never raises for a sink or the store; an unknown ``name`` (a bug of the caller) is ValueError.
    ``sinks`` replaces the configured ones (tests); ``warn`` gets each warning (default: stderr).
    """
    event = new_event(project.name, name, subject, data)
    return _deliver(project, store, root, event, sinks, limits, environ, warn)


def flush(project: Project, store: ArtifactStore | None, root: Path, *, sinks: list[EventSink] | None = None,
          limits: Limits | None = None, environ: Mapping[str, str] | None = None,
          warn: Warn | None = None) -> Report:
    """Deliver what waits in the outbox now; the report also counts entries of sinks no longer configured."""
    report = _deliver(project, store, root, None, sinks, limits, environ, warn)
    if store is not None:
        known = {s.id for s in (sinks or [])} or {s.id for s in _sinks(project, root, limits, environ)}
        try:
            report.orphans = {k: len(v) for k, v in outbox.waiting(store).items() if k not in known}
            outbox.sweep(store)
        except (MlopsError, OSError) as e:
            _warn(report, warn, f"event outbox in {store.url}: {e}")
        for ident, n in sorted(report.orphans.items()):
            _warn(report, warn, f"{n} event{'s' if n != 1 else ''} wait in {outbox.OUTBOX}{ident}/ for a sink no "
                                "longer configured; they stay there (delete the records to drop them)")
    return report


def _sinks(project: Project, root: Path, limits: Limits | None,
           environ: Mapping[str, str] | None) -> list[EventSink]:
    return configured_sinks(project, root, limits or Limits.from_env(environ), environ)


def _deliver(project: Project, store: ArtifactStore | None, root: Path, event: CloudEvent | None,
             sinks: list[EventSink] | None, limits: Limits | None, environ: Mapping[str, str] | None,
             warn: Warn | None) -> Report:
    limits = limits or Limits.from_env(environ)
    chosen = sinks if sinks is not None else configured_sinks(project, root, limits, environ)
    report = Report(event)
    budget = Budget(limits.total_wait)
    waiting: dict[str, list[str]] = {}
    if store is not None:
        try:
            waiting = outbox.waiting(store)
        except (MlopsError, OSError) as e:
            _warn(report, warn, f"cannot read the event outbox in {store.url} ({e}): older events wait for a "
                                "later run, and this one is not kept where a sink fails")
            store = None
    for i, sink in enumerate(chosen):
        # Each sink may use its share of what is left; a quick one leaves the rest to those after it.
        share = Budget(budget.remaining() / (len(chosen) - i), budget.clock, budget.sleep)
        new = event if event is not None and sink.accepts(event.name) else None
        try:
            _run_sink(store, waiting.get(sink.id, []), sink, new, share, limits, report, warn)
        except (MlopsError, OSError) as e:  # the store failed under the outbox: later runs see what is left
            _warn(report, warn, f"{sink.description}: event outbox: {e}")
        except Exception as e:  # noqa: BLE001 - a notification must never fail the run it reports on
            _warn(report, warn, f"{sink.description}: {type(e).__name__}: {e} (a bug in mlops: please report it)")
    return report


def _run_sink(store: ArtifactStore | None, keys: list[str], sink: EventSink, event: CloudEvent | None,
              budget: Budget, limits: Limits, report: Report, warn: Warn | None) -> None:
    held: str | None = None  # why the rest of this sink's outbox waits
    kept = 0
    for key in keys:
        if held is None and budget.spent():
            held = "no time left in this run's delivery budget"
        if held is not None:
            report.outcomes.append(Outcome(sink.description, sink.id, outbox.event_id_of(key), "", "kept", held))
            kept += 1
            continue
        assert store is not None
        held = _retry(store, sink, key, budget, limits, report, warn)
        kept += held is not None
    if event is not None:
        if held is None and budget.spent():
            held = "no time left in this run's delivery budget"
        if held is not None:
            _keep(store, sink, event, 0, held, report, warn, f"it waits behind older events ({held})")
            kept += 1
        else:
            held = _send_new(store, sink, event, budget, limits, report, warn)
            kept += held is not None
    if kept:
        _warn(report, warn, f"{sink.description}: {kept} event{'s' if kept != 1 else ''} kept in the outbox "
                            f"({held or 'delivery failed'}); the next emit or `mlops events flush` retries")


def _send_new(store: ArtifactStore | None, sink: EventSink, event: CloudEvent, budget: Budget, limits: Limits,
              report: Report, warn: Warn | None) -> str | None:
    """Send ``event``; why it is kept in the outbox, if it is."""
    try:
        sink.send(event, budget)
    except DeliveryError as e:
        if not e.retryable or limits.attempts <= 1:
            where = "?"
            if store is not None:
                try:
                    where = outbox.bury_new(store, sink.id, sink.description, event, 1, str(e))
                except (MlopsError, OSError) as se:
                    where = f"not recorded: {se}"
            report.outcomes.append(Outcome(sink.description, sink.id, event.id, event.name, "dead", str(e), 1))
            _warn(report, warn, f"event {event.name} {event.id} is dead for {sink.description}: {e} "
                                f"(not retried; kept at {where})")
            return None
        return str(e) if _keep(store, sink, event, 1, str(e), report, warn, str(e)) else None
    report.outcomes.append(Outcome(sink.description, sink.id, event.id, event.name, "delivered", "", 1))
    return None


def _keep(store: ArtifactStore | None, sink: EventSink, event: CloudEvent, made: int, error: str | None,
          report: Report, warn: Warn | None, detail: str) -> int:
    """Queue ``event`` in ``sink``'s outbox; 1 if kept, 0 if the store refused (the event is lost, warned)."""
    try:
        if store is None:
            raise MlopsError("no store to keep it in")
        outbox.enqueue(store, sink.id, sink.description, event, made, error)
    except (MlopsError, OSError) as e:
        report.outcomes.append(Outcome(sink.description, sink.id, event.id, event.name, "lost", f"{detail}; {e}", made))
        _warn(report, warn, f"event {event.name} {event.id} was not delivered to {sink.description} ({detail}) "
                            f"and could not be kept for later: {e}")
        return 0
    report.outcomes.append(Outcome(sink.description, sink.id, event.id, event.name, "kept", detail, made))
    return 1


def _retry(store: ArtifactStore, sink: EventSink, key: str, budget: Budget, limits: Limits, report: Report,
           warn: Warn | None) -> str | None:
    """One more attempt at the outbox entry ``key``; why the rest of the outbox must wait (None: go on)."""
    entry = outbox.read_entry(store, key)
    if entry is None:
        return None  # delivered (or buried) by another run meanwhile
    if entry.event is None:
        where = outbox.bury(store, entry, sink.description, entry.attempts, entry.problem or "unreadable")
        report.outcomes.append(Outcome(sink.description, sink.id, outbox.event_id_of(key), "", "dead",
                                       entry.problem or "", entry.attempts))
        _warn(report, warn, f"{entry.problem}; moved to {where}")
        return None
    ev = entry.event
    state = outbox.attempts(store, entry)
    if state.busy:
        report.outcomes.append(Outcome(sink.description, sink.id, ev.id, ev.name, "kept",
                                       "another run is delivering it", state.made))
        return "another run is delivering them"
    if state.made >= limits.attempts:
        _dead(store, sink, entry, state.made, state.last_error or "no attempt succeeded", report, warn)
        return None
    n = state.made + 1
    if not outbox.claim(store, entry, n, time.time() + budget.remaining() + 60):
        report.outcomes.append(Outcome(sink.description, sink.id, ev.id, ev.name, "kept",
                                       "another run is delivering it", state.made))
        return "another run is delivering them"
    if outbox.read_entry(store, key) is None:  # delivered between our look and our claim
        outbox.clear_attempts(store, entry.sink, entry.stem)
        return None
    try:
        sink.send(ev, budget)
    except DeliveryError as e:
        if not e.retryable or n >= limits.attempts:
            _dead(store, sink, entry, n, str(e), report, warn)
            return None
        outbox.failed(store, entry, n, str(e))
        report.outcomes.append(Outcome(sink.description, sink.id, ev.id, ev.name, "kept", str(e), n))
        return str(e)
    outbox.remove(store, entry)
    report.outcomes.append(Outcome(sink.description, sink.id, ev.id, ev.name, "delivered", "", n))
    return None


def _dead(store: ArtifactStore, sink: EventSink, entry: outbox.Entry, made: int, error: str, report: Report,
          warn: Warn | None) -> None:
    assert entry.event is not None
    where = outbox.bury(store, entry, sink.description, made, error)
    report.outcomes.append(Outcome(sink.description, sink.id, entry.event.id, entry.event.name, "dead", error, made))
    _warn(report, warn, f"event {entry.event.name} {entry.event.id} is dead for {sink.description} after "
                        f"{made} attempt{'s' if made != 1 else ''}: {error} (kept at {where})")


def _warn(report: Report, warn: Warn | None, message: str) -> None:
    report.warnings.append(message)
    (warn or stderr_warn)(message)
