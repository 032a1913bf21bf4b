"""A batch endpoint through reconcile and the CLI: scored when the model or the input changed, skipped
otherwise; `mlops batch run` as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from mlops.batch.deploy import apply_batch_endpoint
from mlops.batch.records import last_scoring
from mlops.spec.loader import load_specs
from tests.batch.conftest import Project, endpoint_yaml, features_csv, make_project
from tests.evaluation.models import Trained, train
from tests.gitrepo import mlops


def apply(p: Project) -> tuple[str, str, dict[str, object]]:
    specs = load_specs(p.root)
    return apply_batch_endpoint(specs.endpoints["scorer"], specs, p.store(), p.root, lambda _m: None, by="tester")


def test_reconcile_scores_the_input_with_the_version_the_stage_holds_then_only_on_change(
        tmp_path: Path, wine: Trained) -> None:
    p = make_project(tmp_path / "repo", wine, features_csv(wine.x, wine.names), endpoint=endpoint_yaml("wine@dev"))
    p.repo.write(".gitignore", ".mlops/\n")  # the output is not ignored: it must not make the tree dirty
    p.repo.commit("outputs not ignored")
    out = mlops(p.repo, "reconcile")
    assert "deploy" in out.stdout and "scored 54 of 54 rows of data/in.csv with wine@1" in out.stdout, out.stdout
    pred = p.root / "out" / "pred.csv"
    first = pred.read_bytes()
    rec = last_scoring(p.store(), "scorer")
    assert rec is not None and (rec.model, rec.version, rec.rows, rec.errors) == ("wine", 1, 54, 0)

    again = mlops(p.repo, "reconcile")  # nothing changed: nothing scored, the tree is not dirty for the output
    assert "scored" not in again.stdout
    status, message, _ = apply(p)
    assert status == "skipped" and "already holds the predictions of wine@1" in message

    p.repo.write("data/in.csv", features_csv(wine.x[:10], wine.names))
    p.repo.git("commit", "-qam", "fewer rows")
    out = mlops(p.repo, "reconcile")
    assert "scored 10 of 10 rows" in out.stdout, out.stdout
    assert pred.read_bytes() != first and last_scoring(p.store(), "scorer").rows == 10  # type: ignore[union-attr]


def test_a_new_model_version_or_a_lost_output_is_scored_again(project: Project, tmp_path: Path) -> None:
    assert apply(project)[0] == "succeeded"
    assert apply(project)[0] == "skipped"
    (project.root / "out" / "pred.csv").write_text("edited\n")
    status, message, details = apply(project)
    assert status == "succeeded" and details["version"] == 1
    other = train("wine", tmp_path / "weak.onnx", kind="tree")
    project.register(other.path)
    project.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine"))  # bare MODEL: the latest version
    status, message, details = apply(project)
    assert status == "succeeded" and details["version"] == 2 and "with wine@2" in message


def test_an_unusable_endpoint_fails_its_action_with_the_reason(project: Project) -> None:
    project.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine@7"))
    status, message, _ = apply(project)
    assert status == "failed" and "wine@7" in message and "$.deployments[0].model" in message
    project.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine@prod"))
    status, message, _ = apply(project)
    assert status == "failed" and "stage prod of wine holds no version yet" in message
    project.repo.write("models/wine.yaml", (project.root / "models" / "wine.yaml").read_text() + "stages: {prod: 1}\n")
    status, message, _ = apply(project)  # pinned, but no promotion took it into prod: not scored with it
    assert status == "failed" and "(its pin, version 1, has not entered it yet)" in message
    project.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine@1", input="data/missing.csv"))
    status, message, _ = apply(project)
    assert status == "failed" and "'data/missing.csv' is not a file in the repository" in message


def test_cli_batch_run_scores_records_and_says_so(project: Project) -> None:
    out = mlops(project.repo, "batch", "run", "scorer")
    assert "scored 54 of 54 rows of data/in.csv with wine@1 → out/pred.csv" in out.stdout
    assert "rows/s" in out.stdout
    assert last_scoring(project.store(), "scorer") is not None
    other = project.root.parent / "other.jsonl"
    out = mlops(project.repo, "batch", "run", "scorer", "--output", str(other))
    assert json.loads(other.read_text().splitlines()[0])["row"] == 1


def test_cli_batch_run_exits_1_past_the_threshold_and_names_unknown_endpoints(project: Project) -> None:
    bad = project.root.parent / "bad.csv"
    bad.write_text(features_csv(project.trained.x[:5], project.trained.names).replace("\n1", "\nx1"))
    project.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine@1", error_threshold=0))
    out = mlops(project.repo, "batch", "run", "scorer", "--input", str(bad), check=False)
    assert out.returncode == 1 and "stopped after" in out.stderr and "Traceback" not in out.stderr
    out = mlops(project.repo, "batch", "run", "nope", check=False)
    assert out.returncode == 12 and "no endpoint 'nope'" in out.stderr and "scorer" in out.stderr


def test_the_audit_trail_tells_which_version_scored_the_endpoint(project: Project, tmp_path: Path) -> None:
    assert apply(project)[0] == "succeeded"
    (project.root / "data" / "in.csv").write_text(features_csv(project.trained.x[:3], project.trained.names))
    assert apply(project)[0] == "succeeded"  # same version, new input: no new deployment
    project.register(train("wine", tmp_path / "weak.onnx", kind="tree").path)
    project.repo.write("endpoints/scorer.yaml", endpoint_yaml("wine@2"))
    assert apply(project)[0] == "succeeded"
    history = json.loads(mlops(project.repo, "history", "wine", "--output", "json").stdout)
    deployed = [e for e in history if e["kind"] == "deployed"]
    assert [(e["version"], e["evidence"]["endpoint"], e["evidence"]["target"]) for e in deployed] == [
        (1, "scorer", "batch"), (2, "scorer", "batch")]
    audit = json.loads(mlops(project.repo, "audit", "scorer", "--output", "json").stdout)
    assert [(p["model"], p["version"], p["deployment"], p["target"]) for p in audit["served"]] == [
        ("wine", 2, "main", "batch")]
