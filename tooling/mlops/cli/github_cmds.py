"""`mlops github ...`: what the workflows need from GitHub beyond plan and reconcile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlops.cli.main import repo_root


@click.group()
def github() -> None:
    """GitHub Actions helpers (run inside a workflow; see the README's walk-through)."""


@github.command("record-approvals")
@click.option("--environment", required=True, help="The GitHub Environment whose reviewers approved this run.")
@click.option("--stage", required=True, help="The stage their approval is for (e.g. prod).")
@click.pass_context
def record_approvals(ctx: click.Context, environment: str, stage: str) -> None:
    """Record the reviewers who approved this workflow run's ENVIRONMENT as approvals of every version the
    specs pin to STAGE that does not hold it yet (read from the GitHub API, never from the event)."""
    from mlops.github import GitHubClient
    from mlops.lineage import git_lineage
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_specs
    from mlops.stages.envreviews import current_run_id, environment_reviewers, record_environment_approvals

    root = Path(repo_root(ctx))
    specs = load_specs(root)
    if stage not in [s.name for s in specs.project.stages]:
        raise click.BadParameter(f"no stage {stage!r} in {specs.project.file}", param_hint="--stage")
    run_id = current_run_id()
    approvals = GitHubClient.from_env().run_approvals(run_id)
    if not environment_reviewers(approvals, environment):
        click.echo(f"no reviewer approved the {environment} environment of run {run_id}: nothing recorded")
        return
    done = record_environment_approvals(open_project_store(root), specs.project, specs.models, stage, environment,
                                        run_id, git_lineage(root).get("git_commit"), approvals)
    for r in done:
        click.echo(f"approved {r.model}@{r.version} for {r.stage} as {r.login} ({environment}, run {run_id})")
    if not done:
        click.echo(f"nothing waits for {stage}: no approval recorded")


@github.command("retrain")
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(min=1),
              help="How many steps may run at the same time.")
@click.pass_context
def retrain(ctx: click.Context, jobs: int) -> None:
    """Retrain what this workflow_dispatch or repository_dispatch event names: `mlops reconcile --retrain
    PIPELINE` (the pipeline runs again ignoring its cache; a new model version is registered and enters the
    first stage). The pipeline's name goes to the step output `pipeline`."""
    from mlops.cli.plan_cmds import reconcile
    from mlops.ghevent import read_event, retrain_pipeline, write_output
    from mlops.spec.loader import load_specs

    specs = load_specs(Path(repo_root(ctx)))
    event, payload = read_event()
    models = {name: m.source.pipeline for name, m in specs.models.items()}
    pipeline = retrain_pipeline(event, payload, specs.pipelines, models, source=f"{event} event")
    write_output("pipeline", pipeline)
    reason = _retrain_reason(event, payload)
    click.echo(f"retraining pipeline {pipeline} ({reason})")
    ctx.invoke(reconcile, base=None, jobs=jobs, allow_dirty=False, output="text", retrain=(pipeline,), reason=reason)


def _retrain_reason(event: str, payload: Any) -> str:
    """What the new version's lineage says about why it was trained (untrusted text: mlops cuts it to one
    printable line): the CloudEvent that asked (a drift alert), or who dispatched the workflow."""
    client = payload.get("client_payload") if isinstance(payload, dict) else None
    cloud = client.get("event") if isinstance(client, dict) else None
    if isinstance(cloud, dict):
        parts = [_line(cloud.get("type") or "an event")]
        parts += [f"about {_line(cloud['subject'])}"] if cloud.get("subject") else []
        parts += [f"(event {_line(cloud['id'])})"] if cloud.get("id") else []
        return " ".join(parts)
    sender = payload.get("sender") if isinstance(payload, dict) else None
    who = sender.get("login") if isinstance(sender, dict) else None
    return f"{event}" + (f" by {_line(who)}" if isinstance(who, str) else "")


def _line(value: object, limit: int = 100) -> str:
    """Untrusted text as one printable line of at most ``limit`` characters: it is printed to the job's log
    (where a line starting ``::`` is a workflow command) before reconcile records it."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(value)[: limit * 4]).split())
    return text[:limit]


@github.command("pr-metrics")
@click.option("--base", required=True, help="The pull request's base (its merge base with the checkout is used).")
@click.option("--max-steps", default=50, show_default=True, type=click.IntRange(min=0),
              help="Run nothing when the affected pipelines have more steps than this in all.")
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(min=1))
@click.pass_context
def pr_metrics(ctx: click.Context, base: str, max_steps: int, jobs: int) -> None:
    """Run the pipelines this change affects (the step cache helps), register their models in a scratch
    overlay (the shared state is only read), and print Markdown: each candidate's metrics next to every
    stage holder's, with deltas, its confusion matrix and the gates it would pass or fail."""
    from mlops.cli.plan_cmds import _step_summary
    from mlops.reconcile.preview import preview, render_preview

    text = render_preview(preview(Path(repo_root(ctx)), base, max_steps=max_steps, jobs=jobs))
    click.echo(text, nl=False)
    _step_summary(text)
