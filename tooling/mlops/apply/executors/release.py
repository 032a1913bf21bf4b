"""evaluate_gates and promote: a version enters a stage only through that stage's gates.

``evaluate_gates`` scores the version against every gate of the stage and records the result (with
its evidence) in the release audit trail; gates that fail make the action **blocked** with the
numbers, gates that wait (approval, soak time) make it blocked "awaiting ...". Either way nothing
moves: ``promote`` depends on it and only then records the version as the stage's holder. A
blocked pair stays outstanding, so every reconcile evaluates it again (an approval may have come).
"""

from __future__ import annotations

from typing import Any

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.errors import RegistryError
from mlops.plan.model import Action


def evaluate_gates(action: Action, ctx: ApplyContext) -> ActionResult:
    from mlops.gates import evaluate_gates as evaluate
    from mlops.release.records import append_event, model_events, stage_holder

    model, stage = action.asset.partition("/")[2], str(action.details["stage"])
    version = _version(action, ctx, model)
    events = model_events(ctx.store, model)
    if stage_holder(events, stage) == version:
        return result(action, "skipped", f"{model}@{version} already holds {stage}", version=version)
    _collect_review_approvals(ctx, model, version, stage)
    report = evaluate(ctx.store, ctx.specs.project, ctx.specs.models[model], version, stage, ctx.root,
                      datasets=ctx.specs.datasets)
    evidence = report.to_dict()
    recorded = append_event(ctx.store, model, "gates_evaluated", version=version, stage=stage, by=ctx.actor,
                            why=_why(ctx), commit=ctx.lineage.get("git_commit"), evidence=evidence)
    _emit(ctx, "gate.failed" if report.status == "failed" else
          "approval.requested" if report.status == "awaiting" else "", model, version, stage, evidence)
    lines = "\n".join(f"{'✓' if r.passed else '·' if r.status == 'awaiting' else '✗'} {r.kind}: {r.summary}"
                      for r in report.results)
    details = {"version": version, "gates": evidence, "event": recorded.seq}
    if report.status == "passed":
        return result(action, "succeeded", f"{model}@{version} passed the {len(report.results)} gate(s) of {stage}\n"
                                           f"{lines}", **details)
    if report.status == "awaiting":
        waiting = "; ".join(r.summary for r in report.results if r.status == "awaiting")
        return result(action, "blocked", f"{waiting} ({model}@{version} → {stage})\n{lines}",
                      **details)
    failed = "; ".join(f"{r.kind}: {r.summary}" for r in report.results if not r.passed and r.status != "awaiting")
    return result(action, "blocked", f"gates failed for {model}@{version} → {stage}: {failed}\n{lines}", **details)


def promote(action: Action, ctx: ApplyContext) -> ActionResult:
    from mlops.release.records import append_event, model_events, stage_holder

    model, stage = action.asset.partition("/")[2], str(action.details["stage"])
    # Only this stage's own gate evaluation, for this very version, lets a version in: a plan file is
    # untrusted, and a promote that depends on some other action (a registration that was skipped, the
    # gates of another stage) must not take that action's version into the stage.
    gates_id = f"evaluate_gates:{action.asset}@{stage}"
    gates = ctx.results.get(gates_id) if gates_id in action.depends_on else None
    if gates is None or gates.status not in ("succeeded", "skipped") or gates.details.get("because_of") or \
            not isinstance(gates.details.get("version"), int):
        return result(action, "blocked", f"the gates of {stage} did not pass")
    version = int(gates.details["version"])
    pinned = action.details.get("version")
    if pinned is not None and pinned != version:
        return result(action, "blocked", f"the gates of {stage} were evaluated for {model}@{version}, not for the "
                                         f"pinned {model}@{pinned}")
    holder = stage_holder(model_events(ctx.store, model), stage)
    if holder == version:
        return result(action, "skipped", f"{model}@{version} already holds {stage}", version=version)
    append_event(ctx.store, model, "promoted", version=version, stage=stage, by=ctx.actor, why=_why(ctx),
                 commit=ctx.lineage.get("git_commit"),
                 evidence={"from_version": holder, "gates_event": gates.details.get("event")})
    _emit(ctx, "model.promoted", model, version, stage, {"from_version": holder})
    was = f" (was {model}@{holder})" if holder is not None else ""
    return result(action, "succeeded", f"{model}@{version} → {stage}{was}", version=version, from_version=holder)


def propose_promotion(action: Action, ctx: ApplyContext) -> ActionResult:
    """Open or update the pull request that promotes the new version to the next stage (under GitHub, with a
    token); elsewhere say how to ask for it. Never outstanding: proposing is a courtesy, not desired state."""
    import os

    model, stage = action.asset.partition("/")[2], str(action.details["stage"])
    version = _version(action, ctx, model)
    if not (os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_REPOSITORY")):
        return result(action, "skipped", f"no GitHub token here: propose it with `mlops promote {model}@{version} "
                                         f"--to {stage}` (add --pr under GitHub)", version=version)
    from mlops.errors import GatesBlockedError
    from mlops.stages.operations import request_promotion

    try:
        done = request_promotion(ctx.store, ctx.specs.project, ctx.specs.models[model], version, stage, ctx.root,
                                 by=ctx.actor, why=_why(ctx), commit=ctx.lineage.get("git_commit"), pull_request=True)
    except GatesBlockedError as e:
        return result(action, "skipped", f"not proposed: {e}", version=version)
    return result(action, "succeeded", f"promotion pull request for {model}@{version} → {stage}: {done.pull_request}",
                  version=version, pull_request=done.pull_request)


def _version(action: Action, ctx: ApplyContext, model: str) -> int:
    """The pinned version, or for an automatic stage the version this apply registered (else the newest)."""
    pinned = action.details.get("version")
    if pinned is not None:
        return int(pinned)
    registered = ctx.results.get(f"register_model:model/{model}")
    if registered is not None and registered.details.get("version"):
        return int(registered.details["version"])
    from mlops.registry.models import get_model

    try:
        return get_model(ctx.store, model).version
    except RegistryError as e:
        raise RegistryError(f"no version of {model} to promote: {e}") from None


def _why(ctx: ApplyContext) -> str:
    return str(ctx.lineage.get("git_message") or "reconcile")


def _collect_review_approvals(ctx: ApplyContext, model: str, version: int, stage: str) -> None:
    """Under GitHub Actions, the approving reviews of the merged pull request that pinned this version are
    approvals (recorded once, with who approved)."""
    from mlops.stages.reviews import record_review_approvals

    record_review_approvals(ctx.store, model, version, stage, ctx.lineage.get("git_commit"), ctx.root,
                            ctx.specs.models[model].file)


def _emit(ctx: ApplyContext, kind: str, model: str, version: int, stage: str, data: dict[str, Any]) -> None:
    if not kind:
        return
    from mlops.events import emit, model_subject

    emit(ctx.specs.project, ctx.store, ctx.root, kind, model_subject(model, version),
         {"model": model, "version": version, "stage": stage, **data}, warn=ctx.echo)
