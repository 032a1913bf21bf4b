"""`reconcile --retrain MODEL`: a model's pipeline runs again, ignoring its step cache, although git did not
change it (new data in a dataset kept outside git, or a drift alert); a new version only when its bytes differ."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.gitrepo import Repo, init_repo, mlops
from tests.reconcile.test_datasets_and_files import COUNT, DATASET, PIPELINE, PROJECT

MODEL = "kind: Model\nname: counter\nflavor: custom\nsource: {pipeline: count, artifact: count.stats, metrics: count.stats}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = init_repo(tmp_path / "repo")
    for rel, text in {"mlops.yaml": PROJECT, "datasets/raw.yaml": DATASET, "pipelines/count.yaml": PIPELINE,
                      "steps/count.py": COUNT, "models/counter.yaml": MODEL,
                      ".gitignore": ".mlops/\nout/\ndata/\n"}.items():
        repo.write(rel, text)
    (repo.path / "data").mkdir()
    (repo.path / "data/raw.csv").write_text("a,b\n1,2\n3,4\n")  # new data lands here, outside git
    repo.commit("small project")
    return repo


def results(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {r["action"]: r for r in json.loads(out.stdout)["results"]}


def test_retrain_registers_a_new_version_only_when_the_data_changed(repo: Repo) -> None:
    assert results(mlops(repo, "reconcile", "--output", "json"))["register_model:model/counter"]["status"] == "succeeded"

    same = results(mlops(repo, "reconcile", "--retrain", "counter", "--output", "json"))
    assert same["run_pipeline:pipeline/count"]["details"]["ran"] == ["count"]  # the cache is not trusted
    assert same["register_model:model/counter"]["status"] == "skipped"  # identical content: no new version

    (repo.path / "data/raw.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    assert mlops(repo, "plan", "--detailed-exitcode", check=False).returncode == 0  # git alone sees nothing
    plan = mlops(repo, "plan", "--retrain", "counter", "--reason", "drift.detected on endpoint/x").stdout
    assert "retraining requested (drift.detected on endpoint/x)" in plan
    again = results(mlops(repo, "reconcile", "--retrain", "counter", "--reason", "drift.detected on endpoint/x",
                          "--output", "json"))
    assert again["register_dataset:dataset/raw"]["status"] == "succeeded"
    assert again["register_model:model/counter"]["status"] == "succeeded"
    shown = json.loads(mlops(repo, "models", "show", "counter", "--output", "json").stdout)
    assert shown["version"] == 2 and shown["metrics"] == {"rows": 3}
    assert shown["lineage"]["trigger"] == "retrain: drift.detected on endpoint/x"


def test_retrain_refuses_what_it_cannot_retrain(repo: Repo) -> None:
    bad = mlops(repo, "reconcile", "--retrain", "nope", check=False)
    assert bad.returncode == 3 and "--retrain 'nope': no such pipeline or model (known: count, counter)" in bad.stderr
    mlops(repo, "reconcile")
    odd = mlops(repo, "plan", "--retrain", "counter", "--reason", "line\nbreak\x1b[31m")
    assert "\x1b" not in odd.stdout and "retraining requested (line break [31m)" in odd.stdout, odd.stdout
