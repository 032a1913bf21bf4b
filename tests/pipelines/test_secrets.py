"""Steps get an allow-list of the host environment plus declared secrets, whose values mlops masks everywhere."""

from __future__ import annotations

import hashlib
import json
import secrets as random
from pathlib import Path

import pytest

from mlops.pipelines.process import HOST_ALLOWED
from mlops.store.local import LocalStore
from tests.gitrepo import Repo, init_repo, mlops

PIPELINE = """\
kind: Pipeline
name: secretive
secrets: [HF_TOKEN]
steps:
  - name: check
    command: [python, pipelines/secretive/check.py, "${outputs.report}"]
    outputs: {report: out/report.json}
  - name: leak
    command: [python, pipelines/secretive/leak.py]
    secrets: [LEAK_TOKEN]
"""

CHECK = """\
import hashlib, json, os, sys
token = os.environ["HF_TOKEN"]
print(f"the token is {token}; aws is {os.environ.get('AWS_SECRET_ACCESS_KEY')}")
json.dump({"hf_sha256": hashlib.sha256(token.encode()).hexdigest(), "env": sorted(os.environ)}, open(sys.argv[1], "w"))
"""

LEAK = """\
import os, sys
print(f"failing with {os.environ['LEAK_TOKEN']} and {os.environ['HF_TOKEN']}", file=sys.stderr)
sys.exit(3)
"""


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: p\nstages:\n  - name: dev\n")
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.write("pipelines/secretive.yaml", PIPELINE)
    repo.write("pipelines/secretive/check.py", CHECK)
    repo.write("pipelines/secretive/leak.py", LEAK)
    repo.commit("specs")
    return repo


def _values() -> dict[str, str]:
    return {"HF_TOKEN": "hf_" + random.token_hex(12), "LEAK_TOKEN": "lk_" + random.token_hex(12),
            "AWS_SECRET_ACCESS_KEY": "aws_" + random.token_hex(16)}


def test_declared_secret_reaches_the_step_masked_everywhere(repo: Repo, tmp_path: Path) -> None:
    values = _values()
    summary = tmp_path / "summary.md"
    env = {**values, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTOR": "tester",
           "GITHUB_RUN_ID": "1"}
    out = mlops(repo, "reconcile", check=False, env=env)
    assert out.returncode == 1, out.stdout + out.stderr  # the leak step fails, on purpose

    # The step had the declared secret, not the host's undeclared one, nor another step's secret.
    report = json.loads((repo.path / "out/report.json").read_text())
    assert report["hf_sha256"] == hashlib.sha256(values["HF_TOKEN"].encode()).hexdigest()
    names = set(report["env"])
    assert "AWS_SECRET_ACCESS_KEY" not in names and "LEAK_TOKEN" not in names and "GITHUB_TOKEN" not in names
    assert names - HOST_ALLOWED - {"HF_TOKEN", "PYTHONPATH"} <= {n for n in names if n.startswith(("MLOPS_", "LC_"))}

    # ::add-mask:: comes before anything that could carry the values; after that, only ***.
    lines = out.stdout.splitlines()
    masks = [i for i, line in enumerate(lines) if line.startswith("::add-mask::")]
    assert sorted(lines[i] for i in masks) == sorted(f"::add-mask::{values[n]}" for n in ("HF_TOKEN", "LEAK_TOKEN"))
    rest = "\n".join(line for i, line in enumerate(lines) if i not in masks) + out.stderr
    starred = [i for i, ln in enumerate(lines) if "***" in ln]
    assert "failing with *** and ***" in rest and (not starred or max(masks) < min(starred))
    assert not any(v in rest for v in values.values())

    text = summary.read_text()
    assert "failing with *** and ***" in text and not any(v in text for v in values.values())

    runs = mlops(repo, "runs", "--output", "json", env=values).stdout
    [record] = json.loads(runs)
    assert not any(v in runs for v in values.values())
    steps = {s["name"]: s for s in record["steps"]}
    assert "failing with *** and ***" in steps["leak"]["error"]
    store = LocalStore(repo.path / ".mlops")
    assert store.get_bytes(steps["check"]["stdout"]) == b"the token is ***; aws is None\n"
    assert store.get_bytes(steps["leak"]["stderr"]) == b"failing with *** and ***\n"
    for key in store.list_records(""):
        raw = store.read_record(key) or b""
        assert not any(v.encode() in raw for v in values.values()), key


