"""A pipeline step as an operating-system process: its environment, logs and timeout.

Each step runs in its own session (process group) so that a timeout kills everything it
started, not just its first process.

A step does not inherit the host environment, which holds credentials it has no business with
(``GITHUB_TOKEN``, ``AWS_SECRET_ACCESS_KEY``...). It gets ``HOST_ALLOWED`` (how to run on
this host: where programs, home and temporary files are, locale, time zone, terminal, TLS
trust, proxies) plus what its spec declares: the environment's ``variables``, the step's
``env``, its ``secrets`` (read by name from the host environment) and the ``MLOPS_*`` values.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlops.pipelines.environment import StepEnvironment
from mlops.secrets import HOST_ALLOWED, HOST_ALLOWED_PREFIXES, MASKER

PYTHONS = {"python", "python3"}
TAIL_LINES = 20
TAIL_CHARS = 4000

# What a step sees of the host: mlops.secrets.HOST_ALLOWED (and LC_*), never the host's secrets.


def host_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of the host environment (default: ours) that steps see."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k in HOST_ALLOWED or k.startswith(HOST_ALLOWED_PREFIXES)}


def read_secrets(names: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of the secrets ``names`` from the host environment; KeyError names those missing."""
    env = os.environ if environ is None else environ
    missing = [n for n in names if n not in env]
    if missing:
        raise KeyError(", ".join(missing))
    return {n: env[n] for n in names}


def step_argv(argv: Sequence[str], environment: StepEnvironment) -> list[str]:
    """``argv`` with a leading ``python``/``python3`` replaced by the environment's interpreter."""
    args = list(argv)
    if args and args[0] in PYTHONS:
        args[0] = environment.python
    return args


def step_environ(
    environment: StepEnvironment, step_env: Mapping[str, str], root: Path, extra: Mapping[str, str],
    params: Mapping[str, Any], secrets: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The process environment of a step.

    The allowed part of ours (``host_environ``), with the environment's ``bin_dir`` first on
    ``PATH``, its variables, the step's ``env``, its ``secrets``, the repository root first on
    ``PYTHONPATH`` (so scripts import the local modules the code scan finds) and ``MLOPS_PARAMS``
    (JSON of the step's params) plus ``extra`` (``MLOPS_STEP``...).
    """
    env = host_environ()
    if environment.bin_dir:
        env["PATH"] = environment.bin_dir + os.pathsep + env.get("PATH", os.defpath)
    env.update(environment.variables)
    env.update(step_env)
    env.update(secrets or {})
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MLOPS_PARAMS"] = json.dumps(params, sort_keys=True)
    env.update(extra)
    return env


class Processes:
    """The step processes running now, so an interrupted run can kill them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, subprocess.Popen[bytes]] = {}

    def run(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout: Path, stderr: Path,
        timeout: float | None, pass_fds: Sequence[int] = (),
    ) -> tuple[int | None, str | None]:
        """Run to completion with output captured in files: ``(exit code, error)``.

        ``error`` says why the process did not finish by itself (cannot start, timed out). The
        files are masked of secret values (``mlops.secrets``) before this returns.
        """
        try:
            return self._run(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, timeout=timeout,
                             pass_fds=pass_fds)
        finally:
            for log in (stdout, stderr):
                with contextlib.suppress(FileNotFoundError):
                    MASKER.mask_file(log)

    def _run(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout: Path, stderr: Path,
        timeout: float | None, pass_fds: Sequence[int],
    ) -> tuple[int | None, str | None]:
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            try:
                proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=err, start_new_session=True, pass_fds=tuple(pass_fds))
            except OSError as e:
                return None, f"cannot start {argv[0]!r}: {e.strerror or e}"
            with self._lock:
                self._running[proc.pid] = proc
            try:
                return proc.wait(timeout=timeout), None
            except subprocess.TimeoutExpired:
                kill_group(proc)
                return proc.wait(), f"timed out after {timeout:g}s"
            finally:
                with self._lock:
                    self._running.pop(proc.pid, None)

    def kill_all(self) -> None:
        with self._lock:
            running = list(self._running.values())
        for proc in running:
            kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and everything in its session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def tail(path: Path) -> str:
    """The last lines of a log file (for error messages)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_CHARS))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])
