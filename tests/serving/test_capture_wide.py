"""A request may choose a dynamic dimension: one row of 200,000 values became 200,000 Arrow columns (seconds and
hundreds of MB in the server's writer thread, and a capture file no monitor compares). Tensors wider than
MAX_COLUMNS per row are left out of the capture; the rest of the row is kept."""

from __future__ import annotations

import time

import numpy as np

from mlops.serving.capture import MAX_COLUMNS, to_batches


def test_a_tensor_wider_than_the_monitor_compares_is_left_out() -> None:
    items = [(time.time(), 1, {"X": np.zeros((1, 200_000), np.float32), "small": np.ones((1, 3), np.float32)},
              {"label": np.array([1], np.int64)})]
    [batch] = to_batches(items, "blue", 1, 2)
    assert batch.num_columns <= MAX_COLUMNS
    assert batch.schema.names == ["small[0]", "small[1]", "small[2]", "prediction.label", "_ts", "_deployment",
                                  "_version"]
