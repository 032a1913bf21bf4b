"""What a target calls after writing a new config: wait until every worker serves it.

Each worker writes ``DIR/acks/<pid>`` (the generation it serves) after applying a config, or
``DIR/acks/<pid>.error`` when it could not (it then keeps serving the previous one).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mlops.errors import ServingError

PID_FILE = "server.pid"


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def server_pid(directory: Path) -> int | None:
    """The master pid in ``directory/server.pid`` if that process runs, else None."""
    try:
        pid = int((Path(directory) / PID_FILE).read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def wait_applied(directory: Path, generation: int, timeout_s: float) -> None:
    """Return once every worker of the server in ``directory`` serves ``generation`` (or later).

    ServingError when the server is not running, a worker refused that config (its reason is in
    the message), or ``timeout_s`` passed first.
    """
    directory = Path(directory)
    deadline = time.monotonic() + timeout_s
    config = directory / "config.json"
    while True:
        if server_pid(directory) is None:
            raise ServingError(f"the server in {directory} is not running (no live process in {PID_FILE}; "
                               f"see its log)")
        workers = _workers(config)
        done = 0
        for ack in _acks(directory):
            problem = ack.problem
            if problem is not None and (problem.get("generation") == generation
                                        or problem.get("config") == _identity(config)):
                raise ServingError(f"the server in {directory} did not apply generation {generation}: "
                                   f"{problem.get('error')}")
            if ack.served is not None and ack.served >= generation:
                done += 1
        if done >= workers:
            return
        if time.monotonic() > deadline:
            raise ServingError(f"the server in {directory} did not apply generation {generation} within "
                               f"{timeout_s:g} s ({done} of {workers} workers did)")
        time.sleep(0.02)


def _workers(config: Path) -> int:
    with contextlib.suppress(OSError, ValueError, TypeError):
        n = json.loads(config.read_bytes()).get("workers", 1)
        if isinstance(n, int) and n >= 1:
            return n
    return 1


def _identity(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size]


class _Ack:
    __slots__ = ("served", "problem")

    def __init__(self) -> None:
        self.served: int | None = None
        self.problem: dict[str, Any] | None = None


def _acks(directory: Path) -> list[_Ack]:
    """The generation served and the last refusal of each live worker."""
    found: dict[int, _Ack] = {}
    try:
        names = os.listdir(directory / "acks")
    except OSError:
        return []
    for name in names:
        base, _, ext = name.partition(".")
        if not base.isdigit() or ext not in ("", "error"):
            continue
        pid = int(base)
        if not alive(pid):
            continue
        ack = found.setdefault(pid, _Ack())
        try:
            text = (directory / "acks" / name).read_text()
            if ext:
                doc = json.loads(text)
                ack.problem = doc if isinstance(doc, dict) else None
            else:
                ack.served = int(text.strip())
        except (OSError, ValueError):
            continue
    return list(found.values())
