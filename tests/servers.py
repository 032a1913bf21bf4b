"""Scoring servers that tests start: stopped by the tests' fixtures (``stop_servers``), and, as a safety net, any
left over under the session's temporary directory when the session ends (``leftover_servers``)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def stop_servers(root: Path) -> None:
    """Stop every endpoint the local target runs for the repository at ``root`` and delete its state."""
    from mlops.deploy.local import SERVING_DIR, LocalTarget

    base = root / SERVING_DIR
    if not base.is_dir() or base.is_symlink():
        return
    target = LocalTarget("local", root)
    for d in sorted(base.iterdir()):
        with contextlib.suppress(Exception):
            target.remove(d.name)


def leftover_servers(under: Path) -> list[int]:
    """Pids of `python -m mlops.serving --config X` processes whose X lies under ``under``."""
    out = []
    prefix = os.path.realpath(under) + os.sep
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "mlops.serving" in args and "--config" in args:
            config = args[args.index("--config") + 1] if args.index("--config") + 1 < len(args) else ""
            if os.path.realpath(config).startswith(prefix) or config.startswith(str(under)):
                out.append(int(entry.name))
    return out


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
