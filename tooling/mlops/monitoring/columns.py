"""Monitoring data: files read into pyarrow Tables, each column's kind, and its values ready for the tests.

Formats, by file name: ``.csv``, ``.parquet``/``.pq``, ``.jsonl``/``.ndjson`` (one JSON object per line),
``.arrow``/``.feather``/``.ipc`` (Arrow IPC file or stream). Reading is pyarrow's (multithreaded, in C++).
``open_data`` reads Parquet a column at a time, when a test asks for it (``ParquetColumns``), and other
formats whole. A file that cannot be read raises :class:`MonitorError` naming the file (and the column,
when we or pyarrow know which); pyarrow's message is cut short and kept on one line, since it may quote
untrusted data.

Kinds: ``numerical`` (integer, floating point and decimal columns) or ``categorical`` (everything else:
strings, dictionaries, booleans, dates). A spec may force either kind per column; a column forced
numerical must hold numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlops.errors import MonitorError

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
KINDS = (NUMERICAL, CATEGORICAL)
MAX_MESSAGE = 300  # characters of pyarrow's own message kept in ours
MAX_COLUMNS = 10_000

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}


def file_format(path: str) -> str:
    """The format of ``path`` by its suffix, or MonitorError listing the ones we read."""
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise MonitorError(f"{path}: unknown data format (use one of {', '.join(sorted(FORMATS))})")
    return fmt


def _short(e: BaseException) -> str:
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(e)[:4 * MAX_MESSAGE]).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def read_table(path: str | os.PathLike[str], columns: Iterable[str] | None = None) -> pa.Table:
    """The data in ``path`` as a Table (only ``columns`` when given; each must exist)."""
    name = os.fspath(path)
    fmt = file_format(name)
    if not os.path.isfile(name):
        raise MonitorError(f"{name}: no such file")
    wanted = list(columns) if columns is not None else None
    try:
        table = _read(name, fmt, wanted)
    except MonitorError:
        raise
    except (pa.ArrowException, OSError, ValueError) as e:
        raise MonitorError(f"{name}: not a readable {fmt} file: {_short(e)}") from None
    if table.num_columns > MAX_COLUMNS:
        raise MonitorError(f"{name}: {table.num_columns} columns, more than {MAX_COLUMNS}")
    for field in table.schema:
        if not _usable(field.type):
            raise MonitorError(f"{name}: column {field.name!r} has type {field.type}, which cannot be "
                               "monitored (nested values)")
    return table


class Columns(Protocol):
    """What the drift report and quality checks read from data: a ``pyarrow.Table`` is one, and so is
    :class:`ParquetColumns`, which reads a column only when asked for it."""

    @property
    def schema(self) -> pa.Schema: ...

    @property
    def num_rows(self) -> int: ...

    @property
    def column_names(self) -> list[str]: ...

    def column(self, name: str) -> Any: ...


class ParquetColumns:
    """A Parquet file read one column at a time, when a test needs it (from any thread).

    A drift report then holds two columns per worker instead of two whole tables: memory stays small,
    and what one column used is reused for the next instead of fresh pages from the kernel. A column
    that cannot be decoded is a MonitorError naming the file and the column."""

    def __init__(self, path: str | os.PathLike[str]):
        import pyarrow.parquet as pq

        self.path = os.fspath(path)
        try:
            meta = pq.read_metadata(self.path)
            self._schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError, ValueError) as e:
            raise MonitorError(f"{self.path}: not a readable parquet file: {_short(e)}") from None
        self._rows = meta.num_rows
        if len(self._schema) > MAX_COLUMNS:
            raise MonitorError(f"{self.path}: {len(self._schema)} columns, more than {MAX_COLUMNS}")
        _check_wanted(self.path, self._schema.names, None)
        for field in self._schema:
            if not _usable(field.type):
                raise MonitorError(f"{self.path}: column {field.name!r} has type {field.type}, which cannot be "
                                   "monitored (nested values)")

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    @property
    def num_rows(self) -> int:
        return self._rows

    @property
    def column_names(self) -> list[str]:
        return list(self._schema.names)

    def column(self, name: str) -> pa.ChunkedArray:
        import pyarrow.parquet as pq

        t = self._schema.field(name).type
        strings = [name] if pa.types.is_string(t) or pa.types.is_large_string(t) else None
        try:
            # One thread per column: the drift report already runs a column per core.
            table = pq.read_table(self.path, columns=[name], read_dictionary=strings, use_threads=False,
                                  pre_buffer=False)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise MonitorError(f"{self.path}: column {name!r} cannot be read: {_short(e)}") from None
        if table.num_rows != self._rows:
            raise MonitorError(f"{self.path}: column {name!r} has {table.num_rows} rows, the file {self._rows}")
        return table.column(0)


def open_data(path: str | os.PathLike[str]) -> Columns:
    """Data to compare: Parquet files are read a column at a time as needed (``ParquetColumns``), other
    formats whole (``read_table``)."""
    name = os.fspath(path)
    if file_format(name) == "parquet":
        if not os.path.isfile(name):
            raise MonitorError(f"{name}: no such file")
        return ParquetColumns(name)
    return read_table(name)


def read_tables(*paths: str | os.PathLike[str]) -> list[pa.Table]:
    """Several files read at once, on a thread each (a reference and a current file: pyarrow's own
    threads do not keep both cores busy on one file)."""
    if len(paths) < 2:
        return [read_table(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(paths), thread_name_prefix="read") as pool:
        return list(pool.map(read_table, paths))


def _read(name: str, fmt: str, wanted: list[str] | None) -> pa.Table:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(name)
        _check_wanted(name, schema.names, wanted)
        # Strings come back dictionary-encoded: categories are then counted on small integer codes.
        strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        return pq.read_table(name, columns=wanted, read_dictionary=strings, use_threads=True)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(name)
    elif fmt == "jsonl":
        import pyarrow.json as pjson

        table = pjson.read_json(name)
    else:
        table = _read_ipc(name)
    _check_wanted(name, table.column_names, wanted)
    return table.select(wanted) if wanted is not None else table


def _read_ipc(name: str) -> pa.Table:
    import pyarrow.ipc as ipc

    try:
        with pa.memory_map(name) as source:
            return ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        with pa.OSFile(name) as source:  # the streaming format has no footer
            return ipc.open_stream(source).read_all()


def check_unique(names: list[str], source: str) -> None:
    """MonitorError naming ``source`` when a column name appears twice (a Table allows it)."""
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})[0]
        raise MonitorError(f"{source}: column {dup!r} appears more than once")


def _check_wanted(name: str, have: list[str], wanted: list[str] | None) -> None:
    check_unique(have, name)
    missing = [c for c in wanted or () if c not in set(have)]
    if missing:
        raise MonitorError(f"{name}: no column {missing[0]!r} (columns: {', '.join(map(repr, have[:20]))})")


def _usable(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _usable(t.value_type)
    return not (pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t))


def is_numeric_type(t: pa.DataType) -> bool:
    """Integers, floating point and decimals (booleans are categories)."""
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def type_family(t: pa.DataType) -> str:
    """A coarse name of an arrow type, for type-mismatch findings: number, string, bool, time or other."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if is_numeric_type(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_temporal(t):
        return "time"
    return "other"


