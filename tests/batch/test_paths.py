"""A batch endpoint's paths are untrusted: `mlops validate` and the run itself keep them in the repository."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from mlops.batch.job import job_for
from mlops.errors import BatchError
from mlops.spec.loader import load, open_source
from mlops.spec.model import Endpoint
from tests.batch.conftest import Project, endpoint_yaml
from tests.batch.test_run import run_batch
from tests.gitrepo import mlops


def validate_errors(p: Project, endpoint: str) -> str:
    p.repo.write("endpoints/scorer.yaml", endpoint)
    out = mlops(p.repo, "validate", check=False)
    assert out.returncode == 9, out.stdout + out.stderr
    return out.stderr


@pytest.mark.parametrize(("endpoint", "message"), [
    (endpoint_yaml("wine@1", output=".git/hooks/pre-commit.csv"), "$.batch.output: path '.git/hooks/pre-commit.csv' "
                                                                  "is inside .git/"),
    (endpoint_yaml("wine@1", output="models/x.yaml"), "$.batch.output: output 'models/x.yaml' would overwrite specs"),
    (endpoint_yaml("wine@1", output="data/in.csv"), "$.batch.output: output 'data/in.csv' overlaps the input"),
    (endpoint_yaml("wine@1", output="../out.csv"), "$.batch.output: path '../out.csv' escapes the repository"),
    (endpoint_yaml("wine@1", output="out/pred.parquet"), "the output must end with one of .csv, .jsonl, .ndjson"),
    (endpoint_yaml("wine@1", input="data/in.xlsx"), "$.batch.input: 'data/in.xlsx': the input must end with"),
    (endpoint_yaml("wine@1", output="mlops.yaml.csv").replace("mlops.yaml.csv", "README.csv"),
     "path 'README.csv' is a tracked file"),
    (endpoint_yaml("wine@1").replace("    model: wine@1\n", "    model: wine@1\n  - name: two\n    model: wine@1\n"),
     "a batch endpoint has exactly one deployment (it has 2)"),
])
def test_validate_names_the_file_line_and_field(project: Project, endpoint: str, message: str) -> None:
    project.repo.write("README.csv", "tracked\n")
    project.repo.commit("a tracked file")
    err = validate_errors(project, endpoint)
    assert "endpoints/scorer.yaml:" in err and message in err, err


def test_validate_accepts_a_good_batch_endpoint(project: Project) -> None:
    project.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine@dev", id_column="sample", error_threshold=5,
                                                              mini_batch_size=100))
    out = mlops(project.repo, "validate")
    assert out.returncode == 0


def unchecked(p: Project, **batch: str) -> Endpoint:
    """The endpoint as the spec says, with ``batch`` fields changed after validation: the run checks on its own."""
    e = load(open_source(p.root, None), cross_check=False).specs.endpoints["scorer"]
    return dataclasses.replace(e, batch={**e.batch, **batch})


def test_an_input_linked_out_of_the_repository_is_refused(project: Project, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    os.symlink(secret, project.root / "data" / "link.csv")
    with pytest.raises(BatchError, match="leads outside the repository through the symbolic link"):
        job_for(unchecked(project, input="data/link.csv"), project.root)  # validate refuses it too


def test_outputs_are_not_written_through_links(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, project.root / "out")  # a directory above the output that leads out
    with pytest.raises(BatchError, match="passes through the symbolic link 'out'"):
        job_for(unchecked(project), project.root)
    os.unlink(project.root / "out")
    (project.root / "out").mkdir()
    victim = outside / "victim.csv"
    victim.write_text("keep me\n")
    os.symlink(victim, project.root / "out" / "pred.csv")  # the output itself a link: replaced, not followed
    assert run_batch(project, endpoint=unchecked(project)).status == "succeeded"  # validate refuses it too
    assert victim.read_text() == "keep me\n"
    assert not (project.root / "out" / "pred.csv").is_symlink()


def test_a_tracked_output_is_refused_at_run_time_too(project: Project) -> None:
    project.repo.write("out/pred.csv", "mine\n")
    project.repo.git("add", "-f", "out/pred.csv")
    project.repo.git("commit", "-qm", "tracked output")
    with pytest.raises(BatchError, match="is a tracked file: only new, untracked paths may be written"):
        job_for(unchecked(project), project.root)
