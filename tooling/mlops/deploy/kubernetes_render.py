"""Kubernetes manifests for an endpoint, rendered from the jinja2 templates in ``templates/k8s``.

Per deployment: a ConfigMap (the server config, one deployment at 100%), a Deployment (the serving image running
``python -m mlops.serving``; an init container fetches the model from the S3 artifact store by its sha256 and
verifies it; readiness and liveness probes on the OIP health routes), a Service, and an autoscaling/v2
HorizontalPodAutoscaler when the deployment has more than one instance or a CPU request. Per endpoint: ONE Gateway
API HTTPRoute whose default rule splits the traffic by weight across the Services (the mirror is a RequestMirror
filter) and whose pin rules send ``x-mlops-deployment: NAME`` (or ``/v2/models/E/versions/N``) to one Service.
With ``kserve: true`` the endpoint is instead one KServe InferenceService (ONNX, protocol v2, the canary's share as
``canaryTrafficPercent``).

Templates emit JSON and every value goes through jinja2's ``tojson``; the result is parsed with ``json.loads`` and
written with ``yaml.safe_dump``. No value (a hostile image name, a model name with a newline) can add a key.

How the model reaches a pod: the init container runs ``python -m mlops.deploy.kubernetes_fetch`` from the same
image, downloads ``blobs/sha256/..`` from the project's S3 store (credentials from the Secret named by the target's
``s3_secret``; optional, so an IAM role for the service account works too), checks the sha256 and writes it into an
``emptyDir`` volume whose ``sizeLimit`` is the target's ``model_volume`` (default 1Gi): a model larger than that
gets the pod evicted. A local (directory) store cannot feed a cluster: rendering asks for an S3 store.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.errors import DeployError

if TYPE_CHECKING:
    import jinja2

    from mlops.store.protocol import ArtifactStore
    from mlops.store.s3 import S3Store

PORT = 8080
PIN_HEADER = "x-mlops-deployment"
MANAGED_BY = "mlops"
STATE_ANNOTATION = "mlops.dev/state"  # the EndpointState an HTTPRoute/InferenceService was rendered from
DEPLOYMENT_ANNOTATION = "mlops.dev/deployment-state"  # the DeploymentState a Deployment serves
ENDPOINT_LABEL = "mlops.dev/endpoint"
DEPLOYMENT_LABEL = "mlops.dev/deployment"
MAX_DEPLOYMENTS = 15  # an HTTPRoute has at most 16 rules: one pin rule per deployment plus the split
HPA_MAX_FACTOR = 3  # the autoscaler may grow a deployment to 3x its declared instances
DEFAULT_CPU = "500m"  # the request an autoscaled deployment gets when it declares no cpu (utilization needs one)

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: what a Service name must be
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SPEC_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")


@dataclass(frozen=True)
class KubeSettings:
    """A kubernetes target's options from ``mlops.yaml`` (``targets: {NAME: {type: kubernetes, ...}}``)."""

    name: str
    namespace: str = "default"
    context: str | None = None
    image: str | None = None
    gateway: str = "mlops-gateway"
    gateway_namespace: str | None = None
    hostnames: tuple[str, ...] = ()
    kserve: bool = False
    s3_secret: str = "mlops-s3"
    model_volume: str = "1Gi"
    rollout_timeout_s: int = 300
    prometheus: str | None = None

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any]) -> KubeSettings:
        """Checked options; a bad one is a DeployError naming ``targets.NAME.FIELD`` in mlops.yaml."""
        def where(field_name: str) -> str:
            return f"mlops.yaml: targets.{name}.{field_name}"

        def text(field_name: str, default: str | None) -> str | None:
            value = options.get(field_name, default)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise DeployError(f"{where(field_name)}: expected a non-empty string, got {value!r}")
            return value

        namespace = text("namespace", "default") or "default"
        if len(namespace) > 63 or not _DNS1123_LABEL.fullmatch(namespace):
            raise DeployError(f"{where('namespace')}: {namespace!r} is not a Kubernetes namespace name "
                              "(lowercase letters, digits and '-', at most 63)")
        gateway = text("gateway", "mlops-gateway") or "mlops-gateway"
        gw_ns, _, gw_name = gateway.rpartition("/")
        for part in (gw_name, gw_ns) if gw_ns else (gw_name,):
            if len(part) > 63 or not _DNS_SUBDOMAIN.fullmatch(part):
                raise DeployError(f"{where('gateway')}: {gateway!r} is not GATEWAY or NAMESPACE/GATEWAY "
                                  "(Kubernetes names)")
        hostnames = options.get("hostnames", [])
        if isinstance(hostnames, str):
            hostnames = [hostnames]
        if not isinstance(hostnames, list) or not all(isinstance(h, str) and _DNS_SUBDOMAIN.fullmatch(h)
                                                       for h in hostnames):
            raise DeployError(f"{where('hostnames')}: expected DNS names (a list), got {hostnames!r}")
        kserve = options.get("kserve", False)
        if not isinstance(kserve, bool):
            raise DeployError(f"{where('kserve')}: expected true or false, got {kserve!r}")
        volume = str(options.get("model_volume", "1Gi"))
        if not _QUANTITY.fullmatch(volume):
            raise DeployError(f"{where('model_volume')}: {volume!r} is not a size (e.g. 1Gi, 500Mi)")
        timeout = options.get("rollout_timeout", 300)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise DeployError(f"{where('rollout_timeout')}: expected whole seconds > 0, got {timeout!r}")
        secret = text("s3_secret", "mlops-s3") or "mlops-s3"
        if not _DNS_SUBDOMAIN.fullmatch(secret):
            raise DeployError(f"{where('s3_secret')}: {secret!r} is not a Secret name")
        return cls(name=name, namespace=namespace, context=text("context", None), image=text("image", None),
                   gateway=gw_name, gateway_namespace=gw_ns or None, hostnames=tuple(hostnames), kserve=kserve,
                   s3_secret=secret, model_volume=volume, rollout_timeout_s=timeout,
                   prometheus=text("prometheus", None))


