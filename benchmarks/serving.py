"""Online scoring: our server vs MLServer 1.7 vs ``mlflow models serve``, one ONNX model, one machine.

One ONNX model (a wine classifier: sklearn's bundled data, a scaler plus logistic regression,
converted by skl2onnx with ``zipmap=False``) is served by four servers, all started up front and
idle while another is measured:

- ours, direct: ``python -m mlops.serving --config DIR/config.json``, one endpoint with one
  deployment, key authentication on (every request carries ``Authorization: Bearer KEY``);
- ours, through the traffic split: the same, with two deployments of the same model at 50/50;
- ours with inference capture: the direct one, every request captured (``sample_rate`` 1.0, ``max_mb`` 100,
  ``mlops.serving.capture``): the capture's cost is its throughput next to the direct one's, round by round
  (the bar: under 5%);
- MLServer 1.7 in its best configuration (``parallel_workers: 0``, debug off; its default of one
  parallel worker does not start with uvloop 0.23). MLServer has no ONNX runtime of its own (its
  runtimes are sklearn, xgboost, lightgbm, mllib, catboost, mlflow, alibi, huggingface), so it runs
  the model through a small custom runtime written here, an ``MLModel`` subclass calling
  onnxruntime: what a user of MLServer would write;
- ``mlflow models serve`` (``--env-manager local``, one worker per core) of the same ONNX file
  saved with ``mlflow.onnx`` and a tensor signature; its protocol is not the Open Inference
  Protocol, so it gets the same row as ``{"inputs": [[...]]}`` on ``/invocations``.

The client is Debian's ``wrk`` (closed loop: 16 connections, each sends its next request when the
previous answer arrived), POSTing a 1-row JSON request; a Lua ``done()`` hook reports p50, p99 and
the errors (connect/read/write/timeout, and answers with status >= 400). Every server is checked to
answer that request correctly (same label as onnxruntime in-process) before any timing. After a
warm-up of each, rounds are interleaved (A B C D A B C D ...), 10 s each by default, and the
median round of each server is reported.

MLServer and mlflow are installed by this benchmark into virtualenvs of their own under the cache
directory (``$XDG_CACHE_HOME/mlops-benchmarks``, or ``--cache-dir``), reused across runs, never by
the package. Ours runs under this interpreter with this checkout's ``tooling/`` on PYTHONPATH
(``--tooling`` points it at another copy, to measure a change of the server).

Each server runs in a session of its own; the table also gives the CPU time that session (all its
processes and threads) spent per request, a figure that others' work on a shared machine moves far
less than throughput: how a busy machine's scheduler shares the cores out decides the throughput
figures more than the servers do. ``--priority`` gives every server and wrk alike the weight of an
idle machine for the length of the run (others' work then waits).

    python benchmarks/serving.py [--rounds 3] [--seconds 10] [--connections 16] [--threads 1] [--priority]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
MLSERVER_REQUIREMENTS = ["mlserver>=1.7,<1.8", "onnxruntime", "numpy"]
MLFLOW_REQUIREMENTS = ["mlflow>=3,<4", "onnx", "onnxruntime"]
READY_TIMEOUT_S = 180.0

# MLServer's custom runtime: what its docs tell a user to write for a framework it has no runtime for.
MLSERVER_RUNTIME = '''
"""An MLServer runtime for ONNX models: onnxruntime, one session per model, numpy codec in and out."""
import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        self._session = onnxruntime.InferenceSession(uri, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: i.type for i in self._session.get_inputs()}
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i).astype(np.float32) for i in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in zip(self._outputs, results)],
        )
'''

# Saves the ONNX file as an mlflow model (run by the mlflow virtualenv's python): argv model, dest.
MLFLOW_SAVE = '''
import sys
import numpy as np
import onnx
import mlflow.onnx
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

model = onnx.load(sys.argv[1])
features = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
name = model.graph.input[0].name
signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, features), name)]))
mlflow.onnx.save_model(model, sys.argv[2], signature=signature)
'''

# wrk's script: the request, and a done() hook printing one JSON line (latencies in microseconds).
WRK_SCRIPT = '''
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
'''


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlops-benchmarks"


def ensure_venv(cache_dir: Path, name: str, requirements: list[str], probe: str) -> Path:
    """The ``bin`` directory of a virtualenv of ours with ``requirements``, made on first use.

    ``probe`` is Python code that must run in it (import what we need): a half-made venv is redone.
    """
    venv = cache_dir / name
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return venv / "bin"
    print(f"installing {' '.join(requirements)} into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    subprocess.run([str(python), "-c", probe], check=True)
    return venv / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_model(dest: Path) -> tuple[list[float], int]:
    """Write the wine classifier's ONNX file; return one input row and the label onnxruntime gives it."""
    import numpy as np
    import onnxruntime
    from skl2onnx import to_onnx
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_wine(return_X_y=True)
    classifier = LogisticRegression(max_iter=1000)
    pipeline = make_pipeline(StandardScaler(), classifier).fit(x.astype(np.float32), y)
    onx = to_onnx(pipeline, x[:1].astype(np.float32), options={id(classifier): {"zipmap": False}}, target_opset=17)
    dest.write_bytes(onx.SerializeToString())
    row = x[70]  # a class-1 wine: the answer differs from a zero-filled default
    session = onnxruntime.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    label = int(session.run(["label"], {session.get_inputs()[0].name: row[None, :].astype(np.float32)})[0][0])
    return [float(v) for v in row], label  # as the data set has them (12.29, not 12.289999961853027)


