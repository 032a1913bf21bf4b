"""Fixtures for the gate tests: a project with three stages, real models in a real LocalStore, a trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops.gates import GateReport, evaluate_gates
from mlops.release.records import ReleaseEvent, append_event
from mlops.spec.build import build_project
from mlops.spec.model import Model, Project
from mlops.store.local import LocalStore
from tests.evaluation import conftest as shared
from tests.evaluation.conftest import model_spec, register
from tests.evaluation.models import Trained, train

# The evaluation tests' fixtures, shared: a repository directory, a LocalStore, a good and a weak iris model.
root, store, iris, iris_weak = shared.root, shared.store, shared.iris, shared.iris_weak
__all__ = ["model_spec", "register"]

STAGES: list[dict[str, Any]] = [
    {"name": "dev"},
    {"name": "staging", "gates": [{"metric": "accuracy", "op": ">=", "threshold": 0.9},
                                  {"latency": {"p95_ms": 10_000, "batch_size": 4, "runs": 20}}]},
    {"name": "prod", "gates": [{"champion": {"metrics": ["accuracy", "log_loss"], "min_delta": 0.0}},
                               {"signature": {"allow_breaking": False}},
                               {"approval": {"required": 1}},
                               {"soak": {"hours": 24}}]},
]
T0 = "2026-03-01T00:00:00Z"


def project(stages: list[dict[str, Any]] | None = None) -> Project:
    return build_project({"kind": "Project", "name": "p", "stages": stages or STAGES}, "mlops.yaml")


def move(store: LocalStore, version: int, stage: str, at: str = T0, kind: str = "promoted",
         **evidence: Any) -> ReleaseEvent:
    return append_event(store, "iris", kind, version=version, stage=stage, by="ci", why="test", at=at,
                        evidence=evidence)


def approve(store: LocalStore, version: int, stage: str, by: str) -> ReleaseEvent:
    return append_event(store, "iris", "approved", version=version, stage=stage, by=by, why="looks good",
                        evidence={"source": "cli"})


def gates(store: LocalStore, root: Path, version: int, stage: str, stages: list[dict[str, Any]] | None = None,
          spec: Model | None = None, now: str = "2026-03-05T00:00:00Z") -> GateReport:
    from mlops.release.records import parse_time

    return evaluate_gates(store, project(stages), spec or model_spec(), version, stage, root, now=parse_time(now))


def one(report: GateReport, kind: str) -> Any:
    found = [r for r in report.results if r.kind == kind]
    assert len(found) == 1, report.results
    return found[0]


@pytest.fixture
def data(root: Path, iris: Trained) -> Path:
    (root / "data").mkdir()
    (root / "data/holdout.csv").write_bytes(iris.csv)
    return root / "data/holdout.csv"


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train("wine", tmp_path_factory.mktemp("wine") / "wine.onnx")


@pytest.fixture(scope="session")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train("iris", tmp_path_factory.mktemp("renamed") / "iris.onnx", input_name="features", C=0.5)
