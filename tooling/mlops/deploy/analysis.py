"""Judging a rollout step on live metrics, as Argo Rollouts' analysis does, without Prometheus.

A step's window starts when its traffic is set. The target's ``metrics`` are cumulative counters per
deployment (``mlops_requests_total`` and the ``mlops_request_duration_seconds`` histogram, summed
over the server's workers); a *measurement* is their difference since the window began: requests,
errors (code >= 500), error rate, and p99 latency interpolated from the histogram buckets the way
Prometheus' ``histogram_quantile`` does. A counter that went down means the server restarted (a
counter reset): the new value is then the whole difference, as Prometheus' ``rate`` takes it.

The rule, for every deployment under analysis (the canary or preview slots):

- no verdict on fewer than ``min_requests`` requests (default 0);
- with enough requests, an error rate above ``max_error_rate`` or a p99 above ``max_p99_ms`` fails the
  step at once (it does not wait for the end of the window: a broken version takes traffic for as
  short a time as possible);
- at the end of the window (``interval_seconds``), enough requests and no breach pass;
- too few requests at the end of the window is *inconclusive*. Argo Rollouts pauses on inconclusive
  and waits for a person; a reconcile in CI must not hang, so it resolves by the analysis'
  ``inconclusive`` setting: ``rollback`` (the default, as Flagger: a version nobody measured takes no
  more traffic), after extending the window up to ``EXTENSION`` times the interval in all to give it
  its requests, or ``promote`` (for endpoints that see no traffic while they roll out): go on at the
  end of the interval;
- the metrics cannot be read ``MAX_MISSES`` times in a row (the server died): the step fails.

Without an ``analysis`` mapping a step only waits its interval: nothing is judged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops.deploy.protocol import DeploymentMetrics
from mlops.errors import DeployError, MlopsError

EXTENSION = 3  # a window with too few requests waits up to this many intervals in all
MAX_MISSES = 3  # consecutive unreadable metrics that fail a step
INCONCLUSIVE = ("rollback", "promote")


@dataclass(frozen=True)
class Criteria:
    """The ``analysis`` of an endpoint's ``rollout``: the limits a step must stay within."""

    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    min_requests: int = 0
    inconclusive: str = "rollback"

    @classmethod
    def from_spec(cls, analysis: Any) -> Criteria | None:
        """The criteria of a spec's ``analysis`` mapping (None when there is none); DeployError naming
        the field when a value is not what the schema allows (a hand-made plan or state)."""
        if analysis is None:
            return None
        if not isinstance(analysis, Mapping):
            raise DeployError(f"rollout.analysis: expected a mapping, got {type(analysis).__name__}")
        unknown = sorted(set(analysis) - {"max_error_rate", "max_p99_ms", "min_requests", "inconclusive"})
        if unknown:
            raise DeployError(f"rollout.analysis: unknown field {unknown[0]!r}")
        rate = _number(analysis, "max_error_rate", 0.0, 1.0)
        p99 = _number(analysis, "max_p99_ms", 0.0, math.inf)
        if p99 is not None and p99 <= 0:
            raise DeployError(f"rollout.analysis.max_p99_ms: must be above 0, got {p99}")
        least = analysis.get("min_requests", 0)
        if isinstance(least, bool) or not isinstance(least, int) or least < 0:
            raise DeployError(f"rollout.analysis.min_requests: expected a whole number >= 0, got {least!r}")
        rule = analysis.get("inconclusive", "rollback")
        if rule not in INCONCLUSIVE:
            raise DeployError(f"rollout.analysis.inconclusive: expected rollback or promote, got {rule!r}")
        return cls(rate, p99, least, rule)

    def to_dict(self) -> dict[str, Any]:
        return {"max_error_rate": self.max_error_rate, "max_p99_ms": self.max_p99_ms,
                "min_requests": self.min_requests, "inconclusive": self.inconclusive}


