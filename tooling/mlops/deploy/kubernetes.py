"""The kubernetes target: rendered manifests (see ``kubernetes_render``), applied with ``kubectl``.

``mlops.yaml``::

    targets:
      k8s: {type: kubernetes, context: prod-cluster, namespace: ml, image: registry.example.com/mlops-serving:1.0}

With a ``context``, ``apply`` runs ``kubectl --context C -n NS apply --server-side --field-manager mlops``: first
the ConfigMaps, Deployments, Services and autoscalers, then waits for every Deployment's rollout (``kubectl rollout
status``), then the HTTPRoute that moves traffic onto them, then deletes the endpoint's objects it no longer
renders. So traffic only ever reaches ready pods. ``read`` reads the objects back by label (``mlops.dev/endpoint``):
the deployments from their annotations, the traffic split and mirror from the live HTTPRoute (a weight changed
with ``kubectl edit`` shows as drift). ``set_traffic`` patches the HTTPRoute's rules; ``remove`` deletes by label.

Without a ``context`` nothing is applied: ``apply`` writes the manifests to ``.mlops/render/<endpoint>/`` and
``notice`` says "rendered, not applied: no cluster context configured"; ``read`` then gives back what was rendered
there, so a reconcile renders again only when the desired state changes.

Metrics: the target does not scrape pods. With ``prometheus: URL`` it asks that Prometheus (which scrapes the pods:
they carry the ``prometheus.io/*`` annotations) for the serving metrics; without it ``metrics`` is a DeployError.

Keys: a kubernetes endpoint with ``auth: {mode: key}`` needs ``auth.secret`` naming a host variable with the key;
only its sha256 reaches the cluster (in the ConfigMap). A generated key would live on one machine only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.deploy import kubernetes_render as kr
from mlops.deploy.protocol import DeploymentMetrics, DeploymentState, EndpointState
from mlops.errors import DeployError

if TYPE_CHECKING:
    from mlops.store.protocol import ArtifactStore

NOT_APPLIED = "rendered, not applied: no cluster context configured"
KINDS = "configmaps,deployments.apps,services,horizontalpodautoscalers.autoscaling,httproutes.gateway.networking.k8s.io"
KSERVE_KINDS = "inferenceservices.serving.kserve.io"
_PHASE_1 = ("ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler")
_KUBECTL_TIMEOUT_S = 120
_MANIFEST_FILE = "manifests.yaml"


def open_kubernetes_target(name: str, options: dict[str, Any], root: Path) -> KubernetesTarget:
    """The factory ``mlops.deploy.targets`` calls for ``type: kubernetes``."""
    return KubernetesTarget(name, options, root)


class KubernetesTarget:
    """A Target on one Kubernetes cluster context and namespace (or a render directory when no context is set)."""

    def __init__(self, name: str, options: dict[str, Any], root: Path,
                 environ: dict[str, str] | None = None) -> None:
        self.name = name
        self.settings = kr.KubeSettings.from_options(name, options)
        self.root = Path(root)
        self.environ = dict(os.environ if environ is None else environ)
        self.notice: str | None = None  # set by apply when it only rendered

    @property
    def applies(self) -> bool:
        """Whether ``apply`` reaches a cluster (a context is configured) or only renders. A render-only target
        has no traffic to shift nor metrics to judge: roll out to it all at once, and record no deployment."""
        return bool(self.settings.context)

    # -- rendering -----------------------------------------------------------------------------------------------
    def key_hashes(self, desired: EndpointState) -> list[str]:
        """The sha256 of the endpoint's key (from the host variable ``auth.secret`` names); none for mode none."""
        auth = desired.settings.get("auth") or {}
        if str(auth.get("mode", "key")) == "none":
            return []
        secret = auth.get("secret")
        value = self.environ.get(str(secret), "") if secret else ""
        if not value:
            what = f"the host variable {secret}, which is not set" if secret else "no auth.secret"
            raise DeployError(f"endpoint {desired.endpoint}: auth mode key on target {self.name} (kubernetes) needs "
                              f"auth.secret naming a host variable with the key; it has {what} (or set auth: "
                              "{mode: none})")
        return [hashlib.sha256(value.encode()).hexdigest()]

    def render(self, desired: EndpointState, store: ArtifactStore) -> list[dict[str, Any]]:
        """The manifests that serve ``desired`` on this target."""
        return kr.render(desired, store, self.settings, self.key_hashes(desired))

    def render_dir(self, endpoint: str) -> Path:
        return self.root / ".mlops" / "render" / kr.endpoint_name(endpoint)

    def write_rendered(self, desired: EndpointState, docs: list[dict[str, Any]], out: Path | None = None) -> Path:
        """Write ``docs`` as one YAML stream (``manifests.yaml``) into ``out`` (default: the render directory)."""
        where = out or self.render_dir(desired.endpoint)
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / f".{_MANIFEST_FILE}.tmp"
        tmp.write_text(kr.to_yaml(docs), encoding="utf-8")
        tmp.replace(where / _MANIFEST_FILE)
        return where / _MANIFEST_FILE

    # -- Target ---------------------------------------------------------------------------------------------------
    def apply(self, desired: EndpointState, store: ArtifactStore) -> EndpointState:
        """Converge the cluster to ``desired`` (or only render it, without a context); return the live state."""
        for d in desired.deployments:
            if not store.has_blob(d.sha256):
                raise DeployError(f"endpoint {desired.endpoint}: deployment {d.name}: model file {d.sha256[:12]} is "
                                  f"not in the store {store.url}")
        docs = self.render(desired, store)
        if not self.settings.context:
            path = self.write_rendered(desired, docs)
            self.notice = f"{NOT_APPLIED}; manifests in {path.relative_to(self.root)}"
            live = self.read(desired.endpoint)
            return live if live is not None else desired
        self.notice = None
        workloads = [d for d in docs if d["kind"] in _PHASE_1]
        routing = [d for d in docs if d["kind"] not in _PHASE_1]
        if workloads:
            self._apply_docs(workloads)
            for doc in workloads:
                if doc["kind"] == "Deployment":
                    self._kubectl(["rollout", "status", f"deployment/{doc['metadata']['name']}",
                                   f"--timeout={self.settings.rollout_timeout_s}s"],
                                  timeout=self.settings.rollout_timeout_s + 30)
        self._apply_docs(routing)
        self._prune(desired.endpoint, {(d["kind"], d["metadata"]["name"]) for d in docs})
        live = self.read(desired.endpoint)
        if live is None:
            raise DeployError(f"endpoint {desired.endpoint}: applied to {self._where()}, but reading it back found "
                              "nothing")
        return live

    def read(self, endpoint: str) -> EndpointState | None:
        """Live state from the cluster's objects (or the render directory without a context)."""
        items = self._items(endpoint)
        return state_from_objects(endpoint, items, self._url())

    def endpoints(self) -> list[str]:
        if not self.settings.context:
            base = self.root / ".mlops" / "render"
            names = set()
            for path in sorted(base.glob(f"*/{_MANIFEST_FILE}")) if base.is_dir() else []:
                names.update(_endpoint_names(_load_yaml(path)))
            return sorted(names)
        kinds = KSERVE_KINDS if self.settings.kserve else "httproutes.gateway.networking.k8s.io"
        doc = self._kubectl_json(["get", kinds, "-l", f"app.kubernetes.io/managed-by={kr.MANAGED_BY}",
                                  "-o", "json"])
        return sorted(_endpoint_names(doc.get("items", [])))

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        """Change the split only: a merge patch of the HTTPRoute's rules (and its state annotation)."""
        live = self.read(endpoint)
        if live is None:
            raise DeployError(f"endpoint {endpoint} is not live on target {self.name} ({self._where()})")
        unknown = sorted(set(traffic) - {d.name for d in live.deployments})
        if unknown:
            raise DeployError(f"endpoint {endpoint}: traffic names {', '.join(unknown)}, which it does not deploy")
        new = dataclasses.replace(live, traffic=dict(traffic), url=None)
        if self.settings.kserve:
            self._set_kserve_traffic(new)
            return
        if not any(w > 0 for n, w in traffic.items()):
            raise DeployError(f"endpoint {endpoint}: a traffic split with no weight sends every request to an error")
        patch = {"metadata": {"annotations": {kr.STATE_ANNOTATION: kr.endpoint_state_doc(new),
                                              "mlops.dev/digest": new.digest()}},
                 "spec": {"rules": kr.route_rules(new, traffic)}}
        if not self.settings.context:
            self._patch_rendered(endpoint, patch)
            return
        self._kubectl(["patch", "httproute.gateway.networking.k8s.io", kr.endpoint_name(endpoint), "--type=merge",
                       "--field-manager=mlops", "-p", json.dumps(patch)])

    def _set_kserve_traffic(self, new: EndpointState) -> None:
        """KServe's split is "the predictor's revision gets canaryTrafficPercent, the one before it the rest", so a
        step that makes another deployment the canary changes the predictor's model too: the InferenceService is
        rendered again (its models are content-addressed: the new one sits beside the old in the same store)."""
        isvc = next((i for i in self._items(new.endpoint) if i.get("kind") == "InferenceService"), {})
        uri = _dict(_dict(_dict(_dict(isvc).get("spec")).get("predictor")).get("model")).get("storageUri")
        base, sep, _ = str(uri).rpartition("/blobs/sha256/")
        if not sep:
            raise DeployError(f"endpoint {new.endpoint}: the live InferenceService's storageUri {uri!r} is not a "
                              "model in the artifact store; apply the endpoint again")
        doc = kr.inference_service(new, self.settings, lambda digest: f"{base}/blobs/sha256/{digest[:2]}/{digest}")
        if not self.settings.context:
            self._patch_rendered(new.endpoint, doc)
            return
        self._apply_docs([doc])

    def metrics(self, endpoint: str) -> dict[str, DeploymentMetrics]:
        """Per-deployment counters from the Prometheus that scrapes the pods (``prometheus`` option)."""
        if not self.settings.prometheus:
            raise DeployError(f"target {self.name} (kubernetes) reads no metrics itself: set targets.{self.name}."
                              "prometheus in mlops.yaml to the URL of a Prometheus that scrapes the serving pods")
        from mlops.deploy.kubernetes_metrics import read_prometheus

        return read_prometheus(self.settings.prometheus, endpoint)

    def remove(self, endpoint: str) -> None:
        """Delete every object of the endpoint (the route first, so no request goes to a pod being deleted)."""
        if not self.settings.context:
            shutil.rmtree(self.render_dir(endpoint), ignore_errors=True)
            return
        selector = kr.endpoint_selector(endpoint)
        route = KSERVE_KINDS if self.settings.kserve else "httproutes.gateway.networking.k8s.io"
        self._kubectl(["delete", route, "-l", selector, "--ignore-not-found", "--wait=true"])
        if not self.settings.kserve:
            self._kubectl(["delete", KINDS, "-l", selector, "--ignore-not-found", "--wait=true"])

    # -- kubectl --------------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"context {self.settings.context}, namespace {self.settings.namespace}"

    def _url(self) -> str | None:
        return f"http://{self.settings.hostnames[0]}" if self.settings.hostnames else None

    def _kubectl(self, args: list[str], stdin: str | None = None, timeout: int = _KUBECTL_TIMEOUT_S) -> str:
        exe = shutil.which("kubectl", path=self.environ.get("PATH"))
        if exe is None:
            raise DeployError(f"target {self.name} (kubernetes): kubectl is not on PATH; install it, or remove "
                              f"targets.{self.name}.context to only render manifests")
        cmd = [exe, "--context", str(self.settings.context), "--namespace", self.settings.namespace, *args]
        try:
            done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                                  env=self.environ, check=False)
        except subprocess.TimeoutExpired:
            raise DeployError(f"target {self.name}: kubectl {args[0]} did not finish within {timeout}s "
                              f"({self._where()})") from None
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
            last = detail[-1] if detail else f"exit status {done.returncode}"
            raise DeployError(f"target {self.name}: kubectl {' '.join(args[:2])} failed ({self._where()}): {last}")
        return done.stdout

    def _kubectl_json(self, args: list[str]) -> dict[str, Any]:
        out = self._kubectl(args)
        try:
            doc = json.loads(out)
        except ValueError:
            raise DeployError(f"target {self.name}: kubectl {args[0]} gave no JSON ({self._where()})") from None
        if not isinstance(doc, dict):
            raise DeployError(f"target {self.name}: kubectl {args[0]} gave no JSON object ({self._where()})")
        return doc

    def _apply_docs(self, docs: list[dict[str, Any]]) -> None:
        if docs:
            self._kubectl(["apply", "--server-side", "--field-manager=mlops", "--force-conflicts", "-f", "-"],
                          stdin=kr.to_yaml(docs))

    def _items(self, endpoint: str) -> list[dict[str, Any]]:
        if not self.settings.context:
            path = self.render_dir(endpoint) / _MANIFEST_FILE
            return _load_yaml(path) if path.is_file() else []
        kinds = KSERVE_KINDS if self.settings.kserve else KINDS
        doc = self._kubectl_json(["get", kinds, "-l", kr.endpoint_selector(endpoint), "-o", "json"])
        items = doc.get("items", [])
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def _prune(self, endpoint: str, keep: set[tuple[str, str]]) -> None:
        stale = [(i.get("kind"), (i.get("metadata") or {}).get("name")) for i in self._items(endpoint)]
        order = {"HTTPRoute": 0, "InferenceService": 0, "HorizontalPodAutoscaler": 1, "Service": 2, "Deployment": 3,
                 "ConfigMap": 4}
        gone = [(k, n) for k, n in stale if isinstance(k, str) and isinstance(n, str) and (k, n) not in keep]
        for kind, name in sorted(gone, key=lambda kn: (order.get(kn[0], 9), kn[1])):
            self._kubectl(["delete", _resource(kind), name, "--ignore-not-found"])

    def _patch_rendered(self, endpoint: str, patch: dict[str, Any]) -> None:
        """Apply ``patch`` to the rendered route (a merge patch), or replace the InferenceService by it (as server-side
        apply of the whole object does: what it no longer sets is gone)."""
        path = self.render_dir(endpoint) / _MANIFEST_FILE
        docs = _load_yaml(path)
        if self.settings.kserve:
            docs = [patch if d.get("kind") == "InferenceService" else d for d in docs]
        else:
            docs = [merge_patch(d, patch) if d.get("kind") == "HTTPRoute" else d for d in docs]
        tmp = path.with_name(f".{_MANIFEST_FILE}.tmp")
        tmp.write_text(kr.to_yaml(docs), encoding="utf-8")
        tmp.replace(path)


