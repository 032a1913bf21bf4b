"""Workspace caches (.mlops/cache) are only caches: garbage, wrong types or a read-only disk make
them empty, never an error."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.pipelines.test_cli import mlops, spec_repo  # noqa: F401 - the fixture
from tests.readonly import run_with_readonly


def _cache_files(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / ".mlops" / "cache").rglob("*.json") if p.is_file())


def _warm(repo: Path) -> list[Path]:
    for args in (("run", "demo"), ("plan",)):
        out = mlops(repo, *args)
        assert out.returncode == 0, out.stderr
    files = _cache_files(repo)
    names = {p.name for p in files}
    assert {"specs.json", "imports.json", "hashes.json", "demo.json"} <= names, names
    return files


def _wrong_types(data: Any, wrong: Any) -> Any:
    """The same file with every entry replaced by ``wrong`` (stamps and formats kept, so it is read)."""
    if not isinstance(data, dict):
        return wrong
    return {k: ({e: wrong for e in v} if isinstance(v, dict) else v) for k, v in data.items()}


DAMAGE = {
    "garbage": lambda text: "\x00{not json",
    "a list": lambda text: "[1, 2, 3]",
    "deep": lambda text: "[" * 100_000 + "]" * 100_000,
    "entries are numbers": lambda text: json.dumps(_wrong_types(json.loads(text), 5)),
    "entries are strings": lambda text: json.dumps(_wrong_types(json.loads(text), "x")),
    "entries are short lists": lambda text: json.dumps(_wrong_types(json.loads(text), [1, "a"])),
    "entries are mappings": lambda text: json.dumps(_wrong_types(json.loads(text), {"key": None, "outputs": 1})),
    "entries are null": lambda text: json.dumps(_wrong_types(json.loads(text), None)),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_caches_are_empty_caches(spec_repo: Path, damage: str) -> None:  # noqa: F811
    for path in _warm(spec_repo):
        path.write_text(DAMAGE[damage](path.read_text()))
    again = mlops(spec_repo, "run", "demo")
    assert again.returncode == 0, again.stderr
    assert "demo: succeeded (4 cached)" in again.stdout
    plan = mlops(spec_repo, "plan")
    assert plan.returncode == 0, plan.stderr
    runs = mlops(spec_repo, "runs")  # nothing from a damaged cache leaked into the records
    assert runs.returncode == 0, runs.stderr
    assert "Traceback" not in again.stderr + plan.stderr


def test_read_only_caches_and_store_still_plan(spec_repo: Path) -> None:  # noqa: F811
    _warm(spec_repo)
    (spec_repo / "pipelines/demo/left.py").write_text((spec_repo / "pipelines/demo/left.py").read_text() + "\n#\n")
    argv = [sys.executable, "-m", "mlops.cli", "-C", str(spec_repo), "plan"]
    for directory in (spec_repo / ".mlops" / "cache", spec_repo / ".mlops"):
        out = run_with_readonly(directory, argv)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr and "run_pipeline" in out.stdout


def test_a_run_in_a_read_only_workspace_says_why(spec_repo: Path) -> None:  # noqa: F811
    _warm(spec_repo)
    (spec_repo / ".mlops/cache/pipelines/locks/demo.lock").unlink()
    out = run_with_readonly(spec_repo / ".mlops", [sys.executable, "-m", "mlops.cli", "-C", str(spec_repo), "run",
                                                   "demo"])
    assert out.returncode == 8, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: cannot create the lock file of pipeline 'demo'")


def test_an_environment_build_on_a_read_only_disk_is_a_clear_error(tmp_path: Path) -> None:
    from tests.gitrepo import example_repo

    repo = example_repo(tmp_path / "repo")
    (repo.path / ".mlops").mkdir()
    out = run_with_readonly(repo.path / ".mlops", [sys.executable, "-m", "mlops.cli", "-C", str(repo.path), "run",
                                                   "wine-train"])
    assert out.returncode in (1, 4, 6, 8), out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Read-only file system" in last and "internal error" not in out.stderr
