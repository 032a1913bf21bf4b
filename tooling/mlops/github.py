"""A small GitHub REST client: the few calls mlops makes (issues, comments, repository dispatch,
pull requests and their reviews), on urllib, with JSON in and out.

    client = GitHubClient.from_env()            # GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_API_URL
    pr = client.find_pull_request("mlops/promote-wine-prod", "main") or client.create_pull_request(...)

* Base URL from ``GITHUB_API_URL`` (GitHub Enterprise Server, or a local stand-in in tests),
  default ``https://api.github.com``; token from ``GITHUB_TOKEN`` (sent as ``Authorization:
  Bearer``, and only ever to that base URL: a pagination link to another host is refused);
  repository ``owner/name`` from ``GITHUB_REPOSITORY`` unless given.
* Every call is bounded: a timeout per request, a few retries with exponential backoff on 5xx,
  408, 429 and the secondary rate limit (403 with ``Retry-After`` or an exhausted quota), waiting
  what ``Retry-After`` asks only while that fits the call's total wait, and a bounded number of
  pages when listing. A request that is not idempotent (POST) is repeated after a network error
  only when the connection was never made, so an issue is not created twice.
* Failures are ``GitHubError`` (an ``MlopsError``) naming the method, the path, the status and
  GitHub's own message; the token is registered with the secret masker and never appears in one.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from mlops import __version__
from mlops.errors import GitHubError
from mlops.httpio import Response, TransportError, check_url, exchange, retry_after
from mlops.secrets import MASKER

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MAX_DISPATCH_KEYS = 10  # GitHub refuses a repository_dispatch client_payload with more top-level keys
REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_LINK_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
_IDEMPOTENT = ("GET", "HEAD", "PUT", "PATCH", "DELETE")


class GitHubClient:
    """Calls GitHub's REST API for one repository. See the module docstring for the rules."""

    def __init__(self, token: str, repository: str, api_url: str = DEFAULT_API_URL, *, timeout: float = 10.0,
                 retries: int = 3, backoff: float = 1.0, max_wait: float = 60.0, max_pages: int = 10,
                 deadline: float | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        if not token:
            raise GitHubError("no GitHub token: set GITHUB_TOKEN (in GitHub Actions: "
                              "env: {GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}})")
        if not REPOSITORY_RE.match(repository or "") or repository.split("/")[1] in (".", ".."):
            raise GitHubError(f"GitHub repository {repository!r} is not OWNER/NAME (set GITHUB_REPOSITORY "
                              "or name it in the configuration)")
        try:
            check_url(api_url)
        except ValueError as e:
            raise GitHubError(f"GitHub API URL (GITHUB_API_URL): {e}") from None
        MASKER.add(token)  # whatever prints an answer or an error never shows it
        self._token = token
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_pages = max_pages
        self.deadline = deadline  # an absolute clock() time no call may run past (a caller's own budget)
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:  # never the token
        return f"GitHubClient({self.repository!r}, {self.api_url!r})"

    @classmethod
    def from_env(cls, repository: str | None = None, environ: Mapping[str, str] | None = None,
                 **options: Any) -> GitHubClient:
        """A client from ``GITHUB_TOKEN``, ``GITHUB_API_URL`` and (unless ``repository``) ``GITHUB_REPOSITORY``."""
        env = os.environ if environ is None else environ
        repo = repository or env.get("GITHUB_REPOSITORY", "")
        if not repo:
            raise GitHubError("no GitHub repository: set GITHUB_REPOSITORY (OWNER/NAME) or name it in the configuration")
        return cls(env.get("GITHUB_TOKEN", ""), repo, env.get("GITHUB_API_URL") or DEFAULT_API_URL, **options)

    @property
    def owner(self) -> str:
        return self.repository.split("/")[0]

    # -- issues ------------------------------------------------------------------------
    def create_issue(self, title: str, body: str, labels: Iterable[str] = ()) -> dict[str, Any]:
        """Open an issue; returns it (``number``, ``html_url``...)."""
        payload: dict[str, Any] = {"title": title, "body": body}
        if labels:
            payload["labels"] = list(labels)
        return _object(self.request("POST", self._repo("issues"), body=payload), "POST", self._repo("issues"))

    def find_issue(self, title: str, labels: Iterable[str] = ()) -> dict[str, Any] | None:
        """The newest open issue titled exactly ``title`` (with all of ``labels``), among the first
        ``max_pages`` pages of open issues; pull requests are not issues here."""
        query = {"state": "open"}
        names = list(labels)
        if names:
            query["labels"] = ",".join(names)
        for item in self._paginate(self._repo("issues"), query):
            if isinstance(item, dict) and "pull_request" not in item and item.get("title") == title:
                return item
        return None

    def create_issue_comment(self, number: int, body: str) -> dict[str, Any]:
        """Comment on issue (or pull request) ``number``."""
        path = self._repo(f"issues/{_number(number)}/comments")
        return _object(self.request("POST", path, body={"body": body}), "POST", path)

    # -- repository dispatch ---------------------------------------------------------------
    def repository_dispatch(self, event_type: str, client_payload: Mapping[str, Any]) -> None:
        """Fire a ``repository_dispatch`` event (starts workflows ``on: repository_dispatch``)."""
        path = self._repo("dispatches")
        if not 1 <= len(event_type) <= 100:
            raise GitHubError(f"POST {path}: event_type must be 1 to 100 characters", method="POST", path=path)
        if len(client_payload) > MAX_DISPATCH_KEYS:
            raise GitHubError(f"POST {path}: client_payload has {len(client_payload)} top-level keys; GitHub "
                              f"allows {MAX_DISPATCH_KEYS} (nest the data under one key)", method="POST", path=path)
        self.request("POST", path, body={"event_type": event_type, "client_payload": dict(client_payload)})

    # -- pull requests ---------------------------------------------------------------------
    def find_pull_request(self, head_branch: str, base: str | None = None) -> dict[str, Any] | None:
        """The open pull request from ``head_branch`` (``branch`` or ``owner:branch``) into ``base``."""
        head = head_branch if ":" in head_branch else f"{self.owner}:{head_branch}"
        query = {"state": "open", "head": head}
        if base:
            query["base"] = base
        for item in self._paginate(self._repo("pulls"), query):
            if isinstance(item, dict):
                return item
        return None

    def create_pull_request(self, title: str, head: str, base: str, body: str, *,
                            draft: bool = False) -> dict[str, Any]:
        """Open a pull request from the branch ``head`` into ``base``."""
        path = self._repo("pulls")
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        return _object(self.request("POST", path, body=payload), "POST", path)

    def update_pull_request(self, number: int, *, title: str | None = None, body: str | None = None,
                            state: str | None = None, base: str | None = None) -> dict[str, Any]:
        """Change a pull request's title, body, state (``open``/``closed``) or base; only what is given."""
        path = self._repo(f"pulls/{_number(number)}")
        fields = {"title": title, "body": body, "state": state, "base": base}
        return _object(self.request("PATCH", path, body={k: v for k, v in fields.items() if v is not None}),
                       "PATCH", path)

    def get_pull_request(self, number: int) -> dict[str, Any]:
        """The pull request ``number`` (``merged``, ``merge_commit_sha``, ``head``, ``base``...)."""
        path = self._repo(f"pulls/{_number(number)}")
        return _object(self.request("GET", path), "GET", path)

    def pulls_for_commit(self, sha: str) -> list[dict[str, Any]]:
        """The pull requests a commit belongs to (``merged_at`` tells the merged ones)."""
        if not isinstance(sha, str) or not sha or not all(c in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a commit id: {sha!r}")
        return [p for p in self._paginate(self._repo(f"commits/{sha}/pulls"), {}) if isinstance(p, dict)]

    def list_reviews(self, number: int) -> list[dict[str, Any]]:
        """The reviews of pull request ``number``, oldest first (``user.login``, ``state``, ``commit_id``)."""
        return [r for r in self._paginate(self._repo(f"pulls/{_number(number)}/reviews"), {})
                if isinstance(r, dict)]

    # -- workflow runs ----------------------------------------------------------------------
    def run_approvals(self, run_id: int) -> list[dict[str, Any]]:
        """The deployment reviews of workflow run ``run_id``: who approved or rejected which environments
        (``user.login``, ``state``, ``environments[].name``, ``comment``); needs ``actions: read``."""
        path = self._repo(f"actions/runs/{_number(run_id)}/approvals")
        answer = self.request("GET", path)
        if not isinstance(answer, list):
            raise GitHubError(f"GET {path}: GitHub answered with something that is not a list", method="GET", path=path)
        return [a for a in answer if isinstance(a, dict)]

    # -- the plumbing ------------------------------------------------------------------------
    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None) -> Any:
        """One call to ``path`` (relative to the API URL); its JSON answer (None when empty)."""
        url = f"{self.api_url}{path}" + (f"?{urlencode(dict(query))}" if query else "")
        return _json(self._send(method, url, path, body), method, path)

    def _paginate(self, path: str, query: Mapping[str, str]) -> list[Any]:
        """The items of up to ``max_pages`` pages, following ``Link: <...>; rel="next"``."""
        url: str | None = f"{self.api_url}{path}?{urlencode({**query, 'per_page': '100'})}"
        items: list[Any] = []
        for _ in range(self.max_pages):
            if url is None:
                break
            reply = self._send("GET", url, path, None)
            page = _json(reply, "GET", path)
            if not isinstance(page, list):
                raise GitHubError(f"GET {path}: GitHub answered with something that is not a list",
                                  status=reply.status, method="GET", path=path)
            items.extend(page)
            url = self._next_link(reply, path)
        return items

    def _next_link(self, reply: Response, path: str) -> str | None:
        for target, rel in _LINK_RE.findall(reply.header("link") or ""):
            if rel.strip() != "next":
                continue
            if not _same_origin(target, self.api_url):
                # The token goes with every request: never to a host the answer names.
                raise GitHubError(f"GET {path}: the next page is on another host ({_origin(target)}); "
                                  "not followed", method="GET", path=path)
            return str(target)
        return None

    def _send(self, method: str, url: str, path: str, body: Any) -> Response:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/vnd.github+json", "Authorization": f"Bearer {self._token}",
                   "X-GitHub-Api-Version": API_VERSION, "User-Agent": f"mlops/{__version__}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        limit = self._clock() + self.max_wait
        if self.deadline is not None:
            limit = min(limit, self.deadline)
        tries = 0
        while True:
            tries += 1
            left = limit - self._clock()
            if left <= 0:
                raise GitHubError(f"{method} {path}: no time left to call GitHub", method=method, path=path,
                                  retryable=True)
            try:
                reply = exchange(method, url, body=data, headers=headers, timeout=min(self.timeout, left))
            except TransportError as e:
                repeatable = method in _IDEMPOTENT or not e.sent
                problem = GitHubError(self._clean(f"{method} {path}: no answer from GitHub ({e})"),
                                      method=method, path=path, retryable=True)
                if not repeatable:
                    raise problem from None
                wait = None
            else:
                if 200 <= reply.status < 300:
                    return reply
                problem, wait = self._failure(method, path, reply)
                if not problem.retryable:
                    raise problem
            pause = self.backoff * 2 ** (tries - 1) if wait is None else wait
            if tries > self.retries or self._clock() + pause >= limit:
                raise problem
            self._sleep(pause)

    def _failure(self, method: str, path: str, reply: Response) -> tuple[GitHubError, float | None]:
        """The error for a non-2xx answer, and how long GitHub asks us to wait (None: not said)."""
        message = _message(reply)
        wait = retry_after(reply)
        limited = reply.status == 429 or (reply.status == 403 and (
            wait is not None or reply.header("x-ratelimit-remaining") == "0" or "rate limit" in message.lower()))
        if limited and wait is None and reply.header("x-ratelimit-remaining") == "0":
            reset = reply.header("x-ratelimit-reset") or ""
            wait = max(0.0, float(reset) - time.time()) if reset.isdigit() else None
        retryable = limited or reply.status in _RETRY_STATUSES
        what = f"{method} {path}: GitHub answered {reply.status}" + (f": {message}" if message else "")
        if limited:
            what += f" (rate limited{f'; retry after {wait:.0f} s' if wait is not None else ''})"
        if reply.status == 401:
            what += " (is GITHUB_TOKEN valid?)"
        return GitHubError(self._clean(what), status=reply.status, method=method, path=path,
                           retryable=retryable), wait

    def _clean(self, text: str) -> str:
        return MASKER.mask(text.replace(self._token, "***"))

    def _repo(self, rest: str) -> str:
        owner, name = self.repository.split("/")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}/{rest}"


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` of an untrusted JSON document (an event payload, an API answer), or None
    where a level is missing or not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _number(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GitHubError(f"{n!r} is not an issue or pull request number")
    return n


def _json(reply: Response, method: str, path: str) -> Any:
    if not reply.body.strip():
        return None
    try:
        return json.loads(reply.body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise GitHubError(f"{method} {path}: GitHub answered {reply.status} with something that is not JSON",
                          status=reply.status, method=method, path=path) from None


def _object(value: Any, method: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GitHubError(f"{method} {path}: GitHub answered with something that is not an object",
                          method=method, path=path)
    return value


def _message(reply: Response) -> str:
    """GitHub's own words: ``message`` and the ``errors`` details of a JSON error body (bounded)."""
    try:
        doc = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    if not isinstance(doc, dict):
        return ""
    parts = [str(doc.get("message", ""))]
    for err in doc.get("errors", [])[:5] if isinstance(doc.get("errors"), list) else []:
        if isinstance(err, dict):
            detail = err.get("message") or " ".join(str(err.get(k, "")) for k in ("resource", "field", "code"))
            parts.append(str(detail).strip())
        elif isinstance(err, str):
            parts.append(err)
    text = "; ".join(p for p in parts if p)
    return " ".join(text.split())[:500]


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    except ValueError:
        return "<invalid url>"


def _same_origin(url: str, base: str) -> bool:
    return _origin(url) == _origin(base) and url.startswith(("http://", "https://"))
