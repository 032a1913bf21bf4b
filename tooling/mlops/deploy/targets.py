"""Targets by type: ``open_target(name, spec, root)`` makes the Target that ``mlops.yaml`` declares under ``name``.

Each target type registers a factory in ``FACTORIES`` (``local`` here; ``docker`` and ``kubernetes`` add theirs in
their own modules, imported lazily by ``_load`` so that planning never imports the Docker SDK or a Kubernetes
client). ``spec`` is the ``TargetConfig`` (type and options), or None for the embedded default ``local``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import DeployError

if TYPE_CHECKING:
    from mlops.deploy.protocol import EndpointState, Target
    from mlops.spec.model import Project, TargetConfig

Factory = Callable[[str, dict[str, Any], Path], "Target"]

# type -> "module:function" of its factory, imported on first use
FACTORIES: dict[str, str] = {
    "local": "mlops.deploy.targets:_local",
    "docker": "mlops.deploy.docker:open_docker_target",
    "kubernetes": "mlops.deploy.kubernetes:open_kubernetes_target",
}


def _local(name: str, options: dict[str, Any], root: Path) -> Target:
    from mlops.deploy.local import LocalTarget

    return LocalTarget(name, root, options)


def target_config(project: Project, name: str) -> TargetConfig | None:
    """The target ``name`` as ``mlops.yaml`` declares it (None: the embedded ``local`` default, not declared)."""
    return next((t for t in project.targets if t.name == name), None)


def open_target(name: str, spec: TargetConfig | None, root: Path) -> Target:
    """The Target ``name`` of type ``spec.type`` (``local`` when ``spec`` is None and ``name`` is ``local``)."""
    if spec is None:
        if name != "local":
            raise DeployError(f"no target named {name!r} in mlops.yaml (targets: declare it with a type)")
        kind, options = "local", {}
    else:
        kind, options = spec.type, dict(spec.options)
    where = FACTORIES.get(kind)
    if where is None:
        raise DeployError(f"target {name!r} has type {kind!r}, which this version cannot deploy to "
                          f"(known: {', '.join(sorted(FACTORIES))})")
    module, _, func = where.partition(":")
    try:
        factory: Factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise DeployError(f"target {name!r} (type {kind}) is not available in this installation: {e}") from None
    return factory(name, options, Path(root))


def peek(target: Target, endpoint: str) -> EndpointState | None:
    """Live state cheaply, for planning: the target's ``peek`` when it has one (no request to the server),
    else its ``read``."""
    cheap = getattr(target, "peek", None)
    return cheap(endpoint) if callable(cheap) else target.read(endpoint)
