"""The main job end to end: `mlops reconcile` on the example project, for real (venv, sklearn, skl2onnx, onnxruntime).

One reconcile of the example is made per module and copied for each test, so every test starts from the
same reconciled repository (store, environments and all) and none depends on another having run first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gitrepo import Repo, example_repo, mlops
from tests.servers import stop_servers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The example after its first reconcile; the server that reconcile started is stopped again at once (each
    copy that reconciles starts its own, and its fixture stops it)."""
    repo = example_repo(tmp_path_factory.mktemp("e2e") / "repo")
    try:
        out = mlops(repo, "reconcile", "--output", "json")
        served = serving(repo)
    finally:
        stop_servers(repo.path)
    return repo.path, out, served


@pytest.fixture
def repo(template: tuple[Path, subprocess.CompletedProcess[str], dict[str, object]], tmp_path: Path
         ) -> Iterator[Repo]:
    """A private copy of the reconciled example (its .mlops store and environments included)."""
    shutil.copytree(template[0], tmp_path / "repo", symlinks=True)
    try:
        yield Repo(tmp_path / "repo")
    finally:
        stop_servers(tmp_path / "repo")


def serving(repo: Repo) -> dict[str, object]:
    """What `mlops status` says of the wine endpoint, and a real prediction from it."""
    status = json.loads(mlops(repo, "status", "wine", "--output", "json").stdout)["endpoints"][0]
    request = {"inputs": [{"name": "input", "shape": [1, 13], "datatype": "FP32",
                           "data": [13.2, 1.78, 2.14, 11.2, 100, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050]}]}
    (repo.path / "request.json").write_text(json.dumps(request))
    answer = mlops(repo, "endpoints", "invoke", "wine", "--data", str(repo.path / "request.json"), check=False)
    (repo.path / "request.json").unlink()
    return {"status": status, "invoke": answer.returncode, "answer": answer.stdout, "stderr": answer.stderr}


def show_sha(repo: Repo) -> str:
    show = json.loads(mlops(repo, "models", "show", "wine-classifier@1", "--output", "json").stdout)
    return str(next(f["digest"] for f in show["files"] if f["path"].endswith(".onnx")))


def state(repo: Repo) -> dict[str, object]:
    return json.loads((repo.path / ".mlops/records/reconcile/state.json").read_text())


