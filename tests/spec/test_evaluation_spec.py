"""The model spec's evaluation section and the soak gate: schema and cross-file checks, at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.spec.loader import load_specs
from mlops.spec.model import ModelEvaluation
from tests.gitrepo import Repo, example_repo
from tests.spec.helpers import errors_of, line_of

MODEL = "models/wine-classifier.yaml"
EVAL = "evaluation: {data: prepare.test, label: target, task: classification}"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")


def test_the_example_scores_on_the_prepare_steps_test_split(repo: Repo) -> None:
    ev = load_specs(repo.path).models["wine-classifier"].evaluation
    assert ev == ModelEvaluation("prepare.test", "target", "classification", repeats=5, seed=0)
    assert ev.source({"prepare", "train"}) == ("step", "prepare", "test")
    assert ev.source(set()) == ("path", "prepare.test", "")
    assert ModelEvaluation("${datasets.d}", "y", "regression").source({"d"}) == ("dataset", "d", "")


@pytest.mark.parametrize(("data", "message"), [
    ("prepare.tset", "step 'prepare' of pipeline 'wine-train' has no output 'tset' (did you mean 'test'?)"),
    ("prepair.test", "'prepair.test' is no output of pipeline 'wine-train' (it has no step 'prepair' (did you mean "
                     "'prepare'?)) nor a file in the repository"),
    ("${datasets.holdout}", "dataset 'holdout' does not exist"),
    ("${steps.prepare.outputs.test}", "unknown reference '${steps.prepare.outputs.test}': use STEP.OUTPUT, "
                                      "${datasets.NAME} or a path"),
    ("data/held-out.csv", "path 'data/held-out.csv' does not exist in the repository"),
    ("../outside.csv", "path '../outside.csv' escapes the repository"),
    ("data/wine/test.csv", "path 'data/wine/test.csv' is written by step 'prepare' of pipeline 'wine-train': name it "
                           "as prepare.test, so the bytes the run recorded are used"),
])
def test_evaluation_data_must_name_something_that_exists(repo: Repo, data: str, message: str) -> None:
    repo.edit(MODEL, "data: prepare.test", f"data: '{data}'")
    line = line_of(repo, MODEL, "evaluation:")
    errs = errors_of(repo)
    assert any(e.startswith(f"{MODEL}:{line}:") and e.endswith(f"$.evaluation.data: {message}") for e in errs), errs


def test_evaluation_data_can_be_a_repository_file_or_a_dataset(repo: Repo) -> None:
    repo.write("data/holdout.csv", "a,target\n1,0\n")
    repo.edit(MODEL, "data: prepare.test", "data: data/holdout.csv")
    assert load_specs(repo.path).models["wine-classifier"].evaluation.data == "data/holdout.csv"
    repo.write("datasets/holdout.yaml", "kind: Dataset\nname: holdout\npath: data/holdout.csv\n")
    repo.edit(MODEL, "data: data/holdout.csv", "data: '${datasets.holdout}'")
    assert load_specs(repo.path).models["wine-classifier"].evaluation.data == "${datasets.holdout}"


def test_evaluation_schema(repo: Repo) -> None:
    repo.edit(MODEL, EVAL, "evaluation: {data: prepare.test, task: clasification, repeats: 0}")
    errs = "\n".join(errors_of(repo))
    assert "$.evaluation.label: required field 'label' is missing" in errs
    assert "$.evaluation.task: 'clasification' is not one of classification, regression (did you mean " \
           "'classification'?)" in errs
    assert "$.evaluation.repeats: 0 is less than the minimum of 1" in errs


def test_soak_gate_schema(repo: Repo) -> None:
    repo.edit("mlops.yaml", "      - approval: {required: 1}", "      - approval: {required: 1}\n      - soak: {hours: 48}")
    prod = load_specs(repo.path).project.stages[2]
    assert prod.gates[-1] == {"soak": {"hours": 48}}
    repo.edit("mlops.yaml", "soak: {hours: 48}", "soak: {hours: 0}")
    line = line_of(repo, "mlops.yaml", "soak:")
    assert f"mlops.yaml:{line}:23: $.stages[2].gates[3].soak.hours: 0 is less than or equal to the minimum of 0" \
        in errors_of(repo)
