"""Serving metrics of a kubernetes endpoint, read from the Prometheus that scrapes its pods.

The pods expose the scoring server's ``/metrics`` (and carry ``prometheus.io/scrape`` annotations); this module asks
Prometheus's HTTP API (``/api/v1/query``) for the same three series the local target reads from a server, summed
over the pods of each deployment: ``mlops_requests_total`` (all, and code 5xx) and the buckets of
``mlops_request_duration_seconds``. Counters of a pod that restarted start again from zero: a rollout step that
spans a restart sees fewer requests than were served, never more.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

from mlops.deploy.protocol import DeploymentMetrics
from mlops.errors import DeployError


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _query(base: str, promql: str, timeout: float) -> list[dict[str, Any]]:
    from mlops import httpio

    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        reply = httpio.exchange("GET", url, timeout=timeout)
    except (httpio.TransportError, ValueError) as e:
        raise DeployError(f"prometheus {httpio.display_url(base)}: {e}") from None
    try:
        doc = json.loads(reply.body)
        if reply.status != 200 or doc.get("status") != "success":
            raise ValueError(doc.get("error") or f"HTTP {reply.status}")
        result = doc["data"]["result"]
        if not isinstance(result, list):
            raise ValueError("no result list")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DeployError(f"prometheus {httpio.display_url(base)}: query {promql!r} failed: {e}") from None
    return [r for r in result if isinstance(r, dict)]


def _samples(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for r in result:
        metric, value = r.get("metric") or {}, r.get("value")
        try:
            key = tuple(str(metric[name]) for name in labels)
            number = float(value[1])  # type: ignore[index]
        except (KeyError, TypeError, ValueError, IndexError):
            continue
        if not math.isnan(number):
            out[key] = number
    return out


def read_prometheus(base: str, endpoint: str, timeout: float = 10.0) -> dict[str, DeploymentMetrics]:
    """Per deployment: requests, errors (code >= 500) and the cumulative latency buckets, summed over pods."""
    sel = f'endpoint="{_label(endpoint)}"'
    total = _samples(_query(base, f"sum by (deployment) (mlops_requests_total{{{sel}}})", timeout), "deployment")
    errors = _samples(_query(base, f'sum by (deployment) (mlops_requests_total{{{sel},code=~"5.."}})', timeout),
                      "deployment")
    buckets = _samples(_query(base, f"sum by (deployment, le) (mlops_request_duration_seconds_bucket{{{sel}}})",
                              timeout), "deployment", "le")
    out: dict[str, DeploymentMetrics] = {}
    for (dep,), n in sorted(total.items()):
        mine = sorted(((float(le), int(c)) for (d, le), c in buckets.items() if d == dep), key=lambda b: b[0])
        out[dep] = DeploymentMetrics(int(n), int(errors.get((dep,), 0)), tuple(mine))
    return out
