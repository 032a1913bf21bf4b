"""`mlops status`, `mlops down`, `mlops endpoints keys show|rotate`, `mlops endpoints invoke`: live endpoints.

``status`` compares each online endpoint's desired state (specs + registry + stages) with what its target serves.
``down`` stops one (the next reconcile starts it again while its spec exists). Keys are printed only here.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mlops.cli.main import repo_root
from mlops.errors import DeployError, MlopsError

if TYPE_CHECKING:
    from mlops.deploy.protocol import EndpointState, Target
    from mlops.spec.model import Specs
    from mlops.store.lock import StoreLock
    from mlops.store.protocol import ArtifactStore

OUTPUT = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
_MAX_BODY_MB = 64


def _load(ctx: click.Context) -> tuple[Path, Specs, ArtifactStore]:
    from mlops.reconcile.story import open_project_store
    from mlops.spec.loader import load_specs

    root = Path(repo_root(ctx))
    specs = load_specs(root)
    return root, specs, open_project_store(root)


def _reconcile_lock(store: ArtifactStore, root: Path) -> StoreLock:
    """The reconcile's lock: a server stopped, or its config.json rewritten, in the middle of a deploy or a
    canary rollout would race it (its next traffic step, its audit records); a LockError names the holder."""
    from mlops.reconcile.live import actor
    from mlops.store.lock import StoreLock

    return StoreLock(store, "reconcile", owner=actor(root))


def _target_of(root: Path, specs: Specs, endpoint: str) -> Target:
    """The target the endpoint's spec names; the local target for an endpoint no spec names any more."""
    from mlops.deploy.desired import target_name
    from mlops.deploy.targets import open_target, target_config

    spec = specs.endpoints.get(endpoint)
    name = target_name(spec, specs) if spec is not None else "local"
    return open_target(name, target_config(specs.project, name), root)


def _keyed(root: Path, specs: Specs, endpoint: str) -> Any:
    """The endpoint's target, when mlops keeps its keys on this machine (local and docker targets: the
    keys live in the endpoint's state directory); DeployError for one whose keys are its own secret."""
    from mlops.deploy.local import check_endpoint_name

    check_endpoint_name(endpoint)
    target = _target_of(root, specs, endpoint)
    if not (hasattr(target, "state_dir") and hasattr(target, "rotate_keys")):
        raise DeployError(f"endpoint {endpoint} runs on target {target.name}, whose keys mlops does not keep "
                          "locally: see that target's secret")
    return target


def _deployments(state: EndpointState | None) -> list[dict[str, Any]]:
    if state is None:
        return []
    return [{"deployment": d.name, "model": d.model, "version": d.version, "traffic": state.traffic.get(d.name, 0),
             "sha256": d.sha256} for d in sorted(state.deployments, key=lambda d: d.name)]


def endpoint_status(root: Path, specs: Specs, store: ArtifactStore, name: str) -> dict[str, Any]:
    """Desired vs live of one endpoint, as a JSON-able dict."""
    from mlops.deploy.desired import desired_state, target_name
    from mlops.deploy.targets import peek

    spec = specs.endpoints.get(name)
    out: dict[str, Any] = {"endpoint": name, "in_specs": spec is not None, "type": spec.type if spec else None,
                           "target": target_name(spec, specs) if spec is not None else "local",
                           "url": None, "running": False, "healthy": False, "drift": None, "problem": None,
                           "desired": [], "live": []}
    desired = None
    if spec is not None and spec.type == "online":
        try:
            desired = desired_state(spec, specs, store, root=root)
        except MlopsError as e:
            out["problem"] = str(e)
    try:
        target = _target_of(root, specs, name)
        live = peek(target, name)
        healthy = live is not None and target.read(name) is not None
    except MlopsError as e:
        out["problem"] = f"target {out['target']}: {e}"
        return out
    out.update(url=live.url if live else None, running=live is not None, healthy=healthy,
               desired=_deployments(desired), live=_deployments(live))
    if spec is None:
        out["drift"] = "not in the specs: the next reconcile stops it" if live is not None else None
    elif spec.type != "online":
        out["drift"] = None
    elif live is None:
        out["drift"] = "not running"
    elif desired is not None and desired.digest() != live.digest():
        out["drift"] = "serves something other than the specs say"
    return out


