"""A real HTTP server on 127.0.0.1, in a thread, that records every request and answers from a script.

    with Stub() as server:
        server.answer("POST", "/hook", 500)            # the first POST /hook gets a 500
        server.answer("POST", "/hook", 200)            # the next one a 200
        ... call server.url + "/hook" ...
        assert [r.status for r in server.requests] ...

Unscripted requests get ``default`` (a function of the request, or 200 with an empty JSON object).
Handlers may also be functions ``(Request) -> Reply`` for stateful stand-ins (the GitHub API).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str]  # names lowercased
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # bytes, or JSON-able (dumped)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to hang before answering (cut short when the stub stops)


Handler = Callable[[Request], Reply]


class Stub:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: dict[tuple[str, str], list[Reply]] = {}
        self.default: Handler = lambda _r: Reply(200, {})
        self._stop = threading.Event()
        self._lock = threading.Lock()
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with stub._lock:
                    stub.requests.append(req)
                    queue = stub.script.get((req.method, req.path))
                    reply = queue.pop(0) if queue else None
                if reply is None:
                    reply = stub.default(req)
                if reply.delay:
                    stub._stop.wait(reply.delay)
                data = reply.body if isinstance(reply.body, bytes) else (
                    b"" if reply.body is None else json.dumps(reply.body).encode())
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout under test)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.02), daemon=True)

    def answer(self, method: str, path: str, status: int = 200, body: Any = None,
               headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.script.setdefault((method, path), []).append(Reply(status, body, dict(headers or {}), delay))

    def __enter__(self) -> Stub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
