"""`mlops reconcile` with an endpoint on a docker target, for real: the environment's build action makes the image
the target runs, the deploy action starts the container, predictions come back through its port, and a second
reconcile finds it live. Containers and images are removed, also when a test fails."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.deploy.docker import LABEL_ENDPOINT, LABEL_TARGET
from mlops.environments.docker import LABEL_ENVIRONMENT
from mlops.environments.serving_image import LABEL_SERVING_IMAGE
from tests.deploy.test_docker_target import infer
from tests.gitrepo import Repo, init_repo, mlops
from tests.registry.conftest import train_onnx

pytestmark = pytest.mark.docker

RUN = uuid.uuid4().hex
TARGET = f"box{RUN[:8]}"
KEY = "reconcile-key-" + RUN


@pytest.fixture
def project(tmp_path: Path, docker_client: Any, docker_host: str, base_image: str) -> Iterator[tuple[Repo, dict[str, str]]]:
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", f"kind: Project\nname: t\nstages: [{{name: dev}}]\n"
                             f"targets: {{{TARGET}: {{type: docker}}}}\n")
    repo.write("environments/serve.yaml", f"kind: Environment\nname: servedock\npython: '3.11'\n"
                                          f"base_image: {base_image}\nvariables: {{MLOPS_TEST_RUN: '{RUN}'}}\n")
    repo.write("models/wine.yaml", "kind: Model\nname: wine\nflavor: onnx\nsource: {files: [model.onnx]}\n")
    repo.write("endpoints/wine.yaml", f"kind: Endpoint\nname: wine\ntype: online\ntarget: {TARGET}\n"
                                      "deployments:\n  - {name: blue, model: wine@dev, environment: servedock}\n"
                                      "auth: {mode: key, secret: TEST_DOCKER_KEY}\nserving: {workers: 1}\n")
    train_onnx("wine", repo.path / "model.onnx", batch_dim="batch")
    repo.write(".gitignore", ".mlops/\n")
    repo.commit("project")
    env = {"DOCKER_HOST": docker_host, "TEST_DOCKER_KEY": KEY}
    try:
        yield repo, env
    finally:
        for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL_TARGET}={TARGET}"}):
            c.remove(force=True)
        for img in docker_client.images.list(filters={"label": f"{LABEL_ENVIRONMENT}=servedock"}):
            if LABEL_SERVING_IMAGE in img.labels or RUN in img.labels.get("org.mlops.spec", ""):
                docker_client.images.remove(img.id, force=True)


def test_reconcile_builds_the_serving_image_and_serves_from_a_container(project: tuple[Repo, dict[str, str]],
                                                                       docker_client: Any) -> None:
    repo, env = project
    out = mlops(repo, "reconcile", "--output", "json", env=env)
    results = {r["action"]: r for r in json.loads(out.stdout)["results"]}
    build = results["build_environment:environment/servedock"]
    assert build["status"] == "succeeded", build
    assert str(build["details"]["serving_image"]).startswith("mlops-serve/servedock:")
    deploy = results["deploy:endpoint/wine"]
    assert deploy["status"] == "succeeded", deploy
    url = str(deploy["details"]["url"])
    status, body, served_by = infer(url, key=KEY)
    assert (status, served_by) == (200, "blue"), body

    [container] = docker_client.containers.list(filters={"label": [f"{LABEL_TARGET}={TARGET}",
                                                                   f"{LABEL_ENDPOINT}=wine"]})
    assert container.image.tags == [build["details"]["serving_image"]]
    assert container.labels["mlops.deployment.blue"] == "wine@1"

    again = mlops(repo, "reconcile", "--output", "json", env=env)
    redo = {r["action"]: r for r in json.loads(again.stdout)["results"]}
    assert redo.get("deploy:endpoint/wine", {"status": "skipped"})["status"] == "skipped"
    assert [c.id for c in docker_client.containers.list(filters={"label": f"{LABEL_TARGET}={TARGET}"})] == [
        container.id]

    # its keys are kept on this machine, as the local target's: rotated from the CLI without a restart
    new = mlops(repo, "endpoints", "keys", "rotate", "wine", env=env).stdout.strip()
    assert new and new != KEY
    assert infer(url, key=KEY)[0] == 401 and infer(url, key=new)[0] == 200
    assert mlops(repo, "endpoints", "keys", "show", "wine", env=env).stdout.strip() == new
    assert docker_client.containers.get(container.id).status == "running"
