"""Running pip: into a virtualenv (local environments) or into a directory (docker images).

Requirements and lockfiles are untrusted: each is checked (``mlops.spec.requirements``) before pip
sees it, and pip is given a copy of the lockfile holding exactly the lines that were checked, so
what pip reads is what was judged. Local wheels must resolve inside the repository, symlinks
included.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment
from mlops.spec.requirements import local_path, parse_lockfile, render_lockfile, requirement_problem

TAIL_LINES = 25
# pip learned `--python` (act on another interpreter) in 22.3.
_PIP_WITH_PYTHON_OPTION = (22, 3)


@contextlib.contextmanager
def pip_requirements(env: Environment, repo_root: Path) -> Iterator[list[str]]:
    """pip arguments for ``env``'s requirements and lockfile (empty when there is nothing to install),
    valid while the context lasts. EnvironmentBuildError naming the field or lockfile line of
    anything that is not a requirement, or that leads outside the repository."""
    root = Path(repo_root).resolve()
    args: list[str] = []
    for i, req in enumerate(env.requirements):
        problem = requirement_problem(req, str(root)) or _escapes(req, root)
        if problem is not None:
            raise EnvironmentBuildError(f"{env.file or env.name}: $.requirements[{i}]: {problem}")
        args.append(req.strip())
    if env.lockfile is None:
        yield args
        return
    lockfile = _inside(root, env.lockfile)
    if lockfile is None:
        raise EnvironmentBuildError(f"{env.file or env.name}: $.lockfile: {env.lockfile!r} leads outside the repository")
    try:
        data = lockfile.read_bytes()
    except OSError as e:
        raise EnvironmentBuildError(f"{env.file or env.name}: $.lockfile: cannot read {env.lockfile!r}: {e}") from e
    lines, problems = parse_lockfile(data, str(root))
    problems += [(ln.line, p) for ln in lines if (p := _escapes(ln.requirement, root)) is not None]
    if problems:
        line, problem = min(problems)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise EnvironmentBuildError(f"{env.lockfile}:{line}: {problem}{more} (lockfile of environment {env.name!r})")
    with tempfile.TemporaryDirectory(prefix="mlops-lock-") as tmp:
        checked = Path(tmp) / "requirements.txt"
        checked.write_text(render_lockfile(lines), encoding="utf-8")
        yield [*args, "-r", str(checked)]


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


def pip_install(env: Environment, pip: list[str], args: list[str], cwd: Path,
                on_line: Callable[[str], None] | None = None) -> None:
    """Run ``pip install ARGS`` in ``cwd``; EnvironmentBuildError with the tail of pip's output on failure.

    ``cwd`` is the repository root: relative requirement paths (a local wheel) are relative to it.
    ``on_line`` sees each line pip prints, as it prints it (for progress).
    """
    cmd = [*pip, "install", "--disable-pip-version-check", "--no-input", "--no-warn-script-location", *args]
    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines as they happen, not when pip exits
    output: list[str] = []
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", env=environ)
    except OSError as e:
        raise EnvironmentBuildError(f"environment {env.name!r}: cannot run pip ({cmd[0]}): {e}") from e
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        raise EnvironmentBuildError(
            f"environment {env.name!r} ({env.file or 'no file'}): pip install failed "
            f"(exit {code}):\n{tail(''.join(output))}")


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


def _inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` with symlinks resolved, or None when that leads outside ``root``."""
    path = (root / rel).resolve()
    return path if path == root or path.is_relative_to(root) else None


def _escapes(requirement: str, root: Path) -> str | None:
    """Why a local requirement leads outside the repository once symlinks are followed, or None."""
    rel = local_path(requirement)
    if rel is None:
        return None
    if os.path.isabs(rel):
        target = Path(rel).resolve()
        inside = target.is_relative_to(root)
    else:
        inside = _inside(root, rel) is not None
    if not inside:
        return f"{requirement!r} leads outside the repository (through a symlink or an absolute path)"
    return None