@dataclass
class Server:
    """One server under test: how to start it, where it answers, and the request wrk sends."""

    key: str  # short name in tables
    title: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    health_url: str
    url: str  # what wrk POSTs to
    body: str
    headers: dict[str, str]
    label_of: str  # how to read the label from an answer: "oip" or "mlflow"
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def start(self, logs: Path, priority: str | None) -> None:
        self.log = logs / f"{self.key}.log"
        with open(self.log, "wb") as out:
            # Its own session: stopping it stops every process it forked (workers, uvicorn children).
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        if priority is not None:
            set_priority(self.process.pid, priority)

    def wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.title} exited ({self.process.returncode}) before it was ready:\n"
                                 + self.log_tail())
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.title} was not ready at {self.health_url} in time:\n" + self.log_tail())
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        # Whatever of its group is left (the leader past its grace time, orphaned workers) goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""

    def ask(self) -> tuple[int, dict[str, str]]:
        """Send the benchmark's request once: (label answered, response headers); exit on anything else."""
        request = urllib.request.Request(self.url, data=self.body.encode(), headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                document = json.loads(answer.read())
                headers = {k.lower(): v for k, v in answer.headers.items()}
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{self.title} answered {error.code} to the benchmark request: "
                             f"{error.read()[:500]!r}") from None
        try:
            if self.label_of == "oip":
                output = next(o for o in document["outputs"] if o["name"] == "label")
                return int(output["data"][0]), headers
            return int(document["predictions"]["label"][0]), headers
        except (KeyError, IndexError, StopIteration, TypeError, ValueError):
            raise SystemExit(f"{self.title} answered something unexpected: {str(document)[:500]}") from None


def oip_body(row: list[float], input_name: str) -> str:
    return json.dumps({"inputs": [{"name": input_name, "shape": [1, len(row)], "datatype": "FP32", "data": row}]})


