"""Drift: an endpoint whose target serves something other than its desired state (its server died, or someone
changed it outside git). Read cheaply, for planning: each target's ``peek`` (the local target reads its config and
checks the process; no request to the server)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlops.deploy.desired import desired_state, target_name
from mlops.deploy.targets import open_target, peek, target_config
from mlops.errors import MlopsError

if TYPE_CHECKING:
    from mlops.deploy.protocol import EndpointState, Target
    from mlops.spec.model import Specs
    from mlops.store.protocol import ArtifactStore


def endpoint_drift(root: Path, specs: Specs, store: ArtifactStore,
                   holders: dict[str, dict[str, int]] | None = None) -> dict[str, str]:
    """endpoint -> why its live state differs from its desired state, for every online endpoint that drifted.
    An endpoint whose desired state cannot be resolved yet is left out (its deploy says why when it runs)."""
    out: dict[str, str] = {}
    targets: dict[str, Target | None] = {}
    for name, endpoint in sorted(specs.endpoints.items()):
        if endpoint.type != "online":
            continue
        try:
            desired = desired_state(endpoint, specs, store, holders)
        except MlopsError:
            continue
        tname = target_name(endpoint, specs)
        if tname not in targets:
            try:
                targets[tname] = open_target(tname, target_config(specs.project, tname), root)
            except MlopsError:
                targets[tname] = None
        target = targets[tname]
        if target is None:
            continue
        try:
            live = peek(target, name)
        except MlopsError:
            continue
        if live is None:
            out[name] = f"endpoint {name} is not running on target {tname}"
        elif live.digest() != desired.digest():
            out[name] = f"target {tname} serves {_said(live)}, the specs want {_said(desired)}"
    return out


def _said(state: EndpointState) -> str:
    parts = [f"{d.name}: {d.model}@{d.version} ({state.traffic.get(d.name, 0)}%)"
             for d in sorted(state.deployments, key=lambda d: d.name)]
    return ", ".join(parts) or "nothing"
