"""`mlops reconcile --retrain PIPELINE` in a scaffolded project: the pipeline runs again ignoring its cache, and what it builds
follows as if it had changed; an unknown pipeline is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.gitrepo import init_repo


def mlops(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(root), *args], capture_output=True,
                          text=True, timeout=600)


def test_retraining_reruns_and_follows_through(tmp_path: Path) -> None:
    root = tmp_path / "p"
    assert mlops(tmp_path, "init", str(root)).returncode == 0
    repo = init_repo(root)
    repo.commit("init")
    assert mlops(root, "reconcile").returncode == 0
    assert "Apply: nothing to do." in mlops(root, "reconcile").stdout

    proc = mlops(root, "reconcile", "--retrain", "example-train", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    results = {r["action"]: r for r in json.loads(proc.stdout)["results"]}
    assert results["run_pipeline:pipeline/example-train"]["details"]["ran"] == ["prepare", "train", "evaluate"]
    # Same data, same bytes: no new version (a real retraining reads new data).
    assert results["register_model:model/example-classifier"]["message"] == \
        "identical content is already example-classifier@1"
    assert "Apply: nothing to do." in mlops(root, "reconcile").stdout  # nothing left outstanding

    proc = mlops(root, "reconcile", "--retrain", "nope")
    # (the first line is the note that the state stays in this clone: the scaffold has no origin yet)
    assert proc.returncode == 3 and proc.stderr.strip().splitlines()[-1] == \
        "error: --retrain 'nope': no such pipeline or model (known: example-classifier, example-train)"