def test_secret_names_are_in_the_cache_key_values_are_not(repo: Repo) -> None:
    first = mlops(repo, "run", "secretive", "--output", "json", check=False, env=_values())
    assert first.returncode == 1  # leak fails
    assert json.loads(first.stdout)["steps"][0]["status"] == "ran"
    other = _values()
    again = mlops(repo, "run", "secretive", "--output", "json", check=False, env=other)
    assert json.loads(again.stdout)["steps"][0]["status"] == "cached"  # a new value of the same secret
    assert "failing with *** and ***" in again.stderr and not any(v in again.stdout + again.stderr
                                                                  for v in other.values())
    repo.edit("pipelines/secretive.yaml", "outputs: {report: out/report.json}",
              "outputs: {report: out/report.json}\n    secrets: [EXTRA_TOKEN]")
    renamed = mlops(repo, "run", "secretive", "--output", "json", check=False,
                    env={**other, "EXTRA_TOKEN": "extra-value"})
    assert json.loads(renamed.stdout)["steps"][0]["status"] == "ran"  # a new secret name reruns


def test_missing_secret_is_a_clear_step_failure(repo: Repo) -> None:
    out = mlops(repo, "run", "secretive", check=False, env={"LEAK_TOKEN": "lk-value"})
    assert out.returncode == 1
    assert ("step 'check' of pipeline 'secretive' failed: pipelines/secretive.yaml: pipeline 'secretive' step "
            "'check' secrets: HF_TOKEN is not set in the environment mlops runs in") in out.stderr
    assert "upstream" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("edit", "message"), [
    ("command: [python, pipelines/secretive/leak.py]",
     "$.steps[1].env.LEAK_TOKEN: LEAK_TOKEN is declared a secret of the step: its value comes from the host "
     "environment at run time, never from the spec"),
    ("secrets: [HF_TOKEN]", "$.secrets[0]: secret 'MLOPS_TOKEN': MLOPS_* variables are set by mlops itself"),
    ("secrets: [LEAK_TOKEN]", "$.steps[1].secrets[0]"),
])
def test_secret_declarations_are_validated(repo: Repo, edit: str, message: str) -> None:
    replacement = {
        "command: [python, pipelines/secretive/leak.py]":
            "command: [python, pipelines/secretive/leak.py]\n    env: {LEAK_TOKEN: in-the-spec}",
        "secrets: [HF_TOKEN]": "secrets: [MLOPS_TOKEN]",
        "secrets: [LEAK_TOKEN]": "secrets: [1-BAD]",
    }[edit]
    repo.edit("pipelines/secretive.yaml", edit, replacement)
    out = mlops(repo, "validate", check=False)
    assert out.returncode == 9
    assert "pipelines/secretive.yaml:" in out.stderr and message in out.stderr, out.stderr


def test_run_records_are_masked_when_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops import secrets
    from mlops.pipelines.record import RunRecord, StepRecord, list_runs, save_run
    from mlops.store.memory import MemoryStore

    masker = secrets.Masker()
    masker.add("token-in-an-exception")
    monkeypatch.setattr(secrets, "MASKER", masker)
    store = MemoryStore()
    save_run(store, RunRecord("r1", "p", "failed", "s", "f", steps=(
        StepRecord("a", "failed", error="RuntimeError: bad token-in-an-exception"), StepRecord("b", "ran"))))
    [record] = list_runs(store)
    assert [s.error for s in record.steps] == ["RuntimeError: bad ***", None]


def test_the_cli_masks_host_secrets_in_what_it_prints(repo: Repo) -> None:
    value = "ghs_" + random.token_hex(18)
    out = mlops(repo, "run", value, check=False, env={"GITHUB_TOKEN": value})
    assert out.returncode == 7 and "error: unknown pipeline '***'" in out.stderr and value not in out.stderr


def test_metrics_holding_a_secret_are_masked_in_every_record(tmp_path: Path) -> None:
    """Metrics are copied from a file the step writes into the run record, the cache entry and the model
    version: records that are promised masked. (The file itself is the step's data and is kept as is.)"""
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: p\nstages: [{name: dev}]\n")
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.write("pipelines/m.yaml", "kind: Pipeline\nname: m\nsecrets: [HF_TOKEN]\nsteps:\n  - name: train\n"
                                   "    command: [python, steps/train.py, \"${outputs.metrics}\"]\n"
                                   "    outputs: {metrics: out/metrics.json}\n    metrics: metrics\n")
    repo.write("models/m.yaml", "kind: Model\nname: m\nflavor: custom\n"
                                "source: {pipeline: m, artifact: train.metrics, metrics: train.metrics}\n")
    repo.write("steps/train.py", "import json, os, sys\nt = os.environ['HF_TOKEN']\n"
                                 "json.dump({'acc': 0.5, 'note': 'token ' + t, t: [t]}, open(sys.argv[1], 'w'))\n")
    repo.commit("specs")
    value = _values()["HF_TOKEN"]

    mlops(repo, "reconcile", env={"HF_TOKEN": value})

    records = [p for p in (repo.path / ".mlops").rglob("*.json") if p.is_file()]
    assert any("versions" in p.parts for p in records) and any("runs" in p.parts for p in records)
    assert [p for p in records if value in p.read_text()] == []
    shown = mlops(repo, "models", "show", "m@1", "--output", "json").stdout
    assert json.loads(shown)["metrics"] == {"acc": 0.5, "note": "token ***", "***": ["***"]}
