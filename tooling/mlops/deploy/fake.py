"""An in-memory Target for tests: it keeps what it was told to serve, checks model files exist in the store, and
returns the metrics a test sets. Nothing is served."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mlops.deploy.protocol import DeploymentMetrics, EndpointState
from mlops.errors import MlopsError

if TYPE_CHECKING:
    from mlops.store.protocol import ArtifactStore


class FakeTarget:
    """In-memory Target. ``calls`` records (method, endpoint, detail) in order, so a test can see each step."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.live: dict[str, EndpointState] = {}
        self.fake_metrics: dict[str, dict[str, DeploymentMetrics]] = {}
        self.calls: list[tuple[str, str, object]] = []

    def read(self, endpoint: str) -> EndpointState | None:
        return self.live.get(endpoint)

    def endpoints(self) -> list[str]:
        return sorted(self.live)

    def apply(self, desired: EndpointState, store: ArtifactStore) -> EndpointState:
        for d in desired.deployments:
            if not store.has_blob(d.sha256):
                raise MlopsError(f"endpoint {desired.endpoint}: deployment {d.name}: model file {d.sha256[:12]} "
                                 f"is not in the store {store.url}")
        state = dataclasses.replace(desired, url=f"fake://{self.name}/{desired.endpoint}")
        self.live[desired.endpoint] = state
        self.calls.append(("apply", desired.endpoint, dict(desired.traffic)))
        return state

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        state = self.live.get(endpoint)
        if state is None:
            raise MlopsError(f"endpoint {endpoint} is not live on target {self.name}")
        self.live[endpoint] = dataclasses.replace(state, traffic=dict(traffic))
        self.calls.append(("set_traffic", endpoint, dict(traffic)))

    def metrics(self, endpoint: str) -> dict[str, DeploymentMetrics]:
        return dict(self.fake_metrics.get(endpoint, {}))

    def remove(self, endpoint: str) -> None:
        self.live.pop(endpoint, None)
        self.calls.append(("remove", endpoint, None))
