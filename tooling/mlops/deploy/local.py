"""The local target: one scoring server per endpoint, a detached process group on this machine.

Everything of an endpoint lives in ``<repo>/.mlops/serving/<endpoint>/``, and nothing of it anywhere else:

    config.json    the server's config (``mlops.serving`` reads it; a new generation is applied without a restart)
    deployed.json  the target name and declared settings the config was made from (the rest is read from config.json)
    models/        the .onnx files, named by sha256, fetched from the store (which verifies them)
    keys.json      the endpoint's API keys, mode 0600 (see ``mlops.deploy.keys``)
    port           the port it listens on, kept so that its URL stays the same across updates and restarts
    server.pid     the server's master pid (written by the server), acks/ (each worker's applied generation)
    server.log     the server's stdout and stderr
    capture/       what deployments with inference capture record (``mlops.serving.capture``), one directory each

The directory is found with ``mlops.paths.own_path``: no component below ``.mlops`` may be a symbolic link, and the
endpoint name must be one plain path component, so no spec can make the target write elsewhere.

The server outlives the command that started it (a new session, no controlling terminal). A later command finds it
again through ``server.pid``: alive, and its command line is ``-m mlops.serving --config <this config.json>``.
A dead server, or a pid now used by another program, is no live state: the next reconcile starts it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops import paths
from mlops.deploy.keys import auth_mode, ensure_keys
from mlops.deploy.protocol import DeploymentMetrics, DeploymentState, EndpointState
from mlops.errors import DeployError, MlopsError, PathError
from mlops.secrets import HOST_ALLOWED, HOST_ALLOWED_PREFIXES

if TYPE_CHECKING:
    from mlops.store.protocol import ArtifactStore

SERVING_DIR = ".mlops/serving"
CAPTURE_DIR = "capture"  # mlops.serving.capture.CAPTURE_DIR: the server writes captures there
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")  # the spec's rule: one component, never . or ..
_MAX_CONFIG = 4 << 20
START_TIMEOUT_S = 60.0
APPLY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 15.0
# The server imports the endpoint's scoring module, code from the repository (a pull request's): like a pipeline
# step it gets only mlops.secrets.HOST_ALLOWED of the host, never its secrets (GITHUB_TOKEN, cloud keys).


def check_endpoint_name(endpoint: str) -> str:
    """``endpoint`` if it can name a state directory (one plain component), else DeployError."""
    if not isinstance(endpoint, str) or not _NAME_RE.fullmatch(endpoint):
        raise DeployError(f"endpoint name {endpoint!r} cannot name a local serving directory: use lowercase "
                          "letters, digits, '.', '-' and '_' (at most 63), starting and ending with a letter or digit")
    return endpoint


class LocalTarget:
    """Servers on this machine, one per endpoint (see the module docstring)."""

    def __init__(self, name: str, root: Path, options: Mapping[str, Any] | None = None, *,
                 python: str | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.root = Path(root)
        self.options = dict(options or {})
        self.python = python  # the interpreter that runs servers started from now on (default: this one)
        self.environ = dict(environ) if environ is not None else None  # their process environment
        self.start_timeout_s = START_TIMEOUT_S
        self.apply_timeout_s = APPLY_TIMEOUT_S
        self.drain_timeout_s = DRAIN_TIMEOUT_S

    # -- where ---------------------------------------------------------------------------
    def state_dir(self, endpoint: str) -> Path:
        """``<repo>/.mlops/serving/<endpoint>`` (PathError when a component of it is a symbolic link)."""
        return paths.own_path(self.root, f"{SERVING_DIR}/{check_endpoint_name(endpoint)}")

    def _serving_dir(self) -> Path:
        return paths.own_path(self.root, SERVING_DIR)

    # -- reading -------------------------------------------------------------------------
    def read(self, endpoint: str) -> EndpointState | None:
        """Live state: the config the running server was given, if the server runs and answers ready."""
        state = self.peek(endpoint)
        if state is None or state.url is None:
            return None
        return state if _ready(state.url) else None

    def peek(self, endpoint: str) -> EndpointState | None:
        """Live state without asking the server (for planning): config.json plus a process check."""
        try:
            where = self.state_dir(endpoint)
        except (DeployError, PathError):
            return None
        config = read_config(where)
        if config is None or server_pid(where) is None:
            return None
        return _state_from(config, _sidecar(where), self.name)

    def endpoints(self) -> list[str]:
        """Endpoints with a running server here."""
        try:
            base = self._serving_dir()
            names = sorted(p.name for p in base.iterdir() if _NAME_RE.fullmatch(p.name))
        except (OSError, PathError):
            return []
        return [n for n in names if self.peek(n) is not None]

    def config(self, endpoint: str) -> dict[str, Any] | None:
        """The endpoint's config.json as written (None when there is none or it is damaged)."""
        return read_config(self.state_dir(endpoint))

    # -- changing ------------------------------------------------------------------------
    def apply(self, desired: EndpointState, store: ArtifactStore) -> EndpointState:
        """Write the next generation of the config and have the server apply it (start it when none runs)."""
        where = self.state_dir(desired.endpoint)
        where.mkdir(parents=True, exist_ok=True)
        models = paths.own_path(self.root, f"{SERVING_DIR}/{desired.endpoint}/models")  # no link, not even here
        models.mkdir(exist_ok=True)
        paths.own_path(self.root, f"{SERVING_DIR}/{desired.endpoint}/models")  # nor after
        fetch_files(store, desired, models)
        keys = ensure_keys(where, desired.settings, self.environ)
        old = read_config(where)
        pid = server_pid(where)
        port = self._port(where, desired.settings, running=pid is not None)
        config = _config(desired, generation=_generation(where, old) + 1, port=port,
                         keys=[k.sha256 for k in keys])
        _write_json(where / "deployed.json", {"target": self.name, "settings": desired.settings})
        write_config(where, config)
        if pid is None:
            self._start(where, config)
        else:
            self._wait(where, config["generation"], None)
        _drop_unused_models(where, config)
        state = _state_from(config, _sidecar(where), self.name)
        if state is None:  # we just wrote it: only a bug gets here
            raise DeployError(f"{where / 'config.json'}: written but not readable back")
        return state

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        """Only the traffic split changes: a new generation, applied by the running server."""
        where = self.state_dir(endpoint)
        config = read_config(where)
        if config is None or server_pid(where) is None:
            raise DeployError(f"endpoint {endpoint} is not running on target {self.name}")
        names = {d["name"] for d in config["deployments"]}
        unknown = sorted(set(traffic) - names)
        if unknown or sum(traffic.values()) != 100 or any(v < 0 for v in traffic.values()):
            raise DeployError(f"endpoint {endpoint}: traffic {traffic} must give deployments it serves "
                              f"({', '.join(sorted(names))}) weights that sum to 100")
        config = {**config, "generation": int(config["generation"]) + 1, "traffic": dict(traffic)}
        write_config(where, config)
        self._wait(where, config["generation"], None)

    def rotate_keys(self, endpoint: str) -> str:
        """A new key, valid beside the old one while the server takes it, then the only one. Returns it."""
        from mlops.deploy.keys import add_key, keep_newest, read_keys

        where = self.state_dir(endpoint)
        config = read_config(where)
        if config is None or server_pid(where) is None:
            raise DeployError(f"endpoint {endpoint} is not running on target {self.name}")
        if config.get("auth") != "key":
            raise DeployError(f"endpoint {endpoint} has auth mode none: it has no keys to rotate")
        new = add_key(where)
        self._push_keys(where, config, [k.sha256 for k in read_keys(where)])  # old and new both valid
        keep_newest(where)
        self._push_keys(where, config, [new.sha256])  # then only the new one
        return str(new.value)

    def _push_keys(self, where: Path, config: dict[str, Any], hashes: list[str]) -> None:
        config.update(generation=int(config["generation"]) + 1, keys=hashes)
        write_config(where, config)
        self._wait(where, config["generation"], None)

    def metrics(self, endpoint: str) -> dict[str, DeploymentMetrics]:
        """The running server's counters per deployment (from its /metrics)."""
        state = self.peek(endpoint)
        if state is None or state.url is None:
            raise DeployError(f"endpoint {endpoint} is not running on target {self.name}")
        from mlops.serving.metrics import read as read_metrics

        return dict(read_metrics(state.url))

    def remove(self, endpoint: str) -> None:
        """Stop the server (SIGTERM: it drains; SIGKILL to its process group after ``drain_timeout_s``) and
        delete the state directory, except ``capture/``: captured requests not collected yet stay for
        ``mlops monitor``. Idempotent."""
        where = self.state_dir(endpoint)
        pid = server_pid(where)
        if pid is not None:
            stop(pid, self.drain_timeout_s)
        remove_state_dir(where)

    # -- the process -----------------------------------------------------------------------
    def _start(self, where: Path, config: dict[str, Any]) -> None:
        for stale in ("server.pid",):
            with contextlib.suppress(FileNotFoundError):
                (where / stale).unlink()
        shutil.rmtree(where / "acks", ignore_errors=True)
        python = self.python or sys.executable
        env = {k: v for k, v in (os.environ if self.environ is None else self.environ).items()
               if k in HOST_ALLOWED or k.startswith(HOST_ALLOWED_PREFIXES) or k == "PYTHONPATH"}
        # The server imports this very mlops, whichever interpreter runs it.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        env.pop("PYTHONHOME", None)
        log_fd = os.open(where / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
        try:
            proc = subprocess.Popen([python, "-m", "mlops.serving", "--config", str(where / "config.json")],
                                    cwd=where, env=env, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                                    start_new_session=True, close_fds=True)
        except OSError as e:
            raise DeployError(f"could not start the server for endpoint {config['endpoint']} with {python}: "
                              f"{e.strerror or e}") from None
        finally:
            os.close(log_fd)
        try:
            self._wait(where, config["generation"], proc, self.start_timeout_s)
        except DeployError:
            if proc.poll() is None:
                stop(proc.pid, 2.0)
            raise
        proc.returncode = 0  # detached on purpose: it outlives this process; no "still running" warning

    def _wait(self, where: Path, generation: int, proc: subprocess.Popen[bytes] | None,
              timeout: float | None = None) -> None:
        """Until every worker serves ``generation``; DeployError with the log's tail when the server dies or
        does not get there in time."""
        from mlops.serving.control import wait_applied

        deadline = time.monotonic() + (timeout or self.apply_timeout_s)
        while True:
            if proc is not None and proc.poll() is not None:
                raise DeployError(f"the server of endpoint {where.name} exited with code {proc.returncode} before "
                                  f"serving:\n{log_tail(where)}")
            left = deadline - time.monotonic()
            try:
                wait_applied(where, generation, min(1.0, max(left, 0.05)) if proc is not None else max(left, 0.05))
                return
            except MlopsError as e:
                if proc is not None and proc.poll() is None and time.monotonic() < deadline:
                    continue  # still starting
                raise DeployError(f"the server of endpoint {where.name} did not apply config generation "
                                  f"{generation}: {e}\n{log_tail(where)}") from None

    def _port(self, where: Path, settings: Mapping[str, Any], running: bool) -> int:
        serving = settings.get("serving") or {}
        host = str(serving.get("host", "127.0.0.1"))
        declared = serving.get("port")
        if isinstance(declared, int) and not isinstance(declared, bool):
            port = declared
        else:
            port = _read_port(where) or 0
            if not running and port and not _free(host, port):
                port = 0  # taken meanwhile by something else: a new one (the URL changes, said by status)
            if not port:
                port = _free_port(host)
        paths.write_atomic(where / "port", f"{port}\n".encode())
        return port


# -- config files ------------------------------------------------------------------------------
def remove_state_dir(where: Path) -> None:
    """Delete an endpoint's state directory, but for a ``capture/`` that holds something (captured requests
    not collected yet, for ``mlops monitor``)."""
    if not where.is_dir():
        return
    keep = where / CAPTURE_DIR
    if not keep.is_dir() or keep.is_symlink() or not any(keep.iterdir()):
        shutil.rmtree(where)
        return
    for child in where.iterdir():
        if child.name == CAPTURE_DIR:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def read_config(where: Path) -> dict[str, Any] | None:
    """config.json of a state directory, checked for the shape this target writes; None if missing or damaged."""
    try:
        fd = os.open(where / "config.json", os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(_MAX_CONFIG + 1)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not _config_shape(doc):
        return None
    return dict(doc)


def write_config(where: Path, config: dict[str, Any]) -> None:
    """config.json, atomically (the server never reads half a file)."""
    _write_json(where / "config.json", config)


def _config_shape(doc: Any) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("generation"), int):
        return False
    if not isinstance(doc.get("port"), int) or not isinstance(doc.get("host"), str):
        return False
    deps = doc.get("deployments")
    if not isinstance(deps, list) or not isinstance(doc.get("traffic"), dict):
        return False
    for d in deps:
        if not (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("model"), str)
                and isinstance(d.get("version"), int) and isinstance(d.get("sha256"), str)):
            return False
    return all(isinstance(v, int) for v in doc["traffic"].values())


