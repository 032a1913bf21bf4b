"""`mlops validate` reports every problem at once: a file's schema errors do not hide its reference
errors, and no reference error is reported that a schema error already covers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gitrepo import Repo, example_repo
from tests.spec.helpers import errors_of, line_of


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")




def test_schema_errors_do_not_hide_reference_errors_of_the_same_file(repo: Repo) -> None:
    repo.edit("endpoints/wine.yaml", "instances: 1", "instances: lots")
    repo.edit("endpoints/wine.yaml", "model: wine-classifier@dev", "model: wine-clasifier@dev")
    repo.edit("endpoints/wine.yaml", "blue: 100", "blue: 100\n  green: 0")
    errs = errors_of(repo)
    f = "endpoints/wine.yaml"
    assert errs == [
        f"{f}:{line_of(repo, f, 'model:')}:12: $.deployments[0].model: model 'wine-clasifier' does not exist "
        "(did you mean 'wine-classifier'?)",
        f"{f}:{line_of(repo, f, 'instances:')}:16: $.deployments[0].instances: 'lots' is not of type 'integer'",
        f"{f}:{line_of(repo, f, 'green:')}:10: $.traffic.green: deployment 'green' does not exist",
    ]


def test_pipeline_step_references_are_checked_beside_an_unknown_field(repo: Repo) -> None:
    f = "pipelines/wine.yaml"
    repo.edit(f, "    params: {C: 1.0, max_iter: 2000}", "    params: {C: 1.0, max_iter: 2000}\n    retries: 3")
    repo.edit(f, "train: ${steps.prepare.outputs.train}", "train: ${steps.prepare.outputs.trian}")
    errs = errors_of(repo)
    assert len(errs) == 2, errs
    assert any("$.steps[1].retries: unknown field 'retries'" in e for e in errs)
    assert any("$.steps[1].inputs.train: consumes output 'trian' of step 'prepare'" in e for e in errs)


def test_a_field_with_a_schema_error_gets_no_follow_on_reference_error(repo: Repo) -> None:
    repo.edit("endpoints/wine.yaml", "model: wine-classifier@dev", "model: Not A Model@dev")
    errs = errors_of(repo)
    assert len(errs) == 1 and "$.deployments[0].model: 'Not A Model@dev' does not match" in errs[0], errs


def test_an_invalid_project_file_still_has_its_references_checked(repo: Repo) -> None:
    repo.edit("mlops.yaml", "default_target: local", "default_target: cluster\ncolour: red")
    errs = errors_of(repo)
    assert any("mlops.yaml:" in e and "$.colour: unknown field 'colour'" in e for e in errs), errs
    assert any("mlops.yaml:" in e and "$.default_target: target 'cluster' does not exist" in e for e in errs), errs


def test_an_unbuildable_file_reports_its_schema_errors_only(repo: Repo) -> None:
    repo.edit("endpoints/wine.yaml", "traffic:\n  blue: 100", "traffic:\n  blue: all")
    errs = errors_of(repo)
    assert len(errs) == 1 and "$.traffic.blue: 'all' is not of type 'integer'" in errs[0], errs
