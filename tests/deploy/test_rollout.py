"""roll_out against the in-memory target, a fake clock and simulated clients: canary and blue-green
judged on scripted metrics, rollback, crash recovery, idempotence."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mlops.deploy.fake import FakeTarget
from mlops.deploy.protocol import DeploymentMetrics, DeploymentState, EndpointState
from mlops.deploy.rollout import RolloutResult, Strategy, roll_out, split, stable_state
from mlops.errors import DeployError
from mlops.store.memory import MemoryStore

INF = float("inf")
BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, INF)
CANARY: dict[str, Any] = {"strategy": "canary", "steps": [10, 50, 100], "interval_seconds": 10,
          "analysis": {"max_error_rate": 0.01, "max_p99_ms": 50, "min_requests": 20}}


class Clients:
    """Simulated clients: ``rate`` requests per second, split by the endpoint's live traffic (plus its
    mirror), each answered by how its deployment's model version behaves: (error share, latency s)."""

    def __init__(self, target: FakeTarget, endpoint: str, rate: float = 100.0) -> None:
        self.target, self.endpoint, self.rate = target, endpoint, rate
        self.t = 0.0
        self.behaviour: dict[int, tuple[float, float]] = {}
        self.totals: dict[str, list[float]] = {}  # deployment -> [requests, errors, per-bucket counts...]
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt
        self.slept.append(dt)
        state = self.target.live[self.endpoint]
        share = dict(state.traffic)
        if state.mirror:
            name = state.mirror["deployment"]
            share[name] = share.get(name, 0) + state.mirror.get("percent", 100)
        for name, weight in share.items():
            d = state.deployment(name)
            if d is None or not weight:
                continue
            errors, latency = self.behaviour.get(d.version, (0.0, 0.002))
            n = self.rate * dt * weight / 100
            row = self.totals.setdefault(name, [0.0] * (2 + len(BOUNDS)))
            row[0] += n
            row[1] += n * errors
            row[2 + next(i for i, le in enumerate(BOUNDS) if latency <= le)] += n
        self.publish()

    def publish(self) -> None:
        out = {}
        for name, row in self.totals.items():
            cumulative, buckets = 0.0, []
            for le, n in zip(BOUNDS, row[2:], strict=True):
                cumulative += n
                buckets.append((le, int(cumulative)))
            out[name] = DeploymentMetrics(int(row[0]), int(row[1]), tuple(buckets))
        self.target.fake_metrics[self.endpoint] = out


def dep(name: str, version: int, store: MemoryStore, **options: Any) -> DeploymentState:
    sha = store.put_bytes(f"model v{version}".encode())
    return DeploymentState(name, "wine", version, sha, options)


def state(*deployments: DeploymentState, traffic: dict[str, int], mirror: dict[str, Any] | None = None) -> EndpointState:
    return EndpointState("wine", "fake", deployments, traffic, mirror)


World = tuple[FakeTarget, MemoryStore, Clients]


@pytest.fixture()
def world() -> World:
    target, store = FakeTarget(), MemoryStore()
    return target, store, Clients(target, "wine")


def go(target: FakeTarget, store: MemoryStore, clients: Clients, desired: EndpointState,
       spec: dict[str, Any]) -> tuple[RolloutResult, list[tuple[str, dict[str, Any]]], list[str]]:
    events: list[tuple[str, dict[str, Any]]] = []
    lines: list[str] = []
    result = roll_out(target, desired, target.read("wine"), spec, store, echo=lines.append, sleep=clients.sleep,
                      clock=clients.clock, on_event=lambda kind, data: events.append((kind, data)))
    return result, events, lines


def start(target: FakeTarget, store: MemoryStore, *deployments: DeploymentState,
          traffic: dict[str, int]) -> EndpointState:
    live = target.apply(state(*deployments, traffic=traffic), store)
    target.calls.clear()
    return live


def traffics(target: FakeTarget) -> list[dict[str, int]]:
    return [detail for call, _, detail in target.calls if isinstance(detail, dict)]