def _config(desired: EndpointState, *, generation: int, port: int, keys: list[str]) -> dict[str, Any]:
    serving = desired.settings.get("serving") or {}
    return {
        "format": 1, "endpoint": desired.endpoint, "generation": generation,
        "host": str(serving.get("host", "127.0.0.1")), "port": port,
        "workers": int(serving.get("workers") or min(os.cpu_count() or 1, 4)),
        "timeout_ms": max(1, round(serving.get("timeout_ms", 10000))), "max_request_mb": serving.get("max_request_mb", 16),
        "auth": auth_mode(desired.settings), "keys": keys,
        "deployments": [{"name": d.name, "model": d.model, "version": d.version,
                         "path": f"models/{d.sha256}.onnx", "sha256": d.sha256,
                         "batching": d.options.get("batching"),
                         "scoring": f"models/{d.options['scoring']}.py" if d.options.get("scoring") else None,
                         "capture": dict(d.options["capture"]) if d.options.get("capture") else None}
                        for d in desired.deployments],
        "traffic": dict(desired.traffic),
        "mirror": desired.mirror or None,
    }


def _state_from(config: dict[str, Any], sidecar: dict[str, Any], target: str) -> EndpointState | None:
    deployments = tuple(DeploymentState(str(d["name"]), str(d["model"]), int(d["version"]), str(d["sha256"]),
                                        _options(d)) for d in config["deployments"])
    settings = sidecar.get("settings")
    mirror = config.get("mirror")
    host = config["host"] if config["host"] not in ("0.0.0.0", "::", "") else "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{config['port']}"
    return EndpointState(str(config.get("endpoint", "")), str(sidecar.get("target") or target), deployments,
                         {str(k): int(v) for k, v in config["traffic"].items()},
                         dict(mirror) if isinstance(mirror, dict) else None, url,
                         settings=dict(settings) if isinstance(settings, dict) else {})


