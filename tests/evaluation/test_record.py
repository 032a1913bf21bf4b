"""Evaluation records: immutable, reused for the same bytes and settings, never for other ones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mlops.errors import CorruptRecordError
from mlops.evaluation import Evaluator, evaluate_version, load_evaluation, save_evaluation
from mlops.evaluation import evaluate as evaluate_module
from mlops.release.evaluations import evaluation_key, list_evaluations
from mlops.store.local import LocalStore
from tests.evaluation.conftest import model_spec, register
from tests.evaluation.models import Trained


def write(root: Path, data: bytes) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data/holdout.csv").write_bytes(data)


def test_a_scoring_is_recorded_once_and_reused(store: LocalStore, root: Path, iris: Trained,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write(root, iris.csv)
    mv = register(store, iris)
    ev = evaluate_version(store, model_spec(), mv, root)
    key = evaluation_key("iris", 1, ev.data_digest, ev.settings)
    assert key.startswith(f"release/models/iris/evaluations/0000000001-{ev.data_digest[:16]}-")
    assert json.loads(store.read_record(key) or b"") == ev.to_dict()
    assert ev.model == "iris" and ev.version == 1 and ev.data == "data/holdout.csv" and ev.task == "classification"
    assert ev.rows == len(iris.y) and ev.importance_metric == "accuracy" and (ev.repeats, ev.seed) == (5, 0)
    assert ev.confusion is not None and sum(map(sum, ev.confusion["matrix"])) == len(iris.y)

    def no_scoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("scored again instead of reusing the record")

    monkeypatch.setattr(evaluate_module, "score_model", no_scoring)
    assert evaluate_version(store, model_spec(), 1, root) == ev
    assert load_evaluation(store, "iris", 1) == ev and load_evaluation(store, "iris", 2) is None


def test_other_data_or_settings_are_scored_again(store: LocalStore, root: Path, iris: Trained) -> None:
    write(root, iris.csv)
    register(store, iris)
    first = evaluate_version(store, model_spec(), 1, root)
    fewer = b"\n".join(iris.csv.splitlines()[:21]) + b"\n"  # the held-out set changed
    write(root, fewer)
    second = evaluate_version(store, model_spec(), 1, root)
    assert second.data_digest != first.data_digest and second.rows == 20
    third = evaluate_version(store, model_spec(repeats=2, seed=3), 1, root)
    assert third.data_digest == second.data_digest and (third.repeats, third.seed) == (2, 3)
    assert len(list_evaluations(store, "iris", 1)) == 3
    assert load_evaluation(store, "iris", 1, first.data_digest) == first
    assert load_evaluation(store, "iris", 1, second.data_digest, second.settings) == second


def test_evaluator_scores_every_version_on_the_same_bytes(store: LocalStore, root: Path, iris: Trained,
                                                          iris_weak: Trained) -> None:
    write(root, iris.csv)
    register(store, iris)
    register(store, iris_weak)
    evaluator = Evaluator(store, model_spec(), root)
    a = evaluator(1)
    write(root, b"changed,target\n1,0\n")  # read once per evaluator: both versions see the same data
    b = evaluator(2)
    assert a.data_digest == b.data_digest and a.metrics["accuracy"] > b.metrics["accuracy"]


def test_records_are_never_rewritten_and_damage_is_named(store: LocalStore, root: Path, iris: Trained) -> None:
    write(root, iris.csv)
    register(store, iris)
    ev = evaluate_version(store, model_spec(), 1, root)
    other = dataclasses.replace(ev, at="2030-01-01T00:00:00Z", metrics={"accuracy": 0.0})
    assert save_evaluation(store, other) == ev  # a concurrent scoring's record stands
    key = evaluation_key("iris", 1, ev.data_digest, ev.settings)
    store.write_record(key, json.dumps({**ev.to_dict(), "confusion": {"labels": [0], "matrix": [[1, 2]]}}).encode())
    with pytest.raises(CorruptRecordError, match=rf"evaluation record {key} in .*confusion matrix.*delete that record"):
        evaluate_version(store, model_spec(), 1, root)
    store.write_record(key, b"{")
    with pytest.raises(CorruptRecordError, match=rf"evaluation record {key} .* not valid JSON"):
        load_evaluation(store, "iris", 1)
    store.write_record(key, json.dumps({**ev.to_dict(), "version": 2}).encode())
    with pytest.raises(CorruptRecordError, match="does not describe the evaluation its key names"):
        load_evaluation(store, "iris", 1)
