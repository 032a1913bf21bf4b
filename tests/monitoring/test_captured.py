"""Captured data into the store and back: collect moves sealed files (idempotent, crash-safe, never racing the
server's disk bound), read_captured filters by deployment and time and bounds rows; damaged records or blobs are a
CorruptRecordError naming the record."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from mlops.errors import CorruptRecordError
from mlops.monitoring import captured
from mlops.monitoring.captured import collect, read_captured
from mlops.serving import capture as cap
from mlops.serving.config import CaptureConfig
from mlops.store.local import LocalStore


def write_capture(base: Path, deployment: str, values: list[int], *, ts: float, version: int = 1,
                  per_file: int = 5) -> None:
    """Requests with X = [v, v, v] (one row each) captured into sealed files of ``per_file`` rows."""
    w = cap.DeploymentCapture(base / deployment, "wine", deployment, version,
                              CaptureConfig(rotate_rows=per_file, rotate_s=3600), 1)
    items = [(ts + i, 1, {"X": np.full((1, 3), v, np.float32)}, {"label": np.array([v % 3], np.int64)})
             for i, v in enumerate(values)]
    w.write(items, 0, time.time(), seal=True)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_collect_moves_every_sealed_file_and_a_second_collect_finds_nothing(tmp_path: Path, store: LocalStore):
    base = tmp_path / "capture"
    write_capture(base, "blue", list(range(12)), ts=1000.0)
    write_capture(base, "green", [100, 101], ts=2000.0, version=2)
    (base / "blue" / "123-4.arrow.part").write_bytes(b"a file being written: not collected")
    records = collect(store, base, "wine")
    assert [(r.deployment, r.rows, r.version) for r in records] == [("blue", 5, 1), ("blue", 5, 1), ("blue", 2, 1),
                                                                    ("green", 2, 2)]
    assert records[0].start == 1000.0 and records[0].end == 1004.0
    assert records[0].columns == ["X[0]", "X[1]", "X[2]", "prediction.label", "_ts", "_deployment", "_version"]
    assert not list(base.glob("*/*.arrow")) and (base / "blue" / "123-4.arrow.part").exists()
    assert collect(store, base, "wine") == []
    table = read_captured(store, "wine")
    assert table.column("X[0]").to_pylist() == [*range(12), 100, 101]
    assert table.column("prediction.label").to_pylist() == [v % 3 for v in [*range(12), 100, 101]]
    assert set(store.list_records("monitoring/wine/captures/")) == {r.key for r in records}


def test_a_crash_before_the_record_or_before_the_delete_is_repaired_by_the_next_collect(
        tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch):
    base = tmp_path / "capture"
    write_capture(base, "blue", [1, 2, 3], ts=1000.0)

    def crash(*_a: object) -> bool:
        raise KeyboardInterrupt  # the process dies between putting the blob and writing the record

    monkeypatch.setattr(store, "create_record", crash)
    with pytest.raises(KeyboardInterrupt):
        collect(store, base, "wine")
    monkeypatch.undo()
    assert list(store.list_records("monitoring/")) == []
    assert len(list((base / "blue").glob("*.collecting"))) == 1  # claimed: kept until its record exists

    real_unlink = os.unlink

    def crash_on_delete(path: object, *a: object, **k: object) -> None:
        if str(path).endswith(".collecting"):
            raise KeyboardInterrupt  # the record exists, the local copy not deleted yet
        real_unlink(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(captured.os, "unlink", crash_on_delete)
    with pytest.raises(KeyboardInterrupt):
        collect(store, base, "wine")
    monkeypatch.undo()
    assert len(list(store.list_records("monitoring/"))) == 1
    (record,) = collect(store, base, "wine")  # the record found again, the file deleted now
    assert record.rows == 3
    assert not list((base / "blue").glob("*.arrow*"))
    assert len(list(store.list_records("monitoring/"))) == 1
    assert read_captured(store, "wine").num_rows == 3


def test_a_claimed_file_is_not_dropped_by_the_servers_disk_bound(tmp_path: Path, store: LocalStore):
    base = tmp_path / "capture"
    write_capture(base, "blue", list(range(10)), ts=1000.0)
    first = sorted((base / "blue").glob("*.arrow"))[0]
    os.rename(first, str(first) + ".collecting")  # a collect under way
    w = cap.DeploymentCapture(base / "blue", "wine", "blue", 1, CaptureConfig(max_mb=0.0001), 1)
    w._bound(0)  # far over the bound: every sealed file goes, the claimed one stays
    assert [p.name for p in (base / "blue").glob("*.arrow*")] == [first.name + ".collecting"]
    assert cap.read_dropped(base / "blue")["rows"] == 5
    assert captured.dropped_rows(base) == {"blue": 5}
    assert [r.rows for r in collect(store, base, "wine")] == [5]


def test_read_captured_filters_by_deployment_time_and_rows(tmp_path: Path, store: LocalStore):
    base = tmp_path / "capture"
    write_capture(base, "blue", list(range(10)), ts=1000.0)  # ts 1000..1009
    write_capture(base, "green", list(range(50, 60)), ts=1005.0)  # ts 1005..1014
    collect(store, base, "wine")
    assert read_captured(store, "wine").num_rows == 20
    assert read_captured(store, "wine", deployment="green").column("X[0]").to_pylist() == list(range(50, 60))
    blue = read_captured(store, "wine", deployment="blue", since=1003.0, until=1006.0)
    assert blue.column("X[0]").to_pylist() == [3, 4, 5, 6]
    from datetime import datetime, timezone

    since = datetime.fromtimestamp(1012.0, timezone.utc)
    assert read_captured(store, "wine", since=since).column("X[0]").to_pylist() == [57, 58, 59]
    newest = read_captured(store, "wine", deployment="blue", max_rows=7)
    assert newest.column("X[0]").to_pylist() == [3, 4, 5, 6, 7, 8, 9]  # the newest, oldest first
    assert read_captured(store, "wine", until=10.0).num_rows == 0
    assert read_captured(store, "other").num_rows == 0


def _one_record(tmp_path: Path, store: LocalStore) -> str:
    write_capture(tmp_path / "capture", "blue", [1, 2, 3], ts=1000.0)
    (record,) = collect(store, tmp_path / "capture", "wine")
    return record.key


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(rows=4), "has 3 rows and columns"),
    (lambda d: d.update(digest="0" * 64), "blob cannot be read|blob is damaged"),
    (lambda d: d.update(digest="../../etc"), "digest is not a sha256"),
    (lambda d: d.update(start="yesterday"), "field 'start'"),
    (lambda d: d.update(end=500.0), "time range"),
    (lambda d: d.pop("columns"), "lacks its field 'columns'"),
    (lambda d: d.update(deployment="green"), "describes another file"),
    (lambda d: d.update(schema=9), "schema 9"),
])
def test_a_tampered_record_is_a_clean_error_naming_it(tmp_path: Path, store: LocalStore, change, message: str):
    key = _one_record(tmp_path, store)
    doc = json.loads(store.read_record(key) or b"")
    change(doc)
    store.write_record(key, json.dumps(doc).encode())
    with pytest.raises(CorruptRecordError, match=rf"capture record {key} .*({message})"):
        read_captured(store, "wine")


def test_a_record_that_is_not_json_and_a_blob_with_a_bad_digest_are_clean_errors(tmp_path: Path, store: LocalStore):
    key = _one_record(tmp_path, store)
    good = store.read_record(key)
    store.write_record(key, b"{not json")
    with pytest.raises(CorruptRecordError, match="is not valid JSON"):
        read_captured(store, "wine")
    assert good is not None
    store.write_record(key, good)
    digest = json.loads(good)["digest"]
    blob = store.blob_path(digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")  # the bytes on disk no longer match their digest
    with pytest.raises(CorruptRecordError, match=rf"capture record {key} .*blob is damaged"):
        read_captured(store, "wine")
