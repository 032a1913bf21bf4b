"""The outbox under concurrency and damage: claims, entries that vanish, unreadable records,
a store that refuses writes, and sinks that break; ``emit`` never fails its caller."""

from __future__ import annotations

import json
import time

import pytest

from mlops.errors import DeliveryError, StoreError
from mlops.events import outbox
from mlops.events.emit import emit, flush
from mlops.events.sinks import Budget, MemorySink
from mlops.spec.model import Project, Stage, StoreConfig
from mlops.store.memory import MemoryStore
from tests.events.conftest import FAST, World

PROJECT = Project(name="demo", stages=(Stage(name="dev"),), store=StoreConfig())


def sink(ident: str = "memory-1", patterns: tuple[str, ...] | None = None) -> MemorySink:
    return MemorySink(ident, f"memory {ident}", patterns)


def run(store: MemoryStore | None, sinks: list[MemorySink], warnings: list[str], name: str = "model.promoted",
        subject: str = "model/m@1"):  # type: ignore[no-untyped-def]
    return emit(PROJECT, store, "/nonexistent", name, subject, {"k": 1}, sinks=list(sinks), limits=FAST,  # type: ignore[arg-type]
                warn=warnings.append)


def test_failing_sink_keeps_events_in_order_and_later_ones_wait_behind_them() -> None:
    store, warnings = MemoryStore(), []
    s = sink()
    s.fail = DeliveryError("down")
    a = run(store, [s], warnings).event
    b = run(store, [s], warnings).event
    keys = outbox.pending(store, s.id)
    assert [outbox.event_id_of(k) for k in keys] == [a.id, b.id]  # type: ignore[union-attr]
    s.fail = None
    c = run(store, [s], warnings).event
    assert [e.id for e in s.sent] == [a.id, b.id, c.id]  # type: ignore[union-attr]
    assert list(store.list_records("events/")) == []


def test_an_attempt_under_way_in_another_run_holds_the_sink_back() -> None:
    store, warnings = MemoryStore(), []
    s = sink()
    s.fail = DeliveryError("down")
    first = run(store, [s], warnings).event
    s.fail = None
    entry = outbox.read_entry(store, outbox.pending(store, s.id)[0])
    assert entry is not None and entry.attempts == 1
    # Another process claimed attempt 2 and is still sending it.
    assert outbox.claim(store, entry, 2, until=time.time() + 600)
    report = run(store, [s], warnings)
    assert s.sent == []  # neither the old event (in flight elsewhere) nor the new one (order) is sent
    assert report.count("kept") == 2
    assert any("another run is delivering" in w for w in warnings)
    # That process died without a word: once its claim runs out, the attempt counts as failed.
    store.write_record(f"events/attempts/{s.id}/{entry.stem}/0002.json",
                       json.dumps({"until": time.time() - 1}).encode())
    flush(PROJECT, store, "/nonexistent", sinks=[s], limits=FAST, warn=warnings.append)  # type: ignore[arg-type]
    assert [e.id for e in s.sent][0] == first.id  # type: ignore[union-attr]
    assert len(s.sent) == 2
    assert list(store.list_records("events/")) == []


def test_a_claim_promising_more_than_an_hour_holds_nothing_up() -> None:
    store, warnings = MemoryStore(), []
    s = sink()
    s.fail = DeliveryError("down")
    run(store, [s], warnings)
    s.fail = None
    entry = outbox.read_entry(store, outbox.pending(store, s.id)[0])
    assert entry is not None
    outbox.claim(store, entry, 2, until=time.time() + 10 * 24 * 3600)  # forged, or a clock gone wrong
    run(store, [s], warnings)
    assert len(s.sent) == 2


class RacingStore(MemoryStore):
    """Another run delivers and removes an entry just as this one claims its next attempt."""

    def create_record(self, key: str, data: bytes) -> bool:
        if key.startswith("events/attempts/") and key.endswith("/0002.json"):
            for k in list(self.records):
                if k.startswith("events/outbox/"):
                    del self.records[k]
        return super().create_record(key, data)


def test_an_entry_another_run_delivered_meanwhile_is_neither_sent_again_nor_brought_back() -> None:
    store, warnings = RacingStore(), []
    s = sink()
    s.fail = DeliveryError("down")
    run(store, [s], warnings)
    s.fail = None
    run(store, [s], warnings)
    assert len(s.sent) == 1  # only the new event
    assert list(store.list_records("events/outbox/")) == []
    assert list(store.list_records("events/attempts/")) == []


