"""Convert the pickled pipeline to ONNX, then check onnxruntime agrees with scikit-learn on the test CSV."""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import FEATURES, atomic_write_bytes, read_csv
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

# Opsets every onnxruntime >= 1.17 executes; pinned so the exported bytes do not drift with skl2onnx.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PROBA_ATOL = 1e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="pickle from train.py")
    parser.add_argument("--test", type=Path, required=True, help="test CSV used to verify the export")
    parser.add_argument("--onnx", type=Path, required=True, help="output ONNX model")
    args = parser.parse_args()

    model = pickle.loads(args.model.read_bytes())
    clf = model.steps[-1][1]
    onx = convert_sklearn(
        model,
        name="wine-classifier",
        initial_types=[("input", FloatTensorType([None, len(FEATURES)]))],
        # Without this the probabilities come out as a ZipMap (a sequence of maps), not a tensor.
        options={id(clf): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    data = onx.SerializeToString()

    x, _ = read_csv(args.test)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    labels, proba = session.run(["label", "probabilities"], {"input": x.astype(np.float32)})
    expected = model.predict(x)
    mismatched = int(np.sum(labels != expected))
    max_diff = float(np.max(np.abs(proba - model.predict_proba(x))))
    if mismatched or max_diff > PROBA_ATOL:
        print(f"export: ONNX disagrees with scikit-learn: {mismatched} labels differ, "
              f"max probability difference {max_diff:.2e}", file=sys.stderr)
        sys.exit(1)
    atomic_write_bytes(args.onnx, data)
    print(f"export: verified on {len(x)} rows (max probability difference {max_diff:.1e}) -> {args.onnx}")


if __name__ == "__main__":
    main()
