"""`mlops diff`, `mlops plan`, `mlops apply`, `mlops reconcile`."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mlops.cli.main import repo_root

SYMBOLS = {"created": "+", "changed": "~", "affected": "~", "removed": "-"}
STATUS_MARK = {"succeeded": "✓", "failed": "✗", "skipped": "·", "blocked": "⏸", "pending": "…"}
EXIT_CHANGES = 2  # `plan --detailed-exitcode`: the plan has actions (Terraform's convention)


def _head_option(f: Any) -> Any:
    f = click.option("--worktree", is_flag=True, help="Use the working tree as head (the default).")(f)
    return click.option("--head", default=None, help="Head revision (default: the working tree).")(f)


def _resolve_head(head: str | None, worktree: bool) -> str | None:
    if head and worktree:
        raise click.UsageError("--head and --worktree are exclusive")
    return head


def _merge_base_option(f: Any) -> Any:
    return click.option("--merge-base", "use_merge_base", is_flag=True,
                        help="Use the merge base of --base and the head as the base: what merging the head "
                             "(a pull request, even one behind its base branch) would change.")(f)


@click.command()
@click.option("--base", default="HEAD", show_default=True, help="Base revision.")
@_head_option
@_merge_base_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def diff(ctx: click.Context, base: str, head: str | None, worktree: bool, use_merge_base: bool, output: str) -> None:
    """List assets created, changed or removed between two revisions, and everything downstream, with reasons."""
    from mlops.graph.compare import compare

    root = Path(repo_root(ctx))
    head = _resolve_head(head, worktree)
    if use_merge_base:
        from mlops.worktree import merge_base

        base = merge_base(root, base, head or "HEAD")
    with _no_cycle_collection():
        cmp = compare(root, base, head)
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


_RETRAIN_HELP = ("Run pipeline NAME (or model NAME's pipeline) again, ignoring its step cache, although git did "
                 "not change it (new data; a drift alert); a new version follows only if its bytes differ. "
                 "Repeatable.")


@click.command()
@click.option("--base", default=None, help="Base revision (default: the last applied commit, or nothing).")
@_head_option
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan as JSON for `mlops apply`.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@_merge_base_option
@click.option("--refresh/--no-refresh", default=True, show_default=True,
              help="Read live state from the store (registry, applied state).")
@click.option("--allow-dirty", is_flag=True,
              help="Let apply run this plan on a working tree with uncommitted changes (recorded as a snapshot).")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when the plan has actions and 0 when it is empty (errors: 1 or 3-9, see the README).")
@click.option("--retrain", "retrain", multiple=True, metavar="NAME", help=_RETRAIN_HELP)
@click.option("--reason", default="requested on the command line", show_default=True,
              help="Why --retrain (recorded in the new version's lineage).")
@click.pass_context
def plan(ctx: click.Context, base: str | None, head: str | None, worktree: bool, out: str | None, fmt: str,
         use_merge_base: bool, refresh: bool, allow_dirty: bool, detailed_exitcode: bool,
         retrain: tuple[str, ...], reason: str) -> None:
    """Work out the ordered actions (build, run, register, gate, promote, deploy, prune) and why."""
    with _no_cycle_collection():
        _plan(ctx, base, head, worktree, out, fmt, use_merge_base, refresh, allow_dirty, detailed_exitcode,
              dict.fromkeys(retrain, reason))


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Planning reads tens of thousands of small acyclic objects (assets, cached entries) and exits: the
    cycle collector would walk them over and over for nothing (a third of a plan's time at 10,000 assets)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plan(ctx: click.Context, base: str | None, head: str | None, worktree: bool, out: str | None, fmt: str,
          use_merge_base: bool, refresh: bool, allow_dirty: bool, detailed_exitcode: bool,
          retrain: dict[str, str]) -> None:
    from mlops.plan.render import render
    from mlops.reconcile.story import open_project_store, plan_change

    root = Path(repo_root(ctx))
    if use_merge_base and base is None:
        raise click.UsageError("--merge-base needs --base (the branch the head would be merged into)")
    the_plan, _ = plan_change(root, base, _resolve_head(head, worktree),
                              (lambda: open_project_store(root)) if refresh else None,
                              allow_dirty=allow_dirty, use_merge_base=use_merge_base, retrain=retrain)
    if out:
        _write_atomic(Path(out), the_plan.to_json())
    click.echo(the_plan.to_json() if fmt == "json" else render(the_plan, fmt), nl=False)
    _step_summary(lambda: render(the_plan, "markdown"))
    if detailed_exitcode and the_plan.actions:
        sys.exit(EXIT_CHANGES)


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
    the_plan = Plan.from_json(_read_plan_file(Path(plan_file)), origin=plan_file)
    report = apply_saved(root, the_plan, open_project_store(root), _options(jobs, output))
    _finish(report, output)


@click.command()
@click.option("--base", default=None, help="Base revision (default: the last applied commit, or nothing).")
@click.option("--jobs", "-j", default=2, show_default=True, help="Pipeline steps run in parallel.")
@click.option("--allow-dirty", is_flag=True,
              help="Apply a working tree with uncommitted changes (recorded as a snapshot commit, marked dirty).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--retrain", "retrain", multiple=True, metavar="NAME", help=_RETRAIN_HELP)
@click.option("--reason", default="requested on the command line", show_default=True,
              help="Why --retrain (recorded in the new version's lineage).")
@click.pass_context
def reconcile(ctx: click.Context, base: str | None, jobs: int, allow_dirty: bool, output: str,
              retrain: tuple[str, ...] = (), reason: str = "requested on the command line") -> None:
    """Validate, diff, plan and apply the working tree in one step.

    The working tree must be clean (what is applied is a commit) unless --allow-dirty."""
    from mlops.plan.render import render
    from mlops.reconcile.story import apply_saved, check_clean, open_project_store, plan_change

    root = Path(repo_root(ctx))
    stores: list[Any] = []

    def opened() -> Any:
        stores.append(open_project_store(root))
        return stores[0]

    the_plan, _ = plan_change(root, base, None, opened, allow_dirty=allow_dirty, retrain=dict.fromkeys(retrain, reason))
    check_clean(the_plan)
    store = stores[0]
    if output == "text":
        click.echo(render(the_plan, "text"), nl=False)
    _step_summary(lambda: render(the_plan, "markdown"))
    report = apply_saved(root, the_plan, store, _options(jobs, output))
    _finish(report, output)


def _options(jobs: int, output: str) -> Any:
    from mlops.reconcile.story import Options

    echo = (lambda msg: click.echo(msg, err=True)) if output == "text" else (lambda _msg: None)
    return Options(jobs=jobs, echo=echo)


def _finish(report: Any, output: str) -> None:
    """The summary: one line per action (a failure's details were shown once, as it happened), then counts."""
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        lines = [f"{STATUS_MARK[r.status]} {r.status:<9} {r.action}: {_first_line(r.message)}" for r in report.results]
        counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())) or "nothing to do"
        click.echo("\n".join(["", "Summary:", *lines, f"Apply: {counts}."] if lines else [f"Apply: {counts}."]))
        outstanding = [r for r in report.results if r.status in ("pending", "blocked")]
        if outstanding and report.ok:
            click.echo(f"{len(outstanding)} action{'s' if len(outstanding) != 1 else ''} outstanding: the state records "
                       "them and the next reconcile plans them again.")
    _step_summary("#### mlops apply\n\n" + "\n".join(
        f"- {STATUS_MARK[r.status]} **{r.status}** `{r.action}`: {_md_message(r.message)}" for r in report.results)
                  + "\n")
    _step_outputs(report)
    if not report.ok:
        sys.exit(1)


