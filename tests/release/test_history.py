"""`mlops history`: registrations and release events of a model, merged in time order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.errors import RegistryError
from mlops.registry.versions import version_key
from mlops.release.history import model_history
from mlops.release.records import event_key
from mlops.store.protocol import ArtifactStore
from tests.gitrepo import Repo, mlops
from tests.release.conftest import event, gate, register


def trail(store: ArtifactStore, wine_onnx: Path) -> None:
    """Two registrations with release events between and after them; the events are appended in
    another order than their times (the deployment is recorded late), as a real trail can be."""
    register(store, wine_onnx, at="2026-01-01T00:00:00Z", message="Train wine\n\nFirst model.")
    register(store, wine_onnx, at="2026-01-05T00:00:00Z", message="Retrain", metrics={"accuracy": 0.99})
    g = event(store, "gates_evaluated", 1, "dev", "2026-01-02T00:00:00Z", passed=True,
              gates=[gate("metric", "accuracy 0.95 >= 0.90")])
    event(store, "promoted", 1, "dev", "2026-01-02T00:00:01Z", commit="2" * 40, why="auto", from_version=None,
          gates_event=g.seq)
    event(store, "approved", 1, "prod", "2026-01-03T00:00:00Z", by="bob", why="looks good",
          source="github-review", pull_request=7)
    event(store, "gates_evaluated", 2, "staging", "2026-01-06T00:00:00Z", passed=False,
          gates=[gate("champion", "accuracy 0.99 vs 0.95: +0.04 >= 0.01"),
                 gate("latency", "p95 31 ms > 20 ms", "failed")])
    event(store, "deployed", 1, None, "2026-01-04T00:00:00Z", endpoint="wine-online", deployment="blue",
          target="local", traffic=100)
    event(store, "rolled_back", 1, "dev", "2026-01-07T00:00:00Z", by="ops", why="v2 misbehaves",
          from_version=2, to_version=1)
    event(store, "registered", 2, None, "2026-01-05T00:00:00Z")  # repeats the registry: not shown twice


def test_history_merges_registrations_and_events_in_time_order(store: ArtifactStore, wine_onnx: Path) -> None:
    trail(store, wine_onnx)
    problems: list[str] = []
    entries = model_history(store, "wine", problems)
    assert problems == []
    assert [(e.at, e.kind, e.version) for e in entries] == [
        ("2026-01-01T00:00:00Z", "registered", 1),
        ("2026-01-02T00:00:00Z", "gates_evaluated", 1),
        ("2026-01-02T00:00:01Z", "promoted", 1),
        ("2026-01-03T00:00:00Z", "approved", 1),
        ("2026-01-04T00:00:00Z", "deployed", 1),
        ("2026-01-05T00:00:00Z", "registered", 2),
        ("2026-01-06T00:00:00Z", "gates_evaluated", 2),
        ("2026-01-07T00:00:00Z", "rolled_back", 1),
    ]
    first = entries[0]
    assert (first.source, first.by, first.commit, first.why) == ("registry", "ci", "1" * 40, "Train wine\n\nFirst model.")
    assert first.summary == "wine@1 by ci, commit 111111111111, author Ada <ada@example.com>: Train wine"
    summaries = [e.summary for e in entries]
    assert summaries[1] == "wine@1 -> dev: passed (metric passed: accuracy 0.95 >= 0.90), by ci"
    assert summaries[2] == "wine@1 -> dev by ci, commit 222222222222: auto"
    assert summaries[3] == "wine@1 for prod by bob (github-review, pull request #7): looks good"
    assert summaries[4] == "wine@1 -> endpoint wine-online/blue, target local, traffic 100% by ci"
    assert summaries[6] == ("wine@2 -> staging: FAILED (champion passed: accuracy 0.99 vs 0.95: +0.04 >= 0.01; "
                            "latency failed: p95 31 ms > 20 ms), by ci")
    assert summaries[7] == "wine dev: version 2 -> 1 by ops: v2 misbehaves"


def test_damaged_records_are_warnings_and_hide_nothing_else(store: ArtifactStore, wine_onnx: Path) -> None:
    trail(store, wine_onnx)
    store.write_record(event_key("wine", 2), b"{not json")
    store.write_record(version_key("models", "wine", 1), b'{"name": "wine"}')
    problems: list[str] = []
    entries = model_history(store, "wine", problems)
    assert len(problems) == 2
    assert "release/models/wine/events/0000000002.json" in problems[1]
    assert "registry/models/wine/versions/0000000001.json" in problems[0]
    kinds = [(e.kind, e.version) for e in entries]
    assert ("promoted", 1) not in kinds and ("registered", 1) not in kinds and len(entries) == 6
    # With the registry's record of v2 gone, its `registered` event is what remains of it.
    store.delete_record(version_key("models", "wine", 2))
    again = model_history(store, "wine", [])
    assert [e.source for e in again if e.kind == "registered"] == ["events"]


def test_an_unknown_model_is_an_error(store: ArtifactStore) -> None:
    with pytest.raises(RegistryError, match="no model named 'nope'"):
        model_history(store, "nope", [])
    with pytest.raises(RegistryError, match="invalid model name"):
        model_history(store, "../x", [])


def test_cli_history_text_and_json(repo: Repo, store: ArtifactStore, wine_onnx: Path) -> None:
    trail(store, wine_onnx)
    event(store, "approved", 2, "prod", "2026-01-08T00:00:00Z", by="mallory\x1b[2J\x1b[31m", why="line\nbreak")
    out = mlops(repo, "history", "wine")
    lines = out.stdout.splitlines()
    assert len(lines) == 9 and out.stderr == ""
    assert lines[0].startswith("2026-01-01T00:00:00Z  registered       wine@1 by ci")
    assert lines[-1] == "2026-01-08T00:00:00Z  approved         wine@2 for prod by mallory[2J[31m: line break"
    data = json.loads(mlops(repo, "history", "wine", "--output", "json").stdout)
    assert [d["kind"] for d in data][:3] == ["registered", "gates_evaluated", "promoted"]
    assert data[-1]["by"] == "mallory\x1b[2J\x1b[31m"  # JSON keeps the record as it is (escaped by JSON)
    assert data[1]["evidence"]["gates"][0]["summary"] == "accuracy 0.95 >= 0.90" and data[1]["seq"] == 1

    store.write_record(event_key("wine", 3), b"[]")
    damaged = mlops(repo, "history", "wine", check=False)
    assert damaged.returncode == 4 and len(damaged.stdout.splitlines()) == 8
    assert "warning: release event release/models/wine/events/0000000003.json" in damaged.stderr
    assert "1 damaged record" in damaged.stderr and "Traceback" not in damaged.stderr

    unknown = mlops(repo, "history", "nope", check=False)
    assert unknown.returncode == 5 and "no model named 'nope'" in unknown.stderr
