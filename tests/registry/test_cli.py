"""`mlops models` and `mlops datasets` in a real git repository with a minimal mlops.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mlops.cli.main import cli
from tests.registry.conftest import git, make_repo

PROJECT = "kind: Project\nname: t\nstages: [{name: dev}]\n"


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"mlops.yaml": PROJECT, ".gitignore": ".mlops/\n"},
                     message="Add iris model\n\nAccuracy went up.")


def run(repo: Path, *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(cli, ["-C", str(repo), *args], catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_register_show_list_download(repo: Path, iris_onnx: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"accuracy": 0.97}')
    out = run(repo, "models", "register", "iris", str(iris_onnx), "--flavor", "onnx", "--metrics", str(metrics),
              "--tag", "team=a", "--description", "first").output
    assert out.strip() == "registered iris@1"
    again = run(repo, "models", "register", "iris", str(iris_onnx), "--flavor", "onnx", "--metrics", str(metrics))
    assert again.output.strip() == "iris@1 already holds this content; nothing registered"

    shown = json.loads(run(repo, "models", "show", "iris@1", "--output", "json").output)
    assert shown["signature"]["inputs"] == [{"name": "float_input", "dtype": "tensor(float)", "shape": [None, 4]}]
    assert shown["metrics"] == {"accuracy": 0.97} and shown["tags"] == {"team": "a"}
    assert shown["lineage"]["git_commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert shown["lineage"]["git_message"] == "Add iris model\n\nAccuracy went up."
    text = run(repo, "models", "show", "iris").output
    assert "iris@1  (onnx)" in text and "float_input: tensor(float) [?, 4]" in text and "why:    Add iris model" in text

    listed = json.loads(run(repo, "models", "list", "-o", "json").output)
    assert [(m["name"], m["latest"], m["versions"]) for m in listed] == [("iris", 1, 1)]
    assert run(repo, "models", "list").output.splitlines()[1].split()[:3] == ["iris", "1", "1"]

    dest = tmp_path / "dl"
    assert run(repo, "models", "download", "iris@1", str(dest)).output.strip() == str(dest / "iris.onnx")
    assert (dest / "iris.onnx").read_bytes() == iris_onnx.read_bytes()
    assert (repo / ".mlops" / "records" / "registry" / "models" / "iris" / "versions").is_dir()


def test_tag_and_search(repo: Path, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    for i in range(2):
        f.write_bytes(bytes([i]))
        run(repo, "models", "register", "m", str(f), "--flavor", "raw")
    assert run(repo, "models", "tag", "m@2", "stage=prod", "owner=ada").output.strip() == "m@2: owner=ada, stage=prod"
    run(repo, "models", "tag", "m@2", "--remove", "owner")
    found = json.loads(run(repo, "models", "search", "stage=prod", "-o", "json").output)
    assert [(m["name"], m["version"], m["tags"]) for m in found] == [("m", 2, {"stage": "prod"})]
    assert "no matching" in run(repo, "models", "search", "stage=qa").output
    bad = run(repo, "models", "tag", "m@2", "novalue", ok=False)
    assert bad.exit_code == 2 and "is not KEY=VALUE" in bad.output


def test_datasets(repo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("1,2\n")
    out = run(repo, "datasets", "register", "iris", str(data)).output
    assert out.startswith("registered iris@1 (sha256:")
    assert "already holds" in run(repo, "datasets", "register", "iris", str(data)).output
    shown = json.loads(run(repo, "datasets", "show", "iris", "-o", "json").output)
    assert shown["layout"] == "directory" and shown["files"][0]["path"] == "train.csv"
    assert json.loads(run(repo, "datasets", "list", "-o", "json").output)[0]["name"] == "iris"
    run(repo, "datasets", "download", "iris@1", str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "train.csv").read_text() == "1,2\n"


def test_errors_are_one_line_with_exit_codes(repo: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "tooling")}
    r = subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo), "models", "show", "ghost@3"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 5
    assert r.stderr.strip().splitlines() == [f"error: no model named 'ghost' in {(repo / '.mlops').as_uri()}"]
    r = subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo), "models", "show", "ghost@prod"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 5 and "expected NAME@VERSION with a version number" in r.stderr


def test_s3_store_from_the_project_file(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    project = PROJECT + f"stores:\n  artifacts: {{type: s3, bucket: {s3_bucket}, prefix: t, endpoint_url: '{s3_endpoint}'}}\n"
    repo = make_repo(tmp_path / "repo", {"mlops.yaml": project})
    f = tmp_path / "w.bin"
    f.write_bytes(b"w")
    assert run(repo, "models", "register", "m", str(f), "--flavor", "raw").output.strip() == "registered m@1"
    assert not (repo / ".mlops").exists()
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=s3_bucket)["Contents"]]
    assert "t/records/registry/models/m/versions/0000000001.json" in keys


def test_git_registry_backend(tmp_path: Path) -> None:
    project = PROJECT + "stores:\n  registry: {backend: git, remote: origin}\n"
    seed = make_repo(tmp_path / "seed", {"mlops.yaml": project})
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(tmp_path / "origin.git"))
    git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), str(tmp_path / "work"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"w")
    run(tmp_path / "work", "models", "register", "m", str(f), "--flavor", "raw")
    refs = git(tmp_path / "origin.git", "for-each-ref", "--format=%(refname)", "refs/mlops/")
    assert "refs/mlops/records/registry/models/m/versions/0000000001.json" in refs.split()
