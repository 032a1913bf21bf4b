"""`mlops models ...` and `mlops datasets ...`: the registry from the command line.

The store is the project's (``mlops.yaml``: ``stores.artifacts`` and ``stores.registry``);
``--output json`` prints machine-readable results for scripts and CI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mlops.cli.main import repo_root, report_problems
from mlops.errors import RegistryError
from mlops.store.protocol import ArtifactStore

OUTPUT = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
                      help="text for people, json for scripts.")


def _store(ctx: click.Context) -> tuple[ArtifactStore, Path]:
    from mlops.registry.composite import open_registry_store
    from mlops.spec.loader import load_project

    root = Path(repo_root(ctx))
    return open_registry_store(load_project(root), root), root


def _ref(text: str, what: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION``."""
    name, sep, sel = text.partition("@")
    if not sep:
        return name, None
    if not sel.isdigit():
        raise RegistryError(f"{text!r}: expected {what}@VERSION with a version number "
                            f"(stages are resolved by promotion, not by the registry)")
    return name, int(sel)


def _pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, val = item.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        out[k] = val
    return out


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


# -- models ----------------------------------------------------------------------------------
@click.group()
def models() -> None:
    """Model registry: list, show, card, register, download, tag, search."""


@models.command("list")
@OUTPUT
@click.pass_context
def models_list(ctx: click.Context, output: str) -> None:
    """Every model with its latest version."""
    from mlops.registry.models import list_latest

    store, _ = _store(ctx)
    problems: list[str] = []
    rows: list[dict[str, Any]] = [
        {"name": mv.name, "latest": mv.version, "versions": count, "flavor": mv.flavor,
         "registered_at": mv.lineage.registered_at} for mv, count in list_latest(store, problems)]
    if output == "json":
        _echo_json(rows)
    elif not rows:
        click.echo(f"no models in {store.url}")
    else:
        _table([[r["name"], str(r["latest"]), str(r["versions"]), r["flavor"], str(r["registered_at"] or "")]
                for r in rows], ["NAME", "LATEST", "VERSIONS", "FLAVOR", "REGISTERED"])
    report_problems(problems, store.url)


def _show_model(mv: Any) -> None:
    lin = mv.lineage
    click.echo(f"{mv.ref}  ({mv.flavor})")
    if mv.description:
        click.echo(f"  description: {mv.description}")
    click.echo("  files:")
    for f in mv.files:
        click.echo(f"    {f.path}  {f.size} bytes  sha256:{f.digest}")
    if mv.signature is not None:
        for label, specs in (("inputs", mv.signature.inputs), ("outputs", mv.signature.outputs)):
            click.echo(f"  {label}:")
            for t in specs:
                shape = "?" if t.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in t.shape) + "]"
                click.echo(f"    {t.name}: {t.dtype} {shape}")
    if mv.metrics:
        click.echo("  metrics: " + ", ".join(f"{k}={val}" for k, val in sorted(mv.metrics.items())))
    if mv.tags:
        click.echo("  tags: " + ", ".join(f"{k}={val}" for k, val in sorted(mv.tags.items())))
    click.echo("  lineage:")
    commit = (lin.git_commit or "(no git commit)") + (" (dirty)" if lin.git_dirty else "")
    click.echo(f"    commit: {commit}")
    if lin.git_author:
        click.echo(f"    author: {lin.git_author}")
    if lin.git_message:
        click.echo(f"    why:    {lin.git_message.splitlines()[0]}")
    if lin.pipeline:
        click.echo(f"    pipeline: {lin.pipeline} run {lin.pipeline_run or '?'}")
    for k, d in sorted(lin.input_digests.items()):
        click.echo(f"    input {k}: {d}")
    if lin.environment_identity:
        click.echo(f"    environment: {lin.environment_identity}")
    click.echo(f"    registered by {lin.registered_by} at {lin.registered_at}")


@models.command("show")
@click.argument("ref")
@OUTPUT
@click.pass_context
def models_show(ctx: click.Context, ref: str, output: str) -> None:
    """One version, NAME@VERSION (NAME alone: the latest)."""
    from mlops.registry.models import get_model

    store, _ = _store(ctx)
    mv = get_model(store, *_ref(ref, "NAME"))
    if output == "json":
        _echo_json(mv.to_dict())
    else:
        _show_model(mv)


@models.command("card")
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True,
              help="markdown for a pull request (escaped, bounded in size), json for scripts (every field).")
