"""The pull request's metrics: candidates compared with the stage holders, in Markdown that model-made text
cannot break; and on the example project (ONNX, evaluation data) the confusion matrix and every stage's gates."""

from __future__ import annotations

from pathlib import Path

from mlops.gates.protocol import GateResult
from mlops.reconcile.preview import Candidate, Preview, preview, render_preview
from tests.gitrepo import example_repo


def test_model_made_text_is_escaped_in_the_comment() -> None:
    hostile = "<img src=x onerror=alert(1)> @octocat #1 | x"
    c = Candidate("m", "p", {hostile: 1.0, "accuracy": 0.9}, [("prod", 3, {"accuracy": 0.8, hostile: "`x`"})],
                  [("prod", [GateResult("metric", False, "failed", f"{hostile} < 0.5")])],
                  confusion={"labels": [hostile, "b"], "matrix": [[1, 0], [2, 3]]})
    text = render_preview(Preview(candidates=[c]))
    assert "<img" not in text and "@octocat" not in text and "#1 " not in text
    assert "| accuracy | 0.9 | 0.8 | +0.1 |" in text
    assert "- gates of `prod`: ❌ metric:" in text
    assert "Confusion matrix, candidate (rows: true, columns: predicted):" in text
    rows = [line.count("|") - line.count("\\|") for line in text.splitlines() if line.startswith("|")]
    assert rows == [5, 5, 5, 5, 4, 4, 4, 4], text  # the hostile name stays inside its cell


def test_the_example_candidate_with_its_confusion_matrix_and_gates(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    base = repo.git("rev-parse", "HEAD")
    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.5, max_iter: 2000}")
    repo.commit("less regularisation")
    text = render_preview(preview(repo.path, base, max_steps=10))
    assert text.startswith("### Metrics of this pull request\n\n#### `wine-classifier` (pipeline `wine-train`)\n")
    assert "| metric | candidate |\n|---|---|\n| accuracy |" in text  # no stage holds a version yet
    assert "- gates of `staging`: ✅ metric: accuracy" in text and "latency" in text
    assert "- gates of `prod`:" in text and "⏳ approval" in text
    assert "Confusion matrix, candidate (rows: true, columns: predicted):" in text
    assert not (repo.path / ".mlops" / "records").exists() or not any((repo.path / ".mlops" / "records").rglob("*"))
    small = render_preview(preview(repo.path, base, max_steps=3))
    assert "Not run: the affected pipelines have 4 steps, more than the 3" in small


def test_metrics_too_large_for_a_float_do_not_break_the_comment() -> None:
    huge = 10 ** 400  # a pipeline's metrics file may hold any JSON number
    c = Candidate("m", "p", {"acc": huge, "loss": 1e308}, [("prod", 1, {"acc": 0.5, "loss": -1e308})], [],
                  confusion={"labels": ["a"], "matrix": [[huge]]})
    text = render_preview(Preview(candidates=[c]))
    assert "| acc | 1000000000" in text and "| loss | 1e+308 | -1e+308 | +inf |" in text


def test_a_base_that_looks_like_an_option_is_not_passed_to_git(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = example_repo(tmp_path / "repo")
    out = subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo.path), "github", "pr-metrics",
                          "--base=--all"], capture_output=True, text=True)
    assert out.returncode != 0 and "'--all' is not a revision" in out.stderr, out.stderr
