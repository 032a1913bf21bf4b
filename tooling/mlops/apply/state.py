"""The reconciler's own record of what it applied, kept in the store so it survives ephemeral runners.

``serial`` grows with every apply that changed something; a plan is valid only for the serial it
was made against (Terraform's rule). ``last_applied_commit`` is the base of the next reconcile.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from mlops.errors import CorruptRecordError
from mlops.store.protocol import ArtifactStore

STATE_KEY = "reconcile/state.json"


@dataclass(frozen=True)
class ReconcileState:
    serial: int = 0
    last_applied_commit: str | None = None
    last_applied_fingerprint: str | None = None
    applied_at: str | None = None
    applied_by: str | None = None


STATE_FIX = ("restore it from a backup, or delete it to start over (the next reconcile then plans from the "
             "empty state, or from --base REV, and converges: what exists is not redone)")


def read_state(store: ArtifactStore) -> ReconcileState:
    """The state record, or the initial state when there is none. CorruptRecordError (a StoreError
    naming the record and the fix) when it is damaged."""
    from mlops.recordjson import fields_of, parse_json

    raw = store.read_record(STATE_KEY)
    if raw is None:
        return ReconcileState()
    where = f"the reconciler's state record {STATE_KEY} in {store.url}"
    state = fields_of(ReconcileState, parse_json(raw, where, STATE_FIX), where, STATE_FIX)
    if state.serial < 0:
        raise CorruptRecordError(f"{where}: its serial is negative; {STATE_FIX}")
    return state


def write_state(store: ArtifactStore, state: ReconcileState, *, commit: str | None, fingerprint: str | None,
                who: str | None, completed: bool) -> ReconcileState:
    """Bump the serial; move the applied commit forward only when the apply completed."""
    new = replace(state, serial=state.serial + 1, applied_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  applied_by=who)
    if completed:
        new = replace(new, last_applied_commit=commit, last_applied_fingerprint=fingerprint)
    store.write_record(STATE_KEY, json.dumps(asdict(new), indent=2).encode())
    return new