MAX_PLAN_BYTES = 64 * 1024 * 1024


def _read_plan_file(path: Path) -> str:
    """A plan file's text: untrusted input, so bounded and decoded strictly."""
    from mlops.errors import PlanError

    with open(path, "rb") as f:
        data = f.read(MAX_PLAN_BYTES + 1)
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(f"{path}: larger than {MAX_PLAN_BYTES // 2**20} MiB; not a plan made by `mlops plan --out`")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PlanError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); not a plan file") from None


def _first_line(message: str) -> str:
    first, _, rest = message.partition("\n")
    return first + (" (details above)" if rest.strip() else "")


def _md_message(message: str) -> str:
    first, _, rest = message.partition("\n")
    if not rest.strip():
        return first
    return f"{first}\n  <details><summary>details</summary>\n\n  ```\n{rest.rstrip()}\n  ```\n  </details>"


def _step_summary(markdown: str | Callable[[], str]) -> None:
    """Append to the GitHub Actions job summary, when there is one (``markdown`` may be made only then:
    rendering it loads the template engine)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        text = markdown if isinstance(markdown, str) else markdown()
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


def _step_outputs(report: Any) -> None:
    """Under GitHub Actions, the step's outputs (``GITHUB_OUTPUT``): ``awaiting-approval``, how many
    promotions wait only for an approval (the production job runs when it is not 0), and ``blocked``,
    how many actions are blocked for any reason."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    blocked = [r for r in report.results if r.status == "blocked"]
    awaiting = [r for r in blocked if isinstance(r.details.get("gates"), dict)
                and r.details["gates"].get("status") == "awaiting"]
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"awaiting-approval={len(awaiting)}\nblocked={len(blocked)}\n")


def _write_atomic(path: Path, text: str) -> None:
    from mlops.paths import write_atomic

    write_atomic(path, text.encode())