@click.command()
@click.argument("endpoint", required=False)
@OUTPUT
@click.pass_context
def status(ctx: click.Context, endpoint: str | None, output: str) -> None:
    """Desired vs live state of every endpoint (or ENDPOINT): versions, traffic, URL, health, drift."""
    from mlops.deploy.targets import open_target, target_config

    root, specs, store = _load(ctx)
    names = set(specs.endpoints)
    if endpoint is None:
        with contextlib.suppress(MlopsError):  # also what runs locally but no spec names any more
            names |= set(open_target("local", target_config(specs.project, "local"), root).endpoints())
    elif endpoint not in specs.endpoints:
        from mlops.deploy.local import check_endpoint_name

        check_endpoint_name(endpoint)
    rows = [endpoint_status(root, specs, store, n) for n in ([endpoint] if endpoint else sorted(names))]
    if output == "json":
        click.echo(json.dumps({"endpoints": rows}, indent=2, sort_keys=True))
        return
    if not rows:
        click.echo("no endpoints in the specs")
    for r in rows:
        _print_row(r)


def _print_row(r: dict[str, Any]) -> None:
    if r["type"] == "batch":
        click.echo(f"{r['endpoint']}: batch endpoint (nothing runs between scorings)")
        return
    health = "healthy" if r["healthy"] else "running, not ready" if r["running"] else "not running"
    state = f"drift: {r['drift']}" if r["drift"] else "in sync"
    click.echo(f"{r['endpoint']}  target {r['target']}  {r['url'] or '-'}  {health}  {state}")
    live = {d["deployment"]: d for d in r["live"]}
    desired = {d["deployment"]: d for d in r["desired"]}
    for name in sorted(set(live) | set(desired)):
        lv, dv = live.get(name), desired.get(name)
        shown = f"{lv['model']}@{lv['version']} {lv['traffic']}%" if lv else "-"
        want = f"{dv['model']}@{dv['version']} {dv['traffic']}%" if dv else "(not in the specs)"
        note = "" if lv and dv and shown == want else f"   (specs: {want})"
        click.echo(f"  {name:<12} {shown}{note}")
    if r["problem"]:
        click.echo(f"  problem: {r['problem']}")


@click.command()
@click.argument("endpoint")
@click.pass_context
def down(ctx: click.Context, endpoint: str) -> None:
    """Stop ENDPOINT's server. While its spec exists, the next reconcile starts it again."""
    from mlops.deploy.local import check_endpoint_name
    from mlops.deploy.records import open_slots, record_slots
    from mlops.deploy.targets import peek
    from mlops.lineage import git_lineage
    from mlops.reconcile.live import actor

    check_endpoint_name(endpoint)
    root, specs, store = _load(ctx)
    target = _target_of(root, specs, endpoint)
    with _reconcile_lock(store, root):
        running = peek(target, endpoint) is not None
        target.remove(endpoint)
        if open_slots(store, endpoint):
            record_slots(store, endpoint, None, by=actor(root), why="mlops down",
                         commit=git_lineage(root).get("git_commit"))
    said = "stopped" if running else "was not running; cleaned up"
    spec = specs.endpoints.get(endpoint)
    click.echo(f"endpoint {endpoint} {said} (target {target.name})")
    if spec is not None:
        click.echo(f"its spec {spec.file} is still there: the next `mlops reconcile` starts it again; remove the "
                   "spec to keep it down")


@click.group()
def endpoints() -> None:
    """Live endpoints: their keys, and sending them a request."""


@endpoints.group()
def keys() -> None:
    """An endpoint's API keys (printed only by these commands)."""


