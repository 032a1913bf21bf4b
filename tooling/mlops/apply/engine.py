"""Run exactly the actions of a plan, in order, each through the executor of its kind."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.apply.protocol import ActionResult, ApplyContext, Executor
from mlops.errors import MlopsError, StoreError
from mlops.plan.model import Action, Plan


@dataclass
class ApplyReport:
    plan: Plan
    results: list[ActionResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        return not any(r.status == "failed" for r in self.results)

    @property
    def completed(self) -> bool:
        """Every action succeeded or had nothing to do."""
        return all(r.status in ("succeeded", "skipped") for r in self.results)

    @property
    def changed(self) -> bool:
        return any(r.status == "succeeded" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts, "results": [r.to_dict() for r in self.results]}


def _blocked_by(action: Action, ctx: ApplyContext) -> ActionResult | None:
    for dep in action.depends_on:
        r = ctx.results.get(dep)
        if r is None:
            continue
        if r.status == "failed" or (r.status == "skipped" and r.details.get("because_of")):
            return ActionResult(action.id, "skipped", f"not run: {dep} did not succeeded".replace("succeeded", "succeed"),
                                {"because_of": dep})
        if r.status == "blocked":
            return ActionResult(action.id, "blocked", f"waiting for {dep}", {"because_of": dep})
    return None


def apply_plan(plan: Plan, ctx: ApplyContext, executors: Mapping[str, Executor]) -> ApplyReport:
    """Do each action of ``plan``; an action whose dependency failed is skipped, never run half-informed."""
    report = ApplyReport(plan)
    for action in plan.actions:
        start = time.perf_counter()
        res = _blocked_by(action, ctx)
        if res is None:
            ctx.echo(f"→ {action.kind} {action.asset}" + (f" → {action.details['stage']}"
                                                          if "stage" in action.details else ""))
            try:
                res = executors[action.kind](action, ctx)
            except StoreError:
                raise  # the store is broken: nothing after this can be trusted
            except MlopsError as e:
                res = ActionResult(action.id, "failed", str(e))
        res = ActionResult(res.action, res.status, res.message, res.details, round(time.perf_counter() - start, 3))
        ctx.results[action.id] = res
        report.results.append(res)
        ctx.echo(f"  {res.status}: {res.message}")
    return report
