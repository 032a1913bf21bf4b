"""What the planner knows of live state. Gathered by the reconcile layer from the store and targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LiveState:
    serial: int = 0  # bumped by every apply that changed something; a plan is only valid for its serial
    last_applied_commit: str | None = None
    registered_models: frozenset[str] = field(default_factory=frozenset)  # models with at least one version
    store_url: str = ""
    refreshed: bool = True  # False when planning without reading live state (`--no-refresh`)
    # actions the last apply could not do yet (pending or blocked): planned again until done
    outstanding: tuple[dict[str, Any], ...] = ()
    # which version each stage of each model holds now (from the release audit trail): model -> stage -> version
    stage_holders: dict[str, dict[str, int]] = field(default_factory=dict)
    # online endpoints whose target serves something other than their desired state: endpoint -> why
    endpoint_drift: dict[str, str] = field(default_factory=dict)
    # models a person or a monitoring alert asked to retrain (`--retrain MODEL`): model -> why
    retrain: dict[str, str] = field(default_factory=dict)
