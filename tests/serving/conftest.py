"""Real scoring servers for the serving tests: sklearn models converted by skl2onnx, a server
directory with config.json, the server started as ``python -m mlops.serving`` on a free port of
127.0.0.1, and always stopped (then killed, workers included) when the test ends."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.evaluation.models import train

KEY = "s3cret-key-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """iris with ZipMap (as registered example models are), iris without, wine, diabetes (a regressor)."""
    d = tmp_path_factory.mktemp("serving-models")
    return {"iris_zipmap": train("iris", d / "iris_zipmap.onnx", zipmap=True).path,
            "iris": train("iris", d / "iris.onnx", C=0.05).path,
            "wine": train("wine", d / "wine.onnx").path,
            "diabetes": train("diabetes", d / "diabetes.onnx").path}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def deployment(name: str, model: Path, version: int, **extra: Any) -> dict[str, Any]:
    """A deployment entry; ``model`` is copied into the server directory by ``Server``."""
    return {"name": name, "model": "m", "version": version, "path": f"models/{model.name}", "sha256": sha(model),
            "batching": {"max_batch_size": 32, "max_delay_ms": 2}, "scoring": None, "_file": str(model), **extra}


class Server:
    """A server directory and (once started) the server process serving it."""

    def __init__(self, directory: Path, deployments: list[dict[str, Any]], **settings: Any):
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        (directory / "models").mkdir(parents=True, exist_ok=True)
        self.settings: dict[str, Any] = {"format": 1, "endpoint": "iris", "host": "127.0.0.1", "port": self.port,
                                         "workers": 2, "timeout_ms": 10000, "max_request_mb": 1, "auth": "none",
                                         "keys": [], "traffic": {deployments[0]["name"]: 100}, "mirror": None}
        self.settings.update(settings)
        self.write(deployments)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, deployments: list[dict[str, Any]] | None = None, **settings: Any) -> int:
        """Write the next generation of config.json atomically; its generation."""
        if deployments is not None:
            clean = []
            for d in deployments:
                d = dict(d)
                src = d.pop("_file", None)
                if src:
                    shutil.copyfile(src, self.dir / d["path"])
                clean.append(d)
            self.settings["deployments"] = clean
        self.settings.update(settings)
        self.generation += 1
        doc = {**self.settings, "generation": self.generation}
        tmp = self.dir / ".config.json.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.dir / "config.json")
        return self.generation

    def start(self, wait: bool = True) -> Server:
        self.log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "mlops.serving", "--config", str(self.dir / "config.json")],
                                     stdout=self.log, stderr=self.log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log_text()}")
            with contextlib.suppress(OSError):
                if get(self.url + "/v2/health/ready")[0] == 200 and len(self.acked()) >= self.settings["workers"]:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.log_text()}")

    def acked(self) -> list[str]:
        with contextlib.suppress(OSError):
            return [n for n in os.listdir(self.dir / "acks") if n.isdigit()]
        return []

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "server.log").read_text(errors="replace")[-4000:]
        return ""

    def worker_pids(self) -> list[int]:
        return [int(n) for n in self.acked()]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of the master and any worker left."""
        workers = self.worker_pids()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if hasattr(self, "log"):
            self.log.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Any]:
    """``servers(deployments, **settings)`` makes a Server (not started); all are stopped at the end."""
    made: list[Server] = []

    def make(deployments: list[dict[str, Any]], **settings: Any) -> Server:
        s = Server(tmp_path / f"server{len(made)}", deployments, **settings)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return request("GET", url, None, headers)


def post(url: str, body: Any, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request("POST", url, data, {"content-type": "application/json", **(headers or {})})


def request(method: str, url: str, data: bytes | None, headers: dict[str, str] | None
            ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def iris_request(rows: int = 1, name: str = "input") -> dict[str, Any]:
    data = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3] * rows
    return {"inputs": [{"name": name, "datatype": "FP32", "shape": [rows, 4], "data": data[:rows * 4]}]}


class KeepAlive:
    """One persistent HTTP/1.1 connection per thread (as real clients and load tools keep them)."""

    def __init__(self, port: int):
        import threading

        self.port, self.local = port, threading.local()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        import http.client

        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"content-type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
