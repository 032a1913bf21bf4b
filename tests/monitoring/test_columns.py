"""Reading monitoring data files, column kinds, and clean one-line errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from mlops.errors import MlopsError, MonitorError
from mlops.monitoring import columns

TABLE = pa.table({"x": [1.5, 2.5, None], "n": [1, 2, 3], "s": ["a", "b", "a"], "b": [True, False, True]})


def write(path: Path, table: pa.Table = TABLE) -> Path:
    fmt = columns.file_format(str(path))
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "arrow":
        feather.write_feather(table, path)
    elif fmt == "csv":
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    return path


@pytest.mark.parametrize("name", ["d.parquet", "d.pq", "d.arrow", "d.feather", "d.csv", "d.jsonl", "d.ndjson"])
def test_every_format_reads_the_same_values(tmp_path: Path, name: str) -> None:
    table = columns.read_table(write(tmp_path / name))
    assert table.column_names == ["x", "n", "s", "b"]
    assert table.column("x").to_pylist() == [1.5, 2.5, None]
    assert columns.column_kinds(table.schema) == {"x": "numerical", "n": "numerical", "s": "categorical",
                                                  "b": "categorical"}


def test_arrow_stream_and_column_subset(tmp_path: Path) -> None:
    path = tmp_path / "d.arrow"
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, TABLE.schema) as writer:
        writer.write_table(TABLE)
    assert columns.read_table(path, ["s", "x"]).column_names == ["s", "x"]


def test_parquet_strings_come_back_dictionary_encoded(tmp_path: Path) -> None:
    table = columns.read_table(write(tmp_path / "d.parquet"))
    assert pa.types.is_dictionary(table.schema.field("s").type)


def test_forced_kinds(tmp_path: Path) -> None:
    kinds = columns.column_kinds(TABLE.schema, categorical=["n"], numerical=["x"])
    assert kinds["n"] == "categorical" and kinds["x"] == "numerical"
    with pytest.raises(MonitorError, match=r"^ref.csv: column 's' is forced numerical but holds string values$"):
        columns.column_kinds(TABLE.schema, numerical=["s"], source="ref.csv")
    with pytest.raises(MonitorError, match="both categorical and numerical"):
        columns.column_kinds(TABLE.schema, numerical=["n"], categorical=["n"])


def test_numeric_values_drop_null_nan_and_infinities() -> None:
    values, missing = columns.numeric_values(pa.chunked_array([[3.0, None, np.nan], [np.inf, -1.0, -np.inf, 2.0]]))
    assert values.tolist() == [-1.0, 2.0, 3.0] and missing == 4
    values, missing = columns.numeric_values(pa.array([5, None, 1], pa.int32()))
    assert values.tolist() == [1.0, 5.0] and missing == 1


def test_category_counts_drop_missing() -> None:
    keys, counts, missing = columns.category_counts(pa.chunked_array([pa.array(["a", None, "b"]).dictionary_encode(),
                                                                      pa.array(["a", "a"]).dictionary_encode()]))
    assert dict(zip(keys, counts.tolist(), strict=True)) == {"a": 3, "b": 1} and missing == 1


def bad_files(tmp: Path) -> list[tuple[Path, str]]:
    (tmp / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (tmp / "broken.jsonl").write_text('{"a": 1}\n{"a": \n')
    (tmp / "garbage.parquet").write_bytes(b"PAR1" + b"\x00" * 100)
    (tmp / "garbage.arrow").write_bytes(b"not arrow at all")
    (tmp / "dup.csv").write_text("a,a\n1,2\n")
    (tmp / "long.csv").write_text("a,b\n" + "1," + "9" * 5000 + ",3\n")
    pq.write_table(pa.table({"nested": [[1, 2], [3]]}), tmp / "nested.parquet")
    (tmp / "data.xlsx").write_text("")
    return [
        (tmp / "ragged.csv", "not a readable csv file"),
        (tmp / "broken.jsonl", "not a readable jsonl file"),
        (tmp / "garbage.parquet", "not a readable parquet file"),
        (tmp / "garbage.arrow", "not a readable arrow file"),
        (tmp / "dup.csv", "column 'a' appears more than once"),
        (tmp / "long.csv", "not a readable csv file"),
        (tmp / "nested.parquet", "column 'nested' has type list<element: int64>, which cannot be monitored"),
        (tmp / "data.xlsx", "unknown data format"),
        (tmp / "absent.csv", "no such file"),
    ]


def test_bad_files_give_one_clean_line_naming_the_file(tmp_path: Path) -> None:
    for path, expected in bad_files(tmp_path):
        with pytest.raises(MonitorError) as info:
            columns.read_table(path)
        message = str(info.value)
        assert message.startswith(f"{path}: "), message
        assert expected in message, message
        assert "\n" not in message and len(message) < len(str(path)) + 400, message
        assert isinstance(info.value, MlopsError) and info.value.exit_code == 13


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv")
    with pytest.raises(MonitorError, match=r"d.csv: no column 'y' \(columns: 'x', 'n', 's', 'b'\)"):
        columns.read_table(path, ["x", "y"])
    with pytest.raises(MonitorError, match=r"d.parquet: no column 'y'"):
        columns.read_table(write(tmp_path / "d.parquet"), ["y"])


@pytest.mark.parametrize("arrow_type", [pa.int8(), pa.uint8(), pa.int32(), pa.int64(), pa.uint64(), pa.float16(),
                                        pa.float32(), pa.float64()])
def test_numeric_values_are_sorted_exactly_whatever_the_type(arrow_type: pa.DataType) -> None:
    """Small-range integers are counted, float32 sorted as float32: the same values as a float64 sort."""
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 120, 5000) if pa.types.is_integer(arrow_type) else rng.normal(0, 50, 5000)
    if pa.types.is_signed_integer(arrow_type):
        raw = raw - 60
    arr = pa.array(raw).cast(arrow_type, safe=False)
    with_nulls = pa.chunked_array([arr.slice(0, 2000), pa.nulls(3, arrow_type), arr.slice(2000)])
    values, missing = columns.numeric_values(with_nulls)
    expected = np.sort(arr.cast(pa.float64()).to_numpy(zero_copy_only=False))
    assert missing == 3 and values.dtype == np.float64
    np.testing.assert_array_equal(values, expected)


def test_integers_of_a_wide_range_are_sorted_too() -> None:
    x = pa.array([2**40, -(2**40), 5, 2**62])
    values, _ = columns.numeric_values(x)
    assert values.tolist() == [-(2.0**40), 5.0, 2.0**40, 2.0**62]


def test_parquet_is_read_a_column_at_a_time_with_the_tables_interface(tmp_path: Path) -> None:
    path = write(tmp_path / "d.parquet")
    data = columns.open_data(path)
    assert isinstance(data, columns.ParquetColumns)
    assert data.column_names == ["x", "n", "s", "b"] and data.num_rows == 3
    assert data.column("x").to_pylist() == [1.5, 2.5, None]
    assert pa.types.is_dictionary(data.column("s").type)
    assert isinstance(columns.open_data(write(tmp_path / "d.csv")), pa.Table)


def test_a_parquet_column_that_cannot_be_decoded_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"good": np.arange(1000.0), "bad": np.arange(1000.0)}), path, compression="snappy",
                   use_dictionary=False)
    chunk = pq.read_metadata(path).row_group(0).column(1)
    raw = bytearray(path.read_bytes())
    start = chunk.data_page_offset + 40  # inside the page's compressed values, after its header
    raw[start:start + 200] = b"\xff" * 200
    path.write_bytes(bytes(raw))
    data = columns.open_data(path)
    assert data.column("good").to_pylist()[:3] == [0.0, 1.0, 2.0]
    with pytest.raises(MonitorError, match=rf"^{path}: column 'bad' cannot be read: "):
        data.column("bad")


def test_open_data_errors(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="no such file"):
        columns.open_data(tmp_path / "absent.parquet")
    (tmp_path / "g.parquet").write_bytes(b"garbage")
    with pytest.raises(MonitorError, match="g.parquet: not a readable parquet file"):
        columns.open_data(tmp_path / "g.parquet")
    pq.write_table(pa.table({"nested": [[1, 2], [3]]}), tmp_path / "n.parquet")
    with pytest.raises(MonitorError, match="column 'nested' has type"):
        columns.open_data(tmp_path / "n.parquet")
