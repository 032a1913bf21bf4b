"""A rollout's ``on_state`` callback feeding the audit trail (``mlops.deploy.records.record_slots``), as the deploy
executor wires it: every canary weight, the promotion and the rollback are periods of the endpoint's slots."""

from __future__ import annotations

from mlops.deploy.fake import FakeTarget
from mlops.deploy.protocol import EndpointState
from mlops.deploy.records import open_slots, record_slots
from mlops.deploy.rollout import roll_out
from mlops.release.audit import endpoint_periods
from mlops.store.memory import MemoryStore
from tests.deploy.test_rollout import CANARY, Clients, dep, state


def run(target: FakeTarget, store: MemoryStore, clients: Clients, desired: EndpointState) -> str:
    def record(_before: EndpointState | None, after: EndpointState) -> None:
        record_slots(store, "wine", after, by="alice", why="promote wine v4", commit=None)

    return roll_out(target, desired, target.read("wine"), CANARY, store, echo=lambda _: None, sleep=clients.sleep,
                    clock=clients.clock, on_state=record).status


def slots(store: MemoryStore) -> dict[str, list[tuple[int | None, float | None]]]:
    """Each slot's periods in order: (version, weight)."""
    out: dict[str, list[tuple[int | None, float | None]]] = {}
    for p in sorted(endpoint_periods(store, "wine", []), key=lambda p: p.seq):
        out.setdefault(p.deployment, []).append((p.version, p.traffic))
    return out


def test_each_canary_step_and_the_promotion_are_in_the_audit_trail() -> None:
    target, store = FakeTarget(), MemoryStore()
    clients = Clients(target, "wine")
    live = target.apply(state(dep("blue", 3, store), traffic={"blue": 100}), store)
    record_slots(store, "wine", live, by="alice", why="first deploy", commit=None)
    assert run(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100})) == "succeeded"
    assert slots(store) == {"blue": [(3, 100.0), (3, 90.0), (3, 50.0), (3, 0.0), (4, 0.0), (4, 100.0)],
                            "blue-canary": [(4, 10.0), (4, 50.0), (4, 100.0), (4, 0.0)]}
    assert [p.ended_by for p in endpoint_periods(store, "wine", []) if p.deployment == "blue-canary"][-1] == \
        "undeployed"
    now = open_slots(store, "wine")
    assert {name: (p.version, p.traffic) for name, p in now.items()} == {"blue": (4, 100.0)}


def test_a_rollback_leaves_the_trail_where_it_started() -> None:
    target, store = FakeTarget(), MemoryStore()
    clients = Clients(target, "wine")
    live = target.apply(state(dep("blue", 3, store), traffic={"blue": 100}), store)
    record_slots(store, "wine", live, by="alice", why="first deploy", commit=None)
    clients.behaviour[4] = (1.0, 0.002)
    assert run(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100})) == "rolled_back"
    assert slots(store) == {"blue": [(3, 100.0), (3, 90.0), (3, 100.0)], "blue-canary": [(4, 10.0), (4, 0.0)]}
    now = open_slots(store, "wine")
    assert {name: (p.version, p.traffic) for name, p in now.items()} == {"blue": (3, 100.0)}