def test_a_healthy_canary_goes_10_50_100_and_the_deployment_ends_on_the_new_version(world: World) -> None:
    target, store, clients = world
    start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    desired = state(dep("blue", 4, store), traffic={"blue": 100})
    result, events, lines = go(target, store, clients, desired, CANARY)
    assert result.status == "succeeded", result.reason
    assert target.live["wine"].digest() == desired.digest()
    assert traffics(target) == [
        {"blue": 90, "blue-canary": 10}, {"blue": 50, "blue-canary": 50}, {"blue": 0, "blue-canary": 100},
        {"blue": 0, "blue-canary": 100},  # promote: blue reloads v4 while it has no traffic
        {"blue": 100, "blue-canary": 0}, {"blue": 100}]
    # the slot carried v4 from the start; blue itself got v4 only while the slot had all its traffic
    first = next(d for c, _, d in target.calls if c == "apply")
    assert first == {"blue": 90, "blue-canary": 10}
    judged = [s for s in result.steps if "analysis" in s]
    assert [s["weight"] for s in judged] == [10, 50, 100]
    assert all(s["analysis"]["verdict"] == "pass" for s in judged)
    assert all(s["analysis"]["deployments"]["blue-canary"]["requests"] >= 20 for s in judged)
    assert [k for k, _ in events] == ["deployment.started", "deployment.succeeded"]
    assert events[0][1]["changes"] == [{"deployment": "blue", "model": "wine", "from_version": 3, "to_version": 4}]
    assert events[0][1]["reason"] == "canary 10 -> 50 -> 100" and events[0][1]["strategy"] == "canary"
    assert events[1][1]["traffic"] == {"blue": 100} and events[1][1]["endpoint"] == "wine"
    assert any("canary 10%: pass" in line for line in lines)


def test_a_canary_with_errors_is_rolled_back_with_its_numbers(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    clients.behaviour[4] = (0.2, 0.002)  # v4 answers 20% of requests with a 5xx
    result, events, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}), CANARY)
    assert result.status == "rolled_back"
    assert "canary 10% failed its analysis" in result.reason and "above 1.00%" in result.reason
    assert target.live["wine"].digest() == live.digest()
    assert traffics(target)[-2:] == [{"blue": 100, "blue-canary": 0}, {"blue": 100}]
    assert [k for k, _ in events] == ["deployment.started", "deployment.rolled_back"]
    analysis = events[-1][1]["analysis"]
    assert analysis["verdict"] == "fail" and analysis["deployments"]["blue-canary"]["error_rate"] > 0.01
    assert [s["step"] for s in result.steps] == ["canary", "rollback", "rollback"]
    # it failed fast: well before the 10 s window ended
    assert result.steps[0]["analysis"]["elapsed_s"] < 10


def test_a_slow_canary_is_rolled_back_on_p99(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    clients.behaviour[4] = (0.0, 0.08)  # 80 ms
    result, _, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}), CANARY)
    assert result.status == "rolled_back"
    assert "p99" in result.reason and "above 50 ms" in result.reason
    assert target.live["wine"].digest() == live.digest()


def test_a_canary_that_fails_at_50_percent_goes_back_to_the_previous_split(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), dep("green", 7, store), traffic={"blue": 60, "green": 40})
    clients.behaviour[4] = (0.005, 0.002)  # within 1% ...
    desired = state(dep("blue", 4, store), dep("green", 7, store), traffic={"blue": 60, "green": 40})

    real_sleep = clients.sleep

    def worsening(dt: float) -> None:  # ... until the canary holds half of blue's weight
        if target.live["wine"].traffic.get("blue-canary", 0) >= 30:
            clients.behaviour[4] = (0.5, 0.002)
        real_sleep(dt)

    clients.sleep = worsening  # type: ignore[method-assign]
    result, _, _ = go(target, store, clients, desired, CANARY)
    assert result.status == "rolled_back" and "canary 50% failed" in result.reason
    assert traffics(target)[:2] == [{"blue": 54, "blue-canary": 6, "green": 40},
                                    {"blue": 30, "blue-canary": 30, "green": 40}]
    assert target.live["wine"].digest() == live.digest()


def test_too_few_requests_wait_a_bounded_time_then_roll_back_by_default(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    clients.rate = 0.5  # 0.05 requests/s reach the canary: never 20 in the window
    result, _, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}), CANARY)
    assert result.status == "rolled_back"
    assert "inconclusive" in result.reason and "of 20 requests" in result.reason
    assert target.live["wine"].digest() == live.digest()
    assert 30 <= clients.t < 35  # three intervals, not forever


