"""Records are fetched together and loaded with one ``git cat-file --batch``: an origin holding many large
records (anyone who may push there) filled the process's memory with all of them. At most
EAGER_RECORD_BYTES are loaded at once, small records first; the others are read when asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.store import git as gitstore
from mlops.store.git import GitStore
from tests.store.conftest import git_clone
from tests.store.test_git import fresh


def test_records_beyond_the_budget_are_read_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = GitStore(git_clone(tmp_path))
    big = {f"hostile/{i}": bytes([65 + i]) * 3000 for i in range(10)}
    for key, data in big.items():
        assert writer.create_record(key, data)
    assert writer.create_record("small/one", b"{}")
    monkeypatch.setattr(gitstore, "EAGER_RECORD_BYTES", 10_000)
    reader = GitStore(fresh(tmp_path, "reader"))
    assert reader.read_record("small/one") == b"{}"
    held = reader._m.contents
    assert sum(len(v) for v in held.values()) <= 10_000 and b"{}" in held.values()
    for key, data in big.items():  # each still readable, and nothing more kept
        assert reader.read_record(key) == data
    assert sum(len(v) for v in reader._m.contents.values()) <= 10_000
