"""The example project's stages end to end, for real: register, enter dev, promote to staging, be blocked at
prod for lack of approval, approve, promote; a worse version is blocked by the champion gate with its numbers;
a rollback; promotion as a pull request against a stand-in GitHub API, whose approving reviews count."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.githubstub import GitHubStub
from tests.gitrepo import Repo, example_repo, mlops
from tests.servers import stop_servers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = example_repo(tmp_path_factory.mktemp("release") / "repo")
    try:
        mlops(repo, "reconcile")
    finally:
        stop_servers(repo.path)  # each copy that reconciles starts its own server, stopped by its fixture
    return repo.path


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Iterator[Repo]:
    shutil.copytree(template, tmp_path / "repo", symlinks=True)
    try:
        yield Repo(tmp_path / "repo")
    finally:
        stop_servers(tmp_path / "repo")


def holders(repo: Repo) -> dict[str, int]:
    from mlops.release.records import model_events, stage_history
    from mlops.store.local import LocalStore

    events = model_events(LocalStore(repo.path / ".mlops"), "wine-classifier")
    return {s: stage_history(events, s)[-1].version for s in ("dev", "staging", "prod")
            if stage_history(events, s)}


def results(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {r["action"]: r for r in json.loads(out.stdout)["results"]}


def promote(repo: Repo, version: int, stage: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return mlops(repo, "promote", f"wine-classifier@{version}", "--to", stage, "--reason", f"to {stage}", **kw)  # type: ignore[arg-type]


def test_dev_then_staging_then_prod_only_through_gates_and_approval(repo: Repo) -> None:
    assert holders(repo) == {"dev": 1}  # the first stage is automatic

    assert mlops(repo, "gates", "wine-classifier@1", "--stage", "prod", check=False).returncode == 10  # not from dev
    promote(repo, 1, "staging")
    assert "stages:\n  staging: 1\n" in (repo.path / "models/wine-classifier.yaml").read_text()
    repo.commit("promote v1 to staging")
    got = results(mlops(repo, "reconcile", "--output", "json"))
    assert got["promote:model/wine-classifier@staging"]["status"] == "succeeded"
    gates = got["evaluate_gates:model/wine-classifier@staging"]["details"]["gates"]["gates"]  # type: ignore[index]
    assert [g["kind"] for g in gates] == ["order", "metric", "latency"] and all(g["passed"] for g in gates)
    assert holders(repo) == {"dev": 1, "staging": 1}

    refused = promote(repo, 1, "prod", check=False)
    assert refused.returncode == 10 and "awaiting approval: 0 of 1" in refused.stderr
    assert not refused.stderr.startswith("error:")  # an answer, not a malfunction
    # pinning prod by hand is no way around the gates: blocked, nothing moves
    repo.edit("models/wine-classifier.yaml", "  staging: 1\n", "  staging: 1\n  prod: 1\n")
    repo.commit("pin prod by hand")
    blocked = results(mlops(repo, "reconcile", "--output", "json"))
    assert blocked["evaluate_gates:model/wine-classifier@prod"]["status"] == "blocked"
    assert "awaiting approval: 0 of 1" in str(blocked["evaluate_gates:model/wine-classifier@prod"]["message"])
    assert blocked["promote:model/wine-classifier@prod"]["status"] == "blocked"
    assert "prod" not in holders(repo)

    mlops(repo, "approve", "wine-classifier@1", "--stage", "prod", "--reason", "card reviewed")
    done = results(mlops(repo, "reconcile", "--output", "json"))
    assert done["promote:model/wine-classifier@prod"]["status"] == "succeeded"
    assert holders(repo) == {"dev": 1, "staging": 1, "prod": 1}
    history = mlops(repo, "history", "wine-classifier").stdout
    assert "approved" in history and "card reviewed" in history and "-> prod" in history


def test_a_worse_version_is_blocked_by_the_champion_gate_with_its_numbers_and_a_rollback(repo: Repo) -> None:
    for stage in ("staging", "prod"):
        promote(repo, 1, stage, check=False)
        if stage == "prod":
            mlops(repo, "approve", "wine-classifier@1", "--stage", "prod", "--reason", "ok")
            promote(repo, 1, stage)
        repo.commit(f"v1 to {stage}")
        mlops(repo, "reconcile")
    assert holders(repo) == {"dev": 1, "staging": 1, "prod": 1}

    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.005, max_iter: 2000}")
    repo.commit("much stronger regularisation")
    mlops(repo, "reconcile")
    assert holders(repo)["dev"] == 2
    promote(repo, 2, "staging")  # 0.978 >= 0.9: staging takes it
    repo.commit("v2 to staging")
    mlops(repo, "reconcile")
    approved = mlops(repo, "approve", "wine-classifier@2", "--stage", "prod", "--reason", "looks fine")
    assert "`mlops promote wine-classifier@2 --to prod` writes the pin" in approved.stdout  # not pinned yet
    assert mlops(repo, "gates", "wine-classifier@2", "--stage", "nosuch", check=False).returncode == 64
    refused = promote(repo, 2, "prod", check=False)
    assert refused.returncode == 10
    assert re.search(r"champion: accuracy 0\.97\d* vs champion v1 1: improvement -0\.02\d* < min_delta 0", refused.stderr), \
        refused.stderr

    # staging misbehaves: roll it back to v1 at once, on record, and git agrees
    back = mlops(repo, "rollback", "wine-classifier", "--stage", "staging", "--reason", "latency spike",
                 "--output", "json")
    assert json.loads(back.stdout)["from_version"] == 2 and holders(repo)["staging"] == 1
    assert "  staging: 1\n" in (repo.path / "models/wine-classifier.yaml").read_text()
    repo.commit("roll staging back")
    again = mlops(repo, "rollback", "wine-classifier", "--stage", "staging", "--to", "1", "--reason", "x", check=False)
    assert again.returncode == 5 and "wine-classifier@1 already holds 'staging'" in again.stderr
    assert "promote" not in mlops(repo, "plan").stdout  # the stage already holds what the pin says
    card = mlops(repo, "models", "card", "wine-classifier@1").stdout
    assert "prod" in card and "approval" in card
    kinds = [json.loads(line)["type"] for line in (repo.path / ".mlops/events.jsonl").read_text().splitlines()]
    for kind in ("pipeline.completed", "model.registered", "model.promoted", "approval.requested", "gate.failed",
                 "model.rolled_back"):
        assert f"dev.mlops.{kind}" in kinds, (kind, kinds)


def _origin_and_clone(repo: Repo, tmp_path: Path) -> Repo:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(origin)], check=True)
    repo.git("remote", "add", "origin", str(origin))
    repo.git("fetch", "-q", "origin")
    return Repo(origin)


def test_promotion_as_a_pull_request_whose_approving_reviews_count(repo: Repo, tmp_path: Path) -> None:
    origin = _origin_and_clone(repo, tmp_path)
    promote(repo, 1, "staging")
    repo.commit("v1 to staging")
    repo.git("push", "-q", "origin", "main")
    mlops(repo, "reconcile")

    with GitHubStub("octo/wine", origin=origin.path) as gh:
        env = gh.env()
        first = promote(repo, 1, "prod", env=env, check=False)
        opened = mlops(repo, "promote", "wine-classifier@1", "--to", "prod", "--pr", "--reason", "ship v1", env=env)
        assert "promotion pull request: https://github.com/octo/wine/pull/1" in opened.stdout, first.stderr
        again = mlops(repo, "promote", "wine-classifier@1", "--to", "prod", "--pr", "--reason", "ship v1", env=env)
        assert "pull/1" in again.stdout and len(gh.pulls) == 1  # updated, never duplicated
        methods = [(r.method, r.path.split("?")[0]) for r in gh.requests]
        assert ("POST", "/repos/octo/wine/pulls") in methods and ("PATCH", "/repos/octo/wine/pulls/1") in methods
        pull = gh.pulls[0]
        assert pull["head"]["ref"] == "mlops/promote/wine-classifier/prod" and pull["base"]["ref"] == "main"
        assert "awaiting approval: 0 of 1" in pull["body"] and "Model card" in pull["body"]
        assert repo.git("status", "--porcelain") == ""  # the working tree was never touched
        pinned = origin.git("show", "mlops/promote/wine-classifier/prod:models/wine-classifier.yaml")
        assert "prod: 1" in pinned

        # the pull request is approved and merged: reconcile on the merge counts the review
        gh.add_review(1, "alice", "CHANGES_REQUESTED")
        gh.add_review(1, "alice", "APPROVED")
        gh.add_review(1, "mallory", "APPROVED", author_association="NONE")  # a drive-by review: not a collaborator
        repo.git("merge", "-q", "--ff-only", "origin/mlops/promote/wine-classifier/prod")
        gh.merge(1, repo.git("rev-parse", "HEAD"))
        got = results(mlops(repo, "reconcile", "--output", "json", env=env))
    assert got["promote:model/wine-classifier@prod"]["status"] == "succeeded", got
    assert holders(repo)["prod"] == 1
    history = json.loads(mlops(repo, "history", "wine-classifier", "--output", "json").stdout)
    approvals = [e for e in history if e["kind"] == "approved"]
    assert [(a["by"], a["evidence"]["source"], a["evidence"]["pull_request"]) for a in approvals] == \
        [("alice", "github-review", 1)]


def test_a_version_in_use_cannot_be_deprecated_and_a_deprecated_one_enters_no_stage(repo: Repo, tmp_path: Path
                                                                                     ) -> None:
    refused = mlops(repo, "models", "deprecate", "wine-classifier@1", "--reason", "old", check=False)
    assert refused.returncode == 5 and "in use and cannot be deprecated: stage dev holds it" in refused.stderr

    from mlops.release.records import append_event
    from mlops.store.local import LocalStore
    from tests.registry.conftest import train_onnx

    other = train_onnx("wine", tmp_path / "model.onnx", batch_dim="batch")  # v2: other bytes
    mlops(repo, "models", "register", "wine-classifier", str(other), "--flavor", "onnx")
    store = LocalStore(repo.path / ".mlops")  # dev moves on to v2, so v1 is free
    append_event(store, "wine-classifier", "promoted", version=2, stage="dev", by="t", why="t",
                 evidence={"from_version": 1})
    in_use = mlops(repo, "models", "deprecate", "wine-classifier@1", "--reason", "superseded", check=False)
    assert in_use.returncode == 5 and "endpoint wine deployment blue serves it" in in_use.stderr  # until...
    mlops(repo, "reconcile")  # ...the endpoint serves what dev holds now
    mlops(repo, "models", "deprecate", "wine-classifier@1", "--reason", "superseded")
    blocked = mlops(repo, "gates", "wine-classifier@1", "--stage", "dev", check=False)
    assert blocked.returncode == 10 and "deprecated (superseded)" in blocked.stdout
    assert "deprecated" in mlops(repo, "history", "wine-classifier").stdout
    for to in (["--to", "1"], []):  # nor does a rollback bring it back, named or as the previous holder
        back = mlops(repo, "rollback", "wine-classifier", "--stage", "dev", *to, "--reason", "v2 is bad", check=False)
        assert back.returncode == 5 and "wine-classifier@1 is deprecated (superseded)" in back.stderr, back.stderr
    assert holders(repo)["dev"] == 2


def test_approving_reviews_of_another_merged_pull_request_approve_nothing(repo: Repo) -> None:
    promote(repo, 1, "staging")
    repo.commit("v1 to staging")
    mlops(repo, "reconcile")
    repo.edit("models/wine-classifier.yaml", "  staging: 1\n", "  staging: 1\n  prod: 1\n")
    repo.commit("pin prod: it waits for an approval")
    assert results(mlops(repo, "reconcile", "--output", "json"))["promote:model/wine-classifier@prod"]["status"] == \
        "blocked"

    repo.write("NOTES.md", "a typo fixed\n")
    sha = repo.commit("fix a typo")  # a pull request that has nothing to do with the pin, approved and merged
    with GitHubStub("octo/wine") as gh:
        gh.pulls.append({"number": 7, "title": "Fix a typo", "body": "", "state": "closed", "merged": True,
                         "merged_at": "2026-11-29T12:00:00Z", "merge_commit_sha": sha, "user": {"login": "bob"},
                         "head": {"ref": "bob/typo", "sha": sha}, "base": {"ref": "main"}})
        gh.add_review(7, "alice", "APPROVED", commit_id=sha)
        got = results(mlops(repo, "reconcile", "--output", "json", env=gh.env()))

    assert got["promote:model/wine-classifier@prod"]["status"] == "blocked"
    assert "awaiting approval: 0 of 1" in str(got["evaluate_gates:model/wine-classifier@prod"]["message"])
    assert "prod" not in holders(repo)


def test_an_approval_of_one_version_does_not_carry_over_when_the_pull_request_moves_to_another(
        repo: Repo, tmp_path: Path) -> None:
    origin = _origin_and_clone(repo, tmp_path)
    promote(repo, 1, "staging")
    repo.commit("v1 to staging")
    mlops(repo, "reconcile")
    repo.edit("pipelines/wine.yaml", "params: {C: 1.0, max_iter: 2000}", "params: {C: 0.5, max_iter: 2000}")
    repo.commit("v2")
    mlops(repo, "reconcile")
    promote(repo, 2, "staging")
    repo.commit("v2 to staging")
    mlops(repo, "reconcile")
    repo.git("push", "-q", "origin", "main")

    with GitHubStub("octo/wine", origin=origin.path) as gh:
        env = gh.env()
        mlops(repo, "promote", "wine-classifier@1", "--to", "prod", "--pr", "--reason", "ship v1", env=env)
        gh.add_review(1, "alice", "APPROVED")  # alice approves v1 ...
        mlops(repo, "promote", "wine-classifier@2", "--to", "prod", "--pr", "--reason", "ship v2", env=env)
        assert len(gh.pulls) == 1 and gh.pulls[0]["title"] == "Promote wine-classifier@2 to prod"  # ... updated
        repo.git("fetch", "-q", "origin")
        repo.git("merge", "-q", "--ff-only", "origin/mlops/promote/wine-classifier/prod")
        gh.merge(1, repo.git("rev-parse", "HEAD"))
        got = results(mlops(repo, "reconcile", "--output", "json", env=env))

    assert got["promote:model/wine-classifier@prod"]["status"] == "blocked", got
    assert "prod" not in holders(repo)
    history = json.loads(mlops(repo, "history", "wine-classifier", "--output", "json").stdout)
    assert not [e for e in history if e["kind"] == "approved"]
