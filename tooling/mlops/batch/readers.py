"""The input, streamed one mini-batch at a time, with bounded memory.

* **CSV**: a header row, then one row per record (RFC 4180 quoting; a quoted field may hold newlines).
  Every column but the id column is a feature.
* **JSONL**: one JSON object per line; the first object's keys (but the id) name the features, in order.
* **Parquet**: the file's columns (but the id) are the features, read with ``iter_batches``.

A mini-batch is ``mini_batch_size`` records (blank lines are not records). CSV and JSONL are cut into
mini-batches by scanning the bytes for record ends (vectorised with numpy), and each mini-batch is parsed
by pyarrow in one go; a mini-batch that pyarrow refuses (a field that is no number, a row of the wrong
width, a line that is no JSON object) is parsed again row by row, so that only its bad rows are set
aside, each with its reason. Features that are empty, null or not finite make a row bad too.

A row is identified by its number (1 = the first record after the header) and, with ``id_column``, by
that column's value. Where a mini-batch ends is a byte offset (CSV, JSONL) or a row number (Parquet):
the journal keeps it, so a resumed run starts exactly where the last completed mini-batch ended.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops.errors import BatchError

BLOCK = 1 << 20  # bytes read at a time
MAX_BUFFER = 256 << 20  # a mini-batch of text never holds more: a longer one is cut short (fewer rows)
MAX_COLUMNS = 10_000


@dataclass
class Chunk:
    """One mini-batch: the rows that parsed (``ids``, ``x``), and the rows set aside (``bad``)."""

    ids: Any  # pyarrow Array: the good rows' ids (their numbers as int64, or the id column's values)
    x: Any  # numpy float64 [good rows, features]
    bad: list[tuple[int, Any, str]]  # (row number, id or None, reason), in input order
    rows: int  # records covered, good and bad
    end: int  # where the next mini-batch starts: byte offset (csv, jsonl) or row number (parquet)
    rownos: Any = None  # numpy int64: the good rows' numbers


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is a dependency; say what to do if it is missing
        raise BatchError("batch scoring needs pyarrow: pip install 'pyarrow>=14'") from None
    return pyarrow


class Reader:
    """Base of the three readers: ``columns`` (the features, in order), ``id_name`` (the output's id
    column), ``id_type``, ``start`` (where the first record is) and ``total`` (for progress, in ``unit``)."""

    columns: list[str]
    id_name: str
    id_type: Any
    start: int
    total: int
    unit: str = "bytes"

    def chunks(self, position: int, rows_before: int) -> Iterator[Chunk]:  # pragma: no cover - abstract
        raise NotImplementedError


class TextReader(Reader):
    """CSV and JSONL: the file cut at record ends into mini-batches, each parsed whole by pyarrow
    (``_fast``) or, when pyarrow refuses it, record by record (``_slow``) so that only bad rows are set aside."""

    fd: int
    k: int
    name: str
    quoted: bool

    def chunks(self, position: int, rows_before: int) -> Iterator[Chunk]:
        first_row = rows_before + 1
        for data, end in _slices(self.fd, position, self.k, self.quoted, self.name):
            chunk = self._fast(data, first_row, end)
            if chunk is None:
                chunk = self._slow(data, first_row, end)
            first_row += chunk.rows
            yield chunk

    def _fast(self, data: bytes, first_row: int, end: int) -> Chunk | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _slow(self, data: bytes, first_row: int, end: int) -> Chunk:  # pragma: no cover - abstract
        raise NotImplementedError


def open_reader(fmt: str, fd: int, size: int, mini_batch_size: int, id_column: str | None, name: str) -> Reader:
    """A reader of the open file ``fd`` (``size`` bytes) in format ``fmt`` (csv, jsonl, parquet)."""
    if fmt == "csv":
        return CsvReader(fd, size, mini_batch_size, id_column, name)
    if fmt == "jsonl":
        return JsonlReader(fd, size, mini_batch_size, id_column, name)
    if fmt == "parquet":
        return ParquetReader(fd, mini_batch_size, id_column, name)
    raise BatchError(f"input {name}: unknown format {fmt!r}")


# -- cutting text into records --------------------------------------------------------------------------
def _record_ends(buf: bytes, quoted: bool) -> Any:
    """Offsets just after each record's newline in ``buf`` (which starts at a record boundary). With
    ``quoted``, a newline inside a quoted field is no record end (quotes are balanced between records:
    RFC 4180 doubles a quote inside a field)."""
    b = np.frombuffer(buf, np.uint8)
    nl = b == 10
    if quoted:
        nl &= (np.cumsum(b == 34, dtype=np.int64) & 1) == 0
    return np.flatnonzero(nl) + 1


def _slices(fd: int, start: int, k: int, quoted_ok: bool, name: str) -> Iterator[tuple[bytes, int]]:
    """(bytes of up to ``k`` records, offset after them) from ``start`` to the end of the file."""
    pos, buf, eof = start, b"", False
    while True:
        quoted = quoted_ok and b'"' in buf
        ends = _record_ends(buf, quoted)
        while len(ends) < k and not eof and len(buf) < MAX_BUFFER:
            data = os.pread(fd, max(BLOCK, len(buf)), pos + len(buf))
            if not data:
                eof = True
                break
            buf += data
            quoted = quoted_ok and b'"' in buf
            ends = _record_ends(buf, quoted)
        if len(ends) >= k:
            cut = int(ends[k - 1])
        elif eof or not len(ends):
            if not eof:  # MAX_BUFFER bytes without one record end
                raise BatchError(f"input {name}: the record at byte {pos} is longer than {MAX_BUFFER >> 20} MB")
            cut = len(buf)
        else:  # MAX_BUFFER bytes hold fewer than k records: a shorter mini-batch keeps memory bounded
            cut = int(ends[-1])
        if not cut:
            return
        yield buf[:cut], pos + cut
        buf, pos = buf[cut:], pos + cut


# -- turning parsed columns into a chunk ----------------------------------------------------------------
def _finish(columns: list[Any], names: list[str], ids: Any, has_id: bool, first_row: int, rows: int,
            end: int) -> Chunk:
    """A chunk from parsed feature columns (pyarrow arrays, float64 or castable): rows with a null or a
    value that is not finite are set aside with the first such column named."""
    pa = _pa()
    x = np.empty((rows, len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        x[:, j] = col.to_numpy(zero_copy_only=False) if col.null_count == 0 else \
            col.cast(pa.float64()).fill_null(math.nan).to_numpy(zero_copy_only=False)
    ok = np.isfinite(x).all(axis=1)
    rownos = np.arange(first_row, first_row + rows, dtype=np.int64)
    if ok.all():
        return Chunk(ids, x, [], rows, end, rownos)
    bad = []
    for i in np.flatnonzero(~ok).tolist():
        j = int(np.flatnonzero(~np.isfinite(x[i]))[0])
        value = "empty" if not columns[j][i].is_valid else f"{x[i, j]} (not a finite number)"
        bad.append((first_row + i, ids[i].as_py() if has_id else None, f"column {names[j]!r} is {value}"))
    return Chunk(ids.filter(pa.array(ok)), x[ok], bad, rows, end, rownos[ok])


def _row_ids(first_row: int, n: int) -> Any:
    return _pa().array(np.arange(first_row, first_row + n, dtype=np.int64))


def _slow_chunk(records: list[tuple[Any, list[float] | None, str]], id_name: str | None, id_type: Any,
                first_row: int, width: int, end: int) -> Chunk:
    """A chunk from rows parsed one by one: (id or None, features or None, reason)."""
    pa = _pa()
    ids, xs, bad, rownos = [], [], [], []
    for i, (rid, feats, reason) in enumerate(records):
        if feats is None:
            bad.append((first_row + i, rid, reason))
        else:
            ids.append(rid if id_name else first_row + i)
            rownos.append(first_row + i)
            xs.append(feats)
    x = np.array(xs, dtype=np.float64).reshape(len(xs), width)
    return Chunk(pa.array(ids, type=id_type if id_name else pa.int64()), x, bad, len(records), end,
                 np.array(rownos, dtype=np.int64))


def _number(value: Any, column: str) -> tuple[float | None, str]:
    """``value`` (a CSV field or a JSON value) as a finite float, or (None, why not)."""
    if value is None or value == "":
        return None, f"column {column!r} is empty"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"column {column!r} is {json.dumps(value)[:40]} (not a number)"
    try:
        f = float(value)
    except (ValueError, OverflowError):
        return None, f"column {column!r} is {str(value)[:40]!r} (not a number)"
    if not math.isfinite(f):
        return None, f"column {column!r} is {f} (not a finite number)"
    return f, ""


# -- CSV ------------------------------------------------------------------------------------------------
class CsvReader(TextReader):
    def __init__(self, fd: int, size: int, k: int, id_column: str | None, name: str):
        self.fd, self.k, self.name, self.total = fd, k, name, size
        first = next(_slices(fd, 0, 1, True, name), None)
        if first is None:
            raise BatchError(f"input {name}: the file is empty; a CSV input starts with a header row")
        header, self.start = first
        try:
            text = header.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise BatchError(f"input {name}: the header row is not UTF-8 text") from None
        names = next(csv.reader(io.StringIO(text, newline="")), [])
        if not names or any(not n.strip() for n in names):
            raise BatchError(f"input {name}: line 1: the header row must name every column (got {text[:80]!r})")
        dupes = sorted({n for i, n in enumerate(names) if n in names[:i]})
        if dupes:
            raise BatchError(f"input {name}: line 1: column {dupes[0]!r} appears twice in the header")
        if len(names) > MAX_COLUMNS:
            raise BatchError(f"input {name}: {len(names)} columns, at most {MAX_COLUMNS}")
        if id_column is not None and id_column not in names:
            raise BatchError(f"input {name}: no column {id_column!r} (batch.id_column) in the header: "
                             f"{', '.join(names[:20])}")
        pa = _pa()
        self.names, self.id_column = names, id_column
        self.columns = [n for n in names if n != id_column]
        self.id_name = id_column or "row"
        self.id_type = pa.string() if id_column else pa.int64()

    quoted = True  # a newline inside a quoted field is no record end

    def _fast(self, data: bytes, first_row: int, end: int) -> Chunk | None:
        pa = _pa()
        from pyarrow import csv as pacsv

        types = {c: pa.float64() for c in self.columns}
        if self.id_column:
            types[self.id_column] = pa.string()
        try:
            table = pacsv.read_csv(
                pa.py_buffer(data),
                read_options=pacsv.ReadOptions(column_names=self.names, use_threads=False,
                                               block_size=len(data) + 1),
                parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in data, ignore_empty_lines=True),
                convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""],
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError):
            return None  # some row is bad: the slow path finds which
        n = table.num_rows
        ids = table.column(self.id_column).combine_chunks() if self.id_column else _row_ids(first_row, n)
        return _finish([table.column(c) for c in self.columns], self.columns, ids, bool(self.id_column), first_row, n, end)

    def _slow(self, data: bytes, first_row: int, end: int) -> Chunk:
        text = data.decode("utf-8", "surrogateescape")
        width = len(self.names)
        records: list[tuple[Any, list[float] | None, str]] = []
        idx = self.names.index(self.id_column) if self.id_column else -1
        try:
            rows: list[list[str] | str] = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error:  # a stray quote, a field over csv's size limit: take the rows one line at a time
            rows = [_one_line(line) for line in text.split("\n") if line.strip("\r")]
        for row in rows:
            if isinstance(row, str):
                records.append((None, None, row))
                continue
            if not row:
                continue  # a blank line is no record
            rid = row[idx] if 0 <= idx < len(row) else None
            if rid is not None and _not_utf8(rid):
                records.append((None, None, f"column {self.id_column!r} is not UTF-8 text"))
                continue
            if len(row) != width:
                records.append((rid, None, f"{len(row)} fields, the header has {width}"))
                continue
            feats, reason = [], ""
            for j, value in enumerate(row):
                if j == idx:
                    continue
                f, reason = _number(value, self.names[j])
                if f is None:
                    break
                feats.append(f)
            records.append((rid, None if reason else feats, reason))
        return _slow_chunk(records, self.id_column, self.id_type, first_row, len(self.columns), end)


def _one_line(line: str) -> list[str] | str:
    """The fields of one CSV line, or why it has none."""
    try:
        return next(csv.reader([line.rstrip("\r")]), [])
    except csv.Error as e:
        return f"not a CSV row: {e}"


def _not_utf8(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


# -- JSONL ----------------------------------------------------------------------------------------------
class JsonlReader(TextReader):
    def __init__(self, fd: int, size: int, k: int, id_column: str | None, name: str):
        pa = _pa()
        self.fd, self.k, self.name, self.total, self.start = fd, k, name, size, 0
        self.id_column = id_column
        first = None
        for data, _ in _slices(fd, 0, 1, False, name):
            if data.strip():
                first = data
                break
        if first is None:
            raise BatchError(f"input {name}: the file has no JSON object")
        try:
            obj = json.loads(first)
        except ValueError as e:
            raise BatchError(f"input {name}: the first record is not JSON ({e}); its keys name the features") \
                from None
        if not isinstance(obj, dict) or not obj:
            raise BatchError(f"input {name}: the first record is not a JSON object with keys; its keys name the "
                             "features")
        if len(obj) > MAX_COLUMNS:
            raise BatchError(f"input {name}: {len(obj)} keys, at most {MAX_COLUMNS}")
        if id_column is not None and id_column not in obj:
            raise BatchError(f"input {name}: the first record has no key {id_column!r} (batch.id_column)")
        self.columns = [key for key in obj if key != id_column]
        self.id_name = id_column or "row"
        if id_column is None or (isinstance(obj[id_column], int) and not isinstance(obj[id_column], bool)):
            self.id_type = pa.int64()
        elif isinstance(obj[id_column], str):
            self.id_type = pa.string()
        else:
            raise BatchError(f"input {name}: the first record's {id_column!r} is neither a string nor an integer")

    quoted = False

    def _fast(self, data: bytes, first_row: int, end: int) -> Chunk | None:
        pa = _pa()
        from pyarrow import json as pajson

        fields = [pa.field(c, pa.float64()) for c in self.columns]
        if self.id_column:
            fields.append(pa.field(self.id_column, self.id_type))
        try:
            table = pajson.read_json(
                io.BytesIO(data), read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
                parse_options=pajson.ParseOptions(explicit_schema=pa.schema(fields),
                                                  unexpected_field_behavior="ignore"))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
        n = table.num_rows
        if self.id_column:
            ids = table.column(self.id_column).combine_chunks()
            if ids.null_count:
                return None  # a record without its id: the slow path names it
        else:
            ids = _row_ids(first_row, n)
        return _finish([table.column(c) for c in self.columns], self.columns, ids, bool(self.id_column), first_row, n, end)

    def _slow(self, data: bytes, first_row: int, end: int) -> Chunk:
        records: list[tuple[Any, list[float] | None, str]] = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                records.append((None, None, f"not JSON: {str(e)[:80]}"))
                continue
            if not isinstance(obj, dict):
                records.append((None, None, f"a JSON {type(obj).__name__}, not an object"))
                continue
            rid = obj.get(self.id_column) if self.id_column else None
            if self.id_column and not _id_fits(rid, self.id_type):
                records.append((None, None, f"key {self.id_column!r} is {json.dumps(rid)[:40]}, not "
                                            f"{'an integer' if self.id_type == _pa().int64() else 'a string'}"))
                continue
            feats, reason = [], ""
            for c in self.columns:
                f, reason = _number(obj.get(c), c)
                if f is None:
                    break
                feats.append(f)
            records.append((rid, None if reason else feats, reason))
        return _slow_chunk(records, self.id_column, self.id_type, first_row, len(self.columns), end)


def _id_fits(value: Any, id_type: Any) -> bool:
    if id_type == _pa().int64():
        return isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 63)
    return isinstance(value, str)


# -- Parquet --------------------------------------------------------------------------------------------
class ParquetReader(Reader):
    unit = "rows"

    def __init__(self, fd: int, k: int, id_column: str | None, name: str):
        pa = _pa()
        import pyarrow.parquet as pq

        self.k, self.name, self.start = k, name, 0
        self.file = os.fdopen(os.dup(fd), "rb")
        try:
            self.pf = pq.ParquetFile(self.file)
        except (pa.ArrowException, OSError) as e:
            self.file.close()
            raise BatchError(f"input {name}: not a Parquet file ({str(e)[:200]})") from None
        schema = self.pf.schema_arrow
        names = list(schema.names)
        if id_column is not None and id_column not in names:
            raise BatchError(f"input {name}: no column {id_column!r} (batch.id_column) in the file: "
                             f"{', '.join(names[:20])}")
        self.columns = [n for n in names if n != id_column]
        for c in self.columns:
            t = schema.field(c).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
                raise BatchError(f"input {name}: column {c!r} is {t}, not numbers (every column but the id is "
                                 "a feature)")
        self.id_column = id_column
        self.id_name = id_column or "row"
        id_t = schema.field(id_column).type if id_column else None
        self.id_type = pa.int64() if id_t is None or pa.types.is_integer(id_t) else pa.string()
        self.total = self.pf.metadata.num_rows

    def chunks(self, position: int, rows_before: int) -> Iterator[Chunk]:
        pa = _pa()
        md = self.pf.metadata
        group, skip = 0, position
        while group < md.num_row_groups and skip >= md.row_group(group).num_rows:
            skip -= md.row_group(group).num_rows
            group += 1
        if group >= md.num_row_groups:
            return
        pending: list[Any] = []
        have, row = 0, position

        def take(n: int) -> Chunk:
            nonlocal pending, have, row
            table = pa.Table.from_batches(pending)
            part, rest = table.slice(0, n), table.slice(n)
            pending, have = rest.to_batches(), rest.num_rows
            chunk = self._chunk(part, row + 1, row + n)
            row += n
            return chunk

        batches = self.pf.iter_batches(batch_size=self.k, row_groups=range(group, md.num_row_groups),
                                       use_threads=False)
        for batch in batches:
            if skip:
                drop = min(skip, batch.num_rows)
                batch, skip = batch.slice(drop), skip - drop
            pending.append(batch)
            have += batch.num_rows
            while have >= self.k:
                yield take(self.k)
        if have:
            yield take(have)

    def _chunk(self, table: Any, first_row: int, end: int) -> Chunk:
        pa = _pa()
        n = table.num_rows
        if self.id_column:
            col = table.column(self.id_column).combine_chunks()
            ids = col.cast(pa.int64()) if pa.types.is_integer(col.type) else col.cast(pa.string())
        else:
            ids = _row_ids(first_row, n)
        cols = [table.column(c).combine_chunks().cast(pa.float64()) for c in self.columns]
        return _finish(cols, self.columns, ids, bool(self.id_column), first_row, n, end)

    def close(self) -> None:
        self.file.close()
