"""`stores.artifacts: {type: git}` through the CLI, run as CI runs it (a real subprocess): what a user
sees when origin is missing, unreachable or misnamed, or a blob is too big for git; a fresh `mlops init`
that reconciles before it has an origin, and publishes its state once it has one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.registry.conftest import git, make_repo

PROJECT = "kind: Project\nname: t\nstages: [{name: dev}]\nstores:\n  artifacts: {type: git%s}\n"


def mlops(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo), *args], capture_output=True, text=True)


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 4 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


def with_origin(tmp_path: Path, extra: str = "") -> Path:
    seed = make_repo(tmp_path / "seed", {"mlops.yaml": PROJECT % extra, ".gitignore": ".mlops/\n"})
    git(tmp_path, "clone", "-q", "--bare", str(seed), "origin.git")
    git(tmp_path, "clone", "-q", "origin.git", "work")
    return tmp_path / "work"


def test_without_the_origin_it_names_the_error_says_how_to_go_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"mlops.yaml": PROJECT % ", remote: origin"})
    line = one_error_line(mlops(repo, "models", "list"))
    assert "has no remote 'origin': add it (git remote add origin URL)" in line
    assert "MLOPS_GIT_STORE_LOCAL=1" in line


def test_an_unreachable_origin_is_one_line_naming_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"mlops.yaml": PROJECT % ""})
    git(repo, "remote", "add", "origin", str(tmp_path / "nowhere.git"))
    line = one_error_line(mlops(repo, "models", "list"))
    assert "cannot fetch refs/mlops/records/* from the remote 'origin'" in line and "nowhere.git" in line


def test_a_remote_name_that_could_be_an_option_fails_validation(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"mlops.yaml": PROJECT % ", remote: '--upload-pack=touch pwned'"})
    out = mlops(repo, "validate")
    assert out.returncode != 0 and "mlops.yaml:5:" in out.stderr and "remote" in out.stderr, out.stderr
    assert not (repo / "pwned").exists()


def test_a_blob_over_the_limit_is_refused_with_advice_and_nothing_is_pushed(tmp_path: Path) -> None:
    repo = with_origin(tmp_path, ", max_blob_mb: 0.01")
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 20_000)
    line = one_error_line(mlops(repo, "models", "register", "m", str(big), "--flavor", "raw"))
    assert "is 20000 bytes, over the git store's limit of 10485 bytes" in line and "S3" in line and "max_blob_mb" in line
    assert git(tmp_path / "origin.git", "for-each-ref", "refs/mlops/") == ""
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 100)
    assert mlops(repo, "models", "register", "m", str(small), "--flavor", "raw").returncode == 0
    pushed = git(tmp_path / "origin.git", "for-each-ref", "--format=%(refname)", "refs/mlops/").split()
    assert "refs/mlops/records/registry/models/m/versions/0000000001.json" in pushed
    assert any(ref.startswith("refs/mlops/blobs/sha256/") for ref in pushed)


def test_a_command_pushes_its_deferred_writes_before_it_returns(tmp_path: Path) -> None:
    """In process too (CliRunner, as other tools embed the CLI): the root command's close pushes."""
    from click.testing import CliRunner

    from mlops.cli.main import cli

    repo = with_origin(tmp_path)
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 100)
    for args in (["models", "register", "m", str(small), "--flavor", "raw"], ["models", "tag", "m@1", "team=a"]):
        result = CliRunner().invoke(cli, ["-C", str(repo), *args])
        assert result.exit_code == 0, result.output
    tags = git(tmp_path / "origin.git", "for-each-ref", "--format=%(refname)", "refs/mlops/records/registry/")
    assert any("tags" in ref for ref in tags.split()), tags  # the deferred tag write reached origin


def test_two_runners_registering_at_once_get_two_versions(tmp_path: Path) -> None:
    with_origin(tmp_path)
    git(tmp_path, "clone", "-q", "origin.git", "other")
    procs = []
    for i, clone in enumerate(("work", "other")):
        model = tmp_path / f"model{i}.bin"
        model.write_bytes(f"weights {i}".encode())
        procs.append(subprocess.Popen([sys.executable, "-m", "mlops.cli", "-C", str(tmp_path / clone), "models",
                                       "register", "m", str(model), "--flavor", "raw"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(out.strip() for out, _ in outs) == ["registered m@1", "registered m@2"]
    versions = git(tmp_path / "origin.git", "for-each-ref", "--format=%(refname)",
                   "refs/mlops/records/registry/models/m/versions/").split()
    assert [v.rpartition("/")[2] for v in versions] == ["0000000001.json", "0000000002.json"]


MARKER = "refs/mlops/local-only"


def mlops_refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/mlops/")
    return dict(line.split(" ") for line in out.splitlines())


def scaffold(root: Path) -> Path:
    """`mlops init`, `git init`, a first commit: no remote yet, as on a laptop (no GITHUB_ variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    proc = subprocess.run([sys.executable, "-m", "mlops.cli", "init", str(root)], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "mlops init")
    return root


def bare_origin(tmp_path: Path, repo: Path) -> Path:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    return origin


def test_a_fresh_scaffold_reconciles_offline_then_publishes_to_the_new_origin(tmp_path: Path) -> None:
    repo = scaffold(tmp_path / "project")
    out = mlops(repo, "reconcile")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "registered example-classifier@1" in out.stdout and "example-classifier@1 → dev" in out.stdout
    notes = [line for line in out.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {repo} has no remote 'origin': mlops keeps its state in this clone under refs/mlops/ "
                     "until a remote origin exists (git remote add origin URL); then mlops publishes it there"]
    local = mlops_refs(repo)
    assert MARKER in local and any(ref.startswith("refs/mlops/records/registry/") for ref in local)
    del local[MARKER]

    origin = bare_origin(tmp_path, repo)
    again = mlops(repo, "reconcile")  # the first command that finds origin publishes, then goes on through it
    assert again.returncode == 0 and "Apply: nothing to do." in again.stdout, again.stdout + again.stderr
    assert "note:" not in again.stderr
    published = mlops_refs(origin)
    assert {ref: published.get(ref) for ref in local} == local  # every local ref, as it was
    assert MARKER not in mlops_refs(repo) and MARKER not in published

    git(tmp_path, "clone", "-q", str(origin), "second")
    second = mlops(tmp_path / "second", "models", "list")
    assert second.returncode == 0 and "example-classifier" in second.stdout, second.stdout + second.stderr


def test_a_new_origin_that_holds_other_state_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    repo = scaffold(tmp_path / "project")
    assert mlops(repo, "reconcile").returncode == 0
    local = mlops_refs(repo)
    origin = bare_origin(tmp_path, repo)
    git(tmp_path, "clone", "-q", str(origin), "elsewhere")  # another clone reconciled through origin first
    assert mlops(tmp_path / "elsewhere", "reconcile").returncode == 0
    theirs = mlops_refs(origin)
    for _ in range(2):  # every command refuses until a person chooses; nothing pushed, nothing pruned
        line = one_error_line(mlops(repo, "reconcile"))
        assert mlops_refs(repo) == local and mlops_refs(origin) == theirs
    assert "mlops cannot merge two histories, so it kept this clone's state and pushed and pruned nothing" in line
    assert re.search(r"\d+ ref\(s\) hold other content there \(refs/mlops/records/", line), line
    assert "git for-each-ref refs/mlops/" in line and f"git update-ref -d {MARKER}" in line
