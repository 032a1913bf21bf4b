"""The asset graph: every asset of a revision, its own fingerprint, and what it depends on.

Edges point from a dependency to its dependents (environment -> step -> pipeline -> model -> endpoint;
dataset -> step; code files -> step). Assets are identified as ``kind/name`` (steps as ``step/PIPELINE/STEP``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mlops.graph.code import CodeScanner, CodeSource
from mlops.spec.crossref import step_dependencies
from mlops.spec.model import REF_RE, Pipeline, Specs

COSMETIC = ("file", "description")


@dataclass(frozen=True)
class Asset:
    id: str
    kind: str  # environment | dataset | step | pipeline | model | endpoint
    name: str
    fingerprint: str  # hash of the asset's own definition (cosmetic fields excluded)
    deps: tuple[str, ...] = ()  # ids of assets it depends on
    files: tuple[str, ...] = ()  # repository files it depends on ("dir/" = everything below)
    spec_file: str = ""


@dataclass
class AssetGraph:
    assets: dict[str, Asset] = field(default_factory=dict)

    def add(self, asset: Asset) -> None:
        self.assets[asset.id] = asset

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {a: [] for a in self.assets}
        for a in self.assets.values():
            for d in a.deps:
                if d in out:
                    out[d].append(a.id)
        return out

    def order(self) -> list[str]:
        """Asset ids, dependencies before dependents (stable: by kind rank, then id)."""
        done: set[str] = set()
        out: list[str] = []

        def visit(i: str) -> None:
            if i in done:
                return
            done.add(i)
            for d in sorted(self.assets[i].deps):
                if d in self.assets:
                    visit(d)
            out.append(i)

        for i in sorted(self.assets, key=lambda i: (KIND_RANK[self.assets[i].kind], i)):
            visit(i)
        return out


KIND_RANK = {"environment": 0, "dataset": 1, "step": 2, "pipeline": 3, "model": 4, "endpoint": 5}


def fingerprint(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {k: v for k, v in dataclasses.asdict(value).items() if k not in COSMETIC}
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def build_graph(specs: Specs, source: CodeSource, scanner: CodeScanner | None = None) -> AssetGraph:
    """The asset graph of one revision; ``source`` reads repository files at that revision."""
    scanner = scanner or CodeScanner(source)
    g = AssetGraph()
    for env in specs.environments.values():
        g.add(Asset(f"environment/{env.name}", "environment", env.name, fingerprint(env),
                    files=(env.lockfile,) if env.lockfile else (), spec_file=env.file))
    for ds in specs.datasets.values():
        g.add(Asset(f"dataset/{ds.name}", "dataset", ds.name, fingerprint(ds), files=(ds.path,), spec_file=ds.file))
    for p in specs.pipelines.values():
        _add_pipeline(g, p, scanner)
    for m in specs.models.values():
        deps = (f"pipeline/{m.source.pipeline}",) if m.source.pipeline else ()
        files = tuple(m.source.files) + ((m.source.metrics,) if m.source.metrics and not m.source.pipeline else ())
        g.add(Asset(f"model/{m.name}", "model", m.name, fingerprint(m), deps, files, m.file))
    for e in specs.endpoints.values():
        deps_set = {f"model/{d.model.name}" for d in e.deployments}
        deps_set |= {f"environment/{d.environment}" for d in e.deployments if d.environment}
        g.add(Asset(f"endpoint/{e.name}", "endpoint", e.name, fingerprint(e), tuple(sorted(deps_set)),
                    spec_file=e.file))
    return g


def _add_pipeline(g: AssetGraph, p: Pipeline, scanner: CodeScanner) -> None:
    pipeline_def = {"environment": p.environment, "params": p.params, "steps": [s.name for s in p.steps]}
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
        own = {"step": fingerprint(s), "params": p.step_params(s), "environment": env}
        g.add(Asset(sid, "step", f"{p.name}/{s.name}", fingerprint(own), tuple(sorted(deps)), tuple(sorted(files)),
                    p.file))
    g.add(Asset(f"pipeline/{p.name}", "pipeline", p.name, fingerprint(pipeline_def), tuple(step_ids),
                spec_file=p.file))
