"""`mlops validate`: every error at once, each at file:line:column with the JSON path of the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.spec.loader import load_specs
from tests.gitrepo import Repo, example_repo, mlops
from tests.spec.helpers import errors_of


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")



def test_example_project_is_valid(repo: Repo) -> None:
    specs = load_specs(repo.path)
    assert set(specs.pipelines) == {"wine-train"}
    assert [s.name for s in specs.pipelines["wine-train"].steps] == ["prepare", "train", "evaluate", "export"]
    assert specs.endpoints["wine"].traffic == {"blue": 100}
    out = mlops(repo, "validate")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: 6 spec files valid")


def test_unknown_field_names_line_and_suggests(repo: Repo) -> None:
    repo.edit("models/wine-classifier.yaml", "flavor: onnx", "flavour: onnx")
    errs = errors_of(repo)
    line = next(i for i, t in enumerate((repo.path / "models/wine-classifier.yaml").read_text().splitlines(), 1)
                if t.startswith("flavour"))
    assert f"models/wine-classifier.yaml:{line}:1: $.flavour: unknown field 'flavour' (did you mean 'flavor'?)" in errs
    assert any("$.flavor: required field 'flavor' is missing" in e for e in errs)


def test_every_error_is_reported_at_once_with_exact_positions(repo: Repo) -> None:
    repo.write("models/broken.yaml", "kind: Model\nname: broken\nflavor: onix\nsource:\n  files: [../outside.onnx]\n"
                                     "tags: {a: b}\ntags: {c: d}\n")
    repo.edit("endpoints/wine.yaml", "blue: 100", "blue: 90")
    repo.edit("endpoints/wine.yaml", "model: wine-classifier@dev", "model: wine-clasifier@dev")
    repo.edit("pipelines/wine.yaml", "train: ${steps.prepare.outputs.train}", "train: ${steps.prepare.outputs.trian}")
    repo.write("environments/bad.yaml", "kind: Environment\nname: bad\npython: '3.11'\n  oops: [\n")
    errs = errors_of(repo)
    text = "\n".join(errs)
    assert "models/broken.yaml:3:9: $.flavor: 'onix' is not one of onnx, sklearn, pickle, custom (did you mean 'onnx'?)" \
        in errs
    assert "models/broken.yaml:7:1: $.tags: duplicate key 'tags'" in text
    assert "endpoints/wine.yaml:" in text and "$.traffic: traffic weights sum to 90, not 100" in text
    assert "$.deployments[0].model: model 'wine-clasifier' does not exist (did you mean 'wine-classifier'?)" in text
    assert "$.steps[1].inputs.train: consumes output 'trian' of step 'prepare', which no step produces " \
           "(did you mean 'train'?)" in text
    assert "environments/bad.yaml:4:" in text and "invalid YAML" in text
    assert len(errs) >= 6


def test_cross_reference_and_path_errors(repo: Repo) -> None:
    repo.edit("models/wine-classifier.yaml", "  pipeline: wine-train\n  artifact: export.onnx\n  metrics: evaluate.metrics",
              "  files: [../../etc/passwd]")
    repo.write("pipelines/loop.yaml", """kind: Pipeline
name: loop
steps:
  - name: a
    command: [python, -c, "print(1)", "${inputs.x}"]
    inputs: {x: "${steps.b.outputs.y}"}
    outputs: {y: out/a}
  - name: b
    command: [python, -c, "print(2)", "${params.missing}"]
    inputs: {x: "${steps.a.outputs.y}"}
    outputs: {y: out/b}
