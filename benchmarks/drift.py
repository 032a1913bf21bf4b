"""Data drift: our drift report vs Evidently 0.7's ``DataDriftPreset``, same data, same run.

The data: 1,000,000 reference rows and 1,000,000 current rows of 20 features (``--rows`` to change),
written as Parquet files in a temporary directory: 12 numerical (normal, log-normal, uniform, integer
counts, a 3-valued integer, one with 2% missing values) and 8 categorical (strings with 2 to 1,000
categories, a boolean), of which some drift (shifted means, changed shares) and some barely move.

Each side runs as a child process that starts a fresh interpreter, imports its library, reads the two
Parquet files and computes the report, so the times include import and load:

- ours: ``mlops.monitoring`` under this interpreter with this checkout's ``tooling/`` on PYTHONPATH;
- Evidently 0.7 (``Report([DataDriftPreset()])`` on ``Dataset.from_pandas`` with an explicit
  ``DataDefinition`` of numerical and categorical columns, files read with ``pandas.read_parquet``),
  installed by this benchmark into a virtualenv of its own under the cache directory
  (``$XDG_CACHE_HOME/mlops-benchmarks``, or ``--cache-dir``) with ``pandas<3``.

Before the timed rounds, both run on four small data sets of the same kind (300 vs 500, 1,000 vs 700,
1,500 vs 4,000 and 20,000 vs 15,000 rows), so that Evidently's tests for references of at most 1,000
rows (KS, chi-squared, Z) and unequal sizes are compared too.

Rounds are interleaved (ours ``--repeat`` times, then Evidently, and again); the table gives each one's
median wall time, CPU time (user + system, all threads) and peak memory (``ru_maxrss``) of its child process. On a
machine that others share, the CPU time moves far less than the wall time. Every round's per-feature drifted/not-drifted verdicts
are compared: they must agree (a disagreement is printed, and the benchmark exits 1).

    python benchmarks/drift.py [--rows 1000000] [--rounds 3] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.*", "pandas<3"]

NUMERICAL = [f"n{i:02d}" for i in range(12)]
CATEGORICAL = [f"c{i:02d}" for i in range(8)]

# Each child: argv = OUT NUMERICAL_JSON CATEGORICAL_JSON REF CUR [REF CUR ...]; writes one result per pair.
OURS = r'''
import json, sys, time
t0 = time.perf_counter()
from mlops.monitoring import columns, drift
results = []
for ref_path, cur_path in zip(sys.argv[4::2], sys.argv[5::2]):
    t1 = time.perf_counter()
    ref, cur = columns.open_data(ref_path), columns.open_data(cur_path)
    t2 = time.perf_counter()
    opts = drift.DriftOptions(numerical=tuple(json.loads(sys.argv[2])), categorical=tuple(json.loads(sys.argv[3])))
    report = drift.drift_report(ref, cur, options=opts)
    t3 = time.perf_counter()
    out = {f["name"]: {"drifted": f["drifted"], "test": f["test"], "statistic": f["statistic"]}
           for f in report["features"]}
    results.append({"features": out, "load_s": t2 - t0 if not results else t2 - t1, "report_s": t3 - t2})
json.dump(results, open(sys.argv[1], "w"))
'''

EVIDENTLY = r'''
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
num, cat = json.loads(sys.argv[2]), json.loads(sys.argv[3])
tests = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon",
         "K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z", "PSI": "psi"}
results = []
for ref_path, cur_path in zip(sys.argv[4::2], sys.argv[5::2]):
    t1 = time.perf_counter()
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    t2 = time.perf_counter()
    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    snap = Report([DataDriftPreset()]).run(current_data=Dataset.from_pandas(cur, data_definition=dd),
                                            reference_data=Dataset.from_pandas(ref, data_definition=dd))
    result = snap.dict()
    t3 = time.perf_counter()
    out = {}
    for m in result["metrics"]:
        cfg = m["config"]
        if cfg.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        test = tests.get(cfg["method"], cfg["method"])
        value, threshold = float(m["value"]), float(cfg["threshold"])
        if test in ("wasserstein", "jensenshannon", "psi"):
            drifted = value >= threshold
        elif test == "ks":  # Evidently's KS drifts at p <= threshold, chi-squared and Z at p < threshold
            drifted = value <= threshold
        else:
            drifted = value < threshold
        out[cfg["column"]] = {"drifted": drifted, "test": test, "statistic": value}
    results.append({"features": out, "load_s": t2 - t0 if not results else t2 - t1, "report_s": t3 - t2})
json.dump(results, open(sys.argv[1], "w"))
'''

# Small data sets checked for the same verdicts before the timed rounds: references of at most 1,000
# rows get Evidently's p-value tests (KS, chi-squared, Z), larger ones the distances; sizes differ.
SMALL_SETS = [(300, 500), (1000, 700), (1500, 4000), (20_000, 15_000)]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlops-benchmarks"


def ensure_venv(cache_dir: Path, name: str, requirements: list[str], probe: str) -> Path:
    """The ``python`` of a virtualenv of ours with ``requirements``, made on first use (redone when
    ``probe`` does not run in it)."""
    venv = cache_dir / name
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return python
    print(f"installing {' '.join(requirements)} into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    subprocess.run([str(python), "-c", probe], check=True)
    return python


def make_data(rows: int, ref_path: Path, cur_path: Path, seed: int = 7, current_rows: int | None = None) -> None:
    """Reference and current Parquet files (``rows`` and ``current_rows`` rows): the same 20 features,
    some drifted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)

    def numerical(current: bool, rows: int) -> dict[str, Any]:
        k = 1 if current else 0
        nulls = rng.random(rows) < 0.02
        n09 = rng.normal(5, 2, rows) + 0.6 * k
        return {
            "n00": rng.normal(0, 1, rows) + 0.3 * k,                # drifts
            "n01": rng.normal(10, 3, rows) + 0.03 * k,              # barely moves
            "n02": rng.lognormal(0, 0.5 + 0.2 * k, rows),           # drifts (spread)
            "n03": rng.uniform(0, 100, rows),                       # same
            "n04": rng.poisson(4 + 1.5 * k, rows).astype(np.int64), # drifts (counts)
            "n05": rng.poisson(20, rows).astype(np.int64),          # same
            "n06": rng.integers(0, 3, rows),                        # 3 values: tested as categories
            "n07": rng.choice(3, rows, p=[0.5, 0.3, 0.2] if not k else [0.3, 0.3, 0.4]),  # 3 values, drifts
            "n08": rng.exponential(2.0, rows),                      # same
            "n09": pa.array(n09, mask=nulls),                       # 2% missing, drifts
            "n10": rng.normal(0, 1, rows).round(2) + 0.01 * k,      # many ties, barely moves
            "n11": rng.gamma(2.0, 2.0 + 0.5 * k, rows),             # drifts
        }

    def categorical(current: bool, rows: int) -> dict[str, Any]:
        k = 1 if current else 0

        def cats(n: int, p: Any) -> Any:
            names = pa.array([f"cat_{i:04d}" for i in range(n)])
            return pa.DictionaryArray.from_arrays(pa.array(rng.choice(n, rows, p=p).astype(np.int32)), names)

        big = np.arange(1, 1001, dtype=np.float64) ** -0.8
        big_cur = big.copy()
        big_cur[:50] *= 1.0 + 0.5 * k
        return {
            "c00": cats(2, [0.5, 0.5] if not k else [0.35, 0.65]),                       # drifts
            "c01": cats(2, [0.7, 0.3]),                                                  # same
            "c02": cats(5, [0.2] * 5 if not k else [0.1, 0.1, 0.2, 0.3, 0.3]),           # drifts
            "c03": cats(5, [0.3, 0.3, 0.2, 0.1, 0.1] if not k else [0.29, 0.31, 0.2, 0.1, 0.1]),  # barely
            "c04": cats(10, np.full(10, 0.1)),                                           # same
            "c05": cats(1000, (big_cur if k else big) / (big_cur if k else big).sum()),  # drifts a little
            "c06": pa.array(rng.random(rows) < (0.5 if not k else 0.52)),                # boolean, barely
            "c07": cats(20, np.full(20, 0.05) if not k else np.r_[np.full(10, 0.02), np.full(10, 0.08)]),  # drifts
        }

    for path, current, n in ((ref_path, False, rows), (cur_path, True, current_rows or rows)):
        data = {**numerical(current, n), **categorical(current, n)}
        pq.write_table(pa.table(data), path)


