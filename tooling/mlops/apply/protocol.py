"""The one small protocol behind every action kind, and the values it returns.

An executor does one kind of action and says how it went as an ``ActionResult``; it raises only
when the whole apply cannot go on (a broken store, say). Executors must be idempotent: doing an
action whose effect is already live returns ``skipped`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlops.plan.model import Action
from mlops.spec.model import Specs
from mlops.store.protocol import ArtifactStore

STATUSES = ("succeeded", "failed", "skipped", "blocked", "pending")


@dataclass(frozen=True)
class ActionResult:
    action: str  # the action id
    status: str  # succeeded | failed | skipped | blocked | pending
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ApplyContext:
    """What executors may use. ``results`` holds the results of actions already done in this apply."""

    root: Path
    specs: Specs
    store: ArtifactStore
    lineage: dict[str, Any]
    jobs: int = 2
    results: dict[str, ActionResult] = field(default_factory=dict)
    actor: str = "unknown"  # who applies: recorded on every release event
    echo: Callable[[str], None] = lambda _msg: None


class Executor(Protocol):
    def __call__(self, action: Action, ctx: ApplyContext) -> ActionResult: ...


def result(action: Action, status: str, message: str, **details: Any) -> ActionResult:
    return ActionResult(action.id, status, message, details)
