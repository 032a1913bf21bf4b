"""The docker target as mlops.yaml declares it (no engine needed: nothing connects until used)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.deploy.docker import DockerTarget
from mlops.deploy.targets import open_target
from mlops.errors import DeployError
from mlops.spec.model import TargetConfig


def test_a_docker_target_opens_by_type(tmp_path: Path) -> None:
    target = open_target("box", TargetConfig("box", "docker", {"network": "host"}), tmp_path)
    assert isinstance(target, DockerTarget)
    assert target.name == "box"
    assert target.state_dir("wine") == tmp_path / ".mlops" / "docker-serving" / "box" / "wine"


@pytest.mark.parametrize(("name", "options", "message"), [
    ("box", {"network": "a network;rm"}, "network must be host, bridge or the name of a Docker network"),
    ("../up", {}, "cannot name a docker label and directory"),
])
def test_bad_options_are_refused_with_the_field(tmp_path: Path, name: str, options: dict[str, str],
                                                message: str) -> None:
    with pytest.raises(DeployError, match=message):
        open_target(name, TargetConfig(name, "docker", options), tmp_path)


def test_endpoint_and_slot_names_cannot_leave_the_state_directory(tmp_path: Path) -> None:
    target = DockerTarget("box", tmp_path)
    with pytest.raises(DeployError):
        target.state_dir("../etc")
    with pytest.raises(DeployError, match="no container slot"):
        target.slot_dir("wine", "../../x")


def test_the_declared_engine_is_used_and_an_unreachable_one_is_a_clear_error(tmp_path: Path) -> None:
    sock = tmp_path / "nothing.sock"
    target = open_target("box.one", TargetConfig("box.one", "docker", {"docker_host": f"unix://{sock}"}), tmp_path)
    with pytest.raises(DeployError, match=rf"target box.one: cannot reach a Docker engine \(unix://{sock}\)"):
        target.endpoints()


def test_the_project_schema_accepts_the_docker_options() -> None:
    import json

    import jsonschema

    import mlops

    schema = json.loads((Path(mlops.__file__).parent / "spec/schemas/project.json").read_text())
    box = {"type": "docker", "network": "host", "base_image": "mlops-base:bookworm",
           "docker_host": "unix:///run/docker.sock"}
    doc = {"kind": "Project", "name": "t", "stages": [{"name": "dev"}], "targets": {"box": box}}
    jsonschema.validate(doc, schema)
    box["network"] = "no such thing!"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_apply_needs_the_image_maker_the_deploy_action_hands_over(tmp_path: Path) -> None:
    from mlops.deploy.protocol import DeploymentState, EndpointState
    from mlops.store.memory import MemoryStore

    desired = EndpointState("wine", "box", (DeploymentState("blue", "wine", 1, "0" * 64),), {"blue": 100}, None)
    with pytest.raises(DeployError, match="no image maker was handed to this docker target"):
        DockerTarget("box", tmp_path).apply(desired, MemoryStore())


def test_the_target_mounts_the_config_where_the_image_reads_it() -> None:
    from mlops.deploy import docker
    from mlops.environments import serving_image

    assert docker.CONFIG_DIR == serving_image.CONFIG_DIR
    assert f"{serving_image.CONFIG_DIR}/config.json" in serving_image.render_dockerfile("base", "")
