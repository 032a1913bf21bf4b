"""Helpers the spec tests share: every diagnostic of a repository, and the line a text is on."""

from __future__ import annotations

import pytest

from mlops.errors import SpecError
from mlops.spec.loader import load_specs
from tests.gitrepo import Repo


def errors_of(repo: Repo) -> list[str]:
    """Every problem `load_specs` finds in the working tree, as `file:line:col: path: message` lines."""
    with pytest.raises(SpecError) as e:
        load_specs(repo.path)
    return [str(d) for d in e.value.diagnostics]


def line_of(repo: Repo, rel: str, text: str) -> int:
    """The 1-based number of the first line of ``rel`` that contains ``text``."""
    return next(i for i, t in enumerate((repo.path / rel).read_text().splitlines(), 1) if text in t)
