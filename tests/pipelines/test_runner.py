"""run_pipeline end to end: real step subprocesses in a real git repository, a real LocalStore."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import PipelineError
from mlops.host import host_identity, interpreter_tag
from mlops.pipelines.record import RunRecord, list_runs
from mlops.pipelines.runner import run_pipeline
from mlops.spec.model import Pipeline, Step
from mlops.store.local import LocalStore
from tests.pipelines.demo_repo import demo_pipeline, git, traces, write


def run(repo: Path, store: LocalStore, pipeline: Pipeline | None = None, **kw: Any) -> RunRecord:
    return run_pipeline(pipeline or demo_pipeline(), repo, store, {}, progress=False, **kw)


def statuses(record: RunRecord) -> dict[str, str]:
    return {s.name: s.status for s in record.steps}


def test_diamond_runs_in_dependency_order_and_independent_steps_overlap(repo: Path, store: LocalStore) -> None:
    record = run(repo, store, demo_pipeline(sleep=0.6), jobs=2)

    assert record.status == "succeeded"
    assert statuses(record) == {"prepare": "ran", "left": "ran", "right": "ran", "join": "ran"}
    t = traces(repo)
    assert t["prepare"]["end"] <= t["left"]["start"]
    assert t["prepare"]["end"] <= t["right"]["start"]
    assert t["join"]["start"] >= max(t["left"]["end"], t["right"]["end"])
    # left and right ran at the same time
    assert t["left"]["start"] < t["right"]["end"] and t["right"]["start"] < t["left"]["end"]
    assert (repo / "out/model/nested/right.txt").read_text() == "14 chars"
    assert (repo / "out/left.txt").read_text() == "SOME RAW DATA\n scaled by 2"


def test_jobs_1_runs_one_step_at_a_time(repo: Path, store: LocalStore) -> None:
    run(repo, store, demo_pipeline(sleep=0.2), jobs=1)
    t = traces(repo)
    assert t["left"]["end"] <= t["right"]["start"] or t["right"]["end"] <= t["left"]["start"]


def test_noop_rerun_runs_and_copies_nothing(repo: Path, store: LocalStore) -> None:
    first = run(repo, store)
    outputs = [repo / "out/clean.txt", repo / "out/left.txt", repo / "out/model/left.txt", repo / "out/metrics.json"]
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in outputs}

    second = run(repo, store)

    assert set(statuses(second).values()) == {"cached"}
    assert second.status == "succeeded"
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in outputs} == before
    assert [s.cache_key for s in second.steps] == [s.cache_key for s in first.steps]
    assert second.step("join").metrics == first.step("join").metrics == {"chars": 34}


def test_changing_a_param_reruns_that_step_and_its_descendants_only(repo: Path, store: LocalStore) -> None:
    run(repo, store)
    record = run(repo, store, demo_pipeline(scale=3))
    assert statuses(record) == {"prepare": "cached", "left": "ran", "right": "cached", "join": "ran"}


def test_editing_an_imported_helper_module_invalidates_exactly_its_step(repo: Path, store: LocalStore) -> None:
    run(repo, store)
    shapes = repo / "lib/shapes.py"
    shapes.write_text(shapes.read_text().replace("WIDTH = 3", "WIDTH = 4"))  # same size, same output

    record = run(repo, store)

    # right's code changed, so it reran; its output did not, so join stays cached
    assert statuses(record) == {"prepare": "cached", "left": "cached", "right": "ran", "join": "cached"}


def test_editing_a_shared_module_invalidates_every_step_importing_it(repo: Path, store: LocalStore) -> None:
    run(repo, store)
    common = repo / "pipelines/demo/common.py"
    common.write_text(common.read_text() + "\n# a comment\n")
    assert set(statuses(run(repo, store)).values()) == {"ran"}


def test_editing_unrelated_files_invalidates_nothing(repo: Path, store: LocalStore) -> None:
    run(repo, store)
    (repo / "README.md").write_text("changed\n")
    write(repo, "pipelines/demo/unused.py", "import lib.shapes\n")
    write(repo, "lib/other.py", "X = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "unrelated")
    assert set(statuses(run(repo, store)).values()) == {"cached"}


def test_changing_input_data_reruns_everything_downstream(repo: Path, store: LocalStore) -> None:
    run(repo, store)
    (repo / "data/raw.txt").write_text("other raw data\n")
    assert set(statuses(run(repo, store)).values()) == {"ran"}


def test_failing_step_stops_its_descendants_and_a_fixed_rerun_resumes(repo: Path, store: LocalStore) -> None:
    right = repo / "pipelines/demo/right.py"
    good = right.read_text()
    right.write_text(good.replace('done = trace("right")', 'done = trace("right")\nraise SystemExit("boom: bad shapes")'))

    failed = run(repo, store)

    assert failed.status == "failed"
    assert statuses(failed) == {"prepare": "ran", "left": "ran", "right": "failed", "join": "skipped"}
    step = failed.step("right")
    assert step.exit_code == 1
    assert step.error is not None and "boom: bad shapes" in step.error
    assert b"boom: bad shapes" in store.get_bytes(step.stderr or "")
    assert "right" in (failed.step("join").error or "")

    right.write_text(good)
    resumed = run(repo, store)
    assert resumed.status == "succeeded"
    assert statuses(resumed) == {"prepare": "cached", "left": "cached", "right": "ran", "join": "ran"}


def test_deleted_outputs_are_restored_from_the_cache_without_running(repo: Path, store: LocalStore) -> None:
    run(repo, store)
    expected = {p: p.read_bytes() for p in (repo / "out").rglob("*") if p.is_file()}
    shutil.rmtree(repo / "out/model")
    (repo / "out/clean.txt").unlink()
    (repo / "out/left.txt").write_text("tampered")
    shutil.rmtree(repo / "trace")

    record = run(repo, store)

    assert set(statuses(record).values()) == {"cached"}
    assert not (repo / "trace").exists()  # no step ran
    assert {p: p.read_bytes() for p in (repo / "out").rglob("*") if p.is_file()} == expected


def test_many_short_parallel_steps(repo: Path, store: LocalStore) -> None:
    # Many steps starting while others finish, four at a time; their log scratch is gone afterwards.
    steps = tuple(Step(f"s{i}", ("python", "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[1])",
                                 "${outputs.o}"), outputs={"o": f"out/s{i}.txt"}) for i in range(12))
    record = run(repo, store, Pipeline("wide", steps), jobs=4)
    assert record.status == "succeeded", [s.error for s in record.failed_steps]
    assert not (repo / ".mlops/cache/pipelines/logs/wide").exists() or not any(
        (repo / ".mlops/cache/pipelines/logs/wide").iterdir())


def test_missing_output_fails_the_step(repo: Path, store: LocalStore) -> None:
    pipeline = Pipeline("lazy", (Step("noop", ("python", "-c", "print('hi')"), outputs={"o": "out/never.txt"}),))
    record = run(repo, store, pipeline)
    assert record.status == "failed"
    assert "was not produced" in (record.step("noop").error or "")


def test_timeout_fails_the_step(repo: Path, store: LocalStore) -> None:
    slow = Step("slow", ("python", "-c", "import time; time.sleep(30)"), timeout=0.5)
    started = time.monotonic()
    record = run(repo, store, Pipeline("slow", (slow,)))
    assert time.monotonic() - started < 10
    assert record.step("slow").status == "failed"
    assert "timed out after 0.5s" in (record.step("slow").error or "")


def test_force_reruns_everything(repo: Path, store: LocalStore) -> None:
    run(repo, store)
    assert set(statuses(run(repo, store, force=True)).values()) == {"ran"}


def test_run_record_fields(repo: Path, store: LocalStore) -> None:
    record = run(repo, store)
    head = git(repo, "rev-parse", "HEAD").strip()

    assert record.pipeline == "demo" and record.status == "succeeded"
    assert record.git_commit == head
    assert record.git_author == "Test Author <author@example.com>"
    assert record.git_dirty is False
    assert record.git_message == "demo pipeline"
    assert record.started <= record.finished
    prepare = record.step("prepare")
    assert prepare.inputs == {"raw": hashlib.sha256(b"some raw data\n").hexdigest()}
    assert prepare.outputs == {"clean": hashlib.sha256(b"SOME RAW DATA\n").hexdigest()}
    assert prepare.command == ("python", "pipelines/demo/prepare.py", "data/raw.txt", "out/clean.txt")
    assert prepare.environment == host_identity()  # the interpreter's exact version and its packages
    assert prepare.environment.startswith(f"host:{interpreter_tag()}:")
    assert prepare.exit_code == 0 and prepare.duration > 0 and len(prepare.cache_key or "") == 64
    assert store.get_bytes(prepare.stdout or "") == b"preparing 14\n"
    assert record.step("join").metrics == {"chars": 34}
    assert record.step("left").inputs["clean"] == prepare.outputs["clean"]

    # saved in the store, and round-trips through JSON
    assert list_runs(store, "demo") == [record]
    raw = store.read_record(f"runs/demo/{record.run_id}.json")
    assert raw is not None and RunRecord.from_json(json.loads(raw)) == record

    (repo / "README.md").write_text("dirty\n")
    later = run(repo, store, lineage={"git_commit": "abc", "git_author": "x", "git_dirty": True})
    assert later.git_dirty is True and later.git_commit == "abc"
    assert [r.run_id for r in list_runs(store)] == [record.run_id, later.run_id]
    assert later.run_id > record.run_id


def test_own_outputs_do_not_make_the_tree_dirty_but_other_changes_do(repo: Path, store: LocalStore) -> None:
    (repo / ".gitignore").write_text("trace/\n")  # neither .mlops/ nor out/ are ignored any more
    git(repo, "commit", "-q", "-am", "ignore less")
    first = run(repo, store)
    assert first.git_dirty is False and first.git_message == "ignore less"
    (repo / "notes.txt").write_text("untracked\n")
    second = run(repo, store)  # author and message now come from the memo of commits
    assert second.git_dirty is True
    assert (second.git_commit, second.git_author, second.git_message) == (
        first.git_commit, "Test Author <author@example.com>", "ignore less")


def test_step_environment_interpreter_variables_and_params(repo: Path, store: LocalStore, tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Env:
        identity: str
        python: str
        bin_dir: str
        variables: dict[str, str]

    bin_dir = tmp_path / "envbin"
    bin_dir.mkdir()
    tool = bin_dir / "say-hello"
    tool.write_text("#!/bin/sh\necho hello from the env\n")
    tool.chmod(0o755)
    script = (
        "import json, os, subprocess, sys;"
        "out = subprocess.run(['say-hello'], capture_output=True, text=True).stdout.strip();"
        "json.dump({'exe': sys.executable, 'var': os.environ['FROM_ENV'], 'step_var': os.environ['FROM_STEP'],"
        " 'params': json.loads(os.environ['MLOPS_PARAMS']), 'step': os.environ['MLOPS_STEP'],"
        " 'run': os.environ['MLOPS_RUN_ID'], 'tool': out}, open(sys.argv[1], 'w'))"
    )
    pipeline = Pipeline("envs", (Step("show", ("python", "-c", script, "${outputs.o}"), outputs={"o": "out/env.json"},
                                      params={"a": 1}, environment="tools", env={"FROM_STEP": "s"}),),
                        params={"b": [2]})
    python = sys.executable  # not `python3` from PATH: that may be a pyenv shim of a version not activated
    envs = {"tools": Env("env-id-1", python, str(bin_dir), {"FROM_ENV": "v"})}

    record = run_pipeline(pipeline, repo, store, envs, progress=False)

    seen = json.loads((repo / "out/env.json").read_text())
    assert seen == {"exe": seen["exe"], "var": "v", "step_var": "s", "params": {"a": 1, "b": [2]}, "step": "show",
                    "run": record.run_id, "tool": "hello from the env"}
    assert os.path.realpath(seen["exe"]) == os.path.realpath(python)
    assert record.step("show").environment == "env-id-1"
    # a new environment identity is a new cache key
    envs2 = {"tools": Env("env-id-2", python, str(bin_dir), {"FROM_ENV": "v"})}
    assert run_pipeline(pipeline, repo, store, envs2, progress=False).step("show").status == "ran"
    assert run_pipeline(pipeline, repo, store, envs2, progress=False).step("show").status == "cached"


def test_steps_without_environment_rerun_when_the_host_packages_change(repo: Path, store: LocalStore, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    first = run(repo, store)
    assert set(statuses(run(repo, store)).values()) == {"cached"}
    (site / "tiny_pkg-0.1.dist-info").mkdir()  # pip installed a package the steps may import
    second = run(repo, store)
    assert set(statuses(second).values()) == {"ran"}
    assert second.step("prepare").environment != first.step("prepare").environment


def test_bad_references_stop_the_run_before_anything_runs(repo: Path, store: LocalStore) -> None:
    bad = Pipeline("bad", (Step("a", ("python", "-c", "open('ran', 'w')", "${params.nope}")),), file="pipelines/bad.yaml")
    with pytest.raises(PipelineError, match=r"pipelines/bad.yaml: .*step 'a'.*unknown param 'nope'"):
        run(repo, store, bad)
    assert not (repo / "ran").exists()
    missing_env = Pipeline("env", (Step("a", ("true",), environment="nope"),))
    with pytest.raises(PipelineError, match="environment 'nope'"):
        run(repo, store, missing_env)
    missing_ds = Pipeline("ds", (Step("a", ("true",), inputs={"d": "${datasets.wine}"}),))
    with pytest.raises(PipelineError, match="unknown dataset 'wine'"):
        run(repo, store, missing_ds)


def test_datasets_are_inputs(repo: Path, store: LocalStore) -> None:
    write(repo, "data/set/a.csv", "1,2\n")
    step = Step("count", ("python", "-c", "import os,sys; open(sys.argv[2],'w').write(str(len(os.listdir(sys.argv[1]))))",
                          "${inputs.d}", "${outputs.n}"), inputs={"d": "${datasets.wine}"}, outputs={"n": "out/n.txt"})
    pipeline = Pipeline("ds", (step,))
    assert run(repo, store, pipeline, datasets={"wine": "data/set"}).step("count").status == "ran"
    assert run(repo, store, pipeline, datasets={"wine": "data/set"}).step("count").status == "cached"
    write(repo, "data/set/b.csv", "3,4\n")
    assert run(repo, store, pipeline, datasets={"wine": "data/set"}).step("count").status == "ran"
    assert (repo / "out/n.txt").read_text() == "2"


def test_a_steps_env_variables_are_part_of_its_cache_key(repo: Path, store: LocalStore) -> None:
    script = "import os, sys; open(sys.argv[1], 'w').write(os.environ['MODE'])"

    def pipeline(mode: str) -> Pipeline:
        return Pipeline("envkey", (Step("s", ("python", "-c", script, "${outputs.o}"), outputs={"o": "out/mode.txt"},
                                        env={"MODE": mode}),))

    assert run(repo, store, pipeline("a")).step("s").status == "ran"
    assert run(repo, store, pipeline("a")).step("s").status == "cached"
    changed = run(repo, store, pipeline("b")).step("s")
    assert changed.status == "ran" and (repo / "out/mode.txt").read_text() == "b"
    assert run(repo, store, pipeline("a")).step("s").status == "cached"  # restored, not stale
    assert (repo / "out/mode.txt").read_text() == "a"
