"""What an environment build is doing, while it does it (a build takes seconds to minutes).

Everything goes through the caller's ``echo`` (one call per line, as ``click.echo`` to stderr does),
so a caller that passes none, or one that drops messages (``--output json``), gets silence. On a
terminal the build is one status line that is rewritten in place: the phase, pip's latest action
and the elapsed time, ticking while pip is quiet; otherwise the notable pip lines are printed as
they come (Collecting, Installing, Successfully installed), and a summary ends either way.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable

Echo = Callable[[str], None]
_UP = "\x1b[1A"  # cursor to the previous line
_UP_AND_CLEAR = _UP + "\x1b[2K"  # ... and erase it
_NOTABLE = ("Collecting ", "Installing collected packages", "Successfully installed", "Downloading ")
TICK_SECONDS = 1.0


class BuildProgress:
    """Progress of building environment ``name``: call :meth:`phase` and :meth:`pip_line`, then :meth:`done`."""

    def __init__(self, name: str, echo: Echo | None, tty: bool | None = None) -> None:
        self.name = name
        self.echo = echo
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.current = "starting"
        self.detail = ""
        self.satisfied = 0
        self.installed = 0
        self._shown = False  # a status line is on screen (tty)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if echo is not None and self.tty:
            self._ticker = threading.Thread(target=self._tick, name=f"progress-{name}", daemon=True)
            self._ticker.start()

    def phase(self, what: str) -> None:
        """A new phase of the build (``creating virtualenv``, ``installing requirements``)."""
        with self._lock:
            self.current, self.detail = what, ""
            if self.echo is None:
                return
            if self.tty:
                self._draw()
            else:
                self.echo(f"  {self.name}: {what}")

    def pip_line(self, line: str) -> None:
        """One line of pip's output."""
        text = line.strip()
        if not text:
            return
        with self._lock:
            if text.startswith("Requirement already satisfied"):
                self.satisfied += 1
            elif text.startswith("Successfully installed"):
                self.installed = len(text.split()) - 2
            self.detail = text
            if self.echo is None:
                return
            if self.tty:
                self._draw()
            elif text.startswith(_NOTABLE):
                self.echo(f"    pip: {text}")

    def done(self, outcome: str | None = "built") -> None:
        """Stop ticking and leave one summary line (``outcome=None``, for a failure the caller reports:
        just take the status line away)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.echo is None:
                return
            if outcome is None:
                if self._shown:
                    self.echo(_UP_AND_CLEAR + _UP)  # erase it, and back up over the newline echo adds
                self._shown = False
                return
            counts = []
            if self.installed:
                counts.append(f"{self.installed} installed")
            if self.satisfied:
                counts.append(f"{self.satisfied} already satisfied")
            pip = f" (pip: {', '.join(counts)})" if counts else ""
            line = f"  {self.name}: {outcome} in {self.elapsed():.1f} s{pip}"
            self.echo((_UP_AND_CLEAR if self._shown else "") + line)
            self._shown = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- terminal ------------------------------------------------------------------------------
    def _draw(self) -> None:
        assert self.echo is not None
        text = f"  {self.name}: {self.current}" + (f" · {self.detail}" if self.detail else "")
        suffix = f" ({self.elapsed():.0f} s)"
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)  # a wrapped line cannot be redrawn
        if len(text) + len(suffix) > width:
            text = text[:max(0, width - len(suffix) - 1)] + "…"
        self.echo((_UP_AND_CLEAR if self._shown else "") + text + suffix)
        self._shown = True

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                if self._shown:
                    self._draw()