def _options(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d.get("batching"), dict):
        out["batching"] = d["batching"]
    scoring = d.get("scoring")
    if isinstance(scoring, str) and scoring.startswith("models/") and scoring.endswith(".py"):
        out["scoring"] = scoring[len("models/"):-len(".py")]
    capture = d.get("capture")
    if isinstance(capture, dict):  # as desired state says it (the server's own rotation fields left out)
        out["capture"] = {k: capture[k] for k in ("sample_rate", "max_mb") if k in capture}
    return out


def _sidecar(where: Path) -> dict[str, Any]:
    try:
        doc = json.loads((where / "deployed.json").read_bytes()[:_MAX_CONFIG])
    except (OSError, ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _generation(where: Path, old: dict[str, Any] | None) -> int:
    """The last generation written here (so a new one is always higher, even over a damaged config)."""
    if old is not None:
        return max(0, int(old["generation"]))
    try:
        raw = json.loads((where / "config.json").read_bytes()[:_MAX_CONFIG])
        gen = raw.get("generation") if isinstance(raw, dict) else None
        return gen if isinstance(gen, int) and gen > 0 else 0
    except (OSError, ValueError, RecursionError):
        return 0


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    paths.write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def fetch_files(store: ArtifactStore, desired: EndpointState, models: Path) -> None:
    """Each deployment's model (and scoring module) into ``models`` by digest, unless already there."""
    for d in desired.deployments:
        wanted = [(d.sha256, f"{d.sha256}.onnx")]
        if d.options.get("scoring"):
            wanted.append((str(d.options["scoring"]), f"{d.options['scoring']}.py"))
        for digest, name in wanted:
            dest = models / name
            if not dest.is_file() or dest.is_symlink():
                _fetch(store, d, digest, dest)


def _fetch(store: ArtifactStore, d: DeploymentState, digest: str, dest: Path) -> None:
    from mlops.errors import StoreError

    with contextlib.suppress(FileNotFoundError):
        dest.unlink()  # a link or a damaged partial file: replaced, never written through
    try:
        store.get_file(digest, dest)
    except (StoreError, OSError) as e:
        raise DeployError(f"deployment {d.name}: cannot fetch {dest.name} of {d.model}@{d.version} from the "
                          f"store: {e}") from None


def _drop_unused_models(where: Path, config: dict[str, Any]) -> None:
    used = {f"{d['sha256']}.onnx" for d in config["deployments"]}
    used |= {d["scoring"].rpartition("/")[2] for d in config["deployments"] if isinstance(d.get("scoring"), str)}
    for p in (where / "models").iterdir():
        if p.name not in used:
            with contextlib.suppress(OSError):
                p.unlink()


# -- processes -------------------------------------------------------------------------------
def server_pid(where: Path) -> int | None:
    """The pid in ``server.pid`` if that process is alive and is the server of this very config."""
    try:
        text = (where / "server.pid").read_text()[:32].strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    if pid <= 1 or pid == os.getpid():
        return None
    cmdline = _cmdline(pid)
    if cmdline is None or "mlops.serving" not in cmdline or "--config" not in cmdline:
        return None
    given = cmdline[cmdline.index("--config") + 1:][:1]
    config = os.path.realpath(where / "config.json")
    if not given or (given[0] != str(where / "config.json") and os.path.realpath(given[0]) != config):
        return None  # a server, but of another directory (a copy of this repository, say)
    return pid


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    if raw:
        return raw.decode(errors="replace").rstrip("\0").split("\0")
    if Path("/proc/self").exists():
        return None  # a zombie or gone
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def stop(pid: int, timeout: float) -> None:
    """SIGTERM ``pid`` (the server drains and its workers follow), then SIGKILL its process group when it is
    still there after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:  # its own session (we started it so): the workers too
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    _gone(pid, 5.0)


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # our own child (started in this process): reap it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if not _cmdline(pid):
            return True  # a zombie that is not ours to reap
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def log_tail(where: Path, lines: int = 20) -> str:
    """The last lines of server.log, secrets masked."""
    from mlops.secrets import MASKER

    try:
        with open(where / "server.log", "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no server log)"
    tail = "\n".join(text.splitlines()[-lines:])
    return MASKER.mask(tail) if tail.strip() else "(the server log is empty)"


def _ready(url: str) -> bool:
    from mlops.httpio import TransportError, exchange

    try:
        return exchange("GET", f"{url}/v2/health/ready", timeout=3.0).status == 200
    except TransportError:
        return False


def _read_port(where: Path) -> int | None:
    try:
        port = int((where / "port").read_text()[:16].strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def _free(host: str, port: int) -> bool:
    """Whether a server could listen on ``port`` (as servers bind: with SO_REUSEADDR, so the connections a
    stopped server left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