def test_too_few_requests_go_on_when_the_analysis_says_promote(world: World) -> None:
    target, store, clients = world
    start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    clients.rate = 0
    spec = {**CANARY, "analysis": {**CANARY["analysis"], "inconclusive": "promote"}}
    desired = state(dep("blue", 4, store), traffic={"blue": 100})
    result, _, lines = go(target, store, clients, desired, spec)
    assert result.status == "succeeded"
    assert target.live["wine"].digest() == desired.digest()
    assert any("inconclusive, going on" in line for line in lines)
    assert clients.t == pytest.approx(30, abs=1)  # each step its interval, no extension


def test_without_analysis_each_step_waits_its_interval(world: World) -> None:
    target, store, clients = world
    start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    desired = state(dep("blue", 4, store), traffic={"blue": 100})
    result, _, _ = go(target, store, clients, desired, {"strategy": "canary", "steps": [25, 100], "interval_seconds": 4})
    assert result.status == "succeeded"
    assert clients.t == pytest.approx(8, abs=0.5)


def test_a_target_that_fails_mid_canary_is_rolled_back(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    real = target.set_traffic

    def flaky(endpoint: str, traffic: dict[str, int]) -> None:
        if traffic.get("blue-canary") == 50:
            raise DeployError("server for wine did not acknowledge generation 3")
        real(endpoint, traffic)

    target.set_traffic = flaky  # type: ignore[method-assign]
    result, events, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}), CANARY)
    assert result.status == "rolled_back" and "did not acknowledge" in result.reason
    assert target.live["wine"].digest() == live.digest()
    assert events[-1][0] == "deployment.rolled_back"


def test_a_failed_rollback_is_a_failure_saying_both(world: World) -> None:
    target, store, clients = world
    start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    clients.behaviour[4] = (1.0, 0.002)
    real = target.apply

    def broken_after_first(desired: EndpointState, st: Any) -> EndpointState:
        if any(c == "apply" for c, _, _ in target.calls):
            raise DeployError("target unreachable")
        return real(desired, st)

    target.apply = broken_after_first  # type: ignore[method-assign,assignment]
    result, _, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}), CANARY)
    assert result.status == "failed"
    assert "failed its analysis" in result.reason and "the rollback failed too: target unreachable" in result.reason


def test_blue_green_previews_on_mirrored_requests_then_switches_at_once(world: World) -> None:
    target, store, clients = world
    start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    desired = state(dep("blue", 4, store), traffic={"blue": 100})
    spec = {**CANARY, "strategy": "blue-green"}
    result, events, _ = go(target, store, clients, desired, spec)
    assert result.status == "succeeded", result.reason
    assert target.live["wine"].digest() == desired.digest()
    assert traffics(target)[:2] == [{"blue": 100, "blue-preview": 0}, {"blue": 0, "blue-preview": 100}]
    preview = result.steps[0]
    assert preview["step"] == "preview" and preview["analysis"]["deployments"]["blue-preview"]["requests"] >= 20
    assert [k for k, _ in events] == ["deployment.started", "deployment.succeeded"]


def test_blue_green_rolls_back_a_bad_preview_before_it_takes_traffic(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100},)
    clients.behaviour[4] = (0.3, 0.002)
    result, _, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}),
                      {**CANARY, "strategy": "blue-green"})
    assert result.status == "rolled_back" and "preview blue-preview failed its analysis" in result.reason
    assert all(t.get("blue-preview", 0) == 0 for t in traffics(target))
    assert target.live["wine"].digest() == live.digest()


def test_blue_green_switches_back_when_real_traffic_fails_after_the_switch(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    plain_sleep = clients.sleep

    def sleep(dt: float) -> None:  # v4 answers the mirror well, then fails once it takes the real traffic
        if target.live["wine"].traffic.get("blue-preview"):
            clients.behaviour[4] = (0.3, 0.002)
        plain_sleep(dt)

    clients.sleep = sleep  # type: ignore[method-assign]
    result, events, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}),
                           {**CANARY, "strategy": "blue-green"})
    assert result.status == "rolled_back" and "after the switch failed its analysis" in result.reason, result.reason
    assert [s["step"] for s in result.steps][:3] == ["preview", "switch", "rollback"]
    assert result.steps[1]["analysis"]["deployments"]["blue-preview"]["errors"] > 0
    assert traffics(target)[:3] == [{"blue": 100, "blue-preview": 0}, {"blue": 0, "blue-preview": 100},
                                    {"blue": 100, "blue-preview": 0}]
    assert target.live["wine"].digest() == live.digest()
    assert [k for k, _ in events] == ["deployment.started", "deployment.rolled_back"]


