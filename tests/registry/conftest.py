"""Fixtures for the registry tests: real ONNX models trained on sklearn's bundled data, real git repos."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlops.store.local import LocalStore
from mlops.store.memory import MemoryStore
from mlops.store.protocol import ArtifactStore
from mlops.store.s3 import S3Store


def train_onnx(dataset: str, path: Path, batch_dim: str | None = None) -> Path:
    """LogisticRegression on iris or wine, converted with skl2onnx (probabilities as a tensor).
    ``batch_dim`` names the input's dynamic batch dimension (skl2onnx only makes it unnamed)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris, load_wine
    from sklearn.linear_model import LogisticRegression

    X, y = (load_iris if dataset == "iris" else load_wine)(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # standardised, so the solver converges in a few steps
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    onx = to_onnx(clf, initial_types=[("float_input", FloatTensorType([None, X.shape[1]]))],
                  options={id(clf): {"zipmap": False}}, target_opset=17)
    if batch_dim:
        onx.graph.input[0].type.tensor_type.shape.dim[0].dim_param = batch_dim
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.fixture(scope="session")
def iris_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_onnx("iris", tmp_path_factory.mktemp("models") / "iris.onnx")


@pytest.fixture(scope="session")
def wine_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_onnx("wine", tmp_path_factory.mktemp("models") / "model.onnx", batch_dim="batch")


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "Ada Lovelace", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": "ada@example.com",
           "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_repo(path: Path, files: dict[str, str] | None = None, message: str = "first") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"README.md": "hi\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return path


@pytest.fixture(params=["local", "s3", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    if request.param == "s3":
        return S3Store(request.getfixturevalue("s3_bucket"), "reg", request.getfixturevalue("s3_endpoint"),
                       "us-east-1")
    return MemoryStore()
