"""Finding a host python interpreter of the version an environment asks for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?$")


def requested_version(env: Environment) -> tuple[int, int]:
    """``(major, minor)`` of ``env.python``; EnvironmentBuildError naming the file if malformed."""
    m = _VERSION_RE.match(env.python.strip())
    if not m:
        raise EnvironmentBuildError(
            f"{env.file or env.name}: $.python: {env.python!r} is not a python version like '3.11'")
    return int(m.group(1)), int(m.group(2))


def find_interpreter(env: Environment) -> str:
    """Absolute path of a python whose major.minor is ``env.python``'s.

    The running interpreter when it matches, else ``pythonX.Y`` from PATH. The candidate is run
    once to check it really is that version: pyenv puts shims for every installed version on
    PATH that fail unless the version is activated.
    """
    want = requested_version(env)
    if sys.version_info[:2] == want:
        return sys.executable
    name = f"python{want[0]}.{want[1]}"
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = shutil.which(name)
    if found is None:
        raise EnvironmentBuildError(
            f"environment {env.name!r} ({env.file or 'no file'}) needs python {want[0]}.{want[1]}, "
            f"but mlops runs on python {running} and no {name} was found on PATH")
    try:
        proc = subprocess.run([found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvironmentBuildError(f"environment {env.name!r} needs {name}; {found} could not run: {e}") from e
    got = proc.stdout.strip()
    if proc.returncode != 0 or got != f"{want[0]}.{want[1]}":
        detail = (proc.stderr.strip().splitlines() or [f"it reported version {got!r}"])[0]
        raise EnvironmentBuildError(
            f"environment {env.name!r} ({env.file or 'no file'}) needs python {want[0]}.{want[1]}, "
            f"but mlops runs on python {running} and {found} does not work: {detail}")
    return os.path.abspath(found)
