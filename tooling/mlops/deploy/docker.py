"""The docker target: one container per endpoint, running the scoring server with all its deployments.

The image is the endpoint's *serving image* (``mlops.environments.serving_image``): the image of the environment its
deployments name (built from the environment spec when missing), plus the mlops server. All deployments of an
endpoint run in one server (the traffic split happens inside it), so they must share one environment.

A container is created with the Docker SDK and labelled:

    mlops.managed=true            every container this target made (nothing else is ever touched)
    mlops.target=<target>         the target name in mlops.yaml
    mlops.endpoint=<endpoint>
    mlops.deployment.<name>=<model>@<version>   one per deployment, as created
    mlops.config-digest=<sha256>  the digest of the endpoint state it was created with
    mlops.port=<port>             where it answers on 127.0.0.1
    mlops.slot=<hex>              names its config directory

The endpoint's state is in ``<repo>/.mlops/docker-serving/<target>/<endpoint>/``: keys.json (its API keys, 0600)
and one directory per container, ``<slot>/`` (config.json, deployed.json, models/ fetched by digest from the
store; the server writes acks/ and server.pid there), bind-mounted at ``/srv/mlops``; the endpoint's ``capture/``
(inference capture, which outlives containers) is mounted over ``/srv/mlops/capture``. Not under
``.mlops/serving/<endpoint>``: that is the local target's, which removes it whole and would take a container's
config for its own. The mount is read-write because the server writes its acks there; the container runs as the
user running mlops (its files stay removable) and in the host's pid namespace (server.pid and acks/<pid> name
pids that ``mlops.serving.control`` checks from here, and two containers never write the same acks/<pid>). The
engine must run on this machine (the bind mount is a path here).

Live state is read back from the engine: the running container labelled with the target and endpoint whose mount
is this repository's slot directory, and the config it serves. A change is applied in place, like on the local
target: the next config generation is written and the server swaps models, routing and keys without a restart and
without dropping a request. Labels are fixed when a container is created, so ``mlops.deployment.*`` and
``mlops.config-digest`` say what it started with; its config.json says what it serves now. A stopped or exited
container is no live state (the next apply removes it and starts a new one).

A new image (a rebuilt environment, another mlops) or a new host, port or worker count needs a new container, in
a new slot. On the host network it binds the same port beside the old one (the server's workers use
SO_REUSEPORT); once it serves, the old one is stopped with a drain. Not guaranteed without a failed request:
when the old server closes its socket, connections queued on it are reset (unless the host sets
``net.ipv4.tcp_migrate_req=1``), and the draining server closes connections it accepted but has read no request
from yet (rare: none failed in 2 x ~30k requests here). On a bridge network a port can be published once, so the
new container gets another port and the URL changes (status shows it), unless the endpoint declares
``serving.port``: then the old container stops first and
the port is briefly closed.

Networking: on a bridge network (the engine's default ``bridge``, or the target's ``network``) the server listens on
0.0.0.0:8080 in the container, published on 127.0.0.1 only (or ``serving.host``); an engine without one
(``--bridge=none``, as the tests start it) or ``network: host`` runs the container in the host's network, the
server bound to 127.0.0.1 itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors

from mlops import paths
from mlops.deploy.keys import ensure_keys
from mlops.deploy.local import (
    CAPTURE_DIR,
    _config,
    _drop_unused_models,
    _free_port,
    _sidecar,
    _state_from,
    _write_json,
    check_endpoint_name,
    fetch_files,
    read_config,
    remove_state_dir,
    write_config,
)
from mlops.deploy.protocol import DeploymentMetrics, EndpointState
from mlops.errors import DeployError, MlopsError, PathError

if TYPE_CHECKING:
    from mlops.spec.model import Environment, Specs
    from mlops.store.protocol import ArtifactStore

# Where the config directory is mounted; the serving image's command reads CONFIG_DIR/config.json (the same
# constant in mlops.environments.serving_image; tests/deploy/test_docker_config.py checks they agree).
CONFIG_DIR = "/srv/mlops"
STATE_DIR = ".mlops/docker-serving"
LABEL_MANAGED = "mlops.managed"
LABEL_TARGET = "mlops.target"
LABEL_ENDPOINT = "mlops.endpoint"
LABEL_DIGEST = "mlops.config-digest"
LABEL_PORT = "mlops.port"
LABEL_DEPLOYMENT = "mlops.deployment."
LABEL_SLOT = "mlops.slot"  # names its config directory
CONTAINER_PORT = 8080  # inside the container, bridge network only
START_TIMEOUT_S = 60.0
APPLY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 15
_NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SLOT_RE = re.compile(r"^[0-9a-f]{12}$")
_TARGET_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")  # as mlops.yaml allows


# (engine client, environment or None, repository root, base image or None) -> the image to run (has .tag, .image_id)
ImageMaker = Callable[[Any, "Environment | None", Path, "str | None"], Any]


def open_docker_target(name: str, options: dict[str, Any], root: Path) -> DockerTarget:
    """The factory ``mlops.deploy.targets`` calls for targets of type ``docker``."""
    return DockerTarget(name, root, options)


class DockerTarget:
    """Containers in the local Docker engine, one per endpoint (see the module docstring).

    ``options`` (from mlops.yaml): ``network`` (``host``, or a bridge network to publish the port from; default:
    ``bridge`` when the engine has it, else ``host``),
    ``base_image`` (the image to put the server on when the deployments name no environment), ``docker_host``
    (the engine's URL; default DOCKER_HOST or the default socket; it must run on this machine).
    ``specs``: the specs the endpoints come from (to find their environment); read from ``root`` when not set.
    ``images``: what makes the image of an endpoint, ``mlops.environments.serving_image.serving_image``; the deploy
    action hands it over (deploy does not import the environments plug-in). Only ``apply`` needs it.
    """

    def __init__(self, name: str, root: Path, options: Mapping[str, Any] | None = None, *,
                 client: Any = None, specs: Specs | None = None, images: ImageMaker | None = None) -> None:
        self.name = name
        self.root = Path(root)
        self.options = dict(options or {})
        self.specs = specs
        self.images = images
        self._client = client
        self.start_timeout_s = START_TIMEOUT_S
        self.apply_timeout_s = APPLY_TIMEOUT_S
        self.drain_timeout_s = DRAIN_TIMEOUT_S
        network = self.options.get("network")
        if network is not None and (not isinstance(network, str) or not _NETWORK_RE.fullmatch(network)):
            raise DeployError(f"target {name}: network must be host, bridge or the name of a Docker network, "
                              f"not {network!r}")
        if not isinstance(name, str) or not _TARGET_RE.fullmatch(name):
            raise DeployError(f"target name {name!r} cannot name a docker label and directory: use letters, digits, "
                              "'.', '-' and '_'")

    # -- the engine ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The Docker client (DOCKER_HOST or the default socket), connected on first use."""
        if self._client is None:
            url = self.options.get("docker_host")
            try:
                client = (docker.DockerClient(base_url=str(url), timeout=120) if url
                          else docker.from_env(timeout=120))
                client.ping()
            except docker.errors.DockerException as e:
                where = url or "DOCKER_HOST or /var/run/docker.sock"
                raise DeployError(f"target {self.name}: cannot reach a Docker engine ({where}): {e}") from None
            self._client = client
        return self._client

    def state_dir(self, endpoint: str) -> Path:
        """``<repo>/.mlops/docker-serving/<target>/<endpoint>`` (no symbolic link below the repository)."""
        check_endpoint_name(endpoint)
        return paths.own_path(self.root, f"{STATE_DIR}/{self.name}/{endpoint}")

    def slot_dir(self, endpoint: str, slot: str) -> Path:
        """The config directory of one container of the endpoint: ``state_dir(endpoint)/<slot>``."""
        if not _SLOT_RE.fullmatch(slot):
            raise DeployError(f"endpoint {endpoint}: {slot!r} is no container slot")
        return paths.own_path(self.root, f"{STATE_DIR}/{self.name}/{check_endpoint_name(endpoint)}/{slot}")

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

    def serving(self, endpoint: str) -> tuple[Any, Path] | None:
        """The running container that serves the endpoint and its config directory, or None.

        A container whose config directory is not this repository's (another checkout made it) is not ours."""
        for container in self.containers(endpoint):
            slot = str(container.labels.get(LABEL_SLOT, ""))
            try:
                where = self.slot_dir(endpoint, slot)
            except (DeployError, PathError):
                continue
            if _mount_source(container) == str(where):
                return container, where
        return None

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
            found = self.serving(endpoint)
        except PathError:
            return None
        if found is None:
            return None
        container, where = found
        config = read_config(where)
        if config is None or config.get("endpoint") != endpoint:
            return None
        state = _state_from(config, _sidecar(where), self.name)
        if state is None:
            return None
        return replace(state, url=f"http://{_url_host(container, config)}:{_label_port(container)}")

    def endpoints(self) -> list[str]:
        """Endpoints with a running container of this target."""
        names = {str(c.labels.get(LABEL_ENDPOINT, "")) for c in self.containers()}
        return sorted(n for n in names if n and self.peek(n) is not None)

    # -- changing -----------------------------------------------------------------------------
    def apply(self, desired: EndpointState, store: ArtifactStore) -> EndpointState:
        """Serve ``desired``: a new config generation for the running container, or a new container (when there is
        none, or its image, host, port or workers change). DeployError with the server's log when it does not get
        there."""
        endpoint = desired.endpoint
        base = self.state_dir(endpoint)
        image = self._image(desired)
        base.mkdir(parents=True, exist_ok=True)
        keys = ensure_keys(base, desired.settings)
        self._remove_stopped(endpoint)
        found = self.serving(endpoint)
        current, current_dir = found if found is not None else (None, None)
        for other in self.containers(endpoint):
            if other is not current and (current is None or other.id != current.id):
                self._stop(other)  # left over by an interrupted switch
        network = self._network()
        host_net = network == "host"
        serving = desired.settings.get("serving") or {}
        declared = serving.get("port") if isinstance(serving.get("port"), int) else None
        host = str(serving.get("host", "127.0.0.1"))
        port = declared or (_label_port(current) if current is not None else 0) or _free_port(host)
        old = read_config(current_dir) if current_dir is not None else None
        config = _config(desired, generation=(int(old["generation"]) if old else 0) + 1,
                         port=port if host_net else CONTAINER_PORT, keys=[k.sha256 for k in keys])
        if not host_net:
            config["host"] = "0.0.0.0"  # inside the container; published on `host` only
        in_place = (current is not None and current_dir is not None and old is not None
                    and current.image.id == image.image_id and _label_port(current) == port
                    and all(old.get(k) == config[k] for k in ("host", "port", "workers")))
        if in_place:
            assert current is not None and current_dir is not None
            self._write(current_dir, desired, config, store)
            self._wait(current_dir, config["generation"], current, self.apply_timeout_s)
            _drop_unused_models(current_dir, config)
        else:
            if current is not None and not host_net and port == _label_port(current):
                if declared is None:
                    port = _free_port(host)  # beside the old container, then switch: the URL changes
                else:
                    self._stop(current)  # the declared port is published by it: closed until the new one listens
                    current = None
            # on the host network the new server binds the same port beside the old one (SO_REUSEPORT)
            slot = uuid.uuid4().hex[:12]
            where = self.slot_dir(endpoint, slot)
            where.mkdir()
            config["generation"] = 1
            self._write(where, desired, config, store)
            self._start(desired, image.tag, slot, where, host, port, network,
                        share_port=host_net and current is not None)
            if current is not None:
                self._stop(current)
        state = self.peek(endpoint)
        if state is None:
            raise DeployError(f"endpoint {endpoint}: its container on target {self.name} stopped after the change:\n"
                              f"{self._logs(endpoint)}")
        return state

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        """Only the traffic split changes: a new generation, applied by the running server."""
        container, where = self._running(endpoint)
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

        container, where = self._running(endpoint)
        base = self.state_dir(endpoint)
        config = read_config(where)
        if config is None or config.get("auth") != "key":
            raise DeployError(f"endpoint {endpoint} on target {self.name} has no keys to rotate (auth mode none)")
        new = add_key(base)
        for hashes in ([k.sha256 for k in read_keys(base)], [new.sha256]):
            config.update(generation=int(config["generation"]) + 1, keys=hashes)
            write_config(where, config)
            self._wait(where, config["generation"], container, self.apply_timeout_s)
            if len(hashes) > 1:
                keep_newest(base)
        return str(new.value)

    def metrics(self, endpoint: str) -> dict[str, DeploymentMetrics]:
        """The running server's counters per deployment, from /metrics on its published port."""
        state = self.peek(endpoint)
        if state is None or state.url is None:
            raise DeployError(f"endpoint {endpoint} is not running on target {self.name}")
        from mlops.serving.metrics import read as read_metrics

        # serving.metrics has its own DeploymentMetrics (the same fields): the protocol's type is returned
        return {name: DeploymentMetrics(m.requests, m.errors, tuple(m.buckets))
                for name, m in read_metrics(state.url).items()}

    def remove(self, endpoint: str) -> None:
        """Stop every container of the endpoint (SIGTERM: the server drains; killed after the grace period),
        remove them and the config directories (captures not collected yet stay). Idempotent."""
        for container in self.containers(endpoint, running=False):
            self._stop(container)
        remove_state_dir(self.state_dir(endpoint))

    # -- containers ---------------------------------------------------------------------------
    def _write(self, where: Path, desired: EndpointState, config: dict[str, Any], store: ArtifactStore) -> None:
        """The models (fetched by digest), deployed.json and then config.json into a config directory."""
        models = where / "models"
        models.mkdir(exist_ok=True)
        paths.own_path(self.root, str(models.relative_to(self.root)))  # no link, not even here
        fetch_files(store, desired, models)
        _write_json(where / "deployed.json", {"target": self.name, "settings": desired.settings})
        write_config(where, config)

    def _start(self, desired: EndpointState, image: str, slot: str, where: Path, host: str, port: int,
               network: str, *, share_port: bool = False) -> Any:
        labels = {LABEL_MANAGED: "true", LABEL_TARGET: self.name, LABEL_ENDPOINT: desired.endpoint,
                  LABEL_DIGEST: desired.digest(), LABEL_PORT: str(port), LABEL_SLOT: slot}
        labels.update({f"{LABEL_DEPLOYMENT}{d.name}": f"{d.model}@{d.version}" for d in desired.deployments})
        # captures outlive the container's slot (removed with it): the endpoint's capture/ is mounted over the slot's
        captures = self.state_dir(desired.endpoint) / CAPTURE_DIR
        captures.mkdir(exist_ok=True)
        (where / CAPTURE_DIR).mkdir(exist_ok=True)
        where_net: dict[str, Any] = ({"network_mode": "host"} if network == "host"
                                     else {"network": network, "ports": {f"{CONTAINER_PORT}/tcp": (host, port)}})
        try:
            container = self.client.containers.run(
                image, name=f"mlops-{self.name}-{desired.endpoint}-{slot}", detach=True, labels=labels,
                user=f"{os.getuid()}:{os.getgid()}", pid_mode="host",
                volumes={str(where): {"bind": CONFIG_DIR, "mode": "rw"},
                         str(captures): {"bind": f"{CONFIG_DIR}/{CAPTURE_DIR}", "mode": "rw"}},
                command=["--config", f"{CONFIG_DIR}/config.json"] + (["--share-port"] if share_port else []),
                stop_signal="SIGTERM", restart_policy={"Name": "on-failure", "MaximumRetryCount": 3}, **where_net)
        except docker.errors.APIError as e:
            shutil.rmtree(where, ignore_errors=True)
            raise DeployError(f"endpoint {desired.endpoint}: cannot start a container of {image}: {e}") from None
        try:
            self._wait(where, 1, container, self.start_timeout_s)
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
                raise DeployError(f"the container of endpoint {container.labels.get(LABEL_ENDPOINT)} "
                                  f"({container.name}, {status}) did not apply config generation {generation}: "
                                  f"{e}\n{_log_tail(container)}") from None

    def _stop(self, container: Any) -> None:
        """SIGTERM (the server drains), SIGKILL after the grace period; then remove it and its config directory."""
        with contextlib.suppress(docker.errors.NotFound):
            with contextlib.suppress(docker.errors.APIError):
                container.stop(timeout=self.drain_timeout_s)
            container.remove(force=True)
        endpoint, slot = str(container.labels.get(LABEL_ENDPOINT, "")), str(container.labels.get(LABEL_SLOT, ""))
        with contextlib.suppress(DeployError, PathError):
            where = self.slot_dir(endpoint, slot)
            if _mount_source(container) == str(where):
                shutil.rmtree(where, ignore_errors=True)

    def _remove_stopped(self, endpoint: str) -> None:
        for container in self.containers(endpoint, running=False):
            if _status(container) != "running":
                self._stop(container)

    def _running(self, endpoint: str) -> tuple[Any, Path]:
        found = self.serving(endpoint)
        if found is None:
            raise DeployError(f"endpoint {endpoint} is not running on target {self.name}")
        return found

    def _logs(self, endpoint: str) -> str:
        found = self.containers(endpoint, running=False)
        return _log_tail(found[0]) if found else "(no container)"

    def _network(self) -> str:
        """``host``, or the bridge network to publish the port from: the declared one (it must exist), else the
        engine's default ``bridge``, else (an engine without one) ``host``."""
        wanted = self.options.get("network")
        if wanted == "host":
            return "host"
        try:
            found = bool(self.client.networks.list(names=[wanted or "bridge"]))
        except docker.errors.APIError as e:
            raise DeployError(f"target {self.name}: cannot list the engine's networks: {e}") from None
        if wanted and not found:
            raise DeployError(f"target {self.name}: the Docker engine has no network {wanted!r}")
        return str(wanted or "bridge") if found else "host"

    def _image(self, desired: EndpointState) -> Any:
        if self.images is None:
            raise DeployError(f"target {self.name}: no image maker was handed to this docker target (the deploy "
                              f"action gives it mlops.environments.serving_image.serving_image)")
        env = self._environment(desired)
        try:
            return self.images(self.client, env, self.root, self.options.get("base_image"))
        except MlopsError as e:
            raise DeployError(f"endpoint {desired.endpoint}: its image on target {self.name}: {e}") from None

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
