"""Batch scoring: rows/s of a batch endpoint vs a bare onnxruntime loop over the same CSV file.

A wine classifier (StandardScaler + LogisticRegression on scikit-learn's wine data, exported by skl2onnx)
scores a CSV of ``--rows`` rows x 13 features (wine rows, jittered), both ways, in interleaved rounds:

* **ours**: what reconcile does for a ``type: batch`` endpoint, in-process: the model resolved in the
  registry and fetched from the store (verified), the input hashed, read and parsed in mini-batches,
  scored, the predictions (row number, label, 3 probabilities) written as CSV, a journal written after every
  mini-batch, the output renamed into place and hashed.
* **bare onnxruntime loop**: the file read in chunks of the same number of lines, parsed with
  ``numpy.loadtxt`` and scored with ``session.run`` per chunk; it writes nothing (it only scores).

For reference (not in the ratio), a third loop shows the floor of the same work with pyarrow:

* **bare pyarrow loop**: ``pyarrow.csv.open_csv`` streamed, ``session.run`` per batch, and the same
  predictions written with ``pyarrow.csv.write_csv`` (no journal, no error isolation, no checks).

All use one onnxruntime session with one intra-op thread and the same mini-batch size.

Each round also prints the CPU seconds the process spent (on a busy machine wall-clock time moves a lot;
CPU time much less). The ratio is of the median wall-clock rows/s.

    python benchmarks/batch.py [--rows 1000000] [--rounds 5] [--mini-batch 10000]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tooling"))


def make_model(path: Path) -> list[str]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_wine()
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(data.data, data.target)
    onx = to_onnx(est, initial_types=[("input", FloatTensorType([None, 13]))],
                  options={id(est.steps[-1][1]): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(onx.SerializeToString())
    return [n.replace("/", "_") for n in data.feature_names]


def make_csv(path: Path, names: list[str], rows: int) -> None:
    """Wine rows, jittered and rounded as measurements are, written by pyarrow (fast)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from sklearn.datasets import load_wine

    x0 = load_wine().data
    rng = np.random.default_rng(0)
    step = 200_000
    with pacsv.CSVWriter(path, pa.schema([(n, pa.float64()) for n in names]),
                         write_options=pacsv.WriteOptions(quoting_style="none")) as w:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            x = np.round(x0[rng.integers(0, len(x0), n)] * rng.normal(1.0, 0.02, (n, 13)), 4)
            w.write_table(pa.table({name: x[:, j] for j, name in enumerate(names)}))


def make_repo(root: Path, model: Path, names: list[str], rows: int, mini_batch: int) -> None:
    root.mkdir()
    (root / "models").mkdir()
    (root / "endpoints").mkdir()
    (root / "data").mkdir()
    (root / "model").mkdir()
    (root / "mlops.yaml").write_text("kind: Project\nname: bench\nstages:\n  - name: dev\n")
    (root / "models" / "wine.yaml").write_text("kind: Model\nname: wine\nflavor: onnx\nsource:\n"
                                               "  files: [model/wine.onnx]\n")
    (root / "endpoints" / "score.yaml").write_text(
        "kind: Endpoint\nname: score\ntype: batch\ndeployments:\n  - name: main\n    model: wine@1\n"
        f"batch:\n  input: data/in.csv\n  output: out/pred.csv\n  mini_batch_size: {mini_batch}\n")
    (root / "model" / "wine.onnx").write_bytes(model.read_bytes())
    make_csv(root / "data" / "in.csv", names, rows)
    (root / ".gitignore").write_text(".mlops/\nout/\ndata/\n")
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    from mlops.reconcile.story import open_project_store
    from mlops.registry.models import register_model

    register_model(open_project_store(root), "wine", [root / "model" / "wine.onnx"], flavor="onnx")


