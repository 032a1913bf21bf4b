"""ChangeSet + live state -> Plan: the ordered actions, each with its reason."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from mlops.graph.compare import Comparison, Side
from mlops.plan.live import LiveState
from mlops.plan.model import Action, Plan, Revision
from mlops.spec.model import Stage

ARROW = " → "


def make_plan(cmp: Comparison, live: LiveState, head_commit: str | None, now: datetime | None = None, *,
              tree: str | None = None, dirty: tuple[str, ...] = (), allow_dirty: bool = False) -> Plan:
    """The actions that take live state from ``cmp.base`` to ``cmp.head``, in dependency order.

    ``tree`` is the git tree id of what the head holds (the plan pins it) and ``dirty`` lists a
    working tree's uncommitted paths; actions the last apply left outstanding are planned again.
    """
    planned = {c.asset: (c.change, "; ".join(c.reasons)) for c in cmp.changes.changes}
    _add_live_gaps(cmp.head, live, planned)
    _add_retraining(cmp.head, live.retrain, planned)
    actions: list[Action] = []
    index: dict[str, str] = {}  # asset id -> id of the last action acting on it (for dependencies)
    specs = cmp.head.specs
    steps_by_pipeline: dict[str, list[str]] = {}
    for aid in cmp.head.graph.order():
        if aid not in planned:
            continue
        change, reason = planned[aid]
        kind, _, name = aid.partition("/")
        deps = tuple(sorted({index[d] for d in cmp.head.graph.assets[aid].deps if d in index}))
        if kind == "step":
            pipeline, _, step = name.partition("/")
            steps_by_pipeline.setdefault(pipeline, []).append(step)
            index[aid] = ""  # steps are run by their pipeline's action
            continue
        if kind == "environment":
            targets = ["local"] + (["docker"] if _used_by_docker_endpoint(cmp.head, name) else [])
            actions.append(_act("build_environment", aid, change, reason, deps, targets=targets))
        elif kind == "dataset":
            actions.append(_act("register_dataset", aid, change, reason, deps, path=specs.datasets[name].path))
        elif kind == "pipeline":
            deps = tuple(sorted({index[d] for s in cmp.head.graph.assets[aid].deps
                                 for d in cmp.head.graph.assets[s].deps if index.get(d)}))
            steps = steps_by_pipeline.get(name) or [s.name for s in specs.pipelines[name].steps]
            force = {"force": True} if name in live.retrain else {}  # retraining: every step runs again
            actions.append(_act("run_pipeline", aid, change, reason, deps, steps=steps, **force))
        elif kind == "model":
            trained_by = specs.models[name].source.pipeline
            trigger = {"trigger": live.retrain[trained_by]} if trained_by and trained_by in live.retrain else {}
            actions.append(_act("register_model", aid, change, reason, deps, **trigger))
            for i, stage in enumerate(specs.project.stages):
                if stage.auto:  # every new version whose gates pass enters it, in stage order
                    actions.extend(_stage_actions(aid, change, f"new version of {name} enters stage {stage.name!r}",
                                                  (actions[-1].id,), stage, None))
                    continue
                if i and specs.project.stages[i - 1].auto:  # the first stage a person decides: propose it
                    actions.append(_act("propose_promotion", aid, change, f"propose the new version of {name} for "
                                        f"{stage.name!r} (a pull request under GitHub Actions)", (actions[-1].id,),
                                        stage=stage.name, version=None))
                break
        elif kind == "stage":
            model, _, stage_name = name.partition("/")
            stage = next(s for s in specs.project.stages if s.name == stage_name)
            version = specs.models[model].stages[stage_name]
            if live.refreshed and live.stage_holders.get(model, {}).get(stage_name) == version:
                index[aid] = ""  # the stage holds it already (a rollback moved it): only what serves it follows
                continue
            after = tuple(d for d in (index.get(f"model/{model}"),) if d)
            actions.extend(_stage_actions(f"model/{model}", change, f"{reason} (pin {model}@{version})", after, stage,
                                          version))
        elif kind == "endpoint":
            e = specs.endpoints[name]
            actions.append(_act("deploy", aid, change, reason, deps, target=e.target or specs.project.default_target,
                                deployments={d.name: str(d.model) for d in e.deployments}, traffic=e.traffic))
        index[aid] = next(a.id for a in reversed(actions) if a.kind != "propose_promotion")  # what serves it
    actions.extend(_outstanding(cmp.head, live, actions))
    for c in cmp.changes.changes:
        if c.change == "removed" and not c.asset.startswith("step/"):
            actions.append(_act("prune", c.asset, "removed", "; ".join(c.reasons), ()))
    notes = tuple(f"base specs are invalid, so everything is planned as new: {d}" for d in cmp.base_invalid[:5])
    if dirty and not allow_dirty:
        notes += (f"the working tree has uncommitted changes ({_listed(dirty)}): apply refuses this plan; "
                  "commit them, or plan with --allow-dirty to apply them as they are",)
    return Plan(
        project=specs.project.name,
        base=Revision(cmp.base.rev, None if cmp.base.rev == "empty" else cmp.base.rev, cmp.base.fingerprint()),
        head=Revision(cmp.head.rev, head_commit, cmp.head.fingerprint(), tree, tuple(dirty)),
        state_serial=live.serial,
        created_at=(now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        actions=tuple(actions),
        changes=tuple(c.to_dict() for c in cmp.changes.changes),
        changed_files=tuple(cmp.changes.changed_files),
        notes=notes,
        allow_dirty=allow_dirty,
        refreshed=live.refreshed,
    )


def _stage_actions(asset: str, change: str, reason: str, deps: tuple[str, ...], stage: Stage,
                   version: int | None) -> list[Action]:
    """Evaluate the gates of ``stage`` for ``version`` (None: the newest registered version), then promote."""
    name = asset.partition("/")[2]
    target = f"{name}@{version}" if version is not None else f"the new version of {name}"
    gates = _act("evaluate_gates", asset, change, reason, deps, stage=stage.name, version=version,
                 gates=len(stage.gates))
    return [gates, _act("promote", asset, change, f"{target} → {stage.name}", (gates.id,), stage=stage.name,
                        version=version)]


def _listed(paths: tuple[str, ...], limit: int = 5) -> str:
    more = len(paths) - limit
    return ", ".join(paths[:limit]) + (f" and {more} more" if more > 0 else "")


def _outstanding(head: Side, live: LiveState, actions: list[Action]) -> list[Action]:
    """Actions the last apply could not do (pending, blocked), planned again while their asset exists;
    each depends on the last action planned for its own asset and for the assets it depends on."""
    out: list[Action] = []
    planned = {a.id for a in actions}
    last = {a.asset: a.id for a in actions}
    for o in live.outstanding:
        kind, asset = str(o.get("kind")), str(o.get("asset"))
        if o.get("id") in planned or asset not in head.graph.assets or _REPLANNABLE.get(kind) != asset.partition("/")[0]:
            continue  # done, gone, or not an action of ours (the state record is untrusted)
        if kind != "deploy" and str(o.get("stage")) not in {s.name for s in head.specs.project.stages}:
            continue  # a stage mlops.yaml no longer has
        why = f"outstanding from the last apply ({o.get('status', 'pending')}: {o.get('message', '')})"
        details: dict[str, Any] = {"stage": str(o["stage"])} if o.get("stage") else {}
        if kind in ("evaluate_gates", "promote"):
            version = _stage_version(head, asset.partition("/")[2], details.get("stage"))
            if version is False:
                continue  # the stage is neither pinned nor automatic any more: nothing to do
            details["version"] = version
        if kind == "deploy":
            e = head.specs.endpoints[asset.partition("/")[2]]
            details.update(target=e.target or head.specs.project.default_target,
                           deployments={d.name: str(d.model) for d in e.deployments}, traffic=e.traffic)
        deps = tuple(sorted({last[d] for d in (asset, *head.graph.assets[asset].deps) if d in last}))
        if kind == "promote":  # a stage is entered only through its own gates, evaluated just before
            gates = f"evaluate_gates:{asset}@{details['stage']}"
            if gates not in planned:
                continue
            deps = (gates, *(d for d in deps if d != gates))
        action = _act(kind, asset, "outstanding", why, deps, **details)
        planned.add(action.id)
        last[asset] = action.id
        out.append(action)
    return out


_REPLANNABLE = {"evaluate_gates": "model", "promote": "model", "deploy": "endpoint"}  # kind -> asset kind


def _stage_version(head: Side, model: str, stage: str | None) -> int | None | bool:
    """The version a stage should hold by the head's specs: its pin, None for an automatic stage (the
    newest version), False when neither."""
    spec = head.specs.models.get(model)
    found = next((s for s in head.specs.project.stages if s.name == stage), None)
    if spec is None or found is None:
        return False
    if found.name in spec.stages:
        return spec.stages[found.name]
    return None if found.auto else False


def _act(kind: str, asset: str, change: str, reason: str, deps: tuple[str, ...], **details: Any) -> Action:
    suffix = f"@{details['stage']}" if "stage" in details else ""
    return Action(f"{kind}:{asset}{suffix}", kind, asset, change, reason, details, tuple(d for d in deps if d))


def _used_by_docker_endpoint(head: Side, env: str) -> bool:
    types = {t.name: t.type for t in head.specs.project.targets}
    for e in head.specs.endpoints.values():
        target = e.target or head.specs.project.default_target
        if types.get(target) == "docker" and any(d.environment == env for d in e.deployments):
            return True
    return False


def _add_retraining(head: Side, retrain: Mapping[str, str], planned: dict[str, tuple[str, str]]) -> None:
    """Retraining (``reconcile --retrain NAME``, NAME a pipeline or a model; ``retrain`` maps pipelines to
    why): the pipeline runs again ignoring its step cache (data it reads from outside the repository may
    have changed), the datasets it reads are registered again (a new version when their content changed),
    and what it builds follows as if it had changed: a new version is registered (only when its bytes
    differ) and enters the first stage through its gates."""
    graph = head.graph
    forced: dict[str, str] = {}  # asset -> the pipeline whose retraining reaches it
    for name, why in sorted(retrain.items()):
        aid = f"pipeline/{name}"
        if aid not in graph.assets:
            from mlops.errors import PlanError

            known = ", ".join(sorted(head.specs.pipelines)) or "none"
            raise PlanError(f"cannot retrain {name[:100]!r}: no such pipeline (pipelines: {known})")
        cause = f"retraining requested ({why})"
        change, reason = planned.get(aid, ("changed", ""))
        planned[aid] = (change, f"{reason}; {cause}" if reason else cause)
        forced[aid] = name
        for step in graph.assets[aid].deps:
            for dep in graph.assets[step].deps if step in graph.assets else ():
                if dep.startswith("dataset/") and dep not in planned:
                    planned[dep] = ("affected", f"{cause}{ARROW}dataset {dep.partition('/')[2]}")
    dependents = graph.dependents()
    for aid in graph.order():
        if aid not in forced:
            continue
        for child in dependents.get(aid, []):
            forced.setdefault(child, forced[aid])
            if child not in planned:
                kind, _, cname = child.partition("/")
                planned[child] = ("affected", f"retraining of {forced[aid]} requested{ARROW}{kind} {cname}")


def _add_live_gaps(head: Side, live: LiveState, planned: dict[str, tuple[str, str]]) -> None:
    """Converge: a model that git says is unchanged but has no version in the registry still gets built; an
    endpoint whose target serves something else than it should (drift) is deployed again."""
    graph = head.graph
    if not live.refreshed:
        return
    for name, model in sorted(head.specs.models.items()):
        aid = f"model/{name}"
        if aid in planned or name in live.registered_models:
            continue
        why = f"no version of model {name} in the registry (live state)"
        planned[aid] = ("live", why)
        if model.source.pipeline:
            pid = f"pipeline/{model.source.pipeline}"
            planned.setdefault(pid, ("live", why + f"{ARROW}pipeline {model.source.pipeline}"))
    for name, model in sorted(head.specs.models.items()):
        for stage, version in sorted(model.stages.items()):
            aid = f"stage/{name}/{stage}"
            holder = live.stage_holders.get(name, {}).get(stage)
            if aid not in planned and holder != version:
                planned[aid] = ("live", f"stage {stage} of {name} holds {f'version {holder}' if holder else 'nothing'}"
                                        f", the specs pin version {version} (live state)")
    for name, why in sorted(live.endpoint_drift.items()):
        aid = f"endpoint/{name}"
        if aid not in planned and aid in graph.assets:
            planned[aid] = ("live", f"drift: {why}")
    dependents = graph.dependents()
    for aid in graph.order():
        if aid in planned and planned[aid][0] == "live":
            for child in dependents.get(aid, []):
                if child not in planned and not child.startswith("step/"):
                    kind, _, cname = child.partition("/")
                    planned[child] = ("live", f"{planned[aid][1]}{ARROW}{kind} {cname}")
