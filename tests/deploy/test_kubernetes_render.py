"""The kubernetes target's manifests: schema-valid (kubernetes-validate strict for the core kinds, the Gateway API and
KServe CRD schemas shipped as fixtures), the traffic split, pins and mirror as HTTPRoute rules, names and values that
no hostile input can turn into YAML structure."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mlops.deploy import kubernetes_render as kr
from mlops.deploy.kubernetes import KubernetesTarget, state_from_objects
from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.errors import DeployError
from mlops.store.s3 import S3Store

K8S_VERSION = "1.30.0"  # a schema set kubernetes-validate bundles; strict: no field it does not know
FIXTURES = Path(__file__).parent / "fixtures"
A, B, C = "a" * 64, "b" * 64, "c" * 64
KEY_ENV = {"WINE_KEY": "s3cret-key"}


def crd_validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((FIXTURES / name).read_text()))


HTTPROUTE = crd_validator("httproute-v1.schema.json")
INFERENCESERVICE = crd_validator("inferenceservice-v1beta1.schema.json")


def store() -> S3Store:
    # Rendering reads only the store's location (no request is made).
    return S3Store("models", "team/mlops", "http://127.0.0.1:9")


def target(**options: Any) -> KubernetesTarget:
    return KubernetesTarget("k8s", {"namespace": "ml", "image": "registry.example.com/mlops-serving:1", **options},
                            Path("/nonexistent"), environ=dict(KEY_ENV))


def state(traffic: dict[str, int] | None = None, mirror: dict[str, Any] | None = None,
          blue: dict[str, Any] | None = None, green: dict[str, Any] | None = None,
          endpoint: str = "wine") -> EndpointState:
    deployments = (DeploymentState("blue", "wine-classifier", 3, A, blue or {}),
                   DeploymentState("green", "wine-classifier", 4, B, green or {}))
    return EndpointState(endpoint, "k8s", deployments, traffic or {"blue": 90, "green": 10}, mirror,
                         settings={"auth": {"mode": "key", "secret": "WINE_KEY"}, "serving": {"workers": 2}})


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "HTTPRoute":
        HTTPROUTE.validate(doc)
        check_route_cel(doc)
    elif doc["kind"] == "InferenceService":
        INFERENCESERVICE.validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def check_route_cel(route: dict[str, Any]) -> None:
    """The CRD's CEL rules (x-kubernetes-validations) that JSON Schema cannot say, for what we render."""
    rules = route["spec"]["rules"]
    assert len(rules) <= 16 and sum(len(r.get("matches", [])) for r in rules) <= 128
    for rule in rules:
        for ref in rule.get("backendRefs", []):
            assert ref.get("group", "") == "" and ref.get("kind", "Service") == "Service" and "port" in ref
        for f in rule.get("filters", []):
            assert (f["type"] == "RequestMirror") == ("requestMirror" in f)
            if "requestMirror" in f:
                m = f["requestMirror"]
                assert not ("percent" in m and "fraction" in m) and "port" in m["backendRef"]
                if "fraction" in m:
                    assert m["fraction"]["numerator"] <= m["fraction"].get("denominator", 100)
        for m in rule.get("matches", []):
            if "path" in m:
                value = m["path"]["value"]
                assert value.startswith("/") and "//" not in value and "/../" not in value
                assert re.fullmatch(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+", value)


def test_every_manifest_is_valid_against_its_schema() -> None:
    docs = target().render(state(blue={"instances": 2}, green={"resources": {"cpu": "1", "memory": "1Gi"}},
                                 mirror={"deployment": "green", "percent": 5}), store())
    assert sorted({d["kind"] for d in docs}) == ["ConfigMap", "Deployment", "HTTPRoute", "HorizontalPodAutoscaler",
                                                 "Service"]
    for doc in docs:
        validate(doc)


def test_the_validators_bite() -> None:
    """The checks above would catch a wrong manifest: strict core schemas and closed CRD schemas."""
    docs = target().render(state(), store())
    deployment = by_kind(docs, "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    route = by_kind(docs, "HTTPRoute")[0]
    route["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 1
    with pytest.raises(jsonschema.ValidationError):
        HTTPROUTE.validate(route)
    route = by_kind(target().render(state(), store()), "HTTPRoute")[0]
    route["spec"]["rules"][-1]["backendRefs"][0]["weight"] = -1
    with pytest.raises(jsonschema.ValidationError):
        HTTPROUTE.validate(route)


def test_deployment_runs_the_server_with_probes_resources_and_the_model_fetched_by_digest() -> None:
    docs = target().render(state(green={"resources": {"cpu": "500m", "memory": "512Mi"}, "instances": 1}), store())
    green = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["labels"]["mlops.dev/deployment"] == "green")
    pod = green["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["command"] == ["python", "-m", "mlops.serving", "--config", "/etc/mlops/config.json"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    fetch = pod["initContainers"][0]["command"]
    assert fetch[:3] == ["python", "-m", "mlops.deploy.kubernetes_fetch"] and fetch[-1] == B
    assert fetch[fetch.index("--bucket") + 1] == "models" and fetch[fetch.index("--prefix") + 1] == "team/mlops/"
    assert fetch[fetch.index("--endpoint-url") + 1] == "http://127.0.0.1:9"
    assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "mlops-s3", "optional": True}}]
    assert {"name": "work", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]
    # the server imports the repository's scoring module: it runs with no capability nor a way to gain one
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    for c in (server, pod["initContainers"][0]):
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    labels = green["metadata"]["labels"]
    assert labels["mlops.dev/endpoint"] == "wine" and labels["mlops.dev/model"] == "wine-classifier"
    assert labels["mlops.dev/version"] == "4" and labels["app.kubernetes.io/managed-by"] == "mlops"
    # the pod's config: this deployment alone, at 100%, the key's hash only, reachable through the Service
    config_map = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == green["metadata"]["name"])
    config = json.loads(config_map["data"]["config.json"])
    assert config["deployments"] == [{"name": "green", "model": "wine-classifier", "version": 4,
                                      "path": f"models/{B}.onnx", "sha256": B, "batching": None, "scoring": None}]
    assert config["traffic"] == {"green": 100} and config["host"] == "0.0.0.0" and config["workers"] == 2
    assert config["keys"] == [hashlib.sha256(b"s3cret-key").hexdigest()]
    assert "s3cret-key" not in yaml.safe_dump_all(docs)
    # a changed config rolls the pods (the ConfigMap is mounted through subPath, which never updates in place)
    annotation = green["spec"]["template"]["metadata"]["annotations"]["mlops.dev/config-sha256"]
    other = target().render(state(green={"resources": {"cpu": "500m", "memory": "512Mi"},
                                         "batching": {"max_batch_size": 4}}), store())
    changed = next(d for d in by_kind(other, "Deployment") if d["metadata"]["name"] == green["metadata"]["name"])
    assert changed["spec"]["template"]["metadata"]["annotations"]["mlops.dev/config-sha256"] != annotation


