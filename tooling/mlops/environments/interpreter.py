"""Finding the python interpreter an environment is built from.

An environment without ``python`` uses the interpreter that runs mlops (its identity records that
interpreter's exact version). One that pins ``python: "3.X"`` uses the running interpreter when it
is 3.X, else ``python3.X`` from PATH, else pyenv's newest 3.X.* install; a pinned version the
machine lacks is an error that says how to get it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?$")


def requested_version(env: Environment) -> tuple[int, int]:
    """``(major, minor)`` of ``env.python`` (the running interpreter's when unset); EnvironmentBuildError
    naming the file if malformed."""
    if env.python is None:
        return sys.version_info[0], sys.version_info[1]
    m = _VERSION_RE.match(env.python.strip())
    if not m:
        raise EnvironmentBuildError(
            f"{env.file or env.name}: $.python: {env.python!r} is not a python version like '3.11'")
    return int(m.group(1)), int(m.group(2))


def find_interpreter(env: Environment) -> str:
    """Absolute path of a python whose major.minor is ``env.python``'s (the running one when unset).

    The running interpreter when it matches, else ``pythonX.Y`` from PATH, else pyenv's. A candidate
    is run once to check it really is that version: pyenv puts shims for every installed version
    on PATH that fail unless the version is activated.
    """
    want = requested_version(env)
    if env.python is None or sys.version_info[:2] == want:
        return sys.executable
    name = f"python{want[0]}.{want[1]}"
    failures: list[str] = []
    for candidate in _candidates(name, want):
        problem = _check(candidate, want)
        if problem is None:
            return os.path.abspath(candidate)
        failures.append(f"{candidate} {problem}")
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = "; ".join(failures) if failures else f"no {name} was found on PATH"
    raise EnvironmentBuildError(
        f"environment {env.name!r} ({env.file or 'no file'}) needs python {want[0]}.{want[1]}, "
        f"but mlops runs on python {running} and {found}. Install it (`pyenv install {want[0]}.{want[1]}`, "
        f"`apt-get install {name} {name}-venv` or `uv python install {want[0]}.{want[1]}`) so that {name} "
        f"is on PATH, or remove `python:` from {env.file or 'the spec'} to use the running python")


def _candidates(name: str, want: tuple[int, int]) -> list[str]:
    found = shutil.which(name)
    out = [found] if found else []
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")

    def micro(path: str) -> tuple[int, ...]:
        version = path.split(os.sep)[-3]
        return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.]", version))

    # pyenv's own builds, newest patch first: used when the shim on PATH refuses (version not activated)
    installs = glob.glob(os.path.join(root, "versions", f"{want[0]}.{want[1]}.*", "bin", name))
    for path in sorted(installs, key=micro, reverse=True):
        if re.fullmatch(r"\d+\.\d+\.\d+", path.split(os.sep)[-3]) and path not in out:
            out.append(path)
    return out


def _check(candidate: str, want: tuple[int, int]) -> str | None:
    """None when ``candidate`` runs and is python ``want``; else what is wrong with it."""
    try:
        proc = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not run: {e}"
    got = proc.stdout.strip()
    if proc.returncode != 0 or got != f"{want[0]}.{want[1]}":
        detail = (proc.stderr.strip().splitlines() or [f"it reported version {got!r}"])[0]
        return f"does not work: {detail}"
    return None
