"""Under GitHub Actions the workflows check out with ``persist-credentials: false``, so the git store hands the
job's GITHUB_TOKEN to git itself (an HTTP header through the environment) to fetch and push refs/mlops/, and
only to a remote on the job's own server: a remote elsewhere never sees the token."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.gitrepo import init_repo, mlops

TOKEN = "ghs_test0123456789abcdef"


@pytest.fixture
def server() -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # git's first request of a fetch or push: /info/refs?service=...
            seen.append(self.headers.get("Authorization"))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _repo(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: p\nstages: [{name: dev}]\nstores:\n  artifacts: {type: git}\n")
    repo.commit("git store")
    repo.git("remote", "add", "origin", url)
    return repo


def _env(server: str) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": TOKEN, "GITHUB_SERVER_URL": server}


def test_the_token_goes_to_a_remote_on_the_jobs_server(tmp_path: Path, server: tuple[str, list[str | None]]) -> None:
    url, seen = server
    repo = _repo(tmp_path, f"{url}/octo/wine.git")
    out = mlops(repo, "plan", check=False, env=_env(url))
    assert out.returncode != 0 and TOKEN not in out.stdout + out.stderr  # the stub serves no repository
    assert seen and seen[0] == "basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert "extraheader" not in (repo.path / ".git" / "config").read_text()  # nothing persisted


def test_the_token_never_goes_to_another_host(tmp_path: Path, server: tuple[str, list[str | None]]) -> None:
    url, seen = server
    repo = _repo(tmp_path, f"{url}/octo/wine.git")
    mlops(repo, "plan", check=False, env=_env("https://github.com"))
    assert seen and seen[0] is None
    assert os.environ.get("GITHUB_TOKEN") != TOKEN
