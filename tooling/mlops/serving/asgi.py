"""The thin ASGI adapter between uvicorn (httptools parser, uvloop) and ``App.handle``.

A raw ASGI callable, no framework: the body is read with the size limit enforced as it arrives
(a Content-Length over the limit is refused before reading anything), then handed to the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mlops.serving.app import App, Response, error

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class AsgiApp:
    """ASGI 3 application serving ``app``."""

    def __init__(self, app: App):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        app = self.app
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        limit = app.max_body
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send(send, app.refuse(error(413, f"the request body is larger than {limit} bytes")))
        message = await receive()
        body = message.get("body", b"")
        if message.get("more_body"):
            app.arrivals.n += 1  # the batcher may wait for this request
            try:
                chunks = [body]
                size = len(body)
                while message.get("more_body"):
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        return await _send(send, app.refuse(error(413, f"the request body is larger than {limit} bytes")))
                    chunks.append(chunk)
                body = b"".join(chunks)
            finally:
                app.arrivals.n -= 1
        response = await app.handle(scope["method"], scope["path"], headers, body)
        await _send(send, response)
        if response.after is not None:
            response.after()


async def _send(send: Send, response: Response) -> None:
    headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