def test_autoscaler_only_for_several_instances_or_a_cpu_request() -> None:
    docs = target().render(state(blue={"instances": 3}, green={"resources": {"cpu": 2}}), store())
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind(docs, "HorizontalPodAutoscaler")}
    blue, green = (kr.object_name("wine", n) for n in ("blue", "green"))
    assert (hpas[blue]["spec"]["minReplicas"], hpas[blue]["spec"]["maxReplicas"]) == (3, 9)
    assert (hpas[green]["spec"]["minReplicas"], hpas[green]["spec"]["maxReplicas"]) == (1, 3)
    assert hpas[blue]["apiVersion"] == "autoscaling/v2"
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    assert "replicas" not in deployments[blue]["spec"]  # the autoscaler owns it
    server = deployments[blue]["spec"]["template"]["spec"]["containers"][0]
    assert server["resources"]["requests"]["cpu"] == kr.DEFAULT_CPU  # utilization needs a request
    plain = target().render(state(blue={"instances": 1}, green={"instances": 0}), store())
    assert by_kind(plain, "HorizontalPodAutoscaler") == []
    assert sorted(d["spec"]["replicas"] for d in by_kind(plain, "Deployment")) == [0, 1]


def test_one_httproute_splits_by_weight_pins_by_header_and_mirrors() -> None:
    docs = target(gateway="infra/public", hostnames=["ml.example.com"]).render(
        state(traffic={"blue": 75, "green": 25}, mirror={"deployment": "green", "percent": 12.5}), store())
    (route,) = by_kind(docs, "HTTPRoute")
    validate(route)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["metadata"]["name"] == "wine"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "public", "namespace": "infra"}]
    assert route["spec"]["hostnames"] == ["ml.example.com"]
    blue, green = (kr.object_name("wine", n) for n in ("blue", "green"))
    pins, split = route["spec"]["rules"][:-1], route["spec"]["rules"][-1]
    assert [(r["matches"][0]["headers"][0]["value"], r["backendRefs"][0]["name"]) for r in pins] == [
        ("blue", blue), ("green", green)]
    assert pins[0]["matches"][0]["headers"][0]["name"] == "x-mlops-deployment"
    assert pins[1]["matches"][1]["path"]["value"] == "/v2/models/wine/versions/4"
    assert [(b["name"], b["weight"]) for b in split["backendRefs"]] == [(blue, 75), (green, 25)]
    assert split["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": green, "port": 8080}, "fraction": {"numerator": 1250, "denominator": 10000}}}]
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert set(services) == {blue, green} and services[blue]["spec"]["ports"][0]["port"] == 8080


