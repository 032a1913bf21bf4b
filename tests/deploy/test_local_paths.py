"""The local target writes only inside <repo>/.mlops/serving/<endpoint>: no endpoint name, symbolic link or planted
file makes it write, fetch a model or delete anything elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops.deploy.local import LocalTarget, check_endpoint_name
from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.errors import DeployError, PathError
from mlops.store.local import LocalStore


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/etc", ".hidden", "x.", "-x", "Wine", "", "x" * 64,
                                  "a\0b", "a\nb"])
def test_names_that_are_not_one_plain_component_are_refused(name: str) -> None:
    with pytest.raises(DeployError, match="cannot name a local serving directory"):
        check_endpoint_name(name)


def _state(store: LocalStore, tmp_path: Path, endpoint: str = "wine") -> EndpointState:
    (tmp_path / "m.onnx").write_bytes(b"not really onnx")
    digest = store.put_file(tmp_path / "m.onnx")
    return EndpointState(endpoint, "local", (DeploymentState("blue", "wine", 1, digest),), {"blue": 100}, None)


@pytest.mark.parametrize("link", [".mlops/serving", ".mlops/serving/wine", ".mlops/serving/wine/models"])
def test_a_symbolic_link_in_the_state_path_is_refused_and_nothing_lands_outside(tmp_path: Path, link: str) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    store = LocalStore(root / ".mlops")
    desired = _state(store, tmp_path)
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, root / link)
    target = LocalTarget("local", root)
    with pytest.raises(PathError, match="symbolic link"):
        target.apply(desired, store)
    if link.endswith("/models"):
        target.remove("wine")  # deletes the link itself, nothing it points to
        assert not (root / ".mlops/serving/wine").exists()
    else:
        with pytest.raises(PathError):
            target.remove("wine")
    assert list(outside.iterdir()) == []
    assert target.read("wine") is None and target.endpoints() == []


def test_a_hostile_endpoint_name_never_reaches_the_file_system(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    store = LocalStore(root / ".mlops")
    desired = _state(store, tmp_path, endpoint="../../escape")
    target = LocalTarget("local", root)
    with pytest.raises(DeployError):
        target.apply(desired, store)
    with pytest.raises(DeployError):
        target.remove("../..")
    assert not (tmp_path / "escape").exists() and not (root / ".mlops/serving").exists()
    assert target.read("../..") is None


def test_a_planted_pid_file_naming_another_process_is_no_live_server(tmp_path: Path) -> None:
    """server.pid pointing at any process that is not this config's server (here: the test itself, or init) is
    not taken for a server: never signalled by remove, never read as live."""
    root = tmp_path / "repo"
    where = root / ".mlops/serving/wine"
    where.mkdir(parents=True)
    (where / "config.json").write_text('{"generation": 1, "host": "127.0.0.1", "port": 1, "deployments": [], '
                                       '"traffic": {}}')
    target = LocalTarget("local", root)
    for pid in (os.getpid(), 1, os.getppid()):
        (where / "server.pid").write_text(f"{pid}\n")
        assert target.peek("wine") is None
    target.remove("wine")  # deletes the directory, signals nobody (we are still here)
    assert not where.exists()