def ours(root: Path) -> int:
    """One scoring of the endpoint's input, as its deploy action does it (rows scored)."""
    from mlops.batch.deploy import resolve_model, score
    from mlops.batch.job import job_for
    from mlops.batch.run import opened_input
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_specs

    specs = load_specs(root)
    endpoint = specs.endpoints["score"]
    store = open_project_store(root)
    job = job_for(endpoint, root)
    mv, sha = resolve_model(endpoint, specs, store)
    with opened_input(job) as source:
        out = score(job, mv, sha, store, source)
    assert out.status == "succeeded" and out.errors == 0, out.message
    return out.rows


def _session(model: Path) -> tuple[Any, str]:
    """A one-thread onnxruntime session on the CPU (as the batch scorer's), and its input's name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name


def bare(csv_path: Path, model: Path, mini_batch: int) -> int:
    """A bare onnxruntime loop: loadtxt a chunk of lines, session.run it, next."""
    session, name = _session(model)
    rows = 0
    with open(csv_path, "rb") as f:
        f.readline()
        while lines := list(itertools.islice(f, mini_batch)):
            x = np.loadtxt(lines, delimiter=",", dtype=np.float32, ndmin=2)
            session.run(None, {name: x})
            rows += len(x)
    return rows


def bare_arrow(csv_path: Path, model: Path, out: Path) -> int:
    """Reading, scoring and writing with pyarrow and onnxruntime, and nothing else."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    session, name = _session(model)
    rows = 0
    reader = pacsv.open_csv(csv_path, read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 20))
    with open(out, "wb") as f:
        for batch in reader:
            x = np.column_stack([c.to_numpy() for c in batch.columns]).astype(np.float32)
            label, proba = session.run(None, {name: x})
            cols = {"row": np.arange(rows + 1, rows + 1 + len(x)), "label": label}
            cols.update({f"probability_{j}": proba[:, j] for j in range(proba.shape[1])})
            buf = io.BytesIO()
            pacsv.write_csv(pa.table(cols), buf, write_options=pacsv.WriteOptions(include_header=rows == 0))
            f.write(buf.getvalue())
            rows += len(x)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mini-batch", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-batch-") as tmp:
        model = Path(tmp) / "wine.onnx"
        names = make_model(model)
        root = Path(tmp) / "repo"
        make_repo(root, model, names, args.rows, args.mini_batch)
        size = (root / "data" / "in.csv").stat().st_size
        print(f"input: {args.rows:,} rows x 13 features, {size / 1e6:.1f} MB CSV; mini-batch {args.mini_batch:,} rows")
        rates: dict[str, list[float]] = {"ours": [], "bare": [], "arrow": []}
        order = ["ours", "bare", "arrow"]
        for r in range(args.rounds):
            for who in order[r % 3:] + order[:r % 3]:
                start, cpu = time.perf_counter(), time.process_time()
                if who == "ours":
                    n = ours(root)
                elif who == "bare":
                    n = bare(root / "data" / "in.csv", model, args.mini_batch)
                else:
                    n = bare_arrow(root / "data" / "in.csv", model, Path(tmp) / "arrow.csv")
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                assert n == args.rows, (who, n)
                rates[who].append(n / seconds)
                print(f"round {r + 1}  {who:<5} {seconds:7.2f} s  {n / seconds:>12,.0f} rows/s   "
                      f"(cpu {cpu:6.2f} s: {n / cpu:>10,.0f} rows per cpu-s)")
        ours_rate, bare_rate = statistics.median(rates["ours"]), statistics.median(rates["bare"])
        print(f"\n{'':<28}{'rows/s (median)':>16}")
        print(f"{'ours (batch endpoint)':<28}{ours_rate:>16,.0f}")
        print(f"{'bare onnxruntime loop':<28}{bare_rate:>16,.0f}")
        print(f"{'bare pyarrow loop (ref.)':<28}{statistics.median(rates['arrow']):>16,.0f}")
        print(f"ratio: {ours_rate / bare_rate:.2f} (ours vs bare onnxruntime loop, higher is better)")


if __name__ == "__main__":
    main()
