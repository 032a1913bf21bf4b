"""Turn schema-valid YAML data into the typed values of ``mlops.spec.model``."""

from __future__ import annotations

from typing import Any

from mlops.spec.model import (
    Dataset,
    Deployment,
    Endpoint,
    Environment,
    Model,
    ModelEvaluation,
    ModelMonitoring,
    ModelRef,
    ModelSource,
    Pipeline,
    Project,
    Stage,
    Step,
    StoreConfig,
    TargetConfig,
)


def build_project(d: dict[str, Any], file: str) -> Project:
    stores = d.get("stores", {})
    art = stores.get("artifacts", {})
    reg = stores.get("registry", {})
    targets = tuple(TargetConfig(name, t["type"], {k: v for k, v in t.items() if k != "type"})
                    for name, t in d.get("targets", {}).items())
    return Project(
        name=d["name"],
        stages=tuple(Stage(s["name"], tuple(s.get("gates", ())), s.get("description", ""),
                           bool(s.get("auto", i == 0))) for i, s in enumerate(d["stages"])),
        store=StoreConfig(type=art.get("type", "local"), path=art.get("path", ".mlops"), bucket=art.get("bucket", ""),
                          prefix=art.get("prefix", ""), endpoint_url=art.get("endpoint_url", ""),
                          region=art.get("region", ""), remote=art.get("remote", ""),
                          max_blob_mb=float(art.get("max_blob_mb", 50.0))),
        registry_backend=reg.get("backend", "store"),
        registry_remote=reg.get("remote", ""),
        targets=targets,
        default_target=d.get("default_target", "local"),
        notifications=tuple(d.get("notifications", ())),
        file=file,
    )


def build_environment(d: dict[str, Any], file: str) -> Environment:
    return Environment(
        name=d["name"], python=str(d["python"]) if d.get("python") is not None else None, requirements=tuple(d.get("requirements", ())),
        lockfile=d.get("lockfile"), base_image=d.get("base_image"),
        system_packages=tuple(d.get("system_packages", ())), variables=dict(d.get("variables", {})),
        system_site_packages=bool(d.get("system_site_packages", False)), file=file,
    )


def build_dataset(d: dict[str, Any], file: str) -> Dataset:
    return Dataset(name=d["name"], path=d["path"], digest=d.get("digest"), description=d.get("description", ""),
                   tags=dict(d.get("tags", {})), file=file)


def build_step(d: dict[str, Any]) -> Step:
    return Step(
        name=d["name"], command=tuple(str(a) for a in d["command"]), inputs=dict(d.get("inputs", {})),
        outputs=dict(d.get("outputs", {})), params=dict(d.get("params", {})), environment=d.get("environment"),
        code=tuple(d.get("code", ())), metrics=d.get("metrics"), env=dict(d.get("env", {})), timeout=d.get("timeout"),
        secrets=tuple(d.get("secrets", ())),
    )


def build_pipeline(d: dict[str, Any], file: str) -> Pipeline:
    return Pipeline(name=d["name"], steps=tuple(build_step(s) for s in d["steps"]), environment=d.get("environment"),
                    params=dict(d.get("params", {})), file=file, secrets=tuple(d.get("secrets", ())))


def build_model(d: dict[str, Any], file: str) -> Model:
    s = d["source"]
    source = ModelSource(pipeline=s.get("pipeline"), artifact=s.get("artifact"), metrics=s.get("metrics"),
                         files=tuple(s.get("files", ())))
    ev = d.get("evaluation")
    evaluation = None if ev is None else ModelEvaluation(
        data=ev["data"], label=ev["label"], task=ev["task"], repeats=ev.get("repeats", 5), seed=ev.get("seed", 0))
    mon = d.get("monitoring") or {}
    return Model(name=d["name"], flavor=d["flavor"], source=source, description=d.get("description", ""),
                 tags=dict(d.get("tags", {})), stages={str(k): int(v) for k, v in d.get("stages", {}).items()},
                 file=file, evaluation=evaluation,
                 monitoring=ModelMonitoring(reference=mon.get("reference"), label=mon.get("label")))


def build_endpoint(d: dict[str, Any], file: str) -> Endpoint:
    deployments = []
    for dep in d["deployments"]:
        options = {k: v for k, v in dep.items() if k not in ("name", "model", "environment", "instances")}
        deployments.append(Deployment(name=dep["name"], model=ModelRef.parse(dep["model"]),
                                      environment=dep.get("environment"), instances=dep.get("instances", 1),
                                      options=options))
    traffic = dict(d.get("traffic", {}))
    if not traffic and len(deployments) == 1:
        traffic = {deployments[0].name: 100}
    return Endpoint(name=d["name"], type=d["type"], deployments=tuple(deployments), target=d.get("target"),
                    traffic=traffic, mirror=dict(d.get("mirror", {})), rollout=dict(d.get("rollout", {})),
                    monitoring=dict(d.get("monitoring", {})), batch=dict(d.get("batch", {})),
                    auth=dict(d.get("auth", {})), serving=dict(d.get("serving", {})), file=file)


BUILDERS = {
    "Project": build_project,
    "Environment": build_environment,
    "Dataset": build_dataset,
    "Pipeline": build_pipeline,
    "Model": build_model,
    "Endpoint": build_endpoint,
}
