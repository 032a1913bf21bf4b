"""`mlops monitor`'s notes and warnings may quote capture files' column names (pyarrow's messages do): they are
printed as one printable line, like the feature names in the summary, so a name cannot drive the terminal or
forge lines."""

from __future__ import annotations

import pytest

from mlops.cli.monitor_cmds import _print
from mlops.monitoring.monitor import Outcome


def test_notes_are_one_printable_line(capsys: pytest.CaptureFixture[str]) -> None:
    _print(Outcome("wine", warnings=["captures do not fit (Field \x1b[2J\x1b]8;;http://x\x07 has\nALERT forged)"]))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert [line for line in out.splitlines() if "ALERT" in line] == [line for line in out.splitlines()
                                                                       if line.startswith("  note:")]
