"""Captured inference data in the store: collected from a server's capture directory, read back as one table.

A scoring server writes sealed Arrow IPC stream files to ``<capture dir>/<deployment>/`` (see
``mlops.serving.capture``; their names, ``<start ns>-<pid>-<seq>-<rows>.arrow``, are the contract between the two).
``collect`` moves each into the ArtifactStore: the blob by its sha256, then one record per file,

    monitoring/<endpoint>/captures/<deployment>/<file stem>
    {"schema": 1, "endpoint", "deployment", "version", "file", "digest", "rows", "size" (bytes),
     "start", "end" (unix seconds of the first and last request), "columns", "collected"}

and only then deletes the local file. A file is claimed first (renamed ``.collecting``: the server's disk bound no
longer drops it), so a crash at any point is repaired by the next ``collect``: the blob put again is the same blob,
the record found again must name the same digest. ``read_captured`` treats records as untrusted: every field is
checked, the blob is verified against its digest and against the record (rows, columns), and any mismatch is a
``CorruptRecordError`` naming the record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import CorruptRecordError, IntegrityError, MlopsError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

    from mlops.store.protocol import ArtifactStore

log = logging.getLogger("mlops.monitoring")

SCHEMA = 1
FIX = "delete the record (captured data it describes is then lost) or restore it from a backup"
# mlops.serving.capture's file names (the serving package is a base module monitoring does not import)
_SEALED_RE = re.compile(r"^(\d{19})-(\d+)-(\d+)-(\d+)\.arrow$")
_PART_RE = re.compile(r"^(\d{19})-(\d+)-(\d+)\.arrow\.part$")  # a file a worker is still writing
_CLAIMED = ".collecting"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_STEM_RE = re.compile(r"^\d{19}-\d+-\d+-\d+$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_META = ("_ts", "_deployment", "_version")
_META_TYPES = {"_ts": "double", "_deployment": "string", "_version": "int64"}  # what _read_blob requires
_MAX_RECORD = 1 << 20
_MAX_COLUMNS = 100_000  # the server keeps at most 10,000 per tensor (serving.capture.MAX_COLUMNS)


@dataclass(frozen=True)
class CaptureRecord:
    """One collected capture file: where its rows are (``digest``) and what they cover."""

    endpoint: str
    deployment: str
    version: int
    file: str  # the file's name on the server
    digest: str  # sha256 of the Arrow IPC stream blob
    rows: int
    size: int  # bytes
    start: float  # unix seconds of the first request in it
    end: float  # ... and of the last
    columns: list[str]
    collected: str  # ISO 8601 UTC
    schema: int = SCHEMA

    @property
    def key(self) -> str:
        return record_key(self.endpoint, self.deployment, self.file)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, allow_nan=False) + "\n").encode()


def captures_prefix(endpoint: str, deployment: str | None = None) -> str:
    """Where an endpoint's (or one deployment's) capture records live."""
    base = f"monitoring/{_name(endpoint, 'endpoint')}/captures/"
    return base if deployment is None else f"{base}{_name(deployment, 'deployment')}/"


def record_key(endpoint: str, deployment: str, file: str) -> str:
    """The record key of capture file ``file`` (its name on the server) of ``deployment``."""
    return captures_prefix(endpoint, deployment) + file[: -len(".arrow")]


# -- collecting ------------------------------------------------------------------------------
def collect(store: ArtifactStore, capture_dir: Path, endpoint: str) -> list[CaptureRecord]:
    """Move every sealed capture file under ``capture_dir`` (``<capture dir>/<deployment>/*.arrow``) into
    ``store``; the records of the files moved, oldest first. Idempotent and crash-safe (module docstring). A file
    that is not a readable capture file is left in place, renamed ``.bad``, with a warning."""
    _name(endpoint, "endpoint")
    out: list[CaptureRecord] = []
    base = Path(capture_dir)
    if not base.is_dir() or base.is_symlink():
        return out
    for sub in sorted(base.iterdir()):
        if not _NAME_RE.fullmatch(sub.name) or sub.is_symlink() or not sub.is_dir():
            continue
        for name in sorted(os.listdir(sub)):
            file = name[: -len(_CLAIMED)] if name.endswith(_CLAIMED) else name
            if not _SEALED_RE.fullmatch(file):
                continue
            record = _collect_one(store, sub, name, file, endpoint, sub.name)
            if record is not None:
                out.append(record)
    return sorted(out, key=lambda r: (r.start, r.key))


def _collect_one(store: ArtifactStore, directory: Path, name: str, file: str, endpoint: str, deployment: str
                 ) -> CaptureRecord | None:
    claimed = directory / (file + _CLAIMED)
    if name == file:
        try:
            os.rename(directory / file, claimed)  # the server's disk bound leaves a claimed file alone
        except FileNotFoundError:  # dropped by the bound, or another collect took it
            return None
    if not _regular(claimed):  # a link, a FIFO (opening one would wait forever), a device: none of the server's
        return None
    try:
        record = _describe(claimed, endpoint, deployment, file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, NotImplementedError, ArithmeticError) as e:
        # pyarrow's errors subclass these (ArrowNotImplementedError: a kernel for a column of another type)
        log.warning("capture file %s is not readable (%s): left as %s.bad", claimed, e, file)
        with contextlib.suppress(OSError):
            os.rename(claimed, directory / (file + ".bad"))
        return None
    limit = getattr(store, "max_blob_bytes", None)  # the git store's (50 MiB by default): a wide model's file
    if isinstance(limit, int) and record.size > limit:  # would fail every collect, and the server keeps it
        log.warning("capture file %s is %d bytes, over the store's blob limit of %d: left as %s.bad (lower the "
                    "endpoint's capture rotate_rows, or keep artifacts in S3)", claimed, record.size, limit, file)
        with contextlib.suppress(OSError):
            os.rename(claimed, directory / (file + ".bad"))
        return None
    digest = store.put_file(claimed)
    if digest != record.digest:
        raise StoreError(f"{claimed} changed while it was collected; run the collection again")
    if not store.create_record(record.key, record.to_json()):
        existing = _read_record(store, record.key, endpoint)
        if existing.digest != record.digest:
            raise CorruptRecordError(f"capture record {record.key} in {store.url} names blob {existing.digest}, "
                                     f"but {claimed} is {record.digest}; {FIX}")
        record = existing
    with contextlib.suppress(FileNotFoundError):
        os.unlink(claimed)  # only now: the record exists
    return record


def _describe(path: Path, endpoint: str, deployment: str, file: str) -> CaptureRecord:
    """The record of a local capture file, read batch by batch (bounded memory)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlops.store.digest import sha256_file

    rows = 0
    start, end = math.inf, -math.inf
    versions: set[int] = set()
    if _compressed(path):
        raise ValueError("a compressed Arrow stream (the server writes none)")
    with pa.OSFile(str(path), "rb") as f:
        reader = pa.ipc.open_stream(f)
        schema = reader.schema
        problem = _schema_problem(schema)
        if problem:
            raise ValueError(problem)
        for batch in reader:
            if not batch.num_rows:
                continue
            rows += batch.num_rows
            bounds = pc.min_max(batch.column("_ts"))
            start, end = min(start, bounds["min"].as_py()), max(end, bounds["max"].as_py())
            versions.update(pc.unique(batch.column("_version")).to_pylist())
            if pc.unique(batch.column("_deployment")).to_pylist() != [deployment]:
                raise ValueError(f"rows of another deployment than {deployment} (its directory)")
    if not rows or len(versions) != 1 or not math.isfinite(start) or not math.isfinite(end):
        raise ValueError("no rows, or rows of several versions, or timestamps that are not finite")
    return CaptureRecord(endpoint=endpoint, deployment=deployment, version=int(versions.pop()), file=file,
                         digest=sha256_file(path), rows=rows, size=path.stat().st_size, start=float(start),
                         end=float(end), columns=list(schema.names),
                         collected=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def read_open(capture_dir: Path, endpoint: str, *, max_bytes: int = 256 << 20) -> list[pa.Table]:
    """The complete record batches of the files the servers are still writing (``.arrow.part``), read
    without touching them: the rows of the last seconds, which ``collect`` takes only once a file is
    sealed (after ``rotate_s``, 60 s by default). Nothing is stored, so a later run that collects the
    sealed file counts each row once. Files over ``max_bytes`` in all are left out (the server's own
    bound keeps them far smaller)."""
    import pyarrow as pa

    _name(endpoint, "endpoint")
    base = Path(capture_dir)
    out: list[pa.Table] = []
    if not base.is_dir() or base.is_symlink():
        return out
    budget = max_bytes
    for sub in sorted(base.iterdir()):
        if not _NAME_RE.fullmatch(sub.name) or sub.is_symlink() or not sub.is_dir():
            continue
        for name in sorted(os.listdir(sub)):
            path = sub / name
            if not _PART_RE.fullmatch(name) or not _regular(path):  # sealed meanwhile, or none of the server's
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # sealed meanwhile: the next collect takes it
            if size > budget:
                continue
            budget -= size
            if _compressed(path):
                continue  # none of the server's (see _compressed)
            batches = []
            # a batch half-written stops the read there
            with contextlib.suppress(pa.ArrowException, OSError), pa.OSFile(str(path), "rb") as f:
                for batch in pa.ipc.open_stream(f):
                    batches.append(batch)
            if batches and _schema_problem(batches[0].schema) is None:
                table = pa.Table.from_batches(batches)
                if table.column("_deployment").unique().to_pylist() == [sub.name]:  # the server's own rows
                    out.append(table)
    return out


def _head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (not a symbolic link, FIFO, socket or device)."""
    import stat

    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _compressed(source: Any) -> bool:
    """Whether the Arrow IPC stream ``source`` (a path or a buffer) holds a compressed batch. The server never
    writes one, and a small compressed batch can inflate to any size in memory when read: such a file is not a
    capture file. Reads each message's metadata (the flatbuffer ``Message``: its ``RecordBatch``, or a
    ``DictionaryBatch``'s, has ``compression`` set), never a body inflated; a damaged stream stops the look
    there (reading it fails later on its own)."""
    import pyarrow as pa

    try:
        opened = pa.OSFile(str(source), "rb") if isinstance(source, (str, Path)) else pa.BufferReader(source)
        with opened as f:
            for message in pa.ipc.MessageReader.open_stream(f):
                if message.type in ("record batch", "dictionary") and _fb_compressed(bytes(message.metadata)):
                    return True
    except (pa.ArrowException, OSError, ValueError):
        pass
    return False


def _fb_compressed(buf: bytes) -> bool:
    """The ``compression`` field of a flatbuffer ``Message`` whose header is a RecordBatch (3) or a
    DictionaryBatch (2, its ``data``); True also when the flatbuffer cannot be followed (refused, then)."""
    import struct

    def field(table: int, index: int) -> int:  # the field's offset in its table, 0 when absent
        vtable = table - struct.unpack_from("<i", buf, table)[0]
        size = struct.unpack_from("<H", buf, vtable)[0]
        return struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0] if 4 + 2 * index + 2 <= size else 0

    def table_at(table: int, index: int) -> int | None:
        off = field(table, index)
        return table + off + struct.unpack_from("<I", buf, table + off)[0] if off else None

    try:
        root = struct.unpack_from("<I", buf, 0)[0]
        kind_at = field(root, 1)
        kind = buf[root + kind_at] if kind_at else 0
        header = table_at(root, 2)
        if header is not None and kind == 2:
            header = table_at(header, 1)
        return header is not None and kind in (2, 3) and field(header, 3) != 0
    except (struct.error, IndexError):
        return True


def _schema_problem(schema: pa.Schema) -> str | None:
    """Why a capture file's columns are not what the server writes (None: they are). Checked before a file is
    stored or read, as the rows of any file are compared by these columns' values and types."""
    names = list(schema.names)
    if len(names) > _MAX_COLUMNS:
        return f"{len(names)} columns, more than {_MAX_COLUMNS}"
    if len(set(names)) != len(names):
        return "a column name appears more than once"
    missing = [c for c in _META if c not in names]
    if missing:
        return f"no column {', '.join(missing)}"
    wrong = [c for c, t in _META_TYPES.items() if str(schema.field(c).type) != t]
    if wrong:
        return f"column {', '.join(wrong)} has the wrong type (_ts double, _deployment string, _version int64)"
    return None


def dropped_rows(capture_dir: Path) -> dict[str, int]:
    """deployment -> sampled rows the server lost (its disk bound deleted them before they were collected, or its
    writer fell behind), from each deployment directory's ``dropped.json``."""
    out: dict[str, int] = {}
    base = Path(capture_dir)
    if not base.is_dir():
        return out
    for sub in sorted(base.iterdir()):
        if not _NAME_RE.fullmatch(sub.name) or not sub.is_dir():
            continue
        try:
            doc = json.loads(_head(sub / "dropped.json")) if _regular(sub / "dropped.json") else None
        except (OSError, ValueError, RecursionError):
            continue
        rows = doc.get("rows") if isinstance(doc, dict) else None
        if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0:
            out[sub.name] = rows
    return out


# -- reading -----------------------------------------------------------------------------------
def list_captures(store: ArtifactStore, endpoint: str, *, deployment: str | None = None,
                  since: float | datetime | None = None, until: float | datetime | None = None
                  ) -> list[CaptureRecord]:
    """The capture records of ``endpoint`` (one ``deployment``) that cover part of [since, until], oldest first."""
    lo, hi = _seconds(since, -math.inf), _seconds(until, math.inf)
    out = []
    for key in store.list_records(captures_prefix(endpoint, deployment)):
        rest = key.split("/")[3:]
        if len(rest) != 2 or not _STEM_RE.fullmatch(rest[1]):
            continue  # not a capture record (a stray key)
        record = _read_record(store, key, endpoint)
        if record.end >= lo and record.start <= hi:
            out.append(record)
    return sorted(out, key=lambda r: (r.start, r.key))


def read_captured(store: ArtifactStore, endpoint: str, *, deployment: str | None = None,
                  since: float | datetime | None = None, until: float | datetime | None = None,
                  max_rows: int | None = None) -> pa.Table:
    """The captured rows of ``endpoint`` (one ``deployment``) whose request time is in [since, until] (unix seconds
    or aware datetimes), oldest first, as one table; with ``max_rows``, the newest ``max_rows`` of them (files are
    read newest first and reading stops there, so memory stays bounded by what is returned plus one file).
    Columns missing from some files (another model version) are null there. CorruptRecordError when a record or
    its blob is damaged."""
    import pyarrow as pa

    if max_rows is not None and max_rows < 0:
        raise MlopsError(f"max_rows must be at least 0, got {max_rows}")
    lo, hi = _seconds(since, -math.inf), _seconds(until, math.inf)
    records = list_captures(store, endpoint, deployment=deployment, since=lo, until=hi)
    tables: list[pa.Table] = []
    total = 0
    for record in reversed(records):
        if max_rows is not None and total >= max_rows:
            break
        table = _read_blob(store, record)
        if record.start < lo or record.end > hi:
            import pyarrow.compute as pc

            ts = table.column("_ts")
            table = table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less_equal(ts, hi)))
        if max_rows is not None and total + table.num_rows > max_rows:
            table = table.slice(table.num_rows - (max_rows - total))
        tables.append(table)
        total += table.num_rows
    if not tables:
        return pa.table({"_ts": pa.array([], pa.float64()), "_deployment": pa.array([], pa.string()),
                         "_version": pa.array([], pa.int64())})
    tables.reverse()
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise CorruptRecordError(f"captures of {endpoint} cannot be put in one table ({e}): one of their records "
                                 f"describes data of another shape; {FIX}") from None


def _read_blob(store: ArtifactStore, record: CaptureRecord) -> pa.Table:
    import pyarrow as pa

    where = f"capture record {record.key} in {store.url}"
    try:
        data = store.get_bytes(record.digest)
    except IntegrityError as e:
        raise CorruptRecordError(f"{where}: its blob is damaged ({e}); {FIX}") from None
    except StoreError as e:
        raise CorruptRecordError(f"{where}: its blob cannot be read ({e}); {FIX}") from None
    if _compressed(pa.py_buffer(data)):
        raise CorruptRecordError(f"{where}: its blob is a compressed Arrow stream, which no capture file is; {FIX}")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise CorruptRecordError(f"{where}: its blob is not an Arrow IPC stream ({e}); {FIX}") from None
    if table.num_rows != record.rows or table.column_names != record.columns:
        raise CorruptRecordError(f"{where}: its blob has {table.num_rows} rows and columns "
                                 f"{', '.join(table.column_names)[:200]}, not what the record says; {FIX}")
    types = {"_ts": pa.float64(), "_deployment": pa.string(), "_version": pa.int64()}
    if any(table.schema.field(c).type != t for c, t in types.items()):
        raise CorruptRecordError(f"{where}: its blob's _ts, _deployment or _version column has the wrong type; {FIX}")
    return table


def _read_record(store: ArtifactStore, key: str, endpoint: str) -> CaptureRecord:
    from mlops.recordjson import fields_of, parse_json

    where = f"capture record {key} in {store.url}"
    raw = store.read_record(key)
    if raw is None:
        raise CorruptRecordError(f"{where} vanished while it was read; {FIX}")
    if len(raw) > _MAX_RECORD:
        raise CorruptRecordError(f"{where} is larger than {_MAX_RECORD} bytes; {FIX}")
    record = fields_of(CaptureRecord, parse_json(raw, where, FIX), where, FIX)
    problem = _problem(record)
    if problem is None and (record.endpoint != endpoint or record.key != key):
        problem = "it describes another file than its key names"
    if problem is not None:
        raise CorruptRecordError(f"{where}: {problem}; {FIX}")
    return record


def _problem(r: CaptureRecord) -> str | None:
    """What is wrong with a record's fields (None: nothing)."""
    if r.schema != SCHEMA:
        return f"schema {r.schema} is not {SCHEMA} (written by another mlops?)"
    if not _NAME_RE.fullmatch(r.deployment) or not _SEALED_RE.fullmatch(r.file):
        return "its deployment or file name is malformed"
    if not _HEX64_RE.fullmatch(r.digest):
        return "its digest is not a sha256"
    if r.rows <= 0 or r.size <= 0 or r.version < 0:
        return "its rows, size or version are not positive"
    if not (math.isfinite(r.start) and math.isfinite(r.end) and r.start <= r.end):
        return "its time range is not a finite start <= end"
    if not all(isinstance(c, str) for c in r.columns) or any(c not in r.columns for c in _META):
        return "its columns are not names including _ts, _deployment and _version"
    return None


def _seconds(t: float | datetime | None, default: float) -> float:
    if t is None:
        return default
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise MlopsError(f"{t.isoformat()}: give a time zone (naive datetimes are ambiguous)")
        return t.timestamp()
    return float(t)


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise MlopsError(f"{what} name {value!r} is not a name (letters, digits, '.', '_', '-')")
    return value
