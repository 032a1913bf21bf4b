"""deploy. Serving targets arrive with the Serve issue; until then this action is *pending*: it stays
in the state's outstanding list and is planned again, instead of counting as done."""

from __future__ import annotations

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.plan.model import Action


def deploy(action: Action, ctx: ApplyContext) -> ActionResult:
    return result(action, "pending", "not available in this version: endpoints and rollout arrive with the "
                                     "Serve issue", unavailable="serve")
