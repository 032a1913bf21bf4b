"""The Dockerfile of an environment image, and image names (no engine needed)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mlops.environments.docker import SITE_DIR, default_base_image, image_tag, render_dockerfile
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

ENV = Environment(name="serving", python="3.11", base_image="mlops-base:bookworm", file="environments/serving.yaml")
IDENTITY = "ab" * 32


def lines(env: Environment) -> list[str]:
    return [ln for ln in render_dockerfile(env, IDENTITY, env.base_image or "").splitlines()
            if ln and not ln.startswith("#")]


def test_minimal_dockerfile_checks_python_and_copies_packages() -> None:
    out = lines(ENV)
    assert out[0] == "FROM mlops-base:bookworm"
    assert out[1].startswith("RUN [")
    argv = json.loads(out[1][len("RUN "):])
    assert argv[:2] == ["python3", "-c"] and "'3.11'" in argv[2]
    assert out[2:] == [f"COPY site-packages {SITE_DIR}", f'ENV PYTHONPATH="{SITE_DIR}" PATH={SITE_DIR}/bin:$PATH']
    assert not any("apt-get" in ln for ln in out)


def test_variables_are_quoted_so_docker_expands_nothing() -> None:
    env = dataclasses.replace(ENV, variables={"B": 'say "hi" to $HOME \\o/', "A": "", "PYTHONPATH": "/app"})
    out = lines(env)
    assert f'ENV PYTHONPATH="{SITE_DIR}:/app" PATH={SITE_DIR}/bin:$PATH' in out  # the user's path comes after
    assert out[-2:] == ['ENV A=""', 'ENV B="say \\"hi\\" to \\$HOME \\\\o/"']


@pytest.mark.parametrize(("change", "message"), [
    ({"variables": {"NOT-OK": "1"}}, r"environments/serving.yaml: \$.variables: 'NOT-OK' is not a valid variable"),
    ({"variables": {"X": "a\nb"}}, r"\$.variables.X: a line break"),
    ({"system_packages": ("curl; rm -rf /",)}, r"\$.system_packages: 'curl; rm -rf /' is not a Debian package"),
])
def test_what_cannot_go_into_a_dockerfile_is_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(EnvironmentBuildError, match=message):
        render_dockerfile(dataclasses.replace(ENV, **change), IDENTITY, "x")


def test_system_packages_are_installed_with_apt() -> None:
    out = render_dockerfile(dataclasses.replace(ENV, system_packages=("libgomp1", "curl=7.88.1-10+deb12u5")),
                            IDENTITY, "x")
    assert "apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u5 libgomp1" in out


def test_image_names() -> None:
    assert image_tag(ENV, IDENTITY) == f"mlops-env/serving:{IDENTITY[:16]}"
    assert image_tag(dataclasses.replace(ENV, name="a..b_-c"), IDENTITY) == f"mlops-env/a-b-c:{IDENTITY[:16]}"
    assert default_base_image(dataclasses.replace(ENV, base_image=None, python="3.12")) == "python:3.12-slim"
