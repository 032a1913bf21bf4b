"""The kubernetes target through a real subprocess boundary: a fake ``kubectl`` first on PATH keeps the cluster's
objects in a file and records every call. Without a context, the target renders into .mlops/render instead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.deploy import kubernetes_render as kr
from mlops.deploy.kubernetes import NOT_APPLIED, KubernetesTarget
from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.errors import DeployError
from mlops.store.s3 import S3Store
from tests.deploy.kubefake import FakeKubectl

OPTIONS = {"context": "prod", "namespace": "ml", "image": "registry.example.com/mlops-serving:1",
           "hostnames": ["ml.example.com"]}


@pytest.fixture()
def s3(s3_endpoint: str, s3_bucket: str) -> S3Store:
    return S3Store(s3_bucket, "mlops", s3_endpoint)


@pytest.fixture()
def models(s3: S3Store) -> tuple[str, str, str]:
    return tuple(s3.put_bytes(f"onnx model {i}".encode()) for i in range(3))  # type: ignore[return-value]


@pytest.fixture()
def kubectl(tmp_path: Path) -> FakeKubectl:
    return FakeKubectl(tmp_path / "bin")


def desired(models: tuple[str, ...], traffic: dict[str, int], names: tuple[str, ...] = ("blue", "green"),
            mirror: dict[str, Any] | None = None) -> EndpointState:
    deps = tuple(DeploymentState(n, "wine-classifier", i + 3, models[i], {}) for i, n in enumerate(names))
    return EndpointState("wine", "k8s", deps, traffic, mirror, settings={"auth": {"mode": "none"}})


def target(kubectl: FakeKubectl, root: Path, **options: Any) -> KubernetesTarget:
    return KubernetesTarget("k8s", {**OPTIONS, **options}, root, environ=kubectl.env)


def kinds_applied(call: dict[str, Any]) -> list[str]:
    return [d["kind"] for d in yaml.safe_load_all(call["stdin"]) if d]


def test_apply_rolls_out_workloads_before_the_route_then_reads_back(tmp_path: Path, kubectl: FakeKubectl,
                                                                    s3: S3Store, models: tuple[str, ...]) -> None:
    t = target(kubectl, tmp_path)
    want = desired(models, {"blue": 90, "green": 10}, mirror={"deployment": "green", "percent": 5})
    live = t.apply(want, s3)
    assert live.digest() == want.digest() and live.url == "http://ml.example.com" and t.notice is None
    assert t.applies
    calls = kubectl.calls()
    assert all(c["argv"][:4] == ["--context", "prod", "--namespace", "ml"] for c in calls)
    verbs = kubectl.verbs()
    assert verbs[0] == ["apply", "--server-side", "--field-manager=mlops", "--force-conflicts", "-f", "-"]
    assert sorted(set(kinds_applied(calls[0]))) == ["ConfigMap", "Deployment", "Service"]
    blue, green = (kr.object_name("wine", n) for n in ("blue", "green"))
    assert verbs[1:3] == [["rollout", "status", f"deployment/{blue}", "--timeout=300s"],
                          ["rollout", "status", f"deployment/{green}", "--timeout=300s"]]
    assert verbs[3][0] == "apply" and kinds_applied(calls[3]) == ["HTTPRoute"]  # traffic moves after the rollout
    assert verbs[4][:2] == ["get", kr_kinds()] and "-l" in verbs[4]
    assert t.read("wine") == live and t.endpoints() == ["wine"]


def kr_kinds() -> str:
    from mlops.deploy.kubernetes import KINDS

    return KINDS


def test_a_removed_deployment_is_pruned_after_the_route_leaves_it(tmp_path: Path, kubectl: FakeKubectl,
                                                                  s3: S3Store, models: tuple[str, ...]) -> None:
    t = target(kubectl, tmp_path)
    t.apply(desired(models, {"blue": 50, "green": 50}), s3)
    before = len(kubectl.calls())
    live = t.apply(desired(models[1:], {"green": 100}, names=("green",)), s3)
    assert [d.name for d in live.deployments] == ["green"] and live.traffic == {"green": 100}
    verbs = kubectl.verbs()[before:]
    route_at = next(i for i, v in enumerate(verbs) if v[0] == "apply" and
                    kinds_applied(kubectl.calls()[before + i]) == ["HTTPRoute"])
    deletes = [v for v in verbs if v[0] == "delete"]
    blue = kr.object_name("wine", "blue")
    assert deletes == [["delete", "service", blue, "--ignore-not-found"],
                       ["delete", "deployment.apps", blue, "--ignore-not-found"],
                       ["delete", "configmap", blue, "--ignore-not-found"]]
    assert verbs.index(deletes[0]) > route_at  # no request is routed to a Service being deleted
    assert {o["metadata"]["name"] for o in kubectl.objects()} == {"wine", kr.object_name("wine", "green")}


def test_set_traffic_patches_the_route_and_drift_shows(tmp_path: Path, kubectl: FakeKubectl, s3: S3Store,
                                                       models: tuple[str, ...]) -> None:
    t = target(kubectl, tmp_path)
    t.apply(desired(models, {"blue": 100, "green": 0}), s3)
    t.set_traffic("wine", {"blue": 50, "green": 50})
    patch = kubectl.verbs()[-1]  # read the live route, then patch it
    assert patch[:3] == ["patch", "httproute.gateway.networking.k8s.io", "wine"] and "--type=merge" in patch
    live = t.read("wine")
    assert live is not None and live.traffic == {"blue": 50, "green": 50}
    assert live.digest() == desired(models, {"blue": 50, "green": 50}).digest()
    # someone edits the route by hand: read reports what the cluster does
    objects = kubectl.objects()
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    route["spec"]["rules"][-1]["backendRefs"] = route["spec"]["rules"][-1]["backendRefs"][:1]
    kubectl.write_objects(objects)
    drifted = t.read("wine")
    assert drifted is not None and drifted.traffic == {"blue": 50, "green": 0}
    with pytest.raises(DeployError, match="which it does not deploy"):
        t.set_traffic("wine", {"red": 100})


def test_remove_deletes_by_label_route_first(tmp_path: Path, kubectl: FakeKubectl, s3: S3Store,
                                             models: tuple[str, ...]) -> None:
    t = target(kubectl, tmp_path)
    t.apply(desired(models, {"blue": 100}, names=("blue",)), s3)
    t.remove("wine")
    deletes = [v for v in kubectl.verbs() if v[0] == "delete"]
    selector = "mlops.dev/endpoint=wine,app.kubernetes.io/managed-by=mlops"
    assert deletes[0][:4] == ["delete", "httproutes.gateway.networking.k8s.io", "-l", selector]
    assert deletes[1][:4] == ["delete", kr_kinds(), "-l", selector]
    assert kubectl.objects() == [] and t.read("wine") is None and t.endpoints() == []
    t.remove("wine")  # idempotent


def test_kubectl_failures_are_one_clear_line(tmp_path: Path, kubectl: FakeKubectl, s3: S3Store,
                                             models: tuple[str, ...]) -> None:
    kubectl.env["FAKE_KUBECTL_FAIL"] = "apply"
    t = target(kubectl, tmp_path)
    with pytest.raises(DeployError) as e:
        t.apply(desired(models, {"blue": 100}, names=("blue",)), s3)
    assert str(e.value) == ('target k8s: kubectl apply --server-side failed (context prod, namespace ml): '
                            'Error from server (Forbidden): apply is forbidden for "ci"')
    gone = KubernetesTarget("k8s", OPTIONS, tmp_path, environ={"PATH": str(tmp_path / "empty")})
    with pytest.raises(DeployError, match="kubectl is not on PATH"):
        gone.read("wine")
    with pytest.raises(DeployError, match="model file .* is not in the store"):
        t.apply(desired(("f" * 64,), {"blue": 100}, names=("blue",)), s3)


def test_without_a_context_it_renders_and_says_so(tmp_path: Path, kubectl: FakeKubectl, s3: S3Store,
                                                  models: tuple[str, ...]) -> None:
    t = KubernetesTarget("k8s", {"image": "img:1"}, tmp_path, environ=kubectl.env)
    want = desired(models, {"blue": 90, "green": 10})
    live = t.apply(want, s3)
    assert t.notice == f"{NOT_APPLIED}; manifests in .mlops/render/wine/manifests.yaml"
    assert NOT_APPLIED == "rendered, not applied: no cluster context configured"
    assert kubectl.calls() == [] and not t.applies  # no cluster was touched
    assert live.digest() == want.digest() and t.read("wine") == live and t.endpoints() == ["wine"]
    docs = list(yaml.safe_load_all((tmp_path / ".mlops/render/wine/manifests.yaml").read_text()))
    assert [d["kind"] for d in docs].count("Deployment") == 2
    t.set_traffic("wine", {"blue": 0, "green": 100})
    after = t.read("wine")
    assert after is not None and after.traffic == {"blue": 0, "green": 100}
    t.remove("wine")
    assert t.read("wine") is None and not (tmp_path / ".mlops/render/wine").exists()
    with pytest.raises(DeployError, match=r"set targets.k8s.prometheus in mlops.yaml"):
        t.metrics("wine")


def test_the_init_container_fetches_and_verifies_by_digest(tmp_path: Path, s3: S3Store, s3_endpoint: str,
                                                           models: tuple[str, ...]) -> None:
    """The command the init container runs, run here against a real S3 endpoint."""
    want = desired(models, {"blue": 100}, names=("blue",))
    docs = KubernetesTarget("k8s", {"image": "i"}, tmp_path).render(want, s3)
    command = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    argv = [sys.executable if a == "python" else a for a in command["command"]]
    argv[argv.index("/etc/mlops/models")] = str(tmp_path / "models")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / f"{models[0]}.onnx").read_bytes() == b"onnx model 0"
    assert "sha256 verified" in done.stderr
    argv[-1] = "0" * 64  # a digest the store does not hold
    failed = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("mlops fetch: ") and "Traceback" not in failed.stderr
    argv[-1] = "../../etc/passwd"
    bad = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1 and "not a sha256 digest" in bad.stderr


def test_metrics_come_from_prometheus(tmp_path: Path) -> None:
    from tests.httpstub import Reply, Stub

    def answer(request: Any) -> Reply:
        query = request.query["query"]
        if "le)" in query:
            result = [{"metric": {"deployment": "blue", "le": le}, "value": [0, str(n)]}
                      for le, n in (("0.005", 90), ("+Inf", 100), ("0.001", 40))]
        elif "5.." in query:
            result = [{"metric": {"deployment": "blue"}, "value": [0, "2"]}]
        else:
            result = [{"metric": {"deployment": "blue"}, "value": [0, "100"]},
                      {"metric": {"deployment": "green"}, "value": [0, "7"]}]
        return Reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    with Stub() as prom:
        prom.default = answer
        t = KubernetesTarget("k8s", {"prometheus": prom.url}, tmp_path)
        m = t.metrics("wine")
        queries = [r.query["query"] for r in prom.requests]
    assert m["blue"].requests == 100 and m["blue"].errors == 2 and m["green"].errors == 0
    assert m["blue"].buckets == ((0.001, 40), (0.005, 90), (float("inf"), 100))
    assert all('endpoint="wine"' in q for q in queries)
    with Stub() as down:
        down.default = lambda _r: Reply(503, {"status": "error", "error": "overloaded"})
        with pytest.raises(DeployError, match="overloaded"):
            KubernetesTarget("k8s", {"prometheus": down.url}, tmp_path).metrics("wine")


def test_fake_kubectl_is_a_real_executable(kubectl: FakeKubectl) -> None:
    out = subprocess.run(["kubectl", "--context", "c", "--namespace", "n", "get", "configmaps", "-o", "json"],
                         env=kubectl.env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["items"] == []


@pytest.mark.parametrize("context", [True, False])
def test_kserve_canary_steps_move_the_predictor_to_the_new_model(tmp_path: Path, kubectl: FakeKubectl, s3: S3Store,
                                                                 models: tuple[str, ...], context: bool) -> None:
    options = {**OPTIONS, "kserve": True} if context else {"kserve": True}
    t = KubernetesTarget("k8s", options, tmp_path, environ=kubectl.env)

    def isvc() -> dict[str, Any]:
        if context:
            return next(o for o in kubectl.objects() if o["kind"] == "InferenceService")
        text = (tmp_path / ".mlops/render/wine/manifests.yaml").read_text()
        return next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "InferenceService")

    t.apply(desired(models, {"blue": 100, "green": 0}), s3)
    predictor = isvc()["spec"]["predictor"]
    assert predictor["model"]["storageUri"].endswith(models[0]) and "canaryTrafficPercent" not in predictor
    t.set_traffic("wine", {"blue": 90, "green": 10})
    predictor = isvc()["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == f"s3://{s3.bucket}/{s3.blob_key(models[1])}"
    assert predictor["canaryTrafficPercent"] == 10
    live = t.read("wine")
    assert live is not None and live.traffic == {"blue": 90, "green": 10}
    t.set_traffic("wine", {"blue": 0, "green": 100})
    predictor = isvc()["spec"]["predictor"]
    assert predictor["model"]["storageUri"].endswith(models[1]) and "canaryTrafficPercent" not in predictor
    if context:
        assert [v[0] for v in kubectl.verbs()].count("apply") == 3  # apply, then one apply per step
