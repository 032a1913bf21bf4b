"""The request handling of a scoring server, independent of the HTTP server library.

``App.handle(method, path, headers, body)`` answers one request (headers: lowercase names). Every
answer other than a success is ``{"error": "..."}`` with a 4xx (the request is wrong) or a 5xx (the
model failed, timed out, or the server is draining); no traceback ever reaches a client. Routes,
deployments and their precomputed answers live in an immutable ``State``; a config reload builds a
new one beside it and swaps one reference, so a request sees either the old or the new, whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from mlops.serving.batching import Arrivals, Batcher
from mlops.serving.capture import DeploymentCapture, capture_dir
from mlops.serving.config import DeploymentConfig, ServerConfig
from mlops.serving.metrics import Meters
from mlops.serving.model import Model, ModelFailure
from mlops.serving.routing import Router
from mlops.serving.tensors import BadRequest, Request, decode, encode

log = logging.getLogger("mlops.serving")

Headers = list[tuple[bytes, bytes]]
JSON = b"application/json"
_JSON_HEADERS: Headers = [(b"content-type", JSON)]
_TEXT_HEADERS: Headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
_CONTENT_TYPES = ("application/json", "application/octet-stream")
PIN_HEADER = "x-mlops-deployment"

# route kinds
LIVE, READY, SERVER, METRICS, MODEL, MODEL_READY, INFER = range(7)
_OPEN = (LIVE, READY, METRICS)  # answered without a key


class Response:
    """One answer; ``after`` runs once it has been sent (mirroring: off the request's path)."""

    __slots__ = ("status", "headers", "body", "after")

    def __init__(self, status: int, headers: Headers, body: bytes, after: Callable[[], None] | None = None):
        self.status, self.headers, self.body, self.after = status, headers, body, after


def error(status: int, message: str, headers: Headers | None = None) -> Response:
    """A ``{"error": message}`` answer."""
    return Response(status, headers or _JSON_HEADERS, orjson.dumps({"error": message}))


class Live:
    """A deployment as served by one state: its model, batch queue and precomputed headers."""

    __slots__ = ("name", "version", "model", "batcher", "headers", "binary_headers", "metadata", "capture")

    def __init__(self, cfg: DeploymentConfig, model: Model, batcher: Batcher, metadata: bytes,
                 capture: DeploymentCapture | None = None):
        self.name, self.version, self.model, self.batcher = cfg.name, str(cfg.version), model, batcher
        self.capture = capture
        self.headers: Headers = [(b"content-type", JSON), (PIN_HEADER.encode(), cfg.name.encode())]
        self.binary_headers: Headers = [(b"content-type", b"application/octet-stream"),
                                        (PIN_HEADER.encode(), cfg.name.encode())]
        self.metadata = metadata


class State:
    """Everything one config generation serves, with its routes precomputed."""

    def __init__(self, cfg: ServerConfig, models: dict[str, Model], meters: Meters, arrivals: Arrivals,
                 captures: dict[str, DeploymentCapture] | None = None):
        self.cfg = cfg
        self.endpoint = cfg.endpoint
        self.generation = cfg.generation
        self.keys = tuple(k.encode() for k in cfg.keys) if cfg.auth == "key" else None
        self.timeout = cfg.timeout_ms / 1000.0
        self.max_body = int(cfg.max_request_mb * 1024 * 1024)
        self.router = Router(cfg.traffic, cfg.mirror)
        versions = sorted({str(d.version) for d in cfg.deployments}, key=int)
        self.deployments: dict[str, Live] = {}
        for d in cfg.deployments:
            model = models[d.name]
            capture = (captures or {}).get(d.name)
            batcher = Batcher(model, d.batching.max_batch_size, d.batching.max_delay_ms, arrivals,
                              meters.batch_observer(cfg.endpoint, d.name), capture)
            meta = orjson.dumps(model.metadata(cfg.endpoint, versions))
            self.deployments[d.name] = Live(d, model, batcher, meta, capture)
        # /versions/N serves the first deployment (by traffic weight, then config order) holding N.
        ranked = sorted(cfg.deployments, key=lambda d: -cfg.traffic.get(d.name, 0))
        by_version: dict[str, str] = {}
        for d in ranked:
            by_version.setdefault(str(d.version), d.name)
        self.primary = ranked[0].name
        base = f"/v2/models/{cfg.endpoint}"
        self.routes: dict[str, tuple[int, str | None]] = {
            "/v2/health/live": (LIVE, None), "/v2/health/ready": (READY, None), "/v2": (SERVER, None),
            "/v2/": (SERVER, None), "/metrics": (METRICS, None),
            base: (MODEL, None), base + "/ready": (MODEL_READY, None), base + "/infer": (INFER, None)}
        for version, name in by_version.items():
            vbase = f"{base}/versions/{version}"
            self.routes.update({vbase: (MODEL, name), vbase + "/ready": (MODEL_READY, name),
                                vbase + "/infer": (INFER, name)})

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header holds a valid key (compared by digest, in constant time)."""
        keys = self.keys
        if keys is None:
            return True
        if not header or not header.startswith("Bearer "):
            return False
        digest = hashlib.sha256(header[7:].strip().encode("utf-8", "replace")).hexdigest().encode()
        ok = False
        for k in keys:  # every key compared: the time does not tell which one matched
            ok |= hmac.compare_digest(digest, k)
        return ok


class App:
    """One worker's server: the current state, metrics, and the requests being received."""

    def __init__(self, state: State, meters: Meters, arrivals: Arrivals, version: str):
        self.state = state
        self.meters = meters
        self.arrivals = arrivals
        self.draining = False
        self.server_meta = orjson.dumps({"name": "mlops", "version": version, "extensions": ["binary_tensor_data"]})
        self.background: set[asyncio.Task[Any]] = set()

    @property
    def max_body(self) -> int:
        """The largest request body the current config accepts, in bytes."""
        return self.state.max_body

    def refuse(self, response: Response) -> Response:
        """Count an answer given before the request reached ``handle`` (a body too large)."""
        return self._count(self.state, response)

    def unauthorized(self, path: str, headers: Mapping[str, str]) -> Response | None:
        """The 401 for a request to a keyed route without a valid key, known from its head alone (None: go on),
        so that a client without a key cannot make the server hold a large body."""
        state = self.state
        route = state.routes.get(path)
        if route is None or route[0] in _OPEN or state.authorized(headers.get("authorization")):
            return None
        return _unauthorized()

    async def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request; never raises."""
        state = self.state
        route = state.routes.get(path)
        if route is None:
            if path.startswith("/v2/models/"):
                return self._count(state, error(404, f"no such model or version: {path} (this server serves "
                                                     f"/v2/models/{state.endpoint}, versions "
                                                     f"{', '.join(sorted({d.version for d in state.deployments.values()}))})"))
            return self._count(state, error(404, f"no such route: {path}"))
        kind, pinned = route
        if kind not in _OPEN and not state.authorized(headers.get("authorization")):
            return self._count(state, _unauthorized())
        if kind == INFER:
            if method != "POST":
                return error(405, f"{path} takes POST")
            return await self.infer(state, pinned, headers, body)
        if method not in ("GET", "HEAD"):
            return error(405, f"{path} takes GET")
        if kind == LIVE:
            return Response(200, _JSON_HEADERS, b"{}")
        if kind == READY:
            return error(503, "the server is draining") if self.draining else Response(200, _JSON_HEADERS, b"{}")
        if kind == SERVER:
            return Response(200, _JSON_HEADERS, self.server_meta)
        if kind == METRICS:
            return Response(200, _TEXT_HEADERS, self.meters.exposition())
        live, problem = self._deployment(state, pinned, headers, split=False)
        if live is None:
            return problem or error(404, "no deployment")
        if kind == MODEL:
            return Response(200, _JSON_HEADERS, live.metadata)
        return error(503, "the server is draining") if self.draining else Response(200, _JSON_HEADERS, b"{}")

    def _deployment(self, state: State, pinned: str | None, headers: Mapping[str, str], split: bool
                    ) -> tuple[Live | None, Response | None]:
        """The deployment a request goes to: header pin, then the version in the path, then the split
        (``split`` False: metadata and readiness, which describe the primary deployment)."""
        pin = headers.get(PIN_HEADER)
        if pin is not None:
            live = state.deployments.get(pin)
            if live is None:
                return None, error(404, f"no deployment {pin!r} on endpoint {state.endpoint!r} (deployments: "
                                        f"{', '.join(state.deployments)})")
            if pinned is not None and pinned != live.name and live.version != state.deployments[pinned].version:
                return None, error(400, f"deployment {pin!r} serves version {live.version}, not the path's "
                                        f"version {state.deployments[pinned].version}")
            return live, None
        if pinned is not None:
            return state.deployments[pinned], None
        name = state.router.pick() if split else state.primary
        if name is None:
            return None, error(503, f"endpoint {state.endpoint!r} has no traffic weights: pin a deployment with "
                                    f"the {PIN_HEADER} header")
        return state.deployments[name], None

    async def infer(self, state: State, pinned: str | None, headers: Mapping[str, str], body: bytes) -> Response:
        """An infer request, checked, routed, batched and answered."""
        t0 = time.perf_counter()
        live: Live | None = None
        try:
            ctype = headers.get("content-type")
            if ctype is not None and ctype.split(";", 1)[0].strip().lower() not in _CONTENT_TYPES:
                raise BadRequest(f"content type {ctype!r} is not accepted: send application/json (or "
                                 "application/octet-stream with binary tensors)", 415)
            encoding = headers.get("content-encoding")
            if encoding is not None and encoding.strip().lower() != "identity":
                raise BadRequest(f"content encoding {encoding!r} is not accepted: send the body uncompressed", 415)
            if len(body) > state.max_body:
                raise BadRequest(f"the request body is larger than {state.cfg.max_request_mb:g} MB", 413)
            json_length = _header_int(headers.get("inference-header-content-length"))
            request = decode(body, json_length)
            live, problem = self._deployment(state, pinned, headers, split=True)
            if live is None:
                assert problem is not None
                return self._count(state, problem, None, t0)
            response = await self._score(state, live, request, t0)
            shadow = state.router.mirror(live.name) if pinned is None and PIN_HEADER not in headers else None
            if shadow is not None:
                response.after = self._mirror_later(state, state.deployments[shadow], request.inputs)
            return self._count(state, response, live, t0)
        except BadRequest as e:
            return self._count(state, error(e.status, str(e)), live, t0)
        except ModelFailure as e:
            return self._count(state, error(500, str(e)), live, t0)
        except Exception as e:  # a bug of ours: logged in full, answered in one line
            log.exception("internal error answering %s", "infer")
            return self._count(state, error(500, f"internal error: {type(e).__name__}"), live, t0)

    async def _score(self, state: State, live: Live, request: Request, t0: float) -> Response:
        model = live.model
        inputs = request.inputs
        if model.preprocess is not None:
            inputs = _hook(model.preprocess, inputs, "preprocess")
            try:
                rows = model.check(inputs)
            except BadRequest as e:
                raise ModelFailure(f"the scoring module's preprocess returned inputs the model cannot take: {e}") from None
        else:
            rows = model.check(inputs)
        outputs = await live.batcher.submit(inputs, rows, t0 + state.timeout)
        if model.postprocess is not None:
            outputs = _hook(model.postprocess, outputs, "postprocess")
        if request.outputs is None:
            chosen = [(name, value, request.binary_all) for name, value in outputs.items()]
        else:
            chosen = []
            for name, binary in request.outputs:
                if name not in outputs:
                    raise BadRequest(f"unknown output {name!r}: the model's outputs are {', '.join(outputs)}")
                chosen.append((name, np.asarray(outputs[name]), binary or request.binary_all))
        data, json_length = encode(state.endpoint, live.version, request.id, chosen)
        if json_length is None:
            return Response(200, live.headers, data)
        return Response(200, [*live.binary_headers, (b"inference-header-content-length", str(json_length).encode())],
                        data)

    def _mirror_later(self, state: State, shadow: Live, inputs: dict[str, np.ndarray]) -> Callable[[], None]:
        def start() -> None:
            task = asyncio.get_running_loop().create_task(self._mirror(state, shadow, inputs))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        return start

    async def _mirror(self, state: State, shadow: Live, inputs: dict[str, np.ndarray]) -> None:
        """Score a copy of a request on the shadow deployment; only its metrics keep the outcome."""
        t0 = time.perf_counter()
        try:
            response = await self._score(state, shadow, Request(inputs, None, None, False), t0)
        except BadRequest as e:
            response = error(e.status, str(e))
        except ModelFailure as e:
            response = error(500, str(e))
        except Exception:  # a bug of ours; the client already has its answer
            log.exception("internal error mirroring to %s", shadow.name)
            response = error(500, "internal error")
        self._count(state, response, shadow, t0)

    def _count(self, state: State, response: Response, live: Live | None = None, t0: float | None = None) -> Response:
        if live is None:
            self.meters.count(state.endpoint, "", "", response.status, None)
        else:
            self.meters.count(state.endpoint, live.name, live.version, response.status,
                              None if t0 is None else time.perf_counter() - t0)
        return response


def _unauthorized() -> Response:
    return error(401, "a valid key is needed: send 'Authorization: Bearer <key>'",
                 [(b"content-type", JSON), (b"www-authenticate", b"Bearer")])


def _header_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {value[:40]!r}") from None


def _hook(fn: Callable[[dict[str, np.ndarray]], Any], arrays: dict[str, np.ndarray], name: str
          ) -> dict[str, np.ndarray]:
    """Call a scoring-module hook: ValueError is the caller's fault (400), the rest a model failure (500)."""
    try:
        result = fn(arrays)
    except ValueError as e:
        raise BadRequest(f"{name}: {e}") from None
    except Exception as e:  # user code
        log.exception("scoring module %s failed", name)
        raise ModelFailure(f"the scoring module's {name} failed: {type(e).__name__}: {e}") from None
    if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
        raise ModelFailure(f"the scoring module's {name} must return a dict of name -> array")
    return {k: np.asarray(v) for k, v in result.items()}


def build_state(cfg: ServerConfig, directory: Path, meters: Meters, arrivals: Arrivals,
                previous: State | None = None) -> State:
    """Load every deployment of ``cfg`` (reusing the previous state's models that did not change)."""
    reuse: dict[tuple[Any, ...], Model] = {}
    if previous is not None:
        for live in previous.deployments.values():
            reuse[_model_key(live.model.cfg, directory)] = live.model
    models = {}
    for d in cfg.deployments:
        key = _model_key(d, directory)
        model = reuse.get(key)
        if model is None:
            model = reuse[key] = Model(d, directory)
        models[d.name] = model
    return State(cfg, models, meters, arrivals, _captures(cfg, directory, models, previous))


def _captures(cfg: ServerConfig, directory: Path, models: dict[str, Model], previous: State | None
              ) -> dict[str, DeploymentCapture]:
    """The capture of each deployment that has one; an unchanged one is kept from ``previous`` (its open file
    goes on), a changed one starts anew (the flusher seals the old one's file)."""
    old = {}
    if previous is not None:
        old = {live.capture.key(): live.capture for live in previous.deployments.values() if live.capture is not None}
    out = {}
    for d in cfg.deployments:
        if d.capture is None or d.capture.sample_rate <= 0:
            continue
        cap = DeploymentCapture(capture_dir(directory, d.name), cfg.endpoint, d.name, d.version, d.capture,
                                len(models[d.name].inputs))
        out[d.name] = old.get(cap.key(), cap)
    return out


def _model_key(d: DeploymentConfig, directory: Path) -> tuple[Any, ...]:
    scoring = None
    if d.scoring is not None:
        try:
            scoring = hashlib.sha256((directory / d.scoring).read_bytes()).hexdigest()
        except OSError:
            scoring = "unreadable"
    return (d.path, d.sha256, d.scoring, scoring)
