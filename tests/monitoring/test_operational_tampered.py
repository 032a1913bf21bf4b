"""The last run's metrics reading is a store record (untrusted): a tampered one counts as none, whatever numbers
or nesting it holds, and never makes `mlops monitor` fail with an internal error."""

from __future__ import annotations

import math

import pytest

from mlops.monitoring import operational
from mlops.monitoring.settings import Settings
from mlops.serving.metrics import DeploymentMetrics
from mlops.store.memory import MemoryStore

RULES = Settings.from_spec({"alerts": [
    {"name": "errors", "metric": "error_rate", "op": ">", "threshold": 0.01, "min_requests": 1},
    {"metric": "p99_ms", "op": ">", "threshold": 50}]}, "endpoints/e.yaml").alerts
NOW = {"blue": DeploymentMetrics(10, 1, ((0.001, 5), (0.1, 10), (math.inf, 10)))}
HUGE = "1" + "0" * 400

TAMPERED = {
    "negative huge requests": '{"deployments": {"blue": {"requests": -HUGE, "errors": 0, "buckets": []}}}'.replace("HUGE", HUGE),
    "negative huge bucket": '{"deployments": {"blue": {"requests": 0, "errors": 0, "buckets": [[0.1, -HUGE]]}}}'.replace("HUGE", HUGE),
    "infinite count": '{"deployments": {"blue": {"requests": 0, "errors": 0, "buckets": [["+Inf", Infinity]]}}}',
    "NaN bound": '{"deployments": {"blue": {"requests": 0, "errors": 0, "buckets": [["NaN", 1]]}}}',
    "deeply nested": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("raw", TAMPERED.values(), ids=list(TAMPERED))
def test_a_tampered_reading_counts_as_none(raw: str) -> None:
    store = MemoryStore()
    store.write_record(operational.snapshot_key("wine"), raw.encode())
    before = operational.load_snapshot(store, "wine")
    per, fired = operational.judge(RULES, before, NOW)
    assert before == {}
    assert per["blue"]["requests"] == 10 and "errors" in [a["alert"] for a in fired]
