"""The asset graph: every asset of a revision, its own fingerprint, and what it depends on.

Edges point from a dependency to its dependents (environment -> step -> pipeline -> model -> endpoint;
dataset -> step; code files -> step; a stage pin -> the endpoints serving that stage). Assets are
identified as ``kind/name`` (steps as ``step/PIPELINE/STEP``, stage pins as ``stage/MODEL/STAGE``).

A stage pin (``stages: {prod: 3}`` in a model spec) is an asset of its own, not part of the model's
fingerprint: moving a pin is a promotion (gates, then the stage moves), never a retraining; and
retraining a model (a new version) never moves a pinned stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops.graph.code import CodeScanner, CodeTree
from mlops.spec.crossref import step_dependencies
from mlops.spec.model import REF_RE, Endpoint, Model, Pipeline, Specs

COSMETIC = ("file", "description")


@dataclass(frozen=True)
class Asset:
    id: str
    kind: str  # environment | dataset | step | pipeline | model | stage | endpoint
    name: str
    fingerprint: str  # hash of the asset's own definition (cosmetic fields excluded)
    deps: tuple[str, ...] = ()  # ids of assets it depends on
    files: tuple[str, ...] = ()  # repository files it depends on ("dir/" = everything below)
    spec_file: str = ""


@dataclass
class AssetGraph:
    assets: dict[str, Asset] = field(default_factory=dict)
    # ``order()`` once worked out (with the number of assets then): a plan asks for it several times
    _order: tuple[int, list[str]] | None = field(default=None, init=False, repr=False, compare=False)

    def add(self, asset: Asset) -> None:
        self.assets[asset.id] = asset
        self._order = None

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {a: [] for a in self.assets}
        for a in self.assets.values():
            for d in a.deps:
                if d in out:
                    out[d].append(a.id)
        return out

    def order(self) -> list[str]:
        """Asset ids, dependencies before dependents (stable: by kind rank, then id)."""
        if self._order is None or self._order[0] != len(self.assets):
            self._order = (len(self.assets), self._work_out_order())
        return list(self._order[1])

    def _work_out_order(self) -> list[str]:
        assets = self.assets
        done: set[str] = set()
        out: list[str] = []

        def visit(i: str) -> None:
            done.add(i)
            deps = assets[i].deps
            for d in sorted(deps) if len(deps) > 1 else deps:
                if d not in done and d in assets:
                    visit(d)
            out.append(i)

        for _, i in sorted((KIND_RANK[a.kind], i) for i, a in assets.items()):
            if i not in done:
                visit(i)
        return out


KIND_RANK = {"environment": 0, "dataset": 1, "step": 2, "pipeline": 3, "model": 4, "stage": 5, "endpoint": 6}


def _plain(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {k: v for k, v in vars(o).items() if k not in COSMETIC}
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    return str(o)


def fingerprint(value: Any) -> str:
    """Content hash of a spec value (cosmetic fields such as description excluded)."""
    blob = json.dumps(value, sort_keys=True, default=_plain, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Reuse:
    """Assets of the other side of a diff that can be taken as they are, instead of recomputed.

    An asset depends only on its spec file's content, plus (for steps) on the code files it found;
    so it can be reused when its spec file has the same blob id on both sides, none of its files
    changed, and (for steps) no Python file was added or removed, which could change how imports resolve.
    """

    graph: AssetGraph
    other_digests: dict[str, str]  # spec path -> blob id, on the other side
    digests: dict[str, str]  # spec path -> blob id, on this side
    changed: set[str]
    imports_may_move: bool

    def take(self, spec_file: str, ids: list[str], code: bool) -> list[Asset] | None:
        if self.digests.get(spec_file) != self.other_digests.get(spec_file) or (code and self.imports_may_move):
            return None
        assets = [self.graph.assets.get(i) for i in ids]
        if any(a is None or a.spec_file != spec_file for a in assets):
            return None
        found = [a for a in assets if a is not None]
        if code and any(touched(a.files, self.changed) for a in found):
            return None
        return found


def touched(files: tuple[str, ...], changed: set[str]) -> bool:
    """Whether any of ``changed`` is one of ``files`` (a "dir/" entry: anything below it) or below one."""
    for f in files:
        if f in changed or (f.endswith("/") and any(c.startswith(f) for c in changed)):
            return True
        if any(c.startswith(f + "/") for c in changed):
            return True
    return False


def build_graph(specs: Specs, source: CodeTree, scanner: CodeScanner | None = None,
                reuse: Reuse | None = None) -> AssetGraph:
    """The asset graph of one revision; ``source`` reads repository files at that revision."""
    scanner = scanner or CodeScanner(source)
    g = AssetGraph()

    def add(spec_file: str, ids: list[str], make: Callable[[], list[Asset]], code: bool = False) -> None:
        for asset in (reuse.take(spec_file, ids, code) if reuse else None) or make():
            g.add(asset)

    for env in specs.environments.values():
        add(env.file, [f"environment/{env.name}"], lambda env=env: [  # type: ignore[misc]
            Asset(f"environment/{env.name}", "environment", env.name, fingerprint(env),
                  files=(env.lockfile,) if env.lockfile else (), spec_file=env.file)])
    for ds in specs.datasets.values():
        add(ds.file, [f"dataset/{ds.name}"], lambda ds=ds: [  # type: ignore[misc]
            Asset(f"dataset/{ds.name}", "dataset", ds.name, fingerprint(ds), files=(ds.path,), spec_file=ds.file)])
    for p in specs.pipelines.values():
        ids = [f"step/{p.name}/{s.name}" for s in p.steps] + [f"pipeline/{p.name}"]
        add(p.file, ids, lambda p=p: pipeline_assets(p, scanner), code=True)  # type: ignore[misc]
    for m in specs.models.values():
        ids = [f"model/{m.name}"] + [f"stage/{m.name}/{s}" for s in sorted(m.stages)]
        add(m.file, ids, lambda m=m: [_model_asset(m), *_stage_assets(m)])  # type: ignore[misc]
    for e in specs.endpoints.values():  # never reused: its edges follow the models' pins, in other files
        g.add(_endpoint_asset(e, specs))
    return g


def _model_asset(m: Model) -> Asset:
    deps = (f"pipeline/{m.source.pipeline}",) if m.source.pipeline else ()
    files = tuple(m.source.files) + ((m.source.metrics,) if m.source.metrics and not m.source.pipeline else ())
    return Asset(f"model/{m.name}", "model", m.name, fingerprint(dataclasses.replace(m, stages={})), deps, files,
                 m.file)


def _stage_assets(m: Model) -> list[Asset]:
    """One asset per pinned stage: its fingerprint is the version it pins (no dependencies: a new
    version of the model does not move a pinned stage)."""
    return [Asset(f"stage/{m.name}/{stage}", "stage", f"{m.name}/{stage}", fingerprint({"version": version}),
                  spec_file=m.file) for stage, version in sorted(m.stages.items())]


def _endpoint_asset(e: Endpoint, specs: Specs) -> Asset:
    deps_set = set()
    for d in e.deployments:  # a deployment serving a pinned stage follows the pin, not every new version
        model = specs.models.get(d.model.name)
        pinned = d.model.stage is not None and model is not None and d.model.stage in model.stages
        deps_set.add(f"stage/{d.model.name}/{d.model.stage}" if pinned else f"model/{d.model.name}")
    deps_set |= {f"environment/{d.environment}" for d in e.deployments if d.environment}
    # A batch endpoint's input is what it scores: a commit that changes it changes the endpoint.
    files = (e.batch["input"],) if e.type == "batch" and isinstance(e.batch.get("input"), str) else ()
    return Asset(f"endpoint/{e.name}", "endpoint", e.name, fingerprint(e), tuple(sorted(deps_set)), files,
                 spec_file=e.file)


def pipeline_assets(p: Pipeline, scanner: CodeScanner) -> list[Asset]:
    """The assets of one pipeline: its steps (with their code files), then the pipeline itself."""
    pipeline_def = {"environment": p.environment, "params": p.params, "steps": [s.name for s in p.steps]}
    out: list[Asset] = []
    step_ids = []
    for s in p.steps:
        sid = f"step/{p.name}/{s.name}"
        step_ids.append(sid)
        deps = {f"step/{p.name}/{u}" for u in step_dependencies(s.inputs.values())}
        env = p.step_environment(s)
        if env:
            deps.add(f"environment/{env}")
        files = scanner.step_code(s)
        for value in s.inputs.values():
            m = REF_RE.fullmatch(value)
            if m is None:
                files.add(value)
            elif m.group(1).startswith("datasets."):
                deps.add(f"dataset/{m.group(1).split('.', 1)[1]}")
        own: dict[str, Any] = {"step": fingerprint(s), "params": p.step_params(s), "environment": env}
        if p.secrets:  # pipeline-level secrets are the step's too (its own are in its fingerprint)
            own["secrets"] = p.step_secrets(s)
        out.append(Asset(sid, "step", f"{p.name}/{s.name}", fingerprint(own), tuple(sorted(deps)),
                         tuple(sorted(files)), p.file))
    out.append(Asset(f"pipeline/{p.name}", "pipeline", p.name, fingerprint(pipeline_def), tuple(step_ids),
                     spec_file=p.file))
    return out
