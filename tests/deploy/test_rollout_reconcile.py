"""A new version entering the stage an endpoint follows rolls out through reconcile's deploy action as the
endpoint's canary says (the example: 10 -> 50 -> 100, 10 s a step, going on when nobody calls it)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.gitrepo import Repo, example_repo, mlops
from tests.servers import stop_servers

pytestmark = pytest.mark.slow


@pytest.fixture()
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    repo = example_repo(tmp_path_factory.mktemp("rollout") / "repo")
    try:
        yield repo
    finally:
        stop_servers(repo.path)


def test_a_retrained_version_rolls_out_as_a_canary_through_reconcile(repo: Repo) -> None:
    mlops(repo, "reconcile")  # v1 enters dev and the endpoint serves it: a new endpoint, all at once
    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.05, max_iter: 2000}")
    repo.commit("stronger regularisation")
    report = json.loads(mlops(repo, "reconcile", "--output", "json").stdout)
    deploy = next(r for r in report["results"] if r["action"] == "deploy:endpoint/wine")
    assert deploy["status"] == "succeeded", deploy
    steps = deploy["details"]["steps"]
    judged = [s for s in steps if "analysis" in s]
    assert [s["weight"] for s in judged] == [10, 50, 100]
    assert [s["traffic"] for s in judged] == [{"blue": 90, "blue-canary": 10}, {"blue": 50, "blue-canary": 50},
                                             {"blue": 0, "blue-canary": 100}]
    # nobody called the endpoint: too few requests, and the example's analysis says to go on
    assert all(s["analysis"]["verdict"] == "inconclusive" for s in judged)
    assert steps[-1]["traffic"] == {"blue": 100}
    live = json.loads(mlops(repo, "status", "wine", "--output", "json").stdout)["endpoints"][0]
    assert live["drift"] is None
    assert [(d["deployment"], d["version"], d["traffic"]) for d in live["live"]] == [("blue", 2, 100)]
    audit = mlops(repo, "audit", "wine", "--at", "now", "--output", "json").stdout
    assert '"deployment": "blue-canary"' not in audit and '"version": 2' in audit
