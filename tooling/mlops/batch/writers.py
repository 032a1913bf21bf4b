"""Predictions next to the rows' ids, one mini-batch at a time, and the log of the rows set aside.

* CSV (an output ending in ``.csv``): a header row (``row`` or the id column's name, then the model's
  columns), written by pyarrow's CSV writer, quoting only where needed.
* JSONL (``.jsonl``/``.ndjson``): one object per row with the same keys.

Numbers are written as pyarrow formats them (the shortest text that reads back as the same float32 or
float64), so the same predictions always give the same bytes: a resumed run's output equals an
uninterrupted one's.

The errors log (``OUTPUT.errors.jsonl``) has one object per row set aside: ``{"row": N, "error": ...}``,
plus ``"id"`` with an id column.
"""

from __future__ import annotations

import io
import json
from typing import Any

from mlops.batch.model import Scored
from mlops.errors import BatchError


class Writer:
    def __init__(self, fmt: str, id_name: str, id_type: Any, columns: list[str]):
        if id_name in columns:
            raise BatchError(f"the id column {id_name!r} has the name of an output column ({', '.join(columns)}): "
                             "rename it in the input")
        self.fmt, self.id_name, self.id_type, self.columns = fmt, id_name, id_type, columns
        names = [id_name, *columns]
        self._template = "{" + ",".join(json.dumps(n).replace("%", "%%") + ":%s" for n in names) + "}\n"

    def render(self, ids: Any, scored: Scored, header: bool) -> bytes:
        """The output's bytes for one mini-batch (``header``: it is the output's first)."""
        import pyarrow as pa

        arrays = [ids.cast(self.id_type) if ids.type != self.id_type else ids]
        arrays += [pa.array(c) for c in scored.columns]
        if self.fmt == "csv":
            from pyarrow import csv as pacsv

            buf = io.BytesIO()
            table = pa.Table.from_arrays(arrays, names=[self.id_name, *self.columns])
            pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(include_header=header,
                                                                         quoting_style="needed"))
            return buf.getvalue()
        return self._jsonl(arrays).encode()

    def _jsonl(self, arrays: list[Any]) -> str:
        import pyarrow as pa
        import pyarrow.compute as pc

        texts = []
        for a in arrays:
            if pa.types.is_string(a.type) or pa.types.is_large_string(a.type):
                texts.append([json.dumps(v) for v in a.to_pylist()])
            else:
                texts.append(pc.cast(a, pa.string()).to_pylist())
        return "".join(map(self._template.__mod__, zip(*texts, strict=True)))


def render_errors(bad: list[tuple[int, Any, str]], id_name: str | None) -> bytes:
    """The errors log's lines for the rows set aside: ``(row number, id or None, reason)``."""
    lines = []
    for row, rid, reason in bad:
        entry: dict[str, Any] = {"row": row}
        if id_name is not None and rid is not None:
            entry["id"] = rid
        entry["error"] = reason
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8", "surrogateescape")
