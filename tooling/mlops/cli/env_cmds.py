"""``mlops env build|list|show|prune``: realise environments, see what is built where, remove what is unused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mlops.cli.main import repo_root

if TYPE_CHECKING:
    from mlops.spec.model import Environment, Specs


@click.group("env")
def env() -> None:
    """Build and inspect environments (local virtualenvs and Docker images)."""


@env.command("build")
@click.argument("name")
@click.option("--target", type=click.Choice(["local", "docker"]), default="local", show_default=True,
              help="local: a cached virtualenv under .mlops/envs; docker: an image in the local engine.")
@click.pass_context
def build(ctx: click.Context, name: str, target: str) -> None:
    """Realise environment NAME; nothing is rebuilt when its identity is already built."""
    from mlops.spec.loader import load_specs

    root = Path(repo_root(ctx))
    environment = _environment(load_specs(root), name)
    started = time.monotonic()
    if target == "local":
        from mlops.environments.local import realise_local

        local = realise_local(environment, root, echo=_progress_echo)
        what, built, ident = f"at {local.location}", local.built, local.spec_identity
    else:
        from mlops.environments.docker import build_image

        image = build_image(environment, root, echo=_progress_echo)
        what, built, ident = f"image {image.tag} ({image.image_id[:19]})", image.built, image.identity
    state = "built" if built else "up to date"
    click.echo(f"{name}: {state} {ident[:16]} {what} in {time.monotonic() - started:.2f} s")


@env.command("list")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def list_(ctx: click.Context, output: str) -> None:
    """Every environment of the repository: identity, and whether it is built locally and as an image."""
    from mlops.environments.local import default_cache_root, list_local
    from mlops.spec.loader import load_specs

    root = Path(repo_root(ctx))
    specs = load_specs(root)
    client = _docker_client()
    rows = [_status(specs.environments[n], root, client) for n in sorted(specs.environments)]
    known = {r["identity"] for r in rows}
    unused = sorted({r.location for r in list_local(default_cache_root(root)) if r.spec_identity not in known})
    if output == "json":
        click.echo(json.dumps({"environments": rows, "unused_local": unused}, indent=2, sort_keys=True))
        return
    if not rows:
        click.echo("no environments", err=True)
    else:
        table: list[tuple[str, ...]] = [("NAME", "IDENTITY", "PYTHON", "LOCAL", "IMAGE")]
        table += [(r["name"], r["identity"][:16], r["python"] or "(running)", "built" if r["local"]["built"] else "-",
                   _image_state(r["image"])) for r in rows]
        click.echo(_table(table))
    if unused:
        click.echo(f"{len(unused)} local environment(s) match no spec any more: {', '.join(unused)} "
                   "(`mlops env prune` removes them)")


@env.command("prune")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.pass_context
def prune(ctx: click.Context, dry_run: bool) -> None:
    """Remove local environments (under .mlops/envs) that no spec uses, and what dead builds left there.

    Nothing outside .mlops/envs is touched; Docker images are not pruned.
    """
    from mlops.environments.identity import environment_identity, repo_reader
    from mlops.environments.local import default_cache_root, remove_unused, unused_local
    from mlops.spec.loader import load_specs

    root = Path(repo_root(ctx))
    specs = load_specs(root)
    in_use = {environment_identity(e, repo_reader(root)) for e in specs.environments.values()}
    cache = default_cache_root(root)
    unused = unused_local(cache, in_use)
    verb = "would remove" if dry_run else "removed"
    for item in unused:
        if not dry_run:
            remove_unused(cache, item)
        what = f"environment {', '.join(item.names)}" if item.names else "leftover of a build"
        click.echo(f"{verb} {item.location} ({what}, {_size(item.size)})")
    total = sum(item.size for item in unused)
    if unused:
        click.echo(f"{'would free' if dry_run else 'freed'} {_size(total)} in {len(unused)} folder(s)")
    else:
        click.echo("nothing to prune: every local environment is used by a spec")


@env.command("show")
@click.argument("name")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def show(ctx: click.Context, name: str, output: str) -> None:
    """Environment NAME: its definition, identity, and where it is built."""
    from mlops.spec.loader import load_specs

    root = Path(repo_root(ctx))
    row = _status(_environment(load_specs(root), name), root, _docker_client())
    if output == "json":
        click.echo(json.dumps(row, indent=2, sort_keys=True))
        return
    local, image = row["local"], row["image"]
    lines = [
        f"name:        {row['name']} ({row['file']})",
        f"identity:    {row['identity']}",
        f"python:      {row['python'] or 'not pinned: the python that runs mlops'}",
        f"requirements: {', '.join(row['requirements']) or '-'}",
        f"lockfile:    {row['lockfile'] or '-'}",
        f"base image:  {row['base_image'] or '-'}",
        f"system packages: {', '.join(row['system_packages']) or '-'}",
        f"variables:   {', '.join(f'{k}={v}' for k, v in row['variables'].items()) or '-'}",
        f"system site packages: {'yes' if row['system_site_packages'] else 'no'}",
        f"local:       {local['location'] if local['built'] else 'not built'}",
        *([f"run identity: {local['run_identity']} (what runs record: the spec plus the host packages it reuses)"]
          if local["built"] and local["run_identity"] != row["identity"] else []),
        f"image:       {image['tag']} {_image_state(image)}",
    ]
    click.echo("\n".join(lines))


# -- helpers ----------------------------------------------------------------------------------------

def _environment(specs: Specs, name: str) -> Environment:
    from mlops.errors import MlopsError
    from mlops.spec.schema import did_you_mean

    found = specs.environments.get(name)
    if found is None:
        known = ", ".join(sorted(specs.environments)) or "none"
        raise MlopsError(f"unknown environment {name!r}{did_you_mean(name, set(specs.environments))} "
                         f"(environments: {known})")
    return found


def _status(environment: Environment, root: Path, client: Any) -> dict[str, Any]:
    """What ``list``/``show`` report about one environment; ``image.built`` is None without an engine."""
    from mlops.environments.docker import find_image, image_tag
    from mlops.environments.identity import environment_identity, repo_reader
    from mlops.environments.local import find_local

    identity = environment_identity(environment, repo_reader(root))
    local = find_local(environment, root)
    image: dict[str, Any] = {"tag": image_tag(environment, identity), "built": None, "image_id": None}
    if client is not None:
        found = find_image(environment, root, client)
        image.update(built=found is not None, image_id=found.image_id if found else None)
    return {
        "name": environment.name, "file": environment.file, "identity": identity, "python": environment.python,
        "requirements": list(environment.requirements), "lockfile": environment.lockfile,
        "base_image": environment.base_image, "system_packages": list(environment.system_packages),
        "variables": dict(environment.variables), "system_site_packages": environment.system_site_packages,
        "local": {"built": local is not None, "location": local.location if local else None,
                  # what steps and lineage record: with system_site_packages, the reused host packages too
                  "run_identity": local.identity if local else None},
        "image": image,
    }


def _progress_echo(message: str) -> None:
    click.echo(message, err=True)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _docker_client() -> Any:
    """A Docker client, or None when no engine answers (list/show then say 'unknown')."""
    from mlops.environments.docker import connect
    from mlops.errors import EnvironmentBuildError

    try:
        return connect(timeout=10)
    except EnvironmentBuildError:
        return None


def _image_state(image: dict[str, Any]) -> str:
    if image["built"] is None:
        return "unknown (no docker engine)"
    return "built" if image["built"] else "-"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
