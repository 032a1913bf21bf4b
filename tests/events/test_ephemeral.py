"""Undelivered events outlive the CI runner that emitted them: with records as git refs on origin,
a fresh clone (the next runner) delivers what the first one kept."""

from __future__ import annotations

from pathlib import Path

from mlops.events.emit import emit, flush
from mlops.registry.composite import CompositeStore
from mlops.registry.gitrefs import GitRefRecords
from mlops.spec.model import Project, Stage, StoreConfig
from mlops.store.local import LocalStore
from tests.events.conftest import FAST
from tests.httpstub import Reply, Stub
from tests.registry.conftest import git, make_repo


def runner(origin: Path, dest: Path) -> tuple[Path, CompositeStore]:
    git(origin.parent, "clone", "-q", str(origin), str(dest))
    return dest, CompositeStore(LocalStore(dest / ".mlops"), GitRefRecords(dest, refresh_seconds=0))


def test_the_next_runner_delivers_what_the_last_one_kept(tmp_path: Path) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(make_repo(tmp_path / "seed")), str(bare))
    with Stub() as stub:
        project = Project(name="demo", stages=(Stage(name="dev"),), store=StoreConfig(),
                          notifications=({"type": "webhook", "url": stub.url + "/hook"},))
        stub.default = lambda _r: Reply(503)
        root, store = runner(bare, tmp_path / "run1")
        warnings: list[str] = []
        first = emit(project, store, root, "model.promoted", "model/m@1", {}, limits=FAST, warn=warnings.append)
        assert first.count("kept") == 1 and first.event is not None
        # run1's machine is gone; run2 starts from a fresh clone.
        stub.default = lambda _r: Reply(200)
        stub.requests.clear()
        root, store = runner(bare, tmp_path / "run2")
        report = flush(project, store, root, limits=FAST, warn=warnings.append)
        assert report.count("delivered") == 1
        assert [r.headers["ce-id"] for r in stub.requests] == [first.event.id]
        assert git(bare, "for-each-ref", "refs/mlops/records/events/").strip() == ""  # nothing left behind
