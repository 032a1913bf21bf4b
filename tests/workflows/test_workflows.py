"""The GitHub workflows lint clean and keep to the house's supply-chain and least-privilege rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# Attacker-controlled context (titles, branch names, bodies...) must reach a shell through env:, never inline.
UNTRUSTED_IN_RUN = re.compile(r"\$\{\{[^}]*\b(github\.event|github\.head_ref)")
MARKER = "<!-- mlops-plan -->"


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(wf: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in wf["jobs"].items() for step in job.get("steps", [])]


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"pr.yml", "main.yml", "monitor.yml", "retrain.yml"}


def test_actionlint_is_clean() -> None:
    proc = subprocess.run(["actionlint", "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_zizmor_finds_nothing() -> None:
    # --offline: no network here (its online audits look up the pinned SHAs' tags on GitHub).
    proc = subprocess.run(["zizmor", "--offline", "--no-progress", "--format", "plain", str(REPO / "action.yml"),
                           *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0 and "No findings to report" in proc.stdout, proc.stdout + proc.stderr


def test_zizmor_catches_a_template_injection(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request_target\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
                   "    permissions: {}\n    steps:\n      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    proc = subprocess.run(["zizmor", "--offline", "--no-progress", "--format", "plain", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "template-injection" in proc.stdout


def test_action_metadata_is_valid_and_its_inputs_are_the_documented_ones(tmp_path: Path) -> None:
    proc = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.github-actions", str(REPO / "action.yml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(yaml.safe_load((REPO / "action.yml").read_text())["inputs"]) == {
        "command", "base", "working-directory", "python-version"}
    # actionlint checks an action's metadata through a workflow that uses it (inputs, outputs, expressions).
    shutil.copy(REPO / "action.yml", tmp_path / "action.yml")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "use.yml").write_text(
        "on: pull_request\npermissions: {}\njobs:\n  plan:\n    runs-on: ubuntu-latest\n"
        "    permissions: {contents: read}\n    steps:\n      - uses: ./\n        id: mlops\n"
        "        with: {command: plan, base: main, working-directory: ., python-version: '3.12', %s}\n"
        "      - run: echo \"$OUT\"\n        env: {OUT: '${{ steps.mlops.outputs.awaiting-approval }}'}\n")
    use = tmp_path / ".github" / "workflows" / "use.yml"
    use.write_text(use.read_text() % "")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    proc = subprocess.run(["actionlint", "-no-color"], cwd=tmp_path, capture_output=True, text=True)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")
    use.write_text(use.read_text().replace("python-version: '3.12'", "python-version: '3.12', bogus: 1"))
    proc = subprocess.run(["actionlint", "-no-color"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and 'input "bogus" is not defined' in proc.stdout


def test_the_workflows_here_are_what_mlops_init_writes() -> None:
    # One source: the jinja2 templates of `mlops init`, rendered with this repository's settings.
    from mlops.scaffold import SELF, WORKFLOWS, render

    for rel, text in render(WORKFLOWS, SELF).items():
        assert (REPO / rel).read_text() == text, f"{rel} differs from its template: regenerate it"


def test_actionlint_catches_an_injection(tmp_path: Path) -> None:
    # Proves the linter really runs and checks what we rely on it for.
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    proc = subprocess.run(["actionlint", "-no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "potentially untrusted" in proc.stdout


def test_workflows_match_github_schema() -> None:
    proc = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path: Path) -> None:
    wf = _load(path)
    assert wf.get("permissions") in ({}, {"contents": "read"}), "top-level permissions must be empty or read-only"
    triggers = wf.get("on") or wf.get(True) or {}  # YAML 1.1 reads a bare `on:` key as True
    runs_pull_requests = any(t.startswith("pull_request") for t in triggers)
    for name, job in wf["jobs"].items():
        assert "permissions" in job, f"job {name} has no explicit permissions"
        writes = {scope for scope, level in job["permissions"].items() if level == "write"}
        checkouts = [s for s in job.get("steps", []) if "actions/checkout" in s.get("uses", "")]
        for step in checkouts:  # no job keeps a token in .git/config for the code it runs to find
            assert step.get("with", {}).get("persist-credentials") is False, f"job {name} persists credentials"
        if runs_pull_requests:
            assert writes <= {"pull-requests"}, f"job {name} asks to write {writes}"
            if writes:  # a job holding a write token must not check out (and so could not run) the PR's code
                assert not checkouts, name
        elif path.name == "monitor.yml":  # state records, and an issue per finding
            assert writes <= {"contents", "issues"}, f"job {name} asks to write {writes}"
        else:  # merged code only (push to main, manual runs): it may push promotion branches and open PRs
            assert writes <= {"contents", "pull-requests"}, f"job {name} asks to write {writes}"
        assert "pull_request_target" not in triggers and "workflow_run" not in triggers
    if runs_pull_requests:  # what a pull request's jobs see: no secret at all (a fork's would get none anyway)
        assert "secrets." not in path.read_text() and "github.token" not in path.read_text()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commits_with_a_version_comment(path: Path) -> None:
    for job, step in _steps(_load(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith("./"):
            continue
        assert SHA_PIN.match(uses), f"{path.name}: job {job}: {uses} is not pinned to a full commit SHA"
        assert re.search(rf"uses: {re.escape(uses)} # v\d", path.read_text()), f"{uses} lacks a # vX comment"
    for name, job in _load(path)["jobs"].items():
        if "uses" in job and not job["uses"].startswith("./"):
            assert SHA_PIN.match(job["uses"]), f"{path.name}: job {name}: {job['uses']} is not pinned"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_untrusted_expression_inside_run(path: Path) -> None:
    for job, step in _steps(_load(path)):
        assert not UNTRUSTED_IN_RUN.search(step.get("run", "")), f"{path.name}: job {job}: pass it through env:"
        assert not UNTRUSTED_IN_RUN.search(step.get("with", {}).get("script", "")), f"{path.name}: job {job}"


def test_pr_workflow_plans_the_pull_request_and_cancels_superseded_runs() -> None:
    wf = _load(REPO / ".github/workflows/pr.yml")
    assert "pull_request" in wf["on"] and "pull_request_target" not in wf["on"]
    assert wf["concurrency"] == {"group": "mlops-plan-${{ github.event.pull_request.number }}",
                                 "cancel-in-progress": True}
    steps = wf["jobs"]["plan"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0
    runs = [s.get("run", "") for s in steps]
    assert "mlops validate" in runs
    plan = next(s for s in steps if "mlops plan" in s.get("run", ""))
    assert '--base "$BASE_SHA" --head "$HEAD_SHA"' in plan["run"] and "--out plan.json" in plan["run"]
    assert plan["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"


def test_main_workflow_reconciles_one_push_at_a_time() -> None:
    wf = _load(REPO / ".github/workflows/main.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    runs = [s.get("run", "") for s in wf["jobs"]["reconcile"]["steps"]]
    assert runs.index("mlops validate") < runs.index("mlops reconcile")


def test_every_job_that_reconciles_shares_one_queue() -> None:
    # Job-level, so a production job waiting days for its reviewers does not hold back other pushes.
    one_queue = {"group": "mlops-reconcile", "cancel-in-progress": False}
    for name, job in [("main.yml", "reconcile"), ("main.yml", "production"), ("retrain.yml", "retrain")]:
        assert _load(REPO / ".github/workflows" / name)["jobs"][job]["concurrency"] == one_queue, (name, job)


def test_production_is_bound_to_an_environment_and_runs_only_for_a_waiting_approval() -> None:
    jobs = _load(REPO / ".github/workflows/main.yml")["jobs"]
    prod = jobs["production"]
    assert prod["environment"] == "production" and prod["needs"] == "reconcile"
    assert prod["permissions"]["actions"] == "read"  # the run's deployment approvals
    assert "awaiting-approval" in prod["if"] and "!= '0'" in prod["if"]
    assert jobs["reconcile"]["outputs"]["awaiting-approval"] == "${{ steps.reconcile.outputs.awaiting-approval }}"
    runs = [s.get("run", "") for s in prod["steps"]]
    assert runs.index("mlops github record-approvals --environment production --stage prod") < \
        runs.index("mlops reconcile")


def test_monitor_and_retrain_triggers() -> None:
    monitor = _load(REPO / ".github/workflows/monitor.yml")
    assert "schedule" in monitor["on"] and "mlops monitor --all" in [s.get("run") for s in monitor["jobs"]["monitor"]["steps"]]
    retrain = _load(REPO / ".github/workflows/retrain.yml")
    assert retrain["on"]["repository_dispatch"]["types"] == ["retrain", "dev.mlops.drift.detected"]
    assert retrain["on"]["workflow_dispatch"]["inputs"]["pipeline"]["required"] is True


# Runs the comment job's github-script against an in-memory stand-in for the GitHub REST API.
HARNESS = r"""
const fs = require('fs');
const [script, statePath] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
let nextId = 1000 + state.comments.length;
const issues = {
  listComments: async (p) => ({ data: state.comments.filter((c) => c.issue === p.issue_number) }),
  createComment: async (p) => { state.comments.push({ id: nextId++, issue: p.issue_number, user: { type: 'Bot' }, body: p.body }); },
  updateComment: async (p) => { state.comments.find((c) => c.id === p.comment_id).body = p.body; },
};
const github = { rest: { issues }, paginate: async (fn, p) => (await fn(p)).data };
const context = { serverUrl: 'https://github.com', repo: { owner: 'o', repo: 'r' }, runId: 7, issue: { number: 5 } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('github', 'context', fs.readFileSync(script, 'utf8'))(github, context)
  .then(() => process.stdout.write(JSON.stringify(state.comments)))
  .catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture
def post_comment(tmp_path: Path) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Debian: apt-get install nodejs, as .ci/install-debian.sh does)")
    job = _load(REPO / ".github/workflows/pr.yml")["jobs"]["comment"]
    (tmp_path / "script.js").write_text(job["steps"][0]["with"]["script"])
    (tmp_path / "harness.js").write_text(HARNESS)

    def post(comments: list[dict[str, Any]], plan_md: str, result: str = "success") -> list[dict[str, Any]]:
        (tmp_path / "state.json").write_text(json.dumps({"comments": comments}))
        proc = subprocess.run([node, str(tmp_path / "harness.js"), str(tmp_path / "script.js"),
                               str(tmp_path / "state.json")], capture_output=True, text=True,
                              env={"PLAN_MD": plan_md, "PLAN_RESULT": result,
                                   "METRICS_MD": os.environ.get("METRICS_MD", "")}, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return list(json.loads(proc.stdout))

    return post


def test_plan_comment_is_sticky(post_comment: Any) -> None:
    human = {"id": 1, "issue": 5, "user": {"type": "User"}, "body": f"quoting {MARKER} in my review"}
    other_pr = {"id": 2, "issue": 6, "user": {"type": "Bot"}, "body": f"{MARKER}\nplan of PR 6"}
    first = post_comment([human, other_pr], "### Plan\n1 action")
    assert len(first) == 3 and first[2]["body"] == f"{MARKER}\n### Plan\n1 action"
    second = post_comment(first, "### Plan\n2 actions")
    assert len(second) == 3, "the second run must update, not add, a comment"
    assert second[2]["body"] == f"{MARKER}\n### Plan\n2 actions"
    assert second[:2] == [human, other_pr]


def test_marker_already_in_the_plan_is_not_doubled(post_comment: Any) -> None:
    after = post_comment([], f"{MARKER}\n### mlops plan\n5 actions")
    assert after[0]["body"] == f"{MARKER}\n### mlops plan\n5 actions"
    assert post_comment(after, f"{MARKER}\nnewer")[0]["body"] == f"{MARKER}\nnewer"


def test_metrics_follow_the_plan_in_the_one_comment(post_comment: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_MD", "### Metrics of this pull request\n\n| accuracy | 0.9 |\n")
    after = post_comment([], f"{MARKER}\n### mlops plan\n1 action\n")
    assert after[0]["body"] == f"{MARKER}\n### mlops plan\n1 action\n\n### Metrics of this pull request\n\n| accuracy | 0.9 |\n"
    failed = post_comment([], "", result="failure")  # no metrics under a failure note
    assert "Metrics" not in failed[0]["body"]


def test_failed_plan_replaces_the_stale_comment(post_comment: Any) -> None:
    before = [{"id": 3, "issue": 5, "user": {"type": "Bot"}, "body": f"{MARKER}\nold plan"}]
    after = post_comment(before, "", result="failure")
    assert len(after) == 1 and "old plan" not in after[0]["body"]
    assert after[0]["body"].startswith(MARKER) and "failed (failure)" in after[0]["body"]
    assert "https://github.com/o/r/actions/runs/7" in after[0]["body"]


def test_huge_plan_is_truncated_below_githubs_limit(post_comment: Any) -> None:
    after = post_comment([], "x" * 100_000)
    assert len(after[0]["body"]) < 65536 and "truncated" in after[0]["body"]


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)}
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **env}, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_plan_step_runs_against_the_real_cli(tmp_path: Path) -> None:
    # The PR workflow's own `run:` script, with the example project in a throw-away repository.
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "mlops.yaml", repo)
    for folder in ("environments", "pipelines", "models", "endpoints"):
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    base = _git(repo, "rev-parse", "HEAD")
    with open(repo / "pipelines/wine/common.py", "a") as f:
        f.write("# a change to a helper module every step imports\n")
    _git(repo, "commit", "-qam", "head")
    head = _git(repo, "rev-parse", "HEAD")

    steps = _load(REPO / ".github/workflows/pr.yml")["jobs"]["plan"]["steps"]
    script = next(s["run"] for s in steps if s.get("id") == "plan")
    output = tmp_path / "github_output"
    env = {**os.environ, "BASE_SHA": base, "HEAD_SHA": head, "GITHUB_OUTPUT": str(output)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((repo / "plan.json").read_text())
    assert plan  # the saved plan is JSON for `mlops apply`
    text = output.read_text()
    first, _, rest = text.partition("\n")
    delimiter = first.removeprefix("markdown<<")
    assert first.startswith("markdown<<mlops-plan-") and rest.rstrip("\n").endswith(delimiter)
    markdown = rest.rstrip("\n").removesuffix(delimiter)
    assert markdown == (repo / "plan.md").read_text()
    assert "pipeline/wine-train" in markdown and "endpoint/wine" in markdown
    assert "pipelines/wine/common.py" in markdown  # the change is traced through the local import
