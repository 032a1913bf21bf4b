"""GitOps on ephemeral CI runners with no service at all: the store is git refs on origin.

Two fresh clones of one bare origin stand for two CI runs on two throw-away machines. Nothing is
shared between them but that origin (``stores.artifacts: {type: git}``): the second sees the first's
registry, stage, audit trail, step cache (a retune re-runs only what changed) and undelivered events.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.gitrepo import Repo, clone_repo, example_repo, mlops
from tests.httpstub import Reply, Stub
from tests.servers import stop_servers

pytestmark = pytest.mark.slow
QUICK_EVENTS = {"MLOPS_EVENTS_MAX_WAIT": "1"}


clone = clone_repo


def test_second_runner_sees_registry_stages_cache_and_events_through_origin_alone(tmp_path: Path) -> None:
    with Stub() as hook:
        seed = example_repo(tmp_path / "seed")
        seed.edit("mlops.yaml", "artifacts: {type: local, path: .mlops}", "artifacts: {type: git}")
        seed.edit("mlops.yaml", "  - {type: log, path: .mlops/events.jsonl}",
                  f"  - {{type: webhook, url: '{hook.url}/hook'}}")
        seed.commit("state in git refs on origin")
        origin = tmp_path / "origin.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(seed.path), str(origin)], check=True)
        try:
            _two_runners(origin, tmp_path, hook)
        finally:
            for runner in ("runner1", "runner2", "pr-job"):
                stop_servers(tmp_path / runner)


def _two_runners(origin: Path, tmp_path: Path, hook: Stub) -> None:
    hook.default = lambda _r: Reply(503)  # the receiver is down during the first run
    first = clone(origin, tmp_path / "runner1")
    report = json.loads(mlops(first, "reconcile", "--output", "json", env=QUICK_EVENTS).stdout)
    statuses = {r["action"]: r["status"] for r in report["results"]}
    assert statuses["register_model:model/wine-classifier"] == "succeeded"
    assert not (first.path / ".mlops" / "records").exists()  # nothing of the state stayed on the runner

    # a pull request's job holds a read-only token: it reuses the step cache and pushes nothing
    refs = Repo(origin).git("for-each-ref")
    pr = clone(origin, tmp_path / "pr-job")
    run = json.loads(mlops(pr, "run", "wine-train", "--output", "json", env={"MLOPS_GIT_STORE_PUSH": "0"}).stdout)
    assert {s["name"]: s["status"] for s in run["steps"]} == dict.fromkeys(
        ["prepare", "train", "evaluate", "export"], "cached")
    assert Repo(origin).git("for-each-ref") == refs

    second = clone(origin, tmp_path / "runner2")
    assert second.git("for-each-ref", "refs/mlops/") == ""  # an ordinary clone fetches none of it
    shown = json.loads(mlops(second, "models", "show", "wine-classifier@1", "--output", "json").stdout)
    assert shown["lineage"]["git_message"] == "state in git refs on origin"
    trail = json.loads(mlops(second, "history", "wine-classifier", "--output", "json").stdout)
    assert any(e["kind"] == "promoted" and e["stage"] == "dev" and e["version"] == 1 for e in trail), trail

    hook.default = lambda _r: Reply(200)  # the receiver is back: the next runner delivers the kept events
    flushed = json.loads(mlops(second, "events", "flush", "--output", "json").stdout)
    delivered = [o for o in flushed["outcomes"] if o["status"] == "delivered"]
    assert delivered and {r.path for r in hook.requests} == {"/hook"}

    out = mlops(second, "reconcile")  # state, registry and stage from origin: nothing to run or register
    assert "run_pipeline" not in out.stdout and "register_model" not in out.stdout

    second.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.2, max_iter: 2000}")
    second.commit("retune")
    report = json.loads(mlops(second, "reconcile", "--output", "json").stdout)
    run = next(r for r in report["results"] if r["action"] == "run_pipeline:pipeline/wine-train")
    assert run["details"]["cached"] == ["prepare"]  # a cache hit on the first runner's step
    assert run["details"]["ran"] == ["train", "evaluate", "export"]
    assert (second.path / "data/wine/train.csv").is_file()  # restored from origin, never computed here
    runs = json.loads(mlops(first, "runs", "--output", "json").stdout)
    assert len(runs) == 2  # the first runner sees the second one's run record too
