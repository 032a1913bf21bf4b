"""A writer SIGKILLed in the middle of a large blob leaves no damaged blob behind."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from mlops.store.digest import sha256_file
from mlops.store.local import LocalStore
from mlops.store.s3 import S3Store
from tests.store.conftest import StoreSpec, open_spec

SIZE = 64 * 1024 * 1024


def _big_file(path: Path) -> Path:
    # Varied content, so a truncated copy cannot hash like the whole.
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for i in range(SIZE // len(block)):
            f.write(i.to_bytes(8, "big") + block[8:])
    return path


def _writer(spec: StoreSpec, path: str) -> None:
    open_spec(spec).put_file(Path(path))


def _kill_mid_write(spec: StoreSpec, src: Path, in_flight: Callable[[int], bool]) -> None:
    """Start a child putting ``src``; freeze it as soon as ``in_flight(pid)``, then SIGKILL it."""
    child = mp.get_context("fork").Process(target=_writer, args=(spec, str(src)))
    child.start()
    assert child.pid is not None
    deadline = time.monotonic() + 30
    while not in_flight(child.pid):
        assert child.is_alive(), "the writer finished before it could be caught mid-write"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    os.kill(child.pid, signal.SIGSTOP)
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL


def test_local_writer_killed_mid_blob(tmp_path: Path) -> None:
    src = _big_file(tmp_path / "big.bin")
    digest = sha256_file(src)
    store = LocalStore(tmp_path / "store")
    final = store.blob_path(digest)

    def temps() -> list[Path]:
        return list(final.parent.glob(".tmp-*")) if final.parent.is_dir() else []

    _kill_mid_write(("local", (str(store.root),)), src, lambda pid: any(p.stat().st_size > 0 for p in temps()))

    left = temps()
    assert len(left) == 1 and 0 < left[0].stat().st_size < SIZE, "the kill did not land mid-write"
    assert not final.exists(), "a partial blob appeared under its final name"
    assert not store.has_blob(digest)
    assert store.gc_temp(older_than=3600) == 0  # a fresh temp file might belong to a live writer
    assert store.gc_temp(older_than=0) == 1
    assert temps() == []

    assert store.put_file(src) == digest
    assert sha256_file(final) == digest
    out = tmp_path / "out.bin"
    store.get_file(digest, out)
    assert out.stat().st_size == SIZE


def _bytes_read(pid: int) -> int:
    # rchar counts every byte the process read from files: the writer reads the source once
    # to hash it, then again while sending it, so SIZE < rchar < 2*SIZE means mid-upload.
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def test_s3_writer_killed_mid_upload(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    src = _big_file(tmp_path / "big.bin")
    digest = sha256_file(src)
    spec: StoreSpec = ("s3", (s3_bucket, "", s3_endpoint, "us-east-1"))
    read_at_kill: list[int] = []

    def uploading(pid: int) -> bool:
        read_at_kill[:] = [_bytes_read(pid)]
        return read_at_kill[0] > SIZE + 4 * 1024 * 1024

    _kill_mid_write(spec, src, uploading)
    assert read_at_kill[0] < 2 * SIZE, "the kill did not land mid-upload"

    store = open_spec(spec)
    assert isinstance(store, S3Store)
    assert not store.has_blob(digest), "a partial upload became an object"
    assert store.put_file(src) == digest
    assert store.has_blob(digest)
    out = tmp_path / "out.bin"
    store.get_file(digest, out)
    assert sha256_file(out) == digest
