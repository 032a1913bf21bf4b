"""GitOps on ephemeral CI runners: with an S3-compatible store, a fresh clone knows everything.

Two clones of one origin stand for two CI runs on two fresh machines. Nothing is shared between
them but the git origin and the S3 store (moto's server on 127.0.0.1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gitrepo import Repo, clone_repo, example_repo, mlops
from tests.servers import stop_servers

pytestmark = pytest.mark.slow


clone = clone_repo


def test_second_runner_sees_the_first_runners_state_registry_and_cache(
        tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    origin = example_repo(tmp_path / "origin")
    origin.edit("mlops.yaml", "artifacts: {type: local, path: .mlops}",
                f"artifacts: {{type: s3, bucket: {s3_bucket}, prefix: team/wine, endpoint_url: '{s3_endpoint}'}}")
    origin.commit("artifacts and registry in S3")

    try:
        _two_runners(origin, tmp_path)
    finally:
        for runner in ("runner1", "runner2"):
            stop_servers(tmp_path / runner)


def _two_runners(origin: Repo, tmp_path: Path) -> None:
    first = clone(origin.path, tmp_path / "runner1")
    report = json.loads(mlops(first, "reconcile", "--output", "json").stdout)
    assert {r["action"]: r["status"] for r in report["results"]}["register_model:model/wine-classifier"] == \
        "succeeded"

    second = clone(origin.path, tmp_path / "runner2")
    assert not (second.path / ".mlops").exists() or not any((second.path / ".mlops").rglob("*.json"))
    out = mlops(second, "reconcile")
    # state and registry came from S3: only the endpoint, which runs on the first runner's machine, not here
    assert "drift: endpoint wine is not running on target local" in out.stdout
    assert "Apply: 1 succeeded." in out.stdout
    assert "run_pipeline" not in out.stdout and "register_model" not in out.stdout
    shown = json.loads(mlops(second, "models", "show", "wine-classifier@1", "--output", "json").stdout)
    assert shown["lineage"]["git_message"] == "artifacts and registry in S3"

    # a change on the second runner: the unchanged steps come from the S3 cache, not from running
    second.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.2, max_iter: 2000}")
    second.commit("retune")
    report = json.loads(mlops(second, "reconcile", "--output", "json").stdout)
    run = next(r for r in report["results"] if r["action"] == "run_pipeline:pipeline/wine-train")
    assert run["details"]["cached"] == ["prepare"]
    assert run["details"]["ran"] == ["train", "evaluate", "export"]
    assert (second.path / "data/wine/train.csv").is_file()  # restored from the store, never computed here
    runs = json.loads(mlops(first, "runs", "--output", "json").stdout)
    assert len(runs) == 2  # the first runner sees the second one's run record too
