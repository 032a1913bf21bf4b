"""The desired state of an endpoint: what its spec, the registry and the stages say it should serve.

Each deployment's ``model`` resolves to one registered version:

* ``MODEL@STAGE``: the version the stage holds by the release audit trail. That is the stage's pin in the model
  spec once its promotion went through its gates (the plan orders the deploy after the promotion); a pin whose
  promotion is blocked does not reach serving: the stage, and so the endpoint, keeps the version that passed.
* ``MODEL@N``: version N.  ``MODEL``: the latest version.

The file served is the version's single ``.onnx`` file, by its sha256 (the target fetches it from the store by
that digest). Anything that cannot be resolved is a ``DeployError`` naming the endpoint's file and field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.errors import CorruptRecordError, DeployError, RegistryError

if TYPE_CHECKING:
    from mlops.registry.records import ModelVersion
    from mlops.spec.model import Deployment, Endpoint, Specs
    from mlops.store.protocol import ArtifactStore


_MAX_SCORING = 4 << 20
DEFAULT_CAPTURE_MB = 100.0


class NotServableYet(DeployError):
    """The model reference is right but has nothing to serve yet (its stage holds no version): the deploy waits."""


def target_name(endpoint: Endpoint, specs: Specs) -> str:
    """The target an endpoint deploys to: its own ``target`` or the project's ``default_target``."""
    return endpoint.target or specs.project.default_target


def desired_state(endpoint: Endpoint, specs: Specs, store: ArtifactStore,
                  holders: dict[str, dict[str, int]] | None = None, *, root: Path | None = None,
                  put: bool = False) -> EndpointState:
    """What ``endpoint`` should serve now. ``holders`` (model -> stage -> version) saves reading the audit
    trail again when the caller has it. A deployment's scoring module is read from the repository at ``root``
    (its sha256 is what is compared); ``put`` also stores it, so that a target can fetch it by digest."""
    deployments = tuple(_deployment(endpoint, i, d, specs, store, holders, root, put)
                        for i, d in enumerate(endpoint.deployments))
    mirror = {"deployment": endpoint.mirror["deployment"], "percent": endpoint.mirror.get("percent", 100)} \
        if endpoint.mirror else None
    settings = {k: dict(v) for k, v in (("serving", endpoint.serving), ("auth", endpoint.auth)) if v}
    return EndpointState(endpoint.name, target_name(endpoint, specs), deployments, dict(endpoint.traffic), mirror,
                         settings=settings)


def resolve(endpoint: Endpoint, index: int, specs: Specs, store: ArtifactStore,
            holders: dict[str, dict[str, int]] | None = None) -> ModelVersion:
    """The registered version deployment ``index`` of ``endpoint`` serves (DeployError naming the field)."""
    from mlops.registry.models import get_model

    dep = endpoint.deployments[index]
    ref = dep.model
    where = f"{endpoint.file or endpoint.name}: $.deployments[{index}].model: {ref}"
    version = ref.version
    try:
        if ref.stage is not None:
            if ref.stage not in {s.name for s in specs.project.stages}:
                raise DeployError(f"{where}: {specs.project.file} has no stage {ref.stage!r}")
            held = _holders(store, ref.name, holders).get(ref.stage)
            if held is None:
                pin = specs.models[ref.name].stages.get(ref.stage) if ref.name in specs.models else None
                waits = f" (its pin, version {pin}, has not entered it yet)" if pin is not None else ""
                raise NotServableYet(f"{where}: stage {ref.stage} of {ref.name} holds no version yet{waits}")
            version = held
        return get_model(store, ref.name, version)
    except (RegistryError, CorruptRecordError) as e:
        from mlops.registry.versions import version_numbers

        if isinstance(e, RegistryError) and not version_numbers(store, "models", ref.name):
            raise NotServableYet(f"{where}: model {ref.name} has no registered version yet") from None
        raise DeployError(f"{where}: {e}") from None


def _deployment(endpoint: Endpoint, index: int, dep: Deployment, specs: Specs, store: ArtifactStore,
                holders: dict[str, dict[str, int]] | None, root: Path | None, put: bool) -> DeploymentState:
    mv = resolve(endpoint, index, specs, store, holders)
    onnx = [f for f in mv.files if f.path.lower().endswith(".onnx")]
    if len(onnx) != 1:
        what = "no .onnx file" if not onnx else f"{len(onnx)} .onnx files ({', '.join(f.path for f in onnx)})"
        raise DeployError(f"{endpoint.file or endpoint.name}: $.deployments[{index}].model: {mv.ref} has {what}; "
                          "an online deployment serves exactly one ONNX model")
    options: dict[str, Any] = {}
    if dep.options.get("batching"):
        options["batching"] = dict(dep.options["batching"])
    if dep.options.get("scoring"):
        options["scoring"] = _scoring(endpoint, index, str(dep.options["scoring"]), store, root, put)
    capture = capture_options(endpoint, dep)
    if capture is not None:
        options["capture"] = capture
    # What a scaling target (kubernetes, docker) needs: how many pods, and how big.
    if dep.instances != 1:
        options["instances"] = dep.instances
    if dep.options.get("resources"):
        options["resources"] = dict(dep.options["resources"])
    return DeploymentState(dep.name, mv.name, mv.version, onnx[0].digest, options)


def capture_options(endpoint: Endpoint, dep: Deployment) -> dict[str, float] | None:
    """What a deployment captures: ``{"sample_rate", "max_mb"}``, or None for nothing. On by default (every
    request, at most ``DEFAULT_CAPTURE_MB``) for the deployments of an endpoint with a ``monitoring`` block, off
    otherwise; the deployment's ``capture`` overrides either way (``sample_rate: 0`` turns it off)."""
    declared = dep.options.get("capture")
    if declared is None and not endpoint.monitoring:
        return None
    declared = declared if isinstance(declared, dict) else {}
    rate = float(declared.get("sample_rate", 1.0))
    if rate <= 0:
        return None
    return {"sample_rate": rate, "max_mb": float(declared.get("max_mb", DEFAULT_CAPTURE_MB))}


def _scoring(endpoint: Endpoint, index: int, rel: str, store: ArtifactStore, root: Path | None, put: bool) -> str:
    """The sha256 of a deployment's scoring module (a .py file of the repository), stored when ``put``."""
    from mlops import paths
    from mlops.errors import PathError

    where = f"{endpoint.file or endpoint.name}: $.deployments[{index}].scoring: {rel}"
    if not rel.endswith(".py"):
        raise DeployError(f"{where}: a scoring module is a .py file")
    if root is None:
        raise DeployError(f"{where}: the repository is needed to read it")
    try:
        data = paths.read_bytes_inside(root, rel, _MAX_SCORING)
    except (PathError, OSError) as e:
        raise DeployError(f"{where}: {e}") from None
    return store.put_bytes(data) if put else hashlib.sha256(data).hexdigest()


def _holders(store: ArtifactStore, model: str, holders: dict[str, dict[str, int]] | None) -> dict[str, int]:
    if holders is not None:
        return holders.get(model, {})
    from mlops.release.records import model_events

    events = model_events(store, model)
    out: dict[str, int] = {}
    for e in events:
        if e.kind in ("promoted", "rolled_back") and e.stage and e.version is not None:
            out[e.stage] = e.version
    return out
