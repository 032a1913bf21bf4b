"""The registry of gate kinds, keyed by the gate's YAML key, and how a gate's YAML says its kind."""

from __future__ import annotations

from typing import Any

from mlops.gates import approval, champion, latency, metric, signature, soak
from mlops.gates.protocol import Gate

GATES: dict[str, Gate] = {
    "metric": metric.metric_gate,
    "champion": champion.champion_gate,
    "latency": latency.latency_gate,
    "signature": signature.signature_gate,
    "approval": approval.approval_gate,
    "soak": soak.soak_gate,
}
AWAITABLE = ("approval", "soak")  # the kinds that wait rather than fail


def gate_kind(gate: dict[str, Any]) -> str:
    """``metric`` for ``{metric, op, threshold}``; else the gate's one key (``champion: {...}`` -> champion)."""
    if "metric" in gate:
        return "metric"
    keys = [k for k in gate if k in GATES]
    return keys[0] if len(keys) == 1 else "+".join(sorted(map(str, gate))) or "empty"
