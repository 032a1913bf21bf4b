"""evaluate_gates and promote. Gates and stage promotion arrive with the Release issue; until then these
actions say so plainly instead of pretending."""

from __future__ import annotations

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.plan.model import Action

PENDING = "not available in this version: stage gates and promotion arrive with the Release issue"


def evaluate_gates(action: Action, ctx: ApplyContext) -> ActionResult:
    return result(action, "skipped", PENDING, unavailable="release")


def promote(action: Action, ctx: ApplyContext) -> ActionResult:
    return result(action, "skipped", PENDING, unavailable="release")
