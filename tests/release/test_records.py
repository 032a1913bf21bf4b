"""The release audit trail: immutable events, stage holders derived from them, concurrent appends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops.errors import CorruptRecordError
from mlops.release.records import (
    append_event,
    approvals,
    entered_at,
    event_key,
    held,
    model_events,
    stage_holder,
)
from mlops.store.local import LocalStore
from tests.race import race


def test_holders_tenure_and_approvals_are_derived_from_the_trail(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    add = lambda kind, v, stage, **ev: append_event(store, "m", kind, version=v, stage=stage, by="ada",  # noqa: E731
                                                     why="test", evidence=ev, at=ev.pop("at", None))
    add("promoted", 1, "dev", at="2026-01-01T00:00:00Z")
    add("promoted", 2, "dev", at="2026-01-02T00:00:00Z")
    add("rolled_back", 1, "dev", from_version=2, at="2026-01-03T00:00:00Z")
    add("approved", 1, "prod")
    events = model_events(store, "m")
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert stage_holder(events, "dev") == 1 and stage_holder(events, "prod") is None
    assert held(events, "dev", 1) and not held(events, "dev", 2)  # rolled back out of it
    assert entered_at(events, "dev", 1) is not None and entered_at(events, "dev", 1).day == 3
    assert [a.by for a in approvals(events, 1, "prod")] == ["ada"] and approvals(events, 2, "prod") == []


def test_a_damaged_event_names_itself(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    append_event(store, "m", "promoted", version=1, stage="dev", by="ada", why="x")
    store.write_record(event_key("m", 1), b'{"seq": 1, "kind": "promoted"}')
    with pytest.raises(CorruptRecordError, match="release event release/models/m/events/0000000001.json"):
        model_events(store, "m")


def _appender(root: str, me: str, barrier: Any, results: Any) -> None:
    store = LocalStore(Path(root))
    barrier.wait()
    results.put((me, [append_event(store, "m", "approved", version=1, stage="prod", by=me, why="race").seq
                      for _ in range(10)]))


def test_concurrent_appends_never_share_a_number(tmp_path: Path) -> None:
    got = race(_appender, lambda me: (str(tmp_path / "store"), me))
    assert sorted(got["a"] + got["b"]) == list(range(1, 21))
    assert len(model_events(LocalStore(tmp_path / "store"), "m")) == 20
