"""The server config file: what one scoring server serves (one endpoint, all its deployments).

Targets write it (``ServerConfig.write``, atomically) and the server reads it at start and again
whenever it changes (``load``). The file is untrusted input to the server: every field is checked,
and model/scoring paths must stay inside the directory holding config.json.

    {"format": 1, "endpoint": "wine", "generation": 7,
     "host": "127.0.0.1", "port": 8080, "workers": 2, "timeout_ms": 10000, "max_request_mb": 16,
     "auth": "key", "keys": ["<sha256 hex of a key>"],
     "deployments": [{"name": "blue", "model": "wine-classifier", "version": 3,
                      "path": "models/<sha256>.onnx", "sha256": "<sha256 of that file>",
                      "batching": {"max_batch_size": 32, "max_delay_ms": 2}, "scoring": null,
                      "capture": {"sample_rate": 1.0, "max_mb": 100, "rotate_rows": 10000, "rotate_s": 60,
                                  "seed": null}}],
     "traffic": {"blue": 100}, "mirror": null}
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import PathError, ServingError

FORMAT = 1
CONFIG_NAME = "config.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of one deployment: at most ``max_batch_size`` rows per onnxruntime call; a
    request waits at most ``max_delay_ms`` for others, and only while others are on their way."""

    max_batch_size: int = 32
    max_delay_ms: float = 2.0


@dataclass(frozen=True)
class CaptureConfig:
    """Inference capture of one deployment (``mlops.serving.capture``): the share of requests recorded, the
    disk it may use, when a file is sealed, and an optional seed that makes the sampling repeatable."""

    sample_rate: float = 1.0
    max_mb: float = 100.0
    rotate_rows: int = 10000
    rotate_s: float = 60.0
    seed: int | None = None


@dataclass(frozen=True)
class DeploymentConfig:
    """One deployment: a model version (an .onnx file) and an optional scoring module."""

    name: str
    model: str
    version: int
    path: str  # relative to the config's directory
    sha256: str
    batching: Batching = field(default_factory=Batching)
    scoring: str | None = None  # a .py file relative to the config's directory
    capture: CaptureConfig | None = None  # None: nothing captured


