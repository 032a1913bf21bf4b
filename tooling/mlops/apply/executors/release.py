"""evaluate_gates and promote. Gates and stage promotion arrive with the Release issue; until then these
actions are *pending*: they stay in the state's outstanding list and are planned again, instead of
counting as done."""

from __future__ import annotations

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.plan.model import Action

PENDING = "not available in this version: stage gates and promotion arrive with the Release issue"


def evaluate_gates(action: Action, ctx: ApplyContext) -> ActionResult:
    return result(action, "pending", PENDING, unavailable="release")


def promote(action: Action, ctx: ApplyContext) -> ActionResult:
    return result(action, "pending", PENDING, unavailable="release")
