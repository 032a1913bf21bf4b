"""Evaluating a stage's gates for one version: the implicit order gate, then the stage's gates in order.

    report = evaluate_gates(store, project, specs.models["wine-classifier"], 3, "prod", root)
    report.passed, report.status, [r.summary for r in report.results]

Nothing is recorded here (the caller records a ``gates_evaluated`` event with ``report.to_dict()``
when it acts on it); evaluations the gates need are recorded and reused (``mlops.evaluation``).
A gate that cannot be evaluated (no evaluation data, a model onnxruntime cannot load) is an ``error``
result naming the problem, so every gate is still reported; damaged records raise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from mlops.errors import MlopsError, RegistryError
from mlops.evaluation.evaluate import Evaluator
from mlops.gates.kinds import GATES, gate_kind
from mlops.gates.order import order_gate
from mlops.gates.protocol import Gate, GateContext, GateReport, GateResult, error
from mlops.registry.records import ModelVersion
from mlops.release.records import ReleaseEvent, model_events, stage_holder
from mlops.spec.model import Dataset, Model, Project
from mlops.store.protocol import ArtifactStore


def evaluate_gates(store: ArtifactStore, project: Project, model_spec: Model, version: ModelVersion | int,
                   stage: str, root: Path, now: datetime | None = None, *,
                   datasets: Mapping[str, Dataset] | None = None,
                   events: list[ReleaseEvent] | None = None) -> GateReport:
    """Every gate of ``stage`` for ``model_spec.name@version``, against what the stage holds now (from
    the release trail). ``now`` defaults to the current time (UTC); ``datasets`` are the specs' datasets
    (read from the working tree when evaluation data names one and they are not given); ``events``
    the model's release trail when the caller has it already."""
    ctx = context(store, project, model_spec, version, stage, root, now, datasets=datasets, events=events)
    results = [run_gate(order_gate, "order", ctx)]
    for gate in project.stages[ctx.stage_index].gates:
        kind = gate_kind(gate)
        fn = GATES.get(kind)
        results.append(error(kind, f"unknown gate {gate!r}: one of {', '.join(GATES)}") if fn is None
                       else run_gate(fn, kind, dataclasses.replace(ctx, gate=dict(gate))))
    return GateReport(model_spec.name, ctx.version.version, stage, tuple(results))


def context(store: ArtifactStore, project: Project, model_spec: Model, version: ModelVersion | int, stage: str,
            root: Path, now: datetime | None = None, *, datasets: Mapping[str, Dataset] | None = None,
            events: list[ReleaseEvent] | None = None) -> GateContext:
    """The context the gates of ``stage`` see (``gate`` left empty): for callers that run one gate."""
    from mlops.registry.models import get_model

    names = [s.name for s in project.stages]
    if stage not in names:
        raise MlopsError(f"{project.file}: there is no stage {stage!r} (stages: {', '.join(names)})")
    mv = version if isinstance(version, ModelVersion) else get_model(store, model_spec.name, version)
    if mv.name != model_spec.name:
        raise RegistryError(f"{mv.ref} is not a version of model {model_spec.name!r}")
    trail = model_events(store, model_spec.name) if events is None else events
    held = stage_holder(trail, stage)
    holder = None if held is None else mv if held == mv.version else get_model(store, model_spec.name, held)
    when = now or datetime.now(timezone.utc)
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    return GateContext(store=store, model=model_spec, version=mv, stage=stage, stage_index=names.index(stage),
                       project=project, gate={}, holder=holder, events=trail, now=when, root=Path(root),
                       evaluation=Evaluator(store, model_spec, Path(root), datasets))


def run_gate(gate: Gate, kind: str, ctx: GateContext) -> GateResult:
    """The gate's result; what keeps it from being evaluated (no evaluation data, a model that does
    not load) is an ``error`` result that says so, damaged records and a broken store are raised."""
    from mlops.errors import StoreError

    try:
        return gate(ctx)
    except StoreError:
        raise
    except MlopsError as e:
        return error(kind, str(e))
