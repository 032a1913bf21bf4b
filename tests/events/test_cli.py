"""`mlops events list` and `mlops events flush` in real subprocesses, on a copy of the example project."""

from __future__ import annotations

import json
from pathlib import Path

from mlops.events.emit import emit
from mlops.events.sinks import Limits
from mlops.spec.loader import load_project
from mlops.store.local import LocalStore
from tests.gitrepo import Repo, example_repo, mlops
from tests.httpstub import Reply, Stub

SECRET = "cli-webhook-secret-0123"


def with_webhook(repo: Repo, url: str) -> None:
    repo.edit("mlops.yaml", "  - {type: log, path: .mlops/events.jsonl}",
              "  - {type: log, path: .mlops/events.jsonl}\n"
              f"  - {{type: webhook, url: {url}, secret_env: HOOK_SECRET, events: [\"model.*\"]}}")


def emit_in(repo: Repo, name: str, subject: str, env: dict[str, str]) -> None:
    project = load_project(repo.path)
    emit(project, LocalStore(repo.path / ".mlops"), repo.path, name, subject, {"n": 1},
         limits=Limits(total_wait=2, retries=0, backoff=0.01), environ=env, warn=lambda _m: None)


def test_flush_delivers_what_a_failing_run_kept_and_says_so(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    with Stub() as stub:
        with_webhook(repo, stub.url + "/hook")
        stub.default = lambda _r: Reply(503)
        emit_in(repo, "model.registered", "model/wine-classifier@1", {"HOOK_SECRET": SECRET})
        emit_in(repo, "model.promoted", "model/wine-classifier@1", {"HOOK_SECRET": SECRET})

        out = mlops(repo, "events", "flush", "--max-wait", "1", check=False, env={"HOOK_SECRET": SECRET})
        assert out.returncode == 1, out.stderr
        assert "kept" in out.stdout and "warning:" in out.stderr and "answered 503" in out.stderr

        stub.default = lambda _r: Reply(200)
        stub.requests.clear()
        out = mlops(repo, "events", "flush", "--output", "json", env={"HOOK_SECRET": SECRET})
        report = json.loads(out.stdout)
        assert report["counts"] == {"delivered": 2, "kept": 0, "dead": 0, "lost": 0}
        assert [o["name"] for o in report["outcomes"]] == ["model.registered", "model.promoted"]
        assert [r.headers["x-mlops-event"] for r in stub.requests] == ["dev.mlops.model.registered",
                                                                      "dev.mlops.model.promoted"]
        out = mlops(repo, "events", "flush", env={"HOOK_SECRET": SECRET})
        assert "nothing waits" in out.stdout


def test_list_shows_the_tail_of_the_log(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    out = mlops(repo, "events", "list")
    assert "no events in .mlops/events.jsonl" in out.stdout
    for i in range(5):
        emit_in(repo, "model.registered", f"model/wine-classifier@{i}", {})
    out = mlops(repo, "events", "list", "-n", "2")
    rows = out.stdout.splitlines()
    assert len(rows) == 2 and "model/wine-classifier@3" in rows[0] and "model/wine-classifier@4" in rows[1]
    assert "model.registered" in rows[0]
    data = json.loads(mlops(repo, "events", "list", "--output", "json").stdout)
    assert data["lines"] == 5 and [e["subject"] for e in data["events"]][-1] == "model/wine-classifier@4"


def test_a_damaged_log_line_is_a_warning_and_exit_4(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    emit_in(repo, "model.registered", "model/wine-classifier@1", {})
    with open(repo.path / ".mlops/events.jsonl", "a") as f:
        f.write('{"half": \n')
    out = mlops(repo, "events", "list", check=False)
    assert out.returncode == 4
    assert "model/wine-classifier@1" in out.stdout
    assert "warning: .mlops/events.jsonl: line 2 is not an mlops event" in out.stderr
    assert "Traceback" not in out.stderr


def test_events_is_listed_in_help(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    out = mlops(repo, "--help")
    assert "events" in out.stdout
    out = mlops(repo, "events", "--help")
    assert "flush" in out.stdout and "list" in out.stdout
