"""The serving image of the docker target, built by a real engine (tests/dockerd.py starts one when it can)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.environments.docker import LABEL_ENVIRONMENT as ENV_LABEL
from mlops.environments.serving_image import LABEL_SERVING_IMAGE, ServingImage, serving_image
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def env_and_image(docker_client: Any, base_image: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Environment, ServingImage]]:
    """A serving image on a fresh environment image (a unique variable gives a fresh identity); removed after."""
    repo = tmp_path_factory.mktemp("repo")
    run = uuid.uuid4().hex
    env = Environment(name="serve-test", python="3.11", base_image=base_image, file="environments/serve-test.yaml",
                      variables={"MLOPS_TEST_RUN": run, "PYTHONPATH": "/opt/user"})
    try:
        yield env, serving_image(docker_client, env, repo)
    finally:
        for img in docker_client.images.list(filters={"label": f"{ENV_LABEL}=serve-test"}):
            if LABEL_SERVING_IMAGE in img.labels or run in img.labels.get("org.mlops.spec", ""):
                docker_client.images.remove(img.id, force=True)


def test_serving_image_runs_mlops_and_the_server_packages(env_and_image: tuple[Environment, ServingImage],
                                                          docker_client: Any) -> None:
    env, image = env_and_image
    assert image.built and image.tag.startswith("mlops-serve/serve-test:")
    script = ("import sys, mlops.serving.worker, mlops.serving.http, numpy, onnxruntime, httptools, uvloop, prometheus_client; "
              "print(mlops.__file__); print(':'.join(p for p in sys.path if p.startswith('/opt')))")
    out = docker_client.containers.run(image.tag, ["-c", script], entrypoint=["python3"], network_mode="none",
                                       remove=True).decode().splitlines()
    assert out[0] == "/opt/mlops/serving/src/mlops/__init__.py"
    # the server's packages first, then the environment's, then the user's PYTHONPATH
    assert out[1] == "/opt/mlops/serving/src:/opt/mlops/serving/site-packages:/opt/mlops/site-packages:/opt/user"


def test_unchanged_inputs_reuse_the_image(env_and_image: tuple[Environment, ServingImage], docker_client: Any,
                                          tmp_path: Path) -> None:
    env, image = env_and_image
    again = serving_image(docker_client, env, tmp_path)
    assert again.built is False
    assert (again.tag, again.image_id) == (image.tag, image.image_id)


def test_another_python_than_the_running_one_is_refused(docker_client: Any, base_image: str, tmp_path: Path) -> None:
    env = Environment(name="serve-test", python="3.10", base_image=base_image)
    with pytest.raises(EnvironmentBuildError, match=r"python 3\.10.*copied from the python running mlops"):
        serving_image(docker_client, env, tmp_path)


def test_no_environment_and_no_base_image_is_refused(docker_client: Any, tmp_path: Path) -> None:
    with pytest.raises(EnvironmentBuildError, match="needs an environment on its deployments, or the target option"):
        serving_image(docker_client, None, tmp_path)


def test_build_environment_for_a_docker_target_makes_the_serving_image(
        env_and_image: tuple[Environment, ServingImage], docker_host: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The plan's build_environment action for an environment a docker endpoint uses leaves the image the
    docker target runs (here already built by the fixture: skipped, and named)."""
    from mlops.apply.executors.environment import build_environment
    from mlops.apply.protocol import ApplyContext
    from mlops.plan.model import Action
    from mlops.spec.model import Project, Specs, Stage, StoreConfig
    from mlops.store.memory import MemoryStore

    env, image = env_and_image
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    specs = Specs(project=Project(name="t", stages=(Stage("dev"),), store=StoreConfig()),
                  environments={env.name: env})
    action = Action(f"build_environment:environment/{env.name}", "build_environment", f"environment/{env.name}",
                    "created", "new", {"targets": ["docker"]})
    done = build_environment(action, ApplyContext(root=tmp_path, specs=specs, store=MemoryStore(), lineage={}))
    assert done.status == "skipped", done.message
    assert done.details["serving_image"] == image.tag
    assert done.details["docker"].startswith("mlops-env/serve-test:")
