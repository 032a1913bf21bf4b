"""`mlops events list` and `mlops events flush`: the local event log, and the outbox of events
that a sink (webhook, GitHub) has not taken yet."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlops.cli.main import repo_root


@click.group("events")
def events() -> None:
    """Lifecycle events (CloudEvents): the local log, and delivering what sinks have not taken yet."""


@events.command("list")
@click.option("-n", "--limit", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="How many of the latest events to show.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def list_cmd(ctx: click.Context, limit: int, output: str) -> None:
    """The latest events of the local log (the first `log` sink, default .mlops/events.jsonl), oldest first."""
    from mlops.cli.main import report_problems
    from mlops.events.log import tail
    from mlops.events.sinks import log_configs
    from mlops.spec.loader import load_project

    root = Path(repo_root(ctx))
    path = str(log_configs(load_project(root))[0].get("path") or ".mlops/events.jsonl")
    lines, total = tail(root, path, limit)
    good = [ln.event for ln in lines if ln.event is not None]
    problems = [f"{path}: {ln.problem}" for ln in lines if ln.problem]
    if output == "json":
        click.echo(json.dumps({"log": path, "lines": total, "events": [e.to_dict() for e in good]}, indent=2))
    else:
        for e in good:
            click.echo(f"{e.time}  {e.name:<22}  {e.subject}  {e.id}")
        if not lines:
            click.echo(f"no events in {path}")
    report_problems(problems, path)


@events.command("flush")
@click.option("--max-wait", type=click.FloatRange(0, 3600), default=None,
              help="Seconds to spend delivering at most (default: $MLOPS_EVENTS_MAX_WAIT, else 10).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def flush_cmd(ctx: click.Context, max_wait: float | None, output: str) -> None:
    """Deliver the events waiting in the outbox now; print what was delivered, kept and dead.

    Exits 1 when anything is still waiting or died, so a CI step notices.
    """
    from mlops.events.emit import flush
    from mlops.events.sinks import Limits
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_project

    root = Path(repo_root(ctx))
    project = load_project(root)
    store = open_project_store(root)
    limits = Limits.from_env() if max_wait is None else Limits.from_env(total_wait=max_wait)
    warn = (lambda _m: None) if output == "json" else (lambda m: click.echo(f"warning: {m}", err=True))
    report = flush(project, store, root, limits=limits, warn=warn)
    bad = report.count("kept") + report.count("dead") + report.count("lost")
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        for o in report.outcomes:
            click.echo(f"{o.status:<9}  {o.name or '?':<22}  {o.event_id}  {o.sink}"
                       + (f"  ({o.detail})" if o.detail and o.status != "delivered" else ""))
        counts = ", ".join(f"{report.count(s)} {s}" for s in ("delivered", "kept", "dead", "lost"))
        click.echo(f"outbox of {store.url}: {counts}" if report.outcomes else f"outbox of {store.url}: nothing waits")
    if bad:
        ctx.exit(1)
