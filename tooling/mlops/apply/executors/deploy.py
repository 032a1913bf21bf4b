"""deploy. Serving targets arrive with the Serve issue; until then this action is *pending*: it stays
in the state's outstanding list and is planned again, instead of counting as done. A batch endpoint's
deploy scores its input (``mlops.batch.deploy``)."""

from __future__ import annotations

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.plan.model import Action


def deploy(action: Action, ctx: ApplyContext) -> ActionResult:
    endpoint = ctx.specs.endpoints.get(action.asset.partition("/")[2])
    if endpoint is not None and endpoint.type == "batch":
        from mlops.batch.deploy import apply_batch_endpoint

        status, message, details = apply_batch_endpoint(endpoint, ctx.specs, ctx.store, ctx.root, ctx.echo,
                                                        by=ctx.actor)
        return result(action, status, message, **details)
    return result(action, "pending", "not available in this version: endpoints and rollout arrive with the "
                                     "Serve issue", unavailable="serve")
