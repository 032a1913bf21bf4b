"""Plan files and the state record are untrusted: an action that `mlops plan` could not have made for
the tree being applied is refused (exit 3) before anything runs, never an internal error halfway."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.gitrepo import Repo, init_repo, mlops
from tests.tinypipeline import MAKE, PIPELINE


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n")
    repo.write("steps/make.py", MAKE)
    repo.write("pipelines/p.yaml", PIPELINE)
    repo.write("models/m.yaml", "kind: Model\nname: m\nflavor: custom\nsource: {pipeline: p, artifact: make.o}\n")
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.commit("small project")
    return repo


def _action(kind: str, asset: str, **details: Any) -> dict[str, Any]:
    suffix = f"@{details['stage']}" if "stage" in details else ""
    return {"id": f"{kind}:{asset}{suffix}", "kind": kind, "asset": asset, "change": "created", "reason": "r",
            "details": details, "depends_on": []}


Tamper = Callable[[list[dict[str, Any]]], None]
TAMPERED: dict[str, Tamper] = {
    "a pipeline the specs lack": lambda a: a.append(_action("run_pipeline", "pipeline/nope")),
    "an asset without a kind": lambda a: a.append(_action("run_pipeline", "pipeline")),
    "another model": lambda a: a.append(_action("register_model", "model/other")),
    "a model as a pipeline": lambda a: a.append(_action("run_pipeline", "model/m")),
    "an environment the specs lack": lambda a: a.insert(0, _action("build_environment", "environment/x")),
    "an id that is not its kind and asset": lambda a: a[1].update(asset="model/other"),
    "a repeated action": lambda a: a.append(dict(a[0])),
    "a stage mlops.yaml lacks": lambda a: a.append(_action("promote", "model/m", stage="prod")),
    "a deploy of a model": lambda a: a.append(_action("deploy", "model/m")),
}


@pytest.mark.parametrize("name", TAMPERED)
def test_a_tampered_action_is_refused_before_anything_runs(repo: Repo, tmp_path: Path, name: str) -> None:
    plan_file = tmp_path / "plan.json"
    mlops(repo, "plan", "--out", str(plan_file))
    data = json.loads(plan_file.read_text())
    TAMPERED[name](data["actions"])
    plan_file.write_text(json.dumps(data))

    out = mlops(repo, "apply", str(plan_file), check=False)

    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "make a new plan" in out.stderr and "internal error" not in out.stderr
    assert not (repo.path / "out").exists()  # nothing ran
    assert not (repo.path / ".mlops/records/reconcile").exists()  # nothing was recorded


def test_the_untampered_plan_applies(repo: Repo, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    mlops(repo, "plan", "--out", str(plan_file))
    out = mlops(repo, "apply", str(plan_file))
    assert "registered m@1" in out.stdout


@pytest.mark.parametrize("forged", [
    {"id": "deploy:model/m", "kind": "deploy", "asset": "model/m", "status": "pending"},
    {"id": "promote:pipeline/p@dev", "kind": "promote", "asset": "pipeline/p", "stage": "dev", "status": "pending"},
    {"id": "promote:model/m@gone", "kind": "promote", "asset": "model/m", "stage": "gone", "status": "pending"},
    {"id": "run_pipeline:pipeline/p", "kind": "run_pipeline", "asset": "pipeline/p", "status": "pending"},
    {"id": "promote:model/m@dev", "kind": "promote", "asset": "model/m", "stage": "dev", "status": "blocked"},
])
def test_a_forged_outstanding_action_is_not_planned(repo: Repo, forged: dict[str, str]) -> None:
    mlops(repo, "reconcile")
    path = repo.path / ".mlops/records/reconcile/state.json"
    state = json.loads(path.read_text())
    state["outstanding"].append(forged)
    path.write_text(json.dumps(state))

    out = mlops(repo, "plan", check=False)

    assert out.returncode == 0, out.stderr
    assert forged["id"] not in out.stdout and "No changes." in out.stdout  # dev holds m@1: nothing is outstanding


def test_a_run_record_without_the_models_output_fails_the_registration(repo: Repo) -> None:
    """Run records are store records: one that lacks the output a model names (a later, forged run)
    fails that action with the record's name, not an internal error."""
    mlops(repo, "reconcile")
    runs = repo.path / ".mlops/records/runs/p"
    data = json.loads(next(runs.glob("*.json")).read_text())
    data["run_id"] = "29991231T000000000000Z-ffffff"
    data["steps"][0]["outputs"] = {}
    (runs / f"{data['run_id']}.json").write_text(json.dumps(data))
    repo.edit("models/m.yaml", "flavor: custom", "flavor: custom\ntags: {team: a}")
    repo.commit("tag the model")  # registers again, from the latest run

    out = mlops(repo, "reconcile", check=False)

    assert out.returncode == 1, out.stderr
    assert "the record of run 29991231T000000000000Z-ffffff of pipeline p does not hold make.o" in out.stdout
    assert "internal error" not in out.stderr


