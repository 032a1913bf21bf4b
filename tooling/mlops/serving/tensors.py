"""Open Inference Protocol tensors: JSON and binary (Triton's binary tensor data extension).

A request body is a JSON object, optionally followed by raw tensor bytes; the header
``Inference-Header-Content-Length`` gives the JSON part's length. An input with the parameter
``binary_data_size`` takes that many bytes of the binary part, in input order. Outputs come back in
binary when the request asks (``binary_data_output`` for all, ``binary_data`` per output).
Everything here is untrusted input: every problem is a ``BadRequest`` with a one-line message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

# OIP datatype -> numpy dtype (BYTES: Python objects, str or bytes).
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
# onnxruntime's type strings -> OIP datatype
ORT_TYPES = {"tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
             "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
             "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
             "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
             "tensor(string)": "BYTES"}
_KIND = {np.dtype(object): "BYTES", **{v: k for k, v in DTYPES.items() if k != "BYTES"}}
_MAX_DIMS = 16
_MAX_SPAN = 2**48  # the product of a shape's dimensions (a 0 counted as 1)
_U32 = struct.Struct("<I")


class BadRequest(Exception):
    """The request is malformed or does not fit the model: answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    """A decoded infer request: input arrays by name, in request order, and what to send back."""

    inputs: dict[str, np.ndarray]
    id: str | None
    outputs: tuple[tuple[str, bool], ...] | None  # (name, binary) asked for, or None: all
    binary_all: bool


def datatype(array: np.ndarray) -> str:
    """The OIP datatype of a numpy array (BadRequest 500 for types the protocol cannot carry)."""
    kind = _KIND.get(array.dtype)
    if kind is None:
        if array.dtype.kind in "US":
            return "BYTES"
        raise BadRequest(f"the model produced an array of type {array.dtype}, which the protocol cannot carry", 500)
    return kind


def decode(body: bytes, json_length: int | None) -> Request:
    """Decode an infer request body (``json_length``: the Inference-Header-Content-Length value)."""
    if json_length is None:
        head, rest = body, b""
    else:
        if not 0 < json_length <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {json_length} does not fit a body of {len(body)} bytes")
        head, rest = body[:json_length], body[json_length:]
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("the request needs a non-empty 'inputs' list")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(raw_inputs):
        array, used = _input(item, i, rest, offset)
        name = item["name"]
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
    if offset != len(rest):
        raise BadRequest(f"the body has {len(rest) - offset} bytes of binary data that no input claims")
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest("'id' must be a string")
    return Request(inputs, rid, _requested_outputs(doc.get("outputs")), params.get("binary_data_output") is True)


def _input(item: Any, i: int, rest: bytes, offset: int) -> tuple[np.ndarray, int]:
    if not isinstance(item, dict):
        raise BadRequest(f"inputs[{i}] must be an object with name, datatype, shape and data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{i}] needs a 'name' string")
    kind = item.get("datatype")
    dtype = DTYPES.get(kind) if isinstance(kind, str) else None
    if dtype is None or not isinstance(kind, str):
        raise BadRequest(f"input {name!r}: unknown datatype {kind!r} (one of {', '.join(DTYPES)})")
    shape = item.get("shape")
    if (not isinstance(shape, list) or len(shape) > _MAX_DIMS
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**40 for n in shape)):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of at most {_MAX_DIMS} non-negative integers")
    count = span = 1
    for n in shape:
        count *= n
        span *= max(n, 1)
    if span > _MAX_SPAN:  # numpy refuses such a shape even with a 0 in it (an internal error, not a 400)
        raise BadRequest(f"input {name!r}: shape {shape[:_MAX_DIMS]} has too many elements")
    params = item.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(rest) - offset:
            raise BadRequest(f"input {name!r}: binary_data_size {size!r} is more than the {len(rest) - offset} "
                             "binary bytes left in the body")
        if "data" in item:
            raise BadRequest(f"input {name!r} has both binary data and a 'data' field")
        return _binary(name, kind, dtype, shape, count, rest, offset, size), size
    if "data" not in item:
        raise BadRequest(f"input {name!r} has no 'data' (nor binary_data_size)")
    return _json(name, kind, dtype, shape, count, item["data"]), 0


def _json(name: str, kind: str, dtype: np.dtype[Any], shape: list[int], count: int, data: Any) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    try:
        if kind == "BYTES":
            array = np.array(data, dtype=object).ravel()
            if not all(isinstance(v, str) for v in array):
                raise ValueError("BYTES data must be strings")
        else:
            array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"input {name!r}: 'data' is not a {kind} array: {_first_line(e)}") from None
    if array.size != count:
        raise BadRequest(f"input {name!r}: 'data' has {array.size} elements but shape {shape} needs {count}")
    return array.reshape(shape)


def _binary(name: str, kind: str, dtype: np.dtype[Any], shape: list[int], count: int, rest: bytes, offset: int,
            size: int) -> np.ndarray:
    if kind == "BYTES":
        items, pos, end = [], offset, offset + size
        while pos < end:
            if pos + 4 > end:
                raise BadRequest(f"input {name!r}: truncated BYTES element length")
            (n,) = _U32.unpack_from(rest, pos)
            if pos + 4 + n > end:
                raise BadRequest(f"input {name!r}: a BYTES element runs past its binary_data_size")
            items.append(rest[pos + 4:pos + 4 + n].decode("utf-8", "surrogateescape"))  # onnxruntime takes str
            pos += 4 + n
        if len(items) != count:
            raise BadRequest(f"input {name!r}: {len(items)} BYTES elements but shape {shape} needs {count}")
        return np.array(items, dtype=object).reshape(shape)
    if size != count * dtype.itemsize:
        raise BadRequest(f"input {name!r}: binary_data_size {size} but shape {shape} of {kind} needs "
                         f"{count * dtype.itemsize} bytes")
    array = np.frombuffer(rest, dtype=dtype.newbyteorder("<"), count=count, offset=offset)
    if not array.flags.aligned or array.dtype != dtype:
        array = array.astype(dtype)
    return array.reshape(shape)


def _requested_outputs(raw: Any) -> tuple[tuple[str, bool], ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest("'outputs' must be a list")
    wanted = []
    for i, o in enumerate(raw):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise BadRequest(f"outputs[{i}] must be an object with a 'name'")
        params = o.get("parameters")
        wanted.append((o["name"], isinstance(params, dict) and params.get("binary_data") is True))
    return tuple(wanted)


def encode(model: str, version: str, rid: str | None, outputs: list[tuple[str, np.ndarray, bool]]
           ) -> tuple[bytes, int | None]:
    """The response body for ``outputs`` (name, array, binary?) and the JSON part's length when
    binary data follows it (None: all JSON)."""
    items: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        kind = datatype(array)
        if binary:
            blob = _to_bytes(array, kind)
            blobs.append(blob)
            items.append({"name": name, "datatype": kind, "shape": list(array.shape),
                          "parameters": {"binary_data_size": len(blob)}})
        elif kind == "BYTES":
            data = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
            items.append({"name": name, "datatype": kind, "shape": list(array.shape), "data": data})
        else:
            items.append({"name": name, "datatype": kind, "shape": list(array.shape),
                          "data": np.ascontiguousarray(array).ravel()})
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": items}
    if rid is not None:
        doc["id"] = rid
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def _to_bytes(array: np.ndarray, kind: str) -> bytes:
    if kind != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for v in array.ravel().tolist():
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(_U32.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
