"""deploy: make an endpoint's target serve what its spec says.

Online endpoints: the desired state (``mlops.deploy.desired``) is compared with what the target serves (by digest);
equal is ``skipped``, otherwise the rollout (``mlops.deploy.rollout``) takes the target there. What changed is
recorded in the release audit trail (``deployed``/``undeployed`` per deployment slot) and announced as events.
Batch endpoints score their input instead (``mlops.batch.deploy``).
A model reference that does not resolve yet (a stage that holds no version) is ``blocked`` (planned again by the
next reconcile); one that cannot resolve (no such version) and a target that fails are ``failed``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.errors import DeployError, MlopsError
from mlops.plan.model import Action

if TYPE_CHECKING:
    from mlops.deploy.protocol import EndpointState, Target
    from mlops.spec.model import Endpoint


def deploy(action: Action, ctx: ApplyContext) -> ActionResult:
    name = action.asset.partition("/")[2]
    endpoint = ctx.specs.endpoints.get(name)
    if endpoint is None:
        return result(action, "skipped", f"endpoint {name} is no longer in the specs")
    if endpoint.type == "batch":  # scores its input with the version it names (mlops.batch)
        from mlops.batch.deploy import apply_batch_endpoint

        status, message, details = apply_batch_endpoint(endpoint, ctx.specs, ctx.store, ctx.root, ctx.echo,
                                                        by=ctx.actor)
        return result(action, status, message, **details)
    from mlops.deploy.desired import NotServableYet, desired_state, target_name
    from mlops.deploy.keys import check_exposure
    from mlops.deploy.targets import open_target, target_config

    tname = target_name(endpoint, ctx.specs)
    try:
        desired = desired_state(endpoint, ctx.specs, ctx.store, root=ctx.root, put=True)
        check_exposure(name, desired.settings)
    except NotServableYet as e:
        return result(action, "blocked", str(e), target=tname)
    except DeployError as e:
        return result(action, "failed", str(e), target=tname)
    try:
        target = open_target(tname, target_config(ctx.specs.project, tname), ctx.root)
        live = target.read(name)
    except MlopsError as e:
        return result(action, "failed", f"target {tname}: {e}", target=tname)
    if live is not None and live.digest() == desired.digest():
        return result(action, "skipped", f"already serving {describe(live)} at {live.url}", target=tname,
                      url=live.url, digest=desired.digest())
    return _roll_out(action, ctx, endpoint, target, desired, live)


def _roll_out(action: Action, ctx: ApplyContext, endpoint: Endpoint, target: Target, desired: EndpointState,
              live: EndpointState | None) -> ActionResult:
    from mlops.deploy.records import record_slots
    from mlops.deploy.rollout import roll_out

    _choose_interpreter(ctx, endpoint, target)
    _hand_images(ctx, target)
    data = {"endpoint": endpoint.name, "target": target.name, "serving": describe(desired)}
    why = f"{action.change}: {action.reason}"
    commit = ctx.lineage.get("git_commit")

    def on_state(_before: EndpointState | None, after: EndpointState | None) -> None:
        # every step (a canary's weights too) goes into the audit trail as it happens; a store that fails
        # here must not stop a rollout half-way (the final state is recorded below, or the action fails)
        try:
            record_slots(ctx.store, endpoint.name, after, by=ctx.actor, why=why, commit=commit)
        except MlopsError as e:
            ctx.echo(f"  warning: {endpoint.name}: this step is not in the audit trail: {e}")

    outcome = roll_out(target, desired, live, dict(endpoint.rollout), ctx.store, echo=ctx.echo,
                       on_state=on_state,
                       # the rollout announces itself (started, succeeded, rolled_back) with its steps
                       on_event=lambda kind, d: _emit(ctx, kind, endpoint.name, {**data, **d}))
    try:
        now = target.read(endpoint.name)
    except MlopsError:
        now = None
    if outcome.status == "succeeded" and now is not None:
        events = record_slots(ctx.store, endpoint.name, now, by=ctx.actor, why=why, commit=commit)
        for line in try_it(ctx, endpoint.name, now):
            ctx.echo(line)
        return result(action, "succeeded", f"serving {describe(now)} at {now.url} ({outcome.reason})",
                      target=target.name, url=now.url, digest=now.digest(), steps=outcome.steps,
                      recorded=len(events))
    if now is not None:  # what serves now (the old state after a rollback) is what the trail must say
        record_slots(ctx.store, endpoint.name, now, by=ctx.actor, why=why, commit=commit)
    if outcome.status != "rolled_back":  # a rolled-back rollout announced itself
        _emit(ctx, "deployment.failed", endpoint.name, {**data, "reason": outcome.reason})
    if outcome.status == "rolled_back":
        _record_rollback(ctx, endpoint.name, desired, live, outcome.reason, why)
    reason = outcome.reason or "the target did not reach the desired state"
    return result(action, "failed", reason, target=target.name, steps=outcome.steps, rollout=outcome.status)


def try_it(ctx: ApplyContext, endpoint: str, state: EndpointState) -> list[str]:
    """Where it answers, and a curl line that asks it (a request of zeros shaped like the model's inputs)."""
    from mlops.registry.models import get_model

    infer = f"{state.url}/v2/models/{endpoint}/infer"
    lines = [f"  {endpoint}: {infer}"]
    try:
        first = state.deployments[0]
        signature = get_model(ctx.store, first.model, first.version).signature
    except (MlopsError, IndexError):
        return lines
    if signature is None or not signature.inputs:
        return lines
    inputs: list[dict[str, Any]] = []
    for t in signature.inputs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in (t.shape or [1])]
        size = _size(shape)
        if size > 64:
            return lines  # too big to be a line worth pasting
        dtype = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64",
                 "tensor(int32)": "INT32"}.get(t.dtype, "FP32")
        inputs.append({"name": t.name, "shape": shape, "datatype": dtype, "data": [0] * size})
    import json

    body = json.dumps({"inputs": inputs}, separators=(",", ":"))
    auth = "" if not _needs_key(state) else \
        f'-H "Authorization: Bearer $(mlops endpoints keys show {endpoint})" '
    lines.append(f"  try it: curl -s {auth}-H 'Content-Type: application/json' -d '{body}' {infer}")
    return lines


