"""Run a pipeline: each step once, in dependency order, restored from the cache when possible.

The main thread walks the DAG in topological order. For each step whose parents all succeeded it
computes the cache key (cheap: digests come from the stat cache) and, on a hit, makes the
workspace hold the cached outputs (copying nothing when it already does: the no-op fast path).
Steps that must run are started as subprocesses on worker threads, at most ``jobs`` at a time.
A failing step (non-zero exit, timeout, missing output) stops its descendants only; outputs of
succeeded steps are cached, so re-running resumes where the failure was.

Steps run with cwd = the repository root and the environment described in ``process``
(``MLOPS_PARAMS``, ``MLOPS_STEP``, ``MLOPS_PIPELINE``, ``MLOPS_RUN_ID``...). One run of a pipeline
at a time per workspace (``lock``); the lock is inherited by the step processes.
"""

from __future__ import annotations

import json
import os
import posixpath
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops import paths
from mlops.errors import MlopsError, PathError, PipelineError
from mlops.pipelines.cache import (
    CacheEntry,
    StepCache,
    capture_outputs,
    holds,
    remove_output,
    restore_output,
)
from mlops.pipelines.cachekey import step_key
from mlops.pipelines.code import CodeScanner
from mlops.pipelines.dag import Dag, build_dag
from mlops.pipelines.digests import Digest, StatCache
from mlops.pipelines.environment import HostEnvironment, StepEnvironment
from mlops.pipelines.lock import acquire_lock
from mlops.pipelines.progress import Progress, make_progress
from mlops.pipelines.record import RunRecord, StepRecord, new_run_id, now_iso, save_run
from mlops.pipelines.refs import resolve_inputs, substitute_command, where
from mlops.spec.model import Pipeline, Step
from mlops.store.protocol import ArtifactStore

if TYPE_CHECKING:
    from mlops.lineage import GitLineage
    from mlops.pipelines.process import Processes

CACHE_DIR = Path(".mlops") / "cache"  # hashes.json (the stat cache) lives here
OWN_DIR = CACHE_DIR / "pipelines"  # imports.json, commits.json, memo/<pipeline>.json, locks/, logs/, tmp/
MAX_METRICS_BYTES = 1 << 20  # metrics go into every run record and model version: keep them small


class _Plan:
    """A step ready to run: everything that went into its cache key."""

    __slots__ = ("step", "argv", "params", "environment", "inputs", "key")

    def __init__(self, step: Step, argv: tuple[str, ...], params: dict[str, Any], environment: StepEnvironment,
                 inputs: dict[str, str], key: str) -> None:
        self.step = step
        self.argv = argv
        self.params = params
        self.environment = environment
        self.inputs = inputs  # name -> digest
        self.key = key


class _Result:
    """A finished step: its record, and its outputs' digests for the steps downstream."""

    __slots__ = ("record", "outputs")

    def __init__(self, record: StepRecord, outputs: dict[str, Digest] | None = None) -> None:
        self.record = record
        self.outputs = outputs or {}


