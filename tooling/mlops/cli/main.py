"""The `mlops` command. Subcommands are imported only when invoked, so `mlops --help` stays fast."""

from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Any

import click

# name -> (module, attribute, one-line help). The help is duplicated here on purpose:
# listing commands must not import them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("mlops.cli.spec_cmds", "validate", "Validate every spec; report all errors at once."),
    "schema": ("mlops.cli.spec_cmds", "schema", "Print the JSON Schema of a spec kind (for editors)."),
    "diff": ("mlops.cli.plan_cmds", "diff", "List assets changed between two revisions, with reasons."),
    "plan": ("mlops.cli.plan_cmds", "plan", "Work out the ordered actions that would reconcile a change."),
    "apply": ("mlops.cli.plan_cmds", "apply_cmd", "Run exactly the actions of a saved plan."),
    "reconcile": ("mlops.cli.plan_cmds", "reconcile", "Validate, diff, plan and apply in one step."),
    "run": ("mlops.cli.pipeline_cmds", "run", "Run one pipeline (cached steps are restored, not rerun)."),
    "runs": ("mlops.cli.pipeline_cmds", "runs", "List pipeline run records."),
    "env": ("mlops.cli.env_cmds", "env", "Build and inspect environments."),
    "models": ("mlops.cli.registry_cmds", "models", "Model registry: list, show, card, register, download, tag, search."),
    "datasets": ("mlops.cli.registry_cmds", "datasets", "Dataset versions: list, show, register, download."),
    "gates": ("mlops.cli.stage_cmds", "gates", "Evaluate a stage's gates for a model version (records nothing)."),
    "promote": ("mlops.cli.stage_cmds", "promote", "Promote a model version to a stage through its gates."),
    "approve": ("mlops.cli.stage_cmds", "approve", "Record an approval of a version entering a stage."),
    "rollback": ("mlops.cli.stage_cmds", "rollback", "Move a stage back to a version it held before."),
    "history": ("mlops.cli.release_cmds", "history", "Every registration, gate result, approval, promotion and deployment of a model."),
    "audit": ("mlops.cli.release_cmds", "audit", "Which model versions served an endpoint at a given time."),
    "locks": ("mlops.cli.lock_cmds", "locks", "List held locks and every lock broken so far."),
    "unlock": ("mlops.cli.lock_cmds", "unlock", "Break a lock left by a run that is gone (--force, on record)."),
    "events": ("mlops.cli.event_cmds", "events", "Lifecycle events: the local log, and flushing the outbox."),
    "status": ("mlops.cli.endpoint_cmds", "status", "Desired vs live state of endpoints: versions, traffic, URL, health, drift."),
    "down": ("mlops.cli.endpoint_cmds", "down", "Stop an endpoint's server (the next reconcile starts it again)."),
    "endpoints": ("mlops.cli.endpoint_cmds", "endpoints", "Live endpoints: show or rotate keys, invoke."),
    "serve": ("mlops.cli.serve_cmds", "serve", "Serve one .onnx model file in the foreground (Open Inference Protocol)."),
    "render": ("mlops.cli.render_cmds", "render", "Render an endpoint's Kubernetes manifests (nothing is applied)."),
    "init": ("mlops.cli.init_cmds", "init", "Scaffold a project: mlops.yaml, an example, workflows, a test."),
    "github": ("mlops.cli.github_cmds", "github", "GitHub Actions helpers: record environment approvals, retrain."),
    "batch": ("mlops.cli.batch_cmds", "batch", "Batch endpoints: score a file in mini-batches (a killed run resumes)."),
    "monitor": ("mlops.cli.monitor_cmds", "monitor", "Drift, data quality and alerts: live inputs vs training data."),
}


EXIT_USAGE = 64  # sysexits' EX_USAGE: 2 means "the plan has changes" under `plan --detailed-exitcode`


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--repo", "repo", default=".", show_default=True, help="Root of the mlops repository.",
              type=click.Path(file_okay=False))
@click.option("--traceback", is_flag=True, help="Show the full traceback of errors (for debugging).")
@click.version_option(package_name="mlops-gitops", prog_name="mlops")
@click.pass_context
def cli(ctx: click.Context, repo: str, traceback: bool) -> None:
    """Declarative GitOps for MLOps: specs in git, reconciled into environments,
    pipeline runs, registered model versions and deployments."""
    ctx.obj = {"repo": repo, "traceback": traceback}
    ctx.call_on_close(_push_pending_state)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: turn our errors into one line and an exit code.

    Everything printed goes through the secret masker (``mlops.secrets``): values of secrets
    declared by pipelines, and of host variables that look secret, come out as ``***``.
    """
    from mlops.secrets import install

    install()
    try:
        code = cli.main(args=argv, prog_name="mlops", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(N) returns N in non-standalone mode
            sys.exit(code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE if isinstance(e, click.UsageError) else e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the one place where errors become exit codes
        _report(e, argv)


def _push_pending_state() -> None:
    """When a command ends, the git store pushes what it still holds (blobs no record carried,
    deferred writes), so that a failure to push is the command's failure (exit code), not a warning at
    exit. Not while an error is on its way out: that one is the error to report (atexit still tries);
    a command that chose its exit code (``ctx.exit(1)``: a step failed, an event was kept) is no error."""
    git_store = sys.modules.get("mlops.store.git")  # imported only by a command that used it
    if git_store is not None and isinstance(sys.exc_info()[1], (type(None), click.exceptions.Exit)):
        git_store.flush_all()


_REFUSALS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


def _report(e: Exception, argv: list[str] | None) -> None:
    from mlops.errors import MlopsError, SpecError

    args = sys.argv[1:] if argv is None else argv
    if "--traceback" in args or os.environ.get("MLOPS_TRACEBACK"):
        raise e
    if isinstance(e, SpecError):
        for d in e.diagnostics:
            click.echo(str(d), err=True)
            if os.environ.get("GITHUB_ACTIONS") == "true":
                click.echo(d.github_annotation())
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    if isinstance(e, MlopsError):
        from mlops.errors import GatesBlockedError

        # A promotion the gates do not allow (yet) is an answer, not a malfunction: said as it is.
        click.echo(str(e) if isinstance(e, GatesBlockedError) else f"error: {e}", err=True)
        sys.exit(e.exit_code)
    if isinstance(e, OSError) and e.errno in _REFUSALS:
        # The machine refused a write (read-only disk, permissions, no space): not a bug of ours.
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"error: {where}{e.strerror}: mlops must write there (check that the disk is not mounted "
                   "read-only, the permissions and the free space)", err=True)
        sys.exit(1)
    click.echo(f"internal error: {type(e).__name__}: {e} (rerun with --traceback)", err=True)
    sys.exit(70)


def report_problems(problems: list[str], where: str) -> None:
    """After a listing that skipped damaged records: one warning line each, then fail (exit 4), so
    scripts notice while people still see every good record."""
    from mlops.errors import CorruptRecordError

    for p in problems:
        click.echo(f"warning: {p}", err=True)
    if problems:
        n = len(problems)
        raise CorruptRecordError(f"{n} damaged record{'s' if n != 1 else ''} in {where} (listed above); "
                                 "the others are shown")


def repo_root(ctx: click.Context) -> str:
    """The repository root the user pointed us at (``-C``)."""
    obj: dict[str, Any] = ctx.find_root().obj or {}
    return os.path.abspath(obj.get("repo", "."))
