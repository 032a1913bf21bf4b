"""Fixtures for the event tests: a project with given sinks, a real local store, a real HTTP stub."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlops.events.emit import Report, emit, flush
from mlops.events.sinks import Limits
from mlops.spec.model import Project, Stage, StoreConfig
from mlops.store.local import LocalStore
from tests.httpstub import Stub

# Small limits: tests never wait long, and assert nothing about time beyond "it finishes".
FAST = Limits(attempts=10, total_wait=5.0, timeout=2.0, retries=3, backoff=0.01)


@dataclass
class World:
    root: Path
    store: LocalStore
    notifications: list[dict[str, Any]]
    env: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    limits: Limits = FAST

    @property
    def project(self) -> Project:
        return Project(name="demo", stages=(Stage(name="dev"),), store=StoreConfig(),
                       notifications=tuple(self.notifications))

    def emit(self, name: str = "model.promoted", subject: str = "model/wine-classifier@3",
             data: dict[str, Any] | None = None, **kw: Any) -> Report:
        return emit(self.project, self.store, self.root, name, subject,
                    {"model": "wine-classifier", "version": 3} if data is None else data,
                    limits=kw.pop("limits", self.limits), environ=self.env, warn=self.warnings.append, **kw)

    def flush(self, **kw: Any) -> Report:
        return flush(self.project, self.store, self.root, limits=kw.pop("limits", self.limits), environ=self.env,
                     warn=self.warnings.append, **kw)

    def records(self, prefix: str) -> list[str]:
        return list(self.store.list_records(prefix))

    def log_lines(self, rel: str = ".mlops/events.jsonl") -> list[str]:
        p = self.root / rel
        return p.read_text().splitlines() if p.exists() else []


@pytest.fixture
def stub() -> Iterator[Stub]:
    with Stub() as s:
        yield s


@pytest.fixture
def world(tmp_path: Path) -> World:
    root = tmp_path / "repo"
    root.mkdir()
    return World(root, LocalStore(root / ".mlops"), [])
