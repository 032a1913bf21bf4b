"""The GitHub REST client against a stand-in API on 127.0.0.1: exact requests, pagination,
retries, rate limits, errors, and a token that never leaks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mlops.errors import GitHubError, MlopsError
from mlops.github import GitHubClient
from tests.githubstub import GitHubStub
from tests.httpstub import Reply, Stub

TOKEN = "ghp_test_token_0123456789"


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub("octo/wine", TOKEN) as stub:
        yield stub


def client(gh: Stub, **options: Any) -> GitHubClient:
    options = {"backoff": 0.01, "timeout": 5.0, **options}
    return GitHubClient(TOKEN, "octo/wine", gh.url, **options)


def test_the_exact_requests_of_issues_and_comments(gh: GitHubStub) -> None:
    c = client(gh)
    assert c.find_issue("mlops: model/wine") is None
    issue = c.create_issue("mlops: model/wine", "hello", labels=["mlops"])
    comment = c.create_issue_comment(issue["number"], "more")
    assert c.find_issue("mlops: model/wine", labels=["mlops"])["number"] == issue["number"]  # type: ignore[index]
    assert [(r.method, r.target) for r in gh.requests] == [
        ("GET", "/repos/octo/wine/issues?state=open&per_page=100"),
        ("POST", "/repos/octo/wine/issues"),
        ("POST", "/repos/octo/wine/issues/1/comments"),
        ("GET", "/repos/octo/wine/issues?state=open&labels=mlops&per_page=100"),
    ]
    first = gh.requests[1]
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.headers["accept"] == "application/vnd.github+json"
    assert first.headers["x-github-api-version"] == "2022-11-28"
    assert first.headers["user-agent"].startswith("mlops/")
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {"title": "mlops: model/wine", "body": "hello", "labels": ["mlops"]}
    assert gh.requests[2].json() == {"body": "more"}
    assert comment["issue"] == 1


def test_find_issue_skips_pull_requests_and_other_titles(gh: GitHubStub) -> None:
    c = client(gh)
    c.create_pull_request("mlops: model/wine", "promote", "main", "body")  # same title, but a pull request
    c.create_issue("something else", "x")
    assert c.find_issue("mlops: model/wine") is None


def test_pagination_follows_link_headers_within_a_bound(gh: GitHubStub) -> None:
    for i in range(250):
        gh.issues.append({"number": i + 1, "title": f"issue {i}", "state": "open", "labels": []})
    # Newest first: "issue 0" is on the third page of 100.
    assert client(gh).find_issue("issue 0")["number"] == 1  # type: ignore[index]
    assert [r.query.get("page", "1") for r in gh.requests] == ["1", "2", "3"]
    gh.requests.clear()
    assert client(gh, max_pages=2).find_issue("issue 0") is None
    assert len(gh.requests) == 2


def test_a_next_page_on_another_host_is_not_followed_and_gets_no_token(gh: GitHubStub) -> None:
    with Stub() as elsewhere:
        gh.answer("GET", "/repos/octo/wine/issues", 200, [], headers={
            "Link": f'<{elsewhere.url}/steal?page=2>; rel="next"'})
        with pytest.raises(GitHubError, match="another host"):
            client(gh).find_issue("x")
        assert elsewhere.requests == []


def test_pull_requests_and_reviews(gh: GitHubStub) -> None:
    c = client(gh)
    assert c.find_pull_request("mlops/promote-wine-prod", "main") is None
    pr = c.create_pull_request("Promote wine@3 to prod", "mlops/promote-wine-prod", "main", "gates: ...")
    found = c.find_pull_request("mlops/promote-wine-prod", "main")
    assert found is not None and found["number"] == pr["number"]
    updated = c.update_pull_request(pr["number"], body="gates: all passed")
    assert updated["body"] == "gates: all passed"
    gh.add_review(pr["number"], "alice", "COMMENTED")
    gh.add_review(pr["number"], "bob", "APPROVED")
    assert [(r["user"]["login"], r["state"]) for r in c.list_reviews(pr["number"])] == [
        ("alice", "COMMENTED"), ("bob", "APPROVED")]
    assert c.get_pull_request(pr["number"])["merged"] is False
    targets = [(r.method, r.target) for r in gh.requests]
    assert targets == [
        ("GET", "/repos/octo/wine/pulls?state=open&head=octo%3Amlops%2Fpromote-wine-prod&base=main&per_page=100"),
        ("POST", "/repos/octo/wine/pulls"),
        ("GET", "/repos/octo/wine/pulls?state=open&head=octo%3Amlops%2Fpromote-wine-prod&base=main&per_page=100"),
        ("PATCH", "/repos/octo/wine/pulls/1"),
        ("GET", "/repos/octo/wine/pulls/1/reviews?per_page=100"),
        ("GET", "/repos/octo/wine/pulls/1"),
    ]
    assert gh.requests[1].json() == {"title": "Promote wine@3 to prod", "head": "mlops/promote-wine-prod",
                                     "base": "main", "body": "gates: ...", "draft": False}
    assert gh.requests[3].json() == {"body": "gates: all passed"}  # only what was given


def test_repository_dispatch_and_its_payload_limit(gh: GitHubStub) -> None:
    c = client(gh)
    c.repository_dispatch("dev.mlops.drift.detected", {"event": {"id": "x"}})
    assert gh.dispatches == [{"event_type": "dev.mlops.drift.detected", "client_payload": {"event": {"id": "x"}}}]
    with pytest.raises(GitHubError, match="11 top-level keys; GitHub allows 10"):
        c.repository_dispatch("t", {f"k{i}": i for i in range(11)})
    assert len(gh.requests) == 1


def test_errors_name_method_path_status_and_githubs_message(gh: GitHubStub) -> None:
    gh.fail("POST", "/repos/octo/wine/issues", 422, {"message": "Validation Failed",
                                                    "errors": [{"resource": "Issue", "field": "title",
                                                                "code": "missing_field"}]})
    with pytest.raises(GitHubError) as e:
        client(gh).create_issue("t", "b")
    assert isinstance(e.value, MlopsError)
    assert (e.value.status, e.value.method, e.value.path) == (422, "POST", "/repos/octo/wine/issues")
    assert str(e.value) == ("POST /repos/octo/wine/issues: GitHub answered 422: Validation Failed; "
                            "Issue title missing_field")
    assert not e.value.retryable
    assert len(gh.requests) == 1  # a 4xx is not retried


def test_bad_credentials_say_so_and_never_show_the_token(gh: GitHubStub) -> None:
    wrong = "ghp_wrong_token_abcdefghijklmnop"
    # A server (or proxy) that echoes the header back must not get the token into the message.
    gh.answer("GET", "/repos/octo/wine/pulls/7", 401, {"message": f"Bad credentials: Bearer {wrong}"})
    c = GitHubClient(wrong, "octo/wine", gh.url, backoff=0.01)
    with pytest.raises(GitHubError) as e:
        c.get_pull_request(7)
    assert e.value.status == 401
    assert "GITHUB_TOKEN" in str(e.value)
    assert wrong not in str(e.value) and wrong not in repr(c) and wrong not in repr(e.value)


def test_retried_on_5xx_then_answered(gh: GitHubStub) -> None:
    gh.fail("GET", "/repos/octo/wine/pulls/1", 502)
    gh.fail("GET", "/repos/octo/wine/pulls/1", 503)
    c = client(gh)
    pr = c.create_pull_request("t", "b", "main", "x")
    gh.requests.clear()
    assert c.get_pull_request(pr["number"])["number"] == 1
    assert len(gh.requests) == 3


def test_secondary_rate_limit_waits_for_retry_after_then_goes_on(gh: GitHubStub) -> None:
    gh.fail("POST", "/repos/octo/wine/issues", 403,
            {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."},
            headers={"Retry-After": "0"})
    waits: list[float] = []
    issue = client(gh, sleep=waits.append).create_issue("t", "b")
    assert issue["number"] == 1
    assert waits == [0.0]  # what Retry-After said, not the backoff
    assert len(gh.requests) == 2


def test_a_rate_limit_beyond_the_wait_bound_is_an_error_at_once(gh: GitHubStub) -> None:
    gh.fail("GET", "/repos/octo/wine/pulls/1", 429, headers={"Retry-After": "3600"})
    with pytest.raises(GitHubError, match=r"429.*rate limited; retry after 3600 s") as e:
        client(gh, max_wait=5.0).get_pull_request(1)
    assert e.value.retryable
    assert len(gh.requests) == 1


def test_a_plain_403_is_not_retried(gh: GitHubStub) -> None:
    gh.fail("POST", "/repos/octo/wine/dispatches", 403, {"message": "Resource not accessible by integration"})
    with pytest.raises(GitHubError, match="403: Resource not accessible by integration") as e:
        client(gh).repository_dispatch("t", {})
    assert not e.value.retryable
    assert len(gh.requests) == 1


def test_retries_are_bounded(gh: GitHubStub) -> None:
    gh.default = lambda _r: Reply(500, {"message": "boom"})
    with pytest.raises(GitHubError, match="500: boom") as e:
        client(gh, retries=2).get_pull_request(1)
    assert e.value.retryable
    assert len(gh.requests) == 3


def test_a_post_that_may_have_arrived_is_not_repeated_after_a_timeout(gh: GitHubStub) -> None:
    gh.answer("POST", "/repos/octo/wine/issues", 201, {"number": 1}, delay=30.0)
    with pytest.raises(GitHubError, match="no answer"):
        client(gh, timeout=0.3).create_issue("t", "b")
    assert len(gh.requests) == 1  # a second try could open a second issue


def test_a_get_is_repeated_after_a_timeout(gh: GitHubStub) -> None:
    gh.answer("GET", "/repos/octo/wine/pulls/1", 200, {"number": 1}, delay=30.0)
    gh.answer("GET", "/repos/octo/wine/pulls/1", 200, {"number": 1, "title": "t"})
    assert client(gh, timeout=0.3).get_pull_request(1)["title"] == "t"
    assert len(gh.requests) == 2


def test_nothing_listening_is_retryable_and_clear() -> None:
    c = GitHubClient(TOKEN, "octo/wine", "http://127.0.0.1:9", backoff=0.01, retries=1)
    with pytest.raises(GitHubError, match="no answer from GitHub") as e:
        c.create_issue("t", "b")  # refused: nothing was sent, so even a POST may be repeated
    assert e.value.retryable and e.value.status is None


def test_configuration_from_the_environment() -> None:
    c = GitHubClient.from_env(environ={"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "octo/wine"})
    assert (c.api_url, c.repository, c.owner) == ("https://api.github.com", "octo/wine", "octo")
    c = GitHubClient.from_env("other/repo", environ={"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": "http://127.0.0.1:1/api/v3/",
                                                     "GITHUB_REPOSITORY": "octo/wine"})
    assert (c.api_url, c.repository) == ("http://127.0.0.1:1/api/v3", "other/repo")
    with pytest.raises(GitHubError, match="set GITHUB_TOKEN"):
        GitHubClient.from_env(environ={"GITHUB_REPOSITORY": "octo/wine"})
    with pytest.raises(GitHubError, match="set GITHUB_REPOSITORY"):
        GitHubClient.from_env(environ={"GITHUB_TOKEN": TOKEN})
    with pytest.raises(GitHubError, match="not OWNER/NAME"):
        GitHubClient(TOKEN, "octo/../etc")
    with pytest.raises(GitHubError, match="GITHUB_API_URL"):
        GitHubClient(TOKEN, "octo/wine", "file:///etc/passwd")
    with pytest.raises(GitHubError, match="not an issue or pull request number"):
        GitHubClient(TOKEN, "octo/wine").get_pull_request(0)


def test_an_answer_that_is_not_json_is_an_error(gh: GitHubStub) -> None:
    gh.answer("GET", "/repos/octo/wine/pulls/1", 200, b"<html>proxy login</html>")
    with pytest.raises(GitHubError, match="not JSON"):
        client(gh).get_pull_request(1)


def test_an_absurdly_deep_answer_is_an_error_not_a_crash(gh: GitHubStub) -> None:
    gh.answer("GET", "/repos/octo/wine/pulls/1", 200, b"[" * 200_000)
    with pytest.raises(GitHubError, match="not JSON"):
        client(gh).get_pull_request(1)
    gh.answer("GET", "/repos/octo/wine/pulls/1", 404, b"{\"message\": " + b"[" * 200_000)
    with pytest.raises(GitHubError, match="404"):
        client(gh).get_pull_request(1)


def test_run_approvals_are_read_from_the_run_and_must_be_a_list(gh: GitHubStub) -> None:
    gh.approve_deployment(9, "carol", "production", "ok")
    assert client(gh).run_approvals(9)[0]["user"]["login"] == "carol"
    assert gh.requests[-1].target == "/repos/octo/wine/actions/runs/9/approvals"
    gh.answer("GET", "/repos/octo/wine/actions/runs/10/approvals", 200, {"message": "hi"})
    with pytest.raises(GitHubError, match="not a list"):
        client(gh).run_approvals(10)
    with pytest.raises(GitHubError, match="not an issue or pull request number"):
        client(gh).run_approvals(0)
