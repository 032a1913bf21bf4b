"""`mlops validate` refuses, at file:line, every path a spec names that reaches outside what it owns.

A step owns only the new paths it declares as outputs: never the repository root, ``.git``,
``.mlops``, a spec, a tracked file, its own inputs, or a path through a symbolic link. Every path
a spec reads is resolved component by component, and a link that leads out of the repository is
refused, in the working tree and at a revision alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops.spec.loader import load_specs
from tests.gitrepo import Repo, init_repo, mlops
from tests.sentinel import make_sentinel, snapshot
from tests.spec.helpers import errors_of, line_of

PIPELINE = """kind: Pipeline
name: p
steps:
  - name: make
    command: [python, steps/make.py, "${inputs.raw}", "${outputs.o}"]
    inputs: {raw: data/raw.csv}
    outputs:
      o: OUTPUT
"""


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return make_sentinel(tmp_path / "outside")


@pytest.fixture
def repo(tmp_path: Path, sentinel: Path) -> Repo:
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n")
    repo.write("steps/make.py", "import sys\nopen(sys.argv[2], 'w').write(open(sys.argv[1]).read())\n")
    repo.write("data/raw.csv", "a,b\n1,2\n")
    repo.write(".gitignore", ".mlops/\nout/\n")
    os.symlink(sentinel, repo.path / "outlink")  # a committed link to a host directory
    os.symlink("data", repo.path / "inlink")  # a committed link that stays inside
    repo.commit("small project")
    return repo




def assert_reported(errs: list[str], where: str, message: str) -> None:
    assert any(e.startswith(where) and message in e for e in errs), "\n".join(errs)


@pytest.mark.parametrize(("output", "message"), [
    (".", "$.steps[0].outputs.o: path '.' is the repository root"),
    ("./", "path './' is the repository root"),
    (".git", "path '.git' is inside .git/, which specs may not name"),
    (".git/hooks/pre-commit", "is inside .git/"),
    (".GIT/hooks", "is inside .git/"),
    (".mlops/blobs", "is inside .mlops/"),
    ("mlops.yaml", "output 'mlops.yaml' would overwrite specs"),
    ("pipelines", "output 'pipelines' would overwrite specs"),
    ("models/injected.yaml", "would overwrite specs"),
    ("steps/make.py", "path 'steps/make.py' is a tracked file: only new, untracked paths may be written"),
    ("steps", "path 'steps' holds tracked files (such as steps/make.py)"),
    ("data/raw.csv", "output 'data/raw.csv' overlaps the step's input 'raw' (data/raw.csv)"),
    ("data", "overlaps the step's input 'raw'"),
    ("outlink/sub", "path 'outlink/sub' passes through the symbolic link 'outlink'"),
    ("inlink/copy.csv", "passes through the symbolic link 'inlink' (-> 'data')"),
    ("../elsewhere", "path '../elsewhere' escapes the repository"),
])
def test_an_output_is_a_new_path_the_step_owns(repo: Repo, output: str, message: str) -> None:
    repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", output))
    errs = errors_of(repo)
    assert_reported(errs, f"pipelines/p.yaml:{line_of(repo, 'pipelines/p.yaml', 'o: ')}:", message)


def test_a_new_untracked_output_is_fine(repo: Repo) -> None:
    repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out/copy.csv"))
    (repo.path / "out").mkdir()
    (repo.path / "out" / "copy.csv").write_text("left by an earlier run\n")  # untracked: the step's own
    assert set(load_specs(repo.path).pipelines) == {"p"}


def test_outputs_of_steps_may_not_contain_each_other(repo: Repo) -> None:
    repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out") + """  - name: inner
    command: [python, -c, "pass", "${outputs.x}"]
    outputs: {x: out/inner.txt}
