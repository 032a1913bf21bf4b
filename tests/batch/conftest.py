"""Fixtures for the batch tests: real ONNX models (scikit-learn on its bundled data, converted with
skl2onnx), a real git repository with a batch endpoint, a real LocalStore holding the registered model."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.evaluation.models import Trained, train
from tests.gitrepo import Repo, init_repo

PROJECT = """kind: Project
name: batchy
stages:
  - name: dev
  - name: prod
"""

MODEL = """kind: Model
name: wine
flavor: onnx
source:
  files: [model/wine.onnx]
"""


def endpoint_yaml(model: str = "wine@dev", input: str = "data/in.csv", output: str = "out/pred.csv",
                  **batch: Any) -> str:
    extra = "".join(f"\n  {k}: {v}" for k, v in batch.items())
    return f"""kind: Endpoint
name: scorer
type: batch
deployments:
  - name: main
    model: {model}
batch:
  input: {input}
  output: {output}{extra}
"""


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train("wine", tmp_path_factory.mktemp("wine") / "wine.onnx")


@pytest.fixture(scope="session")
def wine_zipmap(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train("wine", tmp_path_factory.mktemp("winez") / "wine.onnx", zipmap=True)


@pytest.fixture(scope="session")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train("diabetes", tmp_path_factory.mktemp("diabetes") / "diabetes.onnx")


def features_csv(x: Any, names: list[str], ids: list[str] | None = None, id_name: str = "sample") -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(([id_name] if ids is not None else []) + names)
    for i, row in enumerate(x):
        w.writerow(([ids[i]] if ids is not None else []) + [repr(float(v)) for v in row])
    return out.getvalue()


def many_rows(t: Trained, n: int, seed: int = 0) -> Any:
    """``n`` rows drawn from the held-out rows, jittered (so they are all different)."""
    rng = np.random.default_rng(seed)
    return t.x[rng.integers(0, len(t.x), n)] * rng.normal(1.0, 0.01, (n, t.x.shape[1]))


@dataclass
class Project:
    repo: Repo
    trained: Trained

    @property
    def root(self) -> Path:
        return self.repo.path

    def store(self) -> Any:
        from mlops.reconcile.story import open_project_store

        return open_project_store(self.root)

    def register(self, path: Path | None = None) -> Any:
        """Register (a copy of) the model file as a new version of ``wine``."""
        from mlops.registry.models import register_model

        src = path or self.trained.path
        dest = self.root / "model" / "wine.onnx"
        dest.write_bytes(src.read_bytes())
        return register_model(self.store(), "wine", [dest], flavor="onnx",
                              lineage={"registered_by": "ci", "registered_at": "2026-01-01T00:00:00Z"})


def make_project(path: Path, t: Trained, data: str, endpoint: str | None = None,
                 files: dict[str, str] | None = None) -> Project:
    repo = init_repo(path)
    repo.write("mlops.yaml", PROJECT)
    repo.write("models/wine.yaml", MODEL)
    repo.write("endpoints/scorer.yaml", endpoint or endpoint_yaml("wine@1"))
    repo.write("data/in.csv", data)
    repo.write(".gitignore", ".mlops/\nout/\n")
    for rel, text in (files or {}).items():
        repo.write(rel, text)
    (path / "model").mkdir()
    (path / "model" / "wine.onnx").write_bytes(t.path.read_bytes())
    repo.commit("a batch endpoint")
    return Project(repo, t)


@pytest.fixture
def project(tmp_path: Path, wine: Trained) -> Project:
    """A repository whose endpoint ``scorer`` scores data/in.csv (the held-out wine rows) with wine@1."""
    p = make_project(tmp_path / "repo", wine, features_csv(wine.x, wine.names))
    p.register()
    return p
