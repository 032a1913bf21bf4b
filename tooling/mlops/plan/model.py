"""The plan: a typed, serialisable value. `mlops apply plan.json` runs exactly its actions.

A plan records what it was made against (base and head revisions, the fingerprint of the head's
specs, and the serial of the live state) so that apply can refuse a plan that no longer fits.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.errors import PlanError

PLAN_FORMAT = 2
ACTION_KINDS = ("register_dataset", "build_environment", "run_pipeline", "register_model", "evaluate_gates",
                "promote", "propose_promotion", "deploy", "prune")
SYMBOL = {"created": "+", "changed": "~", "affected": "~", "removed": "-", "live": "+", "outstanding": "…"}
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


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
    tree: str | None = None  # git tree id of everything apply will use (see mlops.worktree); None for "empty"
    dirty: tuple[str, ...] = ()  # uncommitted paths of a worktree head

    def check(self, origin: str, side: str) -> None:
        """PlanError unless every field is what `mlops plan` writes (plan files are untrusted input)."""
        if not (self.rev in ("worktree", "empty") or _is_sha(self.rev)):
            raise PlanError(f"{origin}: {side}.rev {self.rev!r} is not a commit id, 'worktree' or 'empty'")
        for name in ("commit", "tree"):
            value = getattr(self, name)
            if value is not None and not _is_sha(value):
                raise PlanError(f"{origin}: {side}.{name} {value!r} is not a full git object id")
        if not isinstance(self.fingerprint, str) or not re.fullmatch(r"[0-9a-f]{64}", self.fingerprint):
            raise PlanError(f"{origin}: {side}.fingerprint is not a sha256 hex digest")
        if not all(isinstance(p, str) for p in self.dirty):
            raise PlanError(f"{origin}: {side}.dirty must be a list of paths")


def _is_sha(value: object) -> bool:
    return isinstance(value, str) and _SHA.fullmatch(value) is not None


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
    allow_dirty: bool = False  # made with --allow-dirty: apply may run it on a tree with uncommitted changes
    refreshed: bool = True  # live state (registry, applied state, outstanding actions) was read
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
            ids = {a.id for a in actions}
            for a in actions:
                if a.kind not in ACTION_KINDS:
                    raise PlanError(f"{origin}: action {a.id!r} has unknown kind {a.kind!r}")
                if not all(isinstance(x, str) for x in (a.id, a.asset, a.change, a.reason)) or \
                        not isinstance(a.details, dict) or not set(a.depends_on) <= ids:
                    raise PlanError(f"{origin}: action {a.id!r} is malformed")
            base = Revision(**{**d["base"], "dirty": tuple(d["base"].get("dirty", ()))})
            head = Revision(**{**d["head"], "dirty": tuple(d["head"].get("dirty", ()))})
            base.check(origin, "base")
            head.check(origin, "head")
            serial = d["state_serial"]
            if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
                raise PlanError(f"{origin}: state_serial {serial!r} is not a non-negative integer")
            return cls(project=str(d["project"]), base=base, head=head, state_serial=serial,
                       created_at=str(d["created_at"]), actions=actions,
                       changes=tuple(d.get("changes", ())), changed_files=tuple(d.get("changed_files", ())),
                       notes=tuple(str(n) for n in d.get("notes", ())), allow_dirty=d.get("allow_dirty") is True,
                       refreshed=d.get("refreshed", True) is True,
                       format=d["format"])
        except PlanError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise PlanError(f"{origin}: not a valid plan file ({type(e).__name__}: {str(e)[:200]})") from None

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.kind] = out.get(a.kind, 0) + 1
        return out
