"""The implicit ``order`` gate, first in every stage: a version enters a stage only from the stage before
it. It must hold that stage, or have held it and been replaced by a later promotion (not rolled back
out of it). The first stage is entered from registration. Versions are immutable, so what enters is
the very artifact (same digests) that held the stage before: nothing is rebuilt."""

from __future__ import annotations

from mlops.gates.protocol import GateContext, GateResult, failed, passed
from mlops.release.records import held, stage_history, stage_holder


def order_gate(ctx: GateContext) -> GateResult:
    v = ctx.version.version
    prev = ctx.previous_stage
    retired = [e for e in ctx.events if e.kind == "deprecated" and e.version == v]
    if retired:
        return failed("order", f"v{v} is deprecated ({retired[-1].why}): it enters no stage",
                      previous_stage=prev, version=v, deprecated_by=retired[-1].by)
    if prev is None:
        return passed("order", f"{ctx.stage} is the first stage: entered from registration",
                      previous_stage=None, version=v)
    moves = [e for e in stage_history(ctx.events, prev) if e.version == v]
    if held(ctx.events, prev, v):
        holds = stage_holder(ctx.events, prev) == v
        return passed("order", f"v{v} {'holds' if holds else 'held'} {prev}, the stage before {ctx.stage}",
                      previous_stage=prev, version=v, holds_previous=holds, entered_previous_at=moves[-1].at)
    if moves:
        return failed("order", f"v{v} was rolled back out of {prev}: it may not enter {ctx.stage}",
                      previous_stage=prev, version=v, holds_previous=False)
    return failed("order", f"v{v} never held {prev}: a version enters {ctx.stage} only from {prev}",
                  previous_stage=prev, version=v, holds_previous=False)