# -- names ---------------------------------------------------------------------------------------------------------

def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _clean(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")


def endpoint_name(endpoint: str) -> str:
    """The HTTPRoute/InferenceService name of an endpoint: its name when that is a DNS-1035 label, else a cleaned
    prefix and a hash of the name (deterministic, distinct for distinct names)."""
    if len(endpoint) <= 63 and _DNS_LABEL.fullmatch(endpoint):
        return endpoint
    base = _clean(endpoint)[:45].strip("-")
    return f"{base if base[:1].isalpha() else 'e-' + base}-{_short_hash(endpoint)}".replace("--", "-")


def object_name(endpoint: str, deployment: str) -> str:
    """The Deployment/Service/ConfigMap/HPA name of one deployment: ``ENDPOINT-DEPLOYMENT-HASH``, a DNS-1035
    label (Services need one), the hash of both names keeping ``a-b``/``c`` apart from ``a``/``b-c``."""
    base = f"{_clean(endpoint)[:24].strip('-')}-{_clean(deployment)[:24].strip('-')}".strip("-")
    if not base[:1].isalpha():
        base = "d-" + base
    return f"{base}-{_short_hash(endpoint + chr(0) + deployment)}".replace("--", "-")


def label_value(text: str) -> str:
    """``text`` when it is a valid label value, else a cleaned prefix and its hash (labels select, the exact names
    live in annotations)."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:50].strip("-._")
    return f"{base}-{_short_hash(text)}" if base else _short_hash(text)


def endpoint_selector(endpoint: str) -> str:
    """The ``kubectl -l`` selector of every object of one endpoint."""
    return f"{ENDPOINT_LABEL}={label_value(endpoint)},app.kubernetes.io/managed-by={MANAGED_BY}"


# -- rendering -----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("mlops.deploy", "templates/k8s"),
                              undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _template(template: str, /, **values: Any) -> dict[str, Any]:
    text = _env().get_template(template).render(**values)
    doc: dict[str, Any] = json.loads(text)
    return doc


def render(desired: EndpointState, store: ArtifactStore, settings: KubeSettings,
           key_hashes: list[str]) -> list[dict[str, Any]]:
    """The manifests that serve ``desired`` (Python objects, in apply order: config, workloads, routing)."""
    _check_names(desired)
    if settings.kserve:
        blobs = _s3(store, settings)
        return [inference_service(desired, settings, lambda digest: f"s3://{blobs.bucket}/{blobs.blob_key(digest)}")]
    store = _s3(store, settings)
    if not settings.image:
        raise DeployError(f"mlops.yaml: targets.{settings.name}.image: required: the serving image (one with mlops "
                          "installed, pushed where the cluster pulls from)")
    docs: list[dict[str, Any]] = []
    for d in sorted(desired.deployments, key=lambda d: d.name):
        docs.extend(_deployment_docs(desired, d, store, settings, key_hashes))
    docs.append(_route(desired, settings))
    return docs


def _s3(store: ArtifactStore, settings: KubeSettings) -> S3Store:
    """The S3 store the model blobs are in (the blob half of a composite store): pods fetch from there."""
    from mlops.store.s3 import S3Store

    blobs = getattr(store, "blobs", store)
    if not isinstance(blobs, S3Store):
        raise DeployError(f"target {settings.name} (kubernetes): pods fetch models from the artifact store, and "
                          f"{store.url} is not an S3 store; set stores.artifacts to type s3 in mlops.yaml")
    return blobs


def _check_names(desired: EndpointState) -> None:
    # Names reach HTTP headers and URL paths: only the spec's own name syntax gets that far.
    for what, name in [("endpoint", desired.endpoint), *(("deployment", d.name) for d in desired.deployments)]:
        if not _SPEC_NAME.fullmatch(name):
            raise DeployError(f"{what} name {name!r} cannot be rendered for Kubernetes: use lowercase letters, "
                              "digits, '.', '_' and '-', starting and ending with a letter or digit")
    if len(desired.deployments) > MAX_DEPLOYMENTS:
        raise DeployError(f"endpoint {desired.endpoint}: {len(desired.deployments)} deployments; an HTTPRoute "
                          f"routes at most {MAX_DEPLOYMENTS}")
    if not any(w > 0 for n, w in desired.traffic.items() if desired.deployment(n)):
        raise DeployError(f"endpoint {desired.endpoint}: no deployment has traffic (traffic: {desired.traffic})")


def _labels(desired: EndpointState, d: DeploymentState | None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "mlops-serving", "app.kubernetes.io/managed-by": MANAGED_BY,
              "app.kubernetes.io/part-of": label_value(desired.endpoint), ENDPOINT_LABEL: label_value(desired.endpoint)}
    if d is not None:
        labels.update({"app.kubernetes.io/instance": object_name(desired.endpoint, d.name),
                       "app.kubernetes.io/component": "predictor",
                       "app.kubernetes.io/version": str(d.version),
                       DEPLOYMENT_LABEL: label_value(d.name), "mlops.dev/model": label_value(d.model),
                       "mlops.dev/version": str(d.version)})
    return labels


def _selector(desired: EndpointState, d: DeploymentState) -> dict[str, str]:
    return {ENDPOINT_LABEL: label_value(desired.endpoint), DEPLOYMENT_LABEL: label_value(d.name),
            "app.kubernetes.io/managed-by": MANAGED_BY}


def server_config(desired: EndpointState, d: DeploymentState, key_hashes: list[str]) -> dict[str, Any]:
    """The server config of one pod: this deployment alone, at 100%, on 0.0.0.0 (the Service reaches it there)."""
    serving = desired.settings.get("serving") or {}
    auth = desired.settings.get("auth") or {}
    return {"format": 1, "endpoint": desired.endpoint, "generation": 1,
            "host": "0.0.0.0", "port": PORT, "workers": int(serving.get("workers", 1)),
            "timeout_ms": serving.get("timeout_ms", 10000), "max_request_mb": serving.get("max_request_mb", 16),
            "auth": str(auth.get("mode", "key")), "keys": list(key_hashes),
            "deployments": [{"name": d.name, "model": d.model, "version": d.version,
                             "path": f"models/{d.sha256}.onnx", "sha256": d.sha256,
                             "batching": d.options.get("batching"), "scoring": None}],
            "traffic": {d.name: 100}, "mirror": None}


def _resources(desired: EndpointState, d: DeploymentState, autoscaled: bool) -> dict[str, Any]:
    res = d.options.get("resources") or {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for key in ("cpu", "memory"):
        if res.get(key) is not None:
            value = str(res[key])
            if not _QUANTITY.fullmatch(value):
                raise DeployError(f"endpoint {desired.endpoint}: deployment {d.name}: resources.{key}: {value!r} "
                                  "is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")
            requests[key] = value
    if "memory" in requests:
        limits["memory"] = requests["memory"]  # no CPU limit: throttling a scoring server only adds latency
    if autoscaled and "cpu" not in requests:
        requests["cpu"] = DEFAULT_CPU
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _instances(d: DeploymentState) -> int:
    n = d.options.get("instances", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 1


def _deployment_docs(desired: EndpointState, d: DeploymentState, store: S3Store, settings: KubeSettings,
                     key_hashes: list[str]) -> list[dict[str, Any]]:
    name = object_name(desired.endpoint, d.name)
    labels = _labels(desired, d)
    instances = _instances(d)
    res = d.options.get("resources") or {}
    autoscaled = instances >= 1 and (instances > 1 or res.get("cpu") is not None)
    config_text = json.dumps(server_config(desired, d, key_hashes), indent=1, sort_keys=True)
    config_sha = hashlib.sha256(config_text.encode()).hexdigest()
    state = json.dumps({"name": d.name, "model": d.model, "version": d.version, "sha256": d.sha256,
                        "options": d.options}, sort_keys=True, default=str)
    common: dict[str, Any] = {"name": name, "namespace": settings.namespace, "labels": labels,
                              "annotations": {"mlops.dev/endpoint-name": desired.endpoint,
                                              "mlops.dev/deployment-name": d.name}}
    fetch = ["python", "-m", "mlops.deploy.kubernetes_fetch", "--bucket", store.bucket, "--prefix", store.prefix,
             *(["--endpoint-url", store.endpoint_url] if store.endpoint_url else []),
             "--dest", "/etc/mlops/models", d.sha256]
    docs = [
        _template("configmap.json.j2", config_text=config_text, **common),
        _template("deployment.json.j2", **{**common, "annotations": {**common["annotations"],
                                                                      DEPLOYMENT_ANNOTATION: state}},
                  replicas=None if autoscaled else instances, selector=_selector(desired, d),
                  pod_annotations={"mlops.dev/config-sha256": config_sha, "prometheus.io/scrape": "true",
                                   "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"},
                  image=settings.image, fetch_command=fetch, s3_secret=settings.s3_secret, port=PORT,
                  resources=_resources(desired, d, autoscaled), volume_limit=settings.model_volume,
                  config_map=name),
        _template("service.json.j2", selector=_selector(desired, d), port=PORT, **common),
    ]
    if autoscaled:
        docs.append(_template("hpa.json.j2", deployment=name, min_replicas=instances,
                              max_replicas=instances * HPA_MAX_FACTOR, cpu_percent=70, **common))
    return docs


def endpoint_state_doc(desired: EndpointState) -> str:
    """The annotation that lets ``read`` give back exactly what was rendered (the URL is live, not stored)."""
    return json.dumps({"endpoint": desired.endpoint, "target": desired.target,
                       "deployments": [{"name": d.name, "model": d.model, "version": d.version, "sha256": d.sha256,
                                        "options": d.options} for d in desired.deployments],
                       "traffic": desired.traffic, "mirror": desired.mirror, "settings": desired.settings},
                      sort_keys=True, default=str)


def route_rules(desired: EndpointState, traffic: dict[str, int]) -> list[dict[str, Any]]:
    """The HTTPRoute rules: one pin rule per deployment, then the weighted split (with the mirror)."""
    rules: list[dict[str, Any]] = []
    versions_seen: set[int] = set()
    path_endpoint = urllib.parse.quote(desired.endpoint, safe="")
    for d in sorted(desired.deployments, key=lambda d: d.name):
        backend = {"name": object_name(desired.endpoint, d.name), "port": PORT}
        matches: list[dict[str, Any]] = [{"headers": [{"type": "Exact", "name": PIN_HEADER, "value": d.name}]}]
        if d.version not in versions_seen:  # two deployments of one version: the first (by name) answers its path
            versions_seen.add(d.version)
            matches.append({"path": {"type": "PathPrefix",
                                     "value": f"/v2/models/{path_endpoint}/versions/{d.version}"}})
        rules.append({"matches": matches, "backendRefs": [backend]})
    split: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"name": object_name(desired.endpoint, n), "port": PORT, "weight": int(w)}
                        for n, w in sorted(traffic.items()) if w > 0 and desired.deployment(n)],
    }
    mirror = desired.mirror
    if mirror:
        target = str(mirror.get("deployment", ""))
        if desired.deployment(target) is None:
            raise DeployError(f"endpoint {desired.endpoint}: mirror.deployment {target!r} is not one of its "
                              "deployments")
        spec: dict[str, Any] = {"backendRef": {"name": object_name(desired.endpoint, target), "port": PORT}}
        percent = float(mirror.get("percent", 100))
        if percent < 100:
            if percent.is_integer():
                spec["percent"] = int(percent)
            else:  # 12.5% -> 1250/10000: the route's percent is a whole number
                spec["fraction"] = {"numerator": round(percent * 100), "denominator": 10000}
        split["filters"] = [{"type": "RequestMirror", "requestMirror": spec}]
    rules.append(split)
    return rules


def _route(desired: EndpointState, settings: KubeSettings) -> dict[str, Any]:
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": settings.gateway}
    if settings.gateway_namespace:
        parent["namespace"] = settings.gateway_namespace
    return _template("httproute.json.j2", name=endpoint_name(desired.endpoint), namespace=settings.namespace,
                     labels=_labels(desired, None),
                     annotations={STATE_ANNOTATION: endpoint_state_doc(desired),
                                  "mlops.dev/digest": desired.digest()},
                     parent_ref=parent, hostnames=list(settings.hostnames),
                     rules=route_rules(desired, desired.traffic))


def kserve_split(desired: EndpointState) -> tuple[DeploymentState, int | None]:
    """KServe's model of a rollout: the predictor is the newest revision, ``canaryTrafficPercent`` its share, the
    rest goes to the revision rolled out before it. So: one deployment with traffic, or two (the one with less
    traffic is the canary); no mirror, no third deployment."""
    live = sorted(((w, d.version, d) for n, w in desired.traffic.items() if w > 0
                   for d in [desired.deployment(n)] if d is not None), key=lambda t: (t[0], -t[1]))
    if desired.mirror:
        raise DeployError(f"endpoint {desired.endpoint}: KServe has no traffic mirror; remove mirror or set "
                          "kserve: false on the target")
    if len(live) > 2:
        raise DeployError(f"endpoint {desired.endpoint}: KServe splits traffic between two revisions only (stable "
                          f"and canary); {len(live)} deployments have traffic")
    if len(live) == 1:
        return live[0][2], None
    canary_weight, _, canary = live[0]
    total = sum(w for w, _, _ in live)
    return canary, round(100 * canary_weight / total)


def inference_service(desired: EndpointState, settings: KubeSettings,
                      storage_uri: Callable[[str], str]) -> dict[str, Any]:
    """The KServe InferenceService of ``desired``; ``storage_uri`` maps a model's sha256 to where KServe fetches it."""
    predictor, canary = kserve_split(desired)
    instances = _instances(predictor)
    return _template("inferenceservice.json.j2", name=endpoint_name(desired.endpoint), namespace=settings.namespace,
                     labels=_labels(desired, predictor),
                     annotations={STATE_ANNOTATION: endpoint_state_doc(desired),
                                  "mlops.dev/digest": desired.digest()},
                     canary_percent=canary, min_replicas=instances, max_replicas=max(1, instances * HPA_MAX_FACTOR),
                     storage_uri=storage_uri(predictor.sha256), resources=_resources(desired, predictor, False))


def to_yaml(docs: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream (``yaml.safe_dump``: values are quoted as needed, never spliced)."""
    import yaml

    return "".join("---\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=False) for doc in docs)
