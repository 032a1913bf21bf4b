"""`mlops gates`, `mlops promote`, `mlops approve`, `mlops rollback`: moving versions through stages.

Each prints every gate with its numbers; `--output json` gives the same as one JSON object. A
promotion that its gates do not allow exits 10 ("blocked", or "awaiting" an approval or soak time).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mlops.cli.main import repo_root
from mlops.errors import GatesBlockedError, RegistryError

OUTPUT = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
MARK = {"passed": "✓", "failed": "✗", "awaiting": "·", "error": "✗"}


def _context(ctx: click.Context, ref: str) -> tuple[Any, Any, Any, int, Path]:
    """(store, project, model spec, version, root) for ``MODEL@VERSION``."""
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_specs

    root = Path(repo_root(ctx))
    name, sep, sel = ref.partition("@")
    if not sep or not sel.isdigit() or int(sel) < 1:
        raise click.BadParameter(f"{ref!r}: expected MODEL@VERSION, e.g. wine-classifier@3", param_hint="MODEL@VERSION")
    specs = load_specs(root)
    if name not in specs.models:
        raise RegistryError(f"no model {name!r} in the specs (models/*.yaml)")
    return open_project_store(root), specs.project, specs.models[name], int(sel), root


def _known_stage(project: Any, stage: str) -> None:
    names = [s.name for s in project.stages]
    if stage not in names:
        raise click.BadParameter(f"no stage {stage!r} in {project.file} (stages: {', '.join(names)})",
                                 param_hint="--stage")


def _who(root: Path) -> tuple[str, str | None]:
    from mlops.lineage import git_lineage
    from mlops.reconcile.live import actor

    return actor(root), git_lineage(root).get("git_commit")


def _print_report(report: Any, output: str, extra: dict[str, Any] | None = None) -> None:
    if output == "json":
        click.echo(json.dumps({**report.to_dict(), **(extra or {})}, indent=2, sort_keys=True))
        return
    for r in report.results:
        click.echo(f"{MARK.get(r.status, '?')} {r.kind:<10} {r.status:<8} {r.summary}")


@click.command()
@click.argument("ref", metavar="MODEL@VERSION")
@click.option("--stage", required=True, help="The stage whose gates to evaluate.")
@OUTPUT
@click.pass_context
def gates(ctx: click.Context, ref: str, stage: str, output: str) -> None:
    """Evaluate the gates of STAGE for MODEL@VERSION, recording nothing (exit 10 unless all pass)."""
    from mlops.stages.operations import check

    store, project, model, version, root = _context(ctx, ref)
    _known_stage(project, stage)
    report = check(store, project, model, version, stage, root)
    _print_report(report, output)
    if output == "text":
        click.echo(f"{model.name}@{version} → {stage}: {report.status}")
    if report.status != "passed":
        ctx.exit(GatesBlockedError.exit_code)


@click.command()
@click.argument("ref", metavar="MODEL@VERSION")
@click.option("--to", "stage", required=True, help="The stage to promote into.")
@click.option("--reason", default="", help="Why (recorded on the audit trail; default: the commit message).")
@click.option("--pr", "pull_request", is_flag=True,
              help="Open (or update) the promotion pull request instead of writing the pin here.")
@OUTPUT
@click.pass_context
def promote(ctx: click.Context, ref: str, stage: str, reason: str, pull_request: bool, output: str) -> None:
    """Evaluate the gates; when they pass, pin MODEL@VERSION to STAGE in the model spec (or open a pull request).

    Commit the pin (or merge the pull request) and reconcile: the stage moves when the gates pass there too."""
    from mlops.lineage import git_lineage
    from mlops.stages.operations import request_promotion

    store, project, model, version, root = _context(ctx, ref)
    _known_stage(project, stage)
    who, commit = _who(root)
    why = reason or str(git_lineage(root).get("git_message") or "promotion requested")
    try:
        done = request_promotion(store, project, model, version, stage, root, by=who, why=why, commit=commit,
                                 pull_request=pull_request)
    except GatesBlockedError as e:
        if output == "json":
            click.echo(json.dumps({"status": "blocked", "message": str(e)}, indent=2))
        raise
    extra = {"pin_written": done.pin_written, "pull_request": done.pull_request, "event": done.event.seq
             if done.event else None}
    _print_report(done.report, output, extra)
    if output == "text":
        if done.pull_request:
            click.echo(f"promotion pull request: {done.pull_request}")
        elif done.pin_written:
            click.echo(f"pinned {model.name}@{version} to {stage} in {model.file}: commit it and reconcile "
                       "(the gates are evaluated again there)")
        else:
            click.echo(f"{model.file} already pins {model.name}@{version} to {stage}")


@click.command()
@click.argument("ref", metavar="MODEL@VERSION")
@click.option("--stage", required=True, help="The stage the approval is for.")
@click.option("--reason", required=True, help="Why you approve (recorded on the audit trail).")
@OUTPUT
@click.pass_context
def approve(ctx: click.Context, ref: str, stage: str, reason: str, output: str) -> None:
    """Record your approval of MODEL@VERSION entering STAGE (your git identity; the actor under GitHub Actions)."""
    from mlops.stages.operations import approve as record

    store, project, model, version, root = _context(ctx, ref)
    _known_stage(project, stage)
    who, commit = _who(root)
    event = record(store, project, model, version, stage, by=who, why=reason, commit=commit)
    pinned = model.stages.get(stage) == version
    if output == "json":
        click.echo(json.dumps({"event": event.seq, "by": event.by, "at": event.at, "pinned": pinned}, indent=2))
    elif pinned:
        click.echo(f"approved {model.name}@{version} for {stage} as {who} (event {event.seq}); {model.file} pins it: "
                   "reconcile to apply")
    else:
        click.echo(f"approved {model.name}@{version} for {stage} as {who} (event {event.seq}); now "
                   f"`mlops promote {model.name}@{version} --to {stage}` writes the pin: commit it and reconcile")


@click.command()
@click.argument("model_name", metavar="MODEL")
@click.option("--stage", required=True, help="The stage to move back.")
@click.option("--to", "to", type=int, default=None, help="A former holder (default: the one before the current).")
@click.option("--reason", required=True, help="Why (recorded on the audit trail).")
@OUTPUT
@click.pass_context
def rollback(ctx: click.Context, model_name: str, stage: str, to: int | None, reason: str, output: str) -> None:
    """Move STAGE of MODEL back to the version it held before, at once, on record (no champion gate)."""
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_specs
    from mlops.stages.operations import rollback as move_back

    root = Path(repo_root(ctx))
    specs = load_specs(root)
    if model_name not in specs.models:
        raise RegistryError(f"no model {model_name!r} in the specs (models/*.yaml)")
    who, commit = _who(root)
    event = move_back(open_project_store(root), specs.project, specs.models[model_name], stage, root, to=to, by=who,
                      why=reason, commit=commit)
    if output == "json":
        click.echo(json.dumps({"event": event.seq, **event.evidence}, indent=2))
    else:
        click.echo(f"{stage} of {model_name}: {event.evidence['from_version']} → {event.version} (event {event.seq}); "
                   "commit the pin and reconcile to roll the deployments back too")
