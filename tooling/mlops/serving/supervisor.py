"""The master process of a scoring server (``python -m mlops.serving --config DIR/config.json``).

It checks the config, reserves the port (a bound, non-listening SO_REUSEPORT socket: a free port
is picked when the config says 0), writes ``DIR/server.pid``, starts ``workers`` worker processes
and restarts one that dies. A worker that dies before it ever served means the server cannot start:
the master then stops and exits 1. SIGTERM/SIGINT: every worker drains (stops accepting, finishes
the requests in flight) and the master exits 0. SIGHUP: workers look at config.json at once.
Logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from mlops.errors import ServingError
from mlops.serving import config as server_config
from mlops.serving.control import PID_FILE

_RESTART_DELAY_S = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.serving",
                                     description="Run a scoring server for the endpoint in a server config file.")
    parser.add_argument("--config", required=True, type=Path, help="DIR/config.json")
    parser.add_argument("--share-port", action="store_true",
                        help="bind beside a server already on the port (the one this server replaces: both serve "
                             "until the old one drains); without it a port in use is refused")
    args = parser.parse_args(argv)
    path = args.config.absolute()
    try:
        cfg = server_config.load(path)
    except ServingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return Supervisor(path, cfg, share_port=args.share_port).run()


class Supervisor:
    """Runs and watches the workers of one server."""

    def __init__(self, path: Path, cfg: server_config.ServerConfig, share_port: bool = False):
        self.path, self.cfg, self.directory = path, cfg, path.parent
        self.share_port = share_port
        self.stopping = False
        self.workers: dict[int, tuple[subprocess.Popen[bytes], bool]] = {}  # slot -> (process, ever served)

    def _log(self, message: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} server {os.getpid()} {message}", file=sys.stderr, flush=True)

    def run(self) -> int:
        from mlops.paths import write_atomic
        from mlops.serving.worker import METRICS_ENV, bind

        if self.cfg.port and not self.share_port and _listening(self.cfg.host, self.cfg.port):
            # SO_REUSEPORT would let us bind beside it and share its connections: refuse instead
            print(f"error: {self.path}: {self.cfg.host}:{self.cfg.port} is in use by another server", file=sys.stderr)
            return 2
        try:
            reserved = bind(self.cfg.host, self.cfg.port)
        except OSError as e:
            print(f"error: {self.path}: cannot bind {self.cfg.host}:{self.cfg.port}: {e.strerror}", file=sys.stderr)
            return 2
        port = reserved.getsockname()[1]
        acks = self.directory / "acks"
        shutil.rmtree(acks, ignore_errors=True)
        acks.mkdir(parents=True, exist_ok=True)
        # in memory when the machine has a tmpfs: workers rewrite their file ten times a second
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        metrics = tempfile.mkdtemp(prefix="mlops-serving-metrics-", dir=shm)
        env = {**os.environ, METRICS_ENV: metrics}
        write_atomic(self.directory / PID_FILE, f"{os.getpid()}\n".encode())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        self._log(f"endpoint {self.cfg.endpoint}: http://{self.cfg.host}:{port} with {self.cfg.workers} workers")
        command = [sys.executable, "-m", "mlops.serving.worker", "--config", str(self.path), "--port", str(port)]
        code = 0
        try:
            for slot in range(self.cfg.workers):
                self.workers[slot] = (subprocess.Popen(command, env=env), False)
            code = self._watch(command, env)
        finally:
            self._stop_workers()
            reserved.close()
            shutil.rmtree(metrics, ignore_errors=True)
            with contextlib.suppress(OSError, ValueError):
                pidfile = self.directory / PID_FILE
                if int(pidfile.read_text().strip()) == os.getpid():
                    pidfile.unlink()
            self._log("stopped")
        return code

    def _watch(self, command: list[str], env: dict[str, str]) -> int:
        acks = self.directory / "acks"
        while not self.stopping:
            time.sleep(0.1)
            for slot, (proc, served) in list(self.workers.items()):
                if not served and (acks / str(proc.pid)).exists():
                    self.workers[slot] = (proc, True)
                    served = True
                code = proc.poll()
                if code is None or self.stopping:
                    continue
                for name in (str(proc.pid), f"{proc.pid}.error"):
                    with contextlib.suppress(OSError):
                        (acks / name).unlink()
                if not served:
                    self._log(f"worker {proc.pid} exited ({code}) before serving: the server cannot start")
                    return 1
                self._log(f"worker {proc.pid} exited ({code}): starting another")
                time.sleep(_RESTART_DELAY_S)
                self.workers[slot] = (subprocess.Popen(command, env=env), False)
        return 0

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _hup(self, sig: int, frame: FrameType | None) -> None:
        for proc, _ in self.workers.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGHUP)

    def _stop_workers(self) -> None:
        """SIGTERM every worker (each drains), wait for them, kill the ones that outlast the grace time."""
        procs = [p for p, _ in self.workers.values() if p.poll() is None]
        for p in procs:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.timeout_ms / 1000.0 + 10.0
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"worker {p.pid} did not drain in time: killed")
                p.kill()
                p.wait()


def _listening(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port already."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
