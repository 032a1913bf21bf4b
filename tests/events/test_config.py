"""`notifications` in mlops.yaml: what validation refuses, with the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gitrepo import example_repo, mlops

LOG = "  - {type: log, path: .mlops/events.jsonl}"


@pytest.mark.parametrize(("entry", "message"), [
    ("{type: log, path: ../events.jsonl}", "escapes the repository"),
    ("{type: log, path: .git/events.jsonl}", "inside .git/"),
    ("{type: log, path: models/events.jsonl}", "among the spec files"),
    ("{type: log, path: .mlops/records/events.jsonl}", "inside the artifact store"),
    ("{type: log, path: mlops.yaml}", "among the spec files"),
    ("{type: webhook, secret_env: S}", "required field 'url' is missing"),
    ("{type: webhook, url: 'file:///etc/passwd'}", "does not match"),
    ("{type: webhook, url: 'https://user:pw@hooks.example.com/x'}", "does not match"),
    ("{type: webhook, url: 'https://hooks.example.com/x', secret_env: 'A-B'}", "does not match"),
    ("{type: github, mode: issue, repository: not-a-repo}", "does not match"),
    ("{type: github, mode: pigeon}", "is not one of"),
    ("{type: webhook, url: 'https://hooks.example.com/x', timeout: 0}", "less than or equal to the minimum"),
])
def test_bad_entries_are_refused_where_they_are(tmp_path: Path, entry: str, message: str) -> None:
    repo = example_repo(tmp_path / "repo")
    repo.edit("mlops.yaml", LOG, f"{LOG}\n  - {entry}")
    out = mlops(repo, "validate", check=False)
    assert out.returncode == 9, out.stdout + out.stderr
    assert "mlops.yaml:" in out.stderr and "$.notifications[1]" in out.stderr, out.stderr
    assert message in out.stderr, out.stderr


def test_a_tracked_file_is_not_an_event_log(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    repo.write("notes.txt", "mine\n")
    repo.edit("mlops.yaml", LOG, "  - {type: log, path: notes.txt}")
    repo.commit("notes")
    out = mlops(repo, "validate", check=False)
    assert out.returncode == 9 and "is a tracked file" in out.stderr, out.stderr


def test_every_sink_kind_validates(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    repo.edit("mlops.yaml", LOG, f"""{LOG}
  - {{type: log, path: logs/models.jsonl, events: ["model.*"]}}
  - {{type: webhook, url: "https://hooks.example.com/mlops", secret_env: MLOPS_WEBHOOK_SECRET, timeout: 3,
     events: ["model.*", "deployment.*"]}}
  - {{type: github, mode: issue, labels: [mlops], events: ["gate.failed", "approval.requested"]}}
  - {{type: github, mode: dispatch, repository: octo/wine, events: ["drift.detected"]}}""")
    mlops(repo, "validate")
