"""What a GitHub Actions event asks mlops to retrain, read from ``GITHUB_EVENT_PATH``.

* ``workflow_dispatch``: the ``pipeline`` input (typed by someone with write access);
* ``repository_dispatch``: ``client_payload.pipeline``, or the CloudEvent mlops's own dispatch sink
  sends (``client_payload.event``, e.g. ``drift.detected``): its ``data.pipeline``, else the pipeline
  that builds its ``data.model`` (or the model named by its subject ``model/NAME...``).

The payload is untrusted (anyone with a token that may dispatch can send anything): the answer is only
ever a pipeline name the specs declare, and anything else is a clear error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops.errors import GitHubError
from mlops.github import dig

MAX_EVENT_BYTES = 25 * 1024 * 1024  # GitHub's own payload limit


def read_event(environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """(event name, payload) of the running workflow."""
    env = os.environ if environ is None else environ
    name, path = env.get("GITHUB_EVENT_NAME", ""), env.get("GITHUB_EVENT_PATH", "")
    if not name or not path:
        raise GitHubError("GITHUB_EVENT_NAME and GITHUB_EVENT_PATH are not set: run this inside GitHub Actions")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_EVENT_BYTES + 1)
    except OSError as e:
        raise GitHubError(f"GITHUB_EVENT_PATH {path}: {e.strerror}") from None
    try:
        payload = json.loads(data) if len(data) <= MAX_EVENT_BYTES else None
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise GitHubError(f"GITHUB_EVENT_PATH {path}: not a JSON object (or larger than 25 MB)")
    return name, payload


def retrain_pipeline(event: str, payload: Mapping[str, Any], pipelines: Mapping[str, Any],
                     model_pipelines: Mapping[str, str | None], source: str = "the event") -> str:
    """The pipeline ``event`` asks to retrain; one the specs declare, or a GitHubError saying why not."""
    wanted: object = None
    where = ""
    if event == "workflow_dispatch":
        wanted, where = dig(payload, "inputs", "pipeline"), "inputs.pipeline"
    elif event == "repository_dispatch":
        wanted, where = dig(payload, "client_payload", "pipeline"), "client_payload.pipeline"
        cloud = dig(payload, "client_payload", "event")
        if wanted is None and isinstance(cloud, dict):
            wanted, where = dig(cloud, "data", "pipeline"), "client_payload.event.data.pipeline"
            model = dig(cloud, "data", "model")
            subject = cloud.get("subject")
            if model is None and isinstance(subject, str) and subject.startswith("model/"):
                model = subject.removeprefix("model/").split("/")[0].split("@")[0]
            if wanted is None and isinstance(model, str):
                if model not in model_pipelines:
                    raise GitHubError(f"{source}: model {model[:100]!r} (client_payload.event) is not in the specs")
                wanted, where = model_pipelines[model], f"the pipeline of model {model}"
    else:
        raise GitHubError(f"{source}: a {event[:50]!r} event does not say what to retrain "
                          "(use workflow_dispatch or repository_dispatch)")
    if not isinstance(wanted, str) or not wanted:
        raise GitHubError(f"{source}: no pipeline to retrain ({where or 'client_payload.pipeline'} is missing)")
    if wanted not in pipelines:
        known = ", ".join(sorted(pipelines)) or "none"
        raise GitHubError(f"{source}: {where}: unknown pipeline {wanted[:100]!r} (pipelines: {known})")
    return wanted


def write_output(name: str, value: str, environ: Mapping[str, str] | None = None) -> None:
    """Append ``name=value`` to the step's ``GITHUB_OUTPUT`` (when there is one)."""
    path = (os.environ if environ is None else environ).get("GITHUB_OUTPUT")
    if path:
        with Path(path).open("a", encoding="utf-8") as f:
            f.write(f"{name}={value}\n")
