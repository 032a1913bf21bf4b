"""The attacks of issue 11 section 2, as a hostile pull request would make them, through `mlops reconcile`.

Each is refused with file:line before anything runs, and nothing outside the repository (a
sentinel directory standing for /etc, /usr/share, ...), in ``.git`` or among the tracked files
is touched; nothing is registered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.gitrepo import Repo, init_repo, mlops
from tests.sentinel import make_sentinel, snapshot

PROJECT = "kind: Project\nname: small\nstages: [{name: dev}]\n"
PIPELINE = """kind: Pipeline
name: p
steps:
  - name: make
    command: [python, steps/make.py, "${outputs.o}"]
    outputs:
      o: OUTPUT
"""
MAKE = "import os, sys\nos.makedirs(sys.argv[1], exist_ok=True)\nopen(os.path.join(sys.argv[1], 'x'), 'w').write('x')\n"


def pipeline(output: str) -> Callable[[Repo, Path], None]:
    return lambda repo, sentinel: repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", output))


def linked(link: str, target: str, spec: str, text: str) -> Callable[[Repo, Path], None]:
    def attack(repo: Repo, sentinel: Path) -> None:
        os.symlink(target.replace("SENTINEL", str(sentinel)), repo.path / link)
        repo.write(spec, text)
    return attack


ATTACKS = {
    "output is the repository": (pipeline("."), "pipelines/p.yaml:7:", "path '.' is the repository root"),
    "output is .git": (pipeline(".git"), "pipelines/p.yaml:7:", "path '.git' is inside .git/"),
    "output is a spec": (pipeline("mlops.yaml"), "pipelines/p.yaml:7:", "would overwrite specs"),
    "output is tracked": (pipeline("steps/make.py"), "pipelines/p.yaml:7:", "is a tracked file"),
    "output through a link": (linked("outlink", "SENTINEL", "pipelines/p.yaml", PIPELINE.replace("OUTPUT", "outlink/sub")),
                              "pipelines/p.yaml:7:", "passes through the symbolic link 'outlink'"),
    "model from /etc": (linked("etclink", "SENTINEL", "models/m.yaml",
                               "kind: Model\nname: m\nflavor: custom\nsource: {files: [etclink/shadow]}\n"),
                        "models/m.yaml:4:", "path 'etclink/shadow' leads outside the repository"),
    "model from the environment": (linked("envlink", "/proc/self/environ", "models/m.yaml",
                                          "kind: Model\nname: m\nflavor: custom\nsource: {files: [envlink]}\n"),
                                   "models/m.yaml:4:", "path 'envlink' leads outside the repository"),
    "dataset in /usr/share": (linked("share", "SENTINEL/sub", "datasets/d.yaml", "kind: Dataset\nname: d\npath: share\n"),
                              "datasets/d.yaml:3:", "path 'share' leads outside the repository"),
    "store outside": (lambda repo, sentinel: repo.write("mlops.yaml", PROJECT + "stores:\n  artifacts: {type: local, path: ../..}\n"),
                      "mlops.yaml:5:", "path '../..' is outside the repository"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_reconcile_refuses_and_touches_nothing(tmp_path: Path, name: str) -> None:
    attack, where, message = ATTACKS[name]
    sentinel = make_sentinel(tmp_path / "outside")
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", PROJECT)
    repo.write("steps/make.py", MAKE)
    repo.write("pipelines/p.yaml", PIPELINE.replace("OUTPUT", "out/made"))
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.commit("small project")
    attack(repo, sentinel)
    repo.commit("a hostile pull request")
    before = snapshot(tmp_path, skip=("index",))  # the sentinel, .git and every tracked file

    out = mlops(repo, "reconcile", check=False)

    assert out.returncode == 9, (out.stdout, out.stderr)
    line = next(e for e in out.stderr.splitlines() if message in e)
    assert line.startswith(where), out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert snapshot(tmp_path, skip=("index",)) == before


def test_a_step_that_edits_tracked_code_is_named_and_not_recorded(tmp_path: Path) -> None:
    """A step writing outside its outputs (here: its own script) is reported; the state keeps what was applied."""
    from tests.gitrepo import init_repo

    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: p\nstages: [{name: dev}]\n")
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.write("pipelines/p.yaml", "kind: Pipeline\nname: p\nsteps:\n  - name: s\n"
                                   "    command: [python, steps/s.py, \"${outputs.o}\"]\n    outputs: {o: out/o.txt}\n")
    repo.write("steps/s.py", "import sys\nopen(sys.argv[1], 'w').write('x')\nopen(__file__, 'a').write('#\\n')\n")
    commit = repo.commit("a step that edits itself")
    out = mlops(repo, "reconcile", check=False)
    assert "a step wrote outside its outputs" in out.stderr and "steps/s.py" in out.stderr, out.stderr
    import json

    state = json.loads((repo.path / ".mlops/records/reconcile/state.json").read_text())
    assert state["last_applied_commit"] == commit and state["dirty"] is False
    assert mlops(repo, "reconcile", check=False).returncode == 9  # the edited tree is refused until restored
