"""Prometheus metrics of a scoring server, and reading them back (what rollout analysis judges).

Metric names are a contract:
    mlops_requests_total{endpoint,deployment,version,code}            counter
    mlops_request_duration_seconds{endpoint,deployment,version}       histogram (fine below 10 ms)
    mlops_batch_size{endpoint,deployment}                             histogram (rows per onnxruntime call)
    mlops_capture_rows_total{endpoint,deployment}                     counter (rows written to capture files)
    mlops_capture_dropped_rows_total{endpoint,deployment}             counter (sampled rows lost: the disk bound
                                                                      deleted their file, or the writer fell behind)
Each worker counts in memory and writes its counts to a file of the server's metrics directory
every 0.1 s, so ``/metrics`` of any worker shows the sums over all workers (at most 0.1 s old).
Requests answered before a deployment is chosen (401, 404) have ``deployment=""``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import urllib.request
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
    """The metrics of one worker: plain counters in memory (a request costs a few dict updates),
    written every ``FLUSH_S`` to ``<dir>/<pid>.json``; ``/metrics`` sums the files of all workers,
    those of workers gone included (counters never go down)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.path = directory / f"{os.getpid()}.json" if directory else None
        self.requests: dict[tuple[str, str, str, int], int] = {}
        self.durations: dict[tuple[str, str, str], list[float]] = {}  # bucket counts..., sum
        self.batches: dict[tuple[str, str], list[float]] = {}
        self.captures: dict[tuple[str, str], list[int]] = {}  # rows written, rows dropped
        self.dirty = False

    def count(self, endpoint: str, deployment: str, version: str, code: int, seconds: float | None) -> None:
        """Record one answered request (``seconds`` None: not timed, e.g. refused before routing)."""
        key = (endpoint, deployment, version, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.dirty = True
        if seconds is not None:
            dkey = (endpoint, deployment, version)
            h = self.durations.get(dkey)
            if h is None:
                h = self.durations[dkey] = [0.0] * (len(DURATION_BUCKETS) + 2)
            h[bisect_left(DURATION_BUCKETS, seconds)] += 1
            h[-1] += seconds

    def capture(self, endpoint: str, deployment: str, written: int, dropped: int) -> None:
        """Count rows a deployment's capture wrote and dropped."""
        c = self.captures.setdefault((endpoint, deployment), [0, 0])
        c[0] += written
        c[1] += dropped
        self.dirty = True

    def batch_observer(self, endpoint: str, deployment: str) -> Callable[[int], None]:
        """``observe(rows)`` of one deployment's batch size histogram."""
        h = self.batches.setdefault((endpoint, deployment), [0.0] * (len(BATCH_BUCKETS) + 2))

        def observe(rows: int) -> None:
            h[bisect_left(BATCH_BUCKETS, rows)] += 1
            h[-1] += rows
        return observe

    def snapshot(self) -> dict[str, Any]:
        """A copy of the counts (histograms copied too: they keep changing on the event loop)."""
        return {"requests": [[*k, n] for k, n in self.requests.items()],
                "durations": [[*k, list(h)] for k, h in self.durations.items()],
                "batches": [[*k, list(h)] for k, h in self.batches.items()],
                "captures": [[*k, *c] for k, c in self.captures.items()]}

    def flush(self) -> None:
        """Write this worker's counts for the other workers' /metrics."""
        self.dirty = False
        self.write(self.snapshot())

    def write(self, snapshot: dict[str, Any]) -> None:
        """Write ``snapshot`` (taken on the event loop; the write may run in a thread)."""
        if self.path is None:
            return
        from mlops.paths import write_atomic

        write_atomic(self.path, json.dumps(snapshot).encode())

    def exposition(self) -> bytes:
        """The text format of every worker's metrics, summed."""
        snapshots = [self.snapshot()]
        if self.directory is not None:
            self.flush()
            snapshots = []
            for f in sorted(self.directory.glob("*.json")):
                with contextlib.suppress(OSError, ValueError):
                    snapshots.append(json.loads(f.read_bytes()))
        return render(snapshots)


def render(snapshots: list[dict[str, Any]]) -> bytes:
    """Prometheus text exposition of the sum of worker ``snapshots``."""
    requests: dict[tuple[Any, ...], float] = {}
    durations: dict[tuple[Any, ...], list[float]] = {}
    batches: dict[tuple[Any, ...], list[float]] = {}
    captures: dict[tuple[Any, ...], list[int]] = {}
    for snap in snapshots:
        for endpoint, dep, written, dropped in snap.get("captures", []):
            c = captures.setdefault((endpoint, dep), [0, 0])
            c[0] += written
            c[1] += dropped
        for *key, n in snap.get("requests", []):
            requests[tuple(key)] = requests.get(tuple(key), 0) + n
        for target, name in ((durations, "durations"), (batches, "batches")):
            for *key, h in snap.get(name, []):
                acc = target.setdefault(tuple(key), [0.0] * len(h))
                for i, v in enumerate(h):
                    acc[i] += v
    out = ["# HELP mlops_requests_total Requests answered.", "# TYPE mlops_requests_total counter"]
    for (endpoint, dep, version, code), n in sorted(requests.items()):
        out.append(f"mlops_requests_total{_labels(code=code, deployment=dep, endpoint=endpoint, version=version)} {n:g}")
    out += ["# HELP mlops_request_duration_seconds Time from a complete request to its answer.",
            "# TYPE mlops_request_duration_seconds histogram"]
    for (endpoint, dep, version), h in sorted(durations.items()):
        out += _histogram("mlops_request_duration_seconds", DURATION_BUCKETS, h,
                          {"deployment": dep, "endpoint": endpoint, "version": version})
    out += ["# HELP mlops_batch_size Rows per onnxruntime call.", "# TYPE mlops_batch_size histogram"]
    for (endpoint, dep), h in sorted(batches.items()):
        out += _histogram("mlops_batch_size", BATCH_BUCKETS, h, {"deployment": dep, "endpoint": endpoint})
    if captures:
        for i, (name, help_text) in enumerate((("mlops_capture_rows_total", "Captured rows written to files."),
                                              ("mlops_capture_dropped_rows_total",
                                               "Captured rows lost to the disk bound or an overloaded writer."))):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for (endpoint, dep), c in sorted(captures.items()):
                out.append(f"{name}{_labels(deployment=dep, endpoint=endpoint)} {c[i]}")
    return ("\n".join(out) + "\n").encode()


def _histogram(name: str, bounds: tuple[float, ...], h: list[float], labels: dict[str, Any]) -> list[str]:
    lines = []
    total = 0.0
    for le, n in zip((*bounds, math.inf), h[:-1], strict=True):
        total += n
        lines.append(f"{name}_bucket{_labels(**labels, le='+Inf' if le == math.inf else f'{le:g}')} {total:g}")
    lines.append(f"{name}_sum{_labels(**labels)} {h[-1]!r}")
    lines.append(f"{name}_count{_labels(**labels)} {total:g}")
    return lines


def _labels(**labels: Any) -> str:
    def esc(v: Any) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"