def test_an_unreadable_entry_is_moved_to_the_dead_letters_and_the_rest_go_on() -> None:
    store, warnings = MemoryStore(), []
    s = sink()
    s.fail = DeliveryError("down")
    run(store, [s], warnings)
    s.fail = None
    key = outbox.pending(store, s.id)[0]
    store.write_record(key, b'{"event": {"id": "not a uuid"}}')
    report = run(store, [s], warnings)
    assert len(s.sent) == 1
    assert report.count("dead") == 1 and report.count("delivered") == 1
    assert any("unreadable" in w for w in warnings), warnings
    dead = list(store.list_records("events/dead/"))
    assert len(dead) == 1 and "not a uuid" in json.loads(store.read_record(dead[0]) or b"")["unreadable"]


def test_an_outbox_event_of_another_kind_is_refused() -> None:
    """Store records are untrusted: an entry must be an mlops CloudEvent to be sent (and signed)."""
    store, warnings = MemoryStore(), []
    s = sink()
    event = json.loads(json.dumps(run(store, [], warnings).event.to_dict()))  # type: ignore[union-attr]
    event["type"] = "com.example.anything"
    store.create_record(f"events/outbox/{s.id}/{time.time_ns():020d}-{event['id']}.json",
                        json.dumps({"event": event, "attempts": 0}).encode())
    flush(PROJECT, store, "/nonexistent", sinks=[s], limits=FAST, warn=warnings.append)  # type: ignore[arg-type]
    assert s.sent == []
    assert any("is not one of mlops's" in w for w in warnings), warnings


class RefusingStore(MemoryStore):
    def create_record(self, key: str, data: bytes) -> bool:
        raise StoreError(f"store is read-only: cannot write {key}")


def test_a_store_that_refuses_writes_loses_the_event_with_a_warning_but_never_fails_the_caller() -> None:
    warnings: list[str] = []
    s = sink()
    s.fail = DeliveryError("down")
    report = run(RefusingStore(), [s], warnings)
    assert report.count("lost") == 1
    assert any("could not be kept for later" in w and "read-only" in w for w in warnings), warnings


def test_without_a_store_nothing_is_kept_but_nothing_fails() -> None:
    warnings: list[str] = []
    s = sink()
    s.fail = DeliveryError("down")
    report = run(None, [s], warnings)
    assert report.count("lost") == 1


class Exploding(MemorySink):
    def send(self, event, budget: Budget) -> None:  # type: ignore[no-untyped-def]
        raise KeyError("a bug")


def test_a_sink_with_a_bug_is_a_warning_not_a_failure_and_the_other_sinks_still_get_the_event() -> None:
    warnings: list[str] = []
    good = sink("memory-2")
    report = run(MemoryStore(), [Exploding("memory-1", "exploding", None), good], warnings)
    assert len(good.sent) == 1
    assert report.count("delivered") == 1
    assert any("KeyError" in w and "a bug in mlops" in w for w in warnings)


def test_an_unknown_event_name_is_a_bug_of_the_caller() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        run(MemoryStore(), [], [], name="model.exploded")


def test_flush_reports_events_waiting_for_a_sink_no_longer_configured(world: World) -> None:
    s = sink("webhook-0123456789abcdef")
    s.fail = DeliveryError("down")
    emit(world.project, world.store, world.root, "model.promoted", "model/m@1", {}, sinks=[s], limits=FAST,
         warn=world.warnings.append)
    report = world.flush()  # the configured sinks: only the default log
    assert report.orphans == {"webhook-0123456789abcdef": 1}
    assert any("no longer configured" in w for w in world.warnings)


def test_sink_ids_are_stable_and_follow_the_configuration() -> None:
    from mlops.events.sinks import sink_id

    a = sink_id({"type": "webhook", "url": "https://x/h", "secret_env": "S"})
    assert a == sink_id({"secret_env": "S", "url": "https://x/h", "type": "webhook"})
    assert a != sink_id({"type": "webhook", "url": "https://x/other", "secret_env": "S"})
    assert a.startswith("webhook-") and len(a) == len("webhook-") + 16
