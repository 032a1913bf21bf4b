"""One loaded deployment: an onnxruntime session, its signature, and the optional scoring module.

Inputs are checked against the ONNX graph's signature (names, datatypes, ranks and fixed
dimensions) before they reach onnxruntime. skl2onnx classifiers' ZipMap output (a list of
``{label: probability}`` maps) is served as a plain FP32 ``[N, classes]`` tensor. A scoring module
(a .py file, as Azure ML's entry script) may define ``init()``, ``preprocess(inputs)`` and
``postprocess(outputs)``; both hooks take and return ``dict[str, numpy.ndarray]``. A hook raising
ValueError answers 400 with its message; anything else it raises is a 500.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlops.errors import ServingError
from mlops.serving.config import DeploymentConfig, model_file
from mlops.serving.tensors import DTYPES, ORT_TYPES, BadRequest


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the protocol describes it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class ModelFailure(Exception):
    """The model (or the scoring module) failed on a valid request: a 500."""


class Model:
    """A deployment's model, loaded in one worker process (sessions are never shared across processes)."""

    def __init__(self, cfg: DeploymentConfig, directory: Path):
        import onnxruntime as ort

        self.cfg = cfg
        self.version = str(cfg.version)
        where = f"deployment {cfg.name!r}"
        path = model_file(directory, cfg.path, f"{where}: path")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != cfg.sha256:
            raise ServingError(f"{where}: {path} has sha256 {digest}, the config says {cfg.sha256}")
        opts = ort.SessionOptions()
        # One thread per worker process: the workers, one per core, are the parallelism.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for a bad graph
            raise ServingError(f"{where}: onnxruntime cannot load {path}: {_line(e)}") from None
        self.inputs: dict[str, TensorSpec] = {}
        self.dtypes: dict[str, np.dtype[Any]] = {}
        for i in self.session.get_inputs():
            kind = ORT_TYPES.get(i.type)
            if kind is None:
                raise ServingError(f"{where}: input {i.name!r} has type {i.type}, which the protocol cannot carry")
            self.inputs[i.name] = TensorSpec(i.name, kind, _dims(i.shape))
            self.dtypes[i.name] = DTYPES[kind]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.zipmap = {o.name for o in self.session.get_outputs() if o.type.startswith("seq(map(")}
        self.scoring = _scoring(cfg, directory) if cfg.scoring else None
        self.preprocess = getattr(self.scoring, "preprocess", None)
        self.postprocess = getattr(self.scoring, "postprocess", None)
        self.outputs, self.batchable = self._probe(where)

    # -- the signature ---------------------------------------------------------------------
    def metadata(self, name: str, versions: list[str]) -> dict[str, Any]:
        """The OIP model metadata document."""
        return {"name": name, "versions": versions, "platform": "onnxruntime_onnx",
                "inputs": [s.meta() for s in self.inputs.values()], "outputs": [s.meta() for s in self.outputs]}

    def check(self, inputs: dict[str, np.ndarray]) -> int:
        """Raise BadRequest unless ``inputs`` fit the signature; the number of rows (first dimension)."""
        for name in inputs:
            if name not in self.inputs:
                raise BadRequest(f"unknown input {name!r}: the model's inputs are {', '.join(self.inputs)}")
        rows = -1
        for name, spec in self.inputs.items():
            array = inputs.get(name)
            if array is None:
                raise BadRequest(f"missing input {name!r}: the model's inputs are {', '.join(self.inputs)}")
            if array.dtype != self.dtypes[name]:
                got = next((k for k, v in DTYPES.items() if v == array.dtype), str(array.dtype))
                raise BadRequest(f"input {name!r} has datatype {got}, the model expects {spec.datatype}")
            shape = array.shape
            if len(shape) != len(spec.shape) or any(w not in (-1, g) for w, g in zip(spec.shape, shape, strict=True)):
                raise BadRequest(f"input {name!r} has shape {list(shape)}, the model expects {list(spec.shape)} "
                                 "(-1: any size)")
            if shape:
                if rows == -1:
                    rows = shape[0]
                elif shape[0] != rows:
                    raise BadRequest(f"input {name!r} has {shape[0]} rows, other inputs have {rows}")
        return max(rows, 1)

    # -- running ---------------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs of one onnxruntime call, ZipMaps made tensors; ModelFailure on any error."""
        try:
            values = self.session.run(self.output_names, inputs)
        except Exception as e:  # onnxruntime's errors carry no stable type
            raise ModelFailure(f"the model failed: {_line(e)}") from None
        out = {}
        for name, value in zip(self.output_names, values, strict=True):
            out[name] = _zipmap(value) if name in self.zipmap else value
        return out

    def _probe(self, where: str) -> tuple[list[TensorSpec], bool]:
        """Run the model once on two rows of zeros (warming it up): the outputs' datatypes and
        shapes (ZipMaps become [N, classes]), and whether outputs follow the input rows (batchable)."""
        probe = {}
        for name, spec in self.inputs.items():
            shape = tuple(2 if i == 0 and d == -1 else (1 if d == -1 else d) for i, d in enumerate(spec.shape))
            probe[name] = (np.full(shape, "", dtype=object) if spec.datatype == "BYTES"
                           else np.zeros(shape, dtype=self.dtypes[name]))
        types = {o.name: o for o in self.session.get_outputs()}
        try:
            got = self.run(probe)
        except ModelFailure:  # the model may refuse zeros; describe outputs from the graph only
            specs = [TensorSpec(n, ORT_TYPES.get(types[n].type, "FP32"), _dims(types[n].shape)) for n in self.output_names]
            return specs, False
        specs = []
        for name, value in got.items():
            if name in self.zipmap:
                specs.append(TensorSpec(name, "FP32", (-1, value.shape[1])))
            else:
                kind = ORT_TYPES.get(types[name].type, "FP32")
                specs.append(TensorSpec(name, kind, _dims(types[name].shape)))
        first = [s.shape[0] for s in self.inputs.values() if s.shape]
        batchable = bool(first) and all(d == -1 for d in first) and all(
            v.ndim >= 1 and v.shape[0] == 2 for v in got.values())
        return specs, batchable


def _zipmap(value: Any) -> np.ndarray:
    """skl2onnx's ZipMap output (one {label: probability} per row, the same labels in every row) as
    a float32 [rows, classes] array, columns in the labels' order."""
    if not value:
        return np.zeros((0, 0), dtype=np.float32)
    labels = list(value[0])
    return np.array([[row[k] for k in labels] for row in value], dtype=np.float32)


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (shape or []))


def _scoring(cfg: DeploymentConfig, directory: Path) -> ModuleType:
    """Import the deployment's scoring module under a name of its own and call its ``init()``."""
    assert cfg.scoring is not None
    where = f"deployment {cfg.name!r}: scoring module"
    path = model_file(directory, cfg.scoring, where)
    name = f"mlops_scoring_{hashlib.sha256(str(path).encode() + path.read_bytes()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ServingError(f"{where}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        init = getattr(module, "init", None)
        if init is not None:
            init()
    except Exception as e:  # user code: any failure means the deployment cannot start
        raise ServingError(f"{where} {path} failed to load: {type(e).__name__}: {_line(e)}") from None
    return module


def _line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:500]
