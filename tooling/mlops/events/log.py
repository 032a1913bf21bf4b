"""The local append-only event log: one CloudEvent per line (JSON Lines), never rewritten.

Written with one ``O_APPEND`` write per event, so two processes emitting at once never mix their
lines; the path stays inside the repository and no link on the way is followed (``mlops.paths``).
Read back by ``mlops events list``: the log is a plain file anyone can edit, so each line is
checked, and a bad one is reported by its line number instead of failing the listing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mlops import paths
from mlops.errors import DeliveryError, PathError
from mlops.events.cloudevent import CloudEvent, from_dict
from mlops.events.sinks import Budget, Sink
from mlops.secrets import MASKER

_TAIL_CHUNK = 64 << 10
MAX_LINE = 1 << 20  # a longer line is not an event we wrote


@dataclass
class LogSink(Sink):
    """Appends each event as one line to ``path`` (relative to ``root``)."""

    root: Path
    path: str

    def send(self, event: CloudEvent, budget: Budget) -> None:
        line = MASKER.mask(json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False)) + "\n"
        try:
            paths.append_inside(self.root, self.path, line.encode())
        except PathError as e:
            raise DeliveryError(str(e), retryable=False) from None
        except OSError as e:
            raise DeliveryError(f"cannot append: {e.strerror or e}") from None


@dataclass(frozen=True)
class LogLine:
    """One line of the log: its number, and the event or what is wrong with it."""

    number: int
    event: CloudEvent | None
    problem: str | None = None


def tail(root: Path, rel: str, count: int) -> tuple[list[LogLine], int]:
    """The last ``count`` lines of the log (oldest first) and the number of lines in it.

    A missing log is empty. Reads backwards in chunks, so a long log costs what its tail costs,
    except for counting lines (one pass of ``read``, no parsing)."""
    try:
        fd = paths.open_inside(root, rel, names=(".git",))
    except FileNotFoundError:
        return [], 0
    with os.fdopen(fd, "rb") as f:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        size = f.tell()
        data = b""
        pos = size
        while pos > 0 and data.count(b"\n") <= count:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    if size and not data.endswith(b"\n"):
        total += 1  # a last line without its newline (a write cut short) still counts
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0:
        lines = lines[1:]  # the first one may be cut
    lines = lines[-count:] if count > 0 else []
    first = total - len(lines) + 1
    return [_parse(first + i, raw) for i, raw in enumerate(lines)], total


def _parse(number: int, raw: bytes) -> LogLine:
    if len(raw) > MAX_LINE:
        return LogLine(number, None, f"line {number} is longer than {MAX_LINE} bytes")
    try:
        return LogLine(number, from_dict(json.loads(raw)))
    except (ValueError, UnicodeDecodeError) as e:
        return LogLine(number, None, f"line {number} is not an mlops event ({str(e)[:200]})")
