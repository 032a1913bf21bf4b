"""Model cards: what a reviewer needs to judge one version, as Markdown (for a pull request) or JSON.

    card = build_card(store, "wine-classifier", 3)
    card.to_json()              # every field; ModelCard.from_dict(json.loads(...)) gives it back
    render_markdown(card)       # (mlops.release.card_markdown) GitHub-safe, at most 65,536 characters

A card gathers the registry's version record (purpose, files, signature, metrics, lineage), the
evaluation record (metrics on held-out data, confusion matrix, permutation feature importance) and
the release events (the stages it holds, and for each stage it entered: the gates with their
numbers and who approved). It reads, never writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mlops.registry.models import get_model
from mlops.registry.records import ModelVersion
from mlops.release.evaluations import load_evaluation
from mlops.release.records import ReleaseEvent, approvals, entered_at, model_events, stage_holder
from mlops.store.protocol import ArtifactStore


@dataclass(frozen=True)
class ModelCard:
    """Everything on a card, as JSON-ready values.

    ``data``: ``{"inputs": {name: sha256}, "evaluation": {"data", "digest", "rows"} | None}``.
    ``evaluation``: the evaluation record as stored, or None. ``stages``: the stages this version
    holds now, ``[{"stage", "since"}]``. ``entered``: every time it entered a stage, oldest first:
    ``{"stage", "how" (promoted | rolled_back), "seq", "at", "by", "why", "commit", "from_version",
    "gates": {"seq", "at", "by", "passed", "results": [GateResult dicts]} | None,
    "approvals": [{"seq", "at", "by", "why", "source", "pull_request"}],
    "left": {"how" (rolled_back | replaced), "seq", "at", "by", "why", "version"} | None}``.
    """

    model: str
    version: int
    description: str
    flavor: str
    files: list[dict[str, Any]]
    tags: dict[str, str]
    metrics: dict[str, Any]
    signature: dict[str, Any] | None
    lineage: dict[str, Any]
    data: dict[str, Any]
    evaluation: dict[str, Any] | None
    stages: list[dict[str, Any]] = field(default_factory=list)
    entered: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "ModelCard", **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """A card from its JSON (``to_dict``); ValueError when it is not one."""
        if not isinstance(d, dict) or d.get("kind") != "ModelCard":
            raise ValueError("not a model card (its JSON has \"kind\": \"ModelCard\")")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(d))
        if missing:
            raise ValueError(f"model card lacks {', '.join(missing)}")
        return cls(**{k: d[k] for k in names})


# -- gathering -------------------------------------------------------------------------------
Evaluate = Callable[[ModelVersion], "dict[str, Any] | None"]


def build_card(store: ArtifactStore, model: str, version: int | None = None,
               evaluate: Evaluate | None = None) -> ModelCard:
    """The card of ``model@version`` (the latest when None). ``evaluate`` computes an evaluation
    record (as a dict in the evaluation-record format) when none is stored yet."""
    mv = get_model(store, model, version)
    stored = load_evaluation(store, mv.name, mv.version)
    evaluation = None if stored is None else stored.to_dict()
    if evaluation is None and evaluate is not None:
        evaluation = evaluate(mv)
    events = model_events(store, mv.name)
    return ModelCard(
        model=mv.name, version=mv.version, description=mv.description, flavor=mv.flavor,
        files=[asdict(f) for f in mv.files], tags=dict(mv.tags), metrics=dict(mv.metrics),
        signature=None if mv.signature is None else mv.signature.to_dict(), lineage=mv.lineage.to_dict(),
        data={"inputs": dict(mv.lineage.input_digests),
              "evaluation": None if evaluation is None else {
                  "data": evaluation["data"], "digest": evaluation["data_digest"], "rows": evaluation["rows"]}},
        evaluation=evaluation, stages=_stages_held(events, mv.version), entered=_entered(events, mv.version))


def _stages_held(events: list[ReleaseEvent], version: int) -> list[dict[str, Any]]:
    stages = list(dict.fromkeys(e.stage for e in events if e.kind in ("promoted", "rolled_back") and e.stage))
    out = []
    for stage in stages:
        if stage_holder(events, stage) == version:
            since = entered_at(events, stage, version)
            out.append({"stage": stage, "since": None if since is None else since.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return out


def _entered(events: list[ReleaseEvent], version: int) -> list[dict[str, Any]]:
    out = []
    for i, e in enumerate(events):
        if e.kind not in ("promoted", "rolled_back") or e.version != version or e.stage is None:
            continue
        before = events[:i]
        out.append({"stage": e.stage, "how": e.kind, "seq": e.seq, "at": e.at, "by": e.by, "why": e.why,
                    "commit": e.commit, "from_version": e.evidence.get("from_version"),
                    "gates": _gates_of(events, e) if e.kind == "promoted" else None,
                    "approvals": [_approval(a) for a in approvals(before, version, e.stage)],
                    "left": _left(events[i + 1:], e.stage, version)})
    return out


def _gates_of(events: list[ReleaseEvent], promotion: ReleaseEvent) -> dict[str, Any] | None:
    """The gate evaluation a promotion rests on: the one it names, else the latest before it."""
    def fits(g: ReleaseEvent) -> bool:
        return g.kind == "gates_evaluated" and g.version == promotion.version and g.stage == promotion.stage

    named = promotion.evidence.get("gates_event")
    found = next((g for g in events if g.seq == named and fits(g)), None) if isinstance(named, int) else None
    if found is None:
        found = next((g for g in reversed(events) if g.seq < promotion.seq and fits(g)), None)
    if found is None:
        return None
    results = found.evidence.get("gates")
    return {"seq": found.seq, "at": found.at, "by": found.by, "passed": found.evidence.get("passed"),
            "results": [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []}


def _approval(a: ReleaseEvent) -> dict[str, Any]:
    return {"seq": a.seq, "at": a.at, "by": a.by, "why": a.why, "source": a.evidence.get("source"),
            "pull_request": a.evidence.get("pull_request")}


def _left(later: list[ReleaseEvent], stage: str, version: int) -> dict[str, Any] | None:
    """How ``version`` stopped holding ``stage`` after entering it (None: it still holds it)."""
    for e in later:
        if e.kind not in ("promoted", "rolled_back") or e.stage != stage:
            continue
        if e.version == version:
            return None  # entered again: that entry tells the rest
        how = "rolled_back" if e.kind == "rolled_back" else "replaced"
        return {"how": how, "seq": e.seq, "at": e.at, "by": e.by, "why": e.why, "version": e.version}
    return None