def run_pipeline(
    pipeline: Pipeline,
    repo_root: str | Path,
    store: ArtifactStore,
    environments: Mapping[str, StepEnvironment],
    *,
    jobs: int = 2,
    force: bool = False,
    datasets: Mapping[str, str] | None = None,
    lineage: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunRecord:
    """Run ``pipeline`` in the workspace at ``repo_root`` and save its ``RunRecord`` in ``store``.

    ``environments`` maps environment names to realised environments (steps naming none use the
    host interpreter); ``datasets`` maps dataset names to paths; ``lineage`` (commit, author,
    dirty, message) is read from git when not given. ``force`` reruns every step. Failed steps
    are reported in the record (status ``failed``); ``PipelineError`` means the pipeline could
    not be started at all (unknown references, cycles, missing environments).
    """
    root = Path(repo_root).resolve()
    run = _Run(pipeline, root, store, environments, jobs=max(1, jobs), force=force,
               datasets=dict(datasets or {}))
    _mask_secrets(pipeline)
    # Our own scratch lives in .mlops: nothing there may be a link (logs and scratch are swept with rmtree).
    own, safe = OWN_DIR.as_posix(), _safe(pipeline.name)
    for rel in (f"{own}/logs/{safe}", f"{own}/tmp/{safe}", f"{own}/memo/{safe}.json", f"{own}/locks/{safe}.lock",
                f"{own}/imports.json", f"{own}/commits.json", f"{CACHE_DIR.as_posix()}/hashes.json"):
        paths.own_path(root, rel)
    lock_fd = acquire_lock(root / OWN_DIR / "locks" / f"{_safe(pipeline.name)}.lock", f"pipeline {pipeline.name!r}")
    try:
        _sweep_logs(run.log_dir.parent)
        _sweep_logs(run.scratch)
        run.load_caches()
        outputs = [".mlops", *(path for step in pipeline.steps for path in step.outputs.values())]
        git_lineage = None if lineage is not None else _git_lineage(root, outputs)
        started = now_iso()
        view = make_progress(progress, pipeline.name, len(pipeline.steps))
        try:
            results = run.execute(view, lock_fd)
        finally:
            view.close()
            run.save_caches()
            _sweep_logs(run.log_dir.parent)
        git = git_lineage.result() if git_lineage is not None else dict(lineage or {})
        steps = tuple(results[name].record for name in run.dag.order)
        record = RunRecord(
            run_id=run.run_id,
            pipeline=pipeline.name,
            status="failed" if any(s.status in ("failed", "skipped") for s in steps) else "succeeded",
            started=started,
            finished=now_iso(),
            git_commit=git.get("git_commit"),
            git_author=git.get("git_author"),
            git_dirty=git.get("git_dirty"),
            git_message=git.get("git_message"),
            steps=steps,
        )
        save_run(store, record)
        return record
    finally:
        os.close(lock_fd)


def _mask_secrets(pipeline: Pipeline) -> None:
    """Mask the declared secrets' values in everything printed or stored from now on (before any step runs)."""
    names = {n for s in pipeline.steps for n in pipeline.step_secrets(s)}
    if names:
        from mlops.secrets import register

        register(os.environ[n] for n in sorted(names) if n in os.environ)


def _git_lineage(root: Path, ignore: list[str]) -> GitLineage:
    from mlops.lineage import GitLineage

    return GitLineage(root, ignore, root / OWN_DIR / "commits.json")


class _Run:
    """The state of one pipeline run."""

    def __init__(
        self,
        pipeline: Pipeline,
        root: Path,
        store: ArtifactStore,
        environments: Mapping[str, StepEnvironment],
        *,
        jobs: int,
        force: bool,
        datasets: dict[str, str],
    ) -> None:
        self.pipeline = pipeline
        self.root = root
        self.store = store
        self.jobs = jobs
        self.force = force
        self.dag: Dag = build_dag(pipeline)
        self.steps = {s.name: s for s in pipeline.steps}
        self.run_id = new_run_id()
        # Resolve every reference up front: a typo must stop the run before anything runs.
        self.input_paths = {s.name: resolve_inputs(pipeline, s, datasets) for s in pipeline.steps}
        self.argv = {
            s.name: substitute_command(pipeline, s, self.input_paths[s.name], pipeline.step_params(s))
            for s in pipeline.steps
        }
        self.environments: dict[str, StepEnvironment] = {}
        host = HostEnvironment()
        for s in pipeline.steps:
            env_name = pipeline.step_environment(s)
            if env_name is None:
                self.environments[s.name] = host
            elif env_name in environments:
                self.environments[s.name] = environments[env_name]
            else:
                raise PipelineError(f"{where(pipeline, s, 'environment')}: environment {env_name!r} "
                                    "was not provided (is it defined and realised?)")
        for s in pipeline.steps:
            _check_outputs(pipeline, s, self.input_paths[s.name])
        self.log_dir = root / OWN_DIR / "logs" / _safe(pipeline.name) / self.run_id
        self.scratch = root / OWN_DIR / "tmp" / _safe(pipeline.name)  # restored blobs, before they are moved in
        self._processes: Processes | None = None  # created when the first step must run
        self._tracked: dict[str, str] | None = None  # outputs git tracks: computed when first needed
        self._real: dict[str, Path] = {}  # input and code paths resolved (links followed inside only)

    def load_caches(self) -> None:
        """Read the workspace caches (once we hold the lock, so no other run is writing them)."""
        own = self.root / OWN_DIR
        self.digests = StatCache(self.root, self.root / CACHE_DIR / "hashes.json")
        self.scanner = CodeScanner(self.root, self.digests, own / "imports.json")
        self.cache = StepCache(self.store, own / "memo" / f"{_safe(self.pipeline.name)}.json")

    def save_caches(self) -> None:
        self.digests.save()
        self.scanner.save()
        self.cache.save_memo()

    # -- scheduling --------------------------------------------------------------------
    def execute(self, view: Progress, lock_fd: int) -> dict[str, _Result]:
        results: dict[str, _Result] = {}
        pending = list(self.dag.order)
        ready: list[_Plan] = []
        running: set[str] = set()
        finished: queue.Queue[tuple[str, _Result]] = queue.Queue()
        try:
            while True:
                for name in list(pending):
                    if not self.dag.parents[name] <= results.keys():
                        continue
                    pending.remove(name)
                    outcome = self._prepare(name, results)
                    if isinstance(outcome, _Plan):
                        ready.append(outcome)
                    else:
                        results[name] = outcome
                        view.finished(outcome.record)
                while ready and len(running) < self.jobs:
                    if self._processes is None:
                        from mlops.pipelines.process import Processes  # not needed by a no-op run

                        self._processes = Processes()
                    plan = ready.pop(0)
                    running.add(plan.step.name)
                    view.started(plan.step.name)
                    threading.Thread(target=self._worker, args=(plan, lock_fd, finished),
                                     name=f"step-{plan.step.name}", daemon=True).start()
                if not running:
                    break
                name, result = finished.get()
                running.discard(name)
                results[name] = result
                view.finished(result.record)
        except BaseException:
            if self._processes is not None:
                self._processes.kill_all()
            raise
        return results

    # -- before a step: key and cache ----------------------------------------------------
    def _prepare(self, name: str, results: Mapping[str, _Result]) -> _Plan | _Result:
        step = self.steps[name]
        broken = sorted(p for p in self.dag.parents[name] if results[p].record.status in ("failed", "skipped"))
        if broken:
            return _Result(StepRecord(name, "skipped", error=f"upstream step {broken[0]!r} did not succeed"))
        env = self.environments[name]
        argv = self.argv[name]
        try:
            inputs = self._input_digests(step, results)
            code = {
                self.scanner.relative(f): self.digests.file_digest(self._inside(self.scanner.relative(f)))
                for f in self.scanner.code_files(argv, step.code)
            }
        except FileNotFoundError as e:
            missing = e.filename if e.filename else (e.args[0] if e.args else "a file")
            return _Result(StepRecord(name, "failed", command=argv, environment=env.identity,
                                      error=f"{missing}: no such file or directory"))
        except PathError as e:
            return _Result(StepRecord(name, "failed", command=argv, environment=env.identity, error=str(e)))
        params = self.pipeline.step_params(step)
        key = step_key(argv=argv, params=params, environment=env.identity,
                       inputs={n: d.digest for n, d in inputs.items()}, code=code, env=step.env,
                       secrets=self.pipeline.step_secrets(step))
        plan = _Plan(step, argv, params, env, {n: d.digest for n, d in inputs.items()}, key)
        entry = None if self.force else self.cache.lookup(name, key)
        if entry is None or entry.outputs.keys() != step.outputs.keys():
            return self._writable(plan)
        stale = {n: rel for n, rel in step.outputs.items() if not holds(self.digests, self.root / rel, entry.outputs[n])}
        if stale:  # the no-op run never gets here
            refused = self._writable(plan)
            if refused is not plan:
                return refused
            try:
                self.scratch.mkdir(parents=True, exist_ok=True)
                with paths.TreeWriter(self.root) as writer:
                    for out_name, rel in stale.items():
                        restore_output(self.store, self.digests, writer, rel, entry.outputs[out_name], self.scratch)
            except PathError as e:  # a directory on the way became a link: nothing was written through it
                return _Result(StepRecord(name, "failed", command=argv, environment=env.identity, error=str(e)))
            except (MlopsError, OSError):
                # The cache cannot be trusted for this step (missing/corrupt blob): run it.
                self.cache.forget(name)
                return plan
        try:
            # From the metrics output the workspace now holds (its digest was just checked), never
            # from the entry: a memo or store record is untrusted, and its metrics feed model versions.
            metrics = self._metrics(step, entry.outputs)
        except PipelineError:
            self.cache.forget(name)
            return self._writable(plan)
        record = StepRecord(
            name, "cached", cache_key=key, command=argv, environment=env.identity, inputs=plan.inputs,
            outputs={n: d.digest for n, d in entry.outputs.items()}, metrics=metrics,
            stdout=entry.stdout, stderr=entry.stderr, exit_code=0,
        )
        return _Result(record, dict(entry.outputs))

    def _writable(self, plan: _Plan) -> _Plan | _Result:
        """``plan`` when the step may write each of its outputs now, else its failed result: the
        directories above an output are real ones (no link), and git tracks nothing there."""
        step = plan.step
        if self._tracked is None:
            self._tracked = paths.tracked(self.root, (paths.lexical(r) for s in self.pipeline.steps
                                                      for r in s.outputs.values()))
        for out_name, rel in step.outputs.items():
            try:
                paths.check_writable(self.root, rel)
                hit = self._tracked.get(paths.lexical(rel))
                if hit is not None:
                    raise PathError(paths.tracked_problem(rel, paths.lexical(rel), hit))
            except PathError as e:
                error = f"{where(self.pipeline, step, f'output {out_name!r}')}: {e}"
                return _Result(StepRecord(step.name, "failed", command=plan.argv, inputs=plan.inputs,
                                          environment=plan.environment.identity, error=error))
        return plan

    def _inside(self, rel: str) -> Path:
        """Where an input or code path really is (``PathError`` when a link leads outside)."""
        real = self._real.get(rel)
        if real is None:
            real = self._real[rel] = paths.resolve_inside(self.root, rel)
        return real

    def _input_digests(self, step: Step, results: Mapping[str, _Result]) -> dict[str, Digest]:
        # Outputs of upstream steps were digested when produced or restored: reuse those.
        known: dict[str, Digest] = {}
        for parent in self.dag.parents[step.name]:
            producer = self.steps[parent]
            for out_name, digest in results[parent].outputs.items():
                known[os.path.normpath(producer.outputs[out_name])] = digest
        digests: dict[str, Digest] = {}
        for name, rel in self.input_paths[step.name].items():
            known_digest = known.get(os.path.normpath(rel))
            if known_digest is None:
                try:
                    known_digest = self.digests.digest(self._inside(rel))
                except FileNotFoundError:
                    raise FileNotFoundError(f"input {name!r} ({rel})") from None
                except PathError as e:
                    raise PathError(f"{where(self.pipeline, step, f'input {name!r}')}: {e}") from None
            digests[name] = known_digest
        return digests

    # -- running a step ----------------------------------------------------------------
    def _worker(self, plan: _Plan, lock_fd: int, finished: queue.Queue[tuple[str, _Result]]) -> None:
        started = time.monotonic()
        try:
            result = self._run_step(plan, lock_fd, started)
        except Exception as e:  # noqa: BLE001 - a step's failure is a result, never a crashed run
            result = _Result(StepRecord(plan.step.name, "failed", duration=time.monotonic() - started,
                                        cache_key=plan.key, command=plan.argv,
                                        environment=plan.environment.identity, inputs=plan.inputs,
                                        error=f"{type(e).__name__}: {e}"))
        finished.put((plan.step.name, result))

    def _run_step(self, plan: _Plan, lock_fd: int, started: float) -> _Result:
        from mlops.pipelines.process import read_secrets, step_argv, step_environ, tail

        assert self._processes is not None
        step = plan.step
        try:
            secrets = read_secrets(self.pipeline.step_secrets(step))
        except KeyError as e:
            return _Result(StepRecord(step.name, "failed", cache_key=plan.key, command=plan.argv,
                                      environment=plan.environment.identity, inputs=plan.inputs,
                                      error=f"{where(self.pipeline, step, 'secrets')}: {e.args[0]} is not set in the "
                                            "environment mlops runs in"))
        with paths.TreeWriter(self.root) as writer:
            for rel in step.outputs.values():
                remove_output(writer, rel)
                self.digests.forget(self.root / rel)
                writer.makedirs(posixpath.dirname(paths.lexical(rel)))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out_path = self.log_dir / f"{_safe(step.name)}.stdout"
        err_path = self.log_dir / f"{_safe(step.name)}.stderr"
        extra = {"MLOPS_STEP": step.name, "MLOPS_PIPELINE": self.pipeline.name, "MLOPS_RUN_ID": self.run_id}
        exit_code, error = self._processes.run(
            step_argv(plan.argv, plan.environment), cwd=self.root,
            env=step_environ(plan.environment, step.env, self.root, extra, plan.params, secrets),
            stdout=out_path, stderr=err_path, timeout=step.timeout, pass_fds=(lock_fd,),
        )
        stdout = self.store.put_file(out_path)
        stderr = self.store.put_file(err_path)

        def record(status: str, **values: Any) -> StepRecord:
            return StepRecord(name=step.name, status=status, duration=time.monotonic() - started,
                              cache_key=plan.key, command=plan.argv, environment=plan.environment.identity,
                              inputs=plan.inputs, stdout=stdout, stderr=stderr, exit_code=exit_code, **values)

        if error is None and exit_code != 0:
            error = f"exited with code {exit_code}"
        if error is None:
            try:
                outputs = capture_outputs(self.store, self.digests, self.root, step.outputs)
                metrics = self._metrics(step, outputs)
            except PipelineError as e:
                error = str(e)
            else:
                entry = CacheEntry(key=plan.key, step=step.name, outputs=outputs, metrics=metrics,
                                   stdout=stdout, stderr=stderr, duration=time.monotonic() - started,
                                   created=now_iso())
                self.cache.save(entry)
                _remove_logs(out_path, err_path)
                return _Result(record("ran", outputs={n: d.digest for n, d in outputs.items()}, metrics=metrics),
                               outputs)
        stderr_tail = tail(err_path)
        _remove_logs(out_path, err_path)
        return _Result(record("failed", error=error + (f"\n{stderr_tail}" if stderr_tail else "")))

    def _metrics(self, step: Step, outputs: Mapping[str, Digest]) -> dict[str, Any] | None:
        if not step.metrics:
            return None
        where_ = f"metrics output {step.metrics!r}"
        if step.metrics not in outputs or outputs[step.metrics].kind != "file":
            raise PipelineError(f"{where_} is not a file output of the step")
        try:
            data = json.loads(paths.read_bytes_inside(self.root, step.outputs[step.metrics], MAX_METRICS_BYTES))
        except (ValueError, RecursionError) as e:
            raise PipelineError(f"{where_} is not valid JSON: {str(e)[:200]}") from None
        except (PathError, OSError) as e:
            raise PipelineError(f"{where_}: {e}") from None
        if not isinstance(data, dict):
            raise PipelineError(f"{where_} must hold a JSON object, not {type(data).__name__}")
        from mlops.secrets import MASKER

        # Metrics go into run records, cache entries and model versions: masked like everything stored.
        return dict(MASKER.mask_data(data))


def _check_outputs(pipeline: Pipeline, step: Step, inputs: Mapping[str, str]) -> None:
    """``PipelineError`` unless each output is a path the step may own (what validate checks with
    file:line; here for pipelines that did not come through it): not the root, ``.git`` or
    ``.mlops``, and neither containing nor inside one of the step's own inputs."""
    reads = []
    for rel in inputs.values():
        try:
            reads.append(paths.lexical(rel))
        except PathError:
            continue  # refused when it is read
    for out_name, rel in step.outputs.items():
        field = where(pipeline, step, f"output {out_name!r}")
        try:
            norm = paths.lexical(rel)
        except PathError as e:
            raise PipelineError(f"{field}: {e}") from None
        top = paths.reserved(norm)
        if not norm or top:
            raise PipelineError(f"{field}: {rel!r} is {'the repository root' if not norm else f'inside {top}/'}: "
                                "a step owns only the new paths it declares")
        clash = next((r for r in reads if paths.overlap(norm, r)), None)
        if clash is not None:
            raise PipelineError(f"{field}: {rel!r} overlaps the step's input {clash!r}: a step may not write what "
                                "it reads")


def _remove_logs(*files: Path) -> None:
    # The logs are blobs in the store now; the workspace copies are scratch. (Their directory
    # goes when the run ends: other steps may be about to write there.)
    for p in files:
        p.unlink(missing_ok=True)


def _sweep_logs(directory: Path) -> None:
    """Remove log scratch left by killed runs (we hold the pipeline's lock: none is running)."""
    if not directory.is_dir():
        return
    import shutil

    for child in directory.iterdir():
        shutil.rmtree(child, ignore_errors=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
