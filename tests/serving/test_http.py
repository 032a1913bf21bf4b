"""HTTP/1.1 as clients speak it, on raw sockets: keep-alive, pipelining, chunked bodies,
Expect: 100-continue, HEAD, Connection: close, HTTP/1.0, malformed requests."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from tests.serving.conftest import deployment

INFER = "/v2/models/iris/infer"
BODY = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                               "data": [5.1, 3.5, 1.4, 0.2]}]}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Any:
    from tests.serving.conftest import Server

    s = Server(tmp_path_factory.mktemp("http"), [deployment("blue", models["iris"], 1)], workers=1).start()
    yield s
    s.stop()


def infer_request(extra: str = "", body: bytes = BODY) -> bytes:
    return (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def read_answers(s: socket.socket, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``n`` answers (Content-Length framed) from ``s``."""
    buf = b""
    answers = []
    while len(answers) < n:
        while b"\r\n\r\n" not in buf:
            more = s.recv(65536)
            if not more:
                raise AssertionError(f"connection closed after {len(answers)} answers: {buf!r}")
            buf += more
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers["content-length"])
        while len(buf) < length:
            buf += s.recv(65536)
        answers.append((int(lines[0].split()[1]), headers, buf[:length]))
        buf = buf[length:]
    return answers


def connect(server: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def test_pipelined_requests_are_answered_in_order(server: Any) -> None:
    with connect(server) as s:
        bad = infer_request(body=b'{"inputs": 1}')
        s.sendall(infer_request() + bad + infer_request() + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = read_answers(s, 4)
    assert [a[0] for a in answers] == [200, 400, 200, 200]
    assert answers[3][2] == b"{}"


def test_keep_alive_chunked_and_continue(server: Any) -> None:
    with connect(server) as s:
        for _ in range(3):  # one connection, several requests
            s.sendall(infer_request())
            assert read_answers(s, 1)[0][0] == 200
        half = len(BODY) // 2
        s.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode()
                  + b"%x\r\n%s\r\n" % (half, BODY[:half]))
        s.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY) - half, BODY[half:]))
        assert read_answers(s, 1)[0][0] == 200
        s.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {len(BODY)}\r\n"
                  "\r\n".encode())
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(BODY)
        assert read_answers(s, 1)[0][0] == 200


def test_head_close_and_http10(server: Any) -> None:
    with connect(server) as s:
        s.sendall(b"HEAD /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"\r\n\r\n") < 2 or not data.endswith(b"{}"):
            data += s.recv(65536)
        assert data.count(b"{}") == 1  # the HEAD answer has no body
    with connect(server) as s:
        s.sendall(infer_request("Connection: close\r\n"))
        status, headers, _ = read_answers(s, 1)[0]
        assert status == 200 and headers["connection"] == "close" and s.recv(10) == b""
    with connect(server) as s:
        s.sendall(f"POST {INFER} HTTP/1.0\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY)
        assert read_answers(s, 1)[0][0] == 200 and s.recv(10) == b""


@pytest.mark.parametrize("raw", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                                 b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                                 b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
                                 b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                                 b"GET / HTTP/1.1\r\nX: " + b"b" * 70000 + b"\r\n\r\n"])
def test_malformed_http_is_a_400_and_a_close(server: Any, raw: bytes) -> None:
    with connect(server) as s:
        s.sendall(raw)
        answers = read_answers(s, 2 if b"Upgrade" in raw else 1)  # an upgrade: its request answered (404), then
        status, headers, body = answers[-1]                         # the connection refused and closed
        assert status == 400 and headers["connection"] == "close" and json.loads(body)["error"]
        assert s.recv(10) == b""
    with connect(server) as s:  # the server is fine
        s.sendall(infer_request())
        assert read_answers(s, 1)[0][0] == 200


@pytest.mark.parametrize("coding", ["gzip, chunked", "gzip\r\nTransfer-Encoding: chunked"])
def test_a_transfer_coding_other_than_chunked_is_refused(server: Any, coding: str) -> None:
    """llhttp undoes the chunks only: a gzip body would otherwise be taken for the JSON itself."""
    with connect(server) as s:
        s.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n".encode()
                  + b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n")
        status, headers, body = read_answers(s, 1)[0]
        assert status == 501 and "transfer coding" in json.loads(body)["error"]


def test_a_large_body_without_a_key_is_refused_before_it_is_read(servers: Any, models: dict[str, Path]) -> None:
    """No 100 Continue and no buffering of megabytes for a client without a key: the 401 comes from the head."""
    import hashlib

    from tests.serving.conftest import KEY

    s = servers([deployment("blue", models["iris"], 1)], auth="key", workers=1,
                keys=[hashlib.sha256(KEY.encode()).hexdigest()]).start()
    for extra in ("Content-Length: 900000\r\nExpect: 100-continue\r\n", "Transfer-Encoding: chunked\r\n"):
        with connect(s) as c:
            c.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())  # the head alone
            status, headers, body = read_answers(c, 1)[0]
            assert status == 401 and headers["connection"] == "close", (status, body)
    with connect(s) as c:  # with the key, the body is read (and here found not to be JSON)
        c.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                  "Content-Length: 70000\r\n\r\n".encode() + b" " * 70000)
        assert read_answers(c, 1)[0][0] == 400


class _NoApp:
    """Just what a connection asks of the app before a request is complete."""

    max_body = 1024

    def __init__(self) -> None:
        from mlops.serving.batching import Arrivals

        self.arrivals = Arrivals()
        self.draining = False


def test_a_head_trickling_in_is_closed_after_the_idle_time() -> None:
    """Slowloris: one header byte at a time keeps a connection busy but must not keep it for ever."""
    import asyncio

    from mlops.serving.http import Server

    async def main() -> bytes | None:
        srv = Server(_NoApp(), idle_s=0.2)  # type: ignore[arg-type]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        await srv.start(sock)
        reader, writer = await asyncio.open_connection(sock=socket.create_connection(sock.getsockname()))
        got = None  # still open when the trickle ends
        try:
            for ch in b"GET /v2/health/live HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 100:
                writer.write(bytes([ch]))
                try:
                    got = await asyncio.wait_for(reader.read(100), 0.05)
                except asyncio.TimeoutError:
                    continue
                break  # closed (b"") or answered
        finally:
            writer.close()
            srv.server.close()  # type: ignore[union-attr]
            srv._sweeper.cancel()
        return got

    assert asyncio.run(main()) == b""  # closed by the server before the head ended


def test_pipelined_bodies_are_bounded_by_bytes_not_only_by_count() -> None:
    """32 pipelined bodies of max_body each would sit in memory at once: reading pauses after one limit's worth."""
    import asyncio

    from mlops.serving.http import Connection, Server

    class Transport:
        paused = False

        def pause_reading(self) -> None:
            self.paused = True

        def write(self, data: bytes) -> None:
            pass

    class SlowApp(_NoApp):
        async def handle(self, *args: Any) -> Any:
            await asyncio.sleep(3600)  # the first request holds the connection busy

    async def main() -> tuple[bool, int]:
        conn = Connection(Server(SlowApp()))  # type: ignore[arg-type]
        transport = Transport()
        conn.connection_made(transport)
        body = b"x" * 600  # max_body is 1024
        one = b"POST /v2/models/iris/infer HTTP/1.1\r\nContent-Length: 600\r\n\r\n" + body
        for _ in range(4):
            if not transport.paused:
                conn.data_received(one)
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()
        return transport.paused, conn.queued

    paused, queued = asyncio.run(main())
    assert paused and queued <= 2 * 1024
