"""A small real project for serving tests: a repository-file ONNX model (wine), stages dev (automatic) and prod,
one online endpoint on the local target. Every server a test starts is stopped by the fixture's teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gitrepo import Repo, init_repo
from tests.registry.conftest import train_onnx
from tests.servers import stop_servers

PROJECT = """kind: Project
name: t
stages: [{name: dev}, {name: prod}]
targets: {local: {type: local}}
"""
MODEL = """kind: Model
name: wine
flavor: onnx
source: {files: [model.onnx]}
"""
ENDPOINT = """kind: Endpoint
name: wine
type: online
deployments:
  - {name: blue, model: MODEL}
serving: {workers: 1}
"""


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two wine classifiers with different bytes (two versions of one model)."""
    base = tmp_path_factory.mktemp("onnx")
    first = train_onnx("wine", base / "v1.onnx", batch_dim="batch")
    second = train_onnx("wine", base / "v2.onnx", batch_dim="n")  # another input dim name: other bytes
    return first, second


def make_project(path: Path, onnx: Path, model_ref: str = "wine@dev", stages: str = "") -> Repo:
    repo = init_repo(path)
    repo.write("mlops.yaml", PROJECT)
    repo.write("models/wine.yaml", MODEL + stages)
    repo.write("endpoints/wine.yaml", ENDPOINT.replace("MODEL", model_ref))
    (path / "model.onnx").write_bytes(onnx.read_bytes())
    repo.write(".gitignore", ".mlops/\n")
    repo.commit("project")
    return repo


@pytest.fixture
def project(tmp_path: Path, onnx_files: tuple[Path, Path]) -> Iterator[Repo]:
    repo = make_project(tmp_path / "repo", onnx_files[0])
    try:
        yield repo
    finally:
        stop_servers(repo.path)