@pytest.mark.parametrize("dataset", ["steps", "steps/make.py", "pipelines"])
def test_a_dataset_over_step_code_does_not_hide_edits_of_it(repo: Repo, tmp_path: Path, dataset: str) -> None:
    """Dataset paths are left out of the dirty check (their content is versioned by digest); one that
    holds step code or specs made edits of them invisible: unreviewed code ran from a pinned plan."""
    repo.write("datasets/d.yaml", f"kind: Dataset\nname: d\npath: {dataset}\n")
    repo.commit("a dataset")
    plan_file = tmp_path / "plan.json"
    mlops(repo, "plan", "--out", str(plan_file))
    edited = "pipelines/p.yaml" if dataset == "pipelines" else "steps/make.py"
    (repo.path / edited).write_text((repo.path / edited).read_text() + "\n# unreviewed\n")

    applied = mlops(repo, "apply", str(plan_file), check=False)
    reconciled = mlops(repo, "reconcile", check=False)

    for out in (applied, reconciled):
        assert out.returncode in (3, 9), (out.stdout, out.stderr)
        assert "internal error" not in out.stderr
    assert not (repo.path / "out").exists()  # nothing ran


def test_an_untracked_dataset_beside_step_code_is_still_not_dirty(repo: Repo) -> None:
    repo.write("datasets/d.yaml", "kind: Dataset\nname: d\npath: steps/data\n")
    repo.commit("a dataset")
    repo.write("steps/data/x.csv", "1,2\n")
    out = mlops(repo, "reconcile")
    assert "registered dataset d@1" in out.stdout


@pytest.mark.parametrize("output, message", [
    ("/".join(["d"] * 3000), "is too long"),  # valid YAML, an internal error (ENAMETOOLONG) at run time
    ("out/" + "x" * 300, "is too long"),
    ("out/a\\0b", "contains the control character '\\x00'"),  # ValueError: embedded null byte
    ("out/a\\nb", "contains the control character '\\n'"),  # forged lines in every listing
], ids=["deep", "long name", "NUL", "newline"])
def test_an_impossible_output_path_is_a_spec_error(repo: Repo, output: str, message: str) -> None:
    repo.write("pipelines/p.yaml", PIPELINE.replace("out/model.bin", f'"{output}"'))
    repo.commit("odd output")
    out = mlops(repo, "reconcile", check=False)
    assert out.returncode == 9, (out.stdout, out.stderr)
    assert "pipelines/p.yaml:7:10: $.steps[0].outputs.o: path " in out.stderr and message in out.stderr, out.stderr


@pytest.mark.parametrize("ignored, text", [
    ("models/extra.yaml", "kind: Model\nname: extra\nflavor: custom\nsource: {pipeline: p, artifact: make.o}\n"),
    ("steps/cfg.py", "VALUE = 1\n"),  # a module the step code imports
])
def test_an_ignored_file_that_reconcile_uses_is_uncommitted(repo: Repo, tmp_path: Path, ignored: str,
                                                            text: str) -> None:
    """An ignored spec was applied (and an ignored imported module ran, edited after planning) while the
    state recorded the clean commit, which has neither."""
    if ignored == "steps/cfg.py":
        repo.write("steps/make.py", "import cfg  # noqa: F401\n" + MAKE)
    repo.write(".gitignore", f".mlops/\nout/\n{ignored}\n")
    repo.commit("ignore a file")
    repo.write(ignored, text)

    out = mlops(repo, "reconcile", check=False)

    assert out.returncode == 9 and f"uncommitted changes ({ignored})" in out.stderr, out.stderr
    assert not (repo.path / "out").exists()
    mlops(repo, "reconcile", "--allow-dirty")  # applied as a snapshot that holds the file
    snapshot = repo.git("show", "--name-only", "--format=", "refs/mlops-local/applied")
    assert ignored in snapshot.splitlines()


DEEP = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError, which nothing caught


