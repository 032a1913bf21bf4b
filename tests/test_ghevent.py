"""What a dispatch event asks to retrain: only a pipeline the specs declare, whatever the payload says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import GitHubError
from mlops.ghevent import read_event, retrain_pipeline

PIPELINES = {"train": object()}
MODELS: dict[str, str | None] = {"clf": "train", "files-only": None}


@pytest.mark.parametrize(("event", "payload"), [
    ("workflow_dispatch", {"inputs": {"pipeline": "train"}}),
    ("repository_dispatch", {"client_payload": {"pipeline": "train"}}),
    ("repository_dispatch", {"client_payload": {"event": {"data": {"pipeline": "train"}}}}),
    ("repository_dispatch", {"client_payload": {"event": {"data": {"model": "clf"}}}}),
    ("repository_dispatch", {"client_payload": {"event": {"subject": "model/clf@3", "data": {}}}}),
])
def test_the_pipeline_to_retrain(event: str, payload: dict[str, Any]) -> None:
    assert retrain_pipeline(event, payload, PIPELINES, MODELS) == "train"


@pytest.mark.parametrize(("event", "payload", "message"), [
    ("push", {}, "a 'push' event does not say what to retrain"),
    ("workflow_dispatch", {}, "no pipeline to retrain (inputs.pipeline is missing)"),
    ("workflow_dispatch", {"inputs": {"pipeline": ["train"]}}, "no pipeline to retrain"),
    ("workflow_dispatch", {"inputs": "x"}, "no pipeline to retrain"),
    ("repository_dispatch", {"client_payload": {"pipeline": "../../etc"}}, "unknown pipeline '../../etc'"),
    ("repository_dispatch", {"client_payload": {"event": {"subject": "model/nope"}}}, "model 'nope'"),
    ("repository_dispatch", {"client_payload": {"event": {"data": {"model": "files-only"}}}},
     "no pipeline to retrain (the pipeline of model files-only is missing)"),
    ("repository_dispatch", {"client_payload": {"event": "text"}}, "no pipeline to retrain"),
])
def test_what_is_refused(event: str, payload: Any, message: str) -> None:
    with pytest.raises(GitHubError, match=None) as e:
        retrain_pipeline(event, payload, PIPELINES, MODELS)
    assert message in str(e.value)


def test_the_event_file_is_bounded_and_must_be_an_object(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    env = {"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_EVENT_PATH": str(path)}
    for text in ("[1]", "{", "[" * 100_000):
        path.write_text(text)
        with pytest.raises(GitHubError, match="not a JSON object"):
            read_event(env)
    path.write_text(json.dumps({"inputs": {}}))
    assert read_event(env) == ("workflow_dispatch", {"inputs": {}})
    with pytest.raises(GitHubError, match="run this inside GitHub Actions"):
        read_event({})
    with pytest.raises(GitHubError, match="GITHUB_EVENT_PATH .*: No such file"):
        read_event({**env, "GITHUB_EVENT_PATH": str(tmp_path / "missing.json")})
