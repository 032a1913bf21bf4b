"""A stand-in for the GitHub REST API on 127.0.0.1 (a real HTTP server), with just enough state
for mlops's calls: issues and their comments, repository dispatches, pull requests and reviews.

    with GitHubStub("octo/wine", token="ghp_test") as gh:
        env = gh.env()                        # GITHUB_TOKEN, GITHUB_API_URL, GITHUB_REPOSITORY
        ... run mlops ...
        gh.requests                           # every request, in order (method, target, headers, body)
        gh.issues, gh.comments, gh.dispatches, gh.pulls, gh.reviews

Lists are paginated like GitHub's (``per_page``, ``page``, ``Link: <...>; rel="next"``). A request
without ``Authorization: Bearer <token>`` gets 401. ``fail(method, path, status, ...)`` scripts
failures (they come before the state is touched). Given the bare ``origin`` repository, a pull
request's ``head.sha`` is its branch's commit there (as GitHub keeps it: the last head once merged), and
a review is of that commit unless told otherwise.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.httpstub import Reply, Request, Stub


class GitHubStub(Stub):
    def __init__(self, repository: str = "octo/wine", token: str = "ghp_test_token_0123456789",
                 origin: Path | None = None) -> None:
        super().__init__()
        self.origin = origin
        self.repository = repository
        self.token = token
        self.issues: list[dict[str, Any]] = []  # issues and pull requests share numbers, as on GitHub
        self.comments: list[dict[str, Any]] = []
        self.dispatches: list[dict[str, Any]] = []
        self.pulls: list[dict[str, Any]] = []
        self.reviews: dict[int, list[dict[str, Any]]] = {}
        self.run_approvals: dict[int, list[dict[str, Any]]] = {}  # workflow run id -> deployment reviews
        self.default = self._route

    def env(self) -> dict[str, str]:
        return {"GITHUB_TOKEN": self.token, "GITHUB_API_URL": self.url, "GITHUB_REPOSITORY": self.repository}

    def fail(self, method: str, path: str, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.answer(method, path, status, body if body is not None else {"message": f"scripted {status}"}, headers)

    def add_review(self, number: int, login: str, state: str = "APPROVED", commit_id: str | None = None,
                   author_association: str = "COLLABORATOR") -> None:
        """A review by ``login`` of the pull request's current head (or of ``commit_id``)."""
        self._sync_heads()
        if commit_id is None:
            pull = self._find_pull(str(number))
            commit_id = str(((pull or {}).get("head") or {}).get("sha") or "")
        reviews = self.reviews.setdefault(number, [])
        reviews.append({"id": len(reviews) + 1, "user": {"login": login}, "state": state, "commit_id": commit_id,
                        "author_association": author_association})

    def merge(self, number: int, merge_commit_sha: str, author: str = "octocat") -> None:
        """Mark pull request ``number`` merged as ``merge_commit_sha`` (opened by ``author``)."""
        self._sync_heads()
        pull = self._find_pull(str(number))
        assert pull is not None, f"no pull request {number}"
        pull.update(state="closed", merged=True, merged_at="2026-11-29T12:00:00Z", merge_commit_sha=merge_commit_sha,
                    user={"login": author})

    def _sync_heads(self) -> None:
        """Each open pull request's head.sha: its branch's commit in ``origin`` (merged ones keep theirs)."""
        if self.origin is None:
            return
        for pull in self.pulls:
            if pull.get("merged"):
                continue
            out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{pull['head']['ref']}"],
                                 cwd=self.origin, capture_output=True, text=True)
            if out.returncode == 0:
                pull["head"]["sha"] = out.stdout.strip()

    # -- routing ----------------------------------------------------------------------------
    def _route(self, req: Request) -> Reply:
        self._sync_heads()
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "Bad credentials"})
        base = f"/repos/{self.repository}"
        path = req.path
        if not path.startswith(base + "/"):
            return Reply(404, {"message": "Not Found"})
        rest = path[len(base):]
        routes: list[tuple[str, str, Any]] = [
            ("GET", r"/issues", self._list_issues), ("POST", r"/issues", self._create_issue),
            ("POST", r"/issues/(\d+)/comments", self._comment), ("POST", r"/dispatches", self._dispatch),
            ("GET", r"/pulls", self._list_pulls), ("POST", r"/pulls", self._create_pull),
            ("GET", r"/pulls/(\d+)", self._get_pull), ("PATCH", r"/pulls/(\d+)", self._update_pull),
            ("GET", r"/pulls/(\d+)/reviews", self._list_reviews),
            ("GET", r"/commits/([0-9a-f]+)/pulls", self._pulls_for_commit),
            ("GET", r"/actions/runs/(\d+)/approvals", self._list_run_approvals),
        ]
        for method, pattern, handler in routes:
            m = re.fullmatch(pattern, rest)
            if m and method == req.method:
                reply: Reply = handler(req, *m.groups())
                return reply
        return Reply(404, {"message": "Not Found"})

    def _page(self, req: Request, items: list[Any]) -> Reply:
        q = req.query
        per = int(q.get("per_page", "30"))
        page = int(q.get("page", "1"))
        chunk = items[(page - 1) * per: page * per]
        headers = {}
        if page * per < len(items):
            nxt = {**q, "page": str(page + 1)}
            headers["Link"] = f'<{self.url}{req.path}?{urlencode(nxt)}>; rel="next"'
        return Reply(200, chunk, headers)

    def _number(self) -> int:
        return len(self.issues) + 1

    def _list_issues(self, req: Request) -> Reply:
        q = req.query
        labels = [x for x in q.get("labels", "").split(",") if x]
        items = [i for i in self.issues if i["state"] == q.get("state", "open")
                 and all(lab in [x["name"] for x in i["labels"]] for lab in labels)]
        return self._page(req, list(reversed(items)))  # newest first, as GitHub's default sort

    def _create_issue(self, req: Request) -> Reply:
        body = req.json()
        if not body.get("title"):
            return Reply(422, {"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "title",
                                                                           "code": "missing_field"}]})
        issue = {"number": self._number(), "title": body["title"], "body": body.get("body", ""), "state": "open",
                 "labels": [{"name": n} for n in body.get("labels", [])],
                 "html_url": f"https://github.com/{self.repository}/issues/{self._number()}"}
        self.issues.append(issue)
        return Reply(201, issue)

    def _comment(self, req: Request, number: str) -> Reply:
        if not any(i["number"] == int(number) for i in self.issues):
            return Reply(404, {"message": "Not Found"})
        comment = {"id": len(self.comments) + 1, "issue": int(number), "body": req.json().get("body", "")}
        self.comments.append(comment)
        return Reply(201, comment)

    def _dispatch(self, req: Request) -> Reply:
        body = req.json()
        if not isinstance(body.get("client_payload", {}), dict) or len(body.get("client_payload", {})) > 10:
            return Reply(422, {"message": "client_payload: too many keys"})
        self.dispatches.append(body)
        return Reply(204, b"")

    def _list_pulls(self, req: Request) -> Reply:
        q = req.query
        items = [p for p in self.pulls if p["state"] == q.get("state", "open")
                 and ("head" not in q or q["head"] == f"{self.repository.split('/')[0]}:{p['head']['ref']}")
                 and ("base" not in q or q["base"] == p["base"]["ref"])]
        return self._page(req, items)

    def _create_pull(self, req: Request) -> Reply:
        body = req.json()
        if any(p["head"]["ref"] == body["head"] and p["state"] == "open" for p in self.pulls):
            return Reply(422, {"message": "Validation Failed",
                               "errors": [{"message": f"A pull request already exists for {body['head']}."}]})
        number = self._number()
        pull = {"number": number, "title": body["title"], "body": body.get("body", ""), "state": "open",
                "draft": body.get("draft", False), "merged": False, "merge_commit_sha": None,
                "head": {"ref": body["head"]}, "base": {"ref": body["base"]},
                "html_url": f"https://github.com/{self.repository}/pull/{number}"}
        self.issues.append({"number": number, "title": body["title"], "state": "open", "labels": [],
                            "pull_request": {"url": ""}})
        self.pulls.append(pull)
        return Reply(201, pull)

    def _find_pull(self, number: str) -> dict[str, Any] | None:
        return next((p for p in self.pulls if p["number"] == int(number)), None)

    def _get_pull(self, req: Request, number: str) -> Reply:
        pull = self._find_pull(number)
        return Reply(200, pull) if pull else Reply(404, {"message": "Not Found"})

    def _update_pull(self, req: Request, number: str) -> Reply:
        pull = self._find_pull(number)
        if pull is None:
            return Reply(404, {"message": "Not Found"})
        for key, value in req.json().items():
            if key == "base":
                pull["base"] = {"ref": value}
            elif key in ("title", "body", "state"):
                pull[key] = value
        return Reply(200, pull)

    def _pulls_for_commit(self, req: Request, sha: str) -> Reply:
        return self._page(req, [p for p in self.pulls if p.get("merge_commit_sha") == sha])

    def _list_reviews(self, req: Request, number: str) -> Reply:
        if self._find_pull(number) is None:
            return Reply(404, {"message": "Not Found"})
        return self._page(req, self.reviews.get(int(number), []))

    def approve_deployment(self, run_id: int, login: str, environment: str, comment: str = "",
                           state: str = "approved") -> None:
        """``login`` reviewed the deployment of workflow run ``run_id`` to ``environment``."""
        self.run_approvals.setdefault(run_id, []).append(
            {"state": state, "comment": comment, "user": {"login": login, "type": "User"},
             "environments": [{"id": 1, "name": environment}]})

    def _list_run_approvals(self, req: Request, run_id: str) -> Reply:
        return Reply(200, self.run_approvals.get(int(run_id), []))
