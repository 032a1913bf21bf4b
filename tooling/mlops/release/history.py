"""A model's history: every registration (from the registry) and every release event (gate
evaluations, approvals, promotions, rollbacks, deployments), merged in time order.

    entries = model_history(store, "wine-classifier", problems)   # oldest first
    for e in entries: print(e.line())

Damaged records hide nothing else: each is described in ``problems`` and the rest is shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlops.errors import RegistryError
from mlops.registry.models import list_versions
from mlops.registry.records import ModelVersion
from mlops.registry.versions import check_name
from mlops.release import records
from mlops.release.escape import terminal
from mlops.release.records import ReleaseEvent, parse_time
from mlops.store.protocol import ArtifactStore

_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class HistoryEntry:
    """One fact in a model's history. ``source`` is ``registry`` (a version record) or ``events``
    (a release event, with its ``seq``); ``summary`` says it in one line of plain text."""

    at: str | None
    kind: str
    model: str
    version: int | None
    stage: str | None
    by: str | None
    why: str | None
    commit: str | None
    summary: str
    source: str
    seq: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The entry as one terminal line (every value from a record made safe to print)."""
        return f"{terminal(self.at or '?', 40):<20}  {self.kind:<15}  {terminal(self.summary, 400)}"


def read_events(store: ArtifactStore, model: str, problems: list[str]) -> list[ReleaseEvent]:
    """The release events of ``model``, oldest first; a damaged one is described in ``problems`` and
    skipped (``records.model_events`` refuses the whole trail instead, as deciding on it must)."""
    return records.model_events(store, model, problems)


def model_history(store: ArtifactStore, model: str, problems: list[str]) -> list[HistoryEntry]:
    """Every registration and release event of ``model``, oldest first (ties: registrations first,
    then events by sequence number). RegistryError when neither the registry nor the audit trail
    knows the model."""
    check_name(model, "model")
    try:
        versions = list_versions(store, model, problems)
    except RegistryError:
        versions = []
    events = read_events(store, model, problems)
    if not versions and not events and not problems:
        raise RegistryError(f"no model named {model!r} in {store.url} (no versions, no release events)")
    registered = {mv.version for mv in versions}
    entries = [_registration(mv) for mv in versions]
    # A `registered` event repeats what the registry says; it is shown only when the registry's record is gone.
    entries += [_event(e) for e in events if not (e.kind == "registered" and e.version in registered)]
    return sorted(entries, key=lambda e: (_when(e, problems), e.source != "registry", e.seq or 0, e.version or 0))


def _when(e: HistoryEntry, problems: list[str]) -> datetime:
    if e.at is None:
        return _EPOCH
    try:
        return parse_time(e.at)
    except ValueError:
        problems.append(f"{e.model}@{e.version}: registration time {e.at!r} is not an ISO 8601 time; "
                        "it is listed first")
        return _EPOCH


def _registration(mv: ModelVersion) -> HistoryEntry:
    lin = mv.lineage
    commit = f"commit {lin.git_commit[:12]}" if lin.git_commit else "no git commit"
    if lin.git_dirty:
        commit += " (dirty)"
    message = (lin.git_message or "").strip().splitlines()
    why = f": {message[0]}" if message else ""
    author = f", author {lin.git_author}" if lin.git_author else ""
    summary = f"{mv.ref} by {lin.registered_by or '?'}, {commit}{author}{why}"
    return HistoryEntry(lin.registered_at, "registered", mv.name, mv.version, None, lin.registered_by,
                        lin.git_message, lin.git_commit, summary, "registry",
                        evidence={"metrics": dict(mv.metrics), "fingerprint": mv.fingerprint})


def _event(e: ReleaseEvent) -> HistoryEntry:
    return HistoryEntry(e.at, e.kind, e.model, e.version, e.stage, e.by, e.why, e.commit, describe(e), "events",
                        e.seq, dict(e.evidence))


def describe(e: ReleaseEvent) -> str:
    """One line of plain text for a release event (its values unescaped: print it through ``terminal``)."""
    ev = e.evidence
    ref = f"{e.model}@{e.version}" if e.version is not None else e.model
    why = f": {e.why}" if e.why else ""
    commit = f", commit {e.commit[:12]}" if e.commit else ""
    if e.kind == "gates_evaluated":
        results = ev.get("gates")
        results = results if isinstance(results, list) else []
        verdict = "passed" if ev.get("passed") is True else "awaiting" if ev.get("status") == "awaiting" else "FAILED"
        gates = "; ".join(_gate(r) for r in results if isinstance(r, dict))
        return f"{ref} -> {e.stage}: {verdict}" + (f" ({gates})" if gates else "") + f", by {e.by}{commit}"
    if e.kind == "approved":
        where = _approval_source(ev)
        return f"{ref} for {e.stage} by {e.by}{where}{why}"
    if e.kind == "promoted":
        was = ev.get("from_version")
        return f"{ref} -> {e.stage} by {e.by}" + (f" (was version {was})" if was is not None else "") + commit + why
    if e.kind == "rolled_back" and e.stage is None and ev.get("endpoint"):  # a rollout that did not complete
        where = f"endpoint {ev['endpoint']}" + (f"/{ev['deployment']}" if ev.get("deployment") else "")
        return f"{ref} rolled back on {where} by {e.by}{commit}{why}"
    if e.kind == "rolled_back":
        return f"{e.model} {e.stage}: version {ev.get('from_version', '?')} -> {e.version} by {e.by}{commit}{why}"
    if e.kind in ("deployed", "undeployed"):
        where = f"endpoint {ev.get('endpoint', '?')}" + (f"/{ev['deployment']}" if ev.get("deployment") else "")
        target = f", target {ev['target']}" if ev.get("target") else ""
        traffic = f", traffic {ev['traffic']}%" if ev.get("traffic") is not None and e.kind == "deployed" else ""
        verb = "->" if e.kind == "deployed" else "removed from"
        return f"{ref} {verb} {where}{target}{traffic} by {e.by}{commit}{why}"
    return f"{ref}" + (f" ({e.stage})" if e.stage else "") + f" by {e.by}{commit}{why}"


def _gate(result: dict[str, Any]) -> str:
    status = result.get("status") or ("passed" if result.get("passed") is True else "failed")
    summary = result.get("summary")
    return f"{result.get('kind', '?')} {status}" + (f": {summary}" if summary else "")


def _approval_source(ev: dict[str, Any]) -> str:
    source = ev.get("source")
    pr = ev.get("pull_request")
    if not source:
        return ""
    return f" ({source}" + (f", pull request #{pr}" if pr is not None else "") + ")"
