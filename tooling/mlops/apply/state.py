"""The reconciler's own record of what it applied, kept in the store so it survives ephemeral runners.

``serial`` grows with every apply that changed the record; a plan is valid only for the serial it
was made against (Terraform's rule). ``last_applied_commit`` is the base of the next reconcile: the
commit that was applied or, for a dirty tree applied with ``--allow-dirty``, the snapshot commit of
exactly that tree (``dirty`` is then true and ``head_commit`` is the commit it sat on). It moves
only when an apply has no failed action. ``outstanding`` lists the actions that could not be done
yet (pending: not available in this version; blocked: waiting for a gate or an approval): the next
plan includes them again, so nothing is counted as done that did not happen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any

from mlops.errors import StoreError
from mlops.store.protocol import ArtifactStore

STATE_KEY = "reconcile/state.json"
OUTSTANDING_KEYS = ("id", "kind", "asset", "stage", "status", "message")


@dataclass(frozen=True)
class ReconcileState:
    serial: int = 0
    last_applied_commit: str | None = None
    last_applied_fingerprint: str | None = None
    last_applied_tree: str | None = None
    head_commit: str | None = None
    dirty: bool = False
    outstanding: tuple[dict[str, Any], ...] = ()
    applied_at: str | None = None
    applied_by: str | None = None


def read_state(store: ArtifactStore) -> ReconcileState:
    raw = store.read_record(STATE_KEY)
    if raw is None:
        return ReconcileState()
    try:
        return _parse(json.loads(raw))
    except (ValueError, TypeError, AttributeError) as e:
        raise StoreError(f"the reconcile state record {store.url}/{STATE_KEY} is corrupt ({e}): restore it from a "
                         "backup, or delete it and reconcile with --base REV (the last commit you know was applied)"
                         ) from e


def _parse(data: Any) -> ReconcileState:
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(ReconcileState)}
    values = {k: v for k, v in data.items() if k in known}
    state = ReconcileState(**values)
    if not isinstance(state.serial, int) or isinstance(state.serial, bool) or state.serial < 0:
        raise TypeError(f"serial must be a non-negative integer, not {state.serial!r}")
    for name in ("last_applied_commit", "last_applied_fingerprint", "last_applied_tree", "head_commit",
                 "applied_at", "applied_by"):
        if not isinstance(getattr(state, name), (str, type(None))):
            raise TypeError(f"{name} must be a string")
    outstanding = state.outstanding
    if not isinstance(outstanding, (list, tuple)) or not all(
            isinstance(o, dict) and isinstance(o.get("id"), str) and isinstance(o.get("kind"), str)
            and isinstance(o.get("asset"), str) for o in outstanding):
        raise TypeError("outstanding must be a list of actions with id, kind and asset")
    return replace(state, outstanding=tuple({k: o[k] for k in OUTSTANDING_KEYS if k in o} for o in outstanding),
                   dirty=bool(state.dirty))


def write_state(store: ArtifactStore, state: ReconcileState, who: str | None, **changes: Any) -> ReconcileState:
    """Bump the serial and record ``changes`` (fields of ReconcileState) with who applied and when."""
    new = replace(state, serial=state.serial + 1, applied_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  applied_by=who, **changes)
    data = asdict(new)
    data["outstanding"] = list(new.outstanding)
    store.write_record(STATE_KEY, json.dumps(data, indent=2).encode())
    return new
