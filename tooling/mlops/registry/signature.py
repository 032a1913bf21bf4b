"""Read a model's input/output signature from its ONNX graph, through onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops.errors import RegistryError
from mlops.registry.records import Dim, Signature, TensorSpec


def _shape(shape: Any) -> tuple[Dim, ...] | None:
    if shape is None:
        return None
    # onnxruntime reports dynamic dims as a str (symbolic name) or None (unnamed).
    return tuple(d if isinstance(d, (int, str)) or d is None else str(d) for d in shape)


def read_onnx_signature(path: Path) -> Signature:
    """The inputs and outputs of the ONNX model at ``path``: name, type (``tensor(float)``) and
    shape (None or a symbolic name for dynamic dims). RegistryError if it cannot be loaded."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        raise RegistryError(f"{path}: not a loadable ONNX model: {e}") from e
    return Signature(
        inputs=tuple(TensorSpec(i.name, i.type, _shape(i.shape)) for i in session.get_inputs()),
        outputs=tuple(TensorSpec(o.name, o.type, _shape(o.shape)) for o in session.get_outputs()),
    )
