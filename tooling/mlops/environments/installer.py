"""Running pip: into a virtualenv (local environments) or into a directory (docker images)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment

TAIL_LINES = 25
# pip learned `--python` (act on another interpreter) in 22.3.
_PIP_WITH_PYTHON_OPTION = (22, 3)


def requirement_args(env: Environment, repo_root: Path) -> list[str]:
    """pip arguments for ``env``'s requirements and lockfile; empty when there is nothing to install."""
    args = list(env.requirements)
    if env.lockfile is not None:
        args += ["-r", str(Path(repo_root) / env.lockfile)]
    return args


def host_pip_for(python: str) -> list[str] | None:
    """The running interpreter's pip aimed at ``python``; None if that pip is missing or too old."""
    try:
        from pip import __version__ as pip_version

        version = tuple(int(p) for p in pip_version.split(".")[:2])
    except (ImportError, ValueError):
        return None
    if version < _PIP_WITH_PYTHON_OPTION:
        return None
    # -P: do not put the working directory (the user's repository) in front of the stdlib.
    isolate = ["-P"] if sys.version_info >= (3, 11) else []
    if python == sys.executable:
        return [sys.executable, *isolate, "-m", "pip"]
    return [sys.executable, *isolate, "-m", "pip", "--python", python]


def pip_install(env: Environment, pip: list[str], args: list[str], cwd: Path) -> None:
    """Run ``pip install ARGS`` in ``cwd``; EnvironmentBuildError with the tail of pip's output on failure.

    ``cwd`` is the repository root: relative requirement paths (a local wheel) are relative to it.
    """
    cmd = [*pip, "install", "--disable-pip-version-check", "--no-input", "--no-warn-script-location", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise EnvironmentBuildError(f"environment {env.name!r}: cannot run pip ({cmd[0]}): {e}") from e
    if proc.returncode != 0:
        raise EnvironmentBuildError(
            f"environment {env.name!r} ({env.file or 'no file'}): pip install failed "
            f"(exit {proc.returncode}):\n{tail(proc.stdout)}")


def ensure_venv_pip(env: Environment, venv_python: str) -> list[str]:
    """Seed pip into a virtualenv with ensurepip (for hosts without a usable pip); its pip command."""
    proc = subprocess.run([venv_python, "-m", "ensurepip", "--default-pip"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise EnvironmentBuildError(f"environment {env.name!r}: ensurepip failed:\n{tail(proc.stdout)}")
    return [venv_python, "-m", "pip"]


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a tool's output, for error messages."""
    return "\n".join(text.rstrip().splitlines()[-lines:])