def _resource(kind: str) -> str:
    return {"Deployment": "deployment.apps", "HorizontalPodAutoscaler": "horizontalpodautoscaler.autoscaling",
            "HTTPRoute": "httproute.gateway.networking.k8s.io",
            "InferenceService": "inferenceservice.serving.kserve.io"}.get(kind, kind.lower())


def merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``kubectl patch --type=merge`` does): objects merge, null deletes, the rest
    (lists included) replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _load_yaml(path: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as e:
        raise DeployError(f"{path}: cannot read the rendered manifests: {e}") from None
    return [d for d in docs if isinstance(d, dict)]


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    return ann if isinstance(ann, dict) else {}


def _endpoint_names(items: list[dict[str, Any]]) -> set[str]:
    names = set()
    for obj in items:
        state = _json(_annotations(obj).get(kr.STATE_ANNOTATION))
        if isinstance(state, dict) and isinstance(state.get("endpoint"), str):
            names.add(state["endpoint"])
    return names


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _deployment_state(doc: Any) -> DeploymentState | None:
    if not isinstance(doc, dict):
        return None
    name, model, version, sha = doc.get("name"), doc.get("model"), doc.get("version"), doc.get("sha256")
    options = doc.get("options") if isinstance(doc.get("options"), dict) else {}
    if not (isinstance(name, str) and isinstance(model, str) and isinstance(sha, str)
            and isinstance(version, int) and not isinstance(version, bool)):
        return None
    return DeploymentState(name, model, version, sha, dict(options or {}))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any, default: int | None = None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return default
    return float(value)


def state_from_objects(endpoint: str, items: list[dict[str, Any]], url: str | None) -> EndpointState | None:
    """The EndpointState the cluster's objects say is served: None without the route (nothing reaches it).

    Deployments come from the Deployments' annotations (what runs), the split and the mirror from the route's
    rules (what traffic does); the state annotation on the route supplies what the objects cannot say (target,
    settings, a mirror's declared form) and is trusted only where the live objects agree with it. The objects are
    whatever the cluster answered: any field of any shape gives drift, never an exception."""
    routes = [(i, d) for i in items if isinstance(i, dict) and i.get("kind") in ("HTTPRoute", "InferenceService")
              for d in [_dict(_json(_annotations(i).get(kr.STATE_ANNOTATION)))] if d.get("endpoint") == endpoint]
    if not routes:
        return None
    route, declared = routes[0]
    if route.get("kind") == "InferenceService":
        return _kserve_state(endpoint, route, declared, url)
    running = [d for d in (_deployment_state(_json(_annotations(i).get(kr.DEPLOYMENT_ANNOTATION)))
                           for i in items if isinstance(i, dict) and i.get("kind") == "Deployment") if d is not None]
    deps = tuple(sorted({d.name: d for d in running}.values(), key=lambda d: d.name))
    by_service = {kr.object_name(endpoint, d.name): d.name for d in deps}
    rules = [r for r in _list(_dict(route.get("spec")).get("rules")) if isinstance(r, dict)]
    split = next((r for r in rules if not any(_dict(m).get("headers") for m in _list(r.get("matches")))), {})
    traffic: dict[str, int] = {}
    for ref in map(_dict, _list(split.get("backendRefs"))):
        name = ref.get("name")
        if isinstance(name, str) and name in by_service:
            traffic[by_service[name]] = max(0, _int(ref.get("weight", 1), 0) or 0)
    for d in deps:
        traffic.setdefault(d.name, 0)
    mirror = _live_mirror(split, by_service, declared.get("mirror"))
    return EndpointState(endpoint, str(declared.get("target", "")), deps, traffic, mirror, url,
                         dict(_dict(declared.get("settings"))))


def _kserve_state(endpoint: str, isvc: dict[str, Any], declared: dict[str, Any], url: str | None) -> EndpointState:
    """What an InferenceService serves: the declared deployments, with the canary's share as KServe has it now
    (``canaryTrafficPercent`` edited in the cluster shows as drift)."""
    deps = tuple(d for d in (_deployment_state(x) for x in _list(declared.get("deployments"))) if d is not None)
    traffic = {str(k): v for k, v in _dict(declared.get("traffic")).items() if _int(v) is not None}
    state = EndpointState(endpoint, str(declared.get("target", "")), deps, traffic, None, url,
                          dict(_dict(declared.get("settings"))))
    live = _int(_dict(_dict(isvc.get("spec")).get("predictor")).get("canaryTrafficPercent"))
    try:
        canary, declared_percent = kr.kserve_split(state)
    except DeployError:
        return state
    if declared_percent is not None and live is not None and 0 <= live <= 100 and live != declared_percent:
        stable = next(n for n, w in traffic.items() if w > 0 and n != canary.name)
        traffic = {n: 0 for n in traffic} | {canary.name: live, stable: 100 - live}
        return dataclasses.replace(state, traffic=traffic)
    return state


def _live_mirror(split: dict[str, Any], by_service: dict[str, str], declared: Any) -> dict[str, Any] | None:
    for f in map(_dict, _list(split.get("filters"))):
        spec = f.get("requestMirror")
        if not isinstance(spec, dict):
            continue
        name = _dict(spec.get("backendRef")).get("name")
        dep = by_service.get(name) if isinstance(name, str) else None
        if dep is None:
            return {"deployment": "?", "percent": 0}  # mirrors to something that is not ours: drift
        if isinstance(spec.get("fraction"), dict):
            fr = spec["fraction"]
            percent = 100.0 * _number(fr.get("numerator"), 0) / (_number(fr.get("denominator"), 100) or 100)
        else:
            percent = _number(spec.get("percent"), 100)
        if isinstance(declared, dict) and declared.get("deployment") == dep \
                and abs(_number(declared.get("percent", 100), -1) - percent) < 0.01:
            return dict(declared)
        return {"deployment": dep, "percent": int(percent) if float(percent).is_integer() else percent}
    return None