@pytest.mark.parametrize("where", ["plan file", "lock record", "broken-lock record", "model metrics file"])
def test_absurdly_deep_json_is_a_clear_error(repo: Repo, tmp_path: Path, where: str) -> None:
    command: tuple[str, ...] = ("reconcile",)
    if where == "plan file":
        (tmp_path / "plan.json").write_text('{"format": 2, "actions": ' + DEEP + "}")
        command = ("apply", str(tmp_path / "plan.json"))
    elif where == "lock record":
        repo.write(".mlops/records/locks/reconcile", DEEP)
    elif where == "broken-lock record":
        repo.write(".mlops/records/locks-broken/reconcile/0", DEEP)
        command = ("locks",)
    else:
        repo.write("models/files/w.bin", "weights")
        repo.write("models/files/metrics.json", DEEP)
        repo.write("models/m.yaml", "kind: Model\nname: m\nflavor: custom\n"
                                    "source: {files: [models/files/w.bin], metrics: models/files/metrics.json}\n")
        repo.commit("metrics")

    out = mlops(repo, *command, check=False)

    assert "internal error" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert out.returncode in {"plan file": (3,), "lock record": (8, 4), "broken-lock record": (4, 0),
                              "model metrics file": (1,)}[where], (out.returncode, out.stdout, out.stderr)


def _register_reg(actions: list[dict[str, Any]]) -> str:
    actions.insert(0, _action("register_model", "model/m"))  # skipped at apply: identical content is m@1 already
    return str(actions[0]["id"])


def _dev_gates(actions: list[dict[str, Any]]) -> str:
    actions.insert(0, _action("evaluate_gates", "model/m", stage="dev", version=None))  # skipped: m@1 holds dev
    return str(actions[0]["id"])


@pytest.mark.parametrize("stand_in", [_register_reg, _dev_gates], ids=["a skipped registration", "dev's gates"])
def test_a_promotion_whose_own_gates_were_dropped_from_the_plan_is_refused(repo: Repo, tmp_path: Path,
                                                                        stand_in: Callable[..., str]) -> None:
    from mlops.release.records import model_events, stage_holder
    from mlops.store.local import LocalStore

    repo.write("mlops.yaml", "kind: Project\nname: small\nstages:\n  - {name: dev}\n  - name: prod\n    gates:\n"
                             "      - {metric: accuracy, op: '>=', threshold: 0.9}\n")
    repo.commit("a gated prod stage")
    mlops(repo, "reconcile")  # m@1 enters dev
    repo.edit("models/m.yaml", "source:", "stages: {prod: 1}\nsource:")
    repo.commit("pin prod: its gate fails (m has no accuracy)")
    plan_file = tmp_path / "plan.json"
    mlops(repo, "plan", "--out", str(plan_file))
    data = json.loads(plan_file.read_text())
    actions = [a for a in data["actions"] if a["kind"] != "evaluate_gates"]  # drop prod's gates
    other = stand_in(actions)
    for a in actions:
        if a["kind"] == "promote":
            a["depends_on"] = [other]
    data["actions"] = actions
    plan_file.write_text(json.dumps(data))

    out = mlops(repo, "apply", str(plan_file), check=False)

    assert out.returncode == 3 and "make a new plan" in out.stderr, (out.stdout, out.stderr)
    assert stage_holder(model_events(LocalStore(repo.path / ".mlops"), "m"), "prod") is None


def test_a_promote_action_without_its_gates_result_moves_nothing() -> None:
    """The executor itself takes a version into a stage only from that stage's own gate evaluation."""
    from types import SimpleNamespace

    from mlops.apply.executors.release import promote
    from mlops.apply.protocol import ActionResult
    from mlops.plan.model import Action
    from mlops.store.memory import MemoryStore

    skipped = ActionResult("register_model:model/m", "skipped", "identical content is already m@1", {"version": 1})
    action = Action("promote:model/m@prod", "promote", "model/m", "changed", "r", {"stage": "prod", "version": 1},
                    ("register_model:model/m",))
    ctx = SimpleNamespace(results={"register_model:model/m": skipped}, store=MemoryStore())
    assert promote(action, ctx).status == "blocked"  # type: ignore[arg-type]
    other = ActionResult("evaluate_gates:model/m@prod", "succeeded", "passed", {"version": 2})
    action = Action("promote:model/m@prod", "promote", "model/m", "changed", "r", {"stage": "prod", "version": 1},
                    ("evaluate_gates:model/m@prod",))
    ctx = SimpleNamespace(results={"evaluate_gates:model/m@prod": other}, store=MemoryStore())
    assert promote(action, ctx).status == "blocked"  # type: ignore[arg-type]
