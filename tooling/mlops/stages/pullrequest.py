"""Promotion as a reviewed pull request: one branch and one pull request per model and stage.

The branch ``mlops/promote/<model>/<stage>`` holds one commit on top of the base branch that moves the
pin; pushing it again replaces it (the branch is mlops's own), and the pull request is found by its
branch and updated, never duplicated. Its body carries the gate results with their numbers, a
metrics comparison with the version the stage holds now, and the model card. Merging it is the
promotion: reconcile on the base branch sees the pin move and evaluates the gates again, counting the
pull request's approving reviews as approvals.

The commit is made with git's plumbing in a scratch index, so the working tree and its index are
never touched.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mlops.errors import RegistryError
from mlops.spec.model import Model, Project
from mlops.store.protocol import ArtifactStore

MARKER = "<!-- mlops-promotion -->"
MAX_BODY = 60_000  # GitHub refuses bodies over 65,536 characters


def branch_name(model: str, stage: str) -> str:
    return f"mlops/promote/{model}/{stage}"


def open_promotion_pr(root: Path, store: ArtifactStore, project: Project, model: Model, version: int, stage: str,
                      report: Any, *, why: str, remote: str = "origin", base: str | None = None) -> str:
    """Push the pin commit and open or update the pull request; its URL."""
    from mlops.github import GitHubClient
    from mlops.stages.pins import with_pin

    base = base or base_branch(root, remote)
    text = _git(root, "show", f"HEAD:{model.file}")
    new = with_pin(text, stage, version, model.file)
    title = f"Promote {model.name}@{version} to {stage}"
    commit = _commit_file(root, model.file, new, f"{title}\n\n{why}".strip())
    branch = branch_name(model.name, stage)
    _git(root, "push", "--force", "--quiet", remote, f"{commit}:refs/heads/{branch}", env=_push_auth(root, remote))
    body = pull_request_body(store, project, model, version, stage, report, why)
    gh = GitHubClient.from_env()
    existing = gh.find_pull_request(branch, base)
    if existing is not None:
        updated = gh.update_pull_request(int(existing["number"]), title=title, body=body)
        return str(updated.get("html_url") or existing.get("html_url"))
    created = gh.create_pull_request(title=title, head=branch, base=base, body=body)
    return str(created.get("html_url"))


def pull_request_body(store: ArtifactStore, project: Project, model: Model, version: int, stage: str, report: Any,
                      why: str) -> str:
    """Markdown: the gates with their numbers, metrics against the current holder, then the model card."""
    from mlops.registry.models import get_model
    from mlops.release.escape import md as md_cell
    from mlops.release.records import model_events, stage_holder

    holder = stage_holder(model_events(store, model.name), stage)
    mine = get_model(store, model.name, version)
    parts = [MARKER, f"### Promote `{md_cell(model.name)}@{version}` to `{md_cell(stage)}`", "",
             md_cell(why, limit=2000), "", "#### Gates", "", "| | gate | result |", "|---|---|---|"]
    for r in report.results:
        mark = "✅" if r.passed else "⏳" if r.status == "awaiting" else "❌"
        parts.append(f"| {mark} | {md_cell(r.kind)} | {md_cell(r.summary)} |")
    parts += ["", f"#### Metrics against the current holder of `{md_cell(stage)}`", ""]
    if holder is None:
        parts.append(f"`{md_cell(stage)}` holds no version yet.")
    else:
        theirs = get_model(store, model.name, holder)
        parts += [f"| metric | @{holder} (now) | @{version} | Δ |", "|---|---|---|---|"]
        for name in sorted(set(mine.metrics) | set(theirs.metrics)):
            a, b = theirs.metrics.get(name), mine.metrics.get(name)
            delta = f"{float(b) - float(a):+.4g}" if _number(a) and _number(b) else ""  # type: ignore[arg-type]
            parts.append(f"| {md_cell(name)} | {_fmt(a)} | {_fmt(b)} | {delta} |")
    budget = MAX_BODY - sum(len(p) + 1 for p in parts) - 400
    parts += ["", "<details><summary>Model card</summary>", "", _card(store, model.name, version, budget), "",
              "</details>",
              "", "Merging this pull request is the promotion: reconcile evaluates the gates again and counts the "
                  "approving reviews."]
    body = "\n".join(parts)
    return body if len(body) <= MAX_BODY else body[:MAX_BODY] + "\n\n… (truncated: see `mlops models card`)"


def base_branch(root: Path, remote: str = "origin") -> str:
    """The branch promotions go into: GITHUB_BASE_REF / MLOPS_PROMOTION_BASE, the remote's HEAD, else main."""
    for var in ("MLOPS_PROMOTION_BASE", "GITHUB_BASE_REF"):
        if os.environ.get(var):
            return os.environ[var]
    head = _git(root, "symbolic-ref", "--quiet", f"refs/remotes/{remote}/HEAD", check=False).strip()
    return head.rsplit("/", 1)[-1] if head else "main"


def _card(store: ArtifactStore, model: str, version: int, budget: int) -> str:
    from mlops.release.card import build_card
    from mlops.release.card_markdown import render_markdown

    return render_markdown(build_card(store, model, version), max_chars=max(budget, 2000))


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _fmt(x: object) -> str:
    from mlops.release.escape import md as md_cell

    return f"{x:.4g}" if _number(x) else ("" if x is None else md_cell(str(x)))


def _push_auth(root: Path, remote: str) -> dict[str, str] | None:
    """Under GitHub Actions (checkout without persisted credentials), the token as an HTTP header for this one
    push, given to git through its environment (never on a command line, never written to .git/config)."""
    import base64

    token, server = os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_SERVER_URL")
    url = _git(root, "remote", "get-url", remote, check=False).strip()
    if not token or not server or not url.startswith(server.rstrip("/") + "/"):
        return None
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{server.rstrip('/')}/.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}"}


def _commit_file(root: Path, path: str, text: str, message: str) -> str:
    """A commit on top of HEAD that changes one file, made in a scratch index (the real one is untouched)."""
    blob = _git(root, "hash-object", "-w", "--stdin", input=text).strip()
    with tempfile.TemporaryDirectory(prefix="mlops-pr-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(root, "read-tree", "HEAD", env=env)
        _git(root, "update-index", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = _git(root, "write-tree", env=env).strip()
    identity = {"GIT_AUTHOR_NAME": "mlops", "GIT_AUTHOR_EMAIL": "mlops@users.noreply.github.com",
                "GIT_COMMITTER_NAME": "mlops", "GIT_COMMITTER_EMAIL": "mlops@users.noreply.github.com"}
    env = {**identity, **os.environ} if not _has_identity(root) else dict(os.environ)
    return _git(root, "commit-tree", tree, "-p", "HEAD", "-m", message, env=env).strip()


def _has_identity(root: Path) -> bool:
    return bool(_git(root, "config", "user.email", check=False).strip())


def _git(root: Path, *args: str, input: str | None = None, check: bool = True,
         env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=root, input=input, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RegistryError(f"`git {args[0]}` failed for the promotion pull request: {detail}")
    return proc.stdout
