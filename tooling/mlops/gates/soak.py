"""``soak: {hours: N}``: the version held the previous stage for N hours without a rollback.

The time counted is its last uninterrupted tenure of the previous stage: from when it entered it until
now while it still holds it, or until a later promotion replaced it. Rolled back out of it, or never in
it, the gate fails. Still holding it, but not yet for long enough, is ``awaiting`` (time will pass it).
For the first stage, which nothing precedes, the hours count from the version's registration.
"""

from __future__ import annotations

from datetime import datetime

from mlops.gates.protocol import GateContext, GateResult, awaiting, error, failed, passed
from mlops.release.records import held, parse_time, stage_history


def soak_gate(ctx: GateContext) -> GateResult:
    hours = ctx.options.get("hours")
    if not isinstance(hours, (int, float)) or isinstance(hours, bool) or hours <= 0:
        return error("soak", f"malformed soak gate {ctx.gate!r}: hours must be a positive number")
    v, prev = ctx.version.version, ctx.previous_stage
    if prev is None:
        return _since_registration(ctx, hours)
    if not held(ctx.events, prev, v):
        return failed("soak", f"v{v} does not hold {prev} (never entered it, or was rolled back out of it)",
                      hours_required=hours, previous_stage=prev, hours_held=0.0)
    start, end = tenure(ctx, prev)
    soaked = (end or ctx.now) - start
    held_hours = soaked.total_seconds() / 3600.0
    evidence = {"hours_required": hours, "hours_held": held_hours, "previous_stage": prev,
                "entered_at": _iso(start), "left_at": None if end is None else _iso(end), "now": _iso(ctx.now)}
    if held_hours >= hours:
        return passed("soak", f"held {prev} for {held_hours:.2f} h >= {hours:g} h", **evidence)
    if end is None:
        return awaiting("soak", f"held {prev} for {held_hours:.2f} h of {hours:g} h: "
                                f"{hours - held_hours:.2f} h to go", **evidence)
    return failed("soak", f"held {prev} for only {held_hours:.2f} h < {hours:g} h before it was replaced",
                  **evidence)


def tenure(ctx: GateContext, stage: str) -> tuple[datetime, datetime | None]:
    """When the version's last uninterrupted tenure of ``stage`` began, and when it ended (None: it holds it)."""
    v = ctx.version.version
    moves = stage_history(ctx.events, stage)
    last = max(i for i, e in enumerate(moves) if e.version == v)
    first = last
    while first > 0 and moves[first - 1].version == v:
        first -= 1
    end = moves[last + 1].when if last + 1 < len(moves) else None
    return moves[first].when, end


def _since_registration(ctx: GateContext, hours: float) -> GateResult:
    at = ctx.version.lineage.registered_at
    if not at:
        return error("soak", f"v{ctx.version.version} has no registration time to count {hours:g} h from")
    start = parse_time(at)
    held_hours = (ctx.now - start).total_seconds() / 3600.0
    evidence = {"hours_required": hours, "hours_held": held_hours, "previous_stage": None,
                "registered_at": at, "now": _iso(ctx.now)}
    if held_hours >= hours:
        return passed("soak", f"registered {held_hours:.2f} h ago >= {hours:g} h", **evidence)
    return awaiting("soak", f"registered {held_hours:.2f} h ago, {hours:g} h needed: {hours - held_hours:.2f} h to go",
                    **evidence)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
