"""`mlops init [DIR]`: scaffold a project (see mlops.scaffold)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--name", default=None, help="The project's name (default: from the directory's name).")
@click.option("--python", "python_version", default="3.11", show_default=True,
              help="The Python version the workflows set up.")
@click.option("--install", default="pip install mlops-gitops", show_default=True,
              help="How the workflows install mlops (e.g. a pinned version, or `pip install -e .`).")
@click.option("--environment", default="production", show_default=True,
              help="The GitHub Environment (with required reviewers) of the production job.")
@click.option("--force", is_flag=True, help="Overwrite files that exist already.")
def init(directory: str, name: str | None, python_version: str, install: str, environment: str,
         force: bool) -> None:
    """Scaffold mlops.yaml, folders, a small working example, the GitHub workflows, .gitignore and a test
    into DIRECTORY (new or an existing repository). Refuses to overwrite any file unless --force."""
    import re

    from mlops.scaffold import Settings, default_store_type, project_name, scaffold

    root = Path(directory)
    project = name or project_name(root)
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", project):
        raise click.BadParameter(f"{project!r}: lower-case letters, digits and dashes", param_hint="--name")
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise click.BadParameter(f"{python_version!r}: a Python version such as 3.11", param_hint="--python")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", environment):
        raise click.BadParameter(f"{environment!r}: letters, digits, '.', '_' and '-'", param_hint="--environment")
    if not install.isprintable() or not install.strip():  # CR or U+2028 end a YAML line as well as LF
        raise click.BadParameter("one line of shell", param_hint="--install")
    written = scaffold(root, Settings(project=project, install=install, python_version=python_version,
                                      store_type=default_store_type(), environment=environment), force=force)
    for path in written:
        click.echo(f"wrote {root / path}")
    click.echo(f"\nNext: cd {root} && git init (if new) && mlops validate && python -m pytest tests (pip install "
               "pytest first if needed) && "
               "mlops reconcile --allow-dirty (or commit first); until the repository has a remote origin, "
               "mlops keeps its state in the clone, and the first command after `git remote add origin URL` "
               "publishes it there; "
               "then push to GitHub (see the README's walk-through).")
