"""The promotion branch is pushed with the workflow's token given to git through its environment only."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mlops.stages.pullrequest import _push_auth
from tests.gitrepo import init_repo


def test_the_token_goes_to_git_as_a_header_for_the_github_remote_only(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo = init_repo(tmp_path / "repo")
    repo.git("remote", "add", "origin", "https://github.example/octo/wine.git")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret_value")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
    env = _push_auth(repo.path, "origin")
    assert env is not None and env["GIT_CONFIG_KEY_0"] == "http.https://github.example/.extraheader"
    assert env["GIT_CONFIG_VALUE_0"] == "AUTHORIZATION: basic " + base64.b64encode(
        b"x-access-token:ghs_secret_value").decode()
    assert "ghs_secret_value" not in (repo.path / ".git/config").read_text()
    repo.git("remote", "set-url", "origin", "https://elsewhere.example/octo/wine.git")
    assert _push_auth(repo.path, "origin") is None  # never sent to another host
