"""Operational metrics of a live endpoint and the alert rules of its spec.

The scoring server's counters are cumulative (``/metrics``: requests, 5xx errors, a latency histogram
per deployment). Each ``mlops monitor`` run keeps the reading it made in the store
(``monitoring/<endpoint>/metrics.json``); the next run judges the *difference*, so a scheduled monitor
judges what happened since its last run, as Prometheus' ``increase`` would (a counter that went down
means the server restarted: the new reading is the whole difference). The first run judges everything
since the server started.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from mlops.deploy.analysis import difference, quantile
from mlops.monitoring.settings import AlertRule
from mlops.serving.metrics import DeploymentMetrics
from mlops.store.protocol import ArtifactStore

MAX_SNAPSHOT_BYTES = 1 << 20


def snapshot_key(endpoint: str) -> str:
    return f"monitoring/{endpoint}/metrics.json"


def figures(grown: DeploymentMetrics) -> dict[str, float | None]:
    """What the rules can name, for one deployment's growth."""
    def ms(q: float) -> float | None:
        v = quantile(q, grown.buckets)
        return None if v is None else round(v * 1000.0, 3)

    return {"requests": float(grown.requests),
            "error_rate": grown.errors / grown.requests if grown.requests else None,
            "p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99)}


def judge(rules: tuple[AlertRule, ...], before: Mapping[str, DeploymentMetrics],
          now: Mapping[str, DeploymentMetrics]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per deployment figures since ``before``, and the alerts that fire."""
    per = {dep: {**figures(difference(before.get(dep), m)),
                 "requests_total": m.requests} for dep, m in sorted(now.items())}
    fired: list[dict[str, Any]] = []
    for rule in rules:
        for dep, fig in per.items():
            if rule.deployment is not None and dep != rule.deployment \
                    and dep.rpartition("-")[0] != rule.deployment:  # blue-canary is blue's slot
                continue
            value = fig.get(rule.metric)
            if value is None or (fig["requests"] or 0) < rule.min_requests:
                continue
            if rule.breached(value):
                fired.append({"alert": rule.label, "deployment": dep, "metric": rule.metric, "op": rule.op,
                              "threshold": rule.threshold, "value": value, "requests": int(fig["requests"] or 0)})
    return per, fired


def load_snapshot(store: ArtifactStore, endpoint: str) -> dict[str, DeploymentMetrics]:
    """The last run's reading; an unreadable or tampered one counts as none (the next judges from start)."""
    raw = store.read_record(snapshot_key(endpoint))
    if raw is None or len(raw) > MAX_SNAPSHOT_BYTES:
        return {}
    try:
        doc = json.loads(raw)
        out = {}
        for dep, m in doc["deployments"].items():
            buckets = tuple((math.inf if le == "+Inf" else _bound(le), _count(n)) for le, n in m["buckets"])
            out[str(dep)] = DeploymentMetrics(_count(m["requests"]), _count(m["errors"]), buckets)
        return out
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}


def _count(value: Any) -> int:
    """A counter as the server reports it: a whole number from 0 to 2**63 (else the reading is tampered)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise ValueError(f"{value!r} is not a counter")
    return value


def _bound(value: Any) -> float:
    """A histogram bucket's finite upper bound (seconds)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a bucket bound")
    return float(value)


def save_snapshot(store: ArtifactStore, endpoint: str, now: Mapping[str, DeploymentMetrics], at: str) -> None:
    doc = {"at": at, "deployments": {
        dep: {"requests": m.requests, "errors": m.errors,
              "buckets": [["+Inf" if math.isinf(le) else le, n] for le, n in m.buckets]}
        for dep, m in now.items()}}
    store.write_record(snapshot_key(endpoint), json.dumps(doc, sort_keys=True).encode())
