"""Rollout analysis: deltas of cumulative counters, p99 from histogram buckets, and the verdict rule."""

from __future__ import annotations

import pytest

from mlops.deploy.analysis import (
    EXTENSION,
    Criteria,
    Measurement,
    difference,
    judge,
    measure,
    observe,
    quantile,
)
from mlops.deploy.protocol import DeploymentMetrics
from mlops.errors import DeployError, MlopsError

INF = float("inf")


def hist(*counts: int, bounds: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, INF)) -> tuple[tuple[float, int], ...]:
    """Cumulative buckets from per-bucket counts."""
    total, out = 0, []
    for le, n in zip(bounds, counts, strict=True):
        total += n
        out.append((le, total))
    return tuple(out)


def test_quantile_interpolates_in_its_bucket_as_prometheus() -> None:
    # 100 observations: 50 under 1 ms, 40 in (1, 5] ms, 10 in (5, 10] ms.
    buckets = hist(50, 40, 10, 0, 0)
    assert quantile(0.5, buckets) == pytest.approx(0.001)
    assert quantile(0.9, buckets) == pytest.approx(0.005)
    # rank 99 lies 9/10 into the (5, 10] ms bucket
    assert quantile(0.99, buckets) == pytest.approx(0.005 + 0.005 * 9 / 10)
    # everything in the first bucket: interpolated from 0
    assert quantile(0.99, hist(10, 0, 0, 0, 0)) == pytest.approx(0.001 * 0.99)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound_and_empty_is_none() -> None:
    assert quantile(0.99, hist(1, 0, 0, 0, 99)) == pytest.approx(0.05)
    assert quantile(0.99, hist(0, 0, 0, 0, 0)) is None
    assert quantile(0.99, ()) is None


def test_difference_subtracts_and_takes_a_reset_as_a_fresh_start() -> None:
    before = DeploymentMetrics(100, 5, hist(50, 50, 0, 0, 0))
    now = DeploymentMetrics(130, 6, hist(60, 60, 10, 0, 0))
    grown = difference(before, now)
    assert (grown.requests, grown.errors) == (30, 1)
    assert grown.buckets == hist(10, 10, 10, 0, 0)
    restarted = DeploymentMetrics(7, 0, hist(7, 0, 0, 0, 0))
    assert difference(before, restarted) == restarted
    assert difference(None, now) == now
    assert difference(before, None) == DeploymentMetrics(0, 0, ())


def test_measure_gives_error_rate_and_p99_in_ms() -> None:
    m = measure("c", DeploymentMetrics(10, 0, hist(10, 0, 0, 0, 0)), DeploymentMetrics(110, 4, hist(10, 0, 100, 0, 0)))
    assert (m.requests, m.errors, m.error_rate) == (100, 4, 0.04)
    assert m.p99_ms == pytest.approx(5 + 5 * 99 / 100)
    assert measure("c", None, None).error_rate is None


CRIT = Criteria(max_error_rate=0.01, max_p99_ms=50, min_requests=100)


def test_judge_fails_at_once_on_error_rate_or_p99_with_enough_requests() -> None:
    bad = Measurement("c", 100, 2, 3.0)
    assert judge([bad], CRIT, elapsed=0.5, interval=10).outcome == "fail"
    assert "error rate 2.00% above 1.00%" in judge([bad], CRIT, 0.5, 10).reason
    slow = Measurement("c", 100, 0, 80.0)
    verdict = judge([slow], CRIT, 0.5, 10)
    assert verdict.outcome == "fail" and "p99 80.0 ms above 50 ms" in verdict.reason


def test_judge_gives_no_verdict_on_too_few_requests_then_extends_then_is_inconclusive() -> None:
    few = Measurement("c", 99, 99, 999.0)  # all errors, but under min_requests: no verdict
    assert judge([few], CRIT, 5, 10).outcome == "wait"
    assert judge([few], CRIT, 10, 10).outcome == "wait"  # extended
    assert judge([few], CRIT, 10 * EXTENSION - 0.1, 10).outcome == "wait"
    verdict = judge([few], CRIT, 10 * EXTENSION, 10)
    assert verdict.outcome == "inconclusive" and "c: 99 of 100 requests" in verdict.reason
    # when inconclusive goes on anyway, waiting longer would only delay it
    going_on = Criteria(0.01, 50, 100, "promote")
    assert judge([few], going_on, 9, 10).outcome == "wait"
    assert judge([few], going_on, 10, 10).outcome == "inconclusive"


def test_judge_passes_at_the_end_of_the_window_with_enough_good_requests() -> None:
    good = Measurement("c", 100, 1, 49.0)
    assert judge([good], CRIT, 9.9, 10).outcome == "wait"
    assert judge([good], CRIT, 10, 10).outcome == "pass"
    assert judge([], None, 10, 10).outcome == "pass"  # no analysis: the interval is waited, nothing judged
    assert judge([good], None, 9, 10).outcome == "wait"


