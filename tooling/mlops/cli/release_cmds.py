"""`mlops history MODEL` and `mlops audit ENDPOINT --at TIME`: the audit trail, read back.

Both read the project's registry store, where the release records live beside the versions.
Damaged records are listed as warnings after the answer, and the command then exits 4.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mlops.cli.main import report_problems
from mlops.cli.registry_cmds import OUTPUT, _echo_json, _store


@click.command()
@click.argument("model")
@OUTPUT
@click.pass_context
def history(ctx: click.Context, model: str, output: str) -> None:
    """Every registration, gate evaluation, approval, promotion, rollback and deployment of MODEL,
    oldest first: who, when, why, which commit."""
    from mlops.release.history import model_history

    store, _ = _store(ctx)
    problems: list[str] = []
    entries = model_history(store, model, problems)
    if output == "json":
        _echo_json([e.to_dict() for e in entries])
    else:
        for e in entries:
            click.echo(e.line())
    report_problems(problems, store.url)


@click.command()
@click.argument("endpoint")
@click.option("--at", "at", default="now", show_default=True, metavar="TIME",
              help="An ISO 8601 time (2026-11-29T10:00:00Z; UTC without an offset), a date (that whole UTC day), "
                   "or now.")
@OUTPUT
@click.pass_context
def audit(ctx: click.Context, endpoint: str, at: str, output: str) -> None:
    """Which model versions served ENDPOINT at a time, with their traffic weights (from the
    deployment records)."""
    from mlops.release.audit import parse_window, served, traffic_note
    from mlops.release.escape import terminal

    try:
        window = parse_window(at)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--at") from None
    store, _ = _store(ctx)
    problems: list[str] = []
    periods = served(store, endpoint, window, problems)
    note = traffic_note(periods, window)
    if output == "json":
        _echo_json({"endpoint": endpoint, "at": window.text, "from": _iso(window.start), "until": _iso(window.end),
                    "served": [p.to_dict() for p in periods], "notes": [note] if note else []})
    elif not periods:
        if not _known_endpoint(ctx, store, endpoint):
            from mlops.errors import RegistryError

            raise RegistryError(f"no endpoint named {terminal(endpoint)!r} in the specs, and no deployment record "
                                "names it")
        click.echo(f"nothing was deployed to endpoint {terminal(endpoint)} at {window.text}")
    else:
        click.echo(f"endpoint {terminal(endpoint)} at {window.text}:")
        for p in periods:
            weight = "traffic ?" if p.traffic is None else f"traffic {p.traffic:g}%"
            if not p.serving:
                weight += " (deployed, answered no requests)"
            until = f"until {p.end}" if p.end else "still deployed"
            commit = f", commit {terminal(p.commit[:12])}" if p.commit else ""
            version = "?" if p.version is None else p.version
            click.echo(f"  {terminal(p.model)}@{version}  deployment {terminal(p.deployment)}  target "
                       f"{terminal(p.target or '?')}  {weight}  from {terminal(p.start)} {terminal(until)}  "
                       f"(by {terminal(p.by)}{commit})")
        if note:
            click.echo(f"warning: {note}", err=True)
    report_problems(problems, store.url)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _known_endpoint(ctx: click.Context, store: Any, endpoint: str) -> bool:
    """Whether the specs define ``endpoint`` or any deployment record ever named it (it may be gone now)."""
    from mlops.cli.main import repo_root
    from mlops.errors import MlopsError
    from mlops.release.audit import ever_deployed
    from mlops.spec.loader import load_specs

    try:
        if endpoint in load_specs(Path(repo_root(ctx))).endpoints:
            return True
    except MlopsError:
        pass
    return ever_deployed(store, endpoint)
