"""Checks that span files: references between assets, traffic, step data flow, cycles, paths."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable
from typing import Any

from mlops.errors import Diagnostic
from mlops.spec.model import REF_RE, Dataset, Endpoint, Environment, Model, Pipeline, Project, Specs
from mlops.spec.schema import did_you_mean
from mlops.spec.yamlpos import json_path

Locate = Callable[[str, tuple[Any, ...]], tuple[int, int]]
IMPLICIT_TARGETS = ("local",)


class Checker:
    def __init__(self, specs: Specs, locate: Locate, exists: Callable[[str], bool],
                 reserved: dict[str, set[str]], project_valid: bool):
        self.specs = specs
        self.locate = locate
        self.exists = exists
        self.reserved = reserved  # names defined by files that failed their schema: exist, but unchecked
        self.project_valid = project_valid
        self.out: list[Diagnostic] = []
        self._names = {t: set(getattr(specs, t)) | reserved.get(t, set())
                       for t in ("environments", "datasets", "pipelines", "models", "endpoints")}

    def names(self, table: str) -> set[str]:
        return self._names[table]

    def error(self, file: str, path: tuple[Any, ...], message: str) -> None:
        line, col = self.locate(file, path)
        self.out.append(Diagnostic(file, line, col, json_path(path), message))

    def ref(self, file: str, path: tuple[Any, ...], what: str, name: str | None, known: Any) -> bool:
        if name is None or name in known:
            return True
        if not known and not self.project_valid and what in ("target", "stage"):
            return False  # the project file itself is invalid and already reported
        self.error(file, path, f"{what} {name!r} does not exist{did_you_mean(name, set(known))}")
        return False

    def path(self, file: str, path: tuple[Any, ...], value: str, must_exist: bool) -> None:
        norm = posixpath.normpath(value)
        if value.startswith(("/", "~")) or norm == ".." or norm.startswith("../"):
            self.error(file, path, f"path {value!r} escapes the repository")
        elif must_exist and not self.exists(norm):
            self.error(file, path, f"path {value!r} does not exist in the repository")

    # -- kinds -------------------------------------------------------------------------------
    def project(self) -> None:
        p = self.specs.project
        names = [s.name for s in p.stages]
        for i, n in enumerate(names):
            if n in names[:i]:
                self.error(p.file, ("stages", i, "name"), f"stage {n!r} is declared twice")
        targets = {t.name for t in p.targets} | set(IMPLICIT_TARGETS)
        self.ref(p.file, ("default_target",), "target", p.default_target, targets)

    def environments(self) -> None:
        for env in self.specs.environments.values():
            self.environment(env)

    def environment(self, env: Environment) -> None:
        if env.lockfile:
            self.path(env.file, ("lockfile",), env.lockfile, must_exist=True)

    def datasets(self) -> None:
        for ds in self.specs.datasets.values():
            self.dataset(ds)

    def dataset(self, ds: Dataset) -> None:
        self.path(ds.file, ("path",), ds.path, must_exist=False)

    def pipeline(self, p: Pipeline) -> None:
        self.ref(p.file, ("environment",), "environment", p.environment, self.names("environments"))
        steps = {s.name: s for s in p.steps}
        produced: dict[str, str] = {}
        for i, step in enumerate(p.steps):
            at: tuple[Any, ...] = ("steps", i)
            if [s.name for s in p.steps].index(step.name) != i:
                self.error(p.file, at + ("name",), f"step {step.name!r} is declared twice")
            self.ref(p.file, at + ("environment",), "environment", step.environment, self.names("environments"))
            for out_name, out_path in step.outputs.items():
                self.path(p.file, at + ("outputs", out_name), out_path, must_exist=False)
                norm = posixpath.normpath(out_path)
                if norm in produced and produced[norm] != step.name:
                    self.error(p.file, at + ("outputs", out_name),
                               f"{out_path!r} is also an output of step {produced[norm]!r}")
                produced.setdefault(norm, step.name)
            for in_name, value in step.inputs.items():
                self.step_input(p, steps, at + ("inputs", in_name), value)
            for c, code in enumerate(step.code):
                self.path(p.file, at + ("code", c), code, must_exist=True)
            if step.metrics is not None and step.metrics not in step.outputs:
                self.error(p.file, at + ("metrics",), f"metrics names output {step.metrics!r}, which the step does "
                                                      f"not declare{did_you_mean(step.metrics, set(step.outputs))}")
            scope = {"inputs": step.inputs, "outputs": step.outputs, "params": p.step_params(step)}
            for a, arg in enumerate(step.command):
                for ref in REF_RE.findall(arg):
                    section, _, key = ref.partition(".")
                    if section not in scope:
                        self.error(p.file, at + ("command", a), f"unknown reference ${{{ref}}}: use ${{inputs.X}}, "
                                                                 "${outputs.X} or ${params.X}")
                    elif key not in scope[section]:
                        self.error(p.file, at + ("command", a), f"${{{ref}}}: the step has no {section[:-1]} "
                                                                 f"{key!r}{did_you_mean(key, set(scope[section]))}")
        self.cycles(p)

    def step_input(self, p: Pipeline, steps: dict[str, Any], at: tuple[Any, ...], value: str) -> None:
        m = REF_RE.fullmatch(value)
        if m is None:
            self.path(p.file, at, value, must_exist=False)
            return
        parts = m.group(1).split(".")
        if parts[0] == "datasets" and len(parts) == 2:
            self.ref(p.file, at, "dataset", parts[1], self.names("datasets"))
        elif parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            if self.ref(p.file, at, "step", parts[1], steps) and parts[3] not in steps[parts[1]].outputs:
                outs = set(steps[parts[1]].outputs)
                self.error(p.file, at, f"consumes output {parts[3]!r} of step {parts[1]!r}, which no step produces"
                                       f"{did_you_mean(parts[3], outs)}")
        else:
            self.error(p.file, at, f"unknown reference {value!r}: use ${{steps.STEP.outputs.NAME}} or ${{datasets.NAME}}")

    def cycles(self, p: Pipeline) -> None:
        deps = {s.name: set(step_dependencies(s.inputs.values())) & {x.name for x in p.steps} for s in p.steps}
        state: dict[str, int] = {}

        def visit(n: str, trail: list[str]) -> None:
            state[n] = 1
            for d in sorted(deps[n]):
                if state.get(d) == 1:
                    cycle = trail[trail.index(d):] + [d] if d in trail else [n, d]
                    i = [s.name for s in p.steps].index(n)
                    self.error(p.file, ("steps", i, "inputs"), "steps form a cycle: " + " -> ".join(cycle))
                elif d not in state:
                    visit(d, trail + [d])
            state[n] = 2

        for s in p.steps:
            if s.name not in state:
                visit(s.name, [s.name])

    def model(self, m: Model) -> None:
        src = m.source
        known = self.ref(m.file, ("source", "pipeline"), "pipeline", src.pipeline, self.names("pipelines"))
        if src.pipeline is not None and known and src.pipeline in self.specs.pipelines:
            p = self.specs.pipelines[src.pipeline]
            names = {s.name: s for s in p.steps}
            for field in ("artifact", "metrics"):
                value = getattr(src, field)
                if value is None:
                    continue
                step, _, out = value.partition(".")
                if self.ref(m.file, ("source", field), f"step of pipeline {p.name!r}", step, names) and \
                        out not in names[step].outputs:
                    self.error(m.file, ("source", field), f"step {step!r} has no output {out!r}"
                                                          f"{did_you_mean(out, set(names[step].outputs))}")
        for i, f in enumerate(src.files):
            self.path(m.file, ("source", "files", i), f, must_exist=True)
        if src.pipeline is None and src.metrics:
            self.path(m.file, ("source", "metrics"), src.metrics, must_exist=True)

    def endpoint(self, e: Endpoint) -> None:
        targets = {t.name for t in self.specs.project.targets} | set(IMPLICIT_TARGETS)
        self.ref(e.file, ("target",), "target", e.target, targets)
        stages = {s.name for s in self.specs.project.stages}
        names = [d.name for d in e.deployments]
        for i, d in enumerate(e.deployments):
            at: tuple[Any, ...] = ("deployments", i)
            if names.index(d.name) != i:
                self.error(e.file, at + ("name",), f"deployment {d.name!r} is declared twice")
            if self.ref(e.file, at + ("model",), "model", d.model.name, self.names("models")) and d.model.stage:
                self.ref(e.file, at + ("model",), "stage", d.model.stage, stages)
            self.ref(e.file, at + ("environment",), "environment", d.environment, self.names("environments"))
        for name in e.traffic:
            self.ref(e.file, ("traffic", name), "deployment", name, names)
        if e.type == "online":
            if not e.traffic and len(names) > 1:
                self.error(e.file, (), "traffic is required when an endpoint has more than one deployment")
            elif e.traffic and sum(e.traffic.values()) != 100:
                self.error(e.file, ("traffic",), f"traffic weights sum to {sum(e.traffic.values())}, not 100")
        if e.mirror:
            self.ref(e.file, ("mirror", "deployment"), "deployment", e.mirror.get("deployment"), names)
        steps = e.rollout.get("steps")
        if steps and (steps != sorted(set(steps)) or steps[-1] != 100):
            self.error(e.file, ("rollout", "steps"), "canary steps must increase strictly and end at 100")

    def run(self) -> list[Diagnostic]:
        if self.project_valid:
            self.project()
        self.environments()
        self.datasets()
        for p in self.specs.pipelines.values():
            self.pipeline(p)
        for m in self.specs.models.values():
            self.model(m)
        for e in self.specs.endpoints.values():
            self.endpoint(e)
        return self.out


def step_dependencies(inputs: Any) -> list[str]:
    """Names of the steps whose outputs these input values reference."""
    out = []
    for value in inputs:
        m = REF_RE.fullmatch(value)
        if m and m.group(1).startswith("steps."):
            out.append(m.group(1).split(".")[1])
    return out


def check_partial(specs: Specs, asset: Any, locate: Locate, exists: Callable[[str], bool],
                  reserved: dict[str, set[str]] | None = None, project_valid: bool = True) -> list[Diagnostic]:
    """The cross-file problems of one asset built from a file that failed its schema, so that file's
    reference errors are reported along with its schema errors. Values of the wrong type that slipped
    through its builder can make a check fail: then this asset reports nothing more (its schema
    errors already stand)."""
    if isinstance(asset, Project):
        specs = dataclasses.replace(specs, project=asset)
    checker = Checker(specs, locate, exists, reserved or {}, project_valid)
    run: dict[type, Callable[[Any], None]] = {
        Project: lambda _: checker.project(), Environment: checker.environment, Dataset: checker.dataset,
        Pipeline: checker.pipeline, Model: checker.model, Endpoint: checker.endpoint}
    try:
        run[type(asset)](asset)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError):
        return []
    return checker.out


def check(specs: Specs, locate: Locate, exists: Callable[[str], bool],
          reserved: dict[str, set[str]] | None = None, project_valid: bool = True) -> list[Diagnostic]:
    """Every cross-file problem among the specs that passed their schemas."""
    return Checker(specs, locate, exists, reserved or {}, project_valid).run()