def test_new_endpoints_new_deployments_and_all_at_once_apply_directly(world: World) -> None:
    target, store, clients = world
    first = state(dep("blue", 3, store), traffic={"blue": 100})
    result, events, _ = go(target, store, clients, first, CANARY)
    assert result.status == "succeeded" and "new endpoint" in result.reason
    assert [c for c, _, _ in target.calls] == ["apply"] and clients.t == 0
    assert [k for k, _ in events] == ["deployment.started", "deployment.succeeded"]
    target.calls.clear()
    split_state = state(dep("blue", 3, store), dep("green", 5, store), traffic={"blue": 80, "green": 20})
    result, _, _ = go(target, store, clients, split_state, CANARY)
    assert result.status == "succeeded" and "no changed deployment takes traffic" in result.reason
    assert [c for c, _, _ in target.calls] == ["apply"]
    target.calls.clear()
    result, _, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}),
                      {"strategy": "all-at-once"})
    assert result.status == "succeeded" and [c for c, _, _ in target.calls] == ["apply"]


def test_rolling_out_to_what_is_live_does_nothing(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    events: list[str] = []
    result = roll_out(target, dataclasses.replace(live, url=None), live, CANARY, store, echo=lambda _: None,
                      sleep=clients.sleep, clock=clients.clock, on_event=lambda k, _: events.append(k))
    assert result.status == "succeeded" and result.steps == [] and "already matches" in result.reason
    assert target.calls == [] and events == [] and clients.t == 0


def interrupt_at(target: FakeTarget, canary_weight: int) -> None:
    """Make the target's process "die" (an exception that is no MlopsError) once the canary reaches
    ``canary_weight``, as a killed reconcile would leave it."""
    real = target.set_traffic

    def dying(endpoint: str, traffic: dict[str, int]) -> None:
        real(endpoint, traffic)
        if traffic.get("blue-canary") == canary_weight and traffic.get("blue"):
            raise KeyboardInterrupt

    target.set_traffic = dying  # type: ignore[method-assign]


def interrupted_canary(world: World) -> tuple[FakeTarget, EndpointState]:
    """blue v3 -> v4 by canary, killed at 50%; the next reconcile's fresh target over the same live state
    (no memory of the first run), and the desired state."""
    target, store, clients = world
    start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    desired = state(dep("blue", 4, store), traffic={"blue": 100})
    interrupt_at(target, 50)
    with pytest.raises(KeyboardInterrupt):
        go(target, store, clients, desired, CANARY)
    left = target.live["wine"]
    assert left.traffic == {"blue": 50, "blue-canary": 50} and left.digest() != desired.digest()
    again = FakeTarget()
    again.live = dict(target.live)
    clients.target = again
    return again, desired


def test_an_interrupted_canary_starts_again_from_its_first_step_and_converges(world: World) -> None:
    _, store, clients = world
    again, desired = interrupted_canary(world)
    result, _, lines = go(again, store, clients, desired, CANARY)
    assert result.status == "succeeded", result.reason
    assert again.live["wine"].digest() == desired.digest()
    assert traffics(again)[0] == {"blue": 90, "blue-canary": 10}  # from the first step again
    assert any("an interrupted rollout left blue-canary 50" in line for line in lines)


def test_an_interrupted_canary_whose_new_version_is_bad_rolls_back_to_the_stable_state(world: World) -> None:
    _, store, clients = world
    again, desired = interrupted_canary(world)
    clients.behaviour[4] = (1.0, 0.002)
    result, _, _ = go(again, store, clients, desired, CANARY)
    assert result.status == "rolled_back"
    assert again.live["wine"].traffic == {"blue": 100}
    assert [d.version for d in again.live["wine"].deployments] == [3]


def test_a_rollout_interrupted_during_promotion_finishes_all_at_once(world: World) -> None:
    target, store, clients = world
    store_live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    desired = state(dep("blue", 4, store), traffic={"blue": 100})
    # blue already reloaded v4, the slot still holds all the traffic: where a kill during promotion leaves it
    target.live["wine"] = dataclasses.replace(
        store_live, deployments=(dep("blue", 4, store), dep("blue-canary", 4, store)),
        traffic={"blue": 0, "blue-canary": 100})
    result, _, _ = go(target, store, clients, desired, CANARY)
    assert result.status == "succeeded" and "finishing an interrupted rollout" in result.reason
    assert [c for c, _, _ in target.calls] == ["apply"]
    assert target.live["wine"].digest() == desired.digest()


def test_stable_state_keeps_deployments_the_desired_state_declares() -> None:
    store = MemoryStore()
    live = state(dep("blue", 3, store), dep("blue-canary", 4, store), traffic={"blue": 90, "blue-canary": 10})
    assert stable_state(live, state(dep("blue", 3, store), traffic={"blue": 100})).traffic == {"blue": 100}
    declared = state(dep("blue", 3, store), dep("blue-canary", 4, store), traffic={"blue": 90, "blue-canary": 10})
    assert stable_state(live, declared) is live
    mirrored = dataclasses.replace(live, mirror={"deployment": "blue-canary", "percent": 100})
    assert stable_state(mirrored, state(dep("blue", 3, store), traffic={"blue": 100})).mirror is None


def test_a_declared_deployment_named_like_a_slot_is_refused_before_anything_changes(world: World) -> None:
    target, store, clients = world
    start(target, store, dep("blue", 3, store), dep("blue-canary", 1, store), traffic={"blue": 100})
    desired = state(dep("blue", 4, store), dep("blue-canary", 1, store), traffic={"blue": 100})
    result, _, _ = go(target, store, clients, desired, CANARY)
    assert result.status == "failed" and "rename the deployment" in result.reason
    assert target.calls == []


def test_split_keeps_integer_weights_and_gives_a_slot_at_least_one() -> None:
    assert split({"a": 100}, {"a": "a-c"}, 10) == {"a": 90, "a-c": 10}
    assert split({"a": 3, "b": 97}, {"a": "a-c"}, 10) == {"a": 2, "a-c": 1, "b": 97}
    assert split({"a": 50}, {"a": "a-c"}, 100) == {"a": 0, "a-c": 50}
    assert split({"a": 50}, {"a": "a-c"}, 0) == {"a": 50, "a-c": 0}


def test_strategy_from_spec_refuses_what_the_schema_refuses() -> None:
    assert Strategy.from_spec({}) == Strategy()
    assert Strategy.from_spec({"strategy": "canary", "steps": [5, 100], "interval_seconds": 2}).steps == (5, 100)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"strategy": "rainbow"}, "strategy"), ({"strategy": "canary", "steps": [50, 10]}, "steps"),
                       ({"strategy": "canary", "steps": [0, 100]}, "steps"),
                       ({"strategy": "canary", "interval_seconds": -1}, "interval_seconds"),
                       ({"strategy": "canary", "analysis": {"max_error_rate": "high"}}, "max_error_rate")]
    for bad, field in cases:
        with pytest.raises(DeployError, match=field):
            Strategy.from_spec(bad)