def _size(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _needs_key(state: EndpointState) -> bool:
    from mlops.deploy.keys import auth_mode

    return auth_mode(state.settings) == "key"


def describe(state: EndpointState) -> str:
    """``blue: wine-classifier@3 (100%)``, each deployment with its traffic weight."""
    return ", ".join(f"{d.name}: {d.model}@{d.version} ({state.traffic.get(d.name, 0)}%)"
                     for d in sorted(state.deployments, key=lambda d: d.name))


def _hand_images(ctx: ApplyContext, target: Target) -> None:
    """A docker target runs the serving image of the endpoint's environment, which the environments plug-in builds
    (deploy does not import it): hand it the image maker and these specs."""
    if type(target).__name__ != "DockerTarget":  # not isinstance: that would import the Docker SDK for every target
        return
    from mlops.environments.serving_image import serving_image

    target.images = serving_image  # type: ignore[attr-defined]
    target.specs = ctx.specs  # type: ignore[attr-defined]


def _choose_interpreter(ctx: ApplyContext, endpoint: Endpoint, target: Target) -> None:
    """The local target runs a server with the deployments' environment when they share one that is built here
    and can import mlops's server; otherwise with the python that runs mlops."""
    from mlops.deploy.local import LocalTarget

    envs = {d.environment for d in endpoint.deployments}
    if not isinstance(target, LocalTarget) or len(envs) != 1:
        return
    env_name = envs.pop()
    env = ctx.specs.environments.get(env_name) if env_name else None
    if env is None:
        return
    from mlops.environments.local import find_local

    try:
        realised = find_local(env, ctx.root)
    except MlopsError:
        realised = None
    if realised is None or realised.python == sys.executable:
        return
    from mlops.deploy.interpreter import can_serve

    if can_serve(realised.python, realised.environ()):
        target.python = realised.python
        target.environ = realised.environ()
    else:
        ctx.echo(f"  {endpoint.name}: environment {env_name} cannot import mlops's server; serving with "
                 f"{sys.executable}")


def _record_rollback(ctx: ApplyContext, endpoint: str, desired: EndpointState, live: EndpointState | None,
                     reason: str, why: str) -> None:
    from mlops.release.records import append_event

    old = {d.name: d for d in live.deployments} if live is not None else {}
    for d in desired.deployments:
        prior = old.get(d.name)
        if prior is not None and (prior.model, prior.version) == (d.model, d.version):
            continue
        append_event(ctx.store, d.model, "rolled_back", version=d.version, stage=None, by=ctx.actor,
                     why=f"{why}; {reason}", commit=ctx.lineage.get("git_commit"),
                     evidence={"endpoint": endpoint, "deployment": d.name, "target": desired.target,
                               "reason": reason})


def _emit(ctx: ApplyContext, kind: str, endpoint: str, data: dict[str, Any]) -> None:
    from mlops.events import emit, endpoint_subject

    emit(ctx.specs.project, ctx.store, ctx.root, kind, endpoint_subject(endpoint), data, warn=ctx.echo)


def undeploy(action: Action, ctx: ApplyContext, name: str) -> ActionResult:
    """A removed endpoint: stopped wherever it runs (the local target, and each target the audit trail says it
    was deployed to), its slots recorded as ``undeployed``."""
    from mlops.deploy.local import check_endpoint_name
    from mlops.deploy.records import open_slots, record_slots
    from mlops.deploy.targets import open_target, target_config

    try:
        check_endpoint_name(name)
    except DeployError as e:
        return result(action, "skipped", str(e))
    slots = open_slots(ctx.store, name)
    names = sorted({"local", *(p.target for p in slots.values() if p.target)})
    stopped, problems = [], []
    for tname in names:
        config = target_config(ctx.specs.project, tname)
        if config is None and tname != "local":
            problems.append(f"target {tname} is no longer in mlops.yaml: stop endpoint {name} there by hand")
            continue
        try:
            target = open_target(tname, config, ctx.root)
            if name in target.endpoints() or target.read(name) is not None:
                target.remove(name)
                stopped.append(tname)
            elif tname == "local":
                target.remove(name)  # leftovers of a dead server: its directory
        except MlopsError as e:
            problems.append(f"target {tname}: {e}")
    if slots:
        record_slots(ctx.store, name, None, by=ctx.actor, why=f"{action.change}: {action.reason}",
                     commit=ctx.lineage.get("git_commit"))
    if problems:
        return result(action, "failed", "; ".join(problems), stopped=stopped)
    if not stopped:
        return result(action, "skipped", f"endpoint {name} was not running", undeployed=len(slots))
    return result(action, "succeeded", f"stopped endpoint {name} on {', '.join(stopped)}", stopped=stopped,
                  undeployed=len(slots))
