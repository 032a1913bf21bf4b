"""build_environment: realise an environment as a local virtualenv and, where needed, a Docker image (with the
serving image a docker target runs on top of it)."""

from __future__ import annotations

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.plan.model import Action


def build_environment(action: Action, ctx: ApplyContext) -> ActionResult:
    name = action.asset.split("/", 1)[1]
    env = ctx.specs.environments[name]
    done: dict[str, str] = {}
    built = False
    for target in action.details.get("targets", ["local"]):
        if target == "local":
            from mlops.environments.local import realise_local

            local = realise_local(env, ctx.root, echo=ctx.echo)
            built |= local.built
            done["local"] = local.location
            identity = local.spec_identity
        else:
            from mlops.environments.docker import build_image, connect
            from mlops.environments.serving_image import serving_image

            client = connect()
            image = build_image(env, ctx.root, client, echo=ctx.echo)
            # what a docker target runs: the environment's image plus the scoring server
            served = serving_image(client, env, ctx.root, echo=ctx.echo)
            built |= image.built or served.built
            done["docker"] = image.tag
            done["serving_image"] = served.tag
            identity = image.identity
    where = ", ".join(f"{k}: {v}" for k, v in done.items())
    if not built:
        return result(action, "skipped", f"up to date (identity {identity[:12]}; {where})", identity=identity, **done)
    return result(action, "succeeded", f"built identity {identity[:12]} ({where})", identity=identity, **done)