def test_read_back_from_the_objects_is_the_rendered_state() -> None:
    desired = state(blue={"instances": 2}, mirror={"deployment": "green", "percent": 5})
    docs = target().render(desired, store())
    assert state_from_objects("wine", docs, None) == desired
    # a weight changed by hand in the cluster is what read reports (drift), not the annotation
    route = by_kind(docs, "HTTPRoute")[0]
    route["spec"]["rules"][-1]["backendRefs"][0]["weight"] = 50
    live = state_from_objects("wine", docs, None)
    assert live is not None and live.traffic == {"blue": 50, "green": 10} and live.digest() != desired.digest()
    assert state_from_objects("other", docs, None) is None


def test_names_are_dns_labels_deterministic_and_distinct() -> None:
    names = [kr.object_name("a-b", "c"), kr.object_name("a", "b-c"), kr.object_name("x" * 63, "y" * 63),
             kr.object_name("9lives", "1"), kr.object_name("wine.v2", "blue_1"), kr.endpoint_name("wine.v2"),
             kr.endpoint_name("9lives"), kr.endpoint_name("w" * 70)]
    for name in names:
        assert len(name) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
    assert names[0] != names[1] and len(set(names)) == len(names)
    assert kr.object_name("a-b", "c") == kr.object_name("a-b", "c") and kr.endpoint_name("wine") == "wine"
    assert kr.label_value("wine.v2_x") == "wine.v2_x" and len(kr.label_value("é" * 80)) <= 63


