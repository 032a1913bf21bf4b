"""What serving records in the release audit trail (see ``mlops.release.audit``), so that
``mlops audit ENDPOINT --at T`` can answer which versions served an endpoint at any time.

The baseline is the trail itself, not the live servers: a server restarted with what it served before records
nothing new; a deployment slot whose model, version, traffic weight or target changed records ``deployed`` (in the
trail of the model now in the slot); a slot that is gone records ``undeployed`` (in the trail of the model that was
in it). Rollout steps call ``record_slots`` at each traffic change, so canary weights show in the audit too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.deploy.protocol import EndpointState
    from mlops.release.audit import Period
    from mlops.release.records import ReleaseEvent
    from mlops.store.protocol import ArtifactStore


def open_slots(store: ArtifactStore, endpoint: str) -> dict[str, Period]:
    """deployment name -> what the trail says is in that slot of ``endpoint`` now."""
    from mlops.release.audit import endpoint_periods

    return {p.deployment: p for p in endpoint_periods(store, endpoint, []) if p.end is None}


def record_slots(store: ArtifactStore, endpoint: str, now: EndpointState | None, *, by: str, why: str,
                 commit: str | None) -> list[ReleaseEvent]:
    """Record every slot of ``endpoint`` that differs between the trail and ``now`` (None: nothing serves it)."""
    from mlops.release.records import append_event

    before = open_slots(store, endpoint)
    out: list[ReleaseEvent] = []
    for d in now.deployments if now is not None else ():
        assert now is not None
        weight = int(now.traffic.get(d.name, 0))
        prior = before.get(d.name)
        if prior is not None and (prior.model, prior.version, prior.target, prior.traffic) == \
                (d.model, d.version, now.target, float(weight)):
            continue
        out.append(append_event(store, d.model, "deployed", version=d.version, stage=None, by=by, why=why,
                                commit=commit, evidence={"endpoint": endpoint, "deployment": d.name,
                                                         "target": now.target, "traffic": weight,
                                                         "sha256": d.sha256}))
    kept = {d.name for d in now.deployments} if now is not None else set()
    for name, prior in sorted(before.items()):
        if name not in kept:
            out.append(append_event(store, prior.model, "undeployed", version=prior.version, stage=None, by=by,
                                    why=why, commit=commit, evidence={"endpoint": endpoint, "deployment": name,
                                                                      "target": prior.target}))
    return out
