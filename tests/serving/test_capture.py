"""Inference capture: real servers on 127.0.0.1 record sampled requests to Arrow files, a graceful stop loses
none, files rotate, the disk bound drops the oldest and counts it; the writer salvages a killed worker's file."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from tests.serving.conftest import KeepAlive, deployment, get

from mlops.serving import capture as cap
from mlops.serving.config import CaptureConfig

INFER = "/v2/models/iris/infer"


def read_dir(directory: Path) -> pa.Table:
    """Every sealed file of a capture directory, as one table (in file-name order)."""
    tables = []
    for p in sorted(directory.glob("*.arrow")):
        with pa.OSFile(str(p), "rb") as f:
            tables.append(pa.ipc.open_stream(f).read_all())
    return pa.concat_tables(tables) if tables else pa.table({})


def rows_request(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.reshape(-1).tolist()}]}


def send(server: Any, batches: list[np.ndarray]) -> list[dict[str, Any]]:
    client = KeepAlive(server.port)
    answers = []
    for rows in batches:
        status, _, body = client.post(INFER, rows_request(rows))
        assert status == 200, body
        answers.append({o["name"]: o["data"] for o in json.loads(body)["outputs"]})
    return answers


def metric(server: Any, name: str) -> float:
    _, _, body = get(server.url + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_request_is_captured_with_its_inputs_and_predictions_and_a_stop_loses_none(servers, models):
    """sample_rate 1.0 over 2 workers: every row, with the inputs sent and the label answered; nothing is sealed
    before the stop (rotation far away), so the rows on disk are the ones the drain wrote."""
    capture = {"sample_rate": 1.0, "max_mb": 100, "rotate_rows": 100000, "rotate_s": 3600}
    server = servers([deployment("blue", models["iris"], 3, capture=capture)], workers=2).start()
    rng = np.random.default_rng(7)
    batches = [rng.uniform(0, 8, size=(1 + i % 3, 4)).astype(np.float32).round(3) for i in range(60)]
    answers = send(server, batches)
    server.stop()
    directory = server.dir / "capture" / "blue"
    assert not list(directory.glob("*.part"))
    table = read_dir(directory)
    sent = np.concatenate(batches)
    assert table.num_rows == len(sent)
    assert table.column_names[:4] == ["input[0]", "input[1]", "input[2]", "input[3]"]
    assert {"prediction.label", "prediction.probabilities[0]", "prediction.probabilities[2]", "_ts",
            "_deployment", "_version"} <= set(table.column_names)
    got = np.stack([table.column(f"input[{j}]").to_numpy() for j in range(4)], axis=1)
    labels = np.concatenate([a["label"] for a in answers])
    order_sent, order_got = np.lexsort(sent.T[::-1]), np.lexsort(got.T[::-1])
    np.testing.assert_array_equal(got[order_got], sent[order_sent])
    np.testing.assert_array_equal(table.column("prediction.label").to_numpy()[order_got], labels[order_sent])
    assert set(table.column("_deployment").to_pylist()) == {"blue"}
    assert set(table.column("_version").to_pylist()) == {3}
    assert table.schema.field("_ts").type == pa.float64()
    assert abs(table.column("_ts").to_numpy().mean() - time.time()) < 600
    # into the store and back: the same rows
    from mlops.monitoring.captured import collect, read_captured
    from mlops.store.local import LocalStore

    store = LocalStore(server.dir / "store")
    assert sum(r.rows for r in collect(store, server.dir / "capture", "iris")) == len(sent)
    back = read_captured(store, "iris")
    assert back.num_rows == len(sent)
    back_x = np.stack([back.column(f"input[{j}]").to_numpy() for j in range(4)], axis=1)
    np.testing.assert_array_equal(back_x[np.lexsort(back_x.T[::-1])], sent[order_sent])


def test_a_seeded_sample_rate_keeps_exactly_the_requests_its_rng_draws(servers, models):
    seed, n = 1234, 300
    capture = {"sample_rate": 0.1, "max_mb": 100, "rotate_rows": 100000, "rotate_s": 3600, "seed": seed}
    server = servers([deployment("blue", models["iris"], 1, capture=capture)], workers=1).start()
    send(server, [np.full((1, 4), i, dtype=np.float32) for i in range(n)])
    server.stop()
    draw = random.Random(seed).random
    expected = [i for i in range(n) if draw() < 0.1]
    table = read_dir(server.dir / "capture" / "blue")
    assert sorted(table.column("input[0]").to_numpy().astype(int).tolist()) == expected
    assert 10 <= len(expected) <= 60  # about 10%


def test_files_rotate_and_the_disk_bound_drops_the_oldest_and_counts_them(servers, models):
    capture = {"sample_rate": 1.0, "max_mb": 0.02, "rotate_rows": 10, "rotate_s": 3600}
    server = servers([deployment("blue", models["iris"], 1, capture=capture)], workers=2).start()
    n = 400
    send(server, [np.full((1, 4), i, dtype=np.float32) for i in range(n)])
    directory = server.dir / "capture" / "blue"
    deadline = time.monotonic() + 30
    while metric(server, "mlops_capture_rows_total") < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, "mlops_capture_rows_total") == n
    while metric(server, "mlops_capture_dropped_rows_total") != cap.read_dropped(directory)["rows"] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, "mlops_capture_dropped_rows_total") == cap.read_dropped(directory)["rows"] > 0
    server.stop()
    sealed = sorted(directory.glob("*.arrow"))
    assert len(sealed) >= 2, (os.listdir(directory), server.log_text())
    assert sum(p.stat().st_size for p in sealed) <= 0.02 * 1024 * 1024
    dropped = cap.read_dropped(directory)
    table = read_dir(directory)
    assert table.num_rows + dropped["rows"] == n  # every row is on disk or counted as dropped
    assert dropped["files"] >= 1
    # the oldest went: what is left is the newest rows of each worker
    kept = set(table.column("input[0]").to_numpy().astype(int).tolist())
    assert max(kept) >= n - 2


def test_a_config_reload_that_changes_the_version_seals_the_old_file(servers, models):
    capture = {"sample_rate": 1.0, "max_mb": 100, "rotate_rows": 100000, "rotate_s": 3600}
    server = servers([deployment("blue", models["iris"], 1, capture=capture)], workers=1).start()
    send(server, [np.zeros((1, 4), np.float32)] * 5)
    from mlops.serving.control import wait_applied

    generation = server.write([deployment("blue", models["iris"], 2, capture=capture)])
    wait_applied(server.dir, generation, 30)
    send(server, [np.ones((1, 4), np.float32)] * 3)
    directory = server.dir / "capture" / "blue"
    deadline = time.monotonic() + 30
    while not list(directory.glob("*.arrow")) and time.monotonic() < deadline:
        time.sleep(0.1)
    first = read_dir(directory)  # sealed while the server runs: the old version's file
    assert first.num_rows, (os.listdir(directory), server.log_text())
    assert first.column("_version").to_pylist() == [1] * 5
    server.stop()
    table = read_dir(directory)
    assert sorted(table.column("_version").to_pylist()) == [1] * 5 + [2] * 3


def _items(n: int, start: int = 0) -> list[cap.Item]:
    return [(time.time(), 1, {"X": np.full((1, 3), start + i, np.float32)},
             {"label": np.array([start + i], np.int64)}) for i in range(n)]


def test_the_writer_salvages_a_part_file_left_by_a_killed_worker(tmp_path: Path):
    cfg = CaptureConfig(sample_rate=1.0, max_mb=10, rotate_rows=1000, rotate_s=1)
    dead = cap.DeploymentCapture(tmp_path, "e", "blue", 1, cfg, 1)
    dead.write(_items(4), 0, time.time())  # written, never sealed: the worker is "killed"
    part = next(tmp_path.glob("*.arrow.part"))
    with open(part, "ab") as f:
        f.write(b"\x01\x02half a batch")  # the kill interrupted a write
    old = time.time() - 3600
    os.utime(part, (old, old))
    alive = cap.DeploymentCapture(tmp_path, "e", "blue", 1, cfg, 1)
    alive.write(_items(2, 100), 0, time.time(), seal=True)
    assert not list(tmp_path.glob("*.part"))
    table = read_dir(tmp_path)
    assert sorted(table.column("X[0]").to_pylist()) == [0, 1, 2, 3, 100, 101]
    assert table.column_names == ["X[0]", "X[1]", "X[2]", "prediction.label", "_ts", "_deployment", "_version"]


def test_column_names_follow_the_monitor_conventions():
    items: list[cap.Item] = [(1.0, 2, {"a": np.array([1.0, 2.0], np.float32), "b": np.array([[b"x"], [b"y"]], object)},
                              {"variable": np.array([[0.5], [0.7]], np.float32), "p": np.zeros((2, 2), np.float32)})]
    (batch,) = cap.to_batches(items, "d", 4, n_inputs=2)
    assert batch.schema.names == ["a", "b", "prediction.variable", "prediction.p[0]", "prediction.p[1]",
                                  "_ts", "_deployment", "_version"]
    assert batch.column(1).to_pylist() == ["x", "y"]
    (single,) = cap.to_batches([(1.0, 2, {"X": np.zeros((2, 1), np.float32)}, {})], "d", 4, n_inputs=1)
    assert single.schema.names == ["X[0]", "_ts", "_deployment", "_version"]


@pytest.mark.parametrize("bad", [{"sample_rate": 2}, {"max_mb": 0}, {"rotate_rows": 0}, {"nope": 1}, [1]])
def test_a_bad_capture_config_is_refused_naming_the_field(bad: Any):
    from mlops.errors import ServingError
    from mlops.serving.config import parse

    doc = {"format": 1, "endpoint": "e", "generation": 1, "traffic": {},
           "deployments": [{"name": "d", "model": "m", "version": 1, "path": "m.onnx", "sha256": "0" * 64,
                            "capture": bad}]}
    with pytest.raises(ServingError, match=r"\$\.deployments\[0\]\.capture"):
        parse(doc, "config.json")


def test_requests_whose_tensors_differ_are_written_apart_never_mixed():
    """The fast path joins the requests' buffers; a request with another dtype or width must not be read as
    the first one's (its bytes would be garbage): it goes to a batch of its own."""
    a = (1.0, 1, {"X": np.array([[1.0, 2.0]], np.float32)}, {"y": np.array([1], np.int64)})
    b = (2.0, 1, {"X": np.array([[3.0, 4.0]], np.float32)}, {"y": np.array([2.5], np.float64)})  # same itemsize
    c = (3.0, 1, {"X": np.array([[5.0, 6.0, 7.0]], np.float32)}, {"y": np.array([3], np.int64)})
    batches = cap.to_batches([a, b, c], "d", 1, n_inputs=1)
    got = sorted((bt.column("_ts").to_pylist()[0], bt.column("prediction.y").to_pylist()) for bt in batches
                 for _ in [0])
    assert len(batches) == 3
    assert got == [(1.0, [1]), (2.0, [2.5]), (3.0, [3])]
    assert [bt.column("prediction.y").to_pylist() for bt in cap.to_batches([a, b], "d", 1, n_inputs=1)] == \
        [[1], [2.5]]
    (joined,) = cap.to_batches([a, a, a], "d", 1, n_inputs=1)
    assert joined.column("X[1]").to_pylist() == [2.0, 2.0, 2.0] and joined.column("prediction.y").to_pylist() == [1] * 3