""")
    errs = errors_of(repo)
    assert_reported(errs, f"pipelines/p.yaml:{line_of(repo, 'pipelines/p.yaml', 'x: out/inner')}:",
                    "output 'out/inner.txt' overlaps output 'o' (out) of step 'make'")


@pytest.mark.parametrize(("spec", "text", "message"), [
    ("models/leak.yaml", "kind: Model\nname: leak\nflavor: custom\nsource: {files: [outlink/shadow]}\n",
     "$.source.files[0]: path 'outlink/shadow' leads outside the repository through the symbolic link "
     "'outlink' -> "),
    ("models/leak.yaml", "kind: Model\nname: leak\nflavor: custom\nsource: {files: [envlink]}\n",
     "path 'envlink' leads outside the repository through the symbolic link 'envlink' -> '/proc/self/environ'"),
    ("models/leak.yaml", "kind: Model\nname: leak\nflavor: custom\nsource: {files: [.git/config]}\n",
     "path '.git/config' is inside .git/"),
    ("models/leak.yaml", "kind: Model\nname: leak\nflavor: custom\nsource: {files: [gitlink/config]}\n",
     "path 'gitlink/config' leads into .git/ through a symbolic link"),
    ("models/leak.yaml", "kind: Model\nname: leak\nflavor: custom\n"
                         "source: {files: [data/raw.csv], metrics: outlink/shadow}\n",
     "$.source.metrics: path 'outlink/shadow' leads outside the repository"),
    ("datasets/big.yaml", "kind: Dataset\nname: big\npath: outlink/sub\n",
     "$.path: path 'outlink/sub' leads outside the repository"),
    ("environments/e.yaml", "kind: Environment\nname: e\npython: '3.11'\nlockfile: outlink/shadow\n",
     "$.lockfile: path 'outlink/shadow' leads outside the repository"),
    ("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out/x").replace("data/raw.csv", "outlink/shadow"),
     "$.steps[0].inputs.raw: path 'outlink/shadow' leads outside the repository"),
    ("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out/x") + "    code: [outlink]\n",
     "$.steps[0].code[0]: path 'outlink' leads outside the repository"),
    ("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out/x") + "    code: [.]\n",
     "$.steps[0].code[0]: path '.' is the repository root"),
])
def test_a_path_a_spec_reads_never_leads_out_of_the_repository(repo: Repo, spec: str, text: str,
                                                               message: str) -> None:
    os.symlink("/proc/self/environ", repo.path / "envlink")
    os.symlink(".git", repo.path / "gitlink")
    repo.write(spec, text)
    if not spec.startswith("pipelines/"):
        repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out/x"))
    errs = errors_of(repo)
    assert len(errs) == 1, errs
    assert errs[0].startswith(f"{spec}:") and message in errs[0], errs


def test_links_inside_the_repository_may_be_read(repo: Repo) -> None:
    repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out/x").replace("data/raw.csv", "inlink/raw.csv"))
    repo.write("models/m.yaml", "kind: Model\nname: m\nflavor: custom\nsource: {files: [inlink/raw.csv]}\n")
    assert set(load_specs(repo.path).models) == {"m"}


@pytest.mark.parametrize(("path", "message"), [
    ("/var/tmp/store", "path '/var/tmp/store' is outside the repository: a spec may only name a store inside it "
                       "(an operator can point elsewhere with MLOPS_STORE_PATH)"),
    ("../..", "path '../..' is outside the repository"),
    (".", "path '.' is the repository root"),
    (".git/store", "path '.git/store' is inside .git/"),
    ("outlink/store", "path 'outlink/store' passes through the symbolic link 'outlink'"),
    ("steps", "path 'steps' holds tracked files"),
    ("pipelines/store", "path 'pipelines/store' is among the spec files"),
])
def test_the_store_a_spec_names_is_inside_the_repository(repo: Repo, path: str, message: str) -> None:
    repo.write("mlops.yaml", f"kind: Project\nname: small\nstages: [{{name: dev}}]\n"
                             f"stores:\n  artifacts: {{type: local, path: '{path}'}}\n")
    errs = errors_of(repo)
    assert_reported(errs, f"mlops.yaml:{line_of(repo, 'mlops.yaml', 'artifacts')}:",
                    f"$.stores.artifacts.path: {message}")


def test_a_committed_mlops_directory_is_refused_wherever_the_store_is(repo: Repo) -> None:
    """.mlops holds caches (a plan trusts them), serving state and locks even when the store is elsewhere:
    a pull request that commits files there would forge them."""
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n"
                             "stores:\n  artifacts: {type: local, path: var/store}\n")
    repo.write(".mlops/cache/sides/forged.json", "{}\n")
    repo.git("add", "-f", ".mlops/cache/sides/forged.json")
    repo.commit("a forged cache")
    for args in (("validate",), ("validate", "--rev", "HEAD"), ("plan", "--no-refresh")):
        out = mlops(repo, *args, check=False)
        assert out.returncode == 9, (args, out.stdout, out.stderr)
        assert "path '.mlops' holds tracked files (such as .mlops/cache/sides/forged.json)" in out.stderr, args


def test_outputs_may_not_reach_into_a_store_kept_elsewhere_in_the_repository(repo: Repo) -> None:
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n"
                             "stores:\n  artifacts: {type: local, path: var/store}\n")
    repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "var"))
    errs = errors_of(repo)
    assert_reported(errs, "pipelines/p.yaml:", "path 'var' overlaps the artifact store (var/store)")


def test_cli_reports_at_file_line_at_a_revision_too_and_touches_nothing(repo: Repo, sentinel: Path) -> None:
    repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "outlink/sub"))
    repo.write("models/leak.yaml", "kind: Model\nname: leak\nflavor: custom\nsource: {files: [outlink/shadow]}\n")
    repo.commit("a hostile change")
    before, git_before = snapshot(sentinel), snapshot(repo.path / ".git", skip=("index",))
    out_line = line_of(repo, "pipelines/p.yaml", "o: ")
    for args in (("validate",), ("validate", "--rev", "HEAD"), ("reconcile",), ("run", "p")):
        out = mlops(repo, *args, check=False)
        assert out.returncode == 9, (args, out.stdout, out.stderr)
        assert f"pipelines/p.yaml:{out_line}:" in out.stderr and "passes through the symbolic link 'outlink'" \
            in out.stderr, (args, out.stderr)
        assert "models/leak.yaml:4:" in out.stderr and "leads outside the repository" in out.stderr
        assert "Traceback" not in out.stderr
    assert snapshot(sentinel) == before
    assert snapshot(repo.path / ".git", skip=("index",)) == git_before


def test_spec_files_and_folders_that_are_links_are_never_read_through(repo: Repo, sentinel: Path) -> None:
    """Error messages echo values: a linked spec would print a host file's secrets in the PR checks."""
    hostile = "kind: Model\nname: x\nflavor: custom\nsource: {files: [{token: ghp_SECRET}]}\n"
    (sentinel / "creds.yaml").write_text(hostile)
    (sentinel / "netplan").mkdir()
    (sentinel / "netplan" / "01.yaml").write_text("network: {wifis: {wlan0: {password: hunter2-SECRET}}}\n")
    (repo.path / "models").mkdir()
    os.symlink(sentinel / "creds.yaml", repo.path / "models" / "x.yaml")
    os.symlink(sentinel / "netplan", repo.path / "endpoints")
    repo.commit("linked specs")
    for rev in ((), ("--rev", "HEAD")):
        out = mlops(repo, "validate", *rev, check=False)
        assert out.returncode == 9
        assert "models/x.yaml:1:1: $: a spec must be a YAML mapping" in out.stderr, out.stderr
        assert "SECRET" not in out.stdout + out.stderr
