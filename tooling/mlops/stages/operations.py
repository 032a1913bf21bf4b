"""What a person does to a stage from the command line: check its gates, ask for a promotion, approve
one, roll a stage back.

A promotion is a change of the pin in git (``stages: {prod: 3}``): ``request_promotion`` evaluates the
gates, records that evaluation with its reason, and when they pass writes the pin (or opens a pull
request that writes it). The stage itself moves when reconcile applies the pin and the gates pass
again there: editing the YAML by hand gets exactly the same checks, so it is never a way around them.

A rollback is the one move made at once, because it is what you do when something is wrong: the
stage goes back to the version it held before (or a named earlier holder) without waiting for the
champion gate, on record with its reason, and the pin is written back so git agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import GatesBlockedError, RegistryError
from mlops.release.records import ReleaseEvent, append_event, model_events, stage_history, stage_holder
from mlops.spec.model import Model, Project, Stage
from mlops.store.protocol import ArtifactStore


@dataclass(frozen=True)
class Request:
    model: str
    version: int
    stage: str
    report: Any  # the gates' GateReport
    event: ReleaseEvent | None  # the recorded evaluation (None when only checking)
    pin_written: bool = False
    pull_request: str | None = None  # its URL, when one was opened or updated


def stage_of(project: Project, name: str) -> Stage:
    for s in project.stages:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in project.stages)
    raise RegistryError(f"no stage {name!r} in {project.file} (stages: {known})")


def check(store: ArtifactStore, project: Project, model: Model, version: int, stage: str, root: Path,
          datasets: dict[str, Any] | None = None) -> Any:
    """Evaluate the gates of ``stage`` for ``model@version`` without recording anything."""
    from mlops.gates import evaluate_gates

    stage_of(project, stage)
    _exists(store, model.name, version)
    return evaluate_gates(store, project, model, version, stage, root, datasets=datasets)


def request_promotion(store: ArtifactStore, project: Project, model: Model, version: int, stage: str, root: Path,
                      *, by: str, why: str, commit: str | None, pull_request: bool = False,
                      datasets: dict[str, Any] | None = None) -> Request:
    """Evaluate and record the gates; when they pass, write the pin (or open a pull request that does)."""
    target = stage_of(project, stage)
    if target.auto:
        raise RegistryError(f"stage {stage!r} is automatic: every new version whose gates pass enters it at reconcile")
    report = check(store, project, model, version, stage, root, datasets)
    event = append_event(store, model.name, "gates_evaluated", version=version, stage=stage, by=by, why=why,
                         commit=commit, evidence={**report.to_dict(), "requested": True})
    if report.status != "passed":
        from mlops.events import emit, model_subject

        emit(project, store, root, "gate.failed" if report.status == "failed" else "approval.requested",
             model_subject(model.name, version), {"model": model.name, "version": version, "stage": stage,
                                                  "gates": [r.to_dict() for r in report.results if not r.passed]})
    if report.status != "passed" and not (pull_request and _only_approval_missing(report)):
        raise GatesBlockedError(_blocked_message(model.name, version, stage, report))
    if pull_request:
        from mlops.stages.pullrequest import open_promotion_pr

        url = open_promotion_pr(root, store, project, model, version, stage, report, why=why)
        return Request(model.name, version, stage, report, event, pull_request=url)
    from mlops.stages.pins import write_pin

    written = write_pin(root, model.file, stage, version)
    return Request(model.name, version, stage, report, event, pin_written=written)


def approve(store: ArtifactStore, project: Project, model: Model, version: int, stage: str, *, by: str, why: str,
            commit: str | None, source: str = "cli", extra: dict[str, Any] | None = None) -> ReleaseEvent:
    """Record ``by``'s approval of ``model@version`` entering ``stage`` (counted by the stage's approval gate)."""
    stage_of(project, stage)
    _exists(store, model.name, version)
    if not why.strip():
        raise RegistryError("an approval needs a reason (--reason): it goes on the audit trail")
    return append_event(store, model.name, "approved", version=version, stage=stage, by=by, why=why, commit=commit,
                        evidence={"source": source, **(extra or {})})


def rollback(store: ArtifactStore, project: Project, model: Model, stage: str, root: Path, *, to: int | None,
             by: str, why: str, commit: str | None) -> ReleaseEvent:
    """Move ``stage`` back to the version it held before the current one (or ``to``, a former holder)."""
    target = stage_of(project, stage)
    if not why.strip():
        raise RegistryError("a rollback needs a reason (--reason): it goes on the audit trail")
    events = model_events(store, model.name)
    current = stage_holder(events, stage)
    if current is None:
        raise RegistryError(f"stage {stage!r} of {model.name} holds no version: nothing to roll back")
    former = [e.version for e in stage_history(events, stage) if e.version is not None and e.version != current]
    if to is None:
        if not former:
            raise RegistryError(f"{model.name}@{current} is the only version {stage!r} ever held: nothing to go back "
                                "to (name one with --to, or promote another version)")
        to = former[-1]
    elif to == current:
        raise RegistryError(f"{model.name}@{to} already holds {stage!r}: nothing to roll back to")
    elif to not in former:
        held = ", ".join(str(v) for v in sorted(set(former))) or "none"
        raise RegistryError(f"{model.name}@{to} never held {stage!r} (former holders: {held}); a rollback only goes "
                            "back to a former holder — promote it instead")
    retired = [e for e in events if e.kind == "deprecated" and e.version == to]
    if retired:
        raise RegistryError(f"{model.name}@{to} is deprecated ({retired[-1].why}): it enters no stage, not even by "
                            f"a rollback; name another former holder of {stage!r} with --to")
    event = append_event(store, model.name, "rolled_back", version=to, stage=stage, by=by, why=why, commit=commit,
                         evidence={"from_version": current, "to_version": to})
    if not target.auto or stage in model.stages:
        from mlops.stages.pins import write_pin

        write_pin(root, model.file, stage, to)
    from mlops.events import emit, model_subject

    emit(project, store, root, "model.rolled_back", model_subject(model.name, to),
         {"model": model.name, "stage": stage, "from_version": current, "to_version": to, "by": by, "why": why})
    return event


def users_of(store: ArtifactStore, project: Project, model: Model, version: int) -> list[str]:
    """What uses ``model@version`` now: stages that hold it, pins that name it, deployments that serve it."""
    from mlops.release.records import deployed_now

    events = model_events(store, model.name)
    uses = [f"stage {s.name} holds it" for s in project.stages if stage_holder(events, s.name) == version]
    uses += [f"{model.file} pins it to {stage}" for stage, v in sorted(model.stages.items()) if v == version]
    uses += [f"endpoint {ep} deployment {dep} serves it" for (ep, dep), e in sorted(deployed_now(events).items())
             if e.version == version]
    return uses


def deprecate(store: ArtifactStore, project: Project, model: Model, version: int, *, by: str, why: str,
              commit: str | None) -> ReleaseEvent:
    """Retire ``model@version``: it enters no stage any more. Refused while anything uses it."""
    _exists(store, model.name, version)
    if not why.strip():
        raise RegistryError("deprecating a version needs a reason (--reason): it goes on the audit trail")
    uses = users_of(store, project, model, version)
    if uses:
        raise RegistryError(f"{model.name}@{version} is in use and cannot be deprecated: {'; '.join(uses)}")
    return append_event(store, model.name, "deprecated", version=version, stage=None, by=by, why=why, commit=commit)


def _only_approval_missing(report: Any) -> bool:
    """Every gate passed but approval, which the pull request's reviews will give."""
    return report.status == "awaiting" and all(r.passed or r.kind == "approval" for r in report.results)


def _exists(store: ArtifactStore, model: str, version: int) -> None:
    from mlops.registry.models import get_model

    get_model(store, model, version)  # RegistryError naming what is missing


def _blocked_message(model: str, version: int, stage: str, report: Any) -> str:
    lines = [f"{'✓' if r.passed else '·' if r.status == 'awaiting' else '✗'} {r.kind}: {r.summary}"
             for r in report.results]
    state = "awaiting" if report.status == "awaiting" else "blocked"
    return f"{state}: {model}@{version} cannot enter {stage} yet\n" + "\n".join(lines)
