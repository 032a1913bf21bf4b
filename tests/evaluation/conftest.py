"""Fixtures: a repository directory with held-out data, a real LocalStore, trained and registered models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops.registry.models import register_model
from mlops.registry.records import ModelVersion
from mlops.spec.build import build_model
from mlops.spec.model import Model
from mlops.store.local import LocalStore
from tests.evaluation.models import Trained, train


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train("iris", tmp_path_factory.mktemp("iris") / "iris.onnx")


@pytest.fixture(scope="session")
def iris_weak(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train("iris", tmp_path_factory.mktemp("iris-weak") / "iris.onnx", kind="tree")


def model_spec(data: str = "data/holdout.csv", task: str = "classification", **extra: Any) -> Model:
    """A Model spec as the loader builds it (source: a pipeline ``train``, so STEP.OUTPUT data resolves)."""
    doc = {"kind": "Model", "name": "iris", "flavor": "onnx", "source": {"pipeline": "train", "artifact": "export.onnx"},
           "evaluation": {"data": data, "label": "target", "task": task, **extra}}
    return build_model(doc, "models/iris.yaml")


def register(store: LocalStore, t: Trained, name: str = "iris", **metrics: Any) -> ModelVersion:
    return register_model(store, name, [t.path], flavor="onnx", metrics=metrics,
                          lineage={"registered_by": "ci", "registered_at": "2026-01-01T00:00:00Z"})
