"""Fixtures of the environment tests: a repository root and pip kept offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip may use neither an index nor this machine's pip configuration: installs must be local."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty repository root."""
    root = tmp_path / "repo"
    root.mkdir()
    return root