def column_kinds(schema: pa.Schema, *, categorical: Iterable[str] = (), numerical: Iterable[str] = (),
                 source: str = "data") -> dict[str, str]:
    """Each column's kind: forced by ``categorical``/``numerical``, else inferred from its arrow type.
    A column forced numerical that does not hold numbers is a MonitorError naming ``source``."""
    cat, num = set(categorical), set(numerical)
    both = sorted(cat & num)
    if both:
        raise MonitorError(f"column {both[0]!r} is forced both categorical and numerical")
    kinds = {}
    for field in schema:
        if field.name in num:
            if not is_numeric_type(field.type):
                raise MonitorError(f"{source}: column {field.name!r} is forced numerical but holds "
                                   f"{field.type} values")
            kinds[field.name] = NUMERICAL
        elif field.name in cat:
            kinds[field.name] = CATEGORICAL
        else:
            kinds[field.name] = NUMERICAL if is_numeric_type(field.type) else CATEGORICAL
    return kinds


def numeric_values(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """(the finite values as float64, sorted; how many were missing: null, NaN or infinite).

    Sorting dominates a drift report's time, so it is done in the cheapest exact way: integers of a
    small range by counting (two linear passes), float32 columns as float32 (half the bytes), the rest
    as float64."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    t = column.type
    if pa.types.is_integer(t):
        valid = column.drop_null() if column.null_count else column
        x = valid.to_numpy(zero_copy_only=False)
        counted = _counting_sort(x)
        if counted is not None:
            return counted, n - len(x)
        x = np.sort(x.astype(np.float64))
        return x, n - len(x)
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        x = column.cast(pa.float32()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    else:
        if not pa.types.is_float64(t):
            column = column.cast(pa.float64())
        x = (column.fill_null(np.nan) if column.null_count else column).to_numpy(zero_copy_only=False)
    x = np.sort(x)  # NaN sort last; infinities sit at the ends
    end = int(np.searchsorted(x, np.inf, "left"))  # before +inf and NaN
    start = int(np.searchsorted(x, -np.inf, "right"))
    x = x[start:end].astype(np.float64, copy=False)
    return x, n - len(x)


def _counting_sort(x: np.ndarray) -> np.ndarray | None:
    """Integers sorted by counting them, as float64, when their range is small next to their number."""
    if not len(x):
        return np.empty(0)
    lo, hi = int(x.min()), int(x.max())
    if hi - lo > max(len(x), 1024) or abs(lo) > 2**53 or abs(hi) > 2**53:
        return None
    counts = np.bincount(x.astype(np.int64, copy=False) - lo, minlength=hi - lo + 1)
    return np.repeat(np.arange(lo, hi + 1, dtype=np.float64), counts)


def category_counts(column: pa.ChunkedArray | pa.Array) -> tuple[list[Any], np.ndarray, int]:
    """(the distinct non-missing values, their counts as int64, how many were missing)."""
    vc = pc.value_counts(column)
    values, counts = vc.field(0), vc.field(1)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode() if hasattr(values, "dictionary_decode") else values.cast(
            values.type.value_type)
    valid = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        valid = pc.and_(valid, pc.is_finite(values))
    keep = valid.to_numpy(zero_copy_only=False)
    counts_np = counts.to_numpy(zero_copy_only=False).astype(np.int64)
    present = int(counts_np[keep].sum())
    return values.filter(valid).to_pylist(), counts_np[keep], len(column) - present


def aligned_counts(ref: tuple[list[Any], np.ndarray], cur: tuple[list[Any], np.ndarray]
                   ) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The union of two sides' categories (reference order first, then current's new ones), and each
    side's counts over it."""
    index = {k: i for i, k in enumerate(ref[0])}
    keys = list(ref[0])
    for k in cur[0]:
        if k not in index:
            index[k] = len(keys)
            keys.append(k)
    rc = np.zeros(len(keys), np.int64)
    cc = np.zeros(len(keys), np.int64)
    rc[: len(ref[0])] = ref[1]
    cc[[index[k] for k in cur[0]]] = cur[1]
    return keys, rc, cc
