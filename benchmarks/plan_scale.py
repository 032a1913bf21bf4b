"""How fast is `mlops plan` on a large repository when one file changed?

Generates a synthetic mlops repository with 1,000 assets (250 environments, 250 four-step pipelines
with their step code and a local helper module, 250 models, 250 endpoints), commits it, adds some
history, then changes one step's Python file. Times, interleaved over several rounds:

    mlops plan --base HEAD~1 --head HEAD      (ours: load both revisions, diff, plan)
    git diff --name-only HEAD~1 HEAD          (baseline: the cheapest answer to "what changed")

The baseline only lists changed paths; ours also validates both revisions, follows the change
through local imports and downstream assets, and orders the actions. The ratio is git / ours.

Then, each round, one more commit changes another step's code and is planned for the first time
against its parent (what CI does for each push): the head is new, the base was planned before.

The commands run with PYTHONDONTWRITEBYTECODE unset (some sandboxes set it): Python then keeps
compiled .pyc files after the first run, as on a user's machine, instead of compiling every module
of mlops again on every call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0
GOAL_S = 0.5
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": os.environ.get("HOME", "/tmp"),
}

PROJECT = """\
kind: Project
name: scale
stages:
  - name: dev
  - name: staging
    gates:
      - {metric: accuracy, op: ">=", threshold: 0.9}
  - name: prod
    gates:
      - approval: {required: 1}
stores:
  artifacts: {type: local, path: .mlops}
  registry: {backend: store}
targets:
  local: {type: local}
default_target: local
"""

ENVIRONMENT = """\
kind: Environment
name: env-{i}
python: "3.11"
system_site_packages: true
requirements:
  - numpy>=1.24
  - scikit-learn>=1.{i_mod}
"""

PIPELINE = """\
kind: Pipeline
name: pipe-{i}
environment: env-{i}
params: {{seed: {i}}}
steps:
  - name: prepare
    command: [python, pipelines/pipe-{i}/prepare.py, --out, "${{outputs.data}}", --seed, "${{params.seed}}"]
    outputs: {{data: data/pipe-{i}/data.csv}}
  - name: train
    command: [python, pipelines/pipe-{i}/train.py, --data, "${{inputs.data}}", --model, "${{outputs.model}}"]
    params: {{C: 1.0}}
    inputs: {{data: "${{steps.prepare.outputs.data}}"}}
    outputs: {{model: artifacts/pipe-{i}/model.pkl}}
  - name: evaluate
    command: [python, pipelines/pipe-{i}/evaluate.py, --model, "${{inputs.model}}", --metrics, "${{outputs.metrics}}"]
    inputs: {{model: "${{steps.train.outputs.model}}", data: "${{steps.prepare.outputs.data}}"}}
    outputs: {{metrics: artifacts/pipe-{i}/metrics.json}}
    metrics: metrics
  - name: export
    command: [python, pipelines/pipe-{i}/export.py, --model, "${{inputs.model}}", --onnx, "${{outputs.onnx}}"]
    inputs: {{model: "${{steps.train.outputs.model}}"}}
    outputs: {{onnx: artifacts/pipe-{i}/model.onnx}}
"""

MODEL = """\
kind: Model
name: model-{i}
flavor: onnx
source: {{pipeline: pipe-{i}, artifact: export.onnx, metrics: evaluate.metrics}}
tags: {{team: team-{team}}}
"""

ENDPOINT = """\
kind: Endpoint
name: endpoint-{i}
type: online
target: local
deployments:
  - {{name: blue, model: model-{i}@dev, environment: env-{i}}}
traffic: {{blue: 100}}
"""

STEP_CODE = '''\
"""Step {step} of pipeline {i} (synthetic)."""

import argparse

from helpers import describe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    args = parser.parse_args()
    print(describe("{step}", {i}, args))


if __name__ == "__main__":
    main()
'''

HELPERS = '''\
"""Local helper module shared by the steps of pipeline {i}."""


def describe(step: str, index: int, args: object) -> str:
    return f"{{step}} of {{index}}: {{args}}"
'''


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stdout."""
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def generate(repo: Path, per_kind: int) -> None:
    """Write the synthetic repository: ``per_kind`` assets of each of the four kinds."""
    write(repo / "mlops.yaml", PROJECT)
    write(repo / ".gitignore", ".mlops/\ndata/\nartifacts/\n")
    for i in range(per_kind):
        write(repo / f"environments/env-{i}.yaml", ENVIRONMENT.format(i=i, i_mod=3 + i % 5))
        write(repo / f"pipelines/pipe-{i}.yaml", PIPELINE.format(i=i))
        for step in ("prepare", "train", "evaluate", "export"):
            write(repo / f"pipelines/pipe-{i}/{step}.py", STEP_CODE.format(step=step, i=i))
        write(repo / f"pipelines/pipe-{i}/helpers.py", HELPERS.format(i=i))
        write(repo / f"models/model-{i}.yaml", MODEL.format(i=i, team=i % 7))
        write(repo / f"endpoints/endpoint-{i}.yaml", ENDPOINT.format(i=i))


