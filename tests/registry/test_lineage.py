"""git_lineage reads commit, author, message and dirtiness from a real repository."""

from __future__ import annotations

from pathlib import Path

from mlops.registry.lineage import git_lineage
from tests.registry.conftest import git, make_repo


def test_lineage_of_a_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", message="Retrain on the March data\n\nbecause drift.")
    lin = git_lineage(repo)
    assert lin["git_commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert lin["git_author"] == "Ada Lovelace <ada@example.com>"
    assert lin["git_message"] == "Retrain on the March data\n\nbecause drift."
    assert lin["git_dirty"] is False
    (repo / "untracked.bin").write_bytes(b"x")
    assert git_lineage(repo)["git_dirty"] is False  # outputs and stores are untracked
    (repo / "README.md").write_text("changed\n")
    assert git_lineage(repo)["git_dirty"] is True


def test_lineage_from_a_subdirectory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"models/m.yaml": "x\n"})
    assert git_lineage(repo / "models")["git_commit"] == git(repo, "rev-parse", "HEAD").strip()


def test_outside_git_everything_is_null(tmp_path: Path) -> None:
    assert git_lineage(tmp_path) == {"git_commit": None, "git_author": None, "git_message": None,
                                     "git_dirty": None}


def test_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    lin = git_lineage(tmp_path)
    assert lin["git_commit"] is None and lin["git_dirty"] is False
