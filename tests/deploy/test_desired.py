"""Desired state from specs + registry + stages: MODEL@STAGE is what the stage holds, MODEL@N is N, MODEL the latest;
what does not resolve names the endpoint file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.deploy.desired import NotServableYet, desired_state
from mlops.errors import DeployError
from mlops.registry.composite import open_registry_store
from mlops.registry.models import register_model
from mlops.release.records import append_event
from mlops.spec.loader import load_project, load_specs
from mlops.store.protocol import ArtifactStore
from tests.deploy.conftest import make_project
from tests.gitrepo import Repo


def _register(store: ArtifactStore, onnx: Path) -> int:
    return register_model(store, "wine", [onnx], "onnx", {}, {}, {}, "").version


def _setup(tmp_path: Path, onnx_files: tuple[Path, Path], ref: str) -> tuple[Repo, ArtifactStore]:
    repo = make_project(tmp_path / "repo", onnx_files[0], model_ref=ref)
    return repo, open_registry_store(load_project(repo.path), repo.path)


def _serves(repo: Repo, store: ArtifactStore) -> tuple[str, int, str]:
    specs = load_specs(repo.path)
    d = desired_state(specs.endpoints["wine"], specs, store).deployments[0]
    return d.model, d.version, d.sha256


def test_a_stage_resolves_to_what_it_holds(tmp_path: Path, onnx_files: tuple[Path, Path]) -> None:
    repo, store = _setup(tmp_path, onnx_files, "wine@dev")
    specs = load_specs(repo.path)
    _register(store, onnx_files[0])
    with pytest.raises(NotServableYet, match=r"endpoints/wine.yaml: \$.deployments\[0\].model: wine@dev: "
                                             "stage dev of wine holds no version yet"):
        desired_state(specs.endpoints["wine"], specs, store)
    _register(store, onnx_files[1])
    append_event(store, "wine", "promoted", version=1, stage="dev", by="t", why="t")
    import hashlib

    assert _serves(repo, store) == ("wine", 1, hashlib.sha256(onnx_files[0].read_bytes()).hexdigest())
    append_event(store, "wine", "promoted", version=2, stage="dev", by="t", why="t")
    assert _serves(repo, store)[1] == 2


def test_a_number_and_the_latest(tmp_path: Path, onnx_files: tuple[Path, Path]) -> None:
    repo, store = _setup(tmp_path, onnx_files, "wine@1")
    _register(store, onnx_files[0])
    _register(store, onnx_files[1])
    assert _serves(repo, store)[1] == 1
    repo.edit("endpoints/wine.yaml", "wine@1", "wine")
    assert _serves(repo, store)[1] == 2
    repo.edit("endpoints/wine.yaml", "model: wine}", "model: wine@7}")
    specs = load_specs(repo.path)
    with pytest.raises(DeployError, match=r"endpoints/wine.yaml: \$.deployments\[0\].model: wine@7: model 'wine' "
                                          r"has no version 7 \(it has versions 1-2\)") as e:
        desired_state(specs.endpoints["wine"], specs, store)
    assert not isinstance(e.value, NotServableYet)  # a wrong number does not wait: it fails


def test_settings_and_traffic_are_part_of_what_is_compared(tmp_path: Path, onnx_files: tuple[Path, Path]) -> None:
    repo, store = _setup(tmp_path, onnx_files, "wine@1")
    _register(store, onnx_files[0])
    specs = load_specs(repo.path)
    before = desired_state(specs.endpoints["wine"], specs, store).digest()
    repo.edit("endpoints/wine.yaml", "serving: {workers: 1}", "serving: {workers: 2}")
    specs = load_specs(repo.path)
    assert desired_state(specs.endpoints["wine"], specs, store).digest() != before


@pytest.mark.parametrize(("monitoring", "capture", "expected"), [
    ("", "", None),  # no monitoring block: nothing captured
    ("monitoring: {schedule: '@daily'}\n", "", {"sample_rate": 1.0, "max_mb": 100.0}),
    ("", ", capture: {sample_rate: 0.25}", {"sample_rate": 0.25, "max_mb": 100.0}),
    ("monitoring: {schedule: '@daily'}\n", ", capture: {max_mb: 5}", {"sample_rate": 1.0, "max_mb": 5.0}),
    ("monitoring: {schedule: '@daily'}\n", ", capture: {sample_rate: 0}", None),
])
def test_capture_is_on_for_monitored_endpoints_unless_the_deployment_says_otherwise(
        tmp_path: Path, onnx_files: tuple[Path, Path], monitoring: str, capture: str, expected: object) -> None:
    repo, store = _setup(tmp_path, onnx_files, "wine@1")
    _register(store, onnx_files[0])
    repo.edit("endpoints/wine.yaml", "model: wine@1}", f"model: wine@1{capture}}}")
    repo.write("endpoints/wine.yaml", repo.path.joinpath("endpoints/wine.yaml").read_text() + monitoring)
    specs = load_specs(repo.path)
    options = desired_state(specs.endpoints["wine"], specs, store).deployments[0].options
    assert options.get("capture") == expected
