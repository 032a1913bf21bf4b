"""A killed run resumes where it stopped, and its output is byte for byte an uninterrupted run's; memory
stays bounded whatever the input's size. Real `mlops batch run` subprocesses, killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlops.batch import journal as journals
from tests.batch.conftest import Project, endpoint_yaml, make_project, many_rows
from tests.evaluation.models import Trained
from tests.gitrepo import mlops

pytestmark = pytest.mark.slow


def write_big_csv(path: Path, t: Trained, n: int, bad_every: int = 0) -> None:
    """``n`` rows of wine features (every ``bad_every``-th one broken), written quickly by pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    x = many_rows(t, n, seed=1)
    cols = {name: pa.array(x[:, j]) for j, name in enumerate(t.names)}
    if bad_every:
        first = np.array([repr(float(v)) for v in x[:, 0]], dtype=object)
        first[::bad_every] = "oops"
        cols[t.names[0]] = pa.array(first.tolist())
    pacsv.write_csv(pa.table(cols), path, write_options=pacsv.WriteOptions(quoting_style="none"))


@pytest.fixture
def big(tmp_path: Path, wine: Trained) -> Project:
    p = make_project(tmp_path / "repo", wine, "", endpoint=endpoint_yaml("wine@1", mini_batch_size=500))
    write_big_csv(p.root / "data" / "in.csv", wine, 300_000, bad_every=997)
    p.repo.commit("a big input")
    p.register()
    return p


def journal(p: Project) -> dict[str, int] | None:
    found = journals.read(p.root / ".mlops" / "batch" / "scorer")
    return None if found is None else {"rows": found.rows}


def kill_after(p: Project, rows: int) -> subprocess.Popen[bytes]:
    """A real `mlops batch run` killed with SIGKILL once its journal says ``rows`` rows are done (it may end first)."""
    proc = subprocess.Popen([sys.executable, "-m", "mlops.cli", "-C", str(p.root), "batch", "run", "scorer"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None:
            j = journal(p)
            if j is not None and j["rows"] >= rows:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    return proc


def test_a_run_killed_with_sigkill_resumes_and_writes_the_same_bytes(big: Project) -> None:
    proc = kill_after(big, 5000)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed: make the input bigger"
    killed_at = journal(big)
    assert killed_at is not None and 0 < killed_at["rows"] < 300_000
    assert not (big.root / "out" / "pred.csv").exists()  # no half output at the spec's path

    again = mlops(big.repo, "batch", "run", "scorer")
    assert "resumed at row" in again.stdout, again.stdout
    resumed_at = int(again.stdout.split("resumed at row ")[1].split(")")[0])
    assert resumed_at - 1 >= killed_at["rows"]
    assert journal(big) is None  # finished: nothing left to resume

    ref = mlops(big.repo, "batch", "run", "scorer", "--output", str(big.root.parent / "ref.csv"))
    assert "resumed" not in ref.stdout
    assert (big.root / "out" / "pred.csv").read_bytes() == (big.root.parent / "ref.csv").read_bytes()
    errors = (big.root / "out" / "pred.csv.errors.jsonl").read_bytes()
    assert errors == (big.root.parent / "ref.csv.errors.jsonl").read_bytes()
    assert len(errors.splitlines()) == len(range(0, 300_000, 997))


def test_a_journal_of_another_input_is_not_resumed(big: Project) -> None:
    kill_after(big, 1000)
    assert journal(big) is not None
    with open(big.root / "data" / "in.csv", "a") as f:  # the input changed since: start over
        f.write(",".join(["1.0"] * 13) + "\n")
    out = mlops(big.repo, "batch", "run", "scorer", "--input", str(big.root / "data" / "in.csv"))
    assert "resumed" not in out.stdout and "of 300001 rows" in out.stdout


def test_memory_stays_bounded_whatever_the_size_of_the_input(tmp_path: Path, wine: Trained) -> None:
    """The peak RSS a run of a ~100 MB input adds, after a warm-up run on 100 rows, is a small part of the
    input's size (reading it whole would add its size, and its features as floats another 40 MB)."""
    p = make_project(tmp_path / "repo", wine, "", endpoint=endpoint_yaml("wine@1", mini_batch_size=2000))
    p.register()
    write_big_csv(p.root / "data" / "in.csv", wine, 400_000)
    write_big_csv(tmp_path / "small.csv", wine, 100)
    script = f"""
import resource
from pathlib import Path
from mlops.batch.deploy import resolve_model, score
from mlops.batch.job import job_for
from mlops.batch.run import opened_input
from mlops.reconcile.story import open_project_store
from mlops.spec.loader import load_specs
root = Path({str(p.root)!r})
specs = load_specs(root)
e = specs.endpoints["scorer"]
store = open_project_store(root)
mv, sha = resolve_model(e, specs, store)
warm = job_for(e, root, input={str(tmp_path / "small.csv")!r}, output={str(tmp_path / "small.out.csv")!r})
with opened_input(warm) as source:
    score(warm, mv, sha, store, source)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
job = job_for(e, root)
with opened_input(job) as source:
    out = score(job, mv, sha, store, source)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, out.rows)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grown, rows = map(int, done.stdout.split())
    assert rows == 400_000
    size_kb = (p.root / "data" / "in.csv").stat().st_size // 1024
    assert grown < size_kb // 4, f"the run grew the peak RSS by {grown} kB on a {size_kb} kB input"
