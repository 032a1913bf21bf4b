"""`mlops audit`: which versions served an endpoint at a time, from deployed/undeployed events."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from mlops.release.audit import parse_window, served, traffic_note
from mlops.release.records import event_key
from mlops.store.protocol import ArtifactStore
from tests.gitrepo import Repo, mlops
from tests.release.conftest import event


def deploy(store: ArtifactStore, model: str, version: int, slot: str, traffic: object, at: str,
           endpoint: str = "wine-online", **more: object) -> None:
    event(store, "deployed", version, None, at, model=model, endpoint=endpoint, deployment=slot, target="local",
          traffic=traffic, **more)


def undeploy(store: ArtifactStore, model: str, version: int, slot: str, at: str,
             endpoint: str = "wine-online") -> None:
    event(store, "undeployed", version, None, at, model=model, endpoint=endpoint, deployment=slot, target="local")


def canary(store: ArtifactStore) -> None:
    """wine@1 alone; a canary of wine@2 at 10%, then 50%; wine@2 takes over and wine@1 goes; then
    another model replaces the slot; an unrelated endpoint throughout."""
    deploy(store, "wine", 1, "blue", 100, "2026-01-01T00:00:00Z", commit="1" * 40)
    deploy(store, "other", 7, "main", 100, "2026-01-01T00:00:00Z", endpoint="other-endpoint")
    deploy(store, "wine", 2, "green", 10, "2026-01-02T00:00:00Z")
    deploy(store, "wine", 1, "blue", 90, "2026-01-02T00:00:00Z")
    deploy(store, "wine", 2, "green", 50, "2026-01-03T00:00:00Z")
    deploy(store, "wine", 1, "blue", 50, "2026-01-03T00:00:00Z")
    deploy(store, "wine", 2, "green", 100, "2026-01-04T00:00:00Z")
    deploy(store, "wine", 1, "blue", 0, "2026-01-04T00:00:00Z")
    undeploy(store, "wine", 1, "blue", "2026-01-04T12:00:00Z")
    deploy(store, "wine-v2", 1, "green", 100, "2026-01-06T06:00:00Z")
    undeploy(store, "wine-v2", 1, "green", "2026-01-07T00:00:00Z")


def at(store: ArtifactStore, when: str) -> list[tuple[str, int | None, str, float | None]]:
    problems: list[str] = []
    got = served(store, "wine-online", parse_window(when), problems)
    assert problems == []
    return [(p.model, p.version, p.deployment, p.traffic) for p in got]


def test_every_version_serving_at_an_instant_with_its_weight(store: ArtifactStore) -> None:
    canary(store)
    assert at(store, "2025-12-31T23:59:59Z") == []
    assert at(store, "2026-01-01T00:00:00Z") == [("wine", 1, "blue", 100.0)]  # from the instant it was deployed
    assert at(store, "2026-01-02T06:00:00Z") == [("wine", 1, "blue", 90.0), ("wine", 2, "green", 10.0)]
    assert at(store, "2026-01-03T00:00:00Z") == [("wine", 1, "blue", 50.0), ("wine", 2, "green", 50.0)]
    # Drained to 0% before removal: deployed, but it served nothing.
    drained = served(store, "wine-online", parse_window("2026-01-04T06:00:00Z"), [])
    assert [(p.version, p.traffic, p.serving) for p in drained] == [(1, 0.0, False), (2, 100.0, True)]
    assert at(store, "2026-01-05T00:00:00+02:00") == [("wine", 2, "green", 100.0)]  # 2026-01-04T22:00Z
    # Another model took the slot over: the slot's old occupant ends there.
    assert at(store, "2026-01-06T05:59:59Z") == [("wine", 2, "green", 100.0)]
    assert at(store, "2026-01-06T06:00:00Z") == [("wine-v2", 1, "green", 100.0)]
    assert at(store, "2026-01-07T00:00:00Z") == []  # undeployed at that very instant
    assert at(store, "2026-01-06T12:00") == [("wine-v2", 1, "green", 100.0)]  # no offset: UTC
    # A whole day: everything that served at any moment of it (what ended as it began, did not).
    assert at(store, "2026-01-06") == [("wine", 2, "green", 100.0), ("wine-v2", 1, "green", 100.0)]
    assert at(store, "2026-01-04") == [("wine", 1, "blue", 0.0), ("wine", 2, "green", 100.0)]
    assert at(store, "2026-01-03") == [("wine", 1, "blue", 50.0), ("wine", 2, "green", 50.0)]
    first = served(store, "wine-online", parse_window("2026-01-01T12:00:00Z"), [])[0]
    assert (first.start, first.end, first.ended_by, first.commit) == (
        "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "deployed", "1" * 40)


def test_now_and_bad_times() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    w = parse_window("now", now)
    assert w.instant and w.start == now and w.text == "2026-03-01T12:00:00Z"
    day = parse_window("2026-02-28")
    assert (day.start.day, day.end.month, day.end.day) == (28, 3, 1) and not day.instant
    for bad in ("yesterday", "2026-02-30", "2026-13-01T00:00:00Z", ""):
        with pytest.raises(ValueError, match="ISO 8601|not a date"):
            parse_window(bad)


def test_weights_that_do_not_add_up_are_noted_and_bad_events_are_warnings(store: ArtifactStore) -> None:
    deploy(store, "wine", 1, "blue", 100, "2026-01-01T00:00:00Z")
    deploy(store, "wine", 2, "green", 20, "2026-01-02T00:00:00Z")  # blue's new weight was never recorded
    problems: list[str] = []
    window = parse_window("2026-01-03T00:00:00Z")
    got = served(store, "wine-online", window, problems)
    assert traffic_note(got, window) == ("the recorded traffic weights add up to 120%, not 100%: the deployment "
                                         "events of this endpoint may be incomplete")
    deploy(store, "wine", 3, "red", "lots", "2026-01-03T00:00:00Z")
    event(store, "deployed", 3, None, "2026-01-03T00:00:00Z", endpoint="wine-online", traffic=5)
    store.write_record(event_key("wine", 1), b"{")
    got = served(store, "wine-online", parse_window("2026-01-04T00:00:00Z"), problems)
    assert [(p.version, p.traffic) for p in got] == [(2, 20.0), (3, None)]
    assert len(problems) == 3 and "release/models/wine/events/0000000001.json" in problems[0]
    assert "records traffic 'lots'" in problems[1] and "names no deployment" in problems[2]


def test_cli_audit(repo: Repo, store: ArtifactStore) -> None:
    canary(store)
    out = mlops(repo, "audit", "wine-online", "--at", "2026-01-02T06:00:00Z").stdout.splitlines()
    assert out[0] == "endpoint wine-online at 2026-01-02T06:00:00Z:"
    assert out[1] == ("  wine@1  deployment blue  target local  traffic 90%  from 2026-01-02T00:00:00Z "
                      "until 2026-01-03T00:00:00Z  (by ci)")
    assert out[2].startswith("  wine@2  deployment green  target local  traffic 10%  from 2026-01-02T00:00:00Z")
    drained = mlops(repo, "audit", "wine-online", "--at", "2026-01-04T06:00:00Z").stdout
    assert "traffic 0% (deployed, answered no requests)" in drained
    data = json.loads(mlops(repo, "audit", "wine-online", "--at", "2026-01-06", "-o", "json").stdout)
    assert (data["from"], data["until"]) == ("2026-01-06T00:00:00Z", "2026-01-07T00:00:00Z")
    assert [(p["model"], p["version"], p["traffic"], p["serving"], p["end"]) for p in data["served"]] == [
        ("wine", 2, 100.0, True, "2026-01-06T06:00:00Z"), ("wine-v2", 1, 100.0, True, "2026-01-07T00:00:00Z")]
    assert data["notes"] == []
    nothing = mlops(repo, "audit", "wine-online", "--at", "2025-06-01T00:00:00Z")
    assert nothing.stdout == "nothing was deployed to endpoint wine-online at 2025-06-01T00:00:00Z\n"
    now = mlops(repo, "audit", "wine-online").stdout  # --at defaults to now: after the last undeploy
    assert now.startswith("nothing was deployed to endpoint wine-online at ")
    bad = mlops(repo, "audit", "wine-online", "--at", "last tuesday", check=False)
    assert bad.returncode == 64 and "--at" in bad.stderr and "ISO 8601" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_audit_of_an_endpoint_never_deployed(repo: Repo) -> None:
    unknown = mlops(repo, "audit", "never-deployed", "--at", "2026-01-01", check=False)
    assert unknown.returncode == 5 and "no endpoint named 'never-deployed' in the specs" in unknown.stderr
    repo.write("models/m.yaml", "kind: Model\nname: m\nflavor: custom\nsource: {files: [mlops.yaml]}\n")
    repo.write("endpoints/quiet.yaml", "kind: Endpoint\nname: quiet\ntype: online\n"
                                       "deployments: [{name: blue, model: m}]\n")
    out = mlops(repo, "audit", "quiet", "--at", "2026-01-01")
    assert out.stdout == "nothing was deployed to endpoint quiet at 2026-01-01 (the whole UTC day)\n"