def spawn(argv: list[str], env: dict[str, str], out: Path) -> list[dict[str, Any]]:
    """Run one child with its own resource accounting (``wait4`` on its pid): what it wrote, the first
    result carrying the child's wall time, CPU time and peak memory."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{argv[0]} {argv[1]} ... failed with exit code {code}")
    results = json.loads(out.read_text())
    results[0].update(_wall_s=wall, _maxrss_mb=usage.ru_maxrss / 1024, _cpu_s=usage.ru_utime + usage.ru_stime)
    return results


def max_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    diffs = [abs(a["statistic"] - theirs[n]["statistic"]) for n, a in ours.items()
             if n in theirs and a["statistic"] is not None]
    return max(diffs, default=float("nan"))


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The features whose verdicts (or tests) differ, described."""
    problems = []
    for name in sorted(set(ours) | set(theirs)):
        a, b = ours.get(name), theirs.get(name)
        if a is None or b is None:
            problems.append(f"{name}: only in {'ours' if b is None else 'Evidently'}")
        elif a["drifted"] != b["drifted"] or a["test"] != b["test"]:
            problems.append(f"{name}: ours {a['test']}={a['statistic']} drifted={a['drifted']}, "
                            f"Evidently {b['test']}={b['statistic']} drifted={b['drifted']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of ours per round: a run of 2 s is at the mercy of a moment's load, "
                             "Evidently's minute averages it out")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    ev_python = ensure_venv(args.cache_dir, "evidently-venv", EVIDENTLY_REQUIREMENTS,
                            "import evidently, pandas; from evidently.presets import DataDriftPreset; "
                            "assert evidently.__version__.startswith('0.7.')")
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    ours_env = {**base, "PYTHONPATH": str(PROJECT / "tooling")}
    cols = [json.dumps(NUMERICAL), json.dumps(CATEGORICAL)]
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        work = Path(tmp)
        ref, cur = work / "reference.parquet", work / "current.parquet"
        t0 = time.perf_counter()
        make_data(args.rows, ref, cur)
        print(f"data: {args.rows:,} reference + {args.rows:,} current rows x {len(NUMERICAL) + len(CATEGORICAL)} "
              f"features ({len(NUMERICAL)} numerical, {len(CATEGORICAL)} categorical), Parquet "
              f"{(ref.stat().st_size + cur.stat().st_size) / 1e6:.0f} MB, made in {time.perf_counter() - t0:.1f} s")
        (work / "run_ours.py").write_text(OURS)
        (work / "run_evidently.py").write_text(EVIDENTLY)
        pythons = {"ours": sys.executable, "evidently": str(ev_python)}
        envs = {"ours": ours_env, "evidently": {**base, "PYTHONWARNINGS": "ignore"}}  # scipy: 0/0 in chisquare

        def run(who: str, out: Path, pairs: list[Path]) -> list[dict[str, Any]]:
            argv = [pythons[who], str(work / f"run_{who}.py"), str(out), *cols, *map(str, pairs)]
            return spawn(argv, envs[who], out)

        disagreements: set[str] = set()
        small: list[Path] = []
        for i, (n_ref, n_cur) in enumerate(SMALL_SETS):
            small += [work / f"small{i}-ref.parquet", work / f"small{i}-cur.parquet"]
            make_data(n_ref, small[-2], small[-1], seed=100 + i, current_rows=n_cur)
        ours_small = run("ours", work / "ours-small.json", small)
        ev_small = run("evidently", work / "evidently-small.json", small)
        for (n_ref, n_cur), a, b in zip(SMALL_SETS, ours_small, ev_small, strict=True):
            found = compare(a["features"], b["features"])
            tests = sorted({f["test"] for f in a["features"].values()})
            print(f"small set {n_ref:,} vs {n_cur:,} rows ({', '.join(tests)}): "
                  f"{'verdicts agree' if not found else 'DISAGREE'}; largest statistic difference "
                  f"{max_difference(a['features'], b['features']):.2e}")
            disagreements.update(f"{n_ref}x{n_cur} {d}" for d in found)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "evidently": []}
        for i in range(args.rounds):
            for who in ["ours"] * args.repeat + ["evidently"]:
                r = run(who, work / f"{who}-{i}.json", [ref, cur])[0]
                r.update(wall_s=r.pop("_wall_s"), cpu_s=r.pop("_cpu_s"), maxrss_mb=r.pop("_maxrss_mb"))
                runs[who].append(r)
                print(f"round {i + 1} {who:9}: {r['wall_s']:7.2f} s (import+load {r['load_s']:.2f} s, "
                      f"report {r['report_s']:.2f} s), CPU {r['cpu_s']:.2f} s, peak {r['maxrss_mb']:.0f} MB",
                      flush=True)
            disagreements.update(compare(runs["ours"][-1]["features"], runs["evidently"][-1]["features"]))
        report(runs, disagreements)


