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


def test_a_dropped_json_that_is_a_fifo_huge_or_deep_counts_as_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import threading

    from mlops.monitoring.captured import dropped_rows
    from mlops.serving.capture import DROPPED_FILE, read_dropped

    zero = {"rows": 0, "files": 0, "bytes": 0}
    three = ({"rows": 3, "files": 0, "bytes": 0}, {"blue": 3})  # a huge one: its first 4 KiB are read, no more
    for i, (make, want) in enumerate([(lambda p: os.mkfifo(p), (zero, {})), (lambda p: p.write_text("[" * 4096), (zero, {})),
                                      (lambda p: p.write_text('{"rows": 3}' + " " * 10_000_000), three)]):
        directory = tmp_path / f"d{i}" / "blue"
        directory.mkdir(parents=True)
        make(directory / DROPPED_FILE)
        got: list[object] = []
        worker = threading.Thread(target=lambda d=directory, g=got: g.append((read_dropped(d), dropped_rows(d.parent))),
                                  daemon=True)
        worker.start()
        worker.join(20)
        if worker.is_alive():  # unblock the stuck open
            with open(os.open(directory / DROPPED_FILE, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
        assert got == [want], (i, got)
