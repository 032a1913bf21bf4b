"""The GitHub sink: an issue comment per event, or a ``repository_dispatch`` (to start a workflow).

    - {type: github, mode: issue, events: ["model.*", "drift.detected"], labels: [mlops]}
    - {type: github, mode: dispatch, events: ["drift.detected"]}      # a workflow retrains on it

``mode: issue`` keeps one open issue per topic (the subject without its version), titled
``mlops: model/wine-classifier``, and comments on it; it is created when none is open.
``mode: dispatch`` posts ``event_type`` = the event's type and ``client_payload`` = ``{"event": the
CloudEvent}`` (nested: GitHub takes at most 10 top-level keys), so a workflow reads
``github.event.client_payload.event.data``.

Token from ``GITHUB_TOKEN``, API from ``GITHUB_API_URL``, repository from the entry's ``repository``
or ``GITHUB_REPOSITORY``. Without a token or repository the events wait in the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops.errors import DeliveryError, GitHubError
from mlops.events.cloudevent import CloudEvent, topic
from mlops.events.sinks import Budget, Limits, Sink
from mlops.github import DEFAULT_API_URL, REPOSITORY_RE, GitHubClient

MAX_BODY = 60_000  # GitHub refuses issue and comment bodies over 65536 characters
TITLE_PREFIX = "mlops: "


def issue_title(event: CloudEvent) -> str:
    return f"{TITLE_PREFIX}{topic(event.subject)}"[:250]


def issue_comment(event: CloudEvent) -> str:
    """Markdown: what happened, the data's top-level facts, and the whole event for machines."""
    lines = [f"**{event.name}** · `{event.subject}` · {event.time}", ""]
    for key, value in list(event.data.items())[:20]:
        if isinstance(value, (str, int, float, bool)) or value is None:
            text = " ".join(str(value).split())[:200].replace("`", "'")
            lines.append(f"- {key}: `{text}`")
    dump = json.dumps(event.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
    room = MAX_BODY - sum(len(s) + 1 for s in lines) - 200
    if len(dump) > room:
        dump = dump[:max(0, room)] + "\n… (cut: the event is longer than a comment may be)"
    lines += ["", "<details><summary>CloudEvent</summary>", "", "```json", dump, "```", "</details>", "",
              f"<!-- mlops-event: {event.id} -->"]
    return "\n".join(lines)


@dataclass
class GitHubSink(Sink):
    mode: str
    repository: str | None
    labels: tuple[str, ...]
    environ: Mapping[str, str]
    limits: Limits

    def send(self, event: CloudEvent, budget: Budget) -> None:
        try:
            client = GitHubClient.from_env(self.repository, self.environ, timeout=self.limits.timeout,
                                           retries=self.limits.retries, backoff=self.limits.backoff,
                                           max_wait=budget.remaining(), deadline=budget.deadline,
                                           sleep=budget.sleep, clock=budget.clock)
        except GitHubError as e:  # no token or repository in this run: kept for a run that has them
            raise DeliveryError(str(e)) from None
        try:
            if self.mode == "dispatch":
                client.repository_dispatch(event.type, {"event": event.to_dict()})
                return
            title = issue_title(event)
            issue = client.find_issue(title, self.labels)
            if issue is None or not isinstance(issue.get("number"), int):
                client.create_issue(title, issue_comment(event), self.labels)
            else:
                client.create_issue_comment(issue["number"], issue_comment(event))
        except GitHubError as e:
            raise DeliveryError(str(e), retryable=e.retryable, status=e.status) from None


def make_github_sink(ident: str, patterns: tuple[str, ...] | None, config: Mapping[str, Any], limits: Limits,
                     environ: Mapping[str, str]) -> GitHubSink:
    """The sink for a ``{type: github, mode: issue|dispatch, repository?, labels?, events?}`` entry."""
    mode = config.get("mode", "issue")
    if mode not in ("issue", "dispatch"):
        raise ValueError(f"github mode {mode!r} is not issue or dispatch")
    repository = config.get("repository")
    if repository is not None and not (isinstance(repository, str) and REPOSITORY_RE.match(repository)):
        raise ValueError(f"github repository {repository!r} is not OWNER/NAME")
    labels = config.get("labels", ())
    if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise ValueError("github labels are a list of names")
    where = repository or environ.get("GITHUB_REPOSITORY") or "$GITHUB_REPOSITORY"
    api = environ.get("GITHUB_API_URL") or DEFAULT_API_URL
    desc = f"github {mode} {where}" + ("" if api == DEFAULT_API_URL else f" ({api})")
    return GitHubSink(ident, desc, patterns, str(mode), repository or None, tuple(labels), environ, limits)
