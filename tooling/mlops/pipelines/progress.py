"""Terminal progress of a pipeline run.

On a TTY, a ``rich`` live status shows the steps running now (with a spinner and elapsed time)
above the lines of finished ones; otherwise, plain lines. ``rich`` is imported only for the
live view, so a no-op run in CI or a script does not pay for it.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any, Protocol

from mlops.pipelines.record import StepRecord

_MARK = {"ran": "ran", "cached": "cached", "failed": "FAILED", "skipped": "skipped"}


class Progress(Protocol):
    """Receives step events from the runner (always from the same thread)."""

    def started(self, step: str) -> None: ...

    def finished(self, record: StepRecord) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    def started(self, step: str) -> None:
        pass

    def finished(self, record: StepRecord) -> None:
        pass

    def close(self) -> None:
        pass


def _describe(record: StepRecord) -> str:
    text = f"{_MARK.get(record.status, record.status):>7}  {record.name}"
    if record.status in ("ran", "failed"):
        text += f"  ({record.duration:.2f}s)"
    if record.status == "failed" and record.error:
        text += f": {record.error.splitlines()[0]}"
    return text


class PlainProgress:
    """One line per finished step."""

    def __init__(self, pipeline: str, stream: IO[str]) -> None:
        self.pipeline = pipeline
        self.stream = stream

    def started(self, step: str) -> None:
        pass

    def finished(self, record: StepRecord) -> None:
        self.stream.write(f"[{self.pipeline}] {_describe(record)}\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class RichProgress:
    """A live view of the running steps, with finished steps printed above it."""

    def __init__(self, pipeline: str, total: int) -> None:
        from rich.console import Console
        from rich.live import Live

        self.pipeline = pipeline
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}
        self._console = Console(stderr=True)
        self._live = Live(console=self._console, refresh_per_second=8, transient=True,
                          get_renderable=self._render)
        self._live.start()

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        with self._lock:
            running = sorted(self._running.items())
        for name, since in running:
            grid.add_row(Spinner("dots"), name, f"{now - since:.1f}s")
        grid.add_row("", Text(f"{self.pipeline}: {self.done}/{self.total} steps done", style="dim"), "")
        return grid

    def started(self, step: str) -> None:
        with self._lock:
            self._running[step] = time.monotonic()

    def finished(self, record: StepRecord) -> None:
        with self._lock:
            self._running.pop(record.name, None)
            self.done += 1
        style = {"ran": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow"}[record.status]
        from rich.text import Text

        # Text, not markup: step names and stderr may contain brackets.
        self._live.console.print(Text(_describe(record), style=style), highlight=False)

    def close(self) -> None:
        self._live.stop()


def make_progress(enabled: bool, pipeline: str, total: int) -> Progress:
    """The progress view for this terminal: rich when stderr is a TTY, plain lines otherwise."""
    if not enabled:
        return NullProgress()
    if sys.stderr.isatty():
        return RichProgress(pipeline, total)
    return PlainProgress(pipeline, sys.stderr)
