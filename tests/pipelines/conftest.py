"""Fixtures: a demo git repository (see ``demo_repo``) and a LocalStore inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.store.local import LocalStore
from tests.pipelines.demo_repo import make_demo_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_demo_repo(tmp_path / "repo")


@pytest.fixture
def store(repo: Path) -> LocalStore:
    return LocalStore(repo / ".mlops")
