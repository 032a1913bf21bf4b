"""`mlops batch run ENDPOINT`: score a batch endpoint's input now, as reconcile would.

The model is the one the endpoint's deployment names (``MODEL@STAGE``: what the stage holds). A run that
was killed resumes at its last completed mini-batch. ``--input``/``--output`` score another file (paths as
given, relative to the current directory); only a run of the spec's own input into its own output is
recorded as the endpoint's last scoring. On a terminal, a progress bar shows on stderr. Exit 1 when the
rows that failed exceed the endpoint's error threshold.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from mlops.cli.main import repo_root


@click.group()
def batch() -> None:
    """Batch endpoints: score files in mini-batches with bounded memory."""


@batch.command("run")
@click.argument("endpoint")
@click.option("--input", "input_path", type=click.Path(dir_okay=False),
              help="Score this file instead of the endpoint's batch.input.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False),
              help="Write the predictions here instead of the endpoint's batch.output.")
@click.pass_context
def run(ctx: click.Context, endpoint: str, input_path: str | None, output_path: str | None) -> None:
    """Score ENDPOINT's input with the model version its deployment names (resuming a killed run)."""
    from mlops.batch.deploy import record, resolve_model, score
    from mlops.batch.job import job_for
    from mlops.batch.run import opened_input
    from mlops.errors import BatchError
    from mlops.reconcile.live import actor
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_specs

    root = Path(repo_root(ctx))
    specs = load_specs(root)
    spec = specs.endpoints.get(endpoint)
    if spec is None:
        known = ", ".join(sorted(e.name for e in specs.endpoints.values() if e.type == "batch")) or "none"
        raise BatchError(f"no endpoint {endpoint!r} in the specs (batch endpoints: {known})")
    job = job_for(spec, root, input_path, output_path)
    store = open_project_store(root)
    mv, sha = resolve_model(spec, specs, store)
    with opened_input(job) as source, _progress(f"{endpoint} ({mv.ref})") as progress:
        outcome = score(job, mv, sha, store, source, progress)
    if outcome.status == "succeeded" and job.in_repo:
        record(store, job, mv, sha, source, outcome, actor(root))
    rate = f" in {outcome.seconds:.2f}s ({outcome.rows / outcome.seconds:,.0f} rows/s)" if outcome.seconds > 0 else ""
    click.echo(f"{outcome.message}{rate}", err=outcome.status != "succeeded")
    if outcome.status != "succeeded":
        ctx.exit(1)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal (else nothing): fed (done, total)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
