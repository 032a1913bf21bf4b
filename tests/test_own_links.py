"""Links planted in mlops's own directories (``.mlops``: caches, logs, scratch, environments, the store)
by a restored CI cache or a step: nothing of ours is read, written or deleted through them. Before,
a link at ``.mlops/cache/pipelines/logs/PIPELINE`` made every run ``rmtree`` what the link names."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.gitrepo import Repo, init_repo, mlops
from tests.sentinel import make_sentinel, snapshot
from tests.tinypipeline import MAKE, PIPELINE


def _link(rel: str, target: str = "") -> Callable[[Path, Path], None]:
    def plant(repo: Path, sentinel: Path) -> None:
        path = repo / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(sentinel / target if target else sentinel, path)
    return plant


ATTACKS: dict[str, tuple[Callable[[Path, Path], None], tuple[str, ...], bool]] = {
    # name: (plant, command, whether the command still succeeds)
    "logs": (_link(".mlops/cache/pipelines/logs/p"), ("run", "p", "--force"), False),
    "scratch": (_link(".mlops/cache/pipelines/tmp/p"), ("run", "p", "--force"), False),
    "lock file": (_link(".mlops/cache/pipelines/locks/p.lock", "shadow"), ("run", "p", "--force"), False),
    "environments": (_link(".mlops/envs"), ("env", "prune"), False),
    "the whole .mlops": (_link(".mlops"), ("env", "prune"), False),
    "run records": (_link(".mlops/records/runs"), ("run", "p", "--force"), False),
    "a record": (_link(".mlops/records/reconcile/state.json", "shadow"), ("plan",), False),
    "blobs": (_link(".mlops/blobs/sha256"), ("run", "p", "--force"), False),
    "parse caches": (_link(".mlops/cache"), ("plan",), True),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_a_link_in_mlops_own_directories_is_never_followed(tmp_path: Path, name: str) -> None:
    plant, command, succeeds = ATTACKS[name]
    sentinel = make_sentinel(tmp_path / "outside")
    (sentinel / "envs" / "victim").mkdir(parents=True)
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n")
    repo.write("steps/make.py", MAKE)
    repo.write("pipelines/p.yaml", PIPELINE)
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.commit("small project")
    mlops(repo, "run", "p")
    plant(repo.path, sentinel)
    before = snapshot(sentinel)

    out = mlops(Repo(repo.path), *command, check=False)

    assert snapshot(sentinel) == before
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr
    if succeeds:
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode != 0 or "symbolic link" in out.stdout, (out.stdout, out.stderr)
        assert "symbolic link" in out.stdout + out.stderr, (out.stdout, out.stderr)


PLANT_THEN_EXEC = """
import os, sys
repo, target = sys.argv[1], sys.argv[2]
for rel in ('.mlops/cache/.specs.json.{pid}.tmp', '.mlops/cache/.imports.json.{pid}.tmp',
            '.mlops/cache/pipelines/.commits.json.{pid}.tmp'):
    path = os.path.join(repo, rel.format(pid=os.getpid()))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)
os.execv(sys.executable, [sys.executable, '-m', 'mlops.cli', '-C', repo, *sys.argv[3:]])  # the same pid
"""


@pytest.mark.parametrize("command", [("plan",), ("run", "p")])
def test_temporary_files_have_names_nobody_can_plant_beforehand(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Caches were written through ``.NAME.PID.tmp``: a link planted under that name (for every
    pid, in a restored .mlops) made `mlops plan` overwrite what it names outside the repository."""
    import subprocess
    import sys

    sentinel = make_sentinel(tmp_path / "outside")
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n")
    repo.write("steps/make.py", MAKE)
    repo.write("pipelines/p.yaml", PIPELINE)
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.commit("small project")
    before = snapshot(sentinel)

    out = subprocess.run([sys.executable, "-c", PLANT_THEN_EXEC, str(repo.path), str(sentinel / "shadow"), *command],
                         capture_output=True, text=True, env={**os.environ, "PIP_NO_INDEX": "1"})

    assert out.returncode == 0, out.stderr
    assert snapshot(sentinel) == before
