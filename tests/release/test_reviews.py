"""Approving reviews count only for what they approved: the merged pull request that moved this very pin,
at its final head, by a collaborator who is not its author. Whatever the API answers, nothing crashes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from mlops.release.records import model_events
from mlops.stages.reviews import record_review_approvals
from mlops.store.memory import MemoryStore
from tests.githubstub import GitHubStub
from tests.gitrepo import Repo, init_repo

SPEC = "kind: Model\nname: m\nflavor: custom\nsource: {files: [m.bin]}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = init_repo(tmp_path / "repo")
    repo.write("models/m.yaml", SPEC)
    repo.commit("model")
    return repo


def _merged(gh: GitHubStub, number: int, sha: str, head: str | None = None, author: str = "octocat") -> None:
    gh.pulls.append({"number": number, "title": "t", "body": "", "state": "closed", "merged": True,
                     "merged_at": "2026-11-29T12:00:00Z", "merge_commit_sha": sha, "user": {"login": author},
                     "head": {"ref": f"b{number}", "sha": head or sha}, "base": {"ref": "main"}})


def _record(repo: Repo, gh: GitHubStub, store: MemoryStore, commit: str, monkeypatch: pytest.MonkeyPatch) -> int:
    for k, v in gh.env().items():
        monkeypatch.setenv(k, v)
    return record_review_approvals(store, "m", 1, "prod", commit, repo.path, "models/m.yaml")


def test_only_reviews_of_the_pull_request_that_moved_the_pin_count(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    pin = repo.write("models/m.yaml", SPEC + "stages: {prod: 1}\n")
    assert pin.exists()
    pinned = repo.commit("pin prod")
    repo.write("NOTES.md", "typo\n")
    typo = repo.commit("typo")
    with GitHubStub("octo/wine") as gh:
        _merged(gh, 1, pinned)
        _merged(gh, 2, typo)
        for n, sha in ((1, pinned), (2, typo)):
            gh.add_review(n, "alice", "APPROVED", commit_id=sha)
            gh.add_review(n, "octocat", "APPROVED", commit_id=sha)  # the author: never counts
            gh.add_review(n, "mallory", "APPROVED", commit_id=sha, author_association="NONE")
            gh.add_review(n, "carol", "APPROVED", commit_id="0" * 40)  # an earlier head of the pull request
            gh.add_review(n, "dave", "APPROVED", commit_id=sha)
            gh.add_review(n, "dave", "COMMENTED", commit_id=sha)  # a comment does not take an approval back
        assert _record(repo, gh, store, typo, monkeypatch) == 0  # the typo fix did not move the pin
        assert _record(repo, gh, store, pinned, monkeypatch) == 2
        assert _record(repo, gh, store, pinned, monkeypatch) == 0  # recorded once
    assert sorted(e.by for e in model_events(store, "m")) == ["alice", "dave"]


GARBAGE: dict[str, Any] = {
    "a user that is text": [{"merged_at": "x", "number": 1, "user": "bob", "head": {"sha": "a"}}],
    "a number that is text": [{"merged_at": "x", "number": "abc", "head": {"sha": "a"}}],
    "a head that is a list": [{"merged_at": "x", "number": 1, "head": ["a"]}],
    "items that are not objects": [1, "x", None, []],
    "absurdly deep nesting": b"[" * 200_000,
    "an object instead of a list": {"message": "hi"},
}


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_from_the_api_is_no_approval_and_no_crash(repo: Repo, monkeypatch: pytest.MonkeyPatch,
                                                         name: str) -> None:
    from mlops.errors import GitHubError

    repo.write("models/m.yaml", SPEC + "stages: {prod: 1}\n")
    pinned = repo.commit("pin prod")
    with GitHubStub("octo/wine") as gh:
        gh.answer("GET", f"/repos/octo/wine/commits/{pinned}/pulls", 200, GARBAGE[name])
        gh.reviews[1] = [{"user": "alice", "state": "APPROVED"}, "x", {"user": {"login": 5}, "state": "APPROVED"}]
        # a clear error (the action fails, saying what GitHub answered), never an internal one
        with contextlib.suppress(GitHubError):
            assert _record(repo, gh, MemoryStore(), pinned, monkeypatch) == 0
