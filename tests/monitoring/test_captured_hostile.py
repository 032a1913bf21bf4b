"""Capture files are untrusted data (the server runs the model a pull request brought): a file whose columns
are not what the server writes is left aside as ``.bad`` (sealed) or skipped (still being written), never stored
to fail every later read, and never an internal error of `mlops monitor`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlops.monitoring.captured import collect, read_captured, read_open
from mlops.monitoring.monitor import _named
from mlops.store.local import LocalStore

ROWS = 5


def _write(directory: Path, name: str, columns: dict[str, Any]) -> Path:
    """An Arrow stream file; its rows are of the deployment its directory names unless ``columns`` say else."""
    directory.mkdir(parents=True, exist_ok=True)
    if columns.get("_deployment") is _BLUE:
        columns = {**columns, "_deployment": pa.array([directory.name] * ROWS)}
    table = pa.table(columns)
    path = directory / name
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)
    return path


_BLUE = pa.array(["blue"] * ROWS)


def _meta(ts: Any = None, version: Any = None) -> dict[str, Any]:
    now = time.time()
    return {"_ts": ts if ts is not None else pa.array([now + i for i in range(ROWS)], pa.float64()),
            "_deployment": _BLUE,
            "_version": version if version is not None else pa.array([1] * ROWS, pa.int64())}


def _sealed() -> str:
    return f"{time.time_ns():019d}-1-1-{ROWS}.arrow"


def _part() -> str:
    return f"{time.time_ns():019d}-1-1.arrow.part"


BAD_META = {
    "a _ts of structs (no kernel for it)": {"_ts": pa.array([{"a": 1}] * ROWS)},
    "a _ts of strings": {"_ts": pa.array(["x"] * ROWS)},
    "an integer _ts (read back as a wrong type)": {"_ts": pa.array(range(ROWS), pa.int64())},
    "an int32 _version": {"version": pa.array([1] * ROWS, pa.int32())},
}


@pytest.mark.parametrize("change", BAD_META.values(), ids=list(BAD_META))
def test_a_sealed_capture_file_with_mistyped_columns_is_set_aside_not_stored(tmp_path: Path, change: dict) -> None:
    store = LocalStore(tmp_path / "store")
    base = tmp_path / "capture"
    _write(base / "blue", _sealed(), {"x": pa.array([1.0] * ROWS), **_meta(**{k.lstrip("_"): v
                                                                               for k, v in change.items()})})
    assert collect(store, base, "wine") == []
    assert [p.suffix for p in (base / "blue").iterdir()] == [".bad"]
    assert list(store.list_records("monitoring/")) == []
    assert read_captured(store, "wine").num_rows == 0


@pytest.mark.parametrize("change", BAD_META.values(), ids=list(BAD_META))
def test_a_capture_file_being_written_with_mistyped_columns_is_skipped(tmp_path: Path, change: dict) -> None:
    base = tmp_path / "capture"
    _write(base / "blue", _part(), {"x": pa.array([1.0] * ROWS), **_meta(**{k.lstrip("_"): v
                                                                             for k, v in change.items()})})
    _write(base / "green", _part(), {"x": pa.array([1.0] * ROWS), **_meta()})
    tables = read_open(base, "wine")
    assert len(tables) == 1  # green's
    assert (tables[0].schema.field("_ts").type, tables[0].schema.field("_version").type) == (pa.float64(), pa.int64())


def test_a_capture_file_with_a_column_twice_is_skipped(tmp_path: Path) -> None:
    base = tmp_path / "capture"
    meta = _meta()
    table = pa.Table.from_arrays([pa.array([1.0] * ROWS), meta["_ts"], meta["_ts"], meta["_deployment"],
                                  meta["_version"]], names=["x", "_ts", "_ts", "_deployment", "_version"])
    for name in (_sealed(), _part()):
        path = base / "blue" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
            w.write_table(table)
    assert read_open(base, "wine") == []
    assert collect(LocalStore(tmp_path / "store"), base, "wine") == []


def test_input_columns_named_like_an_index_but_not_one_keep_their_names() -> None:
    rows = pa.table({"input[a]": [1.0], "input[b]": [2.0], "_ts": [1.0]})
    assert _named(rows, {"features": ["f1", "f2"]}).column_names == ["input[a]", "input[b]"]
    rows = pa.table({"input[1]": [1.0], "input[0]": [2.0], "_ts": [1.0]})
    assert _named(rows, {"features": ["f1", "f2"]}).column_names == ["f2", "f1"]


def test_rows_still_being_written_that_do_not_fit_the_stored_ones_are_left_out_with_a_warning() -> None:
    from mlops.monitoring.monitor import _with_recent

    stored = pa.table({"x": [1.0], **{k: v[:1] for k, v in _meta().items()}})
    fits = pa.table({"x": [2.0], **{k: v[:1] for k, v in _meta().items()}})
    clashes = pa.table({"x": ["text"], **{k: v[:1] for k, v in _meta().items()}})
    warnings: list[str] = []
    table = _with_recent(stored, [clashes, fits], warnings.append)
    assert table.column("x").to_pylist() == [1.0, 2.0]
    assert len(warnings) == 1 and "x" in warnings[0]


@pytest.mark.parametrize("name", [_sealed(), _part()], ids=["sealed", "being written"])
def test_a_fifo_named_like_a_capture_file_does_not_hang_the_monitor(tmp_path: Path, name: str) -> None:
    import os
    import threading

    base = tmp_path / "capture"
    (base / "blue").mkdir(parents=True)
    fifo = base / "blue" / name
    os.mkfifo(fifo)
    store = LocalStore(tmp_path / "store")
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append((collect(store, base, "wine"), read_open(base, "wine"))),
                              daemon=True)
    worker.start()
    worker.join(20)
    hung = worker.is_alive()
    if hung:  # let the stuck open return, so the thread ends
        for p in (base / "blue").iterdir():
            with open(os.open(p, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
    assert not hung and done == [([], [])]


def test_a_capture_file_over_the_stores_blob_limit_is_set_aside_and_the_rest_collected(tmp_path: Path) -> None:
    from mlops.store.git import GitStore
    from tests.gitrepo import init_repo

    repo = init_repo(tmp_path / "repo")
    store = GitStore(repo.path, local_only=True, max_blob_bytes=4096)
    base = tmp_path / "capture"
    _write(base / "blue", _sealed(), {"x": pa.array([1.0] * ROWS), **_meta()})
    wide = {f"x[{j}]": pa.array([float(j)] * ROWS) for j in range(200)}  # a wide model's rows: many bytes
    _write(base / "green", f"{time.time_ns():019d}-1-1-{ROWS}.arrow", {**wide, **_meta()})
    records = collect(store, base, "wine")
    assert [r.deployment for r in records] == ["blue"]
    assert [p.suffix for p in (base / "green").iterdir()] == [".bad"]


def _compressed_stream(columns: dict[str, Any]) -> bytes:
    import io

    table = pa.table(columns)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    return sink.getvalue()


def test_a_compressed_capture_stream_is_refused_a_small_one_can_inflate_to_any_size(tmp_path: Path) -> None:
    import json

    from mlops.errors import CorruptRecordError

    base = tmp_path / "capture"
    (base / "blue").mkdir(parents=True)
    columns = {"x": pa.array([0.0] * ROWS), **_meta()}
    (base / "blue" / _sealed()).write_bytes(_compressed_stream(columns))
    (base / "blue" / _part()).write_bytes(_compressed_stream(columns))
    store = LocalStore(tmp_path / "store")
    assert collect(store, base, "wine") == [] and read_open(base, "wine") == []
    assert sorted(p.suffix for p in (base / "blue").iterdir()) == [".bad", ".part"]

    # a record in the store (untrusted: a hostile origin's) pointing at a compressed blob
    (base / "green").mkdir()
    _write(base / "green", _sealed(), columns)
    [record] = collect(store, base, "wine")
    blob = _compressed_stream(columns)
    doc = json.loads(store.read_record(record.key) or b"")
    doc.update(digest=store.put_bytes(blob), size=len(blob))
    store.write_record(record.key, json.dumps(doc).encode())
    with pytest.raises(CorruptRecordError, match="compressed Arrow stream"):
        read_captured(store, "wine")


def test_a_capture_file_of_absurdly_many_columns_is_set_aside(tmp_path: Path) -> None:
    base = tmp_path / "capture"
    _write(base / "blue", _sealed(), {**{f"x{j}": pa.array([0.0] * ROWS) for j in range(100_001)}, **_meta()})
    assert collect(LocalStore(tmp_path / "store"), base, "wine") == []
    assert [p.suffix for p in (base / "blue").iterdir()] == [".bad"]


def test_rows_that_claim_another_deployment_than_their_directory_are_refused(tmp_path: Path) -> None:
    base = tmp_path / "capture"
    meta = {**_meta(), "_deployment": pa.array(["green"] * ROWS)}
    _write(base / "blue", _sealed(), {"x": pa.array([0.0] * ROWS), **meta})
    _write(base / "blue", _part(), {"x": pa.array([0.0] * ROWS), **meta})
    assert collect(LocalStore(tmp_path / "store"), base, "wine") == [] and read_open(base, "wine") == []
