"""Approvals that come from GitHub: the approving reviews of the merged pull request that moved a pin.

When reconcile runs on GitHub (a token and the repository in the environment), the commit that pinned
``model@version`` to a stage belongs to a merged pull request; each reviewer whose latest review of it
is APPROVED counts as one approval, recorded once on the audit trail with who they are and which pull
request. Reviews are read through the GitHub API, never taken from the event payload or the commit
message, which a pull request's author controls.
"""

from __future__ import annotations

import os

from mlops.store.protocol import ArtifactStore


def record_review_approvals(store: ArtifactStore, model: str, version: int, stage: str, commit: str | None) -> int:
    """Record the approvals found for ``commit``'s merged pull requests; how many were new."""
    if not commit or not os.environ.get("GITHUB_TOKEN") or not os.environ.get("GITHUB_REPOSITORY"):
        return 0
    from mlops.github import GitHubClient
    from mlops.release.records import append_event, model_events

    gh = GitHubClient.from_env()
    known = {(e.evidence.get("pull_request"), e.evidence.get("login")) for e in model_events(store, model)
             if e.kind == "approved" and e.version == version and e.stage == stage}
    added = 0
    for pr in gh.pulls_for_commit(commit):
        if not pr.get("merged_at"):
            continue
        number = int(pr["number"])
        author = (pr.get("user") or {}).get("login")
        latest: dict[str, dict[str, object]] = {}
        for review in gh.list_reviews(number):  # oldest first: the last word of each reviewer counts
            login = (review.get("user") or {}).get("login")
            if isinstance(login, str) and login != author:
                latest[login] = review
        for login, review in sorted(latest.items()):
            if review.get("state") != "APPROVED" or (number, login) in known:
                continue
            append_event(store, model, "approved", version=version, stage=stage, by=login,
                         why=str(review.get("body") or f"approved pull request #{number}"), commit=commit,
                         evidence={"source": "github-review", "pull_request": number, "login": login,
                                   "review_id": review.get("id")})
            added += 1
    return added
