"""HTTP/1.1 for the scoring server: httptools' parser (llhttp, as uvicorn uses) on a uvloop protocol.

Why not an ASGI server: for 1-row requests the HTTP stack is the cost, and measured here uvicorn
(raw ASGI app, httptools, uvloop) spends about as much per request as the model and protocol work
together (an ASGI message dict per event, a task per request, headers and body written by two
syscalls). This protocol feeds bytes to the same parser, hands complete requests to
``App.handle`` and writes each answer with one ``write``. It keeps what HTTP/1.1 needs: keep-alive,
pipelined requests answered in order, chunked request bodies, ``Expect: 100-continue``, the body
size limit enforced while the body arrives (answered 413 at once, the connection then closed),
idle connections closed, and a drain that stops accepting and lets requests in flight finish.
"""

from __future__ import annotations

import asyncio
import collections
import http
import time
from functools import partial
from typing import Any

import httptools

from mlops.serving.app import App, Response, error

_STATUS = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in http.HTTPStatus}
_MAX_HEADERS = 100
_MAX_HEAD_BYTES = 64 * 1024  # URL and headers together
_MAX_PIPELINE = 32  # requests queued on one connection before it stops reading
IDLE_S = 75.0
_EARLY_AUTH_BYTES = 64 * 1024  # a body larger than this is read only once the request's key is known good


class Server:
    """All connections of one worker."""

    def __init__(self, app: App, idle_s: float = IDLE_S):
        self.app = app
        self.idle_s = idle_s
        self.connections: set[Connection] = set()
        self.draining = False
        self.server: asyncio.base_events.Server | None = None

    async def start(self, sock: Any) -> None:
        """Serve connections accepted on the listening socket ``sock``."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=2048)
        self._sweeper = loop.create_task(self._sweep())

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting, close idle connections, let the requests in flight finish (at most
        ``timeout_s``), then close whatever is left."""
        self.draining = True
        self.app.draining = True
        if self.server is not None:
            self.server.close()
        for c in list(self.connections):
            c.close_if_idle()
        deadline = time.monotonic() + timeout_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self.connections):
            c.transport.abort()
        self._sweeper.cancel()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.idle_s))
            limit = time.monotonic() - self.idle_s
            for c in list(self.connections):
                # A head still arriving after idle_s is closed however it trickles in (slowloris):
                # each byte refreshes ``last``, so that alone would keep it open for ever.
                if (c.last < limit and not c.busy) or (c.head_since is not None and c.head_since < limit):
                    c.transport.close()


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: Server):
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self.busy = False
        self.closed = False
        self.refused = False  # a request was refused mid-way: the rest of the input is ignored
        self.paused = False
        self.queued = 0  # body bytes waiting in the queue
        self.receiving = False
        self.last = time.monotonic()
        self.head_since: float | None = None  # when the head being received began
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._arrived()
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.last = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(error(400, "protocol upgrades are not supported"))
        except httptools.HttpParserError as e:
            self._refuse(error(400, f"malformed HTTP request: {_reason(e)}"))

    # -- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.head_since = time.monotonic()
        self.url = b""
        self.headers = {}
        self.body = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.size += len(url)
        if self.size > _MAX_HEAD_BYTES:
            raise ValueError(f"the URL is longer than {_MAX_HEAD_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size += len(name) + len(value)
        if len(self.headers) >= _MAX_HEADERS or self.size > _MAX_HEAD_BYTES:
            raise ValueError(f"more than {_MAX_HEADERS} headers or {_MAX_HEAD_BYTES} bytes of them")
        key = name.decode("latin-1").lower()
        if key == "transfer-encoding" and key in self.headers:  # a list split over lines: all of it counts
            self.headers[key] += ", " + value.decode("latin-1")
        else:
            self.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_since = None
        length = self.headers.get("content-length")
        limit = self.app.max_body
        if length is not None and length.isdigit() and int(length) > limit:
            self._refuse(error(413, f"the request body is larger than {limit} bytes"))
            return
        coding = self.headers.get("transfer-encoding")
        if coding is not None and coding.replace(" ", "").lower() != "chunked":
            # llhttp decodes the chunks only: a gzip (or other) coding would reach the model as is
            self._refuse(error(501, f"transfer coding {coding[:60]!r} is not supported: send 'chunked' only"))
            return
        if coding is not None or (length is not None and length.isdigit() and int(length) > _EARLY_AUTH_BYTES):
            # a large (or chunked) body: the key is checked before it is read (and before 100 Continue)
            refusal = self.app.unauthorized(self.url.split(b"?", 1)[0].decode("latin-1"), self.headers)
            if refusal is not None:
                self._refuse(refusal)
                return
        if self.headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.size = 0  # from here on: the body's size
        self.receiving = True
        self.app.arrivals.n += 1  # until its body is complete, the batcher may wait for it

    def on_body(self, body: bytes) -> None:
        if self.refused:
            return
        self.size += len(body)
        if self.size > self.app.max_body:
            self._refuse(error(413, f"the request body is larger than {self.app.max_body} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        self._arrived()
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        method = self.parser.get_method().decode("latin-1")
        self.queue.append((method, path, self.headers, body, self.parser.should_keep_alive(), None))
        self.queued += len(body)
        if not self.busy:
            self._next()
        # bounded by bytes too: 32 pipelined bodies of max_body each would hold 32 times the limit
        if (len(self.queue) > _MAX_PIPELINE or self.queued > self.app.max_body) and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # -- answering ------------------------------------------------------------------------------
    def _arrived(self) -> None:
        if self.receiving:
            self.receiving = False
            self.app.arrivals.n -= 1

    def _refuse(self, response: Response) -> None:
        """Answer ``response`` after the requests before it, then close: the rest is not read."""
        self._arrived()
        self.refused = True
        self.queue.append(("", "", {}, b"", False, self.app.refuse(response)))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while self.queue and not self.busy and not self.closed:
            method, path, headers, body, keep, refusal = self.queue.popleft()
            self.queued -= len(body)
            if refusal is not None:
                self._write(refusal, False, method)
                return
            self.busy = True
            task = asyncio.get_running_loop().create_task(self.app.handle(method, path, headers, body))
            task.add_done_callback(partial(self._done, keep=keep, method=method))
        if (self.paused and len(self.queue) <= _MAX_PIPELINE // 2 and self.queued <= self.app.max_body // 2
                and not self.closed):
            self.paused = False
            self.transport.resume_reading()

    def _done(self, task: asyncio.Task[Response], *, keep: bool, method: str) -> None:
        self.busy = False
        if self.closed:
            return
        try:
            response = task.result()
        except BaseException:  # handle() never raises; a cancelled task is all that is left
            response = error(503, "the server is shutting down")
        keep = keep and not self.server.draining
        self._write(response, keep, method)
        if response.after is not None:
            response.after()
        if keep:
            self._next()

    def _write(self, response: Response, keep: bool, method: str) -> None:
        body = response.body
        parts = [_STATUS.get(response.status) or b"HTTP/1.1 %d Unknown\r\n" % response.status]
        for name, value in response.headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"content-length: %d\r\n" % len(body))
        if not keep:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if method != "HEAD":
            parts.append(body)
        self.transport.write(b"".join(parts))
        self.last = time.monotonic()
        if not keep:
            self.closed = True
            self.transport.close()

    def close_if_idle(self) -> None:
        """Close now when no request is in flight (a draining server)."""
        if not self.busy and not self.queue:
            self.transport.close()


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:200]
