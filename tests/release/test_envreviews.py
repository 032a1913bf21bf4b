"""Reviewers of a GitHub Environment become approvals: only approvals of that environment, once per run and
reviewer, only for pins not applied yet; garbage from the API is no approval."""

from __future__ import annotations

from typing import Any

import pytest

from mlops.errors import GitHubError
from mlops.stages.envreviews import current_run_id, environment_reviewers


def review(login: Any, env: str = "production", state: str = "approved", comment: Any = "") -> dict[str, Any]:
    return {"state": state, "comment": comment, "user": {"login": login}, "environments": [{"name": env}]}


def test_only_approvals_of_the_environment_count_once_each() -> None:
    approvals = [review("carol", comment=" ship it "), review("carol", comment="again"), review("bob", "staging"),
                 review("erin", state="rejected"), review("alice")]
    assert environment_reviewers(approvals, "production") == [("alice", ""), ("carol", "ship it")]


@pytest.mark.parametrize("garbage", [
    {"state": "approved", "user": "carol", "environments": [{"name": "production"}]},
    {"state": "approved", "user": {"login": ["carol"]}, "environments": [{"name": "production"}]},
    {"state": "approved", "user": {"login": "carol"}, "environments": "production"},
    {"state": "approved", "user": {"login": "carol"}, "environments": ["production"]},
    {"state": True, "user": {"login": "carol"}, "environments": [{"name": "production"}]},
    {"state": "approved", "user": {"login": ""}, "environments": [{"name": "production"}]},
])
def test_malformed_answers_are_no_approval(garbage: dict[str, Any]) -> None:
    assert environment_reviewers([garbage], "production") == []


def test_the_run_id_comes_from_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "77")
    assert current_run_id() == 77
    for bad in ("", "0", "12abc", "-3"):
        monkeypatch.setenv("GITHUB_RUN_ID", bad)
        with pytest.raises(GitHubError, match="GITHUB_RUN_ID is not set"):
            current_run_id()