def test_concurrent_requests_batched_into_one_call_are_each_captured_with_their_own_answer(servers, models):
    """Capture is per onnxruntime call: a call that served several requests keeps them all, each row with the
    prediction its request got."""
    from concurrent.futures import ThreadPoolExecutor

    capture = {"sample_rate": 1.0, "max_mb": 100, "rotate_rows": 100000, "rotate_s": 3600}
    server = servers([deployment("blue", models["iris"], 1, capture=capture, batching={"max_batch_size": 64,
                                                                                      "max_delay_ms": 5})],
                     workers=1).start()
    rng = np.random.default_rng(3)
    batches = [rng.uniform(0, 8, size=(1 + i % 2, 4)).astype(np.float32).round(3) for i in range(240)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: send(server, [b])[0], batches))
    _, _, body = get(server.url + "/metrics")
    server.stop()
    batched = [line for line in body.decode().splitlines() if line.startswith("mlops_batch_size_count")]
    table = read_dir(server.dir / "capture" / "blue")
    sent = np.concatenate(batches)
    labels = np.concatenate([a["label"] for a in answers])
    assert table.num_rows == len(sent)
    got = np.stack([table.column(f"input[{j}]").to_numpy() for j in range(4)], axis=1)
    o_sent, o_got = np.lexsort(sent.T[::-1]), np.lexsort(got.T[::-1])
    np.testing.assert_array_equal(got[o_got], sent[o_sent])
    np.testing.assert_array_equal(table.column("prediction.label").to_numpy()[o_got], labels[o_sent])
    assert batched and float(batched[0].rsplit(" ", 1)[1]) < len(batches)  # some calls served several requests


def test_a_batched_call_is_sampled_request_by_request():
    cfg = CaptureConfig(sample_rate=0.5, seed=5)
    c = cap.DeploymentCapture(Path("/nonexistent"), "e", "d", 1, cfg, 1)
    x = np.arange(12, dtype=np.float32).reshape(6, 2)  # requests of 1, 2 and 3 rows
    y = np.arange(6, dtype=np.int64)
    c.record_call({"X": x}, {"y": y}, [1, 2, 3])
    draw = random.Random(5).random
    kept = [i for i in range(3) if draw() < 0.5]
    spans = {0: (0, 1), 1: (1, 3), 2: (3, 6)}
    items, _ = c.take()
    assert [(it[1], it[3]["y"].tolist(), it[2]["X"][:, 0].tolist()) for it in items] == [
        (spans[i][1] - spans[i][0], list(range(*spans[i])), [2.0 * r for r in range(*spans[i])]) for i in kept]
    whole = cap.DeploymentCapture(Path("/nonexistent"), "e", "d", 1, CaptureConfig(), 1)
    whole.record_call({"X": x}, {"y": y}, [1, 2, 3])
    (item,), _ = whole.take()
    assert item[1] == 6 and item[2]["X"] is x  # one entry for the call, the arrays themselves
