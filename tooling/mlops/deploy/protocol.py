"""The Target protocol: what every serving target (local processes, Docker, Kubernetes, the in-memory fake) offers.

An ``EndpointState`` is what one endpoint serves: its deployments (model, version, the sha256 of the .onnx file and
the options that change what is served), the traffic split and the mirror. Desired state is computed from the specs
and the registry (``mlops.deploy.desired``); live state is what a target reads back. They compare by ``digest()``,
which leaves out the URL (where it is served is not what it serves).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mlops.serving.metrics import DeploymentMetrics  # the server's own reading of /metrics, re-exported

__all__ = ["DeploymentMetrics", "DeploymentState", "EndpointState", "Target"]

if TYPE_CHECKING:
    from mlops.store.protocol import ArtifactStore


@dataclass(frozen=True)
class DeploymentState:
    name: str
    model: str
    version: int
    sha256: str  # the .onnx served
    options: dict[str, Any] = field(default_factory=dict)  # batching, scoring sha256, ...


@dataclass(frozen=True)
class EndpointState:
    endpoint: str
    target: str  # target name from mlops.yaml
    deployments: tuple[DeploymentState, ...]
    traffic: dict[str, int]
    mirror: dict[str, Any] | None
    url: str | None = None  # live only: base URL
    # The endpoint's declared serving settings and auth, as in its spec: {"serving": {...}, "auth": {...}}.
    # Part of the digest when not empty (a change of workers or auth mode must reach the server).
    settings: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """Canonical sha256 of what is served: endpoint, target, deployments (in name order), traffic and
        mirror, settings. The URL is not part of it."""
        doc = {
            "endpoint": self.endpoint,
            "target": self.target,
            "deployments": [
                {"name": d.name, "model": d.model, "version": d.version, "sha256": d.sha256, "options": d.options}
                for d in sorted(self.deployments, key=lambda d: d.name)
            ],
            "traffic": {k: v for k, v in sorted(self.traffic.items()) if v},
            "mirror": self.mirror or None,
        }
        if self.settings:
            doc["settings"] = self.settings
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def deployment(self, name: str) -> DeploymentState | None:
        """The deployment called ``name``, or None."""
        return next((d for d in self.deployments if d.name == name), None)


class Target(Protocol):
    name: str

    def read(self, endpoint: str) -> EndpointState | None:
        """Live state, None when absent."""
        ...

    def endpoints(self) -> list[str]:
        """Live endpoints this target runs."""
        ...

    def apply(self, desired: EndpointState, store: ArtifactStore) -> EndpointState:
        """Converge to ``desired`` without dropping a request; return the live state."""
        ...

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        """A rollout step: change only the traffic split of a live endpoint."""
        ...

    def metrics(self, endpoint: str) -> dict[str, DeploymentMetrics]:
        """Per deployment request/error counters and latency histogram of a live endpoint."""
        ...

    def remove(self, endpoint: str) -> None:
        """Drain, then stop; idempotent."""
        ...
