"""``mlops run`` and ``mlops runs`` as a user runs them: a subprocess in a repository with specs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipelines.demo_repo import git, write

PIPELINE_YAML = """
kind: Pipeline
name: demo
params: {sleep: 0}
steps:
  - name: prepare
    command: [python, pipelines/demo/prepare.py, "${inputs.raw}", "${outputs.clean}"]
    inputs: {raw: data/raw.txt}
    outputs: {clean: out/clean.txt}
  - name: left
    command: [python, pipelines/demo/left.py, "${inputs.clean}", "${outputs.left}"]
    inputs: {clean: "${steps.prepare.outputs.clean}"}
    outputs: {left: out/left.txt}
    params: {scale: 2}
  - name: right
    command: [python, pipelines/demo/right.py, "${inputs.clean}", "${outputs.right}"]
    inputs: {clean: "${steps.prepare.outputs.clean}"}
    outputs: {right: out/right.txt}
  - name: join
    command: [python, pipelines/demo/join.py, "${inputs.left}", "${inputs.right}", "${outputs.model}",
              "${outputs.metrics}"]
    inputs: {left: "${steps.left.outputs.left}", right: "${steps.right.outputs.right}"}
    outputs: {model: out/model, metrics: out/metrics.json}
    metrics: metrics
"""


def mlops(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from mlops.cli.main import main; main()", "-C", str(repo), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def spec_repo(repo: Path) -> Path:
    write(repo, "mlops.yaml", "kind: Project\nname: demo\nstages:\n  - name: dev\n")
    write(repo, "pipelines/demo.yaml", PIPELINE_YAML)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "specs")
    return repo


def test_run_then_noop_then_param_change(spec_repo: Path) -> None:
    first = mlops(spec_repo, "run", "demo")
    assert first.returncode == 0, first.stderr
    assert "demo: succeeded (4 ran)" in first.stdout
    assert "ran  prepare" in first.stderr  # plain progress lines: stderr is not a TTY here

    second = mlops(spec_repo, "run", "demo", "--output", "json")
    assert second.returncode == 0, second.stderr
    record = json.loads(second.stdout)
    assert [s["status"] for s in record["steps"]] == ["cached"] * 4
    assert record["git_dirty"] is False and record["steps"][3]["metrics"] == {"chars": 34}

    # an edited spec is seen (the memo of validated specs is keyed by the spec files' content)
    spec = spec_repo / "pipelines/demo.yaml"
    spec.write_text(spec.read_text().replace("{scale: 2}", "{scale: 5}"))
    third = mlops(spec_repo, "run", "demo", "--output", "json", "--jobs", "1")
    assert [s["status"] for s in json.loads(third.stdout)["steps"]] == ["cached", "ran", "cached", "ran"]
    assert (spec_repo / "out/left.txt").read_text().endswith("scaled by 5")

    forced = mlops(spec_repo, "run", "demo", "--force")
    assert forced.returncode == 0 and "(4 ran)" in forced.stdout


def test_failed_step_exits_1_and_names_the_step_and_its_stderr(spec_repo: Path) -> None:
    right = spec_repo / "pipelines/demo/right.py"
    right.write_text(right.read_text() + "\nraise RuntimeError('the shapes are wrong')\n")
    done = mlops(spec_repo, "run", "demo")
    assert done.returncode == 1
    assert "step 'right' of pipeline 'demo' failed: exited with code 1" in done.stderr
    assert "RuntimeError: the shapes are wrong" in done.stderr
    assert "demo: failed (2 ran, 1 failed, 1 skipped)" in done.stdout


def test_runs_lists_records_and_errors_are_one_line(spec_repo: Path) -> None:
    assert mlops(spec_repo, "runs").stderr.strip() == "no runs"
    mlops(spec_repo, "run", "demo")
    mlops(spec_repo, "run", "demo")
    listed = json.loads(mlops(spec_repo, "runs", "demo", "--output", "json").stdout)
    assert [r["status"] for r in listed] == ["succeeded", "succeeded"]
    assert listed[0]["run_id"] < listed[1]["run_id"]
    table = mlops(spec_repo, "runs").stdout.splitlines()
    assert table[0].split() == ["RUN", "PIPELINE", "STATUS", "STARTED", "STEPS", "COMMIT"]
    assert "4 cached" in table[2] and table[2].startswith(listed[1]["run_id"])
    assert json.loads(mlops(spec_repo, "runs", "other", "--output", "json").stdout) == []

    unknown = mlops(spec_repo, "run", "nope")
    assert unknown.returncode == 7
    assert unknown.stderr.strip() == "error: unknown pipeline 'nope' (pipelines: demo)"
