"""`mlops init`: the scaffold validates, passes its own test, reconciles offline, lints clean, and
never overwrites a file unless told to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitrepo import init_repo

EXPECTED = {".github/workflows/main.yml", ".github/workflows/monitor.yml", ".github/workflows/pr.yml",
            ".github/workflows/retrain.yml", ".gitignore", "endpoints/.gitkeep", "environments/.gitkeep",
            "mlops.yaml", "models/example-classifier.yaml", "pipelines/example-train.yaml",
            "pipelines/example/evaluate.py", "pipelines/example/model.py", "pipelines/example/prepare.py",
            "pipelines/example/train.py", "tests/test_example.py"}


def mlops(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}  # offline, as on a laptop
    proc = subprocess.run([sys.executable, "-m", "mlops.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git/" not in f"{p}/"
            and "/.git/" not in str(p)}


def test_the_scaffold_validates_passes_its_test_and_reconciles_offline(tmp_path: Path) -> None:
    root = tmp_path / "Fraud Detection"
    proc = mlops("init", str(root))
    assert proc.returncode == 0, proc.stderr
    assert _files(root) == EXPECTED
    assert "name: fraud-detection\n" in (root / "mlops.yaml").read_text()

    proc = mlops("validate", cwd=root)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: 3 spec files valid"), proc.stdout + proc.stderr
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert test.returncode == 0 and "1 passed" in test.stdout, test.stdout + test.stderr

    repo = init_repo(root)
    repo.commit("mlops init")
    proc = mlops("reconcile", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "registered example-classifier@1" in proc.stdout and "example-classifier@1 → dev" in proc.stdout
    assert repo.git("status", "--porcelain") == ""  # what the steps wrote is git-ignored
    again = mlops("reconcile", cwd=root)
    assert again.returncode == 0 and "Apply: nothing to do." in again.stdout


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "existing")
    repo.write("mlops.yaml", "mine\n")
    repo.write("pipelines/example/model.py", "mine too\n")
    repo.write("README.md", "my project\n")
    proc = mlops("init", str(repo.path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: {repo.path}: mlops.yaml, pipelines/example/model.py already exist; "
                                   "nothing written (--force overwrites them)")
    assert _files(repo.path) == {"mlops.yaml", "pipelines/example/model.py", "README.md"}  # nothing half-written
    assert (repo.path / "mlops.yaml").read_text() == "mine\n"

    proc = mlops("init", str(repo.path), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (repo.path / "mlops.yaml").read_text().startswith("# The project")
    assert (repo.path / "README.md").read_text() == "my project\n"  # not ours: left alone
    assert mlops("validate", cwd=repo.path).returncode == 0


def test_init_never_writes_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    root = tmp_path / "p"
    root.mkdir()
    (root / ".gitignore").symlink_to(outside)
    proc = mlops("init", str(root), "--force")
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {root / '.gitignore'}: not a regular file; " \
                                                           "not overwritten"
    assert outside.read_text() == "keep\n" and _files(root) == {".gitignore"}  # only the link
    (root / ".gitignore").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "pipelines").symlink_to(elsewhere)
    proc = mlops("init", str(root))
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {root / 'pipelines'}: a symbolic link; " \
                                                           "nothing written through it"
    assert list(elsewhere.iterdir()) == [] and _files(root) == set()


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "Bad Name"], "'Bad Name': lower-case letters, digits and dashes"),
    (["--python", "3.11; rm -rf /"], "a Python version such as 3.11"),
    (["--environment", "prod uction"], "letters, digits, '.', '_' and '-'"),
])
def test_bad_options_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = mlops("init", str(tmp_path / "x"), *args)
    assert proc.returncode == 64 and message in proc.stderr
    assert not (tmp_path / "x").exists()


def test_the_scaffolded_workflows_lint_clean(tmp_path: Path) -> None:
    root = tmp_path / "p"
    assert mlops("init", str(root), "--install", 'pip install "mlops-gitops==0.1.0"').returncode == 0
    workflows = sorted(str(p) for p in (root / ".github" / "workflows").glob("*.yml"))
    proc = subprocess.run(["actionlint", "-no-color", *workflows], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")
    proc = subprocess.run(["zizmor", "--offline", "--no-progress", "--format", "plain", *workflows],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "No findings to report" in proc.stdout, proc.stdout
    assert 'run: pip install "mlops-gitops==0.1.0"' in (root / ".github/workflows/main.yml").read_text()
    assert "cache: pip" not in (root / ".github/workflows/main.yml").read_text()  # no lock file to key it on