def base_env() -> dict[str, str]:
    """The environment every server starts from: ours, minus what would leak this checkout into baselines."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def venv_env(bin_dir: Path) -> dict[str, str]:
    """As if the virtualenv were activated: mlflow execs ``uvicorn`` from PATH."""
    env = base_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    return env


def ours(work: Path, name: str, model: Path, row: list[float], input_name: str, workers: int,
         split: bool, tooling: Path, capture: bool = False) -> Server:
    """Our server for one endpoint: its config.json written as a target would, started as the contract says."""
    root = work / name
    (root / "models").mkdir(parents=True)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    shutil.copyfile(model, root / "models" / f"{digest}.onnx")
    key = secrets.token_urlsafe(24)
    names = ["blue", "green"] if split else ["blue"]
    port = free_port()
    config = {
        "format": 1, "endpoint": "wine", "generation": 1,
        "host": "127.0.0.1", "port": port, "workers": workers, "timeout_ms": 10000, "max_request_mb": 16,
        "auth": "key", "keys": [hashlib.sha256(key.encode()).hexdigest()],
        "deployments": [
            {"name": n, "model": "wine-classifier", "version": i + 1, "path": f"models/{digest}.onnx",
             "sha256": digest, "batching": {"max_batch_size": 32, "max_delay_ms": 2}, "scoring": None,
             "capture": {"sample_rate": 1.0, "max_mb": 100} if capture else None}
            for i, n in enumerate(names)],
        "traffic": {n: 100 // len(names) for n in names},
        "mirror": None,
    }
    (root / "config.json").write_text(json.dumps(config, indent=2))
    env = base_env()
    env["PYTHONPATH"] = str(tooling)
    base = f"http://127.0.0.1:{port}"
    return Server(
        key=name, title=f"mlops serving ({'traffic split 50/50' if split else 'direct'}"
                        f"{', capture 100%' if capture else ''})",
        command=[sys.executable, "-m", "mlops.serving", "--config", str(root / "config.json")],
        cwd=root, env=env, health_url=f"{base}/v2/health/ready", url=f"{base}/v2/models/wine/infer",
        body=oip_body(row, input_name),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}, label_of="oip")


def mlserver(work: Path, bin_dir: Path, model: Path, row: list[float], input_name: str) -> Server:
    root = work / "mlserver"
    (root / "wine").mkdir(parents=True)
    shutil.copyfile(model, root / "wine" / "model.onnx")
    (root / "onnx_runtime.py").write_text(MLSERVER_RUNTIME.lstrip())
    http, grpc, metrics = free_port(), free_port(), free_port()
    settings = {"debug": False, "parallel_workers": 0, "host": "127.0.0.1",
                "http_port": http, "grpc_port": grpc, "metrics_port": metrics}
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    (root / "wine" / "model-settings.json").write_text(json.dumps(
        {"name": "wine", "implementation": "onnx_runtime.OnnxModel", "parameters": {"uri": "./model.onnx"}}))
    env = venv_env(bin_dir)
    env["PYTHONPATH"] = str(root)  # where its runtime module is found (MLServer also adds the model folder)
    base = f"http://127.0.0.1:{http}"
    return Server(
        key="mlserver", title="MLServer 1.7 (parallel_workers 0, custom onnxruntime runtime)",
        command=[str(bin_dir / "mlserver"), "start", str(root)], cwd=root, env=env,
        health_url=f"{base}/v2/models/wine/ready", url=f"{base}/v2/models/wine/infer",
        body=oip_body(row, input_name), headers={"Content-Type": "application/json"}, label_of="oip")


def mlflow(work: Path, bin_dir: Path, model: Path, row: list[float], workers: int) -> Server:
    root = work / "mlflow"
    root.mkdir()
    env = venv_env(bin_dir)
    done = subprocess.run([str(bin_dir / "python"), "-c", MLFLOW_SAVE, str(model), str(root / "model")],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"saving the model for mlflow failed:\n{done.stderr[-3000:]}")
    env["MLFLOW_TRACKING_URI"] = (root / "mlruns").as_uri()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    return Server(
        key="mlflow", title=f"mlflow models serve ({workers} workers)",
        command=[str(bin_dir / "mlflow"), "models", "serve", "-m", str(root / "model"), "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
        cwd=root, env=env, health_url=f"{base}/ping", url=f"{base}/invocations",
        body=json.dumps({"inputs": [row]}), headers={"Content-Type": "application/json"}, label_of="mlflow")


def session_cpu_s(sid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by the live processes of session ``sid``:
    a server and every worker it forked, since each server is started in a session of its own."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == sid:  # fields from the state on: state ppid pgrp session ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def set_priority(pid: int, nice: str) -> None:
    """Give the session of ``pid`` (a session leader) the scheduling weight of ``nice``: Linux
    schedules sessions (autogroups) against each other, so the nice value of a process alone would
    not count against the rest of the machine."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(nice)
    except OSError as e:
        raise SystemExit(f"--priority: cannot set the autogroup nice value of process {pid} "
                         f"(needs Linux autogroups and root): {e.strerror}") from None