@click.pass_context
def models_card(ctx: click.Context, ref: str, fmt: str) -> None:
    """The model card of NAME@VERSION (NAME alone: the latest): purpose, data digests, metrics,
    confusion matrix, feature importance, signature, lineage, and the stages it entered, with
    their gates and approvers."""
    from mlops.release.card import build_card
    from mlops.release.card_markdown import render_markdown

    store, root = _store(ctx)
    name, version = _ref(ref, "NAME")
    card = build_card(store, name, version, evaluate=_evaluator(store, root, name))
    click.echo(card.to_json() if fmt == "json" else render_markdown(card), nl=False)


def _evaluator(store: ArtifactStore, root: Path, name: str) -> Any:
    """Scores a version on the model spec's held-out data when no evaluation is stored yet (None: no spec)."""
    from dataclasses import asdict

    from mlops.errors import MlopsError
    from mlops.spec.loader import load_specs

    try:
        specs = load_specs(root)
    except MlopsError:
        return None
    spec = specs.models.get(name)
    if spec is None or spec.evaluation is None:
        return None

    def evaluate(mv: Any) -> dict[str, Any] | None:
        from mlops.evaluation import evaluate_version

        return asdict(evaluate_version(store, spec, mv.version, root, specs.datasets))

    return evaluate


@models.command("deprecate")
@click.argument("ref", metavar="NAME@VERSION")
@click.option("--reason", required=True, help="Why (recorded on the audit trail).")
@click.pass_context
def models_deprecate(ctx: click.Context, ref: str, reason: str) -> None:
    """Retire NAME@VERSION: it enters no stage any more. Refused while a stage holds it, a pin names it or a
    deployment serves it (versions are immutable history: nothing is ever deleted)."""
    from mlops.lineage import git_lineage
    from mlops.reconcile.live import actor
    from mlops.spec.loader import load_specs
    from mlops.stages.operations import deprecate

    store, root = _store(ctx)
    name, version = _ref(ref, "NAME")
    specs = load_specs(root)
    if version is None or name not in specs.models:
        raise RegistryError(f"{ref!r}: expected NAME@VERSION of a model in the specs")
    event = deprecate(store, specs.project, specs.models[name], version, by=actor(root), why=reason,
                      commit=git_lineage(root).get("git_commit"))
    click.echo(f"deprecated {name}@{version} (event {event.seq})")


