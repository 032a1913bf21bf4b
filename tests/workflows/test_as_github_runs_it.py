"""The workflows' own `run:` scripts, executed as GitHub runs them: in a scaffolded project (`mlops init`)
with a bare origin, a realistic GITHUB_EVENT_PATH payload, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and a
stand-in for the GitHub REST API on 127.0.0.1, checking the exact requests.

The path of the README's walk-through: push -> reconcile (dev, promotion pull request) -> merge ->
reconcile (prod awaits approval) -> production job (environment reviewers recorded, promoted);
then retraining from workflow_dispatch and repository_dispatch, and the pull request's plan."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.githubstub import GitHubStub
from tests.gitrepo import Repo, init_repo

REPOSITORY = "octo/demo"
RUN_ID = 4242
EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


@dataclass
class Runner:
    """One job's steps on a 'runner': the checkout, the event, the files GitHub hands to each step."""

    repo: Repo
    gh: GitHubStub
    tmp: Path
    bin: Path
    event: str = "push"
    payload: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)  # the repository's configuration variables

    def step(self, workflow: str, job: str, name: str, ok: bool = True) -> tuple[subprocess.CompletedProcess[str],
                                                                                  dict[str, str], str]:
        """Run step ``name`` of ``job``; (process, its outputs, its job summary)."""
        steps = _workflow(workflow)["jobs"][job]["steps"]
        step = next(s for s in steps if s.get("name") == name)
        (self.tmp / "event.json").write_text(json.dumps(self.payload))
        out, summary = self.tmp / "output", self.tmp / "summary"
        out.write_text("")
        summary.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLOPS_"))}
        env.update({"PATH": f"{self.bin}{os.pathsep}{env['PATH']}", "GITHUB_ACTIONS": "true", "CI": "true",
                    "GITHUB_EVENT_NAME": self.event, "GITHUB_EVENT_PATH": str(self.tmp / "event.json"),
                    "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_RUN_ID": str(RUN_ID),
                    "GITHUB_ACTOR": "octocat", "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_API_URL": self.gh.url,
                    "GITHUB_SHA": self.repo.git("rev-parse", "HEAD"), "GITHUB_WORKSPACE": str(self.repo.path)})
        env.update({k: self._expand(str(v)) for k, v in (step.get("env") or {}).items()})
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", step["run"]],
                              cwd=self.repo.path, env=env, capture_output=True, text=True, timeout=600)
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        return proc, _outputs(out.read_text()), summary.read_text()

    def _expand(self, value: str) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr == "github.token":
                return self.gh.token
            var = re.fullmatch(r"vars\.(\w+) \|\| '([^']*)'", expr)
            if var:  # a repository variable with a default, GitHub's `||`
                return self.vars.get(var.group(1)) or var.group(2)
            assert expr.startswith("github.event."), f"the test does not evaluate {expr}"
            node: Any = self.payload
            for key in expr.removeprefix("github.event.").split("."):
                node = node[key]
            return str(node)

        return EXPR.sub(one, value)


def _workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((Path(__file__).resolve().parents[2] / ".github/workflows" / name).read_text())
    return data


