"""The local append-only log: where it is, that it stays inside the repository, that concurrent
writers never mix their lines, that secrets are masked, and how it is read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlops.events.log import tail
from mlops.secrets import MASKER
from tests.events.conftest import World

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_log_gets_every_event_one_json_object_per_line(world: World) -> None:
    ids = [world.emit("pipeline.completed", "pipeline/wine-train", {"run": "r1"}).event.id,  # type: ignore[union-attr]
           world.emit("model.registered", "model/wine-classifier@1").event.id]  # type: ignore[union-attr]
    lines = [json.loads(x) for x in world.log_lines()]
    assert [e["id"] for e in lines] == ids
    assert lines[0]["type"] == "dev.mlops.pipeline.completed" and lines[0]["data"] == {"run": "r1"}
    assert lines[0]["source"] == "mlops://demo" and lines[0]["specversion"] == "1.0"


def test_configured_log_sinks_replace_the_default_and_honour_filters(world: World) -> None:
    world.notifications = [{"type": "log", "path": "logs/all.jsonl"},
                           {"type": "log", "path": "logs/models.jsonl", "events": ["model.*"]}]
    world.emit("pipeline.failed", "pipeline/wine-train")
    world.emit("model.promoted")
    assert len(world.log_lines("logs/all.jsonl")) == 2
    assert [json.loads(x)["type"] for x in world.log_lines("logs/models.jsonl")] == ["dev.mlops.model.promoted"]
    assert not (world.root / ".mlops/events.jsonl").exists()


def test_secrets_are_masked_in_the_log_the_outbox_and_what_is_sent(world: World) -> None:
    secret = "hunter2-very-secret-value"
    MASKER.add(secret)
    world.notifications = [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]  # refused: kept in the outbox
    report = world.emit("pipeline.failed", "pipeline/wine-train", {"error": f"login failed for {secret}",
                                                                  "nested": {"url": f"https://u:{secret}@host"}})
    assert report.event is not None and secret not in json.dumps(report.event.to_dict())
    text = (world.root / ".mlops/events.jsonl").read_text()
    assert secret not in text and "login failed for ***" in text
    keys = list(world.store.list_records("events/outbox/"))
    assert keys and all(secret.encode() not in (world.store.read_record(k) or b"") for k in keys)


def test_a_log_path_that_leads_out_of_the_repository_is_refused(world: World, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (world.root / "logs").symlink_to(outside)
    world.notifications = [{"type": "log", "path": "logs/events.jsonl"}]
    report = world.emit()
    assert report.count("dead") == 1
    assert list(outside.iterdir()) == []
    assert any("logs" in w and "symbolic link" in w for w in world.warnings), world.warnings


def test_a_log_that_is_a_link_is_not_written_through(world: World, tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("precious\n")
    (world.root / ".mlops").mkdir(exist_ok=True)
    (world.root / ".mlops/events.jsonl").symlink_to(target)
    world.emit()
    assert target.read_text() == "precious\n"
    assert any("symbolic link" in w for w in world.warnings), world.warnings


def test_a_log_path_into_git_is_refused(world: World) -> None:
    world.notifications = [{"type": "log", "path": ".git/hooks/post-commit"}]
    world.emit()
    assert not (world.root / ".git").exists()
    assert any(".git" in w for w in world.warnings)


WRITER = """
import sys
from pathlib import Path
from mlops.events.emit import emit
from mlops.events.sinks import Limits
from mlops.spec.model import Project, Stage, StoreConfig
from mlops.store.local import LocalStore
root = Path(sys.argv[1])
project = Project(name="demo", stages=(Stage(name="dev"),), store=StoreConfig())
for i in range(int(sys.argv[2])):
    emit(project, LocalStore(root / ".mlops"), root, "pipeline.completed", "pipeline/p",
         {"writer": sys.argv[3], "i": i, "pad": "x" * 3000}, limits=Limits(total_wait=1))
"""


def test_concurrent_writers_never_mix_their_lines(world: World) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tooling")}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(world.root), "60", str(w)], env=env)
             for w in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    events = [json.loads(line) for line in world.log_lines()]
    assert len(events) == 180
    for w in range(3):
        assert [e["data"]["i"] for e in events if e["data"]["writer"] == str(w)] == list(range(60))


def test_tail_reads_the_last_lines_and_reports_bad_ones_by_number(world: World) -> None:
    for i in range(30):
        world.emit("model.registered", f"model/m@{i}")
    log = world.root / ".mlops/events.jsonl"
    with open(log, "a") as f:
        f.write("not json\n")
    world.emit("model.registered", "model/m@30")
    lines, total = tail(world.root, ".mlops/events.jsonl", 3)
    assert total == 32
    assert [ln.number for ln in lines] == [30, 31, 32]
    assert lines[0].event is not None and lines[0].event.subject == "model/m@29"
    assert lines[1].event is None and lines[1].problem is not None and "line 31" in lines[1].problem
    assert lines[2].event is not None and lines[2].event.subject == "model/m@30"
    assert tail(world.root, "missing.jsonl", 5) == ([], 0)
    everything, _ = tail(world.root, ".mlops/events.jsonl", 1000)
    assert len(everything) == 32