""")
    errs = "\n".join(errors_of(repo))
    assert "$.source.files[0]: path '../../etc/passwd' escapes the repository" in errs
    assert "steps form a cycle: a -> b -> a" in errs
    assert "${params.missing}: the step has no param 'missing'" in errs


def test_kind_in_wrong_folder_and_duplicate_names(repo: Repo) -> None:
    repo.write("models/env.yaml", "kind: Environment\nname: x\npython: '3.11'\n")
    repo.write("endpoints/wine2.yaml", (repo.path / "endpoints/wine.yaml").read_text())
    errs = "\n".join(errors_of(repo))
    assert "models/env.yaml:1:7: $.kind: a Environment spec belongs in environments/, not models/env.yaml" in errs
    assert "endpoints/wine2.yaml:" in errs and "Endpoint 'wine' is already defined in endpoints/wine.yaml" in errs


def test_cli_exit_code_annotations_and_nothing_written(repo: Repo) -> None:
    repo.edit("endpoints/wine.yaml", "blue: 100", "blue: 90")
    before = sorted(p.relative_to(repo.path) for p in repo.path.rglob("*") if ".git" not in p.parts)
    out = mlops(repo, "validate", env={"GITHUB_ACTIONS": "true"}, check=False)
    assert out.returncode == 9  # invalid specs
    assert "::error file=endpoints/wine.yaml,line=" in out.stdout
    assert ",col=3::$.traffic: traffic weights sum to 90, not 100" in out.stdout
    assert "endpoints/wine.yaml:" in out.stderr and "error: 1 error in specs" in out.stderr
    for cmd in (["plan", "--no-refresh", "--out", "plan.json"], ["reconcile"]):
        assert mlops(repo, *cmd, check=False).returncode == 9
    after = sorted(p.relative_to(repo.path) for p in repo.path.rglob("*") if ".git" not in p.parts)
    assert after == before  # validation failed: nothing was written


def test_validate_at_revision_and_json_output(repo: Repo) -> None:
    repo.edit("endpoints/wine.yaml", "blue: 100", "blue: 90")
    assert mlops(repo, "validate", check=False).returncode == 9
    ok = mlops(repo, "validate", "--rev", "HEAD", "--output", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    bad = mlops(repo, "validate", "--output", "json", check=False)
    assert json.loads(bad.stdout)["errors"][0]["path"] == "$.traffic"


def test_schema_command_prints_draft_2020_12_schema(repo: Repo) -> None:
    from jsonschema import Draft202012Validator

    for kind in ("project", "environment", "dataset", "pipeline", "model", "endpoint"):
        out = mlops(repo, "schema", kind)
        assert out.returncode == 0
        schema = json.loads(out.stdout)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    bad = mlops(repo, "schema", "modle", check=False)
    assert bad.returncode == 1 and "unknown kind 'modle'" in bad.stderr


def test_yaml_is_loaded_safely(repo: Repo) -> None:
    repo.write("models/evil.yaml", "kind: Model\nname: !!python/object/apply:os.system ['touch pwned']\n")
    errs = "\n".join(errors_of(repo))
    assert "models/evil.yaml:2:7: $.name: the YAML tag !!python/object/apply:os.system is not allowed" in errs
    assert not (repo.path / "pwned").exists()


@pytest.mark.parametrize("rel, old, new, where", [
    ("models/wine-classifier.yaml", "name: wine-classifier", 'name: "wine-classifier\\n"', "$.name"),
    ("environments/sklearn.yaml", "name: sklearn", 'name: "sklearn\\n"', "$.name"),
    ("endpoints/wine.yaml", "model: wine-classifier@dev", 'model: "wine-classifier@dev\\n"', "$.deployments[0].model"),
])
def test_a_pattern_matches_the_whole_value(repo: Repo, rel: str, old: str, new: str, where: str) -> None:
    """JSON Schema's ``$`` is the end of the value: Python's also matched before a final newline,
    so a name ending in one was valid (and became a store key, a directory and a line break)."""
    repo.edit(rel, old, new)
    assert any(f"{rel}:" in e and f"{where}:" in e for e in errors_of(repo)), errors_of(repo)


def test_store_keys_and_names_are_matched_whole() -> None:
    from mlops.errors import StoreError
    from mlops.store.keys import check_key

    for key in ("registry/models/m\n/versions/0000000001.json", "locks/reconcile\n"):
        with pytest.raises(StoreError):
            check_key(key)


def test_a_spec_file_name_cannot_forge_workflow_commands(repo: Repo) -> None:
    """Under GitHub Actions every error is also a ``::error file=NAME,...`` line: a spec file whose name
    holds a newline printed a workflow command of its own (``::warning``, ``::add-mask::``...), in the
    annotation and in every plain line that names the file."""
    name = "models/x\n::warning title=PWNED::injected\n.yaml"
    repo.write(name, "kind: Model\nname: x\nflavor: onix\nsource: {files: [a]}\n")
    repo.commit("a hostile file name")
    out = mlops(repo, "validate", check=False, env={"GITHUB_ACTIONS": "true"})
    assert out.returncode == 9
    lines = (out.stdout + out.stderr).splitlines()
    assert not any(line.startswith("::warning") for line in lines), lines
    assert any(line.startswith("::error file=models/x\\n%3A%3Awarning") for line in lines), lines
    assert "a spec file name may not contain control characters" in out.stderr


def test_annotation_properties_are_escaped() -> None:
    from mlops.errors import Diagnostic

    d = Diagnostic("a,b:c.yaml", 1, 2, "$", "m\nn")
    assert d.github_annotation() == "::error file=a%2Cb%3Ac.yaml,line=1,col=2::$: m%0An"


def test_env_names_and_secret_names_are_checked(repo: Repo) -> None:
    repo.edit("pipelines/wine.yaml", "    params: {C: 1.0, max_iter: 2000}",
              "    params: {C: 1.0, max_iter: 2000}\n    env: {\"A=B\": x}\n    secrets: [PATH]")
    errors = errors_of(repo)
    assert any("$.steps[1].env" in e and "'A=B' does not match" in e for e in errors), errors
    assert any("$.steps[1].secrets[0]" in e and "configures how programs run" in e for e in errors), errors


@pytest.mark.parametrize(("secret", "message"), [("HOME", "configures how programs run"),
                                                 ("MLOPS_RUN", "MLOPS_* variables are set by mlops")])
def test_an_endpoint_key_is_no_process_variable(repo: Repo, secret: str, message: str) -> None:
    """auth.secret: HOME would make the endpoint's key the runner's home directory: anyone's guess."""
    repo.edit("endpoints/wine.yaml", "traffic:\n", f"auth: {{secret: {secret}}}\ntraffic:\n")
    errors = errors_of(repo)
    assert any("$.auth.secret" in e and message in e for e in errors), errors
