"""Rollouts against a real local scoring server under load: real HTTP requests from a thread pool while a
canary goes 10 -> 50 -> 100 (no request fails), a version whose model fails at run time is rolled back on its
live /metrics, and a blue-green preview is judged on mirrored requests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.deploy.local import LocalTarget
from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.deploy.rollout import roll_out
from mlops.store.local import LocalStore
from mlops.store.memory import MemoryStore
from tests.servers import stop_servers

SETTINGS = {"auth": {"mode": "none"}, "serving": {"workers": 2}}
BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                               "data": [1.0, 2.0, 3.0, 4.0]}]}).encode()


def onnx_model(scale: float, *, broken: bool = False) -> bytes:
    """``output = input * scale`` for rows of 4 floats; ``broken``: then reshaped to 7x5, which fails at run
    time for every input (4 * N floats never make 35), as a model with a bad graph does."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(scale, dtype=np.float32), "k")]
    nodes = [helper.make_node("Mul", ["input", "k"], ["scaled" if broken else "output"])]
    if broken:
        inits.append(numpy_helper.from_array(np.array([7, 5], dtype=np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["scaled", "shape"], ["output"]))
    graph = helper.make_graph(nodes, "scale", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", "M"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@dataclass
class Load:
    """Clients sending 1-row infer requests over keep-alive connections until stopped; every answer's status
    and the deployment that gave it (``x-mlops-deployment``) are kept."""

    url: str
    endpoint: str
    clients: int = 4
    answers: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(self.clients)
        self.futures: list[Any] = []

    def start(self) -> None:
        self.futures = [self.pool.submit(self.client) for _ in range(self.clients)]

    def client(self) -> None:
        host, _, port = self.url.removeprefix("http://").partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        path = f"/v2/models/{self.endpoint}/infer"
        while not self.stop.is_set():
            try:
                conn.request("POST", path, BODY, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                with self.lock:
                    self.answers.append((resp.status, resp.getheader("x-mlops-deployment") or "?"))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.close()

    def finish(self) -> None:
        self.stop.set()
        for f in self.futures:
            f.result(timeout=60)
        self.pool.shutdown()

    def mark(self) -> int:
        with self.lock:
            return len(self.answers)

    def since(self, mark: int) -> list[tuple[int, str]]:
        with self.lock:
            return list(self.answers[mark:])


Served = tuple[LocalTarget, MemoryStore, dict[int, DeploymentState]]


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    store = MemoryStore()
    versions = {v: DeploymentState("blue", "scale", v, store.put_bytes(onnx_model(float(v), broken=v == 3)))
                for v in (1, 2, 3)}
    target = LocalTarget("local", tmp_path)
    try:
        yield target, store, versions
    finally:
        stop_servers(tmp_path)


def state(*deployments: DeploymentState, traffic: dict[str, int]) -> EndpointState:
    return EndpointState("scale", "local", deployments, traffic, None, settings=SETTINGS)


CANARY = {"strategy": "canary", "steps": [10, 50, 100], "interval_seconds": 1,
          "analysis": {"max_error_rate": 0.0, "max_p99_ms": 5000, "min_requests": 5}}


def wait_for(load: Load, n: int) -> None:
    deadline = time.monotonic() + 30
    while load.mark() < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_canary_under_load_fails_no_request_and_a_broken_version_is_rolled_back(served: Served) -> None:
    target, store, versions = served
    live = target.apply(state(versions[1], traffic={"blue": 100}), store)
    assert live.url is not None
    load = Load(live.url, "scale")
    load.start()
    try:
        wait_for(load, 50)
        lines: list[str] = []
        events: list[str] = []
        mark = load.mark()
        good = state(versions[2], traffic={"blue": 100})
        result = roll_out(target, good, target.read("scale"), CANARY, store, echo=lines.append,
                          on_event=lambda kind, _: events.append(kind))
        after_good = load.mark()
        assert result.status == "succeeded", (result.reason, lines)
        assert events == ["deployment.started", "deployment.succeeded"]
        assert [s["weight"] for s in result.steps if "analysis" in s] == [10, 50, 100]
        assert all(s["analysis"]["deployments"]["blue-canary"]["requests"] >= 5
                   for s in result.steps if "analysis" in s)
        now = target.read("scale")
        assert now is not None and now.digest() == good.digest()
        during = load.since(mark)[: after_good - mark]
        assert load.errors == [] and all(status == 200 for status, _ in during), Counter(during)
        served_by = Counter(name for _, name in during)
        assert served_by["blue-canary"] > 0 and served_by["blue"] > 0

        # a version whose model fails on every request: rolled back on the canary's live error rate
        mark = load.mark()
        bad = state(versions[3], traffic={"blue": 100})
        result = roll_out(target, bad, target.read("scale"), CANARY, store, echo=lines.append,
                          on_event=lambda kind, _: events.append(kind))
        assert result.status == "rolled_back", (result.reason, lines)
        assert "canary 10% failed its analysis" in result.reason and "error rate" in result.reason
        assert events[-1] == "deployment.rolled_back"
        judged = next(s for s in result.steps if "analysis" in s)["analysis"]["deployments"]["blue-canary"]
        assert judged["errors"] >= 5 and judged["error_rate"] == 1.0
        now = target.read("scale")
        assert now is not None and now.digest() == good.digest()
        after_rollback = load.mark()
        wait_for(load, after_rollback + 50)
        # the canary failed its share of the requests (about 10%: error answers carry no deployment header, so
        # count them), no more; everything after the rollback succeeded, from blue
        during = load.since(mark)[: after_rollback - mark]
        failed = [status for status, _ in during if status != 200]
        assert failed and set(failed) == {500}
        assert len(failed) <= 0.15 * len(during) + 4, (len(failed), len(during))
        assert all(status == 200 and name == "blue" for status, name in load.since(after_rollback + 5))
        assert load.errors == []
    finally:
        load.finish()


def test_blue_green_judges_the_preview_on_mirrored_requests_so_no_client_sees_a_broken_version(served: Served) -> None:
    target, store, versions = served
    live = target.apply(state(versions[1], traffic={"blue": 100}), store)
    assert live.url is not None
    load = Load(live.url, "scale", clients=3)
    load.start()
    spec = {**CANARY, "strategy": "blue-green"}
    try:
        wait_for(load, 30)
        lines: list[str] = []
        bad = state(versions[3], traffic={"blue": 100})
        result = roll_out(target, bad, target.read("scale"), spec, store, echo=lines.append)
        assert result.status == "rolled_back", (result.reason, lines)
        assert "preview blue-preview failed its analysis" in result.reason
        preview = result.steps[0]["analysis"]["deployments"]["blue-preview"]
        assert preview["errors"] >= 5 and preview["error_rate"] == 1.0
        now = target.read("scale")
        assert now is not None and now.digest() == live.digest()  # v1 alone, no mirror

        good = state(versions[2], traffic={"blue": 100})
        mark = load.mark()
        result = roll_out(target, good, target.read("scale"), spec, store, echo=lines.append)
        assert result.status == "succeeded", (result.reason, lines)
        assert result.steps[0]["analysis"]["deployments"]["blue-preview"]["requests"] >= 5
        now = target.read("scale")
        assert now is not None and now.digest() == good.digest()
        wait_for(load, load.mark() + 30)
        # neither the broken preview (its answers to mirrored copies are discarded) nor the switch failed a request
        assert load.errors == [] and all(status == 200 for status, _ in load.answers), Counter(load.answers)
        assert {name for _, name in load.since(mark)} >= {"blue", "blue-preview"}
    finally:
        load.finish()


CHILD = """
import json, sys
from pathlib import Path
from mlops.deploy.local import LocalTarget
from mlops.deploy.protocol import DeploymentState, EndpointState
from mlops.deploy.rollout import roll_out
from mlops.store.local import LocalStore

root, store_dir, doc = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
desired = EndpointState("scale", "local", (DeploymentState(**doc["deployment"]),), {"blue": 100}, None,
                        settings=doc["settings"])
target = LocalTarget("local", root)
roll_out(target, desired, target.read("scale"), doc["spec"], LocalStore(store_dir), echo=lambda line: print(line, flush=True))
"""


def test_a_rollout_killed_mid_canary_is_converged_by_the_next_one_without_a_failed_request(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    v1, v2 = (DeploymentState("blue", "scale", v, store.put_bytes(onnx_model(float(v)))) for v in (1, 2))
    root = tmp_path / "repo"
    root.mkdir()
    target = LocalTarget("local", root)
    child: subprocess.Popen[str] | None = None
    load: Load | None = None
    try:
        live = target.apply(state(v1, traffic={"blue": 100}), store)
        assert live.url is not None
        load = Load(live.url, "scale", clients=3)
        load.start()
        desired = state(v2, traffic={"blue": 100})
        doc = {"deployment": {"name": "blue", "model": "scale", "version": 2, "sha256": v2.sha256},
               "settings": SETTINGS, "spec": {**CANARY, "interval_seconds": 30}}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "tooling"),
                                                            os.environ.get("PYTHONPATH", "")])}
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(tmp_path / "store"), json.dumps(doc)],
                                 stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
        assert child.stdout is not None
        for line in child.stdout:
            if "canary 10%: blue 90, blue-canary 10" in line:  # said just before the target is told
                break
        deadline = time.monotonic() + 60
        while (seen := target.read("scale")) is not None and "blue-canary" not in seen.traffic:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGKILL)  # killed while the canary holds its 10%, in its 30 s window
        child.wait(timeout=30)
        left = target.read("scale")
        assert left is not None and left.traffic == {"blue": 90, "blue-canary": 10}

        lines: list[str] = []
        result = roll_out(target, desired, left, CANARY, store, echo=lines.append)
        assert result.status == "succeeded", (result.reason, lines)
        assert any("an interrupted rollout left blue-canary 10" in line for line in lines)
        now = target.read("scale")
        assert now is not None and now.digest() == desired.digest()
        assert roll_out(target, desired, now, CANARY, store, echo=lines.append).steps == []  # nothing left to do
        wait_for(load, load.mark() + 30)
        assert load.errors == [] and all(status == 200 for status, _ in load.answers), Counter(load.answers)
    finally:
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        if load is not None:
            load.finish()
        stop_servers(root)
