"""`mlops render ENDPOINT`: the manifests of a real project (specs in git, a registered model in an S3 store)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops.registry.composite import open_registry_store
from mlops.registry.models import register_model
from mlops.spec.loader import load_project
from tests.gitrepo import Repo, init_repo
from tests.registry.conftest import train_onnx


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_onnx("wine", tmp_path_factory.mktemp("models") / "model.onnx", batch_dim="batch")


@pytest.fixture()
def repo(tmp_path: Path, s3_endpoint: str, s3_bucket: str, onnx: Path) -> Repo:
    r = init_repo(tmp_path / "repo")
    r.write("mlops.yaml", f"""kind: Project
name: t
stages: [{{name: dev}}]
stores:
  artifacts: {{type: s3, bucket: {s3_bucket}, prefix: mlops, endpoint_url: "{s3_endpoint}"}}
targets:
  local: {{type: local}}
  k8s: {{type: kubernetes, namespace: ml, image: "registry.example.com/mlops-serving:1", gateway: infra/public}}
""")
    r.write("models/wine.yaml", "kind: Model\nname: wine\nflavor: onnx\nsource: {files: [model.onnx]}\n")
    r.write("endpoints/wine.yaml", """kind: Endpoint
name: wine
type: online
target: k8s
deployments:
  - {name: blue, model: wine@1, instances: 2, resources: {cpu: 500m, memory: 512Mi}}
traffic: {blue: 100}
auth: {mode: none}
""")
    shutil.copy(onnx, r.path / "model.onnx")
    r.commit("project")
    store = open_registry_store(load_project(r.path), r.path)
    lineage = {"git_commit": "1" * 40, "registered_by": "ci", "registered_at": "2026-01-01T00:00:00Z"}
    register_model(store, "wine", [onnx], "onnx", {}, {}, lineage, "")
    return r


def mlops(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo.path), *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_render_prints_the_manifests(repo: Repo) -> None:
    done = mlops(repo, "render", "wine")
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                                         "HTTPRoute"]
    route = docs[-1]
    assert route["spec"]["parentRefs"][0] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                              "name": "public", "namespace": "infra"}
    assert docs[1]["metadata"]["labels"]["mlops.dev/version"] == "1"
    assert docs[3]["spec"]["minReplicas"] == 2


def test_render_writes_one_file_per_object(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    done = mlops(repo, "render", "wine", "--out", str(out))
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 5 and files[0].startswith("00-configmap-wine-blue-") and files[-1] == "04-httproute-wine.yaml"
    assert done.stdout.splitlines() == [str(out / f) for f in files]


def test_render_refuses_clearly(repo: Repo) -> None:
    unknown = mlops(repo, "render", "beer")
    assert unknown.returncode != 0 and "no endpoint named 'beer' (endpoints: wine)" in unknown.stderr
    local = mlops(repo, "render", "wine", "--target", "local")
    assert local.returncode != 0 and "target 'local' is of type local" in local.stderr
    assert "Traceback" not in unknown.stderr + local.stderr
