"""Every kind of bad request gets a 4xx with {"error": ...} naming the problem, never a traceback,
and the server keeps answering good requests afterwards. Model failures are 500s, also as JSON."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from tests.serving.conftest import deployment, iris_request, post, request

INFER = "/v2/models/iris/infer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Any:
    from tests.serving.conftest import Server

    s = Server(tmp_path_factory.mktemp("bad"), [deployment("blue", models["iris"], 1)], workers=1,
               max_request_mb=0.01).start()
    yield s
    s.stop()


def inp(**over: Any) -> dict[str, Any]:
    item = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    item.update(over)
    return {"inputs": [item]}


CASES: list[tuple[str, Any, dict[str, str], int, str]] = [
    ("unknown input name", inp(name="features"), {}, 400, "unknown input 'features'"),
    ("missing input", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}, {}, 400,
     "unknown input 'x'"),
    ("wrong datatype", inp(datatype="FP64"), {}, 400, "datatype FP64, the model expects FP32"),
    ("unknown datatype", inp(datatype="FLOAT"), {}, 400, "unknown datatype 'FLOAT'"),
    ("wrong rank", inp(shape=[4], data=[1, 2, 3, 4]), {}, 400, "shape [4], the model expects [-1, 4]"),
    ("wrong width", inp(shape=[1, 3], data=[1, 2, 3]), {}, 400, "shape [1, 3], the model expects [-1, 4]"),
    ("count vs shape", inp(shape=[2, 4]), {}, 400, "'data' has 4 elements but shape [2, 4] needs 8"),
    ("not numbers", inp(data=["a", "b", "c", "d"]), {}, 400, "'data' is not a FP32 array"),
    ("ragged", inp(data=[[1, 2], [3]]), {}, 400, "'data' is not a FP32 array"),
    ("negative shape", inp(shape=[-1, 4]), {}, 400, "'shape' must be a list"),
    ("shape beyond numpy", inp(shape=[2**39, 2**39, 0, 4], data=[]), {}, 400, "too many elements"),
    ("no inputs", {"inputs": []}, {}, 400, "non-empty 'inputs' list"),
    ("not an object", [1, 2], {}, 400, "JSON object"),
    ("input twice", {"inputs": [inp()["inputs"][0], inp()["inputs"][0]]}, {}, 400, "given twice"),
    ("malformed JSON", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("binary", b'{"inputs": []}', {}, 400, "non-empty"),
    ("wrong content type", inp(), {"content-type": "text/html"}, 415, "content type 'text/html'"),
    ("compressed", inp(), {"content-encoding": "gzip"}, 415, "content encoding 'gzip'"),
    ("bad header length", inp(), {"inference-header-content-length": "abc"}, 400, "must be an integer"),
    ("header length too long", inp(), {"inference-header-content-length": "99999"}, 400, "does not fit"),
    ("unknown output", {**inp(), "outputs": [{"name": "nope"}]}, {}, 400, "unknown output 'nope'"),
    ("oversized", inp(data=[1.0] * 4000, shape=[1000, 4]), {}, 413, "larger than"),
]


@pytest.mark.parametrize(("what", "body", "headers", "status", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_request(server: Any, what: str, body: Any, headers: dict[str, str], status: int, message: str) -> None:
    got, hdrs, data = post(server.url + INFER, body, headers)
    assert got == status, data
    assert hdrs["content-type"] == "application/json"
    doc = json.loads(data)
    assert set(doc) == {"error"} and message in doc["error"], doc
    assert "Traceback" not in doc["error"]
    assert post(server.url + INFER, iris_request())[0] == 200  # still serving


def test_binary_sizes_are_checked(server: Any) -> None:
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                   "parameters": {"binary_data_size": 12}}]}).encode()
    body = head + struct.pack("<3f", 1, 2, 3)
    status, _, data = post(server.url + INFER, body, {"inference-header-content-length": str(len(head)),
                                                      "content-type": "application/octet-stream"})
    assert status == 400 and b"needs 16 bytes" in data
    head = head.replace(b"12", b"16")
    status, _, data = post(server.url + INFER, head + b"\0" * 20, {"inference-header-content-length": str(len(head))})
    assert status == 400 and b"4 bytes of binary data that no input claims" in data
    status, _, data = post(server.url + INFER, head + struct.pack("<4f", 5.1, 3.5, 1.4, 0.2),
                           {"inference-header-content-length": str(len(head))})
    assert status == 200


def test_routes_and_methods(server: Any) -> None:
    status, _, data = request("GET", server.url + "/v2/models/other", None, None)
    assert status == 404 and b"no such model" in data
    status, _, data = request("GET", server.url + "/v2/models/iris/versions/9/ready", None, None)
    assert status == 404
    status, _, data = request("GET", server.url + INFER, None, None)
    assert status == 405 and json.loads(data)["error"]
    status, _, data = request("GET", server.url + "/nothing", None, None)
    assert status == 404 and json.loads(data)["error"]
    status, _, data = post(server.url + INFER, iris_request(), {"x-mlops-deployment": "ghost"})
    assert status == 404 and b"no deployment 'ghost'" in data


def test_chunked_body_over_the_limit(server: Any) -> None:
    """No Content-Length to refuse up front: the limit holds while the body arrives."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"[" * 4096
        for _ in range(4):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        data = b""
        while b"}" not in data:
            more = s.recv(65536)
            assert more, data
            data += more
    assert data.startswith(b"HTTP/1.1 413") and b"larger than" in data


def test_model_failure_is_a_json_500(servers: Any, models: dict[str, Path], tmp_path: Path) -> None:
    scoring = tmp_path / "score.py"
    scoring.write_text("def postprocess(outputs):\n    raise RuntimeError('boom')\n")
    s = servers([deployment("blue", models["iris"], 1, scoring="score.py")], workers=1)
    (s.dir / "score.py").write_text(scoring.read_text())
    s.start()
    status, _, data = post(s.url + INFER, iris_request())
    assert status == 500 and json.loads(data) == {"error": "the scoring module's postprocess failed: RuntimeError: boom"}