def _outputs(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT's two forms: name=value and name<<DELIMITER ... DELIMITER."""
    found: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            found[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


def _push(repo: Repo, before: str) -> dict[str, Any]:
    after = repo.git("rev-parse", "HEAD")
    return {"ref": "refs/heads/main", "before": before, "after": after, "created": False, "forced": False,
            "repository": {"full_name": REPOSITORY, "default_branch": "main"}, "pusher": {"name": "octocat"},
            "head_commit": {"id": after, "message": repo.git("log", "-1", "--format=%B")}}


@pytest.fixture
def runner(tmp_path: Path) -> Any:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    repo = init_repo(tmp_path / "work")
    proc = subprocess.run([sys.executable, "-m", "mlops.cli", "init", str(repo.path), "--name", "demo"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    repo.commit("mlops init")
    repo.git("remote", "add", "origin", str(origin))
    repo.git("push", "-q", "origin", "main")
    shim = tmp_path / "bin"
    shim.mkdir()
    # `mlops` as the workflows call it: the package under test, by the interpreter running the tests.
    (shim / "mlops").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mlops.cli "$@"\n')
    (shim / "mlops").chmod(0o755)
    with GitHubStub(REPOSITORY, origin=origin) as gh:
        yield Runner(repo, gh, tmp_path, shim)


def _events(root: Path, model: str) -> list[Any]:
    from mlops.reconcile.story import open_project_store
    from mlops.release.records import model_events

    return model_events(open_project_store(root), model)


def test_push_merge_approve_promote_as_github_runs_it(runner: Runner) -> None:
    repo, gh = runner.repo, runner.gh
    first = repo.git("rev-parse", "HEAD")
    runner.payload = _push(repo, "0" * 40)

    # 1. push to main: `mlops reconcile` / job `reconcile`
    runner.step("main.yml", "reconcile", "Validate specs")
    proc, outputs, summary = runner.step("main.yml", "reconcile", "Reconcile")
    assert outputs == {"awaiting-approval": "0", "blocked": "0"}  # the production job is skipped
    assert "#### mlops apply" in summary and "example-classifier" in summary
    branch = "mlops/promote/example-classifier/prod"
    assert [(r.method, r.target) for r in gh.requests] == [
        ("GET", "/repos/octo/demo/pulls?state=open&head=octo%3Amlops%2Fpromote%2Fexample-classifier%2Fprod"
                "&base=main&per_page=100"),
        ("POST", "/repos/octo/demo/pulls"),
    ]
    body = gh.requests[1].json()
    assert {k: body[k] for k in ("title", "head", "base", "draft")} == {
        "title": "Promote example-classifier@1 to prod", "head": branch, "base": "main", "draft": False}
    assert "accuracy" in body["body"]
    assert gh.requests[1].headers["authorization"] == f"Bearer {gh.token}"
    assert gh.token not in proc.stdout + proc.stderr  # masked

    # 2. the promotion pull request is merged without a review
    repo.git("fetch", "-q", "origin", branch)
    repo.git("merge", "-q", "--no-ff", "FETCH_HEAD", "-m", "Merge pull request #1 from octo/" + branch)
    repo.git("push", "-q", "origin", "main")
    merge = repo.git("rev-parse", "HEAD")
    gh.merge(1, merge)
    runner.payload = _push(repo, first)
    gh.requests.clear()
    proc, outputs, summary = runner.step("main.yml", "reconcile", "Reconcile")
    # The gates await an approval, and the promotion waits for them: the production job runs.
    assert outputs == {"awaiting-approval": "1", "blocked": "2"}
    assert "awaiting approval" in proc.stdout + proc.stderr
    assert [(r.method, r.target) for r in gh.requests] == [
        ("GET", f"/repos/octo/demo/commits/{merge}/pulls?per_page=100"),
        ("GET", "/repos/octo/demo/pulls/1/reviews?per_page=100"),
    ]

    # 3. job `production`, once a required reviewer approved the `production` environment
    gh.approve_deployment(RUN_ID, "carol", "production", "metrics look right")
    gh.approve_deployment(RUN_ID, "mallory", "staging")  # another environment: not this approval
    gh.approve_deployment(RUN_ID, "erin", "production", state="rejected")
    gh.requests.clear()
    proc, _, _ = runner.step("main.yml", "production", "Record the environment's reviewers as approvals")
    assert proc.stdout.strip() == f"approved example-classifier@1 for prod as carol (production, run {RUN_ID})"
    assert [(r.method, r.target) for r in gh.requests] == [("GET", f"/repos/octo/demo/actions/runs/{RUN_ID}/approvals")]
    proc, _, summary = runner.step("main.yml", "production", "Promote and deploy")
    assert "example-classifier@1 → prod" in proc.stdout
    events = _events(repo.path, "example-classifier")
    approved = [e for e in events if e.kind == "approved"]
    assert [(e.by, e.stage, e.version, e.why) for e in approved] == [("carol", "prod", 1, "metrics look right")]
    assert approved[0].evidence == {"source": "github-environment", "environment": "production", "run_id": RUN_ID,
                                    "login": "carol"}
    # A rerun of the job (GitHub's "re-run jobs") records nothing twice and has nothing left to do.
    proc, _, _ = runner.step("main.yml", "production", "Record the environment's reviewers as approvals")
    assert "nothing waits for prod" in proc.stdout


def test_record_approvals_refuses_outside_a_run_and_reads_nothing_from_the_payload(runner: Runner) -> None:
    runner.payload = {"deployment": {"reviewers": ["mallory"]}}  # payload claims are never believed
    proc, _, _ = runner.step("main.yml", "production", "Record the environment's reviewers as approvals")
    assert "no reviewer approved the production environment" in proc.stdout


def test_retrain_from_workflow_dispatch_and_repository_dispatch(runner: Runner) -> None:
    # Data that changes between runs (as fresh data pulled by a real pipeline would): only a rerun sees it.
    runner.repo.edit("pipelines/example/prepare.py", "int(sys.argv[3])", "int(sys.argv[3]) + time.time_ns()")
    runner.repo.edit("pipelines/example/prepare.py", "import sys", "import sys\nimport time")
    runner.repo.commit("fresh data on every run")
    runner.step("main.yml", "reconcile", "Reconcile")  # example-classifier@1 enters dev
    runner.event = "workflow_dispatch"
    runner.payload = {"inputs": {"pipeline": "example-train"}, "ref": "refs/heads/main",
                      "repository": {"full_name": REPOSITORY}, "sender": {"login": "octocat"}}
    proc, outputs, summary = runner.step("retrain.yml", "retrain", "Retrain")
    assert outputs["pipeline"] == "example-train"
    assert proc.stdout.startswith("retraining pipeline example-train (workflow_dispatch by octocat)\n")
    assert re.search(r"run_pipeline +pipeline/example-train\n +retraining requested \(workflow_dispatch by octocat\)\n",
                     proc.stdout), proc.stdout
    assert "ran prepare, train, evaluate" in proc.stdout  # every step again: the cache is ignored
    assert "registered example-classifier@2" in proc.stdout and "example-classifier@2 → dev" in proc.stdout
    assert "#### mlops apply" in summary

    # The CloudEvent mlops's dispatch sink sends on drift: the model's own pipeline is retrained.
    runner.event = "repository_dispatch"
    runner.payload = {"action": "dev.mlops.drift.detected", "branch": "main", "repository": {"full_name": REPOSITORY},
                      "client_payload": {"event": {"specversion": "1.0", "type": "dev.mlops.drift.detected",
                                                   "source": "mlops", "subject": "model/example-classifier@2",
                                                   "data": {"endpoint": "demo"}}}}
    proc, outputs, _ = runner.step("retrain.yml", "retrain", "Retrain")
    assert outputs["pipeline"] == "example-train" and "registered example-classifier@3" in proc.stdout
    shown = subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(runner.repo.path), "models", "show",
                            "example-classifier@3", "--output", "json"], capture_output=True, text=True)
    assert json.loads(shown.stdout)["lineage"]["trigger"] == \
        "retrain: dev.mlops.drift.detected about model/example-classifier@2"

    runner.payload = {"action": "retrain", "client_payload": {"pipeline": "$(touch pwned)"}}
    proc, outputs, _ = runner.step("retrain.yml", "retrain", "Retrain", ok=False)
    assert proc.stderr.strip() == ("error: repository_dispatch event: client_payload.pipeline: unknown pipeline "
                                   "'$(touch pwned)' (pipelines: example-train)")
    assert outputs == {} and not (runner.repo.path / "pwned").exists()


def _records(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / ".mlops").rglob("*")) if p.is_file()
            and "/cache/" not in str(p)}


