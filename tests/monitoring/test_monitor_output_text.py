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


def test_a_data_files_parse_error_is_one_printable_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mlops.errors import MonitorError
    from mlops.monitoring.columns import read_table

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2\n\x1b[2J\x1b[31m,3,4,5\n")
    with pytest.raises(MonitorError) as caught:
        read_table(bad)
    assert str(caught.value).isprintable() and "bad.csv" in str(caught.value), str(caught.value)
