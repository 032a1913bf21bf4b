"""`mlops render ENDPOINT`: the Kubernetes manifests an endpoint's desired state renders to, printed or written.

Nothing is applied: this is what `mlops reconcile` would apply with `kubectl` on a kubernetes target (or writes to
``.mlops/render/`` when the target has no cluster context), for review, `kubectl diff`, or another GitOps tool.
"""

from __future__ import annotations

from pathlib import Path

import click

from mlops.cli.main import repo_root


@click.command()
@click.argument("endpoint")
@click.option("--target", "target_name", default=None, metavar="NAME",
              help="A kubernetes target from mlops.yaml (default: the endpoint's own target).")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="Write one YAML file per object into DIR instead of printing one stream.")
@click.pass_context
def render(ctx: click.Context, endpoint: str, target_name: str | None, out: str | None) -> None:
    """Render ENDPOINT's Kubernetes manifests (Deployments, Services, autoscalers, the HTTPRoute, or a KServe
    InferenceService) from the specs and the registry."""
    from mlops.deploy.desired import desired_state
    from mlops.deploy.desired import target_name as endpoint_target
    from mlops.deploy.kubernetes import KubernetesTarget
    from mlops.deploy.kubernetes_render import to_yaml
    from mlops.deploy.targets import target_config
    from mlops.registry.composite import open_registry_store
    from mlops.spec.cache import ParseCache, open_cache
    from mlops.spec.loader import load
    from mlops.spec.source import open_source

    root = Path(repo_root(ctx))
    disk = open_cache(root)
    loaded = load(open_source(root, None), disk)
    disk.save(keep={ParseCache.key(f.path, f.digest) for f in loaded.files.values()})
    specs = loaded.specs
    spec = specs.endpoints.get(endpoint)
    if spec is None:
        known = ", ".join(sorted(specs.endpoints)) or "none"
        raise click.BadParameter(f"no endpoint named {endpoint!r} (endpoints: {known})", param_hint="ENDPOINT")
    name = target_name or endpoint_target(spec, specs)
    config = target_config(specs.project, name)
    if config is None or config.type != "kubernetes":
        kind = "not declared" if config is None else f"of type {config.type}"
        raise click.BadParameter(f"target {name!r} is {kind}; mlops render renders for a target of type "
                                 "kubernetes (targets: in mlops.yaml)", param_hint="--target")
    store = open_registry_store(specs.project, root)
    desired = desired_state(spec, specs, store)
    if target_name:  # rendered for another target than the endpoint's own: the state says which
        import dataclasses

        desired = dataclasses.replace(desired, target=name)
    target = KubernetesTarget(name, dict(config.options), root)
    docs = target.render(desired, store)
    if out is None:
        click.echo(to_yaml(docs), nl=False)
        return
    where = Path(out)
    where.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        path = where / f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(to_yaml([doc]), encoding="utf-8")
        click.echo(str(path))
