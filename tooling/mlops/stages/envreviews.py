"""Approvals that come from a GitHub Environment: the reviewers who let a deployment job run.

A job bound to an environment with required reviewers (``environment: production``) waits until one
of them approves it. Once it runs, the approvals of its workflow run are read through the API
(``GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals``; never from the event payload, which
whoever triggered the run controls) and each reviewer who approved that environment is recorded as one
approval of every version the specs pin to ``stage`` that does not hold it yet, once per run and
reviewer, with the run, the environment and the reviewer's comment as evidence. The approval gate of
the stage counts them like any other approval; the reconcile that follows promotes and deploys.

Answers of the API are untrusted: anything malformed counts as no approval.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mlops.errors import GitHubError
from mlops.spec.model import Model, Project
from mlops.store.protocol import ArtifactStore


@dataclass(frozen=True)
class Recorded:
    """One approval written to the audit trail."""

    model: str
    version: int
    stage: str
    login: str


def environment_reviewers(approvals: list[dict[str, Any]], environment: str) -> list[tuple[str, str]]:
    """(login, comment) of everyone whose review approved ``environment``, sorted, once each."""
    found: dict[str, str] = {}
    for a in approvals:
        user = a.get("user")
        login = user.get("login") if isinstance(user, dict) else None
        envs = a.get("environments")
        names = [e.get("name") for e in envs if isinstance(e, dict)] if isinstance(envs, list) else []
        if a.get("state") != "approved" or not isinstance(login, str) or not login or environment not in names:
            continue
        comment = a.get("comment")
        found.setdefault(login, comment.strip() if isinstance(comment, str) else "")
    return sorted(found.items())


def record_environment_approvals(store: ArtifactStore, project: Project, models: dict[str, Model], stage: str,
                                 environment: str, run_id: int, commit: str | None,
                                 approvals: list[dict[str, Any]]) -> list[Recorded]:
    """Record each approving reviewer of ``environment`` for every pin of ``stage`` not yet applied."""
    from mlops.release.records import model_events, stage_holder
    from mlops.stages.operations import approve

    reviewers = environment_reviewers(approvals, environment)
    done: list[Recorded] = []
    for name in sorted(models):
        model = models[name]
        version = model.stages.get(stage)
        if not isinstance(version, int):
            continue
        events = model_events(store, name)
        if stage_holder(events, stage) == version:
            continue  # already there: nothing waits for this approval
        known = {e.by for e in events if e.kind == "approved" and e.version == version and e.stage == stage
                 and e.evidence.get("run_id") == run_id}
        for login, comment in reviewers:
            if login in known:
                continue
            approve(store, project, model, version, stage, by=login,
                    why=comment or f"approved the {environment} environment of workflow run {run_id}",
                    commit=commit, source="github-environment",
                    extra={"environment": environment, "run_id": run_id, "login": login})
            done.append(Recorded(name, version, stage, login))
    return done


def current_run_id() -> int:
    """``GITHUB_RUN_ID`` as a number, or a clear error outside GitHub Actions."""
    raw = os.environ.get("GITHUB_RUN_ID", "")
    if not raw.isdigit() or int(raw) < 1:
        raise GitHubError("GITHUB_RUN_ID is not set to a workflow run id: this reads the reviewers of the GitHub "
                          "Actions run it is part of")
    return int(raw)
