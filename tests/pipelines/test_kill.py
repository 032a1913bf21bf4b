"""SIGKILL a pipeline run at random (seeded) moments; the next run completes and the store is sound."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops.pipelines.runner import run_pipeline
from mlops.spec.model import Pipeline, Step
from mlops.store.local import LocalStore
from tests.pipelines.demo_repo import git, write

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]

# Writes its output slowly, in chunks, so a kill can land mid-write; deterministic content.
WRITER = '''
import hashlib, os, sys, time
src, out, seed = sys.argv[1], sys.argv[2], sys.argv[3]
base = open(src, "rb").read() if src != "-" else b""
block = hashlib.sha256(base + seed.encode()).digest() * 8192  # 256 KiB
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "wb") as f:
    for _ in range(4):
        f.write(block)
        f.flush()
        time.sleep(0.03)
'''

SPLIT = '''
import os, sys
src, out = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
os.makedirs(out, exist_ok=True)
for i in range(4):
    with open(os.path.join(out, f"part-{i}.bin"), "wb") as f:
        f.write(data[i::4])
'''


def kill_pipeline() -> Pipeline:
    def writer(name: str, src: str, out: str) -> Step:
        inputs = {"src": src} if src != "-" else {}
        arg = "${inputs.src}" if src != "-" else "-"
        return Step(name, ("python", "steps/writer.py", arg, "${outputs.o}", name), inputs=inputs, outputs={"o": out})

    return Pipeline("killme", (
        writer("gen", "-", "out/gen.bin"),
        writer("a", "${steps.gen.outputs.o}", "out/a.bin"),
        writer("b", "${steps.gen.outputs.o}", "out/b.bin"),
        Step("split", ("python", "steps/split.py", "${inputs.src}", "${outputs.parts}"),
             inputs={"src": "${steps.a.outputs.o}"}, outputs={"parts": "out/parts"}),
        writer("c", "${steps.b.outputs.o}", "out/c.bin"),
        writer("d", "${steps.c.outputs.o}", "out/d.bin"),
    ))


def make_repo(root: Path) -> Path:
    write(root, "steps/writer.py", WRITER)
    write(root, "steps/split.py", SPLIT)
    write(root, ".gitignore", ".mlops/\nout/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "kill test")
    return root


DRIVER = """
import sys
sys.path.insert(0, {project!r})
from mlops.pipelines.runner import run_pipeline
from mlops.store.local import LocalStore
from tests.pipelines.test_kill import kill_pipeline
repo = {repo!r}
run_pipeline(kill_pipeline(), repo, LocalStore(repo + "/.mlops"), {{}}, jobs=2, progress=False)
"""


def outputs_of(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted((repo / "out").rglob("*")) if p.is_file()}


def assert_store_sound(store: LocalStore) -> int:
    """Every blob under its final name hashes to that name. Returns the number of blobs."""
    count = 0
    for path in (store.root / "blobs").rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"partial or corrupt blob {path}"
            count += 1
    return count


def test_a_killed_run_is_completed_by_the_next_run(tmp_path: Path) -> None:
    reference = make_repo(tmp_path / "reference")
    started = time.monotonic()
    assert run_pipeline(kill_pipeline(), reference, LocalStore(reference / ".mlops"), {}, progress=False).status == "succeeded"
    full = time.monotonic() - started
    expected = outputs_of(reference)

    rng = random.Random(20261123)
    # Stratified, so the kills spread over the run (after the driver's own start-up time).
    moments = [0.25 + (k + rng.random()) * full * 1.5 / 4 for k in range(4)]
    for i, moment in enumerate(moments):
        repo = make_repo(tmp_path / f"repo{i}")
        store = LocalStore(repo / ".mlops")
        driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(project=str(PROJECT), repo=str(repo))],
                                  cwd=repo, start_new_session=True)
        time.sleep(moment)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert_store_sound(store)

        # Orphaned step processes of the killed run keep its lock; this run waits for them.
        record = run_pipeline(kill_pipeline(), repo, store, {}, progress=False)

        print(f"killed at {moment:.2f}s of {full:.2f}s:", {s.name: s.status for s in record.steps})
        assert record.status == "succeeded", (moment, record)
        assert outputs_of(repo) == expected, moment
        assert assert_store_sound(store) >= len(expected)
        assert not any((repo / ".mlops/cache/pipelines/logs/killme").iterdir())  # scratch of the killed run swept
        # and now everything is cached
        again = run_pipeline(kill_pipeline(), repo, store, {}, progress=False)
        assert {s.status for s in again.steps} == {"cached"}
