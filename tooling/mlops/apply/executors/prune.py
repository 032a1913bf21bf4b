"""prune: what happens to an asset whose spec was removed.

Registry versions, dataset versions and run records are immutable history and are kept; a removed
environment's local virtualenv is deleted unless another environment of the same identity still uses it; a removed
endpoint is stopped on its target (``deploy.undeploy``).
"""

from __future__ import annotations

import shutil

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.plan.model import Action

KEPT = {
    "model": "registered versions are immutable history and are kept",
    "dataset": "registered versions are immutable history and are kept",
    "pipeline": "run records and cached step outputs are kept",
}


def prune(action: Action, ctx: ApplyContext) -> ActionResult:
    kind, _, name = action.asset.partition("/")
    if kind == "endpoint":
        from mlops.apply.executors.deploy import undeploy

        return undeploy(action, ctx, name)
    if kind != "environment":
        return result(action, "skipped", KEPT.get(kind, "nothing to remove"))
    from mlops.environments.identity import environment_identity, repo_reader
    from mlops.environments.local import default_cache_root, list_local

    read = repo_reader(ctx.root)
    in_use = {environment_identity(e, read) for e in ctx.specs.environments.values()}
    removed = []
    for env in list_local(default_cache_root(ctx.root)):
        if env.name == name and env.spec_identity not in in_use:
            shutil.rmtree(env.location, ignore_errors=True)
            removed.append(env.location)
    if not removed:
        return result(action, "skipped", f"no local build of environment {name} to remove")
    return result(action, "succeeded", f"removed {len(removed)} local build(s) of environment {name}", removed=removed)