def _read_metrics(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise RegistryError(f"{path}: cannot read metrics: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: metrics must be a JSON object of name: value")
    return data


@models.command("register")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--flavor", required=True, help="How the model is loaded, e.g. onnx (its signature is read).")
@click.option("--metrics", "metrics_file", type=click.Path(), help="JSON file of metrics.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the version (repeatable).")
@click.option("--description", default="", help="What this version is.")
@OUTPUT
@click.pass_context
def models_register(ctx: click.Context, name: str, files: tuple[str, ...], flavor: str, metrics_file: str | None,
                    tags: tuple[str, ...], description: str, output: str) -> None:
    """Register FILES (files or directories) as a new version of NAME, with git lineage.

    Registering identical content again (same files, metrics and commit) prints the existing version.
    """
    from mlops.registry.lineage import git_lineage
    from mlops.registry.models import register_model

    store, root = _store(ctx)
    tag_map = _pairs(tags, "--tag")
    metrics = _read_metrics(metrics_file)
    mv = register_model(store, name, [Path(f) for f in files], flavor, metrics, tag_map, git_lineage(root),
                        description)
    if output == "json":
        _echo_json({**mv.to_dict(), "created": mv.created})
    elif mv.created:
        click.echo(f"registered {mv.ref}")
    else:
        click.echo(f"{mv.ref} already holds this content; nothing registered")


@models.command("download")
@click.argument("ref")
@click.argument("dest", type=click.Path(file_okay=False))
@click.pass_context
def models_download(ctx: click.Context, ref: str, dest: str) -> None:
    """Write the files of NAME[@VERSION] into DEST, verifying each digest."""
    from mlops.registry.models import download_model

    store, _ = _store(ctx)
    name, version = _ref(ref, "NAME")
    for p in download_model(store, name, version, Path(dest)):
        click.echo(str(p))


@models.command("tag")
@click.argument("ref")
@click.argument("tags", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", "remove", multiple=True, metavar="KEY", help="Remove a tag (repeatable).")
@OUTPUT
@click.pass_context
def models_tag(ctx: click.Context, ref: str, tags: tuple[str, ...], remove: tuple[str, ...], output: str) -> None:
    """Set tags on NAME@VERSION (tags are mutable; the version itself is not)."""
    from mlops.registry.models import set_tags

    store, _ = _store(ctx)
    name, version = _ref(ref, "NAME")
    if version is None:
        raise RegistryError(f"{ref!r}: tag needs an explicit NAME@VERSION")
    changes: dict[str, str | None] = {**_pairs(tags, "TAGS"), **dict.fromkeys(remove)}
    if not changes:
        raise click.UsageError("give at least one KEY=VALUE or --remove KEY")
    mv = set_tags(store, name, version, changes)
    if output == "json":
        _echo_json({"ref": mv.ref, "tags": mv.tags})
    else:
        click.echo(f"{mv.ref}: " + (", ".join(f"{k}={val}" for k, val in sorted(mv.tags.items())) or "(no tags)"))


@models.command("search")
@click.argument("query", nargs=-1, required=True, metavar="KEY=VALUE...")
@OUTPUT
@click.pass_context
def models_search(ctx: click.Context, query: tuple[str, ...], output: str) -> None:
    """Versions whose tags match every KEY=VALUE (the keys name and flavor match those fields)."""
    from mlops.registry.models import search_models

    store, _ = _store(ctx)
    problems: list[str] = []
    found = search_models(store, _pairs(query, "QUERY"), problems)
    if output == "json":
        _echo_json([mv.to_dict() for mv in found])
    elif not found:
        click.echo("no matching model versions")
    else:
        _table([[mv.ref, mv.flavor, ", ".join(f"{k}={val}" for k, val in sorted(mv.tags.items()))] for mv in found],
               ["VERSION", "FLAVOR", "TAGS"])
    report_problems(problems, store.url)


# -- datasets --------------------------------------------------------------------------------
@click.group()
def datasets() -> None:
    """Dataset versions: list, show, register, download."""


@datasets.command("list")
@OUTPUT
@click.pass_context
def datasets_list(ctx: click.Context, output: str) -> None:
    """Every dataset with its latest version."""
    from mlops.registry.datasets import list_latest_datasets

    store, _ = _store(ctx)
    problems: list[str] = []
    rows: list[dict[str, Any]] = [
        {"name": dv.name, "latest": dv.version, "versions": count, "digest": dv.digest, "size": dv.size,
         "files": len(dv.files)} for dv, count in list_latest_datasets(store, problems)]
    if output == "json":
        _echo_json(rows)
    elif not rows:
        click.echo(f"no datasets in {store.url}")
    else:
        _table([[r["name"], str(r["latest"]), str(r["versions"]), str(r["files"]), str(r["size"]), r["digest"][:12]]
                for r in rows], ["NAME", "LATEST", "VERSIONS", "FILES", "BYTES", "DIGEST"])
    report_problems(problems, store.url)


@datasets.command("show")
@click.argument("ref")
@OUTPUT
@click.pass_context
def datasets_show(ctx: click.Context, ref: str, output: str) -> None:
    """One version, NAME@VERSION (NAME alone: the latest)."""
    from mlops.registry.datasets import get_dataset

    store, _ = _store(ctx)
    dv = get_dataset(store, *_ref(ref, "NAME"))
    if output == "json":
        _echo_json(dv.to_dict())
        return
    click.echo(f"{dv.ref}  ({dv.kind}, {len(dv.files)} files, {dv.size} bytes)")
    click.echo(f"  digest: sha256:{dv.digest}")
    if dv.description:
        click.echo(f"  description: {dv.description}")
    for f in dv.files:
        click.echo(f"    {f.path}  {f.size} bytes  sha256:{f.digest}")
    click.echo(f"  commit: {dv.lineage.git_commit or '(no git commit)'}")
    click.echo(f"  registered by {dv.lineage.registered_by} at {dv.lineage.registered_at}")


@datasets.command("register")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True))
@click.option("--description", default="")
@OUTPUT
@click.pass_context
def datasets_register(ctx: click.Context, name: str, path: str, description: str, output: str) -> None:
    """Register the file or directory PATH as a new version of dataset NAME (same content: same version)."""
    from mlops.registry.datasets import register_dataset
    from mlops.registry.lineage import git_lineage

    store, root = _store(ctx)
    dv = register_dataset(store, name, Path(path), git_lineage(root), description)
    if output == "json":
        _echo_json({**dv.to_dict(), "created": dv.created})
    elif dv.created:
        click.echo(f"registered {dv.ref} (sha256:{dv.digest})")
    else:
        click.echo(f"{dv.ref} already holds this content; nothing registered")


@datasets.command("download")
@click.argument("ref")
@click.argument("dest", type=click.Path(file_okay=False))
@click.pass_context
def datasets_download(ctx: click.Context, ref: str, dest: str) -> None:
    """Write the files of NAME[@VERSION] into DEST, verifying each digest."""
    from mlops.registry.datasets import download_dataset

    store, _ = _store(ctx)
    name, version = _ref(ref, "NAME")
    for p in download_dataset(store, name, version, Path(dest)):
        click.echo(str(p))
