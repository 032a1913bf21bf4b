"""Prometheus metrics of a scoring server, and reading them back (what rollout analysis judges).

Metric names are a contract:
    mlops_requests_total{endpoint,deployment,version,code}            counter
    mlops_request_duration_seconds{endpoint,deployment,version}       histogram (fine below 10 ms)
    mlops_batch_size{endpoint,deployment}                             histogram (rows per onnxruntime call)
Worker processes write them in prometheus_client's multiprocess mode (one directory per server,
``PROMETHEUS_MULTIPROC_DIR``), so ``/metrics`` of any worker shows the sums over all workers.
Requests answered before a deployment is chosen (401, 404) have ``deployment=""``.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass
from typing import Any

from mlops.errors import ServingError

DURATION_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass(frozen=True)
class DeploymentMetrics:
    """Counts of one deployment since its server started (summed over workers and versions).
    ``buckets``: the duration histogram, cumulative ``(le, count)`` pairs ending with ``(inf, requests)``."""

    requests: int
    errors: int  # answers with a status >= 500
    buckets: tuple[tuple[float, int], ...]

    def minus(self, before: DeploymentMetrics) -> DeploymentMetrics:
        """What happened between ``before`` and this reading (rollout judges a step by it)."""
        old = dict(before.buckets)
        return DeploymentMetrics(self.requests - before.requests, self.errors - before.errors,
                                 tuple((le, n - old.get(le, 0)) for le, n in self.buckets))

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the duration (seconds; the upper bound of its bucket), None without requests."""
        total = self.buckets[-1][1] if self.buckets else 0
        if total <= 0:
            return None
        for le, n in self.buckets:
            if n >= q * total:
                return le
        return math.inf


def read(url: str, timeout_s: float = 5.0) -> dict[str, DeploymentMetrics]:
    """Fetch and parse a server's ``/metrics`` (``url``: its base URL or the /metrics URL itself)."""
    target = url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as r:  # noqa: S310 - our own server's URL
            text = r.read(64 * 1024 * 1024).decode("utf-8", "replace")
    except OSError as e:
        raise ServingError(f"cannot read metrics from {target}: {e}") from None
    return parse(text)


def parse(text: str) -> dict[str, DeploymentMetrics]:
    """Per-deployment metrics from Prometheus text exposition ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict[str, int] = {}
    errors: dict[str, int] = {}
    buckets: dict[str, dict[float, int]] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as e:
        raise ServingError(f"the metrics are not in Prometheus text format: {e}") from None
    for family in families:
        for s in family.samples:
            dep = s.labels.get("deployment", "")
            if not dep:
                continue
            if s.name == "mlops_requests_total":
                requests[dep] = requests.get(dep, 0) + int(s.value)
                code = s.labels.get("code", "")
                if code.isdigit() and int(code) >= 500:
                    errors[dep] = errors.get(dep, 0) + int(s.value)
            elif s.name == "mlops_request_duration_seconds_bucket":
                le = float(s.labels["le"])
                per = buckets.setdefault(dep, {})
                per[le] = per.get(le, 0) + int(s.value)
    names = set(requests) | set(buckets)
    return {d: DeploymentMetrics(requests.get(d, 0), errors.get(d, 0), tuple(sorted(buckets.get(d, {}).items())))
            for d in sorted(names)}


class Meters:
    """The server's metric objects, created in a worker (after PROMETHEUS_MULTIPROC_DIR is set)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # A registry of our own: the default one would also collect this process's own gauges.
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("mlops_requests", "Requests answered", ["endpoint", "deployment", "version", "code"],
                                registry=self.registry)
        self.duration = Histogram("mlops_request_duration_seconds", "Time from request to answer",
                                  ["endpoint", "deployment", "version"], buckets=DURATION_BUCKETS,
                                  registry=self.registry)
        self.batch = Histogram("mlops_batch_size", "Rows per onnxruntime call", ["endpoint", "deployment"],
                               buckets=BATCH_BUCKETS, registry=self.registry)
        self._codes: dict[tuple[str, str, str, int], Any] = {}
        self._durations: dict[tuple[str, str, str], Any] = {}

    def count(self, endpoint: str, deployment: str, version: str, code: int, seconds: float | None) -> None:
        """Record one answered request (``seconds`` None: not timed, e.g. refused before routing)."""
        key = (endpoint, deployment, version, code)
        child = self._codes.get(key)
        if child is None:
            child = self._codes[key] = self.requests.labels(endpoint, deployment, version, str(code))
        child.inc()
        if seconds is not None:
            dkey = (endpoint, deployment, version)
            hist = self._durations.get(dkey)
            if hist is None:
                hist = self._durations[dkey] = self.duration.labels(endpoint, deployment, version)
            hist.observe(seconds)

    def batch_observer(self, endpoint: str, deployment: str) -> Any:
        """``observe(rows)`` of one deployment's batch size histogram."""
        return self.batch.labels(endpoint, deployment).observe

    def exposition(self) -> bytes:
        """The text format of every worker's metrics, summed."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
