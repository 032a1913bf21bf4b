"""Metrics on the pull request: run what a change affects, without changing anything shared.

    report = preview(root, base, max_steps=50)        # in the pull request's read-only job
    markdown = render_preview(report)                 # appended to the sticky plan comment

The plan from ``base`` (its merge base with the checkout) to the working tree is made against the
project's store as it is; its environment builds, dataset registrations, pipeline runs and model
registrations are then applied to an OverlayStore over it, so step cache hits and the stage holders
come from the shared state and nothing the pull request's code makes is written back (the job has no
write token anyway). Each model registered that way is a *candidate*: its metrics are shown next to
those of every stage's holder, with deltas, its confusion matrix (models with ``evaluation:``), and
the gates of each stage it would pass or fail. Events are not sent (no sinks in a preview).

Pipelines with more than ``max_steps`` steps in all are not run (the comment says so): the switch
for big pipelines; ``MLOPS_PR_METRICS=false`` in the repository's variables turns it off.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREVIEW_KINDS = ("register_dataset", "build_environment", "run_pipeline", "register_model")


@dataclass
class Candidate:
    """A model version the change would register, and how it compares."""

    model: str
    pipeline: str | None
    metrics: dict[str, Any]
    holders: list[tuple[str, int, dict[str, Any]]]  # (stage, version, metrics) of each stage that holds one
    gates: list[tuple[str, list[Any]]]  # (stage, gate results other than the stage order)
    confusion: dict[str, Any] | None = None
    holder_confusion: tuple[str, int, dict[str, Any]] | None = None


@dataclass
class Preview:
    """What the preview did: candidates, or why it did not run, and the actions' results."""

    candidates: list[Candidate] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    skipped: str = ""  # why nothing ran (Markdown of ours, never model-made text)


def preview(root: Path, base: str, *, max_steps: int = 50, jobs: int = 2) -> Preview:
    """Run the pipelines the change from ``base`` affects, register their models in a scratch overlay,
    and compare each candidate with the stage holders."""
    from mlops.apply.engine import apply_plan
    from mlops.apply.executors import EXECUTORS
    from mlops.apply.protocol import ApplyContext
    from mlops.reconcile.live import actor
    from mlops.reconcile.story import open_project_store, plan_change
    from mlops.registry.lineage import git_lineage
    from mlops.spec.loader import load_specs
    from mlops.store.overlay import OverlayStore

    specs = load_specs(root)
    with tempfile.TemporaryDirectory(prefix="mlops-preview-") as scratch:
        store = OverlayStore(open_project_store(root), Path(scratch))
        plan, _ = plan_change(root, base, None, lambda: store, allow_dirty=True, use_merge_base=True)
        actions = [a for a in plan.actions if a.kind in PREVIEW_KINDS]
        pipelines = {a.asset.split("/", 1)[1] for a in actions if a.kind == "run_pipeline"}
        steps = sum(len(specs.pipelines[p].steps) for p in pipelines if p in specs.pipelines)
        if not any(a.kind == "register_model" for a in actions):
            return Preview(skipped="this change registers no new model version")
        if steps > max_steps:
            return Preview(skipped=f"the affected pipelines have {steps} steps, more than the {max_steps} a pull "
                                   "request runs (`MLOPS_PR_METRICS_MAX_STEPS`)")
        # One log sink that takes no event (``events: []``): without it the default log would be written.
        silent = ({"type": "log", "events": []},)
        quiet = dataclasses.replace(specs, project=dataclasses.replace(specs.project, notifications=silent))
        ctx = ApplyContext(root=root, specs=quiet, store=store, lineage=git_lineage(root), jobs=jobs,
                           actor=actor(root))
        report = apply_plan(dataclasses.replace(plan, actions=tuple(actions)), ctx, EXECUTORS)
        out = Preview(results=list(report.results))
        for r in report.results:
            version = r.details.get("version")
            if r.action.startswith("register_model:") and r.status in ("succeeded", "skipped") and \
                    isinstance(version, int):
                name = r.action.split("/", 1)[1]
                out.candidates.append(_candidate(store, quiet, root, name, version))
        return out


