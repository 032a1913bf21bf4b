"""Which python runs a local server: an environment's interpreter only when it can import mlops's server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


def can_serve(python: str, environ: Mapping[str, str]) -> bool:
    """Whether ``python`` (with ``environ``) imports ``mlops.serving`` from this very mlops and onnxruntime."""
    env = dict(environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run([python, "-c", "import mlops.serving, onnxruntime"], env=env, capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
