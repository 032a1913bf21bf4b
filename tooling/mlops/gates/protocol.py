"""The Gate protocol: a gate is a function from a GateContext to a GateResult.

    Gate = Callable[[GateContext], GateResult]

A result is a value, never an exception: ``passed``, ``failed``, ``awaiting`` (an approval or a soak
time that has not come yet: waiting changes it, a new version does not) or ``error`` (the gate could
not be evaluated, e.g. the model spec names no evaluation data; it blocks like a failure). Every
number a gate used is in its ``evidence``, and its ``summary`` is one line with the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from mlops.registry.records import ModelVersion
from mlops.release.evaluations import Evaluation
from mlops.release.records import ReleaseEvent
from mlops.spec.model import Model, Project
from mlops.store.protocol import ArtifactStore

STATUSES = ("passed", "failed", "awaiting", "error")


@dataclass(frozen=True)
class GateResult:
    kind: str
    passed: bool
    status: str  # passed | failed | awaiting | error
    summary: str  # one line with the numbers, e.g. "accuracy 0.93 >= 0.9"
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "passed": self.passed, "status": self.status, "summary": self.summary,
                "evidence": self.evidence}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        return cls(str(d["kind"]), bool(d["passed"]), str(d["status"]), str(d["summary"]), dict(d.get("evidence") or {}))


def passed(kind: str, summary: str, **evidence: Any) -> GateResult:
    return GateResult(kind, True, "passed", summary, evidence)


def failed(kind: str, summary: str, **evidence: Any) -> GateResult:
    return GateResult(kind, False, "failed", summary, evidence)


def awaiting(kind: str, summary: str, **evidence: Any) -> GateResult:
    return GateResult(kind, False, "awaiting", summary, evidence)


def error(kind: str, summary: str, **evidence: Any) -> GateResult:
    return GateResult(kind, False, "error", summary, evidence)


class EvaluationProvider(Protocol):
    """Scores versions of the context's model on its held-out data (``ref``: other data than the
    spec's ``evaluation.data``), recorded and reused; ``cached`` says whether a version already has a
    record for that data. ``mlops.evaluation.Evaluator`` is the one mlops uses."""

    def __call__(self, version: ModelVersion | int, ref: str | None = None) -> Evaluation: ...

    def cached(self, version: int, ref: str | None = None) -> Evaluation | None: ...


@dataclass(frozen=True)
class GateContext:
    """Everything a gate may look at: the version asking to enter ``stage`` and what the stage holds."""

    store: ArtifactStore
    model: Model  # the spec
    version: ModelVersion
    stage: str
    stage_index: int
    project: Project
    gate: dict[str, Any]  # this gate's YAML
    holder: ModelVersion | None  # the version the stage holds now
    events: list[ReleaseEvent]  # the model's release trail, oldest first
    now: datetime  # aware, UTC
    root: Path
    evaluation: EvaluationProvider

    @property
    def previous_stage(self) -> str | None:
        return self.project.stages[self.stage_index - 1].name if self.stage_index > 0 else None

    @property
    def options(self) -> dict[str, Any]:
        """The gate's own settings: ``{...}`` under its key, or the whole mapping for the metric gate."""
        from mlops.gates.kinds import gate_kind

        kind = gate_kind(self.gate)
        value = self.gate.get(kind) if kind != "metric" else self.gate
        return dict(value) if isinstance(value, dict) else {}


Gate = Callable[[GateContext], GateResult]


@dataclass(frozen=True)
class GateReport:
    """Every gate of one stage for one version, in order (the implicit ``order`` gate first).
    ``status``: passed when all passed; awaiting when only approval or soak gates are still waiting;
    else failed."""

    model: str
    version: int
    stage: str
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def awaiting(self) -> bool:
        """Nothing failed; only waiting (for approvals, a soak time) stands between the version and the stage."""
        pending = [r for r in self.results if not r.passed]
        return bool(pending) and all(r.status == "awaiting" for r in pending)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "awaiting" if self.awaiting else "failed"

    @property
    def blocking(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def summary(self) -> str:
        """One line: ``wine@3 -> prod: failed (champion: accuracy 0.91 < champion v2 0.93 + 0.0)``."""
        head = f"{self.model}@{self.version} -> {self.stage}: {self.status}"
        blocking = self.blocking
        return head + (" (" + "; ".join(f"{r.kind}: {r.summary}" for r in blocking) + ")" if blocking else "")

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON: what ``gates_evaluated`` events hold in ``evidence``."""
        return {"model": self.model, "version": self.version, "stage": self.stage, "passed": self.passed,
                "status": self.status, "gates": [r.to_dict() for r in self.results]}
