"""The journal survives a write cut short: the other slot still names a completed mini-batch."""

from __future__ import annotations

import os
from pathlib import Path

from mlops.batch.journal import NAME, SLOT, Journal, JournalFile, read


def test_the_newest_valid_slot_wins_and_a_torn_one_is_ignored(tmp_path: Path) -> None:
    with JournalFile(tmp_path) as jf:
        assert jf.load() is None
        j = Journal("id", position=10)
        for rows in (100, 200, 300):
            j.rows = rows
            jf.save(j)
        assert jf.load() == j and j.seq == 3
    # the newest slot (seq 3, slot 1) torn halfway through its write
    fd = os.open(tmp_path / NAME, os.O_RDWR)
    try:
        os.pwrite(fd, b"\0" * (SLOT // 2), SLOT + 20)
    finally:
        os.close(fd)
    older = read(tmp_path)
    assert older is not None and (older.rows, older.seq) == (200, 2)


def test_a_damaged_or_foreign_journal_is_no_journal(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b'{"format": 1, "rows": 5}\nnot-a-checksum\n')
    assert read(tmp_path) is None
    assert read(tmp_path / "missing") is None
