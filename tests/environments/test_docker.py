"""Environment images built by a real Docker engine (started by tests/dockerd.py when needed)."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.environments.docker import (
    LABEL_ENVIRONMENT,
    LABEL_IDENTITY,
    LABEL_SPEC,
    BuiltImage,
    build_image,
    find_image,
)
from mlops.environments.identity import canonical_json, canonical_spec, environment_identity, repo_reader
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment
from tests.environments.wheels import make_wheel

pytestmark = pytest.mark.docker


@dataclasses.dataclass
class Built:
    env: Environment
    repo: Path
    image: BuiltImage
    seconds: float


@pytest.fixture(scope="module")
def built(docker_client: Any, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """One image built from scratch: a requirement installed host-side, awkward variables."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PIP_NO_INDEX", "1")
    mp.setenv("PIP_CONFIG_FILE", "/dev/null")
    repo = tmp_path_factory.mktemp("repo")
    make_wheel(repo / "wheels", "tinypkg", "0.1", scripts={"tiny-hello": "tinypkg:main"})
    env = Environment(
        name="serving", python="3.11", base_image=base_image, file="environments/serving.yaml",
        requirements=("wheels/tinypkg-0.1-py3-none-any.whl",),
        # A fresh identity per run: the engine's images persist between runs.
        variables={"MLOPS_TEST_RUN": uuid.uuid4().hex, "GREETING": 'say "hi" to $HOME \\o/'},
    )
    started = time.monotonic()
    image = build_image(env, repo, docker_client)
    yield Built(env, repo, image, time.monotonic() - started)
    mp.undo()
    for img in docker_client.images.list(filters={"label": f"{LABEL_ENVIRONMENT}=serving"}):
        if img.labels.get("org.mlops.spec", "").find(env.variables["MLOPS_TEST_RUN"]) >= 0:
            docker_client.images.remove(img.id, force=True)


def test_image_is_tagged_and_labelled_with_the_identity(built: Built, docker_client: Any) -> None:
    identity = environment_identity(built.env, repo_reader(built.repo))
    assert built.image.built is True
    assert built.image.identity == identity
    assert built.image.tag == f"mlops-env/serving:{identity[:16]}"
    image = docker_client.images.get(built.image.tag)
    assert image.id == built.image.image_id
    assert image.labels[LABEL_ENVIRONMENT] == "serving"
    assert image.labels[LABEL_IDENTITY] == identity
    spec = canonical_spec(built.env, repo_reader(built.repo))
    assert image.labels[LABEL_SPEC] == canonical_json(spec)
    assert json.loads(image.labels[LABEL_SPEC])["variables"]["GREETING"] == built.env.variables["GREETING"]


def test_container_imports_a_requirement_installed_on_the_host(built: Built, docker_client: Any) -> None:
    script = "import os, tinypkg; print(tinypkg.VERSION); print(os.environ['GREETING'])"
    out = docker_client.containers.run(built.image.tag, ["python3", "-c", script], network_mode="host",
                                       remove=True).decode()
    assert out.splitlines() == ["0.1", built.env.variables["GREETING"]]
    # Console scripts were written for the host python; in the image they run the image's python.
    out = docker_client.containers.run(built.image.tag, ["tiny-hello"], network_mode="host", remove=True).decode()
    assert out.strip() == "tinypkg 0.1"


def test_second_build_is_skipped(built: Built, docker_client: Any) -> None:
    started = time.monotonic()
    again = build_image(built.env, built.repo, docker_client)
    cached = time.monotonic() - started
    assert again == dataclasses.replace(built.image, built=False)
    assert find_image(built.env, built.repo, docker_client) == again
    print(f"\ndocker image: first build {built.seconds:.2f} s, cached {cached * 1000:.1f} ms")


def test_changed_requirement_yields_a_new_image(built: Built, docker_client: Any) -> None:
    make_wheel(built.repo / "wheels", "tinypkg", "0.2")
    changed = dataclasses.replace(built.env, requirements=("wheels/tinypkg-0.2-py3-none-any.whl",))
    assert find_image(changed, built.repo, docker_client) is None
    image = build_image(changed, built.repo, docker_client)
    assert image.built is True
    assert image.tag != built.image.tag and image.image_id != built.image.image_id
    out = docker_client.containers.run(image.tag, ["python3", "-c", "import tinypkg; print(tinypkg.VERSION)"],
                                       network_mode="host", remove=True).decode()
    assert out.strip() == "0.2"
    # The first image is still there and still itself.
    assert find_image(built.env, built.repo, docker_client) == dataclasses.replace(built.image, built=False)


def test_missing_base_image_is_named(docker_client: Any, repo: Path) -> None:
    env = Environment(name="x", python="3.11", base_image="mlops-test/no-such-image:1", file="environments/x.yaml")
    with pytest.raises(EnvironmentBuildError, match=r"base image 'mlops-test/no-such-image:1'.*never pulled"):
        build_image(env, repo, docker_client)


def test_base_image_with_another_python_fails_clearly(docker_client: Any, base_image: str, repo: Path,
                                                      tmp_path: Path) -> None:
    # A base image whose python3 claims to be 3.9: the host python matches the spec (3.11), the image not.
    ctx = tmp_path / "fake"
    ctx.mkdir()
    (ctx / "python3").write_text(
        '#!/bin/sh\nexec /usr/bin/python3.11 -c '
        '"import sys; sys.version_info = (3, 9, 0, \'final\', 0); exec(sys.argv[2])" "$@"\n')
    (ctx / "python3").chmod(0o755)  # COPY keeps the mode (the classic builder has no --chmod)
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nCOPY python3 /usr/local/bin/python3\n")
    fake, _ = docker_client.images.build(path=str(ctx), tag="mlops-test/fake-python:3.9", rm=True)
    try:
        env = Environment(name="wrong", python="3.11", base_image="mlops-test/fake-python:3.9",
                          variables={"MLOPS_TEST_RUN": uuid.uuid4().hex})
        with pytest.raises(EnvironmentBuildError,
                           match=r"base image mlops-test/fake-python:3.9 has python 3.9, environment wrong needs 3.11"):
            build_image(env, repo, docker_client)
    finally:
        docker_client.images.remove(fake.id, force=True)
