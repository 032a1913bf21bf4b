"""`mlops validate` and `mlops schema`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlops.cli.main import repo_root


@click.command()
@click.option("--rev", default=None, help="Validate the specs of this git revision instead of the working tree.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def validate(ctx: click.Context, rev: str | None, output: str) -> None:
    """Validate every spec; report all errors at once as file:line:column: json.path: message.

    Also warns (file:line: warning: ..., without failing) where a step's code imports a third-party
    module that its environment does not provide. Under GitHub Actions (GITHUB_ACTIONS=true) errors
    and warnings are also emitted as ::error / ::warning annotations.
    """
    import os

    from mlops.errors import SpecError
    from mlops.graph.provides import missing_imports
    from mlops.spec.loader import load
    from mlops.spec.source import open_source

    root = Path(repo_root(ctx))
    source = open_source(root, rev)
    try:
        loaded = load(source)
    except SpecError as e:
        if output == "json":
            click.echo(json.dumps({"valid": False, "errors": [d.__dict__ for d in e.diagnostics]}, indent=2))
        raise
    s = loaded.specs
    warnings = missing_imports(s, source)
    counts = {"environments": len(s.environments), "datasets": len(s.datasets), "pipelines": len(s.pipelines),
              "models": len(s.models), "endpoints": len(s.endpoints)}
    if output == "json":
        click.echo(json.dumps({"valid": True, "files": len(loaded.files), "assets": counts,
                               "warnings": [w.to_dict() for w in warnings]}, indent=2))
        return
    for w in warnings:
        click.echo(str(w), err=True)
        if os.environ.get("GITHUB_ACTIONS") == "true":
            click.echo(w.github_annotation())
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    more = f"; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
    click.echo(f"ok: {len(loaded.files)} spec files valid ({summary}){more}")


@click.command()
@click.argument("kind")
def schema(kind: str) -> None:
    """Print the JSON Schema (draft 2020-12) of KIND: project, environment, dataset, pipeline, model or endpoint."""
    from mlops.spec.schema import schema_text

    click.echo(schema_text(kind), nl=False)
