"""`mlops monitor [ENDPOINT...]`: drift, data quality and operational alerts of live endpoints.

Compares the inputs an endpoint captured in its window with its model version's training data (the
baseline in the version's lineage), writes the report (JSON and HTML) to the store, judges the alert
rules on the live metrics, and raises events (see ``mlops.monitoring.monitor``). ``--all`` takes every
endpoint with a ``monitoring`` block (the scheduled workflow runs that). Exit 0 when the comparison ran,
whatever it found, unless ``--fail-on-drift``: then 1 when drift, failed quality or an alert was found.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mlops.cli.main import repo_root


@click.command()
@click.argument("endpoints", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every endpoint with a monitoring block.")
@click.option("--reference", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Compare with this file (CSV, Parquet, JSONL, Arrow) instead of the version's training data.")
@click.option("--current", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Compare this file instead of the captured requests.")
@click.option("--window-hours", type=click.FloatRange(min=0, min_open=True),
              help="Captures of the last N hours (default: the spec's window_hours, 24).")
@click.option("--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--no-notify", is_flag=True, help="Raise no events and take no action (a dry look).")
@click.option("--fail-on-drift", is_flag=True, help="Exit 1 when drift, failed data quality or an alert is found.")
@click.pass_context
def monitor(ctx: click.Context, endpoints: tuple[str, ...], all_: bool, reference: Path | None,
            current: Path | None, window_hours: float | None, fmt: str, no_notify: bool, fail_on_drift: bool) -> None:
    """Compare ENDPOINT's captured inputs with its training data: drift, data quality, alerts."""
    from mlops.errors import MlopsError, MonitorError
    from mlops.monitoring.monitor import Context, monitor_endpoint
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_specs
    from mlops.store.lock import StoreLock

    root = Path(repo_root(ctx))
    specs = load_specs(root)
    names = list(endpoints)
    if all_:
        names += [n for n, e in sorted(specs.endpoints.items()) if e.monitoring and n not in names]
    if not names:
        raise click.UsageError("name an endpoint, or give --all")
    if current is not None and len(names) != 1:
        raise click.UsageError("--current compares one file: name exactly one endpoint")
    for name in names:
        if name not in specs.endpoints:
            raise MonitorError(f"no endpoint {name!r} in endpoints/ (known: {', '.join(sorted(specs.endpoints))})")
    store = open_project_store(root)
    outcomes = []
    failed: list[MlopsError] = []
    for name in names:
        try:
            with _progress() as progress, StoreLock(store, f"monitor-{name}", owner="mlops monitor"):
                mctx = Context(root, specs, store, progress=progress,
                               warn=lambda m: click.echo(f"warning: {_text(m, 500)}", err=True))
                outcomes.append(monitor_endpoint(mctx, name, reference=reference, current=current,
                                                 window_hours=window_hours, notify=not no_notify))
        except MlopsError as e:
            if len(names) == 1:
                raise
            # one endpoint's damaged record or missing baseline must not stop the others being watched
            click.echo(f"error: endpoint {name}: {_text(e, 500)}", err=True)
            failed.append(e)
    if fmt == "json":
        click.echo(json.dumps([o.to_dict() for o in outcomes], indent=2, default=str, allow_nan=False))
    else:
        for o in outcomes:
            _print(o)
    if failed:
        ctx.exit(failed[0].exit_code)
    if fail_on_drift and any(o.drift or o.quality_failed or o.alerts for o in outcomes):
        ctx.exit(1)


def _print(o: object) -> None:
    from mlops.monitoring.monitor import Outcome

    assert isinstance(o, Outcome)
    click.echo(f"endpoint {o.endpoint}")
    for w in o.warnings:
        click.echo(f"  note: {_text(w, 500)}")  # may quote column names of capture files
    for c in o.comparisons:
        who = f"{c.model}@{c.version}" if c.model else "files"
        deps = f" ({', '.join(c.deployments)})" if c.deployments else ""
        if c.report is None:
            click.echo(f"  {who}{deps}: {c.note}")
            continue
        r = c.report
        drifted = [_text(f["name"], 40) for f in r.get("features", []) if f.get("drifted")]
        verdict = "DRIFT" if r.get("dataset_drift") else "no dataset drift"
        shown = ", ".join(drifted[:8]) + (f", +{len(drifted) - 8} more" if len(drifted) > 8 else "")
        click.echo(f"  {who}{deps}: {c.rows} rows vs {r['reference'].get('rows')} reference rows: {verdict} "
                   f"({r.get('drifted_count')}/{r.get('features_count')} features drifted"
                   + (f": {shown}" if drifted else "") + ")")
        pred = r.get("prediction")
        if pred:
            click.echo(f"    prediction {_text(pred['name'])}: {'DRIFT' if pred.get('drifted') else 'no drift'} "
                       f"({pred.get('test')} {_num(pred.get('statistic'))}, threshold {_num(pred.get('threshold'))})")
        quality = r.get("quality") or {}
        errors = [f for f in quality.get("findings", []) if f.get("severity") == "error"]
        warnings: dict[str, int] = {}
        for f in quality.get("findings", []):
            if f.get("severity") != "error":
                warnings[str(f.get("check"))] = warnings.get(str(f.get("check")), 0) + 1
        counts = [f"{len(errors)} error{'s' if len(errors) != 1 else ''}"] if errors else []
        counts += [f"{n} {check} warning{'s' if n != 1 else ''}" for check, n in sorted(warnings.items())]
        click.echo(f"    data quality: {'passed' if quality.get('passed', True) else 'FAILED'}"
                   + (f" ({', '.join(counts)})" if counts else ""))
        for f in errors[:10]:
            click.echo(f"      {_text(f.get('feature'), 40)}: {_text(f.get('message'), 200)}")
        click.echo(f"    report: {c.html}")
    for dep, fig in o.operational.items():
        rate = fig.get("error_rate")
        p99 = fig.get("p99_ms")
        click.echo(f"  {dep}: {int(fig.get('requests') or 0)} requests since the last run"
                   + (f", error rate {rate:.2%}" if rate is not None else "")
                   + (f", p99 {p99:.1f} ms" if p99 is not None else ""))
    for a in o.alerts:
        click.echo(f"  ALERT {a['alert']}: {a['deployment']} {a['metric']} = {_num(a['value'])} "
                   f"({a['op']} {a['threshold']:g})")
    if o.events:
        click.echo(f"  events: {', '.join(o.events)}")


def _text(value: object, limit: int = 80) -> str:
    """Untrusted text (feature names and messages come from data files) as one printable line."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal (else nothing): fed (label, done, total)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}  # label -> rich TaskID

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield update