@keys.command("show")
@click.argument("endpoint")
@click.pass_context
def keys_show(ctx: click.Context, endpoint: str) -> None:
    """Print ENDPOINT's current key."""
    from mlops.deploy.keys import read_keys

    root, specs, _ = _load(ctx)
    target = _keyed(root, specs, endpoint)
    found = read_keys(target.state_dir(endpoint))
    if not found:
        raise DeployError(f"endpoint {endpoint} has no key: it was never deployed here, or its auth mode is none")
    key = found[-1]
    if key.value is None:
        click.echo(f"the key of endpoint {endpoint} is the value of the host variable {key.source[4:]} "
                   "(mlops keeps only its hash); `mlops endpoints keys rotate` replaces it with one mlops keeps")
        return
    _print_secret(key.value)


@keys.command("rotate")
@click.argument("endpoint")
@click.pass_context
def keys_rotate(ctx: click.Context, endpoint: str) -> None:
    """A new key for ENDPOINT; the old one stays valid until the server took the new one. Prints it once."""
    root, specs, store = _load(ctx)
    target = _keyed(root, specs, endpoint)
    with _reconcile_lock(store, root):
        new = target.rotate_keys(endpoint)
    click.echo(f"endpoint {endpoint}: new key (the old one is no longer valid):", err=True)
    _print_secret(new)


def _print_secret(value: str) -> None:
    """On stdout, past the masker: this is the one place a key is meant to be seen."""
    out = getattr(sys.stdout, "inner", sys.stdout)
    out.write(value + "\n")
    out.flush()


@endpoints.command("invoke")
@click.argument("endpoint")
@click.option("--data", "data", required=True, metavar="FILE|-",
              help="An Open Inference Protocol request body (JSON): a file, or - for stdin.")
@click.option("--deployment", default=None, help="Send it to this deployment (header x-mlops-deployment).")
@click.pass_context
def invoke(ctx: click.Context, endpoint: str, data: str, deployment: str | None) -> None:
    """POST an inference request to ENDPOINT with its key and print the answer."""
    from mlops.deploy.keys import read_keys
    from mlops.deploy.targets import peek
    from mlops.httpio import TransportError, exchange

    root, specs, _ = _load(ctx)
    target = _target_of(root, specs, endpoint)
    live = peek(target, endpoint)
    if live is None or live.url is None:
        raise DeployError(f"endpoint {endpoint} is not running (on target {target.name}): `mlops reconcile` "
                          "starts it")
    body = _read_body(data)
    headers = {"Content-Type": "application/json"}
    if hasattr(target, "state_dir"):  # local and docker: the keys are in the endpoint's state directory
        found = read_keys(target.state_dir(endpoint))
        if found:
            value = found[-1].value
            if value is None:  # from a host variable: read it from there again
                import os

                value = os.environ.get(found[-1].source[4:])
            if value:
                headers["Authorization"] = f"Bearer {value}"
    if deployment:
        headers["x-mlops-deployment"] = deployment
    try:
        reply = exchange("POST", f"{live.url}/v2/models/{endpoint}/infer", body=body, headers=headers, timeout=30)
    except TransportError as e:
        raise DeployError(f"endpoint {endpoint}: {e}") from None
    served_by = reply.header("x-mlops-deployment")
    if served_by:
        click.echo(f"served by deployment {served_by}", err=True)
    text = reply.body.decode(errors="replace")
    with contextlib.suppress(ValueError, RecursionError):
        text = json.dumps(json.loads(text), indent=2)
    click.echo(text)
    if reply.status >= 400:
        raise DeployError(f"endpoint {endpoint} answered HTTP {reply.status}")


def _read_body(data: str) -> bytes:
    limit = _MAX_BODY_MB << 20
    try:
        if data == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with Path(data).open("rb") as f:
                raw = f.read(limit + 1)
    except OSError as e:
        raise click.BadParameter(f"{data}: {e.strerror or e}", param_hint="--data") from None
    if len(raw) > limit:
        raise click.BadParameter(f"{data}: larger than {_MAX_BODY_MB} MB", param_hint="--data")
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        raise click.BadParameter(f"{data}: not a JSON document (an Open Inference Protocol request)",
                                 param_hint="--data") from None
    return raw