def test_a_bad_rollout_spec_is_a_failed_result_and_nothing_changes(world: World) -> None:
    target, store, clients = world
    start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    result, _, _ = go(target, store, clients, state(dep("blue", 4, store), traffic={"blue": 100}),
                      {"strategy": "canary", "steps": "10,50"})
    assert result.status == "failed" and "rollout.steps" in result.reason
    assert target.calls == []


def test_on_state_sees_every_change_in_order(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    seen: list[tuple[dict[str, int] | None, dict[str, int]]] = []
    desired = state(dep("blue", 4, store), traffic={"blue": 100})
    result = roll_out(target, desired, live, CANARY, store, echo=lambda _: None, sleep=clients.sleep,
                      clock=clients.clock,
                      on_state=lambda before, after: seen.append((before.traffic if before else None, after.traffic)))
    assert result.status == "succeeded"
    assert [after for _, after in seen] == traffics(target)
    assert all(seen[i][1] == seen[i + 1][0] for i in range(len(seen) - 1))


def test_an_all_at_once_apply_that_fails_restores_the_previous_state(world: World) -> None:
    target, store, clients = world
    live = start(target, store, dep("blue", 3, store), traffic={"blue": 100})
    missing = DeploymentState("blue", "wine", 4, "0" * 64)
    result, events, _ = go(target, store, clients, state(missing, traffic={"blue": 100}), {"strategy": "all-at-once"})
    assert result.status == "rolled_back" and "is not in the store" in result.reason
    assert target.live["wine"].digest() == live.digest()
    assert events[-1][0] == "deployment.rolled_back"
    target.live.clear()
    result, _, _ = go(target, store, clients, state(missing, traffic={"blue": 100}), {})
    assert result.status == "failed" and "applying wine failed" in result.reason
