"""register_model and register_dataset: immutable, content-identified versions with lineage."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from mlops import paths
from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.errors import PathError, RegistryError
from mlops.plan.model import Action

MAX_METRICS_BYTES = 1 << 20  # metrics are stored in every version record: keep them small


def _latest_successful_run(ctx: ApplyContext, pipeline: str) -> Any:
    from mlops.pipelines.record import list_runs, load_run

    for res in ctx.results.values():  # the run this apply just did, if any
        if res.action == f"run_pipeline:pipeline/{pipeline}" and res.details.get("run_id"):
            record = load_run(ctx.store, pipeline, res.details["run_id"])
            if record is not None and record.status == "succeeded":
                return record
    runs = [r for r in list_runs(ctx.store, pipeline) if r.status == "succeeded"]
    if not runs:
        raise RegistryError(f"pipeline {pipeline!r} has no successful run to register a model from; "
                            f"run `mlops run {pipeline}` or reconcile")
    return runs[-1]


def _fetch(ctx: ApplyContext, digest: str, rel: str, tmp: Path) -> Path:
    """A verified copy of the bytes the run recorded, from the store: never the workspace file, which may
    have been edited since the run (or be swapped for a link while we read it)."""
    workspace_path = ctx.root / rel
    dest = tmp / workspace_path.name
    ctx.store.get_file(digest, dest)
    return dest


def _metrics_file(ctx: ApplyContext, rel: str, spec_file: str) -> dict[str, Any]:
    """The metrics of a model kept in the repository: a JSON object, or RegistryError naming the file."""
    import json

    try:
        data = json.loads(paths.read_bytes_inside(ctx.root, rel, MAX_METRICS_BYTES))
    except (OSError, PathError) as e:
        raise RegistryError(f"{spec_file}: $.source.metrics: cannot read {rel}: {e}") from None
    except (ValueError, RecursionError) as e:
        raise RegistryError(f"{spec_file}: $.source.metrics: {rel} is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{spec_file}: $.source.metrics: {rel} must hold a JSON object, not {type(data).__name__}")
    return data


def _baseline(ctx: ApplyContext, model: Any, pipeline: Any, run: Any) -> dict[str, Any] | None:
    """The training data live inputs will be compared with (mlops.monitoring.baseline). Without a spec'd
    ``monitoring.reference`` a table that cannot be profiled only costs the baseline, never the version."""
    from mlops.errors import MlopsError
    from mlops.monitoring.baseline import training_baseline

    try:
        return training_baseline(ctx.store, model, pipeline, run)
    except MlopsError as e:
        if model.monitoring.reference is not None:
            raise
        ctx.echo(f"warning: {model.file}: no monitoring baseline for {model.name} (set monitoring.reference "
                 f"to choose the training data): {e}")
        return None


def register_model(action: Action, ctx: ApplyContext) -> ActionResult:
    from mlops.registry.lineage import git_lineage
    from mlops.registry.models import register_model as register

    name = action.asset.split("/", 1)[1]
    model = ctx.specs.models[name]
    src = model.source
    lineage: dict[str, Any] = dict(ctx.lineage or git_lineage(ctx.root))
    metrics: dict[str, Any] = {}
    confine: Path | None = None  # pipeline outputs come checked from the run or the store
    with tempfile.TemporaryDirectory(prefix="mlops-register-") as tmp:
        if src.pipeline and src.artifact:
            run = _latest_successful_run(ctx, src.pipeline)
            pipeline = ctx.specs.pipelines[src.pipeline]
            step_name, _, out = src.artifact.partition(".")
            mstep, _, _mout = src.metrics.partition(".") if src.metrics else ("", "", "")
            try:  # run records are untrusted: one that lacks what the spec names is an error, not a crash
                step = run.step(step_name)
                digest = step.outputs[out]
                metrics = dict(run.step(mstep).metrics or {}) if mstep else {}
            except (KeyError, TypeError, ValueError) as e:
                what = " and ".join(x for x in (src.artifact, src.metrics) if x)
                raise RegistryError(f"{model.file}: the record of run {run.run_id} of pipeline {src.pipeline} "
                                    f"does not hold {what} ({type(e).__name__}: {e}); run `mlops run "
                                    f"{src.pipeline}` again, or delete that record") from None
            files = [_fetch(ctx, digest, pipeline.step(step_name).outputs[out], Path(tmp))]
            lineage.update(pipeline=src.pipeline, pipeline_run=run.run_id, environment_identity=step.environment,
                           input_digests={f"{s.name}.{k}": v for s in run.steps for k, v in s.inputs.items()},
                           git_commit=run.git_commit or lineage.get("git_commit"),
                           training_data=_baseline(ctx, model, pipeline, run))
        else:
            files = [ctx.root / f for f in src.files]
            confine = ctx.root  # files the spec names: never through a link out of the repository
            if src.metrics:
                metrics = _metrics_file(ctx, src.metrics, model.file)
        if action.details.get("trigger"):  # why a version was built without a change in git (--retrain)
            # a plan file is untrusted: one printable line, as reconcile makes it from --reason
            why = " ".join("".join(ch if ch.isprintable() else " " for ch in str(action.details["trigger"])[:800]).split())
            lineage["trigger"] = f"retrain: {why[:200]}"
        version = register(ctx.store, name, files, flavor=model.flavor, metrics=metrics, tags=dict(model.tags),
                           lineage=lineage, description=model.description, root=confine)
    if not version.created:
        return result(action, "skipped", f"identical content is already {name}@{version.version}",
                      version=version.version)
    from mlops.events import emit, model_subject

    emit(ctx.specs.project, ctx.store, ctx.root, "model.registered", model_subject(name, version.version),
         {"model": name, "version": version.version, "commit": lineage.get("git_commit"),
          "run": lineage.get("pipeline_run"), "metrics": metrics}, warn=ctx.echo)
    return result(action, "succeeded", f"registered {name}@{version.version}"
                  + (f" ({', '.join(f'{k}={v:.4g}' for k, v in metrics.items() if isinstance(v, float))})"
                     if metrics else ""), version=version.version)


def register_dataset(action: Action, ctx: ApplyContext) -> ActionResult:
    from mlops.registry.datasets import register_dataset as register
    from mlops.registry.lineage import git_lineage

    name = action.asset.split("/", 1)[1]
    ds = ctx.specs.datasets[name]
    path = ctx.root / ds.path
    if not os.path.lexists(path):
        return result(action, "failed", f"dataset {name}: {ds.path} does not exist in the workspace")
    try:
        version = register(ctx.store, name, path, lineage=dict(ctx.lineage or git_lineage(ctx.root)),
                           expected_digest=ds.digest, root=ctx.root)
    except RegistryError as e:
        return result(action, "failed", f"{e} (pinned in {ds.file})" if ds.digest else str(e))
    if not version.created:
        return result(action, "skipped", f"identical content is already {name}@{version.version}",
                      version=version.version)
    return result(action, "succeeded", f"registered dataset {name}@{version.version}", version=version.version)
