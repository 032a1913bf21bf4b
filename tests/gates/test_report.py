"""evaluate_gates: every gate of a stage, in order, the order gate first; passed, awaiting, failed, error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mlops.errors import MlopsError
from mlops.gates import GATES, GateContext, GateResult, gate_kind
from mlops.store.local import LocalStore
from tests.evaluation.models import Trained
from tests.gates.conftest import approve, gates, model_spec, move, register


def test_a_version_walks_dev_staging_prod_and_a_worse_one_is_blocked(store: LocalStore, root: Path, data: Path,
                                                                     iris: Trained, iris_weak: Trained) -> None:
    register(store, iris, accuracy=0.95)
    dev = gates(store, root, 1, "dev")
    assert dev.passed and dev.status == "passed" and [r.kind for r in dev.results] == ["order"]
    move(store, 1, "dev")
    staging = gates(store, root, 1, "staging")
    assert [r.kind for r in staging.results] == ["order", "metric", "latency"] and staging.passed
    move(store, 1, "staging")
    prod = gates(store, root, 1, "prod", now="2026-03-01T01:00:00Z")
    assert [r.kind for r in prod.results] == ["order", "champion", "signature", "approval", "soak"]
    assert prod.status == "awaiting" and prod.awaiting and not prod.passed
    assert [r.kind for r in prod.blocking] == ["approval", "soak"]
    assert prod.summary() == ("iris@1 -> prod: awaiting (approval: awaiting approval: 0 of 1; soak: held staging "
                              "for 1.00 h of 24 h: 23.00 h to go)")
    approve(store, 1, "prod", "ada")
    later = gates(store, root, 1, "prod", now="2026-03-02T00:00:00Z")
    assert later.passed and later.summary() == "iris@1 -> prod: passed"
    move(store, 1, "prod", at="2026-03-02T00:00:00Z")

    register(store, iris_weak, accuracy=0.7)  # a deliberately worse version
    move(store, 2, "dev")
    staging = gates(store, root, 2, "staging")
    assert staging.status == "failed" and [r.kind for r in staging.blocking] == ["metric"]
    move(store, 2, "staging", at="2026-03-01T00:00:00Z")  # say someone forced it there
    approve(store, 2, "prod", "ada")
    prod = gates(store, root, 2, "prod")
    assert prod.status == "failed" and not prod.awaiting and [r.kind for r in prod.blocking] == ["champion"]
    assert "vs champion v1" in prod.summary()
    report = prod.to_dict()
    assert json.loads(json.dumps(report)) == report  # what a gates_evaluated event holds
    assert report["passed"] is False and [g["kind"] for g in report["gates"]][0] == "order"
    assert GateResult.from_dict(report["gates"][1]) == prod.results[1]


def test_a_gate_that_cannot_be_evaluated_is_an_error_result(store: LocalStore, root: Path, iris: Trained,
                                                            iris_weak: Trained) -> None:
    register(store, iris)
    register(store, iris_weak)
    move(store, 1, "prod")
    spec = model_spec()
    spec = dataclasses.replace(spec, evaluation=None)
    stages = [{"name": "prod", "gates": [{"champion": {"metrics": ["accuracy"]}}, {"approval": {}}]}]
    report = gates(store, root, 2, "prod", stages, spec=spec)
    champion = report.results[1]
    assert champion.status == "error" and not champion.passed
    assert champion.summary.startswith("models/iris.yaml: model 'iris' has no evaluation data: add evaluation")
    assert report.status == "failed" and not report.awaiting  # an error blocks, waiting will not fix it
    with_data = gates(store, root, 2, "prod", stages)  # the spec names data, but the file is not there
    assert with_data.results[1].summary == "models/iris.yaml: $.evaluation.data: data/holdout.csv does not exist"


def test_unknown_stages_and_versions_are_errors(store: LocalStore, root: Path, iris: Trained) -> None:
    register(store, iris)
    with pytest.raises(MlopsError, match=r"mlops.yaml: there is no stage 'qa' \(stages: dev, staging, prod\)"):
        gates(store, root, 1, "qa")
    with pytest.raises(MlopsError, match=r"model .iris. has no version 7 \(it has version 1\)"):
        gates(store, root, 7, "dev")


def test_the_registry_of_gate_kinds() -> None:
    assert set(GATES) == {"metric", "champion", "latency", "signature", "approval", "soak"}
    assert gate_kind({"metric": "accuracy", "op": ">=", "threshold": 1}) == "metric"
    assert gate_kind({"soak": {"hours": 1}}) == "soak"
    assert all(callable(g) for g in GATES.values())
    assert "evaluation" in GateContext.__dataclass_fields__
