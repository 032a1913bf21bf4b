"""Checks that span files: references between assets, traffic, step data flow, cycles, paths."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mlops import paths
from mlops.errors import Diagnostic, PathError
from mlops.spec.model import (
    REF_RE,
    STEP_OUTPUT_RE,
    Dataset,
    Endpoint,
    Environment,
    Model,
    Pipeline,
    Project,
    Specs,
    data_source,
)
from mlops.spec.requirements import parse_lockfile, requirement_problem
from mlops.spec.schema import did_you_mean
from mlops.spec.source import SPEC_DIRS, is_spec_path
from mlops.spec.yamlpos import json_path

Locate = Callable[[str, tuple[Any, ...]], tuple[int, int]]
IMPLICIT_TARGETS = ("local",)
# Variables that configure the process itself, not secrets (see mlops.secrets.HOST_ALLOWED).
PROCESS_VARIABLES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TEMP", "TMP", "LANG",
                               "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "PYTHONHOME", "LD_PRELOAD",
                               "LD_LIBRARY_PATH", "PWD"})


class PathView(Protocol):
    """What the path checks need to know of the files (``SpecSource`` provides it)."""

    def resolve(self, path: str, write: bool = False) -> str: ...

    def tracked(self, paths: Iterable[str]) -> dict[str, str]: ...


BATCH_INPUTS = (".csv", ".jsonl", ".ndjson", ".parquet", ".pq")  # mlops.batch.job reads these
BATCH_OUTPUTS = (".csv", ".jsonl", ".ndjson")


class Checker:
    def __init__(self, specs: Specs, locate: Locate, exists: Callable[[str], bool],
                 reserved: dict[str, set[str]], project_valid: bool,
                 read: Callable[[str], bytes | None] | None = None, root: str | None = None,
                 view: PathView | None = None):
        self.specs = specs
        self.locate = locate
        self.exists = exists
        self.read = read  # file contents (lockfiles), when the caller can give them
        self.root = root  # absolute path of the repository, when known (to judge file: URLs)
        self.reserved = reserved  # names defined by files that failed their schema: exist, but unchecked
        self.project_valid = project_valid
        self.view = view  # None: lexical path checks only
        self.out: list[Diagnostic] = []
        self.written: list[tuple[str, tuple[Any, ...], str, str]] = []  # outputs and the store: must be untracked
        self.store = self._store_dir()  # a local store elsewhere than .mlops is off limits too
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

    def path(self, file: str, path: tuple[Any, ...], value: str, must_exist: bool, write: bool = False,
             store: bool = False) -> str | None:
        """Check a path a spec names (see ``mlops.paths``); its normalised form, or None once reported.

        ``write``: the path is created by mlops or a step, so no directory above it may be a
        symbolic link at all (whether it is tracked is checked at the end, for all in one go).
        """
        try:
            norm = paths.spec_path(value)
        except PathError as e:
            self.error(file, path, str(e))
            return None
        if not norm:
            self.error(file, path, f"path {value!r} is the repository root (which holds .git): "
                                   "name a file or folder inside it")
            return None
        names = (".git",) if store else paths.RESERVED
        top = paths.reserved(norm, names)
        if top is not None:
            self.error(file, path, f"path {value!r} is inside {top}/, which specs may not name")
            return None
        if self.store and not store and paths.overlap(norm, self.store):
            self.error(file, path, f"path {value!r} overlaps the artifact store ({self.store})")
            return None
        real = norm
        if self.view is not None:
            try:
                real = self.view.resolve(norm, write)
            except PathError as e:
                self.error(file, path, str(e))
                return None
            top = paths.reserved(real, names)
            if top is not None:
                self.error(file, path, f"path {value!r} leads into {top}/ through a symbolic link")
                return None
        if must_exist and not self.exists(real):
            self.error(file, path, f"path {value!r} does not exist in the repository")
        return norm

    def _store_dir(self) -> str | None:
        store = self.specs.project.store
        if not self.project_valid or store.type != "local":
            return None
        try:
            norm = paths.lexical(store.path or ".mlops")
        except PathError:
            return None
        return norm if norm and paths.reserved(norm) is None else None

    def untracked(self) -> None:
        """What mlops or a step writes must be new: no tracked file there or below (one look-up)."""
        if self.view is None or not self.written:
            return
        found = self.view.tracked(norm for *_, norm in self.written)
        for file, path, value, norm in self.written:
            if norm in found:
                self.error(file, path, paths.tracked_problem(value, norm, found[norm]))

    # -- kinds -------------------------------------------------------------------------------
    def project(self) -> None:
        p = self.specs.project
        names = [s.name for s in p.stages]
        for i, n in enumerate(names):
            if n in names[:i]:
                self.error(p.file, ("stages", i, "name"), f"stage {n!r} is declared twice")
        targets = {t.name for t in p.targets} | set(IMPLICIT_TARGETS)
        self.ref(p.file, ("default_target",), "target", p.default_target, targets)
        if p.store.type == "local" and p.store.path:
            at = ("stores", "artifacts", "path")
            try:
                paths.lexical(p.store.path)
            except PathError:
                self.error(p.file, at, f"path {p.store.path!r} is outside the repository: a spec may only name a "
                                       "store inside it (an operator can point elsewhere with MLOPS_STORE_PATH)")
                return
            norm = self.path(p.file, at, p.store.path, must_exist=False, write=True, store=True)
            if norm is not None and (is_spec_path(norm) or norm.split("/")[0] in SPEC_DIRS):
                self.error(p.file, at, f"path {p.store.path!r} is among the spec files: keep the store apart")
            elif norm is not None:
                self.written.append((p.file, at, p.store.path, norm))
        if self._store_dir() != ".mlops":  # .mlops holds caches, serving state and locks wherever the store is:
            self.written.append((p.file, (), ".mlops", ".mlops"))  # a committed one would forge them
        for i, sink in enumerate(p.notifications):
            if isinstance(sink, dict) and sink.get("type") == "log" and isinstance(sink.get("path"), str):
                self.event_log(p.file, ("notifications", i, "path"), sink["path"])

    def event_log(self, file: str, at: tuple[Any, ...], value: str) -> None:
        """The event log is appended to by mlops: a new file, not a spec, not inside the store's records."""
        norm = self.path(file, at, value, must_exist=False, write=True, store=True)
        if norm is None:
            return
        store = self.specs.project.store
        try:
            store_dir = paths.lexical(store.path or ".mlops") if store.type == "local" else None
        except PathError:
            store_dir = None
        if is_spec_path(norm) or norm.split("/")[0] in SPEC_DIRS:
            self.error(file, at, f"path {value!r} is among the spec files: the event log is written by mlops")
        elif store_dir and paths.overlap(norm, store_dir) and posixpath.dirname(norm) != store_dir:
            self.error(file, at, f"path {value!r} is inside the artifact store ({store_dir}): "
                                 f"put the log directly in {store_dir}/ or outside it")
        else:
            self.written.append((file, at, value, norm))

    def environments(self) -> None:
        for env in self.specs.environments.values():
            self.environment(env)

    def environment(self, env: Environment) -> None:
        for i, req in enumerate(env.requirements):
            problem = requirement_problem(req, self.root)
            if problem is not None:
                self.error(env.file, ("requirements", i), problem)
        if env.lockfile:
            norm = self.path(env.file, ("lockfile",), env.lockfile, must_exist=True)
            if norm is not None:  # only a path that stays inside the repository is ever read
                self.lockfile(env.file, norm)

    def lockfile(self, spec_file: str, norm: str) -> None:
        """A lockfile's lines go to pip: each must be a requirement (with --hash options), reported
        at the lockfile's own line."""
        data = self.read(norm) if self.read is not None else None
        if data is None:
            return
        for line, problem in parse_lockfile(data, self.root)[1]:
            self.out.append(Diagnostic(norm, line, 1, "$", f"{problem} (lockfile of {spec_file})"))

    def datasets(self) -> None:
        for ds in self.specs.datasets.values():
            self.dataset(ds)

    def dataset(self, ds: Dataset) -> None:
        self.path(ds.file, ("path",), ds.path, must_exist=False)

    def pipeline(self, p: Pipeline) -> None:
        self.ref(p.file, ("environment",), "environment", p.environment, self.names("environments"))
        steps = {s.name: s for s in p.steps}
        for j, secret in enumerate(p.secrets):
            self.secret_name(p.file, ("secrets", j), secret)
        produced: list[tuple[str, str, str]] = []  # (normalised path, step, output)
        for i, step in enumerate(p.steps):
            at: tuple[Any, ...] = ("steps", i)
            if [s.name for s in p.steps].index(step.name) != i:
                self.error(p.file, at + ("name",), f"step {step.name!r} is declared twice")
            self.ref(p.file, at + ("environment",), "environment", step.environment, self.names("environments"))
            for out_name, out_path in step.outputs.items():
                self.output(p.file, at + ("outputs", out_name), step.name, out_name, out_path, produced,
                            self.read_paths(step.inputs))
            for in_name, value in step.inputs.items():
                self.step_input(p, steps, at + ("inputs", in_name), value)
            for c, code in enumerate(step.code):
                self.path(p.file, at + ("code", c), code, must_exist=True)
            for j, secret in enumerate(step.secrets):
                self.secret_name(p.file, at + ("secrets", j), secret)
            for secret in sorted(set(p.step_secrets(step)) & step.env.keys()):
                self.error(p.file, at + ("env", secret), f"{secret} is declared a secret of the "
                           f"{'step' if secret in step.secrets else 'pipeline'}: its value comes from the host "
                           "environment at run time, never from the spec")
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

    def secret_name(self, file: str, at: tuple[Any, ...], name: str) -> None:
        if name.upper().startswith("MLOPS_"):
            self.error(file, at, f"secret {name!r}: MLOPS_* variables are set by mlops itself")
        elif name in PROCESS_VARIABLES:
            self.error(file, at, f"secret {name!r}: it configures how programs run, so every step gets it already; "
                                 "a secret is a variable of its own (its value would be masked everywhere)")

    def output(self, file: str, at: tuple[Any, ...], step: str, name: str, value: str,
               produced: list[tuple[str, str, str]], inputs: list[tuple[str, str]]) -> None:
        """An output is a new path that nothing else owns: no spec, input or other output."""
        before = len(self.out)
        norm = self.path(file, at, value, must_exist=False, write=True)
        if norm is None:
            return
        if is_spec_path(norm) or norm in SPEC_DIRS:
            self.error(file, at, f"output {value!r} would overwrite specs: a step may not write spec files")
        for in_name, in_path in inputs:
            if paths.overlap(norm, in_path):
                self.error(file, at, f"output {value!r} overlaps the step's input {in_name!r} ({in_path}): "
                                     "a step may not write what it reads")
        for other, other_step, other_name in produced:
            if other == norm and other_step != step:
                self.error(file, at, f"{value!r} is also an output of step {other_step!r}")
            elif paths.overlap(norm, other) and (other_step, other_name) != (step, name):
                self.error(file, at, f"output {value!r} overlaps output {other_name!r} ({other}) of step "
                                     f"{other_step!r}: each output owns its whole path")
        produced.append((norm, step, name))
        if len(self.out) == before:
            self.written.append((file, at, value, norm))

    def read_paths(self, inputs: dict[str, str]) -> list[tuple[str, str]]:
        """(input name, normalised path) of the inputs that are repository paths or datasets."""
        found = []
        for name, value in inputs.items():
            m = REF_RE.fullmatch(value)
            if m is not None:
                parts = m.group(1).split(".")
                ds = self.specs.datasets.get(parts[1]) if parts[0] == "datasets" and len(parts) == 2 else None
                if ds is None:
                    continue
                value = ds.path
            try:
                found.append((name, paths.lexical(value)))
            except PathError:
                continue  # reported where the input or dataset is checked
        return found

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
        stages = {s.name: s for s in self.specs.project.stages}
        for stage in m.stages:
            if self.ref(m.file, ("stages", stage), "stage", stage, stages) and stages[stage].auto:
                self.error(m.file, ("stages", stage), f"stage {stage!r} is automatic (every new version whose gates "
                                                      "pass enters it): it takes no pin")
        if m.evaluation is not None:
            self.data_ref(m, ("evaluation", "data"), m.evaluation.data)
        if m.monitoring.reference is not None:
            self.data_ref(m, ("monitoring", "reference"), m.monitoring.reference)

    def data_ref(self, m: Model, at: tuple[str | int, ...], data: str) -> None:
        """``evaluation.data`` or ``monitoring.reference``: an output of a step of the model's pipeline,
        a dataset or a repository file."""
        p = self.specs.pipelines.get(m.source.pipeline or "")
        shaped = STEP_OUTPUT_RE.fullmatch(data) is not None
        if p is None and m.source.pipeline and shaped:
            return  # the pipeline is unknown or invalid (reported where it is): its steps cannot be judged
        steps = {s.name: s for s in p.steps} if p is not None else {}
        kind, name, out = data_source(data, steps)
        if kind == "dataset":
            self.ref(m.file, at, "dataset", name, self.names("datasets"))
        elif kind == "step":
            if out not in steps[name].outputs:
                self.error(m.file, at, f"step {name!r} of pipeline {m.source.pipeline!r} has no output {out!r}"
                                       f"{did_you_mean(out, set(steps[name].outputs))}")
        elif "${" in name:
            self.error(m.file, at, f"unknown reference {name!r}: use STEP.OUTPUT, ${{datasets.NAME}} or a path")
        elif shaped and steps and not self.exists(name):
            step = name.partition(".")[0]
            self.error(m.file, at, f"{name!r} is no output of pipeline {m.source.pipeline!r} (it has no step "
                                   f"{step!r}{did_you_mean(step, set(steps))}) nor a file in the repository")
        else:
            norm = self.path(m.file, at, name, must_exist=False)
            owner = next(((pl.name, st.name, o) for pl in self.specs.pipelines.values() for st in pl.steps
                          for o, rel in st.outputs.items() if norm and paths.overlap(norm, posixpath.normpath(rel))),
                         None)
            if owner is not None:  # the workspace copy may have changed since the run: use the recorded bytes
                hint = f"{owner[1]}.{owner[2]}" if owner[0] == m.source.pipeline else "a dataset"
                self.error(m.file, at, f"path {name!r} is written by step {owner[1]!r} of pipeline {owner[0]!r}: "
                                       f"name it as {hint}, so the bytes the run recorded are used")
            elif norm is not None:
                self.path(m.file, at, name, must_exist=True)

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
        if isinstance(e.auth.get("secret"), str):  # the key would be a variable anyone can guess (HOME, USER...)
            self.secret_name(e.file, ("auth", "secret"), e.auth["secret"])
        steps = e.rollout.get("steps")
        if steps and (steps != sorted(set(steps)) or steps[-1] != 100):
            self.error(e.file, ("rollout", "steps"), "canary steps must increase strictly and end at 100")
        for i, rule in enumerate(e.monitoring.get("alerts") or []):
            if isinstance(rule, dict) and rule.get("deployment") is not None:
                self.ref(e.file, ("monitoring", "alerts", i, "deployment"), "deployment", rule["deployment"], names)
        drift = e.monitoring.get("drift") or {}
        both = set(drift.get("categorical") or ()) & set(drift.get("numerical") or ())
        if both:
            self.error(e.file, ("monitoring", "drift"), f"{sorted(both)[0]!r} is listed as categorical and numerical")
        if e.type == "batch":
            self.batch_endpoint(e)

    def batch_endpoint(self, e: Endpoint) -> None:
        """One deployment; an input to read and a new output (and its errors log) to write."""
        if len(e.deployments) != 1:
            self.error(e.file, ("deployments",), f"a batch endpoint has exactly one deployment (it has "
                                                 f"{len(e.deployments)})")
        if not e.batch:
            self.error(e.file, (), "a batch endpoint needs batch: {input, output}")
            return
        value_in, value_out = e.batch.get("input"), e.batch.get("output")
        norm_in = self.path(e.file, ("batch", "input"), value_in, must_exist=False) if value_in else None
        if norm_in is not None and posixpath.splitext(norm_in.lower())[1] not in BATCH_INPUTS:
            self.error(e.file, ("batch", "input"), f"{value_in!r}: the input must end with one of "
                                                   f"{', '.join(BATCH_INPUTS)} (it names the format)")
        if not value_out:
            return
        at = ("batch", "output")
        before = len(self.out)
        norm = self.path(e.file, at, value_out, must_exist=False, write=True)
        if norm is None:
            return
        if is_spec_path(norm) or norm in SPEC_DIRS:
            self.error(e.file, at, f"output {value_out!r} would overwrite specs")
        elif posixpath.splitext(norm.lower())[1] not in BATCH_OUTPUTS:
            self.error(e.file, at, f"{value_out!r}: the output must end with one of {', '.join(BATCH_OUTPUTS)} "
                                   "(it names the format)")
        if norm_in is not None and paths.overlap(norm, norm_in):
            self.error(e.file, at, f"output {value_out!r} overlaps the input {value_in!r}: predictions go to a new file")
        if len(self.out) == before:
            self.written.append((e.file, at, value_out, norm))
            self.written.append((e.file, at, value_out + ".errors.jsonl", norm + ".errors.jsonl"))

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
        self.untracked()
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
                  reserved: dict[str, set[str]] | None = None, project_valid: bool = True,
                  read: Callable[[str], bytes | None] | None = None, root: str | None = None,
                  view: PathView | None = None) -> list[Diagnostic]:
    """The cross-file problems of one asset built from a file that failed its schema, so that file's
    reference errors are reported along with its schema errors. Values of the wrong type that slipped
    through its builder can make a check fail: then this asset reports nothing more (its schema
    errors already stand)."""
    if isinstance(asset, Project):
        specs = dataclasses.replace(specs, project=asset)
    checker = Checker(specs, locate, exists, reserved or {}, project_valid, read, root, view)
    run: dict[type, Callable[[Any], None]] = {
        Project: lambda _: checker.project(), Environment: checker.environment, Dataset: checker.dataset,
        Pipeline: checker.pipeline, Model: checker.model, Endpoint: checker.endpoint}
    try:
        run[type(asset)](asset)
        checker.untracked()
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, PathError):
        return []
    return checker.out


def check(specs: Specs, locate: Locate, exists: Callable[[str], bool],
          reserved: dict[str, set[str]] | None = None, project_valid: bool = True,
          read: Callable[[str], bytes | None] | None = None, root: str | None = None,
          view: PathView | None = None) -> list[Diagnostic]:
    """Every cross-file problem among the specs that passed their schemas.

    ``read`` gives file contents (lockfiles), ``root`` the repository's absolute path (to judge file:
    URLs), ``view`` (the spec source) lets the path checks see symbolic links and tracked files.
    """
    return Checker(specs, locate, exists, reserved or {}, project_valid, read, root, view).run()
