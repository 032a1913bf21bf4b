"""A step owns its outputs and nothing else, at run time too.

What only shows when the pipeline runs is refused by the runner, and nothing outside the
repository (a sentinel directory standing for /etc and friends) or in ``.git`` is touched: a link
in an output's path (committed, left behind, or made by an earlier step), a restore from the cache
through such a link, an output produced as a link to a host file, an output that became tracked,
inputs and code that lead out of the repository through a link. Pipelines here are built in Python
and run with ``run_pipeline``, which is what ``mlops run`` and reconcile call after validation.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from mlops.errors import PipelineError
from mlops.pipelines.record import RunRecord
from mlops.pipelines.runner import run_pipeline
from mlops.spec.model import Pipeline, Step
from mlops.store.local import LocalStore
from tests.gitrepo import Repo
from tests.gitrepo import mlops as mlops_cli
from tests.pipelines.demo_repo import git, write
from tests.sentinel import make_sentinel, secret_digest, snapshot

COPY = "import sys, os\nos.makedirs(os.path.dirname(sys.argv[2]) or '.', exist_ok=True)\n" \
       "open(sys.argv[2], 'w').write(open(sys.argv[1]).read())\n"


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return make_sentinel(tmp_path / "outside")


def one_step(output: str, inputs: dict[str, str] | None = None, script: str = "steps/copy.py",
             code: tuple[str, ...] = ()) -> Pipeline:
    command = ("python", script, "${inputs.src}" if inputs else "data/raw.txt", "${outputs.out}")
    return Pipeline(name="p", file="pipelines/p.yaml", steps=(
        Step("copy", command, inputs=dict(inputs or {}), outputs={"out": output}, code=code),))


def run(repo: Path, pipeline: Pipeline, **kw: object) -> RunRecord:
    return run_pipeline(pipeline, repo, LocalStore(repo / ".mlops"), {}, progress=False, **kw)  # type: ignore[arg-type]


def failure(record: RunRecord) -> str:
    assert record.status == "failed", record
    step = next(s for s in record.steps if s.status == "failed")
    return step.error or ""


@pytest.fixture
def repo(repo: Path) -> Path:
    write(repo, "steps/copy.py", COPY)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "copy step")
    return repo


@pytest.mark.parametrize("output", [".", "./", ".git", ".git/config", ".mlops/cache", ""])
def test_outputs_that_are_not_new_paths_stop_the_run_before_anything_runs(repo: Path, output: str) -> None:
    before = snapshot(repo, skip=("index",))
    with pytest.raises(PipelineError, match=r"pipelines/p.yaml: pipeline 'p' step 'copy' output 'out': "):
        run(repo, one_step(output))
    assert snapshot(repo, skip=("index",)) == before


def test_an_output_may_not_overlap_the_steps_own_input(repo: Path) -> None:
    with pytest.raises(PipelineError, match="overlaps the step's input 'data/raw.txt'"):
        run(repo, one_step("data", inputs={"src": "data/raw.txt"}))
    assert (repo / "data/raw.txt").read_text() == "some raw data\n"


def test_a_tracked_output_is_refused_and_left_alone(repo: Path) -> None:
    for output in ("README.md", "lib"):
        record = run(repo, one_step(output))
        assert "is a tracked file" in failure(record) or "holds tracked files (such as lib/__init__.py)" \
            in failure(record)
    assert (repo / "README.md").read_text() == "demo\n"
    assert (repo / "lib/shapes.py").is_file()


def test_an_output_that_became_tracked_is_refused_even_when_cached(repo: Path) -> None:
    assert run(repo, one_step("out/copy.txt")).status == "succeeded"
    git(repo, "add", "-f", "out/copy.txt")
    (repo / "out/copy.txt").write_text("edited and tracked\n")
    record = run(repo, one_step("out/copy.txt"))  # the cache would restore it: refused instead
    assert "path 'out/copy.txt' is a tracked file" in failure(record)
    assert (repo / "out/copy.txt").read_text() == "edited and tracked\n"


def test_a_committed_link_in_an_outputs_path_is_refused(repo: Path, sentinel: Path) -> None:
    os.symlink(sentinel, repo / "outlink")
    git(repo, "add", "outlink")
    git(repo, "commit", "-q", "-m", "a link to a host directory")
    before = snapshot(sentinel)
    record = run(repo, one_step("outlink/sub"))
    assert "output 'out': path 'outlink/sub' passes through the symbolic link 'outlink'" in failure(record)
    assert snapshot(sentinel) == before


def test_cache_restore_never_writes_through_a_link(repo: Path, sentinel: Path) -> None:
    pipeline = one_step("out/sub/copy.txt")
    assert run(repo, pipeline).status == "succeeded"
    shutil.rmtree(repo / "out")
    os.symlink(sentinel, repo / "out")  # left where the output's directory was
    before = snapshot(sentinel)
    record = run(repo, pipeline)
    assert "passes through the symbolic link 'out'" in failure(record)
    assert snapshot(sentinel) == before
    assert record.steps[0].status == "failed"

    os.unlink(repo / "out")  # removed: the next run restores from the cache again
    again = run(repo, pipeline)
    assert again.steps[0].status == "cached"
    assert (repo / "out/sub/copy.txt").read_text() == "some raw data\n"


def test_a_link_in_place_of_an_output_is_replaced_not_followed(repo: Path, sentinel: Path) -> None:
    pipeline = one_step("out/copy.txt")
    assert run(repo, pipeline).status == "succeeded"
    os.unlink(repo / "out/copy.txt")
    os.symlink(sentinel / "shadow", repo / "out/copy.txt")
    before = snapshot(sentinel)
    assert run(repo, pipeline).steps[0].status == "cached"
    assert not (repo / "out/copy.txt").is_symlink()
    assert (repo / "out/copy.txt").read_text() == "some raw data\n"
    assert snapshot(sentinel) == before


def test_a_link_made_by_an_earlier_step_is_refused_for_a_later_output(repo: Path, sentinel: Path) -> None:
    write(repo, "steps/plant.py", f"import os, sys\nos.symlink({str(sentinel)!r}, 'later')\n"
                                  "open(sys.argv[1], 'w').write('planted')\n")
    pipeline = Pipeline(name="p", file="pipelines/p.yaml", steps=(
        Step("plant", ("python", "steps/plant.py", "${outputs.a}"), outputs={"a": "planted.txt"}),
        Step("victim", ("python", "steps/copy.py", "${inputs.a}", "${outputs.b}"),
             inputs={"a": "${steps.plant.outputs.a}"}, outputs={"b": "later/sub/b.txt"}),
    ))
    before = snapshot(sentinel)
    record = run(repo, pipeline)
    assert record.steps[0].status == "ran"
    assert "path 'later/sub/b.txt' passes through the symbolic link 'later'" in failure(record)
    assert snapshot(sentinel) == before


@pytest.mark.parametrize("inside", [False, True])
def test_an_output_produced_as_a_link_is_refused_and_its_target_never_stored(
        repo: Path, sentinel: Path, inside: bool) -> None:
    target = repo / "data/raw.txt" if inside else sentinel / "shadow"
    write(repo, "steps/link.py", f"import os, sys\nos.makedirs(sys.argv[1])\n"
                                 f"os.symlink({str(target)!r}, os.path.join(sys.argv[1], 'leak'))\n"
                                 f"os.symlink({str(target)!r}, sys.argv[2])\n")
    pipeline = Pipeline(name="p", file="pipelines/p.yaml", steps=(
        Step("dir", ("python", "steps/link.py", "${outputs.d}", "${outputs.f}"),
             outputs={"d": "out/d", "f": "out/f"}),))
    record = run(repo, pipeline)
    assert "output 'd' (out/d): out/d/leak is a symbolic link" in failure(record)
    store = LocalStore(repo / ".mlops")
    assert not store.has_blob(secret_digest())
    assert not store.has_blob(hashlib.sha256(b"some raw data\n").hexdigest())


def test_inputs_and_code_that_lead_out_through_a_link_are_refused(repo: Path, sentinel: Path) -> None:
    os.symlink(sentinel, repo / "etclink")
    record = run(repo, one_step("out/x", inputs={"src": "etclink/shadow"}))
    assert "input 'src'" in failure(record) and "leads outside the repository through the symbolic link " \
                                                "'etclink'" in failure(record)

    (repo / "data/dir").mkdir()
    os.symlink(sentinel / "shadow", repo / "data/dir/leak")  # a link inside a directory input
    record = run(repo, one_step("out/x", inputs={"src": "data/dir"}))
    assert "path 'data/dir/leak' leads outside the repository" in failure(record)

    os.symlink(sentinel / "shadow", repo / "steps/helper.py")
    record = run(repo, one_step("out/x", code=("steps",)))
    assert "path 'steps/helper.py' leads outside the repository" in failure(record)

    (sentinel / "evil.py").write_text("print('ran a host file as the step')\n")
    record = run(repo, one_step("out/x", script="etclink/evil.py"))
    assert "path 'etclink/evil.py' leads outside the repository" in failure(record)
    assert record.steps[0].exit_code is None  # refused before it ran


def test_links_inside_the_repository_are_read_through(repo: Path) -> None:
    os.symlink("data", repo / "inlink")
    (repo / "data/dir").mkdir()
    os.symlink("../raw.txt", repo / "data/dir/raw.txt")
    assert run(repo, one_step("out/a", inputs={"src": "inlink/raw.txt"})).status == "succeeded"
    write(repo, "steps/cat.py", "import sys\nopen(sys.argv[2], 'w').write(open(sys.argv[1] + '/raw.txt').read())\n")
    record = run(repo, one_step("out/b", inputs={"src": "data/dir"}, script="steps/cat.py"))
    assert record.status == "succeeded", record
    assert (repo / "out/b").read_text() == "some raw data\n"


def test_a_fifo_output_fails_the_step_instead_of_hanging(repo: Path) -> None:
    write(repo, "steps/fifo.py", "import os, sys\nos.mkfifo(sys.argv[1])\n")
    pipeline = Pipeline(name="p", file="pipelines/p.yaml", steps=(
        Step("fifo", ("python", "steps/fifo.py", "${outputs.f}"), outputs={"f": "out/f"}),))
    assert "out/f is not a regular file" in failure(run(repo, pipeline))


def test_huge_metrics_are_refused(repo: Path) -> None:
    write(repo, "steps/metrics.py", "import sys\nopen(sys.argv[1], 'w').write('{\"x\": \"' + 'a' * (2 << 20) + '\"}')\n")
    pipeline = Pipeline(name="p", file="pipelines/p.yaml", steps=(
        Step("m", ("python", "steps/metrics.py", "${outputs.m}"), outputs={"m": "out/m.json"}, metrics="m"),))
    assert "is larger than 1048576 bytes" in failure(run(repo, pipeline))


def test_mlops_run_refuses_a_link_planted_by_an_earlier_step(tmp_path: Path, sentinel: Path) -> None:
    """The same through the CLI: validation passes (the link does not exist yet), the runner refuses."""
    from tests.gitrepo import init_repo

    repo = init_repo(tmp_path / "cli")
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n")
    repo.write(".gitignore", ".mlops/\nout/\nlater\n")
    repo.write("steps/plant.py", f"import os, sys\nos.symlink({str(sentinel)!r}, 'later')\n"
                                 "os.makedirs('out', exist_ok=True)\nopen(sys.argv[1], 'w').write('x')\n")
    repo.write("steps/victim.py", "import sys\nopen(sys.argv[1], 'w').write('overwritten')\n")
    repo.write("pipelines/p.yaml", """kind: Pipeline
name: p
steps:
  - name: plant
    command: [python, steps/plant.py, "${outputs.a}"]
    outputs: {a: out/a.txt}
  - name: victim
    command: [python, steps/victim.py, "${outputs.b}", "${inputs.a}"]
    inputs: {a: "${steps.plant.outputs.a}"}
    outputs: {b: later/shadow}
""")
    repo.commit("pipeline")
    before, git_before = snapshot(sentinel), snapshot(repo.path / ".git", skip=("index",))
    out = mlops_cli(Repo(repo.path), "run", "p", check=False)
    assert out.returncode == 1, out.stderr
    assert "step 'victim' of pipeline 'p' failed: pipelines/p.yaml: pipeline 'p' step 'victim' output 'b': " \
           "path 'later/shadow' passes through the symbolic link 'later'" in out.stderr
    assert "Traceback" not in out.stderr
    assert snapshot(sentinel) == before
    assert snapshot(repo.path / ".git", skip=("index",)) == git_before
