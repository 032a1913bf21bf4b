"""The signature is read from a real ONNX graph with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import RegistryError
from mlops.registry.records import TensorSpec
from mlops.registry.signature import read_onnx_signature


def test_iris_signature(iris_onnx: Path) -> None:
    sig = read_onnx_signature(iris_onnx)
    assert sig.inputs == (TensorSpec("float_input", "tensor(float)", (None, 4)),)
    assert sig.outputs == (TensorSpec("label", "tensor(int64)", (None,)),
                           TensorSpec("probabilities", "tensor(float)", (None, 3)))


def test_symbolic_dims_are_kept_as_names(wine_onnx: Path) -> None:
    sig = read_onnx_signature(wine_onnx)
    assert sig.inputs[0].shape == ("batch", 13)
    assert sig.outputs[1].shape is not None and sig.outputs[1].shape[-1] == 3


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(RegistryError, match=r"model\.onnx: not a loadable ONNX model"):
        read_onnx_signature(bad)
