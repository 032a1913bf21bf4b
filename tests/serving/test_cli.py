"""`mlops serve MODEL.onnx`: a model file served in the foreground, stopped cleanly."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.serving.conftest import free_port, get, iris_request, post


def test_mlops_serve_a_model_file(models: dict[str, Path], tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "mlops.cli", "serve", str(models["iris_zipmap"]), "--port",
                             str(port), "--workers", "1", "--name", "flowers"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "log").read_text()
            with contextlib.suppress(OSError):
                if get(url + "/v2/health/ready")[0] == 200:
                    break
            time.sleep(0.1)
        status, headers, body = post(url + "/v2/models/flowers/infer", iris_request(2))
        assert status == 200 and headers["x-mlops-deployment"] == "default"
        assert json.loads(body)["outputs"][1]["shape"] == [2, 3]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "log").read_text()
    assert f"endpoint flowers: http://127.0.0.1:{port} with 1 workers" in text and "Traceback" not in text


def test_mlops_serve_a_missing_file(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mlops.cli", "serve", str(tmp_path / "nope.onnx")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'nope.onnx'}: no such file"