def test_hostile_values_stay_values() -> None:
    """A value with quotes, newlines and YAML syntax lands verbatim in its field and adds no key."""
    evil = 'x"\n  injected: true\n- {a: 1}: \'#'
    t = target(image=f"registry.example.com/img:{evil}")
    desired = EndpointState("wine", "k8s", (DeploymentState("blue", f"model{evil}", 3, A, {"batching": evil}),),
                            {"blue": 100}, None, settings={"auth": {"mode": "none"}})
    docs = t.render(desired, store())
    text = kr.to_yaml(docs)
    assert list(yaml.safe_load_all(text)) == docs
    deployment = by_kind(docs, "Deployment")[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"registry.example.com/img:{evil}"
    assert "injected" not in deployment["spec"]["template"]["spec"]["containers"][0]
    assert set(deployment) == {"apiVersion", "kind", "metadata", "spec"}
    config = json.loads(by_kind(docs, "ConfigMap")[0]["data"]["config.json"])
    assert config["deployments"][0]["model"] == f"model{evil}" and config["deployments"][0]["batching"] == evil
    assert state_from_objects("wine", docs, None) == desired
    labels = deployment["metadata"]["labels"]
    assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", labels["mlops.dev/model"])
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("endpoint, deployment", [("wine\nx: 1", "blue"), ("wine", "blue\r\nx-evil: 1"),
                                                  ("Wine", "blue"), ("wine", "")])
def test_names_outside_the_spec_syntax_are_refused(endpoint: str, deployment: str) -> None:
    desired = EndpointState(endpoint, "k8s", (DeploymentState(deployment, "m", 1, A, {}),), {deployment: 100}, None,
                            settings={"auth": {"mode": "none"}})
    with pytest.raises(DeployError, match="cannot be rendered for Kubernetes"):
        target().render(desired, store())


def test_kserve_inference_service() -> None:
    t = target(kserve=True)
    (isvc,) = t.render(state(traffic={"blue": 80, "green": 20}, green={"instances": 2}), store())
    validate(isvc)
    predictor = isvc["spec"]["predictor"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and predictor["canaryTrafficPercent"] == 20
    assert predictor["model"]["modelFormat"] == {"name": "onnx"} and predictor["model"]["protocolVersion"] == "v2"
    assert predictor["model"]["storageUri"] == f"s3://models/team/mlops/blobs/sha256/bb/{B}"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 6)
    (done,) = t.render(state(traffic={"blue": 0, "green": 100}), store())
    validate(done)
    assert "canaryTrafficPercent" not in done["spec"]["predictor"]
    assert done["spec"]["predictor"]["model"]["storageUri"].endswith(B)
    with pytest.raises(DeployError, match="KServe has no traffic mirror"):
        t.render(state(mirror={"deployment": "green"}), store())
    three = EndpointState("wine", "k8s", (*state().deployments, DeploymentState("red", "m", 5, C, {})),
                          {"blue": 50, "green": 25, "red": 25}, None, settings={"auth": {"mode": "none"}})
    with pytest.raises(DeployError, match="two revisions only"):
        t.render(three, store())
    assert state_from_objects("wine", [isvc], None) == state(traffic={"blue": 80, "green": 20},
                                                              green={"instances": 2})
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = 50  # changed in the cluster: drift
    drifted = state_from_objects("wine", [isvc], None)
    assert drifted is not None and drifted.traffic == {"blue": 50, "green": 50}


def test_what_cannot_work_in_a_cluster_is_refused_clearly(tmp_path: Path) -> None:
    from mlops.store.local import LocalStore

    with pytest.raises(DeployError, match="not an S3 store; set stores.artifacts to type s3"):
        target().render(state(), LocalStore(tmp_path / "store"))
    no_image = KubernetesTarget("k8s", {}, tmp_path, environ=dict(KEY_ENV))
    with pytest.raises(DeployError, match=r"targets.k8s.image: required"):
        no_image.render(state(), store())
    keyless = KubernetesTarget("k8s", {"image": "i"}, tmp_path, environ={})
    with pytest.raises(DeployError, match="auth.secret naming a host variable"):
        keyless.render(state(), store())
    with pytest.raises(DeployError, match="no deployment has traffic"):
        target().render(state(traffic={"blue": 0}), store())
    with pytest.raises(DeployError, match="resources.memory: '1 GB' is not a Kubernetes quantity"):
        target().render(state(blue={"resources": {"memory": "1 GB"}}), store())


@pytest.mark.parametrize("options, field", [({"namespace": "Prod"}, "namespace"), ({"gateway": "a/b/c"}, "gateway"),
                                            ({"kserve": "yes"}, "kserve"), ({"model_volume": "lots"}, "model_volume"),
                                            ({"hostnames": ["not a host"]}, "hostnames"), ({"image": ""}, "image")])
def test_bad_target_options_name_their_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(DeployError, match=rf"^mlops.yaml: targets.k8s.{field}: "):
        KubernetesTarget("k8s", options, Path("/nonexistent"))


def test_models_come_from_the_blob_half_of_a_composite_store() -> None:
    """With registry records in git, the store is a composite; the blobs (and so the pods' source) are in S3."""
    from mlops.registry.composite import CompositeStore
    from mlops.store.memory import MemoryStore

    docs = target().render(state(), CompositeStore(store(), MemoryStore()))
    fetch = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["initContainers"][0]["command"]
    assert fetch[fetch.index("--bucket") + 1] == "models"


def test_reading_garbage_from_the_cluster_never_raises() -> None:
    """What kubectl answers is untrusted: every field replaced by a value of another shape gives a state or None."""
    import copy
    import random

    docs = target().render(state(mirror={"deployment": "green", "percent": 12.5}), store())
    isvc = target(kserve=True).render(state(), store())
    odd: list[Any] = [None, 7, -3, 1.5, float("nan"), True, "x", "{", [], [1, [2]], {}, {"a": []}, ["name"]]
    rng = random.Random(13)

    def paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [at]
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in items:
            out.extend(paths(v, (*at, k)))
        return out

    for base in (docs, isvc):
        every = [p for p in paths(base) if p]
        for _ in range(400):
            mutated = copy.deepcopy(base)
            for path in rng.sample(every, 3):
                node = mutated
                try:
                    for key in path[:-1]:
                        node = node[key]
                    node[path[-1]] = rng.choice(odd)
                except (KeyError, IndexError, TypeError):
                    continue
            result = state_from_objects("wine", mutated, None)
            assert result is None or isinstance(result, EndpointState)
