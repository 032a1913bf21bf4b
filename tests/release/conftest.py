"""Fixtures for cards, history and audit: a real project repository, its real registry store, a real
ONNX model, and release events and evaluation records written by hand in their fixed formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops.registry.composite import open_registry_store
from mlops.registry.models import register_model
from mlops.registry.records import ModelVersion
from mlops.release.records import ReleaseEvent, append_event
from mlops.spec.loader import load_project
from mlops.store.protocol import ArtifactStore
from tests.gitrepo import Repo, init_repo
from tests.registry.conftest import train_onnx

PROJECT = "kind: Project\nname: t\nstages: [{name: dev}, {name: staging}, {name: prod}]\n"


@pytest.fixture(scope="session")
def wine_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_onnx("wine", tmp_path_factory.mktemp("models") / "model.onnx", batch_dim="batch")


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    r = init_repo(tmp_path / "repo")
    r.write("mlops.yaml", PROJECT)
    r.write(".gitignore", ".mlops/\n")
    r.commit("project")
    return r


@pytest.fixture()
def store(repo: Repo) -> ArtifactStore:
    """The store the CLI of ``repo`` reads (the project's registry store)."""
    return open_registry_store(load_project(repo.path), repo.path)


def register(store: ArtifactStore, onnx: Path, name: str = "wine", at: str = "2026-01-01T00:00:00Z",
             message: str = "Train wine", description: str = "Classifies wines", **extra: Any) -> ModelVersion:
    lineage = {"git_commit": "1" * 40, "git_author": "Ada <ada@example.com>", "git_message": message,
               "pipeline": "wine-train", "pipeline_run": "run-1", "environment_identity": "e" * 64,
               "input_digests": {"prepare.train": "a" * 64}, "registered_by": "ci", "registered_at": at}
    metrics = extra.pop("metrics", {"accuracy": 0.95})
    return register_model(store, name, [onnx], "onnx", metrics, extra.pop("tags", {}), lineage, description)


def event(store: ArtifactStore, kind: str, version: int | None, stage: str | None, at: str, model: str = "wine",
          by: str = "ci", why: str = "", commit: str | None = None, **evidence: Any) -> ReleaseEvent:
    return append_event(store, model, kind, version=version, stage=stage, by=by, why=why, commit=commit,
                        evidence=evidence, at=at)


def gate(kind: str, summary: str, status: str = "passed") -> dict[str, Any]:
    """A GateResult.to_dict() as the gates write it."""
    return {"kind": kind, "passed": status == "passed", "status": status, "summary": summary, "evidence": {}}


def evaluation(model: str = "wine", version: int = 1, **changes: Any) -> dict[str, Any]:
    """An evaluation record in the fixed format (release.md, "The evaluation record")."""
    rec = {"model": model, "version": version, "data": "prepare.test", "data_digest": "d" * 64,
           "task": "classification", "label": "target", "rows": 36,
           "metrics": {"accuracy": 0.9722, "f1_macro": 0.9701},
           "confusion": {"labels": ["0", "1", "2"], "matrix": [[12, 0, 0], [1, 13, 0], [0, 0, 10]]},
           "importance": [{"feature": "proline", "mean": 0.2, "std": 0.02},
                          {"feature": "alcohol", "mean": 0.1, "std": 0.01},
                          {"feature": "ash", "mean": -0.001, "std": 0.002}],
           "importance_metric": "accuracy", "repeats": 5, "seed": 0, "at": "2026-01-02T00:00:00Z", "by": "ci"}
    rec.update(changes)
    return rec


def save_evaluation(store: ArtifactStore, rec: dict[str, Any]) -> str:
    """Store ``rec`` at the key mlops would give it, as written (damaged ones too); its key."""
    from mlops.release.evaluations import evaluation_key, settings_digest

    settings = settings_digest(rec["label"], rec["task"], rec["repeats"], rec["seed"])
    key = evaluation_key(rec["model"], rec["version"], rec["data_digest"], settings)
    assert store.create_record(key, json.dumps(rec).encode())
    return key
