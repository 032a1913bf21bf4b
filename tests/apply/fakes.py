"""An in-memory fake executor, for tests of the apply engine and of plugins' callers."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlops.apply.protocol import ActionResult, ApplyContext, result
from mlops.errors import MlopsError
from mlops.plan.model import Action


@dataclass
class RecordingExecutor:
    """Records every action it is given; answers with a scripted status per action id (default succeeded)."""

    outcomes: dict[str, str] = field(default_factory=dict)  # action id -> status, or "raise"
    calls: list[str] = field(default_factory=list)

    def __call__(self, action: Action, ctx: ApplyContext) -> ActionResult:
        self.calls.append(action.id)
        status = self.outcomes.get(action.id, "succeeded")
        if status == "raise":
            raise MlopsError(f"{action.id} cannot be done")
        return result(action, status, f"fake {status}")
