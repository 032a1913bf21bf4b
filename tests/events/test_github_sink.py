"""The GitHub sink against a stand-in GitHub API on 127.0.0.1: one issue per subject with a
comment per event, repository_dispatch, a missing token, refusals, and no token in any record."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.events.conftest import World
from tests.githubstub import GitHubStub

TOKEN = "ghp_sink_token_abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub("octo/wine", TOKEN) as stub:
        yield stub


def test_issue_mode_opens_one_issue_per_subject_then_comments_on_it(world: World, gh: GitHubStub) -> None:
    world.notifications = [{"type": "github", "mode": "issue", "labels": ["mlops"]}]
    world.env.update(gh.env())
    first = world.emit("model.registered", "model/wine-classifier@3", {"model": "wine-classifier", "version": 3})
    second = world.emit("model.promoted", "model/wine-classifier@3", {"stage": "staging"})
    world.emit("deployment.started", "endpoint/wine", {"endpoint": "wine"})
    assert world.warnings == []
    assert [(i["number"], i["title"]) for i in gh.issues] == [(1, "mlops: model/wine-classifier"),
                                                              (2, "mlops: endpoint/wine")]
    assert gh.issues[0]["labels"] == [{"name": "mlops"}]
    assert first.event and second.event
    assert first.event.id in gh.issues[0]["body"] and "**model.registered**" in gh.issues[0]["body"]
    assert [c["issue"] for c in gh.comments] == [1]
    assert second.event.id in gh.comments[0]["body"] and "- stage: `staging`" in gh.comments[0]["body"]
    assert [(r.method, r.target) for r in gh.requests[:4]] == [
        ("GET", "/repos/octo/wine/issues?state=open&labels=mlops&per_page=100"),
        ("POST", "/repos/octo/wine/issues"),
        ("GET", "/repos/octo/wine/issues?state=open&labels=mlops&per_page=100"),
        ("POST", "/repos/octo/wine/issues/1/comments"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in gh.requests)


def test_dispatch_mode_nests_the_event_in_the_client_payload(world: World, gh: GitHubStub) -> None:
    world.notifications = [{"type": "github", "mode": "dispatch", "repository": "octo/wine",
                            "events": ["drift.detected"]}]
    world.env.update({k: v for k, v in gh.env().items() if k != "GITHUB_REPOSITORY"})
    world.emit("model.promoted")
    report = world.emit("drift.detected", "endpoint/wine", {"endpoint": "wine", "features": ["alcohol"]})
    assert report.event is not None
    assert [(r.method, r.path) for r in gh.requests] == [("POST", "/repos/octo/wine/dispatches")]
    assert gh.dispatches == [{"event_type": "dev.mlops.drift.detected",
                              "client_payload": {"event": report.event.to_dict()}}]


def test_without_a_token_events_wait_for_a_run_that_has_one(world: World, gh: GitHubStub) -> None:
    world.notifications = [{"type": "github", "mode": "dispatch"}]
    world.env.update({k: v for k, v in gh.env().items() if k != "GITHUB_TOKEN"})
    report = world.emit("drift.detected", "endpoint/wine")
    assert gh.requests == []
    assert report.count("kept") == 1
    assert any("set GITHUB_TOKEN" in w for w in world.warnings), world.warnings
    world.env["GITHUB_TOKEN"] = TOKEN
    assert world.flush().count("delivered") == 1
    assert len(gh.dispatches) == 1


def test_a_refusal_is_dead_and_the_token_is_in_no_warning_or_record(world: World, gh: GitHubStub) -> None:
    world.notifications = [{"type": "github", "mode": "issue"}]
    world.env.update(gh.env())
    # The API echoes the credentials back in its message: they must not reach a warning or the store.
    gh.fail("GET", "/repos/octo/wine/issues", 404, {"message": f"Not Found (Bearer {TOKEN})"})
    report = world.emit()
    assert report.count("dead") == 1
    assert any("GitHub answered 404" in w for w in world.warnings)
    assert all(TOKEN not in w for w in world.warnings)
    for key in world.store.list_records("events/"):
        assert TOKEN.encode() not in (world.store.read_record(key) or b"")
    assert TOKEN not in (world.root / ".mlops/events.jsonl").read_text()


def test_a_server_error_is_kept_and_retried(world: World, gh: GitHubStub) -> None:
    world.notifications = [{"type": "github", "mode": "issue"}]
    world.env.update(gh.env())
    for _ in range(4):  # more than the in-call retries (3)
        gh.fail("GET", "/repos/octo/wine/issues", 502)
    report = world.emit()
    assert report.count("kept") == 1
    assert world.flush().count("delivered") == 1
    assert len(gh.issues) == 1


def test_a_long_event_still_fits_a_comment(world: World, gh: GitHubStub) -> None:
    world.notifications = [{"type": "github", "mode": "issue"}]
    world.env.update(gh.env())
    world.emit(data={"log": "x" * 200_000})
    assert len(gh.issues[0]["body"]) < 65_536
    assert "cut" in gh.issues[0]["body"]


def test_an_unusable_entry_is_dead_with_its_reason(world: World) -> None:
    world.notifications = [{"type": "github", "mode": "carrier-pigeon"}]
    report = world.emit()
    assert report.count("dead") == 1
    assert any("carrier-pigeon" in w for w in world.warnings)
    assert json.loads(world.log_lines()[0])["type"] == "dev.mlops.model.promoted"
