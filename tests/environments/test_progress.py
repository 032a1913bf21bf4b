"""What a build shows while pip works: plain lines in logs, one rewritten status line on a terminal,
nothing at all for a caller that passes no echo (``--output json``)."""

from __future__ import annotations

import threading

from mlops.environments.progress import BuildProgress

PIP = [
    "Processing ./wheels/tinypkg-0.1-py3-none-any.whl",
    "Requirement already satisfied: numpy>=1.24 in /usr/lib/python3/dist-packages (from x) (2.0)",
    "Requirement already satisfied: scipy in /usr/lib/python3/dist-packages (from x) (1.1)",
    "Collecting onnx>=1.15",
    "  Downloading onnx-1.16.0-cp311-cp311-manylinux_2_17_x86_64.whl (15.9 MB)",
    "Installing collected packages: tinypkg, onnx",
    "Successfully installed onnx-1.16.0 tinypkg-0.1",
]
UP_CLEAR = "\x1b[1A\x1b[2K"


def feed(progress: BuildProgress) -> None:
    progress.phase("creating a virtualenv with /usr/bin/python3")
    progress.phase("installing requirements with pip")
    for line in PIP:
        progress.pip_line(line)


def test_plain_lines_name_what_pip_does_and_a_summary_ends() -> None:
    lines: list[str] = []
    progress = BuildProgress("sklearn", lines.append, tty=False)
    feed(progress)
    progress.done()
    assert lines[:-1] == [
        "  sklearn: creating a virtualenv with /usr/bin/python3",
        "  sklearn: installing requirements with pip",
        "    pip: Collecting onnx>=1.15",
        "    pip: Downloading onnx-1.16.0-cp311-cp311-manylinux_2_17_x86_64.whl (15.9 MB)",
        "    pip: Installing collected packages: tinypkg, onnx",
        "    pip: Successfully installed onnx-1.16.0 tinypkg-0.1",
    ]
    assert lines[-1].startswith("  sklearn: built in ") and lines[-1].endswith(
        " s (pip: 2 installed, 2 already satisfied)")


def test_on_a_terminal_one_status_line_is_rewritten_in_place() -> None:
    lines: list[str] = []
    progress = BuildProgress("sklearn", lines.append, tty=True)
    feed(progress)
    progress.done()
    assert not lines[0].startswith(UP_CLEAR)  # the first status line is new...
    assert all(line.startswith(UP_CLEAR) for line in lines[1:])  # ...every later one replaces it
    assert lines[3].startswith(UP_CLEAR + "  sklearn: installing requirements with pip · Requirement already "
                                          "satisfied: numpy")
    assert all(line.endswith(" s)") for line in lines[:-1])  # with the time elapsed
    assert "\n" not in "".join(lines)
    assert lines[-1].startswith(UP_CLEAR + "  sklearn: built in ")


def test_a_failed_build_takes_its_status_line_away_and_says_nothing() -> None:
    lines: list[str] = []
    progress = BuildProgress("sklearn", lines.append, tty=True)
    feed(progress)
    progress.done(None)
    assert lines[-1] == UP_CLEAR + "\x1b[1A"  # erased; the caller's error takes its place
    plain: list[str] = []
    BuildProgress("sklearn", plain.append, tty=False).done(None)
    assert plain == []


def test_no_echo_is_silence() -> None:
    threads = threading.active_count()
    progress = BuildProgress("sklearn", None, tty=True)
    feed(progress)
    progress.done()  # nothing could be written, and nothing ticks
    assert threading.active_count() == threads
