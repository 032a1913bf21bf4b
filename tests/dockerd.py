"""Pytest fixtures that give tests a real Docker engine and a local python base image.

Register with ``pytest_plugins = ["tests.dockerd"]`` (done in tests/conftest.py), then ask for
``docker_client`` (a ``docker.DockerClient``), ``docker_host`` (its URL, for ``DOCKER_HOST`` of
subprocesses) and ``base_image`` (an image name).

``docker_client`` uses, in order:
  1. the engine at ``DOCKER_HOST`` or ``/var/run/docker.sock`` if one answers (CI runners have one);
  2. else a ``dockerd`` started here (needs root), configured as this machine allows: overlay2,
     no iptables, no bridge (run containers with ``network_mode="host"``, publish nothing).
     Its images live in a fixed data-root, ``/var/lib/mlops-test-docker``, so they survive between
     runs; socket, pidfile and exec-root live under ``/run/mlops-test-docker``. Several pytest
     sessions at once share that one daemon: each holds a shared lock while it uses it, and the
     last one to finish stops it;
  3. else the test is skipped, saying why.

``base_image`` is ``mlops-base:bookworm``: Debian bookworm (python 3.11) made with debootstrap
and ``docker import``, because no image can be pulled here. Made once (~45 s), then reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

STATE_DIR = Path("/run/mlops-test-docker")
DATA_ROOT = Path("/var/lib/mlops-test-docker")
DEBOOTSTRAP_CACHE = Path("/var/cache/mlops-test-debootstrap")
SOCKET = STATE_DIR / "docker.sock"
PIDFILE = STATE_DIR / "docker.pid"
LOG = STATE_DIR / "dockerd.log"
BASE_IMAGE = "mlops-base:bookworm"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Engine:
    """A Docker engine the tests may use: a client, and its URL for ``DOCKER_HOST`` of subprocesses."""

    client: Any
    url: str


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """The running engine (see the module docstring)."""
    docker = pytest.importorskip("docker")
    engine, release = _engine(docker)
    try:
        yield engine
    finally:
        engine.client.close()
        release()


@pytest.fixture(scope="session")
def docker_client(docker_engine: Engine) -> Any:
    """A ``docker.DockerClient`` connected to the running engine."""
    return docker_engine.client


@pytest.fixture(scope="session")
def docker_host(docker_engine: Engine) -> str:
    """``DOCKER_HOST`` value that points a subprocess (e.g. the ``mlops`` CLI) at the same engine."""
    return docker_engine.url


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """Name of a local Debian bookworm image with python3 (3.11); built on first use."""
    if _has_image(docker_client, BASE_IMAGE):
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        pytest.skip(f"image {BASE_IMAGE} is missing and debootstrap is not installed; run .ci/install-debian.sh")
    sudo = _root_prefix()
    if sudo is None:
        pytest.skip(f"image {BASE_IMAGE} is missing and debootstrap needs root (or password-less sudo)")
    with _flock(Path(tempfile.gettempdir()) / "mlops-test-base-image.lock"):
        if not _has_image(docker_client, BASE_IMAGE):  # another session may have made it meanwhile
            _make_base_image(docker_client, sudo)
    return BASE_IMAGE


# -- the engine -------------------------------------------------------------------------------------

def _engine(docker: Any) -> tuple[Engine, Callable[[], None]]:
    """The engine and what to call when the session is done with it."""
    url = os.environ.get("DOCKER_HOST")
    if url:
        client = _answering(docker, None)
        if client is not None:
            return Engine(client, url), _nothing
    if Path("/var/run/docker.sock").exists():
        client = _answering(docker, "unix:///var/run/docker.sock")
        if client is not None:
            return Engine(client, "unix:///var/run/docker.sock"), _nothing
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip("no Docker engine answers and dockerd is not installed; run .ci/install-debian.sh")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine answers and starting dockerd needs root")

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    users = open(STATE_DIR / "users.lock", "a+b")  # noqa: SIM115 - held for the whole session
    with _flock(STATE_DIR / "start.lock"):
        client = _answering(docker, f"unix://{SOCKET}")
        if client is None:
            client = _start_dockerd(docker, dockerd)
        fcntl.flock(users, fcntl.LOCK_SH)

    def release() -> None:
        with _flock(STATE_DIR / "start.lock"):
            try:
                # Exclusive only if no other session still holds its shared lock: then we are the last.
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            finally:
                users.close()
            _stop_dockerd()

    return Engine(client, f"unix://{SOCKET}"), release


def _start_dockerd(docker: Any, dockerd: str) -> Any:
    cmd = [
        dockerd, "--storage-driver=overlay2", "--iptables=false", "--bridge=none",
        "--data-root", str(DATA_ROOT), "--exec-root", str(STATE_DIR / "exec"),
        "-H", f"unix://{SOCKET}", "--pidfile", str(PIDFILE),
    ]
    with open(LOG, "wb") as log:
        # Its own session: the daemon may outlive this pytest process when another session still uses it.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dockerd exited with {proc.returncode}:\n{_log_tail()}")
        if SOCKET.exists():
            client = _answering(docker, f"unix://{SOCKET}")
            if client is not None:
                return client
        time.sleep(0.2)
    _signal_and_wait(proc.pid)
    pytest.fail(f"dockerd did not answer within {START_TIMEOUT:.0f} s:\n{_log_tail()}")


def _stop_dockerd() -> None:
    """Stop the daemon named in our pidfile (the one this fixture started, in this or another session)."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    _signal_and_wait(pid)


def _signal_and_wait(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # reap it if it is our child
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answering(docker: Any, base_url: str | None) -> Any:
    try:
        client = docker.from_env(timeout=600) if base_url is None else docker.DockerClient(base_url=base_url,
                                                                                            timeout=600)
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


def _log_tail(lines: int = 30) -> str:
    try:
        return "\n".join(LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _nothing() -> None:
    pass


# -- the base image -----------------------------------------------------------------------------------

def _make_base_image(client: Any, sudo: list[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="mlops-base-", dir="/var/tmp"))
    try:
        DEBOOTSTRAP_CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [*sudo, "debootstrap", "--variant=minbase", "--include=python3", f"--cache-dir={DEBOOTSTRAP_CACHE}",
             "bookworm", str(root)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            pytest.fail("debootstrap failed:\n" + "\n".join(proc.stdout.splitlines()[-30:]))
        repository, tag = BASE_IMAGE.split(":")
        tar = subprocess.Popen([*sudo, "tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        stdout: IO[bytes] = tar.stdout  # type: ignore[assignment]
        try:
            client.api.import_image_from_stream(stdout, repository=repository, tag=tag,
                                                changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'])
        finally:
            stdout.close()
            tar.wait()
    finally:
        subprocess.run([*sudo, "rm", "-rf", "--one-file-system", str(root)], check=False)


def _has_image(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _root_prefix() -> list[str] | None:
    """How to run a command as root: directly, through password-less sudo, or not at all."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
