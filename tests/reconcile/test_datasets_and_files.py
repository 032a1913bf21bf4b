"""Datasets as versioned inputs, and models trained elsewhere registered from files, through reconcile."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.gitrepo import Repo, init_repo, mlops

PROJECT = "kind: Project\nname: small\nstages: [{name: dev}]\n"
DATASET = "kind: Dataset\nname: raw\npath: data/raw.csv\n"
PIPELINE = """kind: Pipeline
name: count
steps:
  - name: count
    command: [python, steps/count.py, "${inputs.raw}", "${outputs.stats}"]
    inputs: {raw: "${datasets.raw}"}
    outputs: {stats: out/stats.json}
    metrics: stats
"""
COUNT = """import json, sys
rows = open(sys.argv[1]).read().strip().splitlines()[1:]
json.dump({"rows": len(rows)}, open(sys.argv[2], "w"))
"""
MODEL = "kind: Model\nname: iris\nflavor: onnx\nsource: {files: [models/files/iris.onnx]}\ntags: {origin: elsewhere}\n"




def iris_onnx(path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(x.astype("float32"), y)
    onx = to_onnx(clf, x[:1].astype("float32"), options={id(clf): {"zipmap": False}}, target_opset=17)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = init_repo(tmp_path / "repo")
    for rel, text in {"mlops.yaml": PROJECT, "datasets/raw.yaml": DATASET, "pipelines/count.yaml": PIPELINE,
                      "steps/count.py": COUNT, "models/iris.yaml": MODEL, "data/raw.csv": "a,b\n1,2\n3,4\n",
                      ".gitignore": ".mlops/\nout/\n"}.items():
        repo.write(rel, text)
    iris_onnx(repo.path / "models/files/iris.onnx")
    repo.commit("small project")
    return repo


def results(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {r["action"]: r for r in json.loads(out.stdout)["results"]}


def test_dataset_versions_follow_their_content(repo: Repo) -> None:
    first = results(mlops(repo, "reconcile", "--output", "json"))
    assert first["register_dataset:dataset/raw"]["status"] == "succeeded"
    assert first["run_pipeline:pipeline/count"]["status"] == "succeeded"
    assert json.loads((repo.path / "out/stats.json").read_text()) == {"rows": 2}
    shown = json.loads(mlops(repo, "datasets", "show", "raw", "--output", "json").stdout)
    assert shown["version"] == 1 and shown["lineage"]["git_message"] == "small project"

    repo.write("data/raw.csv", "a,b\n1,2\n3,4\n5,6\n")
    repo.commit("more data")
    diff = mlops(repo, "diff", "--base", "HEAD~1", "--head", "HEAD").stdout
    assert "~ dataset/raw" in diff and "data/raw.csv changed → dataset raw" in diff
    assert "data/raw.csv changed → dataset raw → step count/count" in diff
    second = results(mlops(repo, "reconcile", "--output", "json"))
    assert second["register_dataset:dataset/raw"]["details"] == {"version": 2}
    assert second["run_pipeline:pipeline/count"]["details"]["ran"] == ["count"]
    assert json.loads((repo.path / "out/stats.json").read_text()) == {"rows": 3}


def test_pinned_dataset_digest_mismatch_fails_clearly(repo: Repo) -> None:
    repo.write("datasets/raw.yaml", DATASET + "digest: sha256:" + "0" * 64 + "\n")
    repo.commit("pin the data")
    out = mlops(repo, "reconcile", "--output", "json", check=False)
    assert out.returncode == 1
    got = results(out)
    assert got["register_dataset:dataset/raw"]["status"] == "failed"
    assert "not the pinned sha256:000" in str(got["register_dataset:dataset/raw"]["message"])
    assert got["run_pipeline:pipeline/count"]["status"] == "skipped"  # never runs on unverified data
    # checked first: nothing was registered (not even a version that is then called a failure)
    listed = mlops(repo, "datasets", "list", "--output", "json")
    assert json.loads(listed.stdout) == []


def test_model_trained_elsewhere_is_registered_from_files(repo: Repo) -> None:
    got = results(mlops(repo, "reconcile", "--output", "json"))
    assert got["register_model:model/iris"]["status"] == "succeeded"
    shown = json.loads(mlops(repo, "models", "show", "iris@1", "--output", "json").stdout)
    assert shown["tags"] == {"origin": "elsewhere"}
    assert shown["signature"]["inputs"][0]["dtype"] == "tensor(float)"
    assert shown["lineage"]["git_commit"] == repo.git("rev-parse", "HEAD")


def test_registration_uses_the_bytes_the_run_recorded_not_a_later_workspace_edit(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model output edited in the workspace after its run, even while registration looks at it, is not
    what gets registered."""
    from mlops.apply.executors.registry import register_model
    from mlops.apply.protocol import ApplyContext
    from mlops.pipelines.record import list_runs
    from mlops.plan.model import Action
    from mlops.registry.models import get_model
    from mlops.spec.loader import load_specs
    from mlops.store.local import LocalStore

    repo.write("models/counts.yaml", "kind: Model\nname: counts\nflavor: custom\n"
                                     "source: {pipeline: count, artifact: count.stats, metrics: count.stats}\n")
    repo.commit("a model from the pipeline")
    mlops(repo, "run", "count")
    store = LocalStore(repo.path / ".mlops")
    [run] = list_runs(store, "count")
    recorded = run.step("count").outputs["stats"]
    import mlops.store.digest as digest

    real = digest.sha256_file
    workspace_file = repo.path / "out/stats.json"

    def hash_then_edit(path: Path) -> str:  # whoever hashes the workspace file sees it change right after
        value = real(path)
        if Path(path) == workspace_file:
            workspace_file.write_text('{"rows": 999999}')
        return value

    monkeypatch.setattr(digest, "sha256_file", hash_then_edit)

    ctx = ApplyContext(root=repo.path, specs=load_specs(repo.path), store=store, lineage={})
    done = register_model(Action("register_model:model/counts", "register_model", "model/counts", "created", "new"),
                          ctx)
    assert done.status == "succeeded", done.message
    version = get_model(store, "counts", 1)
    assert [f.digest for f in version.files] == [recorded]
    assert version.metrics == {"rows": 2}
