"""The example project, reconciled for real: its wine classifier scored on the test split its run recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.evaluation import evaluate_version
from mlops.gates import evaluate_gates
from mlops.pipelines.record import list_runs
from mlops.registry.models import get_model
from mlops.spec.loader import load_specs
from mlops.store.local import LocalStore
from tests.gitrepo import example_repo, mlops
from tests.servers import stop_servers

pytestmark = pytest.mark.slow


def test_the_example_model_is_scored_on_the_recorded_test_split(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    try:
        out = mlops(repo, "reconcile", "--output", "json")
    finally:
        stop_servers(repo.path)
    assert json.loads(out.stdout)["ok"], out.stdout + out.stderr
    store = LocalStore(repo.path / ".mlops")
    specs = load_specs(repo.path)
    model = specs.models["wine-classifier"]
    recorded = list_runs(store, "wine-train")[-1].step("prepare").outputs["test"]
    (repo.path / "data/wine/test.csv").write_text("edited,target\n1,0\n")  # the workspace copy is not what is scored
    ev = evaluate_version(store, model, 1, repo.path, specs.datasets)
    assert ev.data == "prepare.test" and ev.data_digest == recorded and ev.label == "target"
    registered = get_model(store, "wine-classifier", 1).metrics  # the pipeline's own evaluate step (rounded to 1e-6)
    for name in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "log_loss"):
        assert ev.metrics[name] == pytest.approx(registered[name], abs=2e-6), name
    assert ev.confusion is not None and ev.confusion["matrix"] == registered["confusion_matrix"]
    assert ev.rows == registered["n_test"] and len(ev.importance) == 13
    assert {i["feature"] for i in ev.importance} == _features(store, recorded)
    report = evaluate_gates(store, specs.project, model, 1, "dev", repo.path, datasets=specs.datasets)
    assert report.passed and [r.kind for r in report.results] == ["order"]
    staging = evaluate_gates(store, specs.project, model, 1, "staging", repo.path, datasets=specs.datasets)
    assert [r.kind for r in staging.results] == ["order", "metric", "latency"]
    assert staging.results[0].status == "passed"  # reconcile entered v1 into dev (the automatic first stage)
    assert staging.results[1].passed and staging.results[2].evidence["batch_size"] == 1


def _features(store: LocalStore, digest: str) -> set[str]:
    header = store.get_bytes(digest).decode().splitlines()[0].split(",")
    return set(header[:-1])