@dataclass(frozen=True)
class ServerConfig:
    """A whole server config; ``generation`` grows with every change a target writes."""

    endpoint: str
    generation: int
    deployments: tuple[DeploymentConfig, ...]
    traffic: dict[str, int]
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    timeout_ms: int = 10000
    max_request_mb: float = 16.0
    auth: str = "none"  # "key" or "none"
    keys: tuple[str, ...] = ()  # sha256 hex of each valid key
    mirror: dict[str, Any] | None = None  # {"deployment": NAME, "percent": P}
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the file's content)."""
        d = asdict(self)
        d["deployments"] = [asdict(x) for x in self.deployments]
        d["keys"] = list(self.keys)
        return d

    def write(self, directory: Path) -> Path:
        """Write ``directory/config.json`` atomically (the server may read it at any moment)."""
        from mlops.paths import write_atomic

        self.check(directory, files=False)
        path = Path(directory) / CONFIG_NAME
        write_atomic(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        return path

    def deployment(self, name: str) -> DeploymentConfig:
        """The deployment called ``name`` (KeyError when absent)."""
        for d in self.deployments:
            if d.name == name:
                return d
        raise KeyError(name)

    def check(self, directory: Path, *, files: bool = True) -> None:
        """Raise ServingError unless the config is coherent (and, with ``files``, its files exist
        inside ``directory``)."""
        where = str(Path(directory) / CONFIG_NAME)
        names = [d.name for d in self.deployments]
        if len(set(names)) != len(names):
            raise ServingError(f"{where}: deployments: a name appears twice: {names}")
        for name in self.traffic:
            if name not in names:
                raise ServingError(f"{where}: traffic: {name!r} is not a deployment (deployments: {', '.join(names)})")
        if self.mirror is not None and self.mirror["deployment"] not in names:
            raise ServingError(f"{where}: mirror.deployment: {self.mirror['deployment']!r} is not a deployment")
        if self.auth == "key" and not self.keys:
            raise ServingError(f"{where}: auth is 'key' but no keys are given")
        if files:
            for d in self.deployments:
                model_file(directory, d.path, f"{where}: deployments[{d.name}].path")
                if d.scoring is not None:
                    model_file(directory, d.scoring, f"{where}: deployments[{d.name}].scoring")


def model_file(directory: Path, rel: str, where: str) -> Path:
    """``rel`` resolved inside ``directory``; ServingError if it leaves it or is not a file."""
    from mlops.paths import resolve_inside

    try:
        path = resolve_inside(Path(directory), rel, names=())
    except PathError as e:
        raise ServingError(f"{where}: {rel!r} leads outside the server directory ({e})") from None
    if not path.is_file():
        raise ServingError(f"{where}: {rel!r} is not a file in {directory}")
    return path


def load(path: Path) -> ServerConfig:
    """Read and check a config file; ServingError naming the file and field on any problem."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ServingError(f"{path}: cannot read the server config: {e.strerror}") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ServingError(f"{path}: the server config is larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ServingError(f"{path}: not valid JSON: {e}") from None
    cfg = parse(data, str(path))
    cfg.check(path.parent)
    return cfg


def parse(data: Any, where: str) -> ServerConfig:
    """A ServerConfig from the decoded JSON ``data``; ServingError naming ``where`` and the field."""
    r = _Reader(where)
    obj = r.obj(data, "$")
    if obj.get("format") != FORMAT:
        raise ServingError(f"{where}: $.format: expected {FORMAT}, got {obj.get('format')!r}")
    known = {"format", "endpoint", "generation", "host", "port", "workers", "timeout_ms", "max_request_mb",
             "auth", "keys", "deployments", "traffic", "mirror"}
    r.no_extra(obj, known, "$")
    deployments = tuple(_deployment(r, d, f"$.deployments[{i}]")
                        for i, d in enumerate(r.list(obj.get("deployments"), "$.deployments")))
    if not deployments:
        raise ServingError(f"{where}: $.deployments: at least one deployment is needed")
    traffic_raw = r.obj(obj.get("traffic", {}), "$.traffic")
    traffic = {str(k): r.int(v, f"$.traffic.{k}", 0, 1_000_000) for k, v in traffic_raw.items()}
    mirror = None
    if obj.get("mirror") is not None:
        m = r.obj(obj["mirror"], "$.mirror")
        r.no_extra(m, {"deployment", "percent"}, "$.mirror")
        mirror = {"deployment": r.name(m.get("deployment"), "$.mirror.deployment"),
                  "percent": r.number(m.get("percent"), "$.mirror.percent", 0, 100)}
    auth = obj.get("auth", "none")
    if auth not in ("key", "none"):
        raise ServingError(f"{where}: $.auth: expected 'key' or 'none', got {auth!r}")
    keys = tuple(r.hex64(k, f"$.keys[{i}]") for i, k in enumerate(r.list(obj.get("keys", []), "$.keys")))
    host = obj.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host or len(host) > 255:
        raise ServingError(f"{where}: $.host: expected a host name or address")
    return ServerConfig(
        endpoint=r.name(obj.get("endpoint"), "$.endpoint"),
        generation=r.int(obj.get("generation"), "$.generation", 0, 2**62),
        deployments=deployments, traffic=traffic, host=host,
        port=r.int(obj.get("port", 8080), "$.port", 0, 65535),
        workers=r.int(obj.get("workers", 2), "$.workers", 1, 256),
        timeout_ms=r.int(obj.get("timeout_ms", 10000), "$.timeout_ms", 1, 3_600_000),
        max_request_mb=r.number(obj.get("max_request_mb", 16), "$.max_request_mb", 0.001, 4096),
        auth=auth, keys=keys, mirror=mirror)


def _deployment(r: _Reader, data: Any, at: str) -> DeploymentConfig:
    d = r.obj(data, at)
    r.no_extra(d, {"name", "model", "version", "path", "sha256", "batching", "scoring", "capture"}, at)
    batching = Batching()
    if d.get("batching") is not None:
        b = r.obj(d["batching"], f"{at}.batching")
        r.no_extra(b, {"max_batch_size", "max_delay_ms"}, f"{at}.batching")
        batching = Batching(max_batch_size=r.int(b.get("max_batch_size", 32), f"{at}.batching.max_batch_size", 1, 65536),
                            max_delay_ms=r.number(b.get("max_delay_ms", 2), f"{at}.batching.max_delay_ms", 0, 10_000))
    scoring = d.get("scoring")
    if scoring is not None:
        scoring = r.relpath(scoring, f"{at}.scoring")
    return DeploymentConfig(name=r.name(d.get("name"), f"{at}.name"), model=r.name(d.get("model"), f"{at}.model"),
                            version=r.int(d.get("version"), f"{at}.version", 0, 2**62),
                            path=r.relpath(d.get("path"), f"{at}.path"), sha256=r.hex64(d.get("sha256"), f"{at}.sha256"),
                            batching=batching, scoring=scoring, capture=_capture(r, d.get("capture"), f"{at}.capture"))


def _capture(r: _Reader, data: Any, at: str) -> CaptureConfig | None:
    if data is None:
        return None
    c = r.obj(data, at)
    r.no_extra(c, {"sample_rate", "max_mb", "rotate_rows", "rotate_s", "seed"}, at)
    seed = c.get("seed")
    return CaptureConfig(sample_rate=r.number(c.get("sample_rate", 1.0), f"{at}.sample_rate", 0, 1),
                         max_mb=r.number(c.get("max_mb", 100), f"{at}.max_mb", 0.01, 1 << 30),
                         rotate_rows=r.int(c.get("rotate_rows", 10000), f"{at}.rotate_rows", 1, 100_000_000),
                         rotate_s=r.number(c.get("rotate_s", 60), f"{at}.rotate_s", 0.01, 86400 * 7),
                         seed=None if seed is None else r.int(seed, f"{at}.seed", 0, 2**63 - 1))


class _Reader:
    """Field checks that raise ServingError naming the file and the JSON path."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, at: str, message: str) -> ServingError:
        return ServingError(f"{self.where}: {at}: {message}")

    def obj(self, v: Any, at: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(at, f"expected an object, got {type(v).__name__}")
        return v

    def list(self, v: Any, at: str) -> list[Any]:
        if not isinstance(v, list):
            raise self.fail(at, f"expected a list, got {type(v).__name__}")
        return v

    def no_extra(self, obj: dict[str, Any], known: set[str], at: str) -> None:
        extra = sorted(set(obj) - known)
        if extra:
            raise self.fail(at, f"unknown field(s) {', '.join(map(repr, extra))}")

    def int(self, v: Any, at: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(at, f"expected an integer in [{lo}, {hi}], got {v!r}")
        return v

    def number(self, v: Any, at: str, lo: float, hi: float) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise self.fail(at, f"expected a number in [{lo}, {hi}], got {v!r}")
        return float(v)

    def name(self, v: Any, at: str) -> str:
        if not isinstance(v, str) or not _NAME.match(v):
            raise self.fail(at, f"expected a name (letters, digits, '.', '_', '-'), got {v!r}")
        return v

    def hex64(self, v: Any, at: str) -> str:
        if not isinstance(v, str) or not _HEX64.match(v):
            raise self.fail(at, f"expected 64 lowercase hex digits (a sha256), got {v!r}")
        return v

    def relpath(self, v: Any, at: str) -> str:
        if not isinstance(v, str) or not v or len(v) > 1024 or "\x00" in v:
            raise self.fail(at, f"expected a relative path, got {v!r}")
        return v
