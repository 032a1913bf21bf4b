"""``{metric: NAME, op: ">=", threshold: X}``: a metric of the version compared with a threshold.

The value is the one the pipeline wrote at registration (the version's ``metrics``); a metric the
pipeline did not write is taken from mlops's own evaluation of the version, when the model spec names
evaluation data. A missing or non-numeric metric fails the gate.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, TypeGuard

from mlops.gates.protocol import GateContext, GateResult, error, failed, passed

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
NEGATED = {">=": "<", ">": "<=", "<=": ">", "<": ">=", "==": "!="}


def metric_gate(ctx: GateContext) -> GateResult:
    name, op, threshold = ctx.gate.get("metric"), ctx.gate.get("op"), ctx.gate.get("threshold")
    if not isinstance(name, str) or op not in OPS or not _number(threshold):
        return error("metric", f"malformed metric gate {ctx.gate!r}: needs metric, op (>=, >, <=, <, ==) and a "
                               "numeric threshold")
    limit = float(threshold)
    value, source, known = _value(ctx, name)
    evidence: dict[str, Any] = {"metric": name, "op": op, "threshold": threshold, "value": value, "source": source}
    if value is None:
        return failed("metric", f"{name}: no such metric for v{ctx.version.version} (has: {', '.join(known) or 'none'})",
                      **evidence)
    if not _number(value) or not _fits(value) or math.isnan(value):  # a JSON int may be too large for a float
        return failed("metric", f"{name} is {repr(value)[:80]}, not a number", **evidence)
    if OPS[op](float(value), limit):
        return passed("metric", f"{name} {value:.6g} {op} {threshold:g}", **evidence)
    return failed("metric", f"{name} {value:.6g} {NEGATED[op]} {threshold:g} (needs {op} {threshold:g})", **evidence)


def _value(ctx: GateContext, name: str) -> tuple[Any, str | None, list[str]]:
    """The metric's value and where it came from ("registration" or "evaluation"), and the names known."""
    registered = ctx.version.metrics
    if name in registered:
        return registered[name], "registration", []
    known = sorted(registered)
    if ctx.model.evaluation is None:
        return None, None, known
    ev = ctx.evaluation(ctx.version)
    if name in ev.metrics:
        return ev.metrics[name], f"evaluation on {ev.data} ({ev.data_digest[:12]})", []
    return None, None, sorted({*known, *ev.metrics})


def _fits(value: float) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
