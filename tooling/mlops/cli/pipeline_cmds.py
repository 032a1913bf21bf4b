"""``mlops run PIPELINE`` and ``mlops runs [PIPELINE]``.

Heavy modules are imported inside the commands: a no-op ``mlops run`` is measured against DVC's
no-op ``dvc repro`` and every millisecond of start-up counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlops.cli.main import repo_root, report_problems

if TYPE_CHECKING:
    from mlops.pipelines.environment import StepEnvironment
    from mlops.pipelines.record import RunRecord
    from mlops.spec.model import Specs


@click.command("run")
@click.argument("pipeline")
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(min=1),
              help="How many steps may run at the same time.")
@click.option("--force", is_flag=True, help="Rerun every step, ignoring the cache.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json prints the run record on stdout.")
@click.pass_context
def run(ctx: click.Context, pipeline: str, jobs: int, force: bool, output: str) -> None:
    """Run PIPELINE: steps whose inputs, code, params and environment are unchanged are restored
    from the cache instead of rerun. Exits 1 when a step failed."""
    import gc

    # A run allocates few cycles; collecting while importing and unpickling specs is ~5% of a
    # no-op run. Rarer collections, not none.
    gc.set_threshold(max(gc.get_threshold()[0], 50_000), 20, 20)

    from mlops.errors import PipelineError
    from mlops.pipelines.runner import run_pipeline
    from mlops.store.open import open_store

    root = Path(repo_root(ctx))
    specs = _load_specs(root)
    spec = specs.pipelines.get(pipeline)
    if spec is None:
        known = ", ".join(sorted(specs.pipelines)) or "none"
        raise PipelineError(f"unknown pipeline {pipeline!r} (pipelines: {known})")
    store = open_store(specs.project.store, root)
    record = run_pipeline(
        spec, root, store, _environments(specs, spec.name, root, quiet=output == "json"), jobs=jobs, force=force,
        datasets={name: ds.path for name, ds in specs.datasets.items()}, progress=True,
    )
    if output == "json":
        click.echo(json.dumps(record.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(_summary(record))
    if record.status != "succeeded":
        for step in record.failed_steps:
            click.echo(f"step {step.name!r} of pipeline {record.pipeline!r} failed: {step.error}", err=True)
        # Not ctx.exit(1): main() runs click with standalone_mode=False, which turns that into a return value.
        sys.exit(1)


def _load_specs(root: Path) -> Specs:
    """The working tree's specs, validated; unchanged files come from the spec layer's parse cache,
    so a no-op run neither parses YAML nor imports jsonschema."""
    from mlops.spec.cache import ParseCache, open_cache
    from mlops.spec.loader import load
    from mlops.spec.source import open_source

    disk = open_cache(root)
    loaded = load(open_source(root, None), disk)
    disk.save(keep={ParseCache.key(f.path, f.digest) for f in loaded.files.values()})
    return loaded.specs


def _environments(specs: Specs, pipeline: str, root: Path, quiet: bool = False) -> dict[str, StepEnvironment]:
    """Realise (or find, when already built) the environments the pipeline's steps use; a build shows
    its progress on stderr unless ``quiet``."""
    spec = specs.pipelines[pipeline]
    names = {spec.step_environment(s) for s in spec.steps} - {None}
    if not names:
        return {}
    from mlops.environments.local import realise_local
    from mlops.errors import PipelineError

    realised: dict[str, StepEnvironment] = {}
    for name in sorted(n for n in names if n is not None):
        env = specs.environments.get(name)
        if env is None:
            raise PipelineError(f"{spec.file}: pipeline {pipeline!r} uses unknown environment {name!r}")
        realised[name] = realise_local(env, root, echo=None if quiet else _progress_echo)
    return realised


def _progress_echo(message: str) -> None:
    click.echo(message, err=True)


def _summary(record: RunRecord) -> str:
    counts = record.counts()
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return f"{record.pipeline}: {record.status} ({', '.join(parts)}) run {record.run_id}"


@click.command("runs")
@click.argument("pipeline", required=False)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def runs(ctx: click.Context, pipeline: str | None, output: str) -> None:
    """List the run records of PIPELINE (or of every pipeline), oldest first."""
    from mlops.pipelines.record import list_runs
    from mlops.spec.loader import load_project
    from mlops.store.open import open_store

    root = Path(repo_root(ctx))
    store = open_store(load_project(root).store, root)
    problems: list[str] = []
    records = list_runs(store, pipeline, problems)
    if output == "json":
        click.echo(json.dumps([r.to_json() for r in records], indent=2, sort_keys=True))
    elif not records:
        click.echo("no runs" + (f" of pipeline {pipeline!r}" if pipeline else ""), err=True)
    else:
        rows: list[tuple[str, ...]] = [("RUN", "PIPELINE", "STATUS", "STARTED", "STEPS", "COMMIT")]
        for r in records:
            counts = ", ".join(f"{n} {s}" for s, n in r.counts().items() if n)
            commit = (r.git_commit or "-")[:10] + ("+dirty" if r.git_dirty else "")
            rows.append((r.run_id, r.pipeline, r.status, r.started[:19].replace("T", " "), counts, commit))
        click.echo(_table(rows))
    report_problems(problems, store.url)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
