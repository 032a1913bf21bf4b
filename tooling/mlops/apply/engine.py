"""Run exactly the actions of a plan, in order, each through the executor of its kind.

Statuses: ``succeeded`` (it changed live state), ``skipped`` (nothing to do, or not run because an
action it depends on failed), ``failed``, ``blocked`` (waiting for a gate or an approval) and
``pending`` (the action kind is not available in this version). Blocked and pending actions are
*outstanding*: the state remembers them and the next plan includes them again, so an apply never
counts as done what did not happen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.apply.protocol import ActionResult, ApplyContext, Executor
from mlops.errors import MlopsError, StoreError
from mlops.plan.model import Action, Plan

OUTSTANDING = ("blocked", "pending")
MARK = {"succeeded": "✓", "failed": "✗", "skipped": "·", "blocked": "⏸", "pending": "…"}


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
        """Every action succeeded or had nothing to do (nothing failed, nothing is outstanding)."""
        return all(r.status in ("succeeded", "skipped") for r in self.results)

    @property
    def changed(self) -> bool:
        return any(r.status == "succeeded" for r in self.results)

    def outstanding(self) -> list[dict[str, Any]]:
        """The blocked and pending actions, as the state records them."""
        actions = {a.id: a for a in self.plan.actions}
        out = []
        for r in self.results:
            if r.status in OUTSTANDING:
                a = actions[r.action]
                entry = {"id": a.id, "kind": a.kind, "asset": a.asset, "status": r.status, "message": r.message}
                if a.details.get("stage"):
                    entry["stage"] = a.details["stage"]
                out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "completed": self.completed, "counts": self.counts,
                "results": [r.to_dict() for r in self.results]}


def _blocked_by(action: Action, ctx: ApplyContext) -> ActionResult | None:
    for dep in action.depends_on:
        r = ctx.results.get(dep)
        if r is None:
            continue
        if r.status == "failed" or (r.status == "skipped" and r.details.get("because_of")):
            return ActionResult(action.id, "skipped", f"not run: {dep} did not succeed", {"because_of": dep})
        if r.status in OUTSTANDING:
            return ActionResult(action.id, r.status, f"waiting for {dep} ({r.status})", {"because_of": dep})
    return None


def apply_plan(plan: Plan, ctx: ApplyContext, executors: Mapping[str, Executor]) -> ApplyReport:
    """Do each action of ``plan``; an action whose dependency failed is skipped, never run half-informed.

    Progress goes to ``ctx.echo``: one header per action, then its outcome; a failure's details
    (a step's stderr tail) are shown there once, and only their first line in the summary.
    """
    report = ApplyReport(plan)
    for action in plan.actions:
        start = time.perf_counter()
        res = _blocked_by(action, ctx)
        ctx.echo(f"→ {action.kind} {action.asset}" + (f" → {action.details['stage']}"
                                                      if "stage" in action.details else ""))
        if res is None:
            try:
                res = executors[action.kind](action, ctx)
            except StoreError:
                raise  # the store is broken: nothing after this can be trusted
            except MlopsError as e:
                res = ActionResult(action.id, "failed", str(e))
        res = ActionResult(res.action, res.status, res.message, res.details, round(time.perf_counter() - start, 3))
        ctx.results[action.id] = res
        report.results.append(res)
        first, _, rest = res.message.partition("\n")
        ctx.echo(f"  {MARK[res.status]} {res.status}: {first}")
        if rest.strip():
            ctx.echo("\n".join(f"    │ {line}" for line in rest.rstrip().splitlines()))
    return report
