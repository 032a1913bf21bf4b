"""The docker target on a bridge network, against a real engine: the port is published on 127.0.0.1 (by the engine's
proxy), a new image moves the endpoint to another port unless the endpoint declares one. The network, containers
and images made here are removed, also when a test fails."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from mlops.deploy.docker import LABEL_TARGET, DockerTarget
from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.environments.docker import LABEL_ENVIRONMENT
from mlops.environments.serving_image import LABEL_SERVING_IMAGE, serving_image
from mlops.spec.model import Deployment, Endpoint, Environment, ModelRef, Project, Specs, Stage, StoreConfig
from mlops.store.local import LocalStore
from tests.deploy.test_docker_target import infer
from tests.registry.conftest import train_onnx

pytestmark = pytest.mark.docker


@dataclass
class Bridged:
    target: DockerTarget
    store: LocalStore
    desired: EndpointState
    env: Environment


@pytest.fixture(scope="module")
def bridged(docker_client: Any, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridged]:
    import docker.errors

    run = uuid.uuid4().hex
    try:
        network = docker_client.networks.create(f"mlops-test-{run[:12]}", driver="bridge")
    except docker.errors.APIError as e:
        pytest.skip(f"this engine cannot make a bridge network: {e}")
    root = tmp_path_factory.mktemp("repo")
    store = LocalStore(root / ".mlops")
    onnx = store.put_file(train_onnx("wine", tmp_path_factory.mktemp("models") / "v1.onnx", batch_dim="batch"))
    env = Environment(name="dockerbridge", python="3.11", base_image=base_image, variables={"MLOPS_TEST_RUN": run})
    endpoint = Endpoint(name="wine", type="online", file="endpoints/wine.yaml",
                        deployments=(Deployment("blue", ModelRef("wine"), environment="dockerbridge"),))
    specs = Specs(project=Project(name="t", stages=(Stage("dev"),), store=StoreConfig()),
                  environments={env.name: env}, endpoints={"wine": endpoint})
    name = f"bridge{run[:8]}"
    target = DockerTarget(name, root, {"network": network.name}, client=docker_client, specs=specs,
                          images=serving_image)
    desired = EndpointState("wine", name, (DeploymentState("blue", "wine", 1, onnx),), {"blue": 100}, None,
                            settings={"serving": {"workers": 1}, "auth": {"mode": "none"}})
    try:
        yield Bridged(target, store, desired, env)
    finally:
        for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL_TARGET}={name}"}):
            c.remove(force=True)
        network.remove()
        for img in docker_client.images.list(filters={"label": f"{LABEL_ENVIRONMENT}=dockerbridge"}):
            if LABEL_SERVING_IMAGE in img.labels or run in img.labels.get("org.mlops.spec", ""):
                docker_client.images.remove(img.id, force=True)


def rebuilt(b: Bridged, tag: str) -> None:
    """Make the target see another environment image (as if the environment was rebuilt)."""
    specs = b.target.specs
    assert specs is not None
    b.target.specs = replace(specs, environments={b.env.name: replace(b.env, variables={**b.env.variables,
                                                                                       "REBUILT": tag})})


def test_published_on_loopback_and_a_new_image_moves_to_another_port(bridged: Bridged, docker_client: Any) -> None:
    live = bridged.target.apply(bridged.desired, bridged.store)
    assert live.url is not None and live.url.startswith("http://127.0.0.1:")
    [container] = docker_client.containers.list(filters={"label": f"{LABEL_TARGET}={bridged.target.name}"})
    assert container.attrs["HostConfig"]["NetworkMode"] == bridged.target.options["network"]
    assert container.attrs["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert infer(live.url, key=None)[0] == 200
    assert bridged.target.read("wine") == live

    rebuilt(bridged, "1")
    moved = bridged.target.apply(bridged.desired, bridged.store)
    assert moved.url is not None and moved.url != live.url  # a port is published once: the new one is elsewhere
    assert infer(moved.url, key=None)[0] == 200
    assert [c.id for c in docker_client.containers.list(all=True, filters={
        "label": f"{LABEL_TARGET}={bridged.target.name}"})] != [container.id]
    with pytest.raises(OSError):
        infer(live.url, key=None)  # the old one is gone
    bridged.target.remove("wine")


def test_a_declared_port_is_kept_across_a_new_image(bridged: Bridged, docker_client: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    desired = replace(bridged.desired, settings={**bridged.desired.settings, "serving": {"workers": 1, "port": port}})
    live = bridged.target.apply(desired, bridged.store)
    assert live.url == f"http://127.0.0.1:{port}"
    rebuilt(bridged, "2")
    again = bridged.target.apply(desired, bridged.store)
    assert again.url == live.url
    assert infer(str(again.url), key=None)[0] == 200
    assert len(docker_client.containers.list(all=True, filters={"label": f"{LABEL_TARGET}={bridged.target.name}"})) == 1
    bridged.target.remove("wine")
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_TARGET}={bridged.target.name}"}) == []
