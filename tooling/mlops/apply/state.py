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
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from mlops.errors import CorruptRecordError
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


STATE_FIX = ("restore it from a backup, or delete it and reconcile with --base REV (the last commit you know "
             "was applied; what exists already is not redone)")


def read_state(store: ArtifactStore) -> ReconcileState:
    """The state record, or the initial state when there is none. CorruptRecordError (a StoreError
    naming the record and the fix) when it is damaged."""
    raw = store.read_record(STATE_KEY)
    if raw is None:
        return ReconcileState()
    from mlops.recordjson import fields_of, parse_json

    where = f"the reconciler's state record {STATE_KEY} in {store.url}"
    state = fields_of(ReconcileState, parse_json(raw, where, STATE_FIX), where, STATE_FIX)
    if state.serial < 0:
        raise CorruptRecordError(f"{where}: its serial is negative; {STATE_FIX}")
    if not all(isinstance(o, dict) and all(isinstance(o.get(k), str) for k in ("id", "kind", "asset"))
               for o in state.outstanding):
        raise CorruptRecordError(f"{where}: field 'outstanding' must list actions with id, kind and asset; "
                                 f"{STATE_FIX}")
    return replace(state, outstanding=tuple({k: o[k] for k in OUTSTANDING_KEYS if k in o}
                                            for o in state.outstanding))


def write_state(store: ArtifactStore, state: ReconcileState, who: str | None, **changes: Any) -> ReconcileState:
    """Bump the serial and record ``changes`` (fields of ReconcileState) with who applied and when."""
    new = replace(state, serial=state.serial + 1, applied_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  applied_by=who, **changes)
    data = asdict(new)
    data["outstanding"] = list(new.outstanding)
    store.write_record(STATE_KEY, json.dumps(data, indent=2).encode())
    return new