def _candidate(store: Any, specs: Any, root: Path, name: str, version: int) -> Candidate:
    from mlops.gates.evaluate import evaluate_gates
    from mlops.registry.models import get_model
    from mlops.release.records import model_events, stage_holder

    model = specs.models[name]
    mine = get_model(store, name, version)
    events = model_events(store, name)
    holders = []
    for stage in specs.project.stages:
        held = stage_holder(events, stage.name)
        if held is not None:
            holders.append((stage.name, held, dict(get_model(store, name, held).metrics)))
    gates = []
    for stage in specs.project.stages:
        if not stage.gates:
            continue
        report = evaluate_gates(store, specs.project, model, mine, stage.name, root, datasets=specs.datasets,
                                events=events)
        gates.append((stage.name, [g for g in report.results if g.kind != "order"]))
    cand = Candidate(name, model.source.pipeline, dict(mine.metrics), holders, gates)
    if model.evaluation is not None and model.flavor == "onnx":
        from mlops.errors import MlopsError
        from mlops.evaluation import evaluate_version

        try:
            cand.confusion = evaluate_version(store, model, mine, root, specs.datasets).confusion
            if holders:
                stage, held, _ = holders[-1]
                theirs = evaluate_version(store, model, held, root, specs.datasets).confusion
                cand.holder_confusion = (stage, held, theirs) if theirs else None
        except MlopsError:
            pass  # the gates above already say why the model cannot be scored
    return cand


def render_preview(p: Preview) -> str:
    """Markdown for the pull request comment (model-made text escaped)."""
    from mlops.release.escape import code, md

    lines = ["### Metrics of this pull request", ""]
    if p.skipped:
        return "\n".join([*lines, f"Not run: {p.skipped}."]) + "\n"  # our own words (and numbers)
    failed = [r for r in p.results if r.status == "failed"]
    for r in failed:
        lines.append(f"❌ {code(r.action, 200)} failed: {md(r.message.splitlines()[0] if r.message else '', limit=500)}")
    if failed:
        lines.append("")
    for c in p.candidates:
        lines += [f"#### {code(c.model)}" + (f" (pipeline {code(c.pipeline)})" if c.pipeline else ""), ""]
        lines += _metrics_table(c)
        for stage, results in c.gates:
            marks = ", ".join(f"{'✅' if g.passed else '⏳' if g.status == 'awaiting' else '❌'} {md(g.kind)}: "
                              f"{md(g.summary, limit=300)}" for g in results) or "no gates"
            lines.append(f"- gates of {code(stage)}: {marks}")
        if c.gates:
            lines.append("")
        if c.confusion:
            lines += _confusion("candidate", c.confusion)
        if c.holder_confusion:
            stage, held, matrix = c.holder_confusion
            lines += _confusion(f"{code(stage)} @{held} (now)", matrix)
    if not p.candidates and not failed:
        lines.append("No model version would be registered.")
    return "\n".join(lines).rstrip("\n") + "\n"


def _metrics_table(c: Candidate) -> list[str]:
    from mlops.release.escape import code, md

    head = "| metric | candidate |" + "".join(f" {code(s)} @{v} | Δ |" for s, v, _ in c.holders)
    rule = "|---|---|" + "---|---|" * len(c.holders)
    names = sorted(set(c.metrics).union(*(set(m) for _, _, m in c.holders)))[:50]
    rows = []
    for name in names:
        mine = c.metrics.get(name)
        row = f"| {md(name)} | {_fmt(mine)} |"
        for _, _, theirs in c.holders:
            other = theirs.get(name)
            a, b = _float(mine), _float(other)
            delta = f"{a - b:+.4g}" if a is not None and b is not None else ""
            row += f" {_fmt(other)} | {delta} |"
        rows.append(row)
    return [head, rule, *rows, ""] if rows else ["No metrics recorded.", ""]


def _confusion(title: str, confusion: dict[str, Any]) -> list[str]:
    from mlops.release.escape import md

    raw = confusion.get("labels")
    labels = [md(str(x), limit=40) for x in raw[:20]] if isinstance(raw, list) else []
    matrix = confusion.get("matrix") or []
    lines = [f"Confusion matrix, {title} (rows: true, columns: predicted):", "",
             "| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for label, row in zip(labels, matrix if isinstance(matrix, list) else [], strict=False):
        cells = [_fmt(v) for v in row[:20]] if isinstance(row, list) else []  # a damaged record shows as empty
        lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _fmt(value: Any) -> str:
    from mlops.release.escape import md

    if value is None:
        return "—"
    number = _float(value)
    if number is not None:
        return f"{number:.4g}"
    return md(str(value), limit=40)


def _float(x: object) -> float | None:
    """A metric as a float, or None when it is none (a whole number too large for a float is none: the
    pull request's pipeline writes the metrics)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return None
    try:
        return float(x)
    except OverflowError:
        return None
