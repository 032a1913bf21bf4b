"""One run of a pipeline at a time per workspace: an ``flock`` on a lock file.

The lock belongs to the open file description, so step processes that inherit the descriptor
keep holding it: a step orphaned by a killed run keeps the lock until it exits, and the next run
waits for it instead of racing it for the same output files. POSIX only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mlops.errors import LockError

TIMEOUT = 3600.0


def acquire_lock(path: Path, what: str, timeout: float = TIMEOUT) -> int:
    """Lock ``path`` (created if needed) and return the descriptor; close it to unlock.

    Waits (saying so on stderr) while another process holds it; ``LockError`` after ``timeout``.
    """
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise LockError(f"cannot create the lock file of {what} at {path}: {e.strerror or e} "
                        "(the workspace's .mlops must be writable to run)") from e
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            os.close(fd)
            raise LockError(f"{what} is locked by another run ({path})")
        if not waiting:
            sys.stderr.write(f"waiting for another run of {what} to finish ({path})\n")
            waiting = True
        time.sleep(0.05)
