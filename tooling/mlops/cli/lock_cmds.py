"""`mlops locks` and `mlops unlock`: see who holds the store's locks, and break one on record."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from mlops.cli.main import repo_root


@click.command("locks")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def locks(ctx: click.Context, output: str) -> None:
    """List the locks held in the project's store, and every lock broken so far (who, when, why)."""
    from mlops.reconcile.story import open_project_store
    from mlops.store.lock import LockInfo, break_history, held_locks

    store = open_project_store(Path(repo_root(ctx)))
    now = time.time()
    held: list[dict[str, Any]] = []
    for name, info, alive in held_locks(store):
        if isinstance(info, LockInfo):
            assert alive is not None
            held.append({"name": name, "holder": asdict(info), "last_alive": alive,
                         "stale": info.stale_reason(now, alive), "unreadable": None})
        else:
            held.append({"name": name, "holder": None, "last_alive": None, "stale": None, "unreadable": info})
    history = break_history(store)
    broken = [{"key": key, **(asdict(r) if r else {"unreadable_record": True})} for key, r in history]
    if output == "json":
        click.echo(json.dumps({"store": store.url, "locks": held, "broken": broken}, indent=2, sort_keys=True))
        return
    click.echo(f"locks in {store.url}:")
    for row in held:
        if row["holder"] is None:
            click.echo(f"  {row['name']}: unreadable record ({row['unreadable']}); "
                       f"break it with `mlops unlock {row['name']} --force --reason \"...\"`")
            continue
        info = LockInfo(**row["holder"])
        state = f"stale: {row['stale']}" if row["stale"] else "live"
        click.echo(f"  {row['name']}: {info.describe(row['last_alive'], now)} ({state})")
    if not held:
        click.echo("  none held")
    click.echo("broken locks:" if history else "no lock was ever broken")
    for key, record in history:
        click.echo(f"  {record.describe() if record else 'unreadable record'} [{key}]")


@click.command("unlock")
@click.argument("name", default="reconcile")
@click.option("--force", is_flag=True, help="Required: breaking a lock lets another run in.")
@click.option("--reason", default="", help="Why the lock may be broken (kept in the store's record).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def unlock(ctx: click.Context, name: str, force: bool, reason: str, output: str) -> None:
    """Break the lock NAME (default: reconcile) whose holder is gone, e.g. a killed CI runner.

    Locks whose holder stops its heartbeat are taken over by the next run after a minute anyway;
    this is for the cases that cannot wait or that nothing else can resolve (an unreadable lock
    record). Who broke it, when, why and what it was are recorded under locks-broken/ and shown
    by `mlops locks`.
    """
    from mlops.reconcile.live import actor
    from mlops.reconcile.story import open_project_store
    from mlops.store.lock import check_name, force_break

    check_name(name)
    if not force or not reason.strip():
        raise click.UsageError("breaking a lock lets another run in while its holder may still be working: "
                               "pass --force and --reason \"why\" (see `mlops locks` for the holder)")
    root = Path(repo_root(ctx))
    store = open_project_store(root)
    record = force_break(store, name, by=actor(root), reason=reason)
    if record is None:
        click.echo(f"lock {name!r} in {store.url} is not held; nothing to break", err=True)
        if output == "json":
            click.echo(json.dumps(None))
        return
    if output == "json":
        click.echo(json.dumps(asdict(record), indent=2, sort_keys=True))
        return
    click.echo(record.describe())
    click.echo(f"recorded in {store.url} as locks-broken/{name}/{record.token}")