def report(runs: dict[str, list[dict[str, Any]]], disagreements: set[str]) -> None:
    med = {who: statistics.median(r["wall_s"] for r in rs) for who, rs in runs.items()}
    mem = {who: max(r["maxrss_mb"] for r in rs) for who, rs in runs.items()}
    cpu = {who: statistics.median(r["cpu_s"] for r in rs) for who, rs in runs.items()}
    ours_f, ev_f = runs["ours"][-1]["features"], runs["evidently"][-1]["features"]
    print()
    print(f"{'feature':8} {'test':14} {'ours':>12} {'Evidently':>12}  drifted (ours/Evidently)")
    for name in sorted(ours_f):
        a, b = ours_f[name], ev_f.get(name, {})
        print(f"{name:8} {a['test']:14} {a['statistic']:12.6g} {b.get('statistic', float('nan')):12.6g}  "
              f"{a['drifted']!s:5} / {b.get('drifted')!s:5}")
    print()
    print(f"{'':10} {'median s':>9} {'CPU s':>8} {'peak MB':>8}")
    for who in ("ours", "evidently"):
        print(f"{who:10} {med[who]:9.2f} {cpu[who]:8.2f} {mem[who]:8.0f}")
    print(f"by CPU time: {cpu['evidently'] / cpu['ours']:.1f}x")
    drifted = sum(1 for f in ours_f.values() if f["drifted"])
    print(f"statistics: largest |ours - Evidently| {max_difference(ours_f, ev_f):.2e}")
    if disagreements:
        print(f"verdicts: DISAGREE on {len(disagreements)} feature(s):")
        for d in sorted(disagreements):
            print(f"  {d}")
    else:
        print(f"verdicts: agree on all {len(ours_f)} features ({drifted} drifted) in every round")
    print(f"ratio: {med['evidently'] / med['ours']:.1f} (ours vs Evidently, higher is better)")
    if disagreements:
        sys.exit(1)


if __name__ == "__main__":
    main()
