"""apply runs exactly the plan's actions, in order; failures stop dependents, never the whole report."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.apply.engine import apply_plan
from mlops.apply.protocol import ApplyContext
from mlops.errors import StoreError
from mlops.plan.model import ACTION_KINDS, Action, Plan, Revision
from mlops.spec.model import Project, Specs, StoreConfig
from mlops.store.memory import MemoryStore
from tests.apply.fakes import RecordingExecutor


def make_plan(*actions: Action) -> Plan:
    rev = Revision("worktree", None, "f" * 64)
    return Plan("p", rev, rev, 0, "2026-01-01T00:00:00+00:00", actions)


def act(kind: str, name: str, *deps: str) -> Action:
    return Action(f"{kind}:{name}", kind, name, "changed", "because", {}, deps)


def ctx(tmp_path: Path) -> ApplyContext:
    return ApplyContext(tmp_path, Specs(Project("p", (), StoreConfig())), MemoryStore(), {})


def test_runs_exactly_the_plan_in_order(tmp_path: Path) -> None:
    fake = RecordingExecutor()
    plan = make_plan(act("build_environment", "environment/a"), act("run_pipeline", "pipeline/p",
                                                                    "build_environment:environment/a"))
    report = apply_plan(plan, ctx(tmp_path), dict.fromkeys(ACTION_KINDS, fake))
    assert fake.calls == ["build_environment:environment/a", "run_pipeline:pipeline/p"]
    assert report.ok and report.completed and report.counts == {"succeeded": 2}


def test_failure_skips_dependents_but_not_independent_actions(tmp_path: Path) -> None:
    fake = RecordingExecutor({"run_pipeline:pipeline/p": "failed", "build_environment:environment/b": "raise"})
    plan = make_plan(
        act("run_pipeline", "pipeline/p"),
        act("register_model", "model/m", "run_pipeline:pipeline/p"),
        act("deploy", "endpoint/e", "register_model:model/m"),
        act("build_environment", "environment/b"),
        act("build_environment", "environment/c"),
    )
    report = apply_plan(plan, ctx(tmp_path), dict.fromkeys(ACTION_KINDS, fake))
    assert fake.calls == ["run_pipeline:pipeline/p", "build_environment:environment/b",
                          "build_environment:environment/c"]
    status = {r.action: r.status for r in report.results}
    assert status == {"run_pipeline:pipeline/p": "failed", "register_model:model/m": "skipped",
                      "deploy:endpoint/e": "skipped", "build_environment:environment/b": "failed",
                      "build_environment:environment/c": "succeeded"}
    assert report.results[1].message == "not run: run_pipeline:pipeline/p did not succeed"
    assert report.results[2].details == {"because_of": "register_model:model/m"}
    assert not report.ok and not report.completed


def test_blocked_action_blocks_dependents(tmp_path: Path) -> None:
    fake = RecordingExecutor({"promote:model/m": "blocked"})
    plan = make_plan(act("promote", "model/m"), act("deploy", "endpoint/e", "promote:model/m"))
    report = apply_plan(plan, ctx(tmp_path), dict.fromkeys(ACTION_KINDS, fake))
    assert [r.status for r in report.results] == ["blocked", "blocked"]
    assert report.ok and not report.completed


def test_broken_store_stops_everything(tmp_path: Path) -> None:
    def broken(action: Action, c: ApplyContext) -> None:
        raise StoreError("store unreachable")

    with pytest.raises(StoreError):
        apply_plan(make_plan(act("prune", "model/m")), ctx(tmp_path), {"prune": broken})  # type: ignore[dict-item]