def results(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {r["action"]: r for r in json.loads(out.stdout)["results"]}


def run_count(repo: Repo) -> int:
    return len(json.loads(mlops(repo, "runs", "--output", "json").stdout))


def test_first_reconcile_builds_trains_registers_and_serves_with_lineage(
        template: tuple[Path, subprocess.CompletedProcess[str], dict[str, object]]) -> None:
    path, out, served = template
    repo = Repo(path)
    report = json.loads(out.stdout)
    status = {r["action"]: r["status"] for r in report["results"]}
    assert status["build_environment:environment/sklearn"] == "succeeded"
    assert status["run_pipeline:pipeline/wine-train"] == "succeeded"
    assert status["register_model:model/wine-classifier"] == "succeeded"
    # the first stage is automatic: v1 enters dev through its gates, and the wine endpoint serves it
    assert status["evaluate_gates:model/wine-classifier@dev"] == "succeeded"
    assert status["promote:model/wine-classifier@dev"] == "succeeded"
    assert status["propose_promotion:model/wine-classifier@staging"] == "skipped"  # no GitHub token here
    assert status["deploy:endpoint/wine"] == "succeeded"
    assert report["ok"] is True
    live = served["status"]
    assert live["healthy"] is True and live["drift"] is None  # type: ignore[index]
    assert str(live["url"]).startswith("http://127.0.0.1:")  # type: ignore[index]
    assert live["live"] == [{"deployment": "blue", "model": "wine-classifier", "version": 1, "traffic": 100,  # type: ignore[index]
                             "sha256": show_sha(repo)}]
    assert served["invoke"] == 0, served
    answer = json.loads(str(served["answer"]))
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["label"]["data"] == [0] and outputs["probabilities"]["shape"] == [1, 3]  # a cultivar-0 wine
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


def test_second_reconcile_runs_nothing(repo: Repo) -> None:
    before = state(repo)
    assert before["last_applied_commit"] == repo.git("rev-parse", "HEAD")
    assert before["outstanding"] == []
    # this copy's endpoint is not running (the template's server was stopped): drift, deployed again
    out = mlops(repo, "reconcile")
    assert "drift: endpoint wine is not running on target local" in out.stdout
    assert "run_pipeline" not in out.stdout and "register_model" not in out.stdout
    assert run_count(repo) == 1  # nothing ran again
    serial = state(repo)["serial"]
    again = mlops(repo, "reconcile")
    assert "Live state matches the specs" in again.stdout and "deploy" not in again.stdout
    assert state(repo)["serial"] == serial  # and nothing was recorded again


def test_param_change_reruns_only_downstream_steps_and_registers_v2(repo: Repo) -> None:
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
    assert v2["lineage"]["git_dirty"] is False


def test_retraining_to_identical_bytes_is_not_a_new_version(repo: Repo) -> None:
    (repo.path / "pipelines/wine/export.py").write_text((repo.path / "pipelines/wine/export.py").read_text()
                                                        + "# a comment changes the code, not the model\n")
    repo.commit("comment in export")
    report = json.loads(mlops(repo, "reconcile", "--output", "json").stdout)
    run = next(r for r in report["results"] if r["action"] == "run_pipeline:pipeline/wine-train")
    assert run["details"]["ran"] == ["export"]
    reg = next(r for r in report["results"] if r["action"] == "register_model:model/wine-classifier")
    assert reg["status"] == "skipped" and reg["message"] == "identical content is already wine-classifier@1"


def test_saved_plan_applies_once_then_is_stale(repo: Repo, tmp_path: Path) -> None:
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    repo.commit("two threads")
    plan_file = str(tmp_path / "plan.json")
    mlops(repo, "plan", "--out", plan_file)
    plan = json.loads(Path(plan_file).read_text())
    assert plan["actions"][0]["id"] == "build_environment:environment/sklearn"
    assert plan["head"]["tree"] == repo.git("rev-parse", "HEAD^{tree}")
    first = mlops(repo, "apply", plan_file, "--output", "json")
    assert json.loads(first.stdout)["ok"] is True
    again = mlops(repo, "apply", plan_file, check=False)
    assert again.returncode == 3
    assert "the plan was made against state serial" in again.stderr and "make a new plan" in again.stderr


def test_saved_plan_pins_the_code_it_was_made_for(repo: Repo, tmp_path: Path) -> None:
    """plan --out, then a committed code-only change, then apply: the unreviewed code must not run."""
    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.5, max_iter: 2000}")
    repo.commit("retune")
    plan_file = str(tmp_path / "plan.json")
    mlops(repo, "plan", "--out", plan_file)
    before = state(repo)
    (repo.path / "pipelines/wine/train.py").write_text((repo.path / "pipelines/wine/train.py").read_text()
                                                       + "\nopen('unreviewed-code-ran', 'w').write('yes')\n")
    repo.commit("sneak in code")
    out = mlops(repo, "apply", plan_file, check=False)
    assert out.returncode == 3, out.stderr
    assert "HEAD is now" in out.stderr and "make a new plan" in out.stderr
    assert not (repo.path / "unreviewed-code-ran").exists()
    assert state(repo) == before and run_count(repo) == 1

    # The same change left uncommitted is caught by the tree the plan pins (with --allow-dirty plans too).
    repo.git("reset", "-q", "--hard", "HEAD~1")
    mlops(repo, "plan", "--out", plan_file, "--allow-dirty")
    (repo.path / "pipelines/wine/common.py").write_text((repo.path / "pipelines/wine/common.py").read_text()
                                                        + "\nopen('unreviewed-code-ran', 'w').write('yes')\n")
    out = mlops(repo, "apply", plan_file, check=False)
    assert out.returncode == 3, out.stderr
    assert "files in the working tree changed since the plan was made (pipelines/wine/common.py)" in out.stderr
    assert not (repo.path / "unreviewed-code-ran").exists()


def test_dirty_tree_is_refused_unless_allowed_and_then_recorded_as_it_was(repo: Repo) -> None:
    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.05, max_iter: 2000}")
    refused = mlops(repo, "reconcile", check=False)
    assert refused.returncode == 9
    assert "uncommitted changes (pipelines/wine.yaml)" in refused.stderr and "--allow-dirty" in refused.stderr
    assert run_count(repo) == 1

    dirty = results(mlops(repo, "reconcile", "--allow-dirty", "--output", "json"))
    assert dirty["register_model:model/wine-classifier"]["details"] == {"version": 2}
    v2 = json.loads(mlops(repo, "models", "show", "wine-classifier@2", "--output", "json").stdout)
    assert v2["lineage"]["git_dirty"] is True
    recorded = state(repo)
    assert recorded["dirty"] is True and recorded["head_commit"] == repo.git("rev-parse", "HEAD")
    snapshot = str(recorded["last_applied_commit"])
    assert snapshot != recorded["head_commit"]
    assert repo.git("show", f"{snapshot}:pipelines/wine.yaml") == (repo.path / "pipelines/wine.yaml").read_text().strip()
    assert repo.git("rev-parse", "refs/mlops-local/applied") == snapshot

    # an unchanged dirty tree is a no-op: nothing re-planned, no new run record
    again = mlops(repo, "reconcile", "--allow-dirty")
    assert "run_pipeline" not in again.stdout and run_count(repo) == 2
    assert state(repo)["serial"] == recorded["serial"]

    # reverting the uncommitted edit is a change again (the latest version came from it)
    repo.git("checkout", "-q", "--", "pipelines/wine.yaml")
    back = results(mlops(repo, "reconcile", "--output", "json"))
    assert back["register_model:model/wine-classifier"]["message"] == "identical content is already wine-classifier@1"
    assert state(repo)["dirty"] is False and state(repo)["last_applied_commit"] == repo.git("rev-parse", "HEAD")


