"""The plan: a typed, serialisable value. `mlops apply plan.json` runs exactly its actions.

A plan records what it was made against (base and head revisions, the fingerprint of the head's
specs, and the serial of the live state) so that apply can refuse a plan that no longer fits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.errors import PlanError

PLAN_FORMAT = 1
ACTION_KINDS = ("register_dataset", "build_environment", "run_pipeline", "register_model", "evaluate_gates",
                "promote", "deploy", "prune")
SYMBOL = {"created": "+", "changed": "~", "affected": "~", "removed": "-", "live": "+"}


@dataclass(frozen=True)
class Action:
    id: str  # "<kind>:<asset id>", unique in a plan
    kind: str  # one of ACTION_KINDS
    asset: str  # asset id, e.g. "model/wine-classifier"
    change: str  # created | changed | affected | removed | live (missing from live state)
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()

    @property
    def symbol(self) -> str:
        return SYMBOL.get(self.change, "~")


@dataclass(frozen=True)
class Revision:
    rev: str  # commit sha, "worktree" or "empty"
    commit: str | None  # the commit a worktree sits on (None for "empty")
    fingerprint: str  # spec files' content identity


@dataclass(frozen=True)
class Plan:
    project: str
    base: Revision
    head: Revision
    state_serial: int
    created_at: str
    actions: tuple[Action, ...]
    changes: tuple[dict[str, Any], ...] = ()  # the ChangeSet, for display and audit
    changed_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    format: int = PLAN_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: str = "plan") -> Plan:
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or "format" not in d:
                raise PlanError(f"{origin}: not a valid plan file (no 'format' field; was it made by `mlops plan --out`?)")
            if d.get("format") != PLAN_FORMAT:
                raise PlanError(f"{origin}: plan format {d.get('format')!r} is not supported (expected {PLAN_FORMAT})")
            actions = tuple(Action(**{**a, "depends_on": tuple(a.get("depends_on", ()))}) for a in d["actions"])
            for a in actions:
                if a.kind not in ACTION_KINDS:
                    raise PlanError(f"{origin}: action {a.id!r} has unknown kind {a.kind!r}")
            return cls(project=d["project"], base=Revision(**d["base"]), head=Revision(**d["head"]),
                       state_serial=int(d["state_serial"]), created_at=d["created_at"], actions=actions,
                       changes=tuple(d.get("changes", ())), changed_files=tuple(d.get("changed_files", ())),
                       notes=tuple(d.get("notes", ())), format=d["format"])
        except PlanError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise PlanError(f"{origin}: not a valid plan file ({type(e).__name__}: {e})") from e

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.kind] = out.get(a.kind, 0) + 1
        return out
