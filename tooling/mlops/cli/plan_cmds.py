"""`mlops diff`, `mlops plan`, `mlops apply`, `mlops reconcile`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from mlops.cli.main import repo_root

SYMBOLS = {"created": "+", "changed": "~", "affected": "~", "removed": "-"}
STATUS_MARK = {"succeeded": "✓", "failed": "✗", "skipped": "·", "blocked": "⏸"}


def _head_option(f: Any) -> Any:
    f = click.option("--worktree", is_flag=True, help="Use the working tree as head (the default).")(f)
    return click.option("--head", default=None, help="Head revision (default: the working tree).")(f)


def _resolve_head(head: str | None, worktree: bool) -> str | None:
    if head and worktree:
        raise click.UsageError("--head and --worktree are exclusive")
    return head


@click.command()
@click.option("--base", default="HEAD", show_default=True, help="Base revision.")
@_head_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def diff(ctx: click.Context, base: str, head: str | None, worktree: bool, output: str) -> None:
    """List assets created, changed or removed between two revisions, and everything downstream, with reasons."""
    from mlops.graph.compare import compare

    cmp = compare(Path(repo_root(ctx)), base, _resolve_head(head, worktree))
    for problem in cmp.base_invalid[:5]:
        click.echo(f"warning: base {cmp.base.rev[:10]} has invalid specs, so everything counts as new: {problem}",
                   err=True)
    if output == "json":
        click.echo(json.dumps({"base": cmp.base.rev, "head": cmp.head.rev,
                               "changed_files": cmp.changes.changed_files,
                               "changes": [c.to_dict() for c in cmp.changes.changes]}, indent=2))
        return
    if not cmp.changes:
        click.echo(f"no asset changes between {cmp.base.rev[:10]} and {cmp.head.rev[:10]}")
        return
    width = max(len(c.asset) for c in cmp.changes.changes)
    for c in cmp.changes.changes:
        click.echo(f"{SYMBOLS[c.change]} {c.asset:<{width}}  {c.change:<8}  {c.reasons[0]}")
        for r in c.reasons[1:]:
            click.echo(f"  {'':<{width}}  {'':<8}  {r}")


@click.command()
@click.option("--base", default=None, help="Base revision (default: the last applied commit, or nothing).")
@_head_option
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan as JSON for `mlops apply`.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--refresh/--no-refresh", default=True, show_default=True,
              help="Read live state from the store (registry, applied state).")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has actions, 0 when empty.")
@click.pass_context
def plan(ctx: click.Context, base: str | None, head: str | None, worktree: bool, out: str | None, fmt: str,
         refresh: bool, detailed_exitcode: bool) -> None:
    """Work out the ordered actions (build, run, register, gate, promote, deploy, prune) and why."""
    from mlops.plan.render import render
    from mlops.reconcile.story import open_project_store, plan_change

    root = Path(repo_root(ctx))
    the_plan, _ = plan_change(root, base, _resolve_head(head, worktree),
                              (lambda: open_project_store(root)) if refresh else None)
    if out:
        _write_atomic(Path(out), the_plan.to_json())
    click.echo(the_plan.to_json() if fmt == "json" else render(the_plan, fmt), nl=False)
    _step_summary(render(the_plan, "markdown"))
    if detailed_exitcode and the_plan.actions:
        sys.exit(2)


@click.command("apply")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--jobs", "-j", default=2, show_default=True, help="Pipeline steps run in parallel.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def apply_cmd(ctx: click.Context, plan_file: str, jobs: int, output: str) -> None:
    """Run exactly the actions of a saved plan; refuse it if it was made against a different state."""
    from mlops.plan.model import Plan
    from mlops.reconcile.story import apply_saved, open_project_store

    root = Path(repo_root(ctx))
    the_plan = Plan.from_json(Path(plan_file).read_text(), origin=plan_file)
    report = apply_saved(root, the_plan, open_project_store(root), _options(jobs, output))
    _finish(report, output)


@click.command()
@click.option("--base", default=None, help="Base revision (default: the last applied commit, or nothing).")
@click.option("--jobs", "-j", default=2, show_default=True, help="Pipeline steps run in parallel.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def reconcile(ctx: click.Context, base: str | None, jobs: int, output: str) -> None:
    """Validate, diff, plan and apply the working tree in one step."""
    from mlops.plan.render import render
    from mlops.reconcile.story import apply_saved, open_project_store, plan_change

    root = Path(repo_root(ctx))
    stores: list[Any] = []

    def opened() -> Any:
        stores.append(open_project_store(root))
        return stores[0]

    the_plan, _ = plan_change(root, base, None, opened)
    store = stores[0]
    if output == "text":
        click.echo(render(the_plan, "text"), nl=False)
    _step_summary(render(the_plan, "markdown"))
    report = apply_saved(root, the_plan, store, _options(jobs, output))
    _finish(report, output)


def _options(jobs: int, output: str) -> Any:
    from mlops.reconcile.story import Options

    echo = (lambda msg: click.echo(msg, err=True)) if output == "text" else (lambda _msg: None)
    return Options(jobs=jobs, echo=echo)


def _finish(report: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        lines = [f"{STATUS_MARK[r.status]} {r.status:<9} {r.action}: {r.message}" for r in report.results]
        counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())) or "nothing to do"
        click.echo("\n".join(lines + [f"Apply: {counts}."]))
    _step_summary("#### mlops apply\n\n" + "\n".join(
        f"- {STATUS_MARK[r.status]} **{r.status}** `{r.action}`: {r.message}" for r in report.results) + "\n")
    if not report.ok:
        sys.exit(1)


def _step_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
