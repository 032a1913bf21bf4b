"""A server's life: start, config reload under load without a failed request, a refused config,
dynamic batching, timeouts, SIGTERM drain, a crashed worker replaced, a server that cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.serving.conftest import KeepAlive, deployment, get, iris_request, post

from mlops.errors import ServingError
from mlops.serving import metrics
from mlops.serving.control import wait_applied

INFER = "/v2/models/iris/infer"


class Load:
    """Threads firing requests until stopped; every answer kept."""

    def __init__(self, port: int, threads: int = 6):
        self.client, self.stop_flag = KeepAlive(port), threading.Event()
        self.answers: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                status, headers, body = self.client.post(INFER, iris_request())
                self.answers.append((status, headers.get("x-mlops-deployment", "")))
            except OSError as e:
                self.errors.append(repr(e))

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join()


def test_reload_under_load_drops_no_request(servers: Any, models: dict[str, Path]) -> None:
    s = servers([deployment("blue", models["iris"], 1)]).start()
    load = Load(s.port)
    try:
        time.sleep(0.3)
        green = deployment("green", models["iris_zipmap"], 2)
        for traffic in ({"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"green": 100}):
            gen = s.write([deployment("blue", models["iris"], 1), green], traffic=traffic)
            wait_applied(s.dir, gen, 60)
            time.sleep(0.2)
        n_before = len(load.answers)
        time.sleep(0.3)
    finally:
        load.stop()
    assert not load.errors and load.answers
    assert {a[0] for a in load.answers} == {200}
    assert {a[1] for a in load.answers} == {"blue", "green"}
    assert {a[1] for a in load.answers[n_before + 20:]} == {"green"}  # after the last step only green
    assert all(int(p.read_text()) == s.generation for p in (s.dir / "acks").iterdir() if p.name.isdigit())


def test_a_bad_config_is_refused_and_the_old_one_kept(servers: Any, models: dict[str, Path]) -> None:
    s = servers([deployment("blue", models["iris"], 1)]).start()
    bad = deployment("blue", models["iris"], 1)
    bad["sha256"] = "0" * 64
    gen = s.write([bad])
    with pytest.raises(ServingError, match=f"did not apply generation {gen}: .*has sha256"):
        wait_applied(s.dir, gen, 30)
    assert post(s.url + INFER, iris_request())[0] == 200
    s.settings["deployments"][0]["path"] = "../../etc/passwd"
    gen = s.write()
    with pytest.raises(ServingError, match="leads outside the server directory"):
        wait_applied(s.dir, gen, 30)
    gen = s.write(port=s.port + 1, deployments=[deployment("blue", models["iris"], 1)])
    with pytest.raises(ServingError, match="port changed: that needs a restart"):
        wait_applied(s.dir, gen, 30)
    gen = s.write(port=s.port, deployments=[deployment("blue", models["iris"], 1)])
    wait_applied(s.dir, gen, 30)  # a good config afterwards applies
    with pytest.raises(ServingError, match="did not apply generation 99 within"):
        wait_applied(s.dir, 99, 0.3)


def test_wait_applied_on_a_dead_server(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="is not running"):
        wait_applied(tmp_path, 1, 1)
    (tmp_path / "server.pid").write_text("999999999\n")
    with pytest.raises(ServingError, match="is not running"):
        wait_applied(tmp_path, 1, 1)


def test_sigterm_drains_requests_in_flight(servers: Any, models: dict[str, Path]) -> None:
    s = servers([deployment("blue", models["iris"], 1, scoring="slow.py")], workers=1)
    (s.dir / "slow.py").write_text("import time\n\ndef postprocess(outputs):\n    time.sleep(1.0)\n"
                                   "    return outputs\n")
    s.start()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(post, s.url + INFER, iris_request())
        time.sleep(0.3)  # the request is in the model now
        assert s.proc is not None
        s.proc.send_signal(signal.SIGTERM)
        status, headers, _ = slow.result(timeout=30)
    assert status == 200 and headers["x-mlops-deployment"] == "blue"
    assert s.proc.wait(30) == 0
    with pytest.raises(OSError):  # nobody listens any more
        get(s.url + "/v2/health/live")
    assert not (s.dir / "server.pid").exists()


def test_batching_concatenates_concurrent_requests(servers: Any, models: dict[str, Path]) -> None:
    # preprocess holds the loop for a moment, so requests pile up and go to the model together
    s = servers([deployment("blue", models["iris"], 1, scoring="hold.py")], workers=1)
    (s.dir / "hold.py").write_text("import time\n\ndef preprocess(inputs):\n    time.sleep(0.005)\n"
                                   "    return inputs\n")
    s.start()
    client = KeepAlive(s.port)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: client.post(INFER, iris_request(2)), range(160)))
    assert all(a[0] == 200 and len(json.loads(a[2])["outputs"][0]["data"]) == 2 for a in answers)
    text = get(s.url + "/metrics")[2].decode()
    calls = float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("mlops_batch_size_count")))
    rows = float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("mlops_batch_size_sum")))
    assert rows == 320 and calls < 160  # fewer onnxruntime calls than requests


def test_timeout_answers_504(servers: Any, models: dict[str, Path]) -> None:
    s = servers([deployment("blue", models["iris"], 1, scoring="hold.py")], workers=1, timeout_ms=50)
    (s.dir / "hold.py").write_text("import time\n\ndef preprocess(inputs):\n    time.sleep(0.03)\n"
                                   "    return inputs\n")
    s.start()
    client = KeepAlive(s.port)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post(INFER, iris_request()), range(32)))
    codes = {a[0] for a in answers}
    assert 504 in codes and codes <= {200, 504}
    assert all(b"timed out" in a[2] for a in answers if a[0] == 504)
    assert metrics.read(s.url)["blue"].errors == sum(a[0] == 504 for a in answers)


def test_a_crashed_worker_is_replaced(servers: Any, models: dict[str, Path]) -> None:
    s = servers([deployment("blue", models["iris"], 1)]).start()
    victim = s.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = s.worker_pids()
        if victim not in pids and len(pids) == 2:
            break
        time.sleep(0.1)
    assert victim not in s.worker_pids() and len(s.worker_pids()) == 2
    assert post(s.url + INFER, iris_request())[0] == 200


def test_a_server_that_cannot_start_says_why(tmp_path: Path, models: dict[str, Path]) -> None:
    cfg = {"format": 1, "endpoint": "iris", "generation": 1, "deployments": [
        {"name": "blue", "model": "m", "version": 1, "path": "models/none.onnx", "sha256": "0" * 64}],
        "traffic": {"blue": 100}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    r = subprocess.run([sys.executable, "-m", "mlops.serving", "--config", str(tmp_path / "config.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "deployments[blue].path: 'models/none.onnx' is not a file" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "none.onnx").write_bytes(b"not onnx")
    import hashlib

    cfg["deployments"][0]["sha256"] = hashlib.sha256(b"not onnx").hexdigest()  # type: ignore[index]
    cfg["port"] = 0
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    r = subprocess.run([sys.executable, "-m", "mlops.serving", "--config", str(tmp_path / "config.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "onnxruntime cannot load" in r.stderr and "cannot start" in r.stderr
    assert "Traceback" not in r.stderr