def make_history(repo: Path, per_kind: int, commits: int) -> None:
    """Initial commit, ``commits`` commits touching a few specs each, then a one-file code change."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Initial synthetic repository")
    for c in range(commits):
        for k in range(5):
            i = (c * 37 + k * 11) % per_kind
            path = repo / f"models/model-{i}.yaml"
            kept = [line for line in path.read_text().splitlines() if not line.startswith("description:")]
            path.write_text("\n".join([*kept, f"description: revision {c}.{k}"]) + "\n")
        git(repo, "commit", "-q", "-am", f"History commit {c}")
    step = repo / f"pipelines/pipe-{per_kind // 2}/train.py"
    step.write_text(step.read_text().replace('parser.add_argument("--out")', 'parser.add_argument("--out")\n'
                                             '    parser.add_argument("--C", type=float, default=1.0)'))
    git(repo, "commit", "-q", "-am", "Tune one training step")
    changed = git(repo, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert changed == [f"pipelines/pipe-{per_kind // 2}/train.py"], changed


CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # see the docstring


def timed(argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=CHILD_ENV)
    return time.perf_counter() - start, proc


def check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        sys.exit(f"{what} failed with exit code {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


def new_heads(repo: Path, mlops: str, per_kind: int, rounds: int) -> list[float]:
    """Each round: commit a change to another step's code, then plan that commit once against its parent."""
    times = []
    for r in range(rounds):
        step = repo / f"pipelines/pipe-{(per_kind // 2 + 1 + r) % per_kind}/evaluate.py"
        step.write_text(step.read_text() + f"# round {r}\n")
        git(repo, "commit", "-q", "-am", f"Touch one evaluation step ({r})")
        t, proc = timed([mlops, "plan", "--base", "HEAD~1", "--head", "HEAD", "--no-refresh"], repo)
        check(proc, "mlops plan of a new commit")
        times.append(t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=250, help="assets of each kind (4 kinds)")
    parser.add_argument("--history", type=int, default=8, help="commits between the first and the last")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the generated repository and print its path")
    args = parser.parse_args()
    # The console script beside this interpreter: a version manager's shim (pyenv) would add ~0.1 s a call.
    beside = Path(sys.executable).parent / "mlops"
    mlops = str(beside) if beside.is_file() else shutil.which("mlops")
    if mlops is None:
        sys.exit("the `mlops` command is not installed (pip install -e .)")

    tmp = Path(tempfile.mkdtemp(prefix="mlops-plan-scale-"))
    repo = tmp / "repo"
    try:
        start = time.perf_counter()
        generate(repo, args.per_kind)
        make_history(repo, args.per_kind, args.history)
        n_files = len(git(repo, "ls-files").split())
        print(f"repository: {4 * args.per_kind} assets, {n_files} files, {args.history + 2} commits "
              f"(generated in {time.perf_counter() - start:.1f} s)")
        validate_s, proc = timed([mlops, "validate"], repo)
        check(proc, "mlops validate")
        print(f"mlops validate: {validate_s:.3f} s ({proc.stdout.strip()})")

        commands = {
            "mlops plan --base HEAD~1 --head HEAD": [mlops, "plan", "--base", "HEAD~1", "--head", "HEAD"],
            "  ... --no-refresh (git only)": [mlops, "plan", "--base", "HEAD~1", "--head", "HEAD", "--no-refresh"],
            "git diff --name-only HEAD~1 HEAD": ["git", "diff", "--name-only", "HEAD~1", "HEAD"],
        }
        cold: dict[str, float] = {}
        outputs: dict[str, str] = {}
        for label, argv in commands.items():  # first runs: cold caches (.pyc, .mlops/cache, page cache)
            cold[label], proc = timed(argv, repo)
            check(proc, label)
            outputs[label] = proc.stdout
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.rounds):
            for label, argv in commands.items():
                t, proc = timed(argv, repo)
                check(proc, label)
                times[label].append(t)
        fresh = new_heads(repo, mlops, args.per_kind, args.rounds)
        if args.keep:
            print(f"kept: {repo}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    for label in list(commands)[:2]:
        lines = outputs[label].strip().splitlines()
        print(f"{label.strip()}: {lines[-1] if lines else '(no output)'}")
    print(f"\n{'command':<40} {'1st s':>7} {'median s':>9} {'min s':>7} {'max s':>7}")
    for label, ts in times.items():
        print(f"{label:<40} {cold[label]:>7.3f} {statistics.median(ts):>9.3f} {min(ts):>7.3f} {max(ts):>7.3f}")
    print(f"{'  ... a new commit, planned once':<40} {'':>7} {statistics.median(fresh):>9.3f} {min(fresh):>7.3f} "
          f"{max(fresh):>7.3f}")
    plan_s, git_s = times[next(iter(commands))], times["git diff --name-only HEAD~1 HEAD"]
    plan_med, git_med = statistics.median(plan_s), statistics.median(git_s)
    verdict = "meets" if plan_med < TARGET_S else "MISSES"
    goal = "meets" if plan_med < GOAL_S else "misses"
    print(f"\nplan time {plan_med:.3f} s over {args.rounds} rounds: {verdict} the target (< {TARGET_S} s), "
          f"{goal} the goal (< {GOAL_S} s)")
    print(f"ratio: {git_med / plan_med:.4f} (ours vs git diff --name-only, higher is better)")


if __name__ == "__main__":
    main()
