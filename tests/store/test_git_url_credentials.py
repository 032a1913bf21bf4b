"""A remote's URL may carry credentials (``https://user:TOKEN@host/repo``): git hides them in its own messages,
and so must ours, which name the remote's URL (CI logs and terminals keep them)."""

from __future__ import annotations

from pathlib import Path

from mlops.store.gitcmd import shown_url
from tests.gitrepo import init_repo, mlops

SECRET = "ghp_NotARealTokenButSecret42"


def test_an_unreachable_remote_is_named_without_its_credentials(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: p\nstages: [{name: dev}]\nstores:\n  artifacts: {type: git}\n")
    repo.commit("git store")
    repo.git("remote", "add", "origin", f"https://ci:{SECRET}@127.0.0.1:9/x.git")
    out = mlops(repo, "plan", check=False)
    assert out.returncode != 0 and "cannot fetch refs/mlops/records/*" in out.stderr, out.stderr
    assert SECRET not in out.stdout + out.stderr and "https://***@127.0.0.1:9/x.git" in out.stderr


def test_shown_url() -> None:
    assert shown_url(f"https://user:{SECRET}@github.com/o/r.git") == "https://***@github.com/o/r.git"
    assert shown_url(f"https://{SECRET}@github.com") == "https://***@github.com"
    assert shown_url("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert shown_url("/srv/git/r.git") == "/srv/git/r.git"
    assert shown_url("https://github.com/o/r@v1.git") == "https://github.com/o/r@v1.git"
