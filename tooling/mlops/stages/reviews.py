"""Approvals that come from GitHub: the approving reviews of the merged pull request that moved a pin.

When reconcile runs on GitHub (a token and the repository in the environment), the commit that pinned
``model@version`` to a stage belongs to a merged pull request; each reviewer whose latest review of it
is APPROVED counts as one approval, recorded once on the audit trail with who they are and which pull
request. Reviews are read through the GitHub API, never taken from the event payload or the commit
message, which a pull request's author controls.

A review counts only for what it approved:

* the commit being reconciled must be the one that moved the pin: it pins ``stage`` to ``version`` and
  its first parent (the base branch before the merge) did not. Reviews of any other merged pull request
  (a typo fix merged while the pin waits for approval) say nothing about this version;
* the review must be of the pull request's final head (``commit_id``): a promotion pull request is
  updated in place when another version is proposed, and an approval of the earlier version does not
  carry over to the new one;
* the reviewer must be a collaborator of the repository (``author_association`` OWNER, MEMBER or
  COLLABORATOR): on a public repository anyone may leave an approving review;
* the pull request's author does not approve their own pull request.

Answers of the API are untrusted like any input: anything malformed counts as no approval.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, TypeGuard

from mlops.github import dig
from mlops.store.protocol import ArtifactStore

TRUSTED = ("OWNER", "MEMBER", "COLLABORATOR")  # author_association of reviewers who can approve
_DECISIVE = ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")  # a COMMENTED review does not change a verdict


def record_review_approvals(store: ArtifactStore, model: str, version: int, stage: str, commit: str | None,
                            root: Path, spec_file: str) -> int:
    """Record the approvals found for ``commit``'s merged pull requests; how many were new."""
    if not commit or not os.environ.get("GITHUB_TOKEN") or not os.environ.get("GITHUB_REPOSITORY"):
        return 0
    if not pin_moved_by(root, commit, spec_file, stage, version):
        return 0  # this commit did not move the pin: its pull request's reviews approved something else
    from mlops.github import GitHubClient
    from mlops.release.records import append_event, model_events

    gh = GitHubClient.from_env()
    known = {(e.evidence.get("pull_request"), e.evidence.get("login")) for e in model_events(store, model)
             if e.kind == "approved" and e.version == version and e.stage == stage}
    added = 0
    for pr in gh.pulls_for_commit(commit):
        number, head = pr.get("number"), dig(pr, "head", "sha")
        if not pr.get("merged_at") or not _count(number) or not isinstance(head, str) or not head:
            continue
        author = dig(pr, "user", "login")
        latest: dict[str, dict[str, Any]] = {}
        for review in gh.list_reviews(number):  # oldest first: the last word of each reviewer counts
            login = dig(review, "user", "login")
            if isinstance(login, str) and login and login.lower() != str(author).lower() and \
                    review.get("state") in _DECISIVE:
                latest[login.lower()] = review
        for review in (latest[k] for k in sorted(latest)):
            login = str(dig(review, "user", "login"))
            if review.get("state") != "APPROVED" or review.get("commit_id") != head or \
                    review.get("author_association") not in TRUSTED or (number, login) in known:
                continue
            body = review.get("body")
            append_event(store, model, "approved", version=version, stage=stage, by=login,
                         why=body if isinstance(body, str) and body.strip() else f"approved pull request #{number}",
                         commit=commit, evidence={"source": "github-review", "pull_request": number, "login": login,
                                                  "review_id": review.get("id") if _count(review.get("id")) else None,
                                                  "reviewed_commit": head})
            known.add((number, login))
            added += 1
    return added


def pin_moved_by(root: Path, commit: str, spec_file: str, stage: str, version: int) -> bool:
    """Whether ``commit`` pins ``stage`` to ``version`` in ``spec_file`` and its first parent did not."""
    if _pin_at(root, commit, spec_file, stage) != version:
        return False
    parent = _git(root, "rev-parse", "--verify", "--quiet", f"{commit}^1^{{commit}}")
    return parent is None or _pin_at(root, parent.strip(), spec_file, stage) != version


def _pin_at(root: Path, rev: str, spec_file: str, stage: str) -> object:
    from mlops.errors import MlopsError
    from mlops.spec.yamlpos import load_yaml

    text = _git(root, "show", f"{rev}:{spec_file}")
    if text is None:
        return None
    try:
        data = load_yaml(text.encode()).data
    except (MlopsError, ValueError):
        return None
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages.get(stage) if isinstance(stages, dict) else None


def _git(root: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None




def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
