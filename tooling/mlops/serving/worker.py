"""One worker process of a scoring server: our HTTP protocol (httptools on uvloop) on a SO_REUSEPORT
socket of its own.

Each worker binds the server's port itself (the kernel spreads connections over the workers), so
on SIGTERM it closes its socket at once (new connections go to no one: refused once every worker
has) while the requests in flight finish. It watches config.json (its inode and
mtime, a few times a second, or at once on SIGHUP) and swaps in the new config; then it writes
``acks/<pid>`` holding the generation it serves, or ``acks/<pid>.error`` when it could not apply it.
Captured requests (``mlops.serving.capture``) are written by a thread of the worker; a drain writes the last
ones and seals the files before the worker exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from mlops.errors import ServingError
from mlops.serving import config as server_config

log = logging.getLogger("mlops.serving")
POLL_S = 0.25
FLUSH_S = 0.1  # how old /metrics may be about the other workers
METRICS_ENV = "MLOPS_SERVING_METRICS_DIR"
_FIXED = ("host", "port", "workers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.serving.worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int, help="the port the server reserved")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s worker {os.getpid()} %(levelname)s %(message)s")
    import uvloop

    try:
        return uvloop.run(_serve(args.config.absolute(), args.port))
    except ServingError as e:
        log.error("%s", e)
        return 3


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port) that every worker of the server shares through SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


async def _serve(path: Path, port: int) -> int:
    from mlops import __version__
    from mlops.serving.app import App, build_state
    from mlops.serving.batching import Arrivals
    from mlops.serving.capture import Flusher
    from mlops.serving.http import Server
    from mlops.serving.metrics import Meters

    directory = path.parent
    loop = asyncio.get_running_loop()
    cfg = server_config.load(path)
    identity = _identity(path)
    metrics_dir = os.environ.get(METRICS_ENV)
    meters, arrivals = Meters(Path(metrics_dir) if metrics_dir else None), Arrivals()
    state = await loop.run_in_executor(None, build_state, cfg, directory, meters, arrivals, None)
    app = App(state, meters, arrivals, __version__)
    sock = bind(cfg.host, port)
    sock.listen(2048)
    sock.setblocking(False)
    server = Server(app)
    await server.start(sock)
    stop = asyncio.Event()
    wake = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, wake.set)
    captures = Flusher(lambda: _captures(app.state), meters.capture)
    watcher = loop.create_task(_watch(path, identity, cfg, app, wake, captures))
    orphan = loop.create_task(_exit_with_parent(stop, os.getppid()))
    flusher = loop.create_task(_flush_metrics(meters))
    capturing = loop.create_task(captures.run())
    _ack(directory, cfg.generation)
    log.info("serving endpoint %s generation %d on %s:%d", cfg.endpoint, cfg.generation, cfg.host, port)
    try:
        await stop.wait()
        log.info("draining")
        await server.drain(app.state.timeout + 2.0)
        if app.background:  # mirrored requests under way: their answers are captured too
            await asyncio.wait(set(app.background), timeout=app.state.timeout + 1.0)
    finally:
        watcher.cancel()
        orphan.cancel()
        flusher.cancel()
        capturing.cancel()
        try:
            await captures.close()  # every sampled row written and its file sealed before the worker exits
        except Exception:  # a bug of ours must not keep the worker from exiting
            log.exception("could not write the last captured rows")
        meters.flush()
        with contextlib.suppress(OSError):
            (directory / "acks" / str(os.getpid())).unlink()
    return 0


async def _flush_metrics(meters: Any) -> None:
    """Write this worker's counts every FLUSH_S, in a thread: a file write may take a millisecond,
    which the event loop (and the p99 of the requests waiting on it) should not pay."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(FLUSH_S)
        if meters.dirty:
            meters.dirty = False
            await loop.run_in_executor(None, meters.write, meters.snapshot())


async def _exit_with_parent(stop: asyncio.Event, parent: int) -> None:
    """Drain and exit when the master process is gone (killed without a chance to stop us)."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.error("the server's master process %d is gone: draining", parent)
    stop.set()


def _captures(state: Any) -> list[Any]:
    return [d.capture for d in state.deployments.values() if d.capture is not None]


async def _watch(path: Path, identity: tuple[int, ...] | None, cfg: server_config.ServerConfig, app: Any,
                 wake: asyncio.Event, captures: Any) -> None:
    """Apply config.json whenever it changes; keep serving the current one when the new one is bad."""
    from mlops.serving.app import build_state

    loop = asyncio.get_running_loop()
    directory = path.parent
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), POLL_S)
        wake.clear()
        now = _identity(path)
        if now is None or now == identity:
            continue
        identity = now
        generation = None
        try:
            new = server_config.load(path)
            generation = new.generation
            changed = [f for f in _FIXED if getattr(new, f) != getattr(cfg, f)]
            if changed:
                raise ServingError(f"{path}: {', '.join(changed)} changed: that needs a restart of the server")
            state = await loop.run_in_executor(None, build_state, new, directory, app.meters, app.arrivals, app.state)
        except ServingError as e:
            log.error("keeping generation %d: %s", app.state.generation, e)
            _ack_error(directory, generation, now, str(e))
            continue
        except Exception as e:  # a bug of ours must not stop the worker: it keeps serving what it has
            log.exception("keeping generation %d: could not apply %s", app.state.generation, path)
            _ack_error(directory, generation, now, f"internal error: {type(e).__name__}: {e}")
            continue
        captures.track(_captures(app.state))  # the rows they hold get written, their files sealed
        app.state = state
        cfg = new
        _ack(directory, new.generation)
        log.info("now serving generation %d", new.generation)


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _ack(directory: Path, generation: int) -> None:
    from mlops.paths import write_atomic

    acks = directory / "acks"
    with contextlib.suppress(OSError):
        (acks / f"{os.getpid()}.error").unlink()
    write_atomic(acks / str(os.getpid()), f"{generation}\n".encode())


def _ack_error(directory: Path, generation: int | None, identity: tuple[int, ...], message: str) -> None:
    from mlops.paths import write_atomic

    doc = {"generation": generation, "config": list(identity), "error": message}
    write_atomic(directory / "acks" / f"{os.getpid()}.error", json.dumps(doc).encode())


if __name__ == "__main__":
    sys.exit(main())