def _number(doc: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
            or math.isnan(value):
        raise DeployError(f"rollout.analysis.{key}: expected a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Measurement:
    """What one deployment answered during a window."""

    deployment: str
    requests: int
    errors: int
    p99_ms: float | None  # None: no latency observed

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.error_rate
        return {"requests": self.requests, "errors": self.errors,
                "error_rate": None if rate is None else round(rate, 6),
                "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3)}

    def __str__(self) -> str:
        rate = self.error_rate
        text = f"{self.deployment}: {self.requests} requests, {self.errors} errors"
        if rate is not None:
            text += f" ({rate:.2%})"
        if self.p99_ms is not None:
            text += f", p99 {self.p99_ms:.1f} ms"
        return text


def difference(before: DeploymentMetrics | None, now: DeploymentMetrics | None) -> DeploymentMetrics:
    """The counters' growth from ``before`` to ``now``; a counter reset (any count went down) makes
    ``now`` the whole growth."""
    if now is None:
        return DeploymentMetrics(0, 0, ())
    if before is None:
        return now
    old = dict(before.buckets)
    if now.requests < before.requests or now.errors < before.errors \
            or any(count < old.get(le, 0) for le, count in now.buckets):
        return now
    return DeploymentMetrics(now.requests - before.requests, now.errors - before.errors,
                             tuple((le, count - old.get(le, 0)) for le, count in now.buckets))


def quantile(q: float, buckets: Sequence[tuple[float, int]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bounds in seconds), interpolated linearly in
    its bucket as Prometheus' ``histogram_quantile``; in the +Inf bucket, the highest finite bound.
    None when the histogram is empty."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def measure(name: str, before: DeploymentMetrics | None, now: DeploymentMetrics | None) -> Measurement:
    """One deployment's measurement over a window."""
    grown = difference(before, now)
    p99 = quantile(0.99, grown.buckets)
    return Measurement(name, grown.requests, grown.errors, None if p99 is None else p99 * 1000.0)


@dataclass(frozen=True)
class Verdict:
    """``pass``, ``fail``, ``inconclusive`` (final) or ``wait`` (the window goes on), and why."""

    outcome: str
    reason: str

    @property
    def final(self) -> bool:
        return self.outcome != "wait"


def judge(measurements: Sequence[Measurement], criteria: Criteria | None, elapsed: float,
          interval: float) -> Verdict:
    """The verdict on a window ``elapsed`` seconds old (the rule in the module docstring)."""
    if criteria is None:
        return Verdict("pass", "no analysis: waited the interval") if elapsed >= interval \
            else Verdict("wait", "")
    short: list[Measurement] = []
    for m in measurements:
        if m.requests < criteria.min_requests:
            short.append(m)
            continue
        rate = m.error_rate
        if criteria.max_error_rate is not None and rate is not None and rate > criteria.max_error_rate:
            return Verdict("fail", f"{m}: error rate {rate:.2%} above {criteria.max_error_rate:.2%}")
        if criteria.max_p99_ms is not None and m.p99_ms is not None and m.p99_ms > criteria.max_p99_ms:
            return Verdict("fail", f"{m}: p99 {m.p99_ms:.1f} ms above {criteria.max_p99_ms:g} ms")
    if elapsed < interval:
        return Verdict("wait", "")
    if not short:
        return Verdict("pass", "; ".join(str(m) for m in measurements) or "nothing to measure")
    if criteria.inconclusive == "rollback" and elapsed < interval * EXTENSION:
        return Verdict("wait", "")
    few = "; ".join(f"{m.deployment}: {m.requests} of {criteria.min_requests} requests" for m in short)
    return Verdict("inconclusive", f"too few requests after {elapsed:.1f} s ({few})")


@dataclass(frozen=True)
class Observation:
    """One step's window: its verdict, the last measurements and how long it took."""

    verdict: Verdict
    measurements: tuple[Measurement, ...]
    elapsed: float

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.outcome, "reason": self.verdict.reason,
                "elapsed_s": round(self.elapsed, 3),
                "deployments": {m.deployment: m.to_dict() for m in self.measurements}}


def poll_period(interval: float) -> float:
    """How often a window reads the metrics: ten times per interval, within 0.1 s and 5 s."""
    return min(max(interval / 10.0, 0.1), 5.0)


def observe(read: Callable[[], Mapping[str, DeploymentMetrics]], names: Sequence[str], criteria: Criteria | None,
            interval: float, *, clock: Callable[[], float], sleep: Callable[[float], None]) -> Observation:
    """Watch the deployments ``names`` through ``read`` (the target's metrics) for one window and judge
    it. Returns as soon as the verdict is final; it is always final by ``EXTENSION`` intervals (or by
    ``MAX_MISSES`` failed reads after that)."""
    start = clock()
    before: Mapping[str, DeploymentMetrics] | None = None
    measurements: tuple[Measurement, ...] = tuple(Measurement(n, 0, 0, None) for n in names)
    misses = 0
    period = poll_period(interval)
    while True:
        try:
            now = read()
        except MlopsError as e:
            misses += 1
            if misses >= MAX_MISSES:
                return Observation(Verdict("fail", f"metrics unreadable {misses} times in a row: {e}"),
                                   measurements, clock() - start)
        else:
            misses = 0
            if before is None:
                before = now  # the window's baseline: the first successful read
            measurements = tuple(measure(n, before.get(n), now.get(n)) for n in names)
            verdict = judge(measurements, criteria, clock() - start, interval)
            if verdict.final:
                return Observation(verdict, measurements, clock() - start)
        sleep(period)
