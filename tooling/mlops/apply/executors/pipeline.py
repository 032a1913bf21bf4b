"""run_pipeline: run a pipeline; steps whose cache key is already in the store are restored, not rerun."""

from __future__ import annotations

from typing import Any

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.plan.model import Action


def realise_environments(ctx: ApplyContext, names: set[str]) -> dict[str, Any]:
    from mlops.environments.local import realise_local

    return {n: realise_local(ctx.specs.environments[n], ctx.root, echo=ctx.echo) for n in sorted(names)}


def run_pipeline(action: Action, ctx: ApplyContext) -> ActionResult:
    from mlops.pipelines.runner import run_pipeline as run

    name = action.asset.split("/", 1)[1]
    pipeline = ctx.specs.pipelines[name]
    envs = realise_environments(ctx, {e for s in pipeline.steps if (e := pipeline.step_environment(s))})
    datasets = {n: d.path for n, d in ctx.specs.datasets.items()}
    record = run(pipeline, ctx.root, ctx.store, envs, jobs=ctx.jobs, datasets=datasets, lineage=ctx.lineage,
                 progress=False, force=action.details.get("force") is True)
    ran = [s.name for s in record.steps if s.status == "ran"]
    cached = [s.name for s in record.steps if s.status == "cached"]
    details = {"run_id": record.run_id, "ran": ran, "cached": cached}
    from mlops.events import emit, pipeline_subject

    if record.status != "succeeded":
        failed = next((s for s in record.steps if s.status == "failed"), None)
        why = f"step {failed.name} failed: {failed.error}" if failed is not None else "failed"
        emit(ctx.specs.project, ctx.store, ctx.root, "pipeline.failed", pipeline_subject(name),
             {"pipeline": name, "run": record.run_id, "commit": record.git_commit,
              "failed_steps": [s.name for s in record.steps if s.status == "failed"], "error": why}, warn=ctx.echo)
        return result(action, "failed", f"run {record.run_id}: {why}", **details)
    if ran:
        emit(ctx.specs.project, ctx.store, ctx.root, "pipeline.completed", pipeline_subject(name),
             {"pipeline": name, "run": record.run_id, "commit": record.git_commit, "ran": ran, "cached": cached},
             warn=ctx.echo)
    if not ran:
        return result(action, "skipped", f"nothing to run: all {len(cached)} steps cached (run {record.run_id})",
                      **details)
    return result(action, "succeeded", f"run {record.run_id}: ran {', '.join(ran)}"
                  + (f"; cached {', '.join(cached)}" if cached else ""), **details)