def test_criteria_from_spec_checks_every_field() -> None:
    assert Criteria.from_spec(None) is None
    c = Criteria.from_spec({"max_error_rate": 0.05, "max_p99_ms": 20, "min_requests": 3, "inconclusive": "promote"})
    assert c == Criteria(0.05, 20.0, 3, "promote")
    assert Criteria.from_spec({}) == Criteria()
    for bad, field in [({"max_error_rate": 2}, "max_error_rate"), ({"max_p99_ms": 0}, "max_p99_ms"),
                       ({"min_requests": -1}, "min_requests"), ({"min_requests": True}, "min_requests"),
                       ({"inconclusive": "pause"}, "inconclusive"), ({"maxerror": 1}, "maxerror"),
                       ({"max_error_rate": float("nan")}, "max_error_rate")]:
        with pytest.raises(DeployError, match=field):
            Criteria.from_spec(bad)


class Scripted:
    """A clock, and metrics that grow by a script on each sleep."""

    def __init__(self, per_second: dict[str, tuple[int, int, float]]) -> None:
        self.t = 0.0
        self.per_second = per_second  # deployment -> (requests/s, errors/s, latency s)
        self.counts: dict[str, list[float]] = {name: [0.0, 0.0] for name in per_second}
        self.failures = 0
        self.reads = 0

    def clock(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt
        for name, (rps, eps, _) in self.per_second.items():
            self.counts[name][0] += rps * dt
            self.counts[name][1] += eps * dt

    def read(self) -> dict[str, DeploymentMetrics]:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise MlopsError("connection refused")
        out = {}
        for name, (_, _, latency) in self.per_second.items():
            n, e = (int(x) for x in self.counts[name])
            out[name] = DeploymentMetrics(n, e, ((latency, n), (INF, n)))
        return out


def test_observe_fails_fast_on_a_broken_canary_without_waiting_the_interval() -> None:
    s = Scripted({"c": (100, 50, 0.001)})
    obs = observe(s.read, ["c"], CRIT, 60, clock=s.clock, sleep=s.sleep)
    assert obs.verdict.outcome == "fail"
    assert obs.elapsed < 60
    assert obs.measurements[0].requests >= 100


def test_observe_passes_a_healthy_canary_after_the_interval() -> None:
    s = Scripted({"c": (100, 0, 0.001)})
    obs = observe(s.read, ["c"], CRIT, 10, clock=s.clock, sleep=s.sleep)
    assert obs.verdict.outcome == "pass"
    assert 10 <= obs.elapsed < 11
    assert obs.to_dict()["deployments"]["c"]["errors"] == 0


def test_observe_is_bounded_when_no_request_comes() -> None:
    s = Scripted({"c": (0, 0, 0.001)})
    obs = observe(s.read, ["c"], CRIT, 10, clock=s.clock, sleep=s.sleep)
    assert obs.verdict.outcome == "inconclusive"
    assert 10 * EXTENSION <= obs.elapsed < 10 * EXTENSION + 2


def test_observe_tolerates_a_missed_read_but_fails_on_a_dead_server() -> None:
    s = Scripted({"c": (100, 0, 0.001)})
    s.failures = 2
    assert observe(s.read, ["c"], CRIT, 10, clock=s.clock, sleep=s.sleep).verdict.outcome == "pass"
    s.failures = 1000
    obs = observe(s.read, ["c"], CRIT, 10, clock=s.clock, sleep=s.sleep)
    assert obs.verdict.outcome == "fail" and "metrics unreadable 3 times in a row: connection refused" in obs.verdict.reason


def test_observe_measures_from_the_first_read_not_from_zero() -> None:
    s = Scripted({"c": (100, 0, 0.001)})
    s.counts["c"] = [10_000.0, 10_000.0]  # a leftover slot's history: all errors, before this window
    obs = observe(s.read, ["c"], CRIT, 10, clock=s.clock, sleep=s.sleep)
    assert obs.verdict.outcome == "pass"
    assert obs.measurements[0].errors == 0


def test_the_endpoint_schema_takes_the_inconclusive_rule_and_only_its_two_values() -> None:
    from mlops.spec.schema import _validator

    endpoint = {"kind": "Endpoint", "name": "wine", "type": "online",
                "deployments": [{"name": "blue", "model": "wine-classifier@prod"}],
                "rollout": {"strategy": "canary", "analysis": {"min_requests": 10, "inconclusive": "promote"}}}
    assert list(_validator("Endpoint").iter_errors(endpoint)) == []
    endpoint["rollout"]["analysis"]["inconclusive"] = "pause"  # type: ignore[index]
    assert [e.validator for e in _validator("Endpoint").iter_errors(endpoint)] == ["enum"]