def run_wrk(server: Server, work: Path, seconds: int, connections: int, threads: int,
            priority: str | None) -> dict[str, Any]:
    """One closed-loop wrk run against ``server``: requests/s, p50/p99 in ms, the error count, and the
    server's CPU time per request (robust where throughput is not: on a machine others share)."""
    script = work / f"wrk-{server.key}.lua"
    headers = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in server.headers.items())
    script.write_text(WRK_SCRIPT.format(body=server.body, headers=headers))
    assert server.process is not None
    cpu_before = session_cpu_s(server.process.pid)
    wrk = subprocess.Popen(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
         "-s", str(script), server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        if priority is not None:
            set_priority(wrk.pid, priority)
        stdout, stderr = wrk.communicate()
    finally:  # interrupted: wrk must not go on loading the machine
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    cpu = session_cpu_s(server.process.pid) - cpu_before
    line = next((s for s in stdout.splitlines() if s.startswith("WRKJSON ")), None)
    if wrk.returncode != 0 or line is None:
        raise SystemExit(f"wrk against {server.title} failed ({wrk.returncode}):\n{stdout}\n{stderr}")
    r = json.loads(line.removeprefix("WRKJSON "))
    kinds = {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000,
            "max": r["max_us"] / 1000, "errors": sum(kinds.values()), "requests": r["requests"],
            "cpu_us": 1e6 * cpu / max(1, r["requests"]),
            "error_kinds": " ".join(f"{k} {n}" for k, n in kinds.items())}


def check_split(server: Server, tries: int = 40) -> set[str]:
    """The deployments that answered ``tries`` requests through the split (both, or the split is broken)."""
    seen = {server.ask()[1].get("x-mlops-deployment", "?") for _ in range(tries)}
    if seen != {"blue", "green"}:
        raise SystemExit(f"{server.title}: {tries} requests were answered by {sorted(seen)}, not blue and green")
    return seen


def median_round(rounds: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in ("rps", "p50", "p99", "cpu_us")} | {
        "errors": sum(r["errors"] for r in rounds), "p99_max": max(r["p99"] for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="length of one measured wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed wrk run against each server first")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes of ours and of mlflow (default: one per core)")
    parser.add_argument("--only", default="ours,capture,split,mlserver,mlflow",
                        help="comma-separated subset of ours,capture,split,mlserver,mlflow (for development; "
                             "ours,capture measures the capture's cost alone)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--tooling", type=Path, default=PROJECT / "tooling",
                        help="where ours is imported from (default: this checkout; another copy to compare a change)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    parser.add_argument("--priority", action="store_const", const="-15", default=None,
                        help="raise the scheduling weight of every server and of wrk alike (Linux autogroup "
                             "nice -15, as root) so that a machine busy with others' work measures close to "
                             "an idle one; the others wait meanwhile")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    if unknown := wanted - {"ours", "capture", "split", "mlserver", "mlflow"}:
        parser.error(f"--only: unknown {sorted(unknown)}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (.ci/install-debian.sh does)")

    mls_bin = mlf_bin = None
    if "mlserver" in wanted:
        mls_bin = ensure_venv(args.cache_dir, "mlserver-venv", MLSERVER_REQUIREMENTS,
                              "import mlserver, onnxruntime; assert mlserver.__version__.startswith('1.7')")
    if "mlflow" in wanted:
        mlf_bin = ensure_venv(args.cache_dir, "mlflow-venv", MLFLOW_REQUIREMENTS,
                              "import mlflow.onnx, onnxruntime, uvicorn")

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers: list[Server] = []
    try:
        model = work / "wine.onnx"
        row, label = make_model(model)
        import onnx

        input_name = onnx.load(str(model)).graph.input[0].name
        if "ours" in wanted:
            servers.append(ours(work, "ours", model, row, input_name, args.workers, split=False,
                                tooling=args.tooling))
        if "capture" in wanted:
            servers.append(ours(work, "capture", model, row, input_name, args.workers, split=False,
                                tooling=args.tooling, capture=True))
        if "split" in wanted:
            servers.append(ours(work, "split", model, row, input_name, args.workers, split=True,
                                tooling=args.tooling))
        if mls_bin is not None:
            servers.append(mlserver(work, mls_bin, model, row, input_name))
        if mlf_bin is not None:
            servers.append(mlflow(work, mlf_bin, model, row, args.workers))
        # One at a time: start-up is CPU-heavy, and each is checked alone.
        for server in servers:
            server.start(work, args.priority)
            server.wait_ready(time.monotonic() + READY_TIMEOUT_S)
            answered, _ = server.ask()
            if answered != label:
                raise SystemExit(f"{server.title} answered label {answered}, onnxruntime gives {label}")
            if server.key == "split":
                check_split(server)
            print(f"ready: {server.title}", file=sys.stderr)
        for server in servers:
            run_wrk(server, work, args.warmup, args.connections, args.threads, args.priority)
        for n in range(args.rounds):
            # every other round in reverse order: a server measured first in one round is measured last in the
            # next, so a machine getting busier or quieter during a round favours none (ours and capture pair up)
            for server in servers if n % 2 == 0 else servers[::-1]:
                result = run_wrk(server, work, args.seconds, args.connections, args.threads, args.priority)
                server.rounds.append(result)
                print(f"round {n + 1} {server.key}: {result['rps']:.0f} req/s, p50 {result['p50']:.2f} ms, "
                      f"p99 {result['p99']:.2f} ms, {result['cpu_us']:.0f} us CPU/request, "
                      f"{result['errors']} errors {result['error_kinds']}".rstrip(),
                      file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    report(servers, args, (load_before, os.getloadavg()[0]))


def report(servers: list[Server], args: argparse.Namespace, load: tuple[float, float]) -> None:
    results = {s.key: median_round(s.rounds) for s in servers}
    rows = [("server", "req/s", "p50 ms", "p99 ms", "p99 max ms", "CPU us/req", "errors")]
    for s in servers:
        r = results[s.key]
        rows.append((s.title, f"{r['rps']:.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['p99_max']:.2f}",
                     f"{r['cpu_us']:.0f}", f"{r['errors']:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"1-row OIP JSON request, wrk closed loop: {args.connections} connections, {args.threads} thread(s); "
          f"{args.rounds} interleaved rounds of {args.seconds} s, median round; {os.cpu_count()} cores, "
          f"load average {load[0]:.1f} before, {load[1]:.1f} after (others' work shares them)"
          + ("; servers and wrk at autogroup nice -15" if args.priority else ""))
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print("rounds (req/s): " + " | ".join(
        f"{s.key} " + " ".join(f"{r['rps']:.0f}" for r in s.rounds) for s in servers))
    ours_r = results.get("ours")
    if ours_r and "capture" in results:
        direct = {s.key: s.rounds for s in servers}
        costs = sorted(1 - c["rps"] / o["rps"] for o, c in zip(direct["ours"], direct["capture"], strict=True))
        cpu = results["capture"]["cpu_us"] / ours_r["cpu_us"] - 1
        print(f"capture cost (throughput, capture 100% vs direct, paired rounds): median "
              f"{100 * statistics.median(costs):.1f}%, spread {100 * costs[0]:.1f}% .. {100 * costs[-1]:.1f}%; "
              f"of the medians {100 * (1 - results['capture']['rps'] / ours_r['rps']):.1f}%; CPU per request "
              f"{100 * cpu:+.1f}% (bar: under 5% {'ok' if statistics.median(costs) < 0.05 else 'MISSED'})")
    if ours_r and "mlflow" in results:
        print(f"ours vs mlflow models serve: {ours_r['rps'] / results['mlflow']['rps']:.1f}x throughput")
    if ours_r and "split" in results:
        print(f"split vs direct: {results['split']['rps'] / ours_r['rps']:.2f} of the direct throughput (bar 0.85)")
    if ours_r and "mlserver" in results:
        ratio = ours_r["rps"] / results["mlserver"]["rps"]
        bars = [("throughput >= 5x MLServer", ratio >= 5), ("p99 < 5 ms", ours_r["p99"] < 5),
                ("0 errors", all(r["errors"] == 0 for r in results.values() if r is ours_r or r in (
                    results.get("split"), results.get("capture"))))]
        if "split" in results:
            bars.append(("split >= 0.85 of direct", results["split"]["rps"] >= 0.85 * ours_r["rps"]))
        print(f"CPU per request: MLServer spends {results['mlserver']['cpu_us'] / ours_r['cpu_us']:.1f}x what ours "
              "does")
        print("bar: " + ", ".join(f"{name} {'ok' if ok else 'MISSED'}" for name, ok in bars))
        print(f"ratio: {ratio:.1f} (ours vs MLServer 1.7 throughput, 1-row requests, higher is better)")


if __name__ == "__main__":
    main()
