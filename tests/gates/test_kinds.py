"""Each gate kind passing and failing, with its numbers, on real models, a real store and a real trail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlops.evaluation import Evaluator, evaluate_version
from mlops.release.evaluations import list_evaluations
from mlops.store.local import LocalStore
from tests.evaluation.models import Trained
from tests.gates.conftest import approve, gates, model_spec, move, one, register


def test_order_a_stage_is_entered_only_from_the_one_before(store: LocalStore, root: Path, data: Path,
                                                           iris: Trained) -> None:
    register(store, iris)
    first = one(gates(store, root, 1, "dev"), "order")
    assert first.passed and first.summary == "dev is the first stage: entered from registration"
    skipped = one(gates(store, root, 1, "prod"), "order")
    assert skipped.status == "failed" and skipped.summary == "v1 never held staging: a version enters prod only " \
                                                             "from staging"
    move(store, 1, "dev")
    held = one(gates(store, root, 1, "staging"), "order")
    assert held.passed and held.summary == "v1 holds dev, the stage before staging"
    assert held.evidence == {"previous_stage": "dev", "version": 1, "holds_previous": True,
                             "entered_previous_at": "2026-03-01T00:00:00Z"}


def test_order_after_replacement_and_rollback(store: LocalStore, root: Path, data: Path, iris: Trained,
                                              iris_weak: Trained) -> None:
    register(store, iris)
    register(store, iris_weak)
    move(store, 1, "dev")
    move(store, 2, "dev", at="2026-03-02T00:00:00Z")
    assert one(gates(store, root, 1, "staging"), "order").summary == "v1 held dev, the stage before staging"
    move(store, 1, "dev", at="2026-03-03T00:00:00Z", kind="rolled_back", from_version=2, to_version=1)
    rolled = one(gates(store, root, 2, "staging"), "order")
    assert rolled.status == "failed" and rolled.summary == "v2 was rolled back out of dev: it may not enter staging"


def test_metric_thresholds_from_registration_then_evaluation(store: LocalStore, root: Path, data: Path,
                                                             iris: Trained) -> None:
    register(store, iris, accuracy=0.95, confusion_matrix=[[1]])
    stages = [{"name": "dev", "gates": [{"metric": "accuracy", "op": ">=", "threshold": 0.9},
                                        {"metric": "accuracy", "op": ">", "threshold": 0.97},
                                        {"metric": "f1_macro", "op": ">=", "threshold": 0.5},
                                        {"metric": "auc", "op": ">=", "threshold": 0.5},
                                        {"metric": "confusion_matrix", "op": "==", "threshold": 1}]}]
    report = gates(store, root, 1, "dev", stages)
    ok, high, f1, missing, listed = report.results[1:]
    assert ok.passed and ok.summary == "accuracy 0.95 >= 0.9"
    assert ok.evidence == {"metric": "accuracy", "op": ">=", "threshold": 0.9, "value": 0.95,
                           "source": "registration"}
    assert high.status == "failed" and high.summary == "accuracy 0.95 <= 0.97 (needs > 0.97)"
    ev = evaluate_version(store, model_spec(), 1, root)  # recorded by the gate: the same record
    assert f1.passed and f1.evidence["value"] == ev.metrics["f1_macro"]
    assert f1.evidence["source"] == f"evaluation on data/holdout.csv ({ev.data_digest[:12]})"
    assert missing.status == "failed" and missing.summary.startswith("auc: no such metric for v1 (has: accuracy, ")
    assert "log_loss" in missing.summary
    assert listed.status == "failed" and listed.summary == "confusion_matrix is [[1]], not a number"


def test_champion_blocks_a_worse_version_with_the_numbers(store: LocalStore, root: Path, data: Path,
                                                          iris: Trained, iris_weak: Trained) -> None:
    register(store, iris)
    register(store, iris_weak)
    stages = [{"name": "prod", "gates": [{"champion": {"metrics": ["accuracy", "log_loss"], "min_delta": 0.0}}]}]
    empty = one(gates(store, root, 2, "prod", stages), "champion")
    assert empty.passed and empty.summary == "prod holds no version: no champion to beat"
    move(store, 1, "prod")
    worse = one(gates(store, root, 2, "prod", stages), "champion")
    good = evaluate_version(store, model_spec(), 1, root)
    bad = evaluate_version(store, model_spec(), 2, root)
    assert good.metrics["accuracy"] > bad.metrics["accuracy"] and good.metrics["log_loss"] < bad.metrics["log_loss"]
    assert worse.status == "failed"
    acc, loss = worse.evidence["metrics"]["accuracy"], worse.evidence["metrics"]["log_loss"]
    assert acc == {"challenger": bad.metrics["accuracy"], "champion": good.metrics["accuracy"],
                   "improvement": bad.metrics["accuracy"] - good.metrics["accuracy"], "lower_is_better": False,
                   "passed": False}
    assert loss["improvement"] == good.metrics["log_loss"] - bad.metrics["log_loss"] < 0 and loss["lower_is_better"]
    assert worse.summary.startswith(f"accuracy {bad.metrics['accuracy']:.6g} vs champion v1 "
                                    f"{good.metrics['accuracy']:.6g}: improvement "
                                    f"{bad.metrics['accuracy'] - good.metrics['accuracy']:+.6g} < min_delta 0; ")
    assert "(lower is better)" in worse.summary
    assert worse.evidence["data_digest"] == good.data_digest and worse.evidence["rows"] == len(iris.y)
    assert not worse.evidence["champion_rescored"]
    # the other way round: the better version beats the weak champion, by at least a small delta
    move(store, 2, "prod", at="2026-03-02T00:00:00Z")
    stages[0]["gates"] = [{"champion": {"metrics": ["accuracy"], "min_delta": 0.05}}]
    better = one(gates(store, root, 1, "prod", stages), "champion")
    assert better.passed and better.evidence["metrics"]["accuracy"]["improvement"] >= 0.05
    stages[0]["gates"] = [{"champion": {"metrics": ["accuracy"], "min_delta": 0.9}}]
    assert one(gates(store, root, 1, "prod", stages), "champion").status == "failed"


def test_champion_is_rescored_when_the_held_out_data_changed(store: LocalStore, root: Path, data: Path,
                                                             iris: Trained, iris_weak: Trained) -> None:
    register(store, iris_weak)
    register(store, iris)
    old = evaluate_version(store, model_spec(), 1, root)  # the champion's record, on the old data
    move(store, 1, "prod")
    rows = iris.csv.splitlines()
    data.write_bytes(b"\n".join(rows[:1] + rows[10:]) + b"\n")  # the held-out set changed
    stages = [{"name": "prod", "gates": [{"champion": {"metrics": ["accuracy"]}}]}]
    result = one(gates(store, root, 2, "prod", stages), "champion")
    assert result.passed and result.evidence["champion_rescored"] is True
    assert result.summary.endswith("(champion re-scored: its earlier evaluations used other data or settings)")
    assert result.evidence["data_digest"] != old.data_digest and result.evidence["rows"] == len(iris.y) - 9
    champion_records = list_evaluations(store, "iris", 1)
    assert [e.data_digest for e in champion_records] == [old.data_digest, result.evidence["data_digest"]]
    assert result.evidence["metrics"]["accuracy"]["champion"] == champion_records[1].metrics["accuracy"]
    again = one(gates(store, root, 2, "prod", stages), "champion")  # recorded now: reused, not re-scored
    assert again.evidence["champion_rescored"] is False and len(list_evaluations(store, "iris", 1)) == 2


def test_champion_on_other_data_named_by_the_gate(store: LocalStore, root: Path, data: Path, iris: Trained,
                                                  iris_weak: Trained) -> None:
    register(store, iris)
    register(store, iris_weak)
    move(store, 1, "prod")
    (root / "data/other.csv").write_bytes(b"\n".join(iris.csv.splitlines()[:11]) + b"\n")
    stages = [{"name": "prod", "gates": [{"champion": {"metrics": ["accuracy"], "data": "data/other.csv"}}]}]
    result = one(gates(store, root, 2, "prod", stages), "champion")
    assert result.evidence["data"] == "data/other.csv" and result.evidence["rows"] == 10
    assert Evaluator(store, model_spec(), root).cached(2, "data/other.csv") is not None


def test_latency_is_measured_on_the_versions_own_signature(store: LocalStore, root: Path, iris: Trained) -> None:
    register(store, iris)
    stages = [{"name": "dev", "gates": [{"latency": {"p50_ms": 1e-6, "p95_ms": 1e-6, "batch_size": 8, "runs": 30}},
                                        {"latency": {"p50_ms": 1e6, "p95_ms": 1e6, "batch_size": 8, "runs": 30}},
                                        {"latency": {}}]}]
    slow, fast, default = gates(store, root, 1, "dev", stages).results[1:]
    assert slow.status == "failed" and fast.passed and default.passed
    ev = slow.evidence
    assert ev["runs"] == 30 and ev["warmup"] == 20 and ev["batch_size"] == 8 and ev["intra_op_threads"] == 1
    assert ev["inputs"] == {"input": {"dtype": "tensor(float)", "shape": [8, 4]}}
    assert 0 < ev["min_ms"] <= ev["p50_ms"] <= ev["p95_ms"] <= ev["max_ms"] and np.isfinite(ev["mean_ms"])
    assert ev["limits"] == {"p50_ms": 1e-6, "p95_ms": 1e-6}
    assert slow.summary.startswith(f"p50 {ev['p50_ms']:.3g} ms > 1e-06 ms; p95 {ev['p95_ms']:.3g} ms > 1e-06 ms "
                                   "(p50 ")
    assert fast.summary.endswith("at batch 8 over 30 runs (p50 <= 1e+06 ms, p95 <= 1e+06 ms)")
    assert default.evidence["runs"] == 200 and default.evidence["batch_size"] == 1
    assert default.summary.endswith("(no limit set)")


def test_signature_compatibility_with_the_holder(store: LocalStore, root: Path, iris: Trained, iris_weak: Trained,
                                                 wine: Trained, renamed: Trained) -> None:
    for t in (iris, iris_weak, wine, renamed):
        register(store, t)
    stages = [{"name": "prod", "gates": [{"signature": {}}]}]
    assert one(gates(store, root, 3, "prod", stages), "signature").summary == \
        "prod holds no version: nothing to be compatible with"
    move(store, 1, "prod")
    same = one(gates(store, root, 2, "prod", stages), "signature")
    assert same.passed and same.summary == "compatible with v1 (1 input(s), 2 output(s))"
    wider = one(gates(store, root, 3, "prod", stages), "signature")
    assert wider.status == "failed" and wider.summary == \
        "1 breaking change(s) vs v1: input 'input' shape [?, 4] -> [?, 13]"
    assert wider.evidence["breaking"] == ["input 'input' shape [?, 4] -> [?, 13]"]
    assert wider.evidence["holder_inputs"] == [{"name": "input", "dtype": "tensor(float)", "shape": [None, 4]}]
    other_name = one(gates(store, root, 4, "prod", stages), "signature")
    assert other_name.summary == "2 breaking change(s) vs v1: input 'input' removed; input 'features' added"
    stages[0]["gates"] = [{"signature": {"allow_breaking": True}}]
    allowed = one(gates(store, root, 3, "prod", stages), "signature")
    assert allowed.passed and allowed.summary.startswith("1 breaking change(s) vs v1, allowed: input 'input' shape")


def test_signature_rules() -> None:
    from mlops.gates.signature import accepts, breaking_changes
    from mlops.registry.records import Signature, TensorSpec

    assert accepts((None, 4), ("batch", 4)) and accepts((1, 4), (None, 4)) and accepts((None, 4), None)
    assert not accepts((None, 4), (1, 4)) and not accepts((None, 4), (None, 4, 1)) and not accepts(None, (None,))
    old = Signature((TensorSpec("x", "tensor(float)", (None, 4)),),
                    (TensorSpec("label", "tensor(int64)", (None,)), TensorSpec("p", "tensor(float)", (None, 3))))
    new = Signature((TensorSpec("x", "tensor(double)", (None, 4)),), (TensorSpec("label", "tensor(string)", (None,)),))
    assert breaking_changes(old, new) == ["input 'x' dtype tensor(float) -> tensor(double)",
                                          "output 'label' dtype tensor(int64) -> tensor(string)", "output 'p' removed"]


def test_approval_counts_distinct_allowed_approvers(store: LocalStore, root: Path, iris: Trained) -> None:
    register(store, iris)
    stages = [{"name": "prod", "gates": [{"approval": {"required": 2, "approvers": ["ada", "bob@example.com"]}}]}]
    none = one(gates(store, root, 1, "prod", stages), "approval")
    assert none.status == "awaiting" and none.summary == "awaiting approval: 0 of 2 by ada or bob@example.com"
    approve(store, 1, "prod", "ada")
    approve(store, 1, "prod", "ada")  # the same person twice counts once
    approve(store, 1, "prod", "mallory")
    approve(store, 1, "staging", "Bob <bob@example.com>")  # another stage
    half = one(gates(store, root, 1, "prod", stages), "approval")
    assert half.status == "awaiting" and half.summary == ("awaiting approval: 1 of 2 (ada) by ada or bob@example.com; "
                                                          "not counted: mallory (not among the approvers)")
    assert half.evidence["approved_by"] == ["ada"] and half.evidence["not_allowed"] == ["mallory"]
    approve(store, 1, "prod", "ADA ")  # ada again, under another spelling: still one approver
    assert one(gates(store, root, 1, "prod", stages), "approval").evidence["count"] == 1
    approve(store, 1, "prod", "Bob <BOB@example.com>")
    full = one(gates(store, root, 1, "prod", stages), "approval")
    assert full.passed and full.summary == "2 of 2 approval(s) (ADA , Bob <BOB@example.com>, ada)"
    assert full.evidence["count"] == 2
    # No names given: anyone counts, but each person once (ada and "ADA " are one person): ada, mallory, Bob
    assert one(gates(store, root, 1, "prod", [{"name": "prod", "gates": [{"approval": {"required": 3}}]}]),
               "approval").passed
    four = one(gates(store, root, 1, "prod", [{"name": "prod", "gates": [{"approval": {"required": 4}}]}]), "approval")
    assert four.status == "awaiting" and four.evidence["count"] == 3


def test_an_approval_from_github_actions_is_its_actors_and_counts_once(store: LocalStore, root: Path,
                                                                      iris: Trained) -> None:
    register(store, iris)
    approve(store, 1, "prod", "alice (github actions run 101)")
    approve(store, 1, "prod", "Alice (github actions run 102)")  # alice again, from another run
    two = [{"name": "prod", "gates": [{"approval": {"required": 2}}]}]
    waiting = one(gates(store, root, 1, "prod", two), "approval")
    assert waiting.status == "awaiting" and waiting.evidence["count"] == 1
    named = [{"name": "prod", "gates": [{"approval": {"required": 1, "approvers": ["alice"]}}]}]
    assert one(gates(store, root, 1, "prod", named), "approval").passed  # the actor is the named approver
    approve(store, 1, "prod", "mallory (github actions run 103) <alice>x")
    assert one(gates(store, root, 1, "prod", two), "approval").evidence["count"] == 2  # not alice: someone else


@pytest.mark.parametrize(("now", "status", "summary"), [
    ("2026-03-01T06:00:00Z", "awaiting", "held dev for 6.00 h of 24 h: 18.00 h to go"),
    ("2026-03-02T00:00:00Z", "passed", "held dev for 24.00 h >= 24 h"),
])
def test_soak_counts_the_tenure_of_the_previous_stage(store: LocalStore, root: Path, iris: Trained, now: str,
                                                      status: str, summary: str) -> None:
    register(store, iris)
    move(store, 1, "dev")
    stages = [{"name": "dev"}, {"name": "staging", "gates": [{"soak": {"hours": 24}}]}]
    result = one(gates(store, root, 1, "staging", stages, now=now), "soak")
    assert (result.status, result.summary) == (status, summary)
    assert result.evidence["entered_at"] == "2026-03-01T00:00:00Z" and result.evidence["left_at"] is None


def test_soak_fails_after_a_rollback_or_a_short_tenure(store: LocalStore, root: Path, iris: Trained,
                                                       iris_weak: Trained) -> None:
    register(store, iris)
    register(store, iris_weak)
    stages = [{"name": "dev", "gates": [{"soak": {"hours": 1}}]}, {"name": "staging", "gates": [{"soak": {"hours": 24}}]}]
    assert one(gates(store, root, 1, "staging", stages), "soak").summary == \
        "v1 does not hold dev (never entered it, or was rolled back out of it)"
    move(store, 1, "dev")
    move(store, 2, "dev", at="2026-03-01T02:00:00Z")
    short = one(gates(store, root, 1, "staging", stages), "soak")
    assert short.status == "failed" and short.summary == "held dev for only 2.00 h < 24 h before it was replaced"
    move(store, 1, "dev", at="2026-03-01T03:00:00Z", kind="rolled_back", from_version=2, to_version=1)
    assert one(gates(store, root, 2, "staging", stages), "soak").status == "failed"
    back = one(gates(store, root, 1, "staging", stages), "soak")  # its tenure starts again with the rollback
    assert back.passed and back.evidence["entered_at"] == "2026-03-01T03:00:00Z"
    first = one(gates(store, root, 1, "dev", stages, now="2026-01-01T00:30:00Z"), "soak")
    assert first.status == "awaiting" and first.summary == "registered 0.50 h ago, 1 h needed: 0.50 h to go"
