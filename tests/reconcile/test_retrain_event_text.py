"""`mlops github retrain` prints why it retrains, taken from the dispatch payload (untrusted: anyone whose
token may dispatch writes it). On a GitHub runner a printed line that starts with ``::`` is a workflow
command, so the reason is one printable, bounded line before it reaches the log, not only the lineage."""

from __future__ import annotations

import json
from pathlib import Path

from tests.gitrepo import Repo, mlops
from tests.reconcile.test_retrain import repo  # noqa: F401 - the fixture


def test_a_dispatch_reason_cannot_print_workflow_commands_or_escapes(repo: Repo, tmp_path: Path) -> None:  # noqa: F811
    event = tmp_path / "event.json"
    hostile = "drift.detected\n::error title=pwned::x\r\n::stop-commands::abc\x1b[31m" + "A" * 100_000
    event.write_text(json.dumps({"action": "retrain", "client_payload": {
        "pipeline": "count", "event": {"type": hostile, "subject": "model/counter\n::warning::y", "id": "1\n::z"}}}))
    out = mlops(repo, "github", "retrain", env={"GITHUB_EVENT_NAME": "repository_dispatch",
                                                "GITHUB_EVENT_PATH": str(event), "GITHUB_OUTPUT": str(tmp_path / "o")})
    for line in (out.stdout + out.stderr).splitlines():
        assert not line.lstrip().startswith("::"), line
    assert "\x1b" not in out.stdout and "\r" not in out.stdout
    said = next(line for line in out.stdout.splitlines() if line.startswith("retraining pipeline count"))
    assert len(said) < 1000, len(said)


def test_a_plan_files_retrain_trigger_is_recorded_as_one_printable_line(repo: Repo, tmp_path: Path) -> None:  # noqa: F811
    mlops(repo, "reconcile")
    plan = tmp_path / "plan.json"
    mlops(repo, "plan", "--retrain", "counter", "--out", str(plan))
    doc = json.loads(plan.read_text())
    for action in doc["actions"]:
        if "trigger" in action.get("details", {}):
            action["details"]["trigger"] = "drift\n\x1b[2J\x1b[31mred\u202ehidden" + "x" * 1000
    plan.write_text(json.dumps(doc))
    (repo.path / "data/raw.csv").write_text("a,b\n1,2\n3,4\n5,6\n")  # a new version to register
    mlops(repo, "apply", str(plan))
    trigger = json.loads(mlops(repo, "models", "show", "counter", "--output", "json").stdout)["lineage"]["trigger"]
    assert trigger.startswith("retrain: drift ") and trigger.isprintable() and len(trigger) <= 220, trigger
