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

from typing import TYPE_CHECKING, Any

from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.errors import CorruptRecordError, DeployError, RegistryError

if TYPE_CHECKING:
    from mlops.registry.records import ModelVersion
    from mlops.spec.model import Deployment, Endpoint, Specs
    from mlops.store.protocol import ArtifactStore


class NotServableYet(DeployError):
    """The model reference is right but has nothing to serve yet (its stage holds no version): the deploy waits."""


def target_name(endpoint: Endpoint, specs: Specs) -> str:
    """The target an endpoint deploys to: its own ``target`` or the project's ``default_target``."""
    return endpoint.target or specs.project.default_target


def desired_state(endpoint: Endpoint, specs: Specs, store: ArtifactStore,
                  holders: dict[str, dict[str, int]] | None = None) -> EndpointState:
    """What ``endpoint`` should serve now. ``holders`` (model -> stage -> version) saves reading the audit
    trail again when the caller has it."""
    deployments = tuple(_deployment(endpoint, i, d, specs, store, holders) for i, d in enumerate(endpoint.deployments))
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
                holders: dict[str, dict[str, int]] | None) -> DeploymentState:
    mv = resolve(endpoint, index, specs, store, holders)
    onnx = [f for f in mv.files if f.path.lower().endswith(".onnx")]
    if len(onnx) != 1:
        what = "no .onnx file" if not onnx else f"{len(onnx)} .onnx files ({', '.join(f.path for f in onnx)})"
        raise DeployError(f"{endpoint.file or endpoint.name}: $.deployments[{index}].model: {mv.ref} has {what}; "
                          "an online deployment serves exactly one ONNX model")
    if dep.options.get("scoring"):
        raise DeployError(f"{endpoint.file or endpoint.name}: $.deployments[{index}].scoring: scoring modules are "
                          "not served by this version; remove it to serve the model's own inputs and outputs")
    options: dict[str, Any] = {}
    if dep.options.get("batching"):
        options["batching"] = dict(dep.options["batching"])
    return DeploymentState(dep.name, mv.name, mv.version, onnx[0].digest, options)


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
