"""Inference capture: a deployment's sampled inputs and predictions, written to rotating Arrow IPC files.

Off the request path: each onnxruntime call (``mlops.serving.batching``: one call serves a batch of concurrent
requests) draws a random number per request and appends references to its already-computed numpy arrays to the
deployment's pending list (no copy, no conversion, no file I/O; at ``sample_rate`` 1.0 one entry per call). Every
``FLUSH_S`` the worker hands the pending lists to one writer thread, which turns them into Arrow record batches
(one join per tensor for the whole flush), appends them to the open file and frees them. Sampling is per request:
a sampled request's rows are all kept.

Files live in ``<config dir>/capture/<deployment>/`` (the local target: ``.mlops/serving/<endpoint>/capture/``):

    <start ns>-<pid>-<seq>.arrow.part   the file a worker is writing (Arrow IPC stream format)
    <start ns>-<pid>-<seq>-<rows>.arrow  a sealed file: closed and renamed, never written again
    dropped.json                        {"rows", "files", "bytes"}: what the bound (or an overload) threw away
    .lock                               flock'ed while the bound is enforced (workers share the directory)

A file is sealed after ``rotate_rows`` rows, ``rotate_s`` seconds or an eighth of ``max_mb``, when its
deployment leaves the config, and when the worker drains (SIGTERM): a graceful stop loses no sampled row.
When the directory holds more than ``max_mb``, the oldest sealed files are deleted and counted (dropped.json and
``mlops_capture_dropped_rows_total``). A ``.part`` file left by a killed worker is salvaged (its complete record
batches sealed) once it has not changed for ``rotate_s`` + 60 seconds.

Columns (the monitor's conventions): an input of shape [N] is column ``name``; a 2-D input [N, k] is ``name[0]``
.. ``name[k-1]``, except [N, 1] of a model with several inputs, which is ``name``; wider tensors are flattened
per row; a tensor of more than ``MAX_COLUMNS`` values per row (an image; or a dynamic width a request chose) is
left out of the capture, as the monitor compares at most that many columns. Outputs likewise, prefixed ``prediction.``, where [N, 1] is always ``prediction.name``. Plus ``_ts``
(float64 unix seconds of the model call that answered the request), ``_deployment`` (string) and ``_version``
(int64). Inputs and outputs are the model's own: after a scoring module's preprocess, before its postprocess
(ZipMap outputs already made tensors).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import random
import re
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.errors import ServingError

if TYPE_CHECKING:
    import pyarrow as pa

    from mlops.serving.config import CaptureConfig

log = logging.getLogger("mlops.serving")

CAPTURE_DIR = "capture"
DROPPED_FILE = "dropped.json"
FLUSH_S = 0.5
ORPHAN_GRACE_S = 60.0
SEALED_RE = re.compile(r"^(\d{19})-(\d+)-(\d+)-(\d+)\.arrow$")
_PART_RE = re.compile(r"^(\d{19})-(\d+)-(\d+)\.arrow\.part$")
MAX_COLUMNS = 10_000  # values per row of one tensor (mlops.monitoring.columns.MAX_COLUMNS)
_MAX_PENDING_ROWS = 200_000  # per deployment between two flushes: more means the writer cannot keep up

Item = tuple[float, int, dict[str, np.ndarray], dict[str, np.ndarray]]  # (ts, rows, inputs, outputs)


class DeploymentCapture:
    """The capture of one deployment (one version) in one worker.

    ``record_call`` runs on the event loop; everything else on the worker's single writer thread."""

    def __init__(self, directory: Path, endpoint: str, deployment: str, version: int, cfg: CaptureConfig,
                 n_inputs: int):
        self.directory = directory
        self.endpoint, self.deployment, self.version = endpoint, deployment, version
        self.cfg = cfg
        self.n_inputs = n_inputs
        self.rate = cfg.sample_rate
        self.random = random.Random(cfg.seed).random  # noqa: S311 - sampling, not security
        self.max_bytes = int(cfg.max_mb * 1024 * 1024)
        self.pending: list[Item] = []
        self.pending_rows = 0
        self.overflow = 0  # rows refused since the last flush (the writer fell behind)
        # the writer thread's state
        self._file: _OpenFile | None = None
        self._seq = 0
        self._sealed = 0  # files sealed so far: the bound is enforced after each

    def key(self) -> tuple[Any, ...]:
        """What makes two captures the same (a config reload keeps the object when this is unchanged)."""
        return (self.directory, self.endpoint, self.deployment, self.version, self.cfg, self.n_inputs)

    # -- on the event loop -----------------------------------------------------------------
    def record_call(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], rows: int | list[int]
                    ) -> None:
        """Keep one onnxruntime call's arrays: references only, nothing copied. ``rows``: the call's rows, or the
        rows of each request it batched, in order; each request is sampled on its own (at ``sample_rate`` 1.0
        the whole call is kept as one: capture costs per call, not per request)."""
        if self.rate >= 1.0:
            self._keep(inputs, outputs, rows if isinstance(rows, int) else sum(rows))
            return
        if isinstance(rows, int):
            if self.random() < self.rate:
                self._keep(inputs, outputs, rows)
            return
        start = 0
        for n in rows:
            if self.random() < self.rate:
                end = start + n
                self._keep({k: v[start:end] for k, v in inputs.items()},
                           {k: v[start:end] if v.ndim and v.shape[0] == sum(rows) else v for k, v in outputs.items()},
                           n)
            start += n

    def _keep(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], rows: int) -> None:
        if self.pending_rows >= _MAX_PENDING_ROWS:
            self.overflow += rows
            return
        self.pending.append((time.time(), rows, inputs, outputs))
        self.pending_rows += rows

    def take(self) -> tuple[list[Item], int]:
        """The pending requests and the rows refused since the last call, handed to the writer thread."""
        items, self.pending, self.pending_rows = self.pending, [], 0
        overflow, self.overflow = self.overflow, 0
        return items, overflow

    # -- on the writer thread --------------------------------------------------------------
    def write(self, items: list[Item], overflow: int, now: float, *, seal: bool = False) -> tuple[int, int]:
        """Append ``items`` to the open file, rotate it when due (or when ``seal``), keep the directory under
        ``max_mb``. (rows written, rows dropped) — a write failure drops the rows, logged, never raised."""
        written = dropped = 0
        sealed = self._sealed
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for batch in to_batches(items, self.deployment, self.version, self.n_inputs):
                if self._file is not None and not self._file.schema.equals(batch.schema):
                    self._seal()
                offset = 0
                while offset < batch.num_rows:  # a file gets at most rotate_rows rows
                    if self._file is None:
                        self._file = self._open(batch.schema, now)
                    part = batch.slice(offset, self.cfg.rotate_rows - self._file.rows)
                    self._file.write(part)
                    offset += part.num_rows
                    written += part.num_rows
                    if self._file.rows >= self.cfg.rotate_rows:
                        self._seal()
            f = self._file
            if f is not None and (seal or f.rows >= self.cfg.rotate_rows or now - f.opened >= self.cfg.rotate_s
                                  or f.bytes >= self.max_bytes // 8):
                self._seal()
        except (OSError, ValueError, TypeError, ImportError) as e:  # pyarrow's are ValueError/TypeError subclasses
            log.warning("capture of %s: cannot write %d rows: %s", self.deployment, sum(i[1] for i in items), e)
            dropped += sum(i[1] for i in items) - written
            self._abandon()
        if sealed == self._sealed and not (overflow or dropped):
            return written, dropped  # nothing sealed nor lost: the directory did not grow past a file
        try:
            dropped += self._bound(overflow + dropped)
        except OSError as e:
            log.warning("capture of %s: cannot enforce max_mb: %s", self.deployment, e)
        return written, dropped

    def _open(self, schema: pa.Schema, now: float) -> _OpenFile:
        self._seq += 1
        stem = f"{time.time_ns():019d}-{os.getpid()}-{self._seq}"
        return _OpenFile(self.directory / f"{stem}.arrow.part", stem, schema, now)

    def _seal(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            self._sealed += 1
            f.seal(self.directory)

    def _abandon(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(Exception):
                f.seal(self.directory)

    def _bound(self, also_dropped: int) -> int:
        """Delete the oldest sealed files while the directory holds more than ``max_mb``; the rows deleted.
        Under the directory's lock: the workers of a server share it."""
        with _locked(self.directory):
            sealed: list[tuple[str, int, int]] = []  # name, size, rows
            total = 0
            now = time.time()
            for entry in os.scandir(self.directory):
                m = SEALED_RE.match(entry.name)
                if m is None and _PART_RE.match(entry.name):
                    salvaged = _salvage_orphan(self.directory, entry, now, self.cfg.rotate_s + ORPHAN_GRACE_S,
                                               self._file.path.name if self._file else None)
                    if salvaged is not None:
                        m = SEALED_RE.match(salvaged.name)
                        entry_size = salvaged.stat().st_size
                        if m is not None:
                            sealed.append((salvaged.name, entry_size, int(m.group(4))))
                        total += entry_size
                        continue
                if m is None and not _PART_RE.match(entry.name):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    size = entry.stat().st_size
                    total += size
                    if m is not None:
                        sealed.append((entry.name, size, int(m.group(4))))
            sealed.sort()
            files = rows = size_dropped = 0
            for name, size, n in sealed:
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):  # collected meanwhile: not dropped
                    os.unlink(self.directory / name)
                    files += 1
                    rows += n
                    size_dropped += size
                total -= size
            if files or also_dropped:
                add_dropped(self.directory, rows + also_dropped, files, size_dropped)
        return rows


class _OpenFile:
    """A ``.part`` file being written (Arrow IPC stream format)."""

    def __init__(self, path: Path, stem: str, schema: pa.Schema, now: float):
        import pyarrow as pa

        self.path, self.stem, self.schema, self.opened = path, stem, schema, now
        self.rows = 0
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema)

    @property
    def bytes(self) -> int:
        return int(self.sink.tell())

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def seal(self, directory: Path) -> None:
        """Close the stream and rename it ``<stem>-<rows>.arrow`` (an empty file is removed instead)."""
        try:
            self.writer.close()
        finally:
            self.sink.close()
        if self.rows == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        os.replace(self.path, directory / f"{self.stem}-{self.rows}.arrow")


def _salvage_orphan(directory: Path, entry: os.DirEntry[str], now: float, grace: float, mine: str | None
                    ) -> Path | None:
    """A ``.part`` file that nobody has written for ``grace`` seconds (its worker was killed): its complete
    record batches sealed into a ``.arrow`` file, the rest lost. None when the file is still someone's."""
    if entry.name == mine:
        return None
    try:
        if now - entry.stat().st_mtime < grace:
            return None
    except FileNotFoundError:
        return None
    import pyarrow as pa

    path = directory / entry.name
    batches = []
    try:
        with pa.OSFile(str(path), "rb") as f:
            reader = pa.ipc.open_stream(f)
            schema = reader.schema
            with contextlib.suppress(pa.ArrowInvalid, OSError):
                for batch in reader:
                    batches.append(batch)
    except (pa.ArrowInvalid, OSError):
        batches = []
    stem = entry.name[: -len(".arrow.part")]
    rows = sum(b.num_rows for b in batches)
    if not rows:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return None
    out = directory / f"{stem}-{rows}.arrow"
    tmp = directory / f".{stem}.salvage"
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for b in batches:
            writer.write_batch(b)
    os.replace(tmp, out)
    os.unlink(path)
    log.warning("capture: salvaged %d rows of %s (its worker stopped without sealing it)", rows, entry.name)
    return out


@contextlib.contextmanager
def _locked(directory: Path) -> Any:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_dropped(directory: Path) -> dict[str, int]:
    """The counts of ``dropped.json`` (zeros when there is none or it is damaged)."""
    out = {"rows": 0, "files": 0, "bytes": 0}
    try:
        # its first 4 KiB, of a regular file: a huge one or a FIFO in its place would take the writer's memory or time
        fd = os.open(directory / DROPPED_FILE, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        try:
            doc = json.loads(os.read(fd, 4096)) if stat.S_ISREG(os.fstat(fd).st_mode) else None
        finally:
            os.close(fd)
    except (OSError, ValueError, RecursionError):
        return out
    if isinstance(doc, dict):
        for k in out:
            v = doc.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                out[k] = v
    return out


def add_dropped(directory: Path, rows: int, files: int, size: int) -> None:
    """Add to ``dropped.json`` (the caller holds the directory's lock)."""
    from mlops.paths import write_atomic

    doc = read_dropped(directory)
    doc["rows"] += rows
    doc["files"] += files
    doc["bytes"] += size
    write_atomic(directory / DROPPED_FILE, json.dumps(doc).encode())


# -- arrays to record batches ----------------------------------------------------------------
def to_batches(items: list[Item], deployment: str, version: int, n_inputs: int) -> list[pa.RecordBatch]:
    """Record batches of ``items``: one per run of requests whose tensors have the same names, dtypes and
    trailing shapes (usually one for the whole flush). A request whose tensors disagree on the row count
    (a scoring module's doing) is left out."""
    if not items:
        return []
    fast = _same_shape(items)
    if fast is not None:  # the usual case, at a few numpy calls per flush instead of Python work per request
        return [_batch(items, fast, deployment, version, n_inputs)]
    groups: dict[tuple[Any, ...], list[Item]] = {}
    for item in items:
        _, rows, inputs, outputs = item
        try:
            sig = (tuple((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items() if v.shape[:1] == (rows,)),
                   tuple((k, v.dtype.str, v.shape[1:]) for k, v in outputs.items() if v.shape[:1] == (rows,)))
        except AttributeError:  # not an array (a scoring module's doing)
            continue
        groups.setdefault(sig, []).append(item)
    batches = []
    for (in_sig, out_sig), group in groups.items():
        tensors = []
        for sig, dicts in ((in_sig, [it[2] for it in group]), (out_sig, [it[3] for it in group])):
            got = {}
            for name, _, _ in sig:
                parts = [t[name] for t in dicts]
                got[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
            tensors.append(got)
        batches.append(_batch(group, (tensors[0], tensors[1]), deployment, version, n_inputs))
    return batches


def _same_shape(items: list[Item]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """Every tensor of ``items`` concatenated, when all requests have the first one's tensors and the rows add
    up; None otherwise (then requests are grouped one by one)."""
    rows = sum([it[1] for it in items])
    out = []
    try:
        for dicts in ([it[2] for it in items], [it[3] for it in items]):
            got = {}
            for name, first in dicts[0].items():
                value = _concatenate([t[name] for t in dicts], first, rows)
                if value.ndim == 0 or value.shape[0] != rows or value.dtype != first.dtype:
                    return None
                got[name] = value
            out.append(got)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    return out[0], out[1]


def _concatenate(arrays: list[np.ndarray], first: np.ndarray, rows: int) -> np.ndarray:
    """``numpy.concatenate(arrays)``, through one ``bytes.join`` of their buffers when they are plain contiguous
    arrays like the first (numpy's own concatenate spends a microsecond per array; this a tenth of that)."""
    if len(arrays) == 1:
        return first
    if not first.dtype.hasobject and first.ndim >= 1 and len({a.dtype for a in arrays}) == 1:
        try:
            data = b"".join(arrays)  # type: ignore[arg-type]  # ndarrays are buffers
        except (TypeError, BufferError, ValueError):  # one of them is not contiguous
            data = None
        if data is not None and len(data) == rows * first.itemsize * math.prod(first.shape[1:]):
            return np.frombuffer(data, first.dtype).reshape((rows, *first.shape[1:]))
    return np.concatenate(arrays)


def _batch(items: list[Item], tensors: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], deployment: str,
           version: int, n_inputs: int) -> pa.RecordBatch:
    import pyarrow as pa

    names: list[str] = []
    arrays: list[pa.Array] = []
    for prefix, got, keep_single in (("", tensors[0], n_inputs > 1), ("prediction.", tensors[1], True)):
        for name, value in got.items():
            for col, arr in _columns(prefix + name, value, value.shape[1:], keep_single):
                names.append(col)
                arrays.append(_arrow(arr))
    rows = np.array([it[1] for it in items], dtype=np.int64)
    n = int(rows.sum())
    ts = np.repeat(np.array([it[0] for it in items], dtype=np.float64), rows)
    names += ["_ts", "_deployment", "_version"]
    arrays += [pa.array(ts), pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [deployment]).cast(pa.string()),
               pa.array(np.full(n, version, dtype=np.int64))]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _columns(name: str, value: np.ndarray, trailing: tuple[int, ...], keep_single: bool
             ) -> Iterable[tuple[str, np.ndarray]]:
    if not trailing:
        return [(name, value)]
    if len(trailing) == 1 and trailing[0] == 1 and keep_single:
        return [(name, value.reshape(-1))]
    if math.prod(trailing) > MAX_COLUMNS:  # an Arrow array per value: seconds and hundreds of MB per flush
        if name not in _TOO_WIDE:
            _TOO_WIDE.add(name)
            log.warning("capture: %s has %d values per row, more than %d: left out of the capture", name,
                        math.prod(trailing), MAX_COLUMNS)
        return []
    flat = value.reshape(value.shape[0], -1).T  # one contiguous row per column after the copy below
    flat = np.ascontiguousarray(flat)
    return [(f"{name}[{j}]", flat[j]) for j in range(flat.shape[0])]


_TOO_WIDE: set[str] = set()  # tensors already said to be too wide (once per process)


def _arrow(values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    if values.dtype == object:
        return pa.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values],
                        type=pa.string())
    return pa.array(values)


# -- the worker's side -----------------------------------------------------------------------
def capture_dir(directory: Path, deployment: str) -> Path:
    """``<config dir>/capture/<deployment>``; ServingError when ``capture`` is a symbolic link (the config
    directory is mlops's own: nothing may lead the server to write elsewhere)."""
    base = Path(directory) / CAPTURE_DIR
    if base.is_symlink() or (base / deployment).is_symlink():
        raise ServingError(f"{base}: a symbolic link: captures are written only inside the server directory")
    return base / deployment


class Flusher:
    """Hands every deployment's pending requests to one writer thread, every ``FLUSH_S`` and at the end.

    ``current()`` gives the captures of the config being served; a capture that is no longer in it (its
    deployment left or changed) gets its last rows written and its file sealed."""

    def __init__(self, current: Callable[[], Iterable[DeploymentCapture]],
                 count: Callable[[str, str, int, int], None]):
        from concurrent.futures import ThreadPoolExecutor

        self.current = current
        self.count = count  # (endpoint, deployment, rows written, rows dropped), on the event loop
        self.known: dict[int, DeploymentCapture] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-capture")

    def track(self, captures: Iterable[DeploymentCapture]) -> None:
        """Make sure ``captures`` get flushed (and sealed once gone): called with the captures of a config
        about to be replaced, which the next flush might otherwise never see."""
        for c in captures:
            self.known[id(c)] = c

    async def run(self) -> None:
        """Flush every FLUSH_S until cancelled (a flush under way still finishes: see ``close``)."""
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except Exception:  # a bug of ours: logged, and the next flush tries again
                log.exception("capture: flushing failed")

    async def flush(self, final: bool = False) -> None:
        """Write what is pending (``final``: and seal every file)."""
        active = {id(c): c for c in self.current()}
        self.known.update(active)
        jobs = []
        for key, cap in list(self.known.items()):
            retired = key not in active
            items, overflow = cap.take()
            if items or overflow or final or retired or cap._file is not None:
                jobs.append((cap, items, overflow, final or retired))
            if retired:
                del self.known[key]
        if not jobs:
            return
        loop = asyncio.get_running_loop()
        # shielded: a cancelled flusher must not cancel the write of rows it already took
        results = await asyncio.shield(loop.run_in_executor(self.executor, _write_all, jobs, time.time()))
        for cap, (written, dropped) in zip((j[0] for j in jobs), results, strict=True):
            if written or dropped:
                self.count(cap.endpoint, cap.deployment, written, dropped)

    async def close(self) -> None:
        """The final flush (the worker drains): every sampled row written, every file sealed."""
        try:
            await self.flush(final=True)
        finally:
            self.executor.shutdown(wait=True)


def _write_all(jobs: list[tuple[DeploymentCapture, list[Item], int, bool]], now: float) -> list[tuple[int, int]]:
    out = []
    for cap, items, overflow, seal in jobs:
        out.append(cap.write(items, overflow, now, seal=seal))
        items.clear()  # freed here, not on the event loop when the flush returns
    return out
