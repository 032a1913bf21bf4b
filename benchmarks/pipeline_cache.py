"""No-op re-run of a 100-step pipeline: ``mlops run`` vs DVC's ``dvc repro``.

A temporary git repository gets a pipeline of small steps (a 50-step chain, plus a 50-step
fan-out where fan step i consumes chain step i's output) described twice: as an mlops Pipeline
spec and as a ``dvc.yaml`` with the same commands, dependencies and outputs. Each tool runs it
once; then the no-op re-run (nothing changed, everything cached) of each is timed as a CLI
subprocess, in interleaved rounds, and the medians are compared.

DVC is installed by this benchmark into its own virtualenv under the cache directory
(``$XDG_CACHE_HOME/mlops-benchmarks``, or ``--cache-dir``), never by the package; this checkout
is installed (editable) into a second one there, so both tools start from equal interpreters.

    python benchmarks/pipeline_cache.py [--steps 100] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP_SCRIPT = '''
"""One benchmark step: write a digest of its input (if any) and its name to its output."""
import hashlib
import sys

from common import render

name, out = sys.argv[1], sys.argv[2]
data = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else b"seed"
with open(out, "w") as f:
    f.write(render(name, hashlib.sha256(data).hexdigest()))
'''

PROJECT = Path(__file__).resolve().parents[1]

COMMON_SCRIPT = '''
def render(name, digest):
    return f"{name} {digest}\\n"
'''


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlops-benchmarks"


def ensure_dvc(cache_dir: Path) -> Path:
    """The ``dvc`` executable of our own virtualenv, created and installed on first use."""
    venv = cache_dir / "dvc-venv"
    dvc = venv / "bin" / "dvc"
    if dvc.exists() and subprocess.run([str(dvc), "--version"], capture_output=True).returncode == 0:
        return dvc
    print(f"installing dvc into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "dvc>=3,<4"], check=True)
    return dvc


def ensure_mlops(cache_dir: Path) -> Path:
    """The ``mlops`` executable of our own virtualenv, with this checkout installed in it (editable).

    Ours runs from a fresh virtualenv just like DVC does, so neither pays for whatever the host
    interpreter's site-packages do at start-up (here a ``.pth`` file imports certifi: ~40 ms).
    """
    venv = cache_dir / "mlops-venv"
    mlops = venv / "bin" / "mlops"
    probe = [str(venv / "bin" / "python"), "-c", "import mlops; print(mlops.__file__)"]
    if mlops.exists():
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode == 0 and Path(done.stdout.strip()).resolve().is_relative_to(PROJECT):
            return mlops
    print(f"installing mlops into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-e", str(PROJECT)], check=True)
    return mlops


def steps(n: int) -> list[tuple[str, str | None, str]]:
    """(name, input path or None, output path) of a chain of n/2 steps plus a fan-out of n/2."""
    chain = n // 2
    found: list[tuple[str, str | None, str]] = []
    for i in range(chain):
        found.append((f"c{i:03d}", f"out/c{i - 1:03d}.txt" if i else None, f"out/c{i:03d}.txt"))
    for i in range(n - chain):
        found.append((f"f{i:03d}", f"out/c{i % chain:03d}.txt", f"out/f{i:03d}.txt"))
    return found


def producer_of(path: str, all_steps: list[tuple[str, str | None, str]]) -> str:
    return next(name for name, _, out in all_steps if out == path)


def write_repo(root: Path, n: int) -> None:
    (root / "steps").mkdir(parents=True)
    (root / "out").mkdir()
    (root / "pipelines").mkdir()
    (root / "steps" / "step.py").write_text(STEP_SCRIPT.lstrip())
    (root / "steps" / "common.py").write_text(COMMON_SCRIPT.lstrip())
    (root / ".gitignore").write_text(".mlops/\n")
    (root / "mlops.yaml").write_text("kind: Project\nname: bench\nstages:\n  - name: dev\n")
    all_steps = steps(n)
    py = sys.executable
    mlops_steps, dvc_stages = [], []
    for name, inp, out in all_steps:
        # JSON is YAML: it spares us quoting rules for the ${...} references.
        command = ["python", "steps/step.py", name, "${outputs.o}"] + (["${inputs.i}"] if inp else [])
        inputs = {"i": "${steps." + producer_of(inp, all_steps) + ".outputs.o}"} if inp else {}
        mlops_steps.append(
            f"  - name: {name}\n    command: {json.dumps(command)}\n"
            + (f"    inputs: {json.dumps(inputs)}\n" if inputs else "")
            + f"    outputs: {json.dumps({'o': out})}\n"
        )
        # DVC: same command (absolute interpreter, as ours resolves `python`), same deps and outs.
        cmd = f"{py} steps/step.py {name} {out}" + (f" {inp}" if inp else "")
        deps = ["steps/step.py", "steps/common.py"] + ([inp] if inp else [])
        dvc_stages.append(
            f"  {name}:\n    cmd: {cmd}\n    deps:\n"
            + "".join(f"      - {d}\n" for d in deps)
            + f"    outs:\n      - {out}\n"
        )
    (root / "pipelines" / "bench.yaml").write_text("kind: Pipeline\nname: bench\nsteps:\n" + "".join(mlops_steps))
    (root / "dvc.yaml").write_text("stages:\n" + "".join(dvc_stages))


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` and return its wall time; fail loudly with its output if it fails."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def setup_git(root: Path) -> None:
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    sh(git + ["init", "-q", "-b", "main"], root)
    sh(git + ["add", "-A"], root)
    sh(git + ["commit", "-q", "-m", "benchmark pipeline"], root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()

    dvc = ensure_dvc(args.cache_dir)
    # Both tools start with bytecode caching on, as on a developer's machine (CI images often set
    # PYTHONDONTWRITEBYTECODE, which makes every start-up recompile whatever has no .pyc yet).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(args.cache_dir / "pycache")
    dvc_env = {**env, "DVC_NO_ANALYTICS": "1"}
    mlops = [str(ensure_mlops(args.cache_dir))]
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        ours_repo, dvc_repo = tmp / "ours", tmp / "dvc"
        for repo in (ours_repo, dvc_repo):
            write_repo(repo, args.steps)
        setup_git(ours_repo)
        setup_git(dvc_repo)
        sh([str(dvc), "init", "-q"], dvc_repo, dvc_env)
        sh([str(dvc), "config", "core.analytics", "false"], dvc_repo, dvc_env)

        ours_cmd = [*mlops, "-C", str(ours_repo), "run", "bench", "--jobs", "2"]
        dvc_cmd = [str(dvc), "repro"]
        first_ours = sh(ours_cmd, ours_repo, env)
        first_dvc = sh(dvc_cmd, dvc_repo, dvc_env)
        # One untimed no-op each: settles caches (our stat cache trusts files only once they are
        # older than the racy window; DVC writes its own state db on the first re-run).
        time.sleep(2.1)
        sh(ours_cmd, ours_repo, env)
        sh(dvc_cmd, dvc_repo, dvc_env)
        _check_noop(ours_repo, mlops, env)

        ours_times, dvc_times = [], []
        for _ in range(args.rounds):
            ours_times.append(sh(ours_cmd, ours_repo, env))
            dvc_times.append(sh(dvc_cmd, dvc_repo, dvc_env))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ours_med, dvc_med = statistics.median(ours_times), statistics.median(dvc_times)
    rows = [
        ("tool", "first run s", "no-op median s", "no-op min s", "no-op ms/step"),
        ("mlops run", f"{first_ours:.2f}", f"{ours_med:.3f}", f"{min(ours_times):.3f}",
         f"{1000 * ours_med / args.steps:.1f}"),
        ("dvc repro", f"{first_dvc:.2f}", f"{dvc_med:.3f}", f"{min(dvc_times):.3f}",
         f"{1000 * dvc_med / args.steps:.1f}"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"{args.steps}-step pipeline, no-op re-run, {args.rounds} interleaved rounds")
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print("rounds (ms): mlops " + " ".join(f"{1000 * t:.0f}" for t in ours_times)
          + " | dvc " + " ".join(f"{1000 * t:.0f}" for t in dvc_times))
    print(f"ratio: {dvc_med / ours_med:.1f} (ours vs dvc no-op repro, higher is better)")


def _check_noop(repo: Path, mlops: list[str], env: dict[str, str]) -> None:
    """Make sure our timed re-runs really are no-ops (every step cached), or the numbers lie."""
    done = subprocess.run([*mlops, "-C", str(repo), "run", "bench", "--output", "json"], capture_output=True,
                          text=True, env=env)
    record = json.loads(done.stdout)
    statuses = {s["status"] for s in record["steps"]}
    if statuses != {"cached"}:
        raise SystemExit(f"our no-op re-run was not a no-op: {statuses}")


if __name__ == "__main__":
    main()
