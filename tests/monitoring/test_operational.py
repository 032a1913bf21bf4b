"""Operational alert rules: judged on the metrics since the last monitor run, with counter resets."""

from __future__ import annotations

import math

import pytest

from mlops.errors import MonitorError
from mlops.monitoring import operational
from mlops.monitoring.settings import Settings
from mlops.serving.metrics import DeploymentMetrics
from mlops.store.memory import MemoryStore


def metrics(requests: int, errors: int, fast: int) -> DeploymentMetrics:
    """``fast`` requests under 1 ms, the rest under 100 ms."""
    return DeploymentMetrics(requests, errors, ((0.001, fast), (0.1, requests), (math.inf, requests)))


RULES = Settings.from_spec({"alerts": [
    {"name": "errors", "metric": "error_rate", "op": ">", "threshold": 0.01, "min_requests": 10},
    {"metric": "p99_ms", "op": ">", "threshold": 50, "deployment": "blue"},
]}, "endpoints/e.yaml").alerts


def test_rules_judge_the_growth_since_the_last_reading() -> None:
    before = {"blue": metrics(100, 0, 100), "green": metrics(5, 0, 5)}
    now = {"blue": metrics(200, 5, 150), "green": metrics(9, 3, 9)}
    per, fired = operational.judge(RULES, before, now)
    assert per["blue"]["requests"] == 100 and per["blue"]["error_rate"] == pytest.approx(0.05)
    assert per["blue"]["p50_ms"] == pytest.approx(1.0)  # the 50th of 100 is the last fast one
    assert per["blue"]["p99_ms"] > 50
    # green: 4 requests is under the errors rule's min_requests; the p99 rule is blue's only
    assert [(f["alert"], f["deployment"]) for f in fired] == [("errors", "blue"), ("p99_ms > 50", "blue")]


def test_a_counter_that_went_down_is_a_restart_and_the_new_reading_is_the_whole_growth() -> None:
    per, fired = operational.judge(RULES, {"blue": metrics(1000, 0, 1000)}, {"blue": metrics(20, 0, 20)})
    assert per["blue"]["requests"] == 20 and fired == []


def test_the_reading_survives_in_the_store_and_a_tampered_one_counts_as_none() -> None:
    store = MemoryStore()
    now = {"blue": metrics(7, 1, 3)}
    operational.save_snapshot(store, "e", now, "2026-11-29T00:00:00Z")
    assert operational.load_snapshot(store, "e") == now
    store.write_record(operational.snapshot_key("e"), b'{"deployments": {"blue": {"requests": "x"}}}')
    assert operational.load_snapshot(store, "e") == {}
    store.write_record(operational.snapshot_key("e"), b"\xff")
    assert operational.load_snapshot(store, "e") == {}


@pytest.mark.parametrize(("block", "message"), [
    ({"action": "page"}, "$.monitoring.action: expected one of none, issue, retrain"),
    ({"min_rows": 0}, "$.monitoring.min_rows: expected a whole number >= 1"),
    ({"alerts": [{"metric": "cpu", "op": ">", "threshold": 1}]}, "$.monitoring.alerts[0].metric"),
    ({"alerts": [{"metric": "requests", "op": "=", "threshold": 1}]}, "$.monitoring.alerts[0].op"),
    ({"alerts": [{"metric": "requests", "op": ">"}]}, "$.monitoring.alerts[0].threshold: missing"),
    ({"window_hours": float("nan")}, "window_hours: expected a number"),
])
def test_bad_settings_name_the_field(block: dict[str, object], message: str) -> None:
    with pytest.raises(MonitorError) as e:
        Settings.from_spec(block, "endpoints/e.yaml")
    assert str(e.value).startswith("endpoints/e.yaml") and message in str(e.value)