def test_pull_request_plan_metrics_and_annotations(runner: Runner) -> None:
    repo = runner.repo
    runner.step("main.yml", "reconcile", "Reconcile")  # main: example-classifier@1 holds dev
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "tune")
    repo.edit("pipelines/example-train.yaml", "seed: 7", "seed: 8")
    head = repo.commit("another seed")
    runner.event = "pull_request"
    runner.payload = {"action": "synchronize", "number": 2,
                      "pull_request": {"number": 2, "base": {"sha": base, "ref": "main"},
                                       "head": {"sha": head, "ref": "tune", "repo": {"full_name": REPOSITORY}}},
                      "repository": {"full_name": REPOSITORY}}
    _, outputs, summary = runner.step("pr.yml", "plan", "Plan")
    assert outputs["markdown"] == (repo.path / "plan.md").read_text().rstrip("\n")
    assert outputs["markdown"].startswith("<!-- mlops-plan -->")
    assert "pipelines/example-train.yaml changed → pipeline example-train → model example-classifier" in outputs["markdown"]
    assert outputs["markdown"].strip() in summary  # the job summary shows the same plan
    runner.gh.requests.clear()
    before = _records(repo.path)
    _, outputs, summary = runner.step("pr.yml", "plan", "Metrics")
    metrics = outputs["markdown"]
    assert metrics == (repo.path / "metrics.md").read_text().rstrip("\n") and metrics.strip() in summary
    assert metrics.splitlines()[:7] == [
        "### Metrics of this pull request", "",
        "#### `example-classifier` (pipeline `example-train`)", "",
        "| metric | candidate | `dev` @1 | Δ |", "|---|---|---|---|",
        "| accuracy | 0.98 | 0.94 | +0.04 |"]
    assert "- gates of `prod`: ✅ metric: accuracy 0.98 &gt;= 0.8, ⏳ approval: awaiting approval: 0 of 1" in metrics
    assert _records(repo.path) == before  # the shared state is only read: no run, version or event recorded
    assert runner.gh.requests == []  # a pull request's jobs with its code call no API and hold no token
    runner.vars["MLOPS_PR_METRICS_MAX_STEPS"] = "2"  # the switch for big pipelines
    _, outputs, _ = runner.step("pr.yml", "plan", "Metrics")
    assert outputs["markdown"] == ("### Metrics of this pull request\n\nNot run: the affected pipelines have 3 steps, "
                                   "more than the 2 a pull request runs (`MLOPS_PR_METRICS_MAX_STEPS`).")

    repo.edit("models/example-classifier.yaml", "flavor: custom", "flavor: tensorflow")
    proc, _, _ = runner.step("pr.yml", "plan", "Validate specs", ok=False)
    assert re.search(r"^::error file=models/example-classifier\.yaml,line=4,col=\d+", proc.stdout, re.M), proc.stdout
