"""The reconciler's own record of what it applied, kept in the store so it survives ephemeral runners.

``serial`` grows with every apply that changed something; a plan is valid only for the serial it
was made against (Terraform's rule). ``last_applied_commit`` is the base of the next reconcile.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from mlops.errors import StoreError
from mlops.store.protocol import ArtifactStore

STATE_KEY = "reconcile/state.json"


@dataclass(frozen=True)
class ReconcileState:
    serial: int = 0
    last_applied_commit: str | None = None
    last_applied_fingerprint: str | None = None
    applied_at: str | None = None
    applied_by: str | None = None


def read_state(store: ArtifactStore) -> ReconcileState:
    raw = store.read_record(STATE_KEY)
    if raw is None:
        return ReconcileState()
    try:
        return ReconcileState(**json.loads(raw))
    except (ValueError, TypeError) as e:
        raise StoreError(f"{store.url}/{STATE_KEY} is corrupt ({e}); fix or delete it") from e


def write_state(store: ArtifactStore, state: ReconcileState, *, commit: str | None, fingerprint: str | None,
                who: str | None, completed: bool) -> ReconcileState:
    """Bump the serial; move the applied commit forward only when the apply completed."""
    new = replace(state, serial=state.serial + 1, applied_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  applied_by=who)
    if completed:
        new = replace(new, last_applied_commit=commit, last_applied_fingerprint=fingerprint)
    store.write_record(STATE_KEY, json.dumps(asdict(new), indent=2).encode())
    return new