def test_plan_refused_when_specs_changed_after_planning(repo: Repo, tmp_path: Path) -> None:
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"3\"")
    plan_file = str(tmp_path / "plan.json")
    plan = mlops(repo, "plan", "--out", plan_file)
    assert "apply refuses this plan" in plan.stdout  # made on a dirty tree without --allow-dirty
    assert mlops(repo, "apply", plan_file, check=False).returncode == 9

    mlops(repo, "plan", "--out", plan_file, "--allow-dirty")
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"3\"", "OMP_NUM_THREADS: \"4\"")
    out = mlops(repo, "apply", plan_file, check=False)
    assert out.returncode == 3
    assert "the specs in the working tree changed since the plan was made" in out.stderr


def test_tampered_plan_files_are_refused(repo: Repo, tmp_path: Path) -> None:
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    repo.commit("two threads")
    plan_file = tmp_path / "plan.json"
    mlops(repo, "plan", "--out", str(plan_file))
    good = json.loads(plan_file.read_text())
    before = state(repo)
    tampered = [
        ({**good, "head": {**good["head"], "commit": "not-a-commit"}}, "head.commit 'not-a-commit' is not a full git"),
        ({**good, "head": {**good["head"], "tree": "0" * 40}}, "files in the working tree changed"),
        ({**good, "state_serial": "1"}, "state_serial '1' is not a non-negative integer"),
        ({**good, "actions": [{**good["actions"][0], "depends_on": ["nope"]}]}, "is malformed"),
        ({**good, "actions": [{**good["actions"][0], "kind": "rm_rf"}]}, "unknown kind 'rm_rf'"),
    ]
    for data, message in tampered:
        plan_file.write_text(json.dumps(data))
        out = mlops(repo, "apply", str(plan_file), check=False)
        assert out.returncode == 3, (message, out.stderr)
        assert message in out.stderr and "internal error" not in out.stderr
    plan_file.write_bytes(b"\xff\xfe garbage")
    assert "not UTF-8" in mlops(repo, "apply", str(plan_file), check=False).stderr
    assert state(repo) == before  # nothing was recorded
    assert "build_environment" in mlops(repo, "plan").stdout  # and later plans still work


def test_failed_apply_keeps_the_last_applied_commit_and_shows_each_failure_once(repo: Repo) -> None:
    applied = state(repo)["last_applied_commit"]
    train = repo.path / "pipelines/wine/train.py"
    good = train.read_text()
    train.write_text(good.replace("def main", "def helper():\n    raise RuntimeError('bad training code')\n\n\ndef main", 1)
                     + "\nhelper()\n")
    broken = repo.commit("broken training")
    out = mlops(repo, "reconcile", check=False)
    assert out.returncode == 1
    assert state(repo)["last_applied_commit"] == applied  # a failed apply never moves the base
    assert (out.stdout + out.stderr).count("RuntimeError: bad training code") == 1  # once, with the stderr tail
    lines = out.stderr.splitlines()
    header = lines.index("→ register_model model/wine-classifier")
    assert lines[header + 1].startswith("  · skipped: not run: run_pipeline:pipeline/wine-train did not succeed")
    assert "✗ failed    run_pipeline:pipeline/wine-train:" in out.stdout and "(details above)" in out.stdout

    train.write_text(good)
    repo.commit("fix training")
    fixed = mlops(repo, "plan")
    assert f"{str(applied)[:10]} → worktree" in fixed.stdout  # still planned from what was applied
    assert broken[:10] not in fixed.stdout.splitlines()[0]
    mlops(repo, "reconcile")
    assert state(repo)["last_applied_commit"] == repo.git("rev-parse", "HEAD")


def test_last_applied_commit_gone_after_a_force_push(repo: Repo) -> None:
    repo.git("commit", "-q", "--amend", "-m", "example project, reworded")  # the applied commit is rewritten
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    out = mlops(repo, "reconcile", check=False)
    assert out.returncode == 9 and "internal error" not in out.stderr
    assert "is not in this clone" in out.stderr and "--base REV" in out.stderr
    recovered = mlops(repo, "reconcile", "--base", "HEAD")
    assert "Apply: 1 succeeded." in recovered.stdout  # the deploy of this copy's endpoint (drift)
    assert state(repo)["last_applied_commit"] == repo.git("rev-parse", "HEAD")


def test_killed_reconcile_is_repaired_by_the_next_one(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    try:
        _kill_and_repair(repo)
    finally:
        stop_servers(repo.path)


def _kill_and_repair(repo: Repo) -> None:
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
    assert "run_pipeline" not in mlops(repo, "reconcile").stdout
    models = json.loads(mlops(repo, "models", "list", "--output", "json").stdout)
    assert [(m["name"], m["versions"]) for m in models] == [("wine-classifier", 1)]
