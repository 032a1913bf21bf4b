"""An endpoint's ``monitoring`` block as typed settings, with the documented defaults.

The schema has already checked the spec; these checks hold for a plan or a spec read without it
(tests, hand-made files), and name the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.errors import MonitorError

ACTIONS = ("none", "issue", "retrain")
METRICS = ("error_rate", "p50_ms", "p95_ms", "p99_ms", "requests")
OPS = (">", ">=", "<", "<=")
DEFAULT_WINDOW_HOURS = 24.0
DEFAULT_MIN_ROWS = 100


@dataclass(frozen=True)
class AlertRule:
    """An operational alert: ``metric op threshold`` over the requests since the last monitor run."""

    metric: str
    op: str
    threshold: float
    name: str = ""
    deployment: str | None = None
    min_requests: int = 1

    @property
    def label(self) -> str:
        return self.name or f"{self.metric} {self.op} {self.threshold:g}"

    def breached(self, value: float) -> bool:
        return {">": value > self.threshold, ">=": value >= self.threshold,
                "<": value < self.threshold, "<=": value <= self.threshold}[self.op]


@dataclass(frozen=True)
class Settings:
    """Everything ``mlops monitor`` reads from the endpoint spec."""

    window_hours: float = DEFAULT_WINDOW_HOURS
    min_rows: int = DEFAULT_MIN_ROWS
    drift: dict[str, Any] = field(default_factory=dict)  # the spec's drift block, for drift.DriftOptions
    quality: dict[str, Any] = field(default_factory=dict)
    alerts: tuple[AlertRule, ...] = ()
    action: str = "none"

    @property
    def prediction(self) -> bool:
        return bool(self.drift.get("prediction", True))

    @classmethod
    def from_spec(cls, block: Any, where: str) -> Settings:
        if block is None:
            return cls()
        if not isinstance(block, Mapping):
            raise MonitorError(f"{where}: $.monitoring: expected a mapping")
        window = _number(block, "window_hours", where, DEFAULT_WINDOW_HOURS)
        if window <= 0:
            raise MonitorError(f"{where}: $.monitoring.window_hours: must be above 0")
        rows = block.get("min_rows", DEFAULT_MIN_ROWS)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise MonitorError(f"{where}: $.monitoring.min_rows: expected a whole number >= 1, got {rows!r}")
        action = block.get("action", "none")
        if action not in ACTIONS:
            raise MonitorError(f"{where}: $.monitoring.action: expected one of {', '.join(ACTIONS)}, got {action!r}")
        drift, quality = block.get("drift") or {}, block.get("quality") or {}
        for key, value in (("drift", drift), ("quality", quality)):
            if not isinstance(value, Mapping):
                raise MonitorError(f"{where}: $.monitoring.{key}: expected a mapping")
        rules = block.get("alerts") or []
        if not isinstance(rules, list):
            raise MonitorError(f"{where}: $.monitoring.alerts: expected a list")
        alerts = tuple(_rule(r, f"{where}: $.monitoring.alerts[{i}]") for i, r in enumerate(rules))
        return cls(window, rows, dict(drift), dict(quality), alerts, str(action))


def _rule(doc: Any, where: str) -> AlertRule:
    if not isinstance(doc, Mapping):
        raise MonitorError(f"{where}: expected a mapping")
    metric, op = doc.get("metric"), doc.get("op")
    if metric not in METRICS:
        raise MonitorError(f"{where}.metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    if op not in OPS:
        raise MonitorError(f"{where}.op: expected one of {' '.join(OPS)}, got {op!r}")
    if "threshold" not in doc:
        raise MonitorError(f"{where}.threshold: missing")
    threshold = _number(doc, "threshold", where, 0.0)
    least = doc.get("min_requests", 1)
    if isinstance(least, bool) or not isinstance(least, int) or least < 0:
        raise MonitorError(f"{where}.min_requests: expected a whole number >= 0, got {least!r}")
    dep = doc.get("deployment")
    if dep is not None and not isinstance(dep, str):
        raise MonitorError(f"{where}.deployment: expected a deployment name")
    return AlertRule(str(metric), str(op), threshold, str(doc.get("name") or ""), dep, least)


def _number(doc: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MonitorError(f"{where}: {key}: expected a number, got {value!r}")
    return float(value)
