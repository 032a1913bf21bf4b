"""The docker target: one container per endpoint, running the scoring server with all its deployments.

The image is the endpoint's *serving image* (``mlops.deploy.dockerimage``): the image of the environment its
deployments name (built from the environment spec when missing), plus the mlops server. All deployments of an
endpoint run in one server (the traffic split happens inside it), so they must share one environment.

A container is created with the Docker SDK and labelled:

    mlops.managed=true            every container this target made (nothing else is ever touched)
    mlops.target=<target>         the target name in mlops.yaml
    mlops.endpoint=<endpoint>
    mlops.deployment.<name>=<model>@<version>   one per deployment, as created
    mlops.config-digest=<sha256>  the digest of the endpoint state it was created with
    mlops.port=<port>             where it answers on 127.0.0.1

Its config directory is ``<repo>/.mlops/docker-serving/<target>/<endpoint>/`` (config.json, models/ fetched by
digest from the store, keys.json, deployed.json; the server writes acks/ and server.pid), bind-mounted at
``/srv/mlops``. Not under ``.mlops/serving/<endpoint>``: that directory is the local target's, which removes it
whole and would take a container's config for its own. The mount is read-write because the server writes its
acks there; the container runs as the user running mlops (its files stay removable) and in the host's pid
namespace (so server.pid and acks/<pid> name real pids, as for the local target). The engine must run on this
machine (the bind mount is a path here).

Live state is read back from the engine: the running container labelled with the target and endpoint, its
labels (which endpoint, where it answers) and the config it serves from its mount. A change is applied in place,
like on the local target: the next config generation is written and the server swaps models and routing without a
restart and without dropping a request. Labels are fixed when a container is created, so
``mlops.deployment.*`` and ``mlops.config-digest`` say what it started with; config.json says what it serves now.
A stopped or exited container is no live state (the next apply removes it and starts a new one).

Only a new image (a rebuilt environment, another mlops) needs a new container: it is started beside the old one on
another port, and once it serves, the old one is stopped with a drain. Its URL changes then (status shows it),
unless the endpoint declares ``serving.port``: then the old container stops first and the port is briefly closed.

Networking: with a ``bridge`` network (the engine's default) the server listens on 0.0.0.0:8080 in the container,
published on 127.0.0.1 only (or ``serving.host``); an engine without one (``--bridge=none``, as the tests start it)
or ``options: {network: host}`` runs the container in the host's network, the server bound to 127.0.0.1 itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors

from mlops import paths
from mlops.deploy.dockerimage import CONFIG_DIR, serving_image
from mlops.deploy.keys import ensure_keys
from mlops.deploy.local import (
    _config,
    _drop_unused_models,
    _fetch,
    _free_port,
    _generation,
    _sidecar,
    _state_from,
    _write_json,
    check_endpoint_name,
    read_config,
    write_config,
)
from mlops.deploy.protocol import DeploymentMetrics, EndpointState
from mlops.errors import DeployError, MlopsError, PathError

if TYPE_CHECKING:
    from mlops.spec.model import Environment, Specs
    from mlops.store.protocol import ArtifactStore

STATE_DIR = ".mlops/docker-serving"
LABEL_MANAGED = "mlops.managed"
LABEL_TARGET = "mlops.target"
LABEL_ENDPOINT = "mlops.endpoint"
LABEL_DIGEST = "mlops.config-digest"
LABEL_PORT = "mlops.port"
LABEL_DEPLOYMENT = "mlops.deployment."
CONTAINER_PORT = 8080  # inside the container, bridge network only
START_TIMEOUT_S = 60.0
APPLY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 15
_TARGET_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")


def open_docker_target(name: str, options: dict[str, Any], root: Path) -> DockerTarget:
    """The factory ``mlops.deploy.targets`` calls for targets of type ``docker``."""
    return DockerTarget(name, root, options)


class DockerTarget:
    """Containers in the local Docker engine, one per endpoint (see the module docstring).

    ``options`` (from mlops.yaml): ``network`` (``bridge`` or ``host``; default: bridge when the engine has one),
    ``base_image`` (the image to put the server on when the deployments name no environment).
    ``specs``: the specs the endpoints come from (to find their environment); read from ``root`` when not set.
    """

    def __init__(self, name: str, root: Path, options: Mapping[str, Any] | None = None, *,
                 client: Any = None, specs: Specs | None = None) -> None:
        self.name = name
        self.root = Path(root)
        self.options = dict(options or {})
        self.specs = specs
        self._client = client
        self.start_timeout_s = START_TIMEOUT_S
        self.apply_timeout_s = APPLY_TIMEOUT_S
        self.drain_timeout_s = DRAIN_TIMEOUT_S
        network = self.options.get("network")
        if network not in (None, "bridge", "host"):
            raise DeployError(f"target {name}: options.network must be bridge or host, not {network!r}")
        if not isinstance(name, str) or not _TARGET_RE.fullmatch(name):
            raise DeployError(f"target name {name!r} cannot name a docker label and directory: use letters, digits, "
                              "'-' and '_'")

    # -- the engine ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The Docker client (DOCKER_HOST or the default socket), connected on first use."""
        if self._client is None:
            try:
                client = docker.from_env(timeout=120)
                client.ping()
            except docker.errors.DockerException as e:
                raise DeployError(f"target {self.name}: cannot reach a Docker engine (DOCKER_HOST or "
                                  f"/var/run/docker.sock): {e}") from None
            self._client = client
        return self._client

    def state_dir(self, endpoint: str) -> Path:
        """``<repo>/.mlops/docker-serving/<target>/<endpoint>`` (no symbolic link below the repository)."""
        check_endpoint_name(endpoint)
        return paths.own_path(self.root, f"{STATE_DIR}/{self.name}/{endpoint}")

    def containers(self, endpoint: str | None = None, running: bool = True) -> list[Any]:
        """This target's containers (of one endpoint), newest first; only running ones unless ``running=False``."""
        labels = [f"{LABEL_MANAGED}=true", f"{LABEL_TARGET}={self.name}"]
        if endpoint is not None:
            labels.append(f"{LABEL_ENDPOINT}={endpoint}")
        filters: dict[str, Any] = {"label": labels}
        if running:
            filters["status"] = "running"
        try:
            found = self.client.containers.list(all=not running, filters=filters)
        except docker.errors.APIError as e:
            raise DeployError(f"target {self.name}: cannot list containers: {e}") from None
        return sorted(found, key=lambda c: str(c.attrs.get("Created", "")), reverse=True)

    # -- reading ------------------------------------------------------------------------------
    def read(self, endpoint: str) -> EndpointState | None:
        """Live state: the running container's config, if its server answers ready."""
        state = self.peek(endpoint)
        if state is None or state.url is None:
            return None
        from mlops.deploy.local import _ready

        return state if _ready(state.url) else None

    def peek(self, endpoint: str) -> EndpointState | None:
        """Live state from the engine and the config directory, without asking the server (for planning)."""
        try:
            where = self.state_dir(endpoint)
        except (DeployError, PathError):
            return None
        running = self.containers(endpoint)
        if not running:
            return None
        container = running[0]
        if _mount_source(container) != str(where):
            return None  # made for another checkout of the repository: not this repository's state
        config = read_config(where)
        if config is None or config.get("endpoint") != endpoint:
            return None
        state = _state_from(config, _sidecar(where), self.name)
        if state is None:
            return None
        from dataclasses import replace

        return replace(state, url=f"http://{_url_host(container, config)}:{_label_port(container)}")

    def endpoints(self) -> list[str]:
        """Endpoints with a running container of this target."""
        names = {str(c.labels.get(LABEL_ENDPOINT, "")) for c in self.containers()}
        return sorted(n for n in names if n and self.peek(n) is not None)

    # -- changing -----------------------------------------------------------------------------
    def apply(self, desired: EndpointState, store: ArtifactStore) -> EndpointState:
        """Serve ``desired``: a new config generation for the running container, or a new container (when there is
        none or its image changed). DeployError with the server's log when it does not get there."""
        endpoint = desired.endpoint
        where = self.state_dir(endpoint)
        image = serving_image(self.client, self._environment(desired), self.root,
                              self.options.get("base_image"))
        where.mkdir(parents=True, exist_ok=True)
        models = paths.own_path(self.root, f"{STATE_DIR}/{self.name}/{endpoint}/models")
        models.mkdir(exist_ok=True)
        for d in desired.deployments:
            dest = models / f"{d.sha256}.onnx"
            if not dest.is_file() or dest.is_symlink():
                _fetch(store, d, dest)
        keys = ensure_keys(where, desired.settings)
        self._remove_stopped(endpoint)
        running = self.containers(endpoint)
        current = running[0] if running and _mount_source(running[0]) == str(where) else None
        for stale in running:
            if stale is not current:
                self._stop(stale)
        host_net = self._host_network()
        serving = desired.settings.get("serving") or {}
        declared = serving.get("port") if isinstance(serving.get("port"), int) else None
        host = str(serving.get("host", "127.0.0.1"))
        same_image = current is not None and current.image.id == image.image_id
        if current is not None and same_image:
            port = _label_port(current)
        elif current is not None and declared is None:
            port = _free_port(host)  # beside the old container, then switch
        else:
            port = declared or _free_port(host)
        config = _config(desired, generation=_generation(where, read_config(where)) + 1,
                         port=port if host_net else CONTAINER_PORT, keys=[k.sha256 for k in keys])
        if not host_net:
            config["host"] = "0.0.0.0"  # inside the container; published on `host` only
        _write_json(where / "deployed.json", {"target": self.name, "settings": desired.settings})
        if current is not None and same_image:
            write_config(where, config)
            self._wait(where, config["generation"], current, self.apply_timeout_s)
        else:
            if current is not None and declared is not None:
                self._stop(current)  # the declared port is taken by it: closed until the new one listens
            write_config(where, config)
            self._start(desired, image.tag, where, config, host, port, host_net)
            if current is not None:
                self._stop(current)
        _drop_unused_models(where, config)
        state = self.peek(endpoint)
        if state is None:
            raise DeployError(f"endpoint {endpoint}: its container on target {self.name} stopped after the change:\n"
                              f"{self._logs(endpoint)}")
        return state

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        """Only the traffic split changes: a new generation, applied by the running server."""
        where = self.state_dir(endpoint)
        container = self._running(endpoint)
        config = read_config(where)
        if config is None:
            raise DeployError(f"endpoint {endpoint} has no config on target {self.name}")
        names = {d["name"] for d in config["deployments"]}
        if set(traffic) - names or sum(traffic.values()) != 100 or any(v < 0 for v in traffic.values()):
            raise DeployError(f"endpoint {endpoint}: traffic {traffic} must give deployments it serves "
                              f"({', '.join(sorted(names))}) weights that sum to 100")
        config = {**config, "generation": int(config["generation"]) + 1, "traffic": dict(traffic)}
        write_config(where, config)
        self._wait(where, config["generation"], container, self.apply_timeout_s)

    def rotate_keys(self, endpoint: str) -> str:
        """A new key, valid beside the old ones while the server takes it, then the only one. Returns it."""
        from mlops.deploy.keys import add_key, keep_newest, read_keys

        where = self.state_dir(endpoint)
        container = self._running(endpoint)
        config = read_config(where)
        if config is None or config.get("auth") != "key":
            raise DeployError(f"endpoint {endpoint} on target {self.name} has no keys to rotate (auth mode none)")
        new = add_key(where)
        for hashes in ([k.sha256 for k in read_keys(where)], [new.sha256]):
            config.update(generation=int(config["generation"]) + 1, keys=hashes)
            write_config(where, config)
            self._wait(where, config["generation"], container, self.apply_timeout_s)
            if len(hashes) > 1:
                keep_newest(where)
        return str(new.value)

    def metrics(self, endpoint: str) -> dict[str, DeploymentMetrics]:
        """The running server's counters per deployment, from /metrics on its published port."""
        state = self.peek(endpoint)
        if state is None or state.url is None:
            raise DeployError(f"endpoint {endpoint} is not running on target {self.name}")
        from mlops.serving.metrics import read as read_metrics

        return dict(read_metrics(state.url))

    def remove(self, endpoint: str) -> None:
        """Stop every container of the endpoint (SIGTERM: the server drains; killed after the grace period),
        remove them and the config directory. Idempotent."""
        for container in self.containers(endpoint, running=False):
            self._stop(container)
        where = self.state_dir(endpoint)
        if where.is_dir():
            shutil.rmtree(where)

    # -- containers ---------------------------------------------------------------------------
    def _start(self, desired: EndpointState, image: str, where: Path, config: dict[str, Any], host: str,
               port: int, host_net: bool) -> Any:
        labels = {LABEL_MANAGED: "true", LABEL_TARGET: self.name, LABEL_ENDPOINT: desired.endpoint,
                  LABEL_DIGEST: desired.digest(), LABEL_PORT: str(port)}
        labels.update({f"{LABEL_DEPLOYMENT}{d.name}": f"{d.model}@{d.version}" for d in desired.deployments})
        for stale in ("server.pid",):
            with contextlib.suppress(FileNotFoundError):
                (where / stale).unlink()
        shutil.rmtree(where / "acks", ignore_errors=True)
        network: dict[str, Any] = ({"network_mode": "host"} if host_net
                                   else {"ports": {f"{CONTAINER_PORT}/tcp": (host, port)}})
        name = f"mlops-{self.name}-{desired.endpoint}-{uuid.uuid4().hex[:8]}"
        try:
            container = self.client.containers.run(
                image, name=name, detach=True, labels=labels, user=f"{os.getuid()}:{os.getgid()}",
                pid_mode="host", volumes={str(where): {"bind": CONFIG_DIR, "mode": "rw"}},
                stop_signal="SIGTERM", restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
                **network)
        except docker.errors.APIError as e:
            raise DeployError(f"endpoint {desired.endpoint}: cannot start a container of {image}: {e}") from None
        try:
            self._wait(where, int(config["generation"]), container, self.start_timeout_s)
        except DeployError:
            self._stop(container)
            raise
        return container

    def _wait(self, where: Path, generation: int, container: Any, timeout: float) -> None:
        """Until every worker serves ``generation``; DeployError with the container's log when it stops or does
        not get there in time."""
        from mlops.serving.control import wait_applied

        deadline = time.monotonic() + timeout
        while True:
            try:
                wait_applied(where, generation, min(1.0, max(deadline - time.monotonic(), 0.05)))
                return
            except MlopsError as e:
                status = _status(container)
                if status == "running" and time.monotonic() < deadline:
                    continue
                raise DeployError(f"the container of endpoint {where.name} ({container.name}, {status}) did not "
                                  f"apply config generation {generation}: {e}\n{_log_tail(container)}") from None

    def _stop(self, container: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            with contextlib.suppress(docker.errors.APIError):
                container.stop(timeout=self.drain_timeout_s)
            container.remove(force=True)

    def _remove_stopped(self, endpoint: str) -> None:
        for container in self.containers(endpoint, running=False):
            if _status(container) != "running":
                self._stop(container)

    def _running(self, endpoint: str) -> Any:
        running = self.containers(endpoint)
        if not running or _mount_source(running[0]) != str(self.state_dir(endpoint)):
            raise DeployError(f"endpoint {endpoint} is not running on target {self.name}")
        return running[0]

    def _logs(self, endpoint: str) -> str:
        found = self.containers(endpoint, running=False)
        return _log_tail(found[0]) if found else "(no container)"

    def _host_network(self) -> bool:
        wanted = self.options.get("network")
        if wanted is not None:
            return bool(wanted == "host")
        try:
            return not self.client.networks.list(names=["bridge"])
        except docker.errors.APIError as e:
            raise DeployError(f"target {self.name}: cannot list the engine's networks: {e}") from None

    def _environment(self, desired: EndpointState) -> Environment | None:
        """The one environment the endpoint's deployments name (None when they name none)."""
        specs = self.specs
        if specs is None:
            from mlops.spec.loader import load_specs

            specs = self.specs = load_specs(self.root)
        spec = specs.endpoints.get(desired.endpoint)
        if spec is None:
            raise DeployError(f"endpoint {desired.endpoint} is not in the specs of {self.root}")
        names = sorted({d.environment for d in spec.deployments if d.environment})
        if len(names) > 1 or (names and any(not d.environment for d in spec.deployments)):
            raise DeployError(f"{spec.file or desired.endpoint}: the deployments of endpoint {desired.endpoint} run "
                              f"in one container on a docker target, so they need one environment (they name "
                              f"{', '.join(names)}{' and none' if len(names) == 1 else ''})")
        if not names:
            return None
        env = specs.environments.get(names[0])
        if env is None:
            raise DeployError(f"{spec.file}: endpoint {desired.endpoint}: no environment named {names[0]!r}")
        return env


# -- container facts ------------------------------------------------------------------------------

def _status(container: Any) -> str:
    try:
        container.reload()
    except docker.errors.NotFound:
        return "removed"
    except docker.errors.APIError:
        return "unknown"
    return str(container.status)


def _mount_source(container: Any) -> str | None:
    for mount in container.attrs.get("Mounts") or ():
        if mount.get("Destination") == CONFIG_DIR:
            return str(mount.get("Source"))
    return None


def _label_port(container: Any) -> int:
    try:
        port = int(container.labels.get(LABEL_PORT, ""))
    except ValueError:
        return 0
    return port if 0 < port < 65536 else 0


def _url_host(container: Any, config: dict[str, Any]) -> str:
    """Where to reach it from here: its published address, or the server's own on the host network."""
    hostconfig = container.attrs.get("HostConfig") or {}
    if hostconfig.get("NetworkMode") == "host":
        host = str(config.get("host") or "127.0.0.1")
    else:
        bindings = (hostconfig.get("PortBindings") or {}).get(f"{CONTAINER_PORT}/tcp")
        host = str(bindings[0].get("HostIp") or "127.0.0.1") if bindings else "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _log_tail(container: Any, lines: int = 20) -> str:
    from mlops.secrets import MASKER

    try:
        text = container.logs(tail=lines).decode(errors="replace")
    except docker.errors.APIError:
        return "(no container log)"
    return MASKER.mask(text) if text.strip() else "(the container log is empty)"
