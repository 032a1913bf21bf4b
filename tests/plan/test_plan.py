"""The plan is a value: ordered actions with reasons, serialisable, rendered as text and Markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.errors import PlanError
from mlops.graph.compare import compare
from mlops.plan.build import make_plan
from mlops.plan.live import LiveState
from mlops.plan.model import Plan
from mlops.plan.render import MARKER, render
from tests.gitrepo import Repo, example_repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")


def plan_for(repo: Repo, base: str, head: str | None, live: LiveState | None = None) -> Plan:
    cmp = compare(repo.path, base, head)
    return make_plan(cmp, live or LiveState(refreshed=False), repo.git("rev-parse", "HEAD"))


def test_first_plan_orders_every_action_by_dependency(repo: Repo) -> None:
    plan = plan_for(repo, "empty", None)
    assert [a.id for a in plan.actions] == [
        "build_environment:environment/serving",
        "build_environment:environment/sklearn",
        "run_pipeline:pipeline/wine-train",
        "register_model:model/wine-classifier",
        "evaluate_gates:model/wine-classifier@dev",
        "promote:model/wine-classifier@dev",
        "propose_promotion:model/wine-classifier@staging",
        "deploy:endpoint/wine",
    ]
    by_id = {a.id: a for a in plan.actions}
    assert by_id["run_pipeline:pipeline/wine-train"].depends_on == ("build_environment:environment/sklearn",)
    assert by_id["register_model:model/wine-classifier"].depends_on == ("run_pipeline:pipeline/wine-train",)
    assert set(by_id["deploy:endpoint/wine"].depends_on) == {"build_environment:environment/serving",
                                                             "promote:model/wine-classifier@dev"}
    assert by_id["run_pipeline:pipeline/wine-train"].details["steps"] == ["prepare", "train", "evaluate", "export"]
    assert all(a.change == "created" for a in plan.actions)


def test_param_change_plans_only_the_pipeline_and_downstream(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.5, max_iter: 2000}")
    head = repo.commit("less regularisation")
    plan = plan_for(repo, base, head)
    assert [a.kind for a in plan.actions] == ["run_pipeline", "register_model", "evaluate_gates", "promote", "propose_promotion",
                                            "deploy"]
    run = plan.actions[0]
    assert run.details["steps"] == ["train", "evaluate", "export"]
    assert run.reason == "pipelines/wine.yaml changed → step wine-train/train → pipeline wine-train"
    assert plan.base.rev == base and plan.head.rev == head and plan.head.commit == head


def test_removed_assets_are_pruned_and_no_change_means_no_actions(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    assert plan_for(repo, base, base).actions == ()
    repo.git("rm", "-q", "endpoints/wine.yaml", "environments/serving.yaml")
    head = repo.commit("retire the endpoint")
    plan = plan_for(repo, base, head)
    assert [(a.kind, a.asset, a.symbol) for a in plan.actions] == [
        ("prune", "endpoint/wine", "-"), ("prune", "environment/serving", "-")]


def test_live_state_gap_is_planned_even_without_a_git_change(repo: Repo) -> None:
    head = repo.git("rev-parse", "HEAD")
    plan = plan_for(repo, head, head, LiveState(serial=3, last_applied_commit=head))
    assert [a.kind for a in plan.actions] == ["run_pipeline", "register_model", "evaluate_gates", "promote", "propose_promotion",
                                            "deploy"]
    assert plan.actions[1].reason == "no version of model wine-classifier in the registry (live state)"
    assert plan.state_serial == 3
    known = LiveState(serial=3, registered_models=frozenset({"wine-classifier"}))
    assert plan_for(repo, head, head, known).actions == ()


def test_plan_round_trips_through_json_and_rejects_garbage(repo: Repo, tmp_path: Path) -> None:
    plan = plan_for(repo, "empty", None)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    with pytest.raises(PlanError, match="not a valid plan file"):
        Plan.from_json("{}", origin="x.json")
    data = json.loads(plan.to_json())
    data["actions"][0]["kind"] = "launch_rockets"
    with pytest.raises(PlanError, match="unknown kind 'launch_rockets'"):
        Plan.from_json(json.dumps(data))
    data["format"] = 99
    with pytest.raises(PlanError, match="plan format 99 is not supported"):
        Plan.from_json(json.dumps(data))


def test_renderings(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", "endpoints/wine.yaml")
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    plan = plan_for(repo, base, None)
    text = render(plan, "text")
    assert "  ~ build_environment  environment/sklearn" in text
    assert "  - prune              endpoint/wine" in text
    assert "environments/sklearn.yaml changed → environment sklearn" in text
    md = render(plan, "markdown")
    assert md.startswith(MARKER)
    assert "| ~ | `build_environment` | `environment/sklearn` |" in md
    assert "\n\n| | action | asset | why |\n|---|---|---|---|\n" in md
    empty = render(plan_for(repo, base, base), "text")
    assert "No changes." in empty


def test_cli_plan_writes_plan_file_and_step_summary(repo: Repo, tmp_path: Path) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    summary = tmp_path / "summary.md"
    out = subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo.path), "plan", "--no-refresh", "--base",
                          base, "--out", str(tmp_path / "plan.json"), "--format", "markdown", "--detailed-exitcode"],
                         capture_output=True, text=True, env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    assert out.returncode == 2, out.stderr  # --detailed-exitcode: there are changes (Terraform: 2)
    assert out.stdout.startswith(MARKER)
    saved = Plan.from_json((tmp_path / "plan.json").read_text())
    assert saved.actions[0].id == "build_environment:environment/sklearn"
    assert summary.read_text().startswith(MARKER)


def _cli(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo.path), *args], capture_output=True,
                          text=True)


def test_detailed_exitcode_tells_changes_from_errors(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    assert _cli(repo, "plan", "--no-refresh", "--base", base, "--head", base, "--detailed-exitcode").returncode == 0
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    assert _cli(repo, "plan", "--no-refresh", "--base", base, "--detailed-exitcode").returncode == 2
    repo.write("models/broken.yaml", "kind: Model\nname: broken\n")
    invalid = _cli(repo, "plan", "--no-refresh", "--base", base, "--detailed-exitcode")
    assert invalid.returncode == 9, invalid.stderr  # invalid specs: never 2
    assert "models/broken.yaml:" in invalid.stderr
    assert _cli(repo, "plan", "--no-such-option").returncode == 64  # usage error: never 2 either
    assert _cli(repo, "plan", "--no-refresh", "--base", "not-a-revision").returncode == 9


def test_pull_request_behind_its_base_plans_only_its_own_changes(repo: Repo) -> None:
    """A branch made before main moved on: --merge-base plans what merging it does, not main's changes undone."""
    fork = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "feature")
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    pr_head = repo.commit("feature: two threads")
    repo.git("checkout", "-q", "main")
    repo.write("models/iris.yaml", "kind: Model\nname: iris\nflavor: onnx\nsource: {files: [mlops.yaml]}\n")
    main_tip = repo.commit("main: another model")
    assert fork != main_tip

    naive = json.loads(_cli(repo, "plan", "--no-refresh", "--base", main_tip, "--head", pr_head,
                            "--format", "json").stdout)
    assert "prune:model/iris" in [a["id"] for a in naive["actions"]]  # the bug: main's new model looks removed

    out = _cli(repo, "plan", "--no-refresh", "--base", main_tip, "--head", pr_head, "--merge-base", "--format", "json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["base"]["rev"] == fork
    assert [a["id"] for a in plan["actions"]] == ["build_environment:environment/sklearn", "run_pipeline:pipeline/wine-train",
                                                  "register_model:model/wine-classifier",
                                                  "evaluate_gates:model/wine-classifier@dev",
                                                  "promote:model/wine-classifier@dev",
                                                  "propose_promotion:model/wine-classifier@staging",
                                                  "deploy:endpoint/wine"]
    diff = _cli(repo, "diff", "--base", main_tip, "--head", pr_head, "--merge-base")
    assert "model/iris" not in diff.stdout and "environment/sklearn" in diff.stdout


def test_markdown_shows_file_names_literally() -> None:
    """Reasons name files from the pull request: one named like an image tag or a link rendered as
    one in the plan comment (a tracking pixel, a fake "approve" link)."""
    from mlops.plan.render import _md

    text = _md("steps/x<img src=https://e.example/p.png>[ok](https://e.example)|a_b*c/d.py changed\nnext")
    assert "<img" not in text and "](" not in text and "\n" not in text
    assert text == ("steps/x&lt;img src=https://e.example/p.png&gt;\\[ok\\]\\(https://e.example\\)\\|a\\_b\\*c/d.py "
                    "changed next")
