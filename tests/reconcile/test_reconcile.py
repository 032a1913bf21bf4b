"""The main job end to end: `mlops reconcile` on the example project, for real (venv, sklearn, skl2onnx, onnxruntime)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gitrepo import Repo, example_repo, mlops

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def reconciled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repo, subprocess.CompletedProcess[str]]:
    repo = example_repo(tmp_path_factory.mktemp("e2e") / "repo")
    return repo, mlops(repo, "reconcile", "--output", "json")


def test_first_reconcile_builds_trains_and_registers_with_lineage(
        reconciled: tuple[Repo, subprocess.CompletedProcess[str]]) -> None:
    repo, out = reconciled
    report = json.loads(out.stdout)
    status = {r["action"]: r["status"] for r in report["results"]}
    assert status["build_environment:environment/sklearn"] == "succeeded"
    assert status["run_pipeline:pipeline/wine-train"] == "succeeded"
    assert status["register_model:model/wine-classifier"] == "succeeded"
    assert status["deploy:endpoint/wine"] == "skipped"  # serving arrives with its own issue, and says so
    show = json.loads(mlops(repo, "models", "show", "wine-classifier@1", "--output", "json").stdout)
    assert show["version"] == 1 and show["flavor"] == "onnx"
    assert show["metrics"]["accuracy"] >= 0.9
    assert [t["name"] for t in show["signature"]["inputs"]] == ["input"]
    lineage = show["lineage"]
    assert lineage["git_commit"] == repo.git("rev-parse", "HEAD")
    assert lineage["git_message"] == "example project"
    assert lineage["git_author"] == "Test User <test@example.com>"
    assert lineage["pipeline"] == "wine-train" and lineage["pipeline_run"]
    assert lineage["environment_identity"] and len(lineage["environment_identity"]) == 64
    assert any(k.startswith("train.") for k in lineage["input_digests"])


def test_second_reconcile_does_nothing(reconciled: tuple[Repo, subprocess.CompletedProcess[str]]) -> None:
    repo, _ = reconciled
    out = mlops(repo, "reconcile")
    assert "No changes. Live state matches the specs." in out.stdout
    assert "Apply: nothing to do." in out.stdout
    runs = json.loads(mlops(repo, "runs", "--output", "json").stdout)
    assert len(runs) == 1  # nothing ran again


def test_param_change_reruns_only_downstream_steps_and_registers_v2(
        reconciled: tuple[Repo, subprocess.CompletedProcess[str]]) -> None:
    repo, _ = reconciled
    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.05, max_iter: 2000}")
    repo.commit("stronger regularisation")
    report = json.loads(mlops(repo, "reconcile", "--output", "json").stdout)
    run = next(r for r in report["results"] if r["action"] == "run_pipeline:pipeline/wine-train")
    assert run["details"]["ran"] == ["train", "evaluate", "export"]
    assert run["details"]["cached"] == ["prepare"]
    reg = next(r for r in report["results"] if r["action"] == "register_model:model/wine-classifier")
    assert reg["status"] == "succeeded" and reg["details"]["version"] == 2
    v2 = json.loads(mlops(repo, "models", "show", "wine-classifier@2", "--output", "json").stdout)
    assert v2["lineage"]["git_message"] == "stronger regularisation"


def test_retraining_to_identical_bytes_is_not_a_new_version(
        reconciled: tuple[Repo, subprocess.CompletedProcess[str]]) -> None:
    repo, _ = reconciled
    (repo.path / "pipelines/wine/export.py").write_text((repo.path / "pipelines/wine/export.py").read_text()
                                                        + "# a comment changes the code, not the model\n")
    repo.commit("comment in export")
    report = json.loads(mlops(repo, "reconcile", "--output", "json").stdout)
    run = next(r for r in report["results"] if r["action"] == "run_pipeline:pipeline/wine-train")
    assert run["details"]["ran"] == ["export"]
    reg = next(r for r in report["results"] if r["action"] == "register_model:model/wine-classifier")
    assert reg["status"] == "skipped" and reg["message"] == "identical content is already wine-classifier@2"


def test_saved_plan_applies_once_then_is_stale(reconciled: tuple[Repo, subprocess.CompletedProcess[str]],
                                               tmp_path: Path) -> None:
    repo, _ = reconciled
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    repo.commit("two threads")
    plan_file = str(tmp_path / "plan.json")
    mlops(repo, "plan", "--out", plan_file)
    plan = json.loads(Path(plan_file).read_text())
    assert plan["actions"][0]["id"] == "build_environment:environment/sklearn"
    first = mlops(repo, "apply", plan_file, "--output", "json")
    assert json.loads(first.stdout)["ok"] is True
    again = mlops(repo, "apply", plan_file, check=False)
    assert again.returncode == 3
    assert "the plan was made against state serial" in again.stderr and "make a new plan" in again.stderr


def test_plan_refused_when_specs_changed_after_planning(reconciled: tuple[Repo, subprocess.CompletedProcess[str]],
                                                        tmp_path: Path) -> None:
    repo, _ = reconciled
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"2\"", "OMP_NUM_THREADS: \"3\"")
    plan_file = str(tmp_path / "plan.json")
    mlops(repo, "plan", "--out", plan_file)
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"3\"", "OMP_NUM_THREADS: \"4\"")
    out = mlops(repo, "apply", plan_file, check=False)
    assert out.returncode == 3
    assert "the specs in the working tree changed since the plan was made" in out.stderr
    repo.git("checkout", "-q", "--", "environments/sklearn.yaml")


def test_killed_reconcile_is_repaired_by_the_next_one(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    proc = subprocess.Popen([sys.executable, "-m", "mlops.cli", "-C", str(repo.path), "reconcile"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PIP_NO_INDEX": "1"}, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # kill it in the middle of the pipeline run
        if "run_pipeline" in line and line.startswith("→") or time.monotonic() > deadline:
            time.sleep(1.5)
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out = mlops(repo, "reconcile", "--output", "json")
    status = {r["action"]: r["status"] for r in json.loads(out.stdout)["results"]}
    assert status["run_pipeline:pipeline/wine-train"] in ("succeeded", "skipped")
    assert status["register_model:model/wine-classifier"] == "succeeded"
    assert "No changes." in mlops(repo, "reconcile").stdout
    models = json.loads(mlops(repo, "models", "list", "--output", "json").stdout)
    assert [(m["name"], m["versions"]) for m in models] == [("wine-classifier", 1)]
