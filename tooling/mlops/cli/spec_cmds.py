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

    Under GitHub Actions (GITHUB_ACTIONS=true) errors are also emitted as ::error annotations.
    """
    from mlops.errors import SpecError
    from mlops.spec.loader import load
    from mlops.spec.source import open_source

    root = Path(repo_root(ctx))
    try:
        loaded = load(open_source(root, rev))
    except SpecError as e:
        if output == "json":
            click.echo(json.dumps({"valid": False, "errors": [d.__dict__ for d in e.diagnostics]}, indent=2))
        raise
    s = loaded.specs
    counts = {"environments": len(s.environments), "datasets": len(s.datasets), "pipelines": len(s.pipelines),
              "models": len(s.models), "endpoints": len(s.endpoints)}
    if output == "json":
        click.echo(json.dumps({"valid": True, "files": len(loaded.files), "assets": counts}, indent=2))
    else:
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        click.echo(f"ok: {len(loaded.files)} spec files valid ({summary})")


@click.command()
@click.argument("kind")
def schema(kind: str) -> None:
    """Print the JSON Schema (draft 2020-12) of KIND: project, environment, dataset, pipeline, model or endpoint."""
    from mlops.spec.schema import schema_text

    click.echo(schema_text(kind), nl=False)
