"""Real git repositories in temporary directories, for tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PATHS = ("mlops.yaml", "environments", "models", "endpoints", "pipelines")


class Repo:
    def __init__(self, path: Path):
        self.path = path

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True).stdout.strip()

    def write(self, rel: str, text: str) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def edit(self, rel: str, old: str, new: str) -> None:
        p = self.path / rel
        text = p.read_text()
        assert old in text, f"{old!r} not in {rel}"
        p.write_text(text.replace(old, new, 1))

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


def init_repo(path: Path) -> Repo:
    path.mkdir(parents=True, exist_ok=True)
    repo = Repo(path)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", "Test User")
    repo.git("config", "user.email", "test@example.com")
    repo.git("config", "commit.gpgsign", "false")
    return repo


def example_repo(path: Path, commit: bool = True) -> Repo:
    """A copy of the example project (specs and step code) as a fresh git repository."""
    repo = init_repo(path)
    for rel in EXAMPLE_PATHS:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, path / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, path / rel)
    (path / ".gitignore").write_text(".mlops/\n/data/\n/artifacts/\n__pycache__/\n")
    if commit:
        repo.commit("example project")
    return repo


def clone_repo(origin: Path, where: Path) -> Repo:
    """A fresh clone of ``origin`` at ``where``, as a CI runner makes one (its own git identity)."""
    repo = Repo(where)
    Repo(where.parent).git("clone", "-q", str(origin), str(where))
    repo.git("config", "user.name", "CI Runner")
    repo.git("config", "user.email", "ci@example.com")
    return repo


def mlops(repo: Repo, *args: str, check: bool = True,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `mlops` CLI on ``repo`` in a real subprocess (offline: pip may not reach an index)."""
    import os
    import sys

    out = subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo.path), *args], capture_output=True,
                         text=True, env={**os.environ, "PIP_NO_INDEX": "1", **(env or {})})
    if check:
        assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out
