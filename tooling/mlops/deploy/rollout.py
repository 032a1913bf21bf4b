"""Rolling an endpoint from its live state to its desired state.

This version applies the desired state all at once (one step); helper "rollout" replaces the body with canary and
blue-green strategies driven by ``rollout_spec`` (the endpoint's ``rollout`` mapping) and the target's metrics.
The signature is the contract the deploy executor calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.errors import MlopsError

if TYPE_CHECKING:
    from mlops.deploy.protocol import EndpointState, Target
    from mlops.store.protocol import ArtifactStore


@dataclass
class RolloutResult:
    """``status`` is succeeded, failed or rolled_back; ``steps`` what was done, in order; ``reason`` one line."""

    status: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""


def roll_out(target: Target, desired: EndpointState, live: EndpointState | None, rollout_spec: dict[str, Any],
             store: ArtifactStore, *, echo: Callable[[str], None] = print,
             sleep: Callable[[float], None] = time.sleep) -> RolloutResult:
    """Converge ``target`` from ``live`` to ``desired``. All at once: one ``apply`` of the desired state."""
    del rollout_spec, sleep  # used by the staged strategies
    what = "first deploy" if live is None else "update"
    try:
        state = target.apply(desired, store)
    except MlopsError as e:
        return RolloutResult("failed", [{"step": "apply", "traffic": dict(desired.traffic), "error": str(e)}],
                             f"{what} failed: {e}")
    echo(f"  {desired.endpoint}: {what} applied all at once (traffic {_traffic(desired.traffic)})")
    return RolloutResult("succeeded", [{"step": "apply", "traffic": dict(desired.traffic), "url": state.url}],
                         f"{what} applied all at once")


def _traffic(traffic: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}%" for k, v in sorted(traffic.items())) or "none"
