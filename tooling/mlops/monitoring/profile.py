"""A compact reference profile of a table: what data-quality checks need when the data itself is gone.

``profile_table(table)`` is plain JSON (a few hundred bytes per column), small enough for a model
version's lineage record::

    {"kind": "Profile", "schema": 1, "rows": 133, "columns": [
      {"name": "alcohol", "kind": "numerical", "type": "double", "count": 133, "missing": 0, "unique": 126,
       "min": 11.0, "max": 14.8, "mean": 13.0, "std": 0.81,
       "quantiles": {"0.01": .., "0.05": .., "0.25": .., "0.5": .., "0.75": .., "0.95": .., "0.99": ..}},
      {"name": "colour", "kind": "categorical", "type": "string", "count": 133, "missing": 0, "unique": 3,
       "top": [["red", 90], ["white", 43]], "truncated": false}]}

``count`` is the non-missing values, ``missing`` the nulls (and NaN/infinite numbers). ``top`` holds the
most frequent categories (at most ``TOP``, as strings); ``truncated`` says whether there were more, in
which case "new category" checks cannot be made from the profile alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mlops.monitoring import columns, stattests

KIND = "Profile"
SCHEMA = 1
TOP = 100
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass
class Side:
    """One column of one table, ready for tests: numerical values sorted without missing ones, or the
    categories with their counts."""

    name: str
    kind: str
    type: pa.DataType
    rows: int
    missing: int
    values: np.ndarray | None = None  # numerical: sorted finite float64
    keys: list[Any] | None = None  # categorical: distinct values
    counts: np.ndarray | None = None  # categorical: their counts

    @property
    def present(self) -> int:
        return self.rows - self.missing


def side(column: pa.ChunkedArray | pa.Array, name: str, kind: str) -> Side:
    """``column`` prepared as ``kind``."""
    if kind == columns.NUMERICAL:
        values, missing = columns.numeric_values(column)
        return Side(name, kind, column.type, len(column), missing, values=values)
    keys, counts, missing = columns.category_counts(column)
    return Side(name, kind, column.type, len(column), missing, keys=keys, counts=counts)


def finite(x: float) -> float | None:
    """``x`` as JSON allows it: NaN and infinities become null."""
    return float(x) if math.isfinite(x) else None


def sorted_quantile(x: np.ndarray, q: float) -> float:
    """numpy's default (linear) quantile of a sorted array."""
    pos = q * (len(x) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(x) - 1)
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def column_profile(s: Side, std: float | None = None, top: int | None = TOP) -> dict[str, Any]:
    """The profile entry of one prepared column (``std`` when already known; ``top`` categories at most,
    None for all of them)."""
    entry: dict[str, Any] = {"name": s.name, "kind": s.kind, "type": str(s.type), "count": s.present,
                             "missing": s.missing}
    if s.kind == columns.NUMERICAL:
        x = s.values if s.values is not None else np.empty(0)
        entry["unique"] = stattests.distinct_sorted(x)
        if len(x):
            entry.update(min=finite(x[0]), max=finite(x[-1]), mean=finite(float(x.mean())),
                         std=finite(stattests.std(x) if std is None else std),
                         quantiles={str(q): finite(sorted_quantile(x, q)) for q in QUANTILES})
        else:
            entry.update(min=None, max=None, mean=None, std=None, quantiles={})
        return entry
    keys, counts = s.keys or [], s.counts if s.counts is not None else np.zeros(0, np.int64)
    order = np.argsort(-counts, kind="stable")[:top]
    entry["unique"] = len(keys)
    entry["top"] = [[category_text(keys[i]), int(counts[i])] for i in order.tolist()]
    entry["truncated"] = len(order) < len(keys)
    return entry


def category_text(value: Any) -> str:
    """A category as the text profiles and reports show (``True`` -> ``true``, as in JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def profile_table(table: columns.Columns, *, categorical: Iterable[str] = (), numerical: Iterable[str] = ()
                  ) -> dict[str, Any]:
    """The JSON-able profile of ``table`` (kinds inferred, or forced by ``categorical``/``numerical``)."""
    columns.check_unique(table.column_names, "data")
    kinds = columns.column_kinds(table.schema, categorical=categorical, numerical=numerical)
    cols = [column_profile(side(table.column(name), name, kind)) for name, kind in kinds.items()]
    return {"kind": KIND, "schema": SCHEMA, "rows": table.num_rows, "columns": cols}


def profile_columns(profile: Any, source: str = "profile") -> dict[str, dict[str, Any]]:
    """A stored profile's columns by name, after checking its shape (profiles come from store records,
    which are untrusted): a MonitorError names ``source`` when it is not a profile."""
    from mlops.errors import MonitorError

    if not isinstance(profile, dict) or profile.get("kind") != KIND or profile.get("schema") != SCHEMA \
            or not isinstance(profile.get("columns"), list) or not isinstance(profile.get("rows"), int):
        raise MonitorError(f"{source}: not a reference profile (kind {KIND}, schema {SCHEMA})")
    out: dict[str, dict[str, Any]] = {}
    for i, col in enumerate(profile["columns"]):
        if not isinstance(col, dict) or not isinstance(col.get("name"), str) \
                or col.get("kind") not in columns.KINDS or not isinstance(col.get("count"), int) \
                or not isinstance(col.get("missing"), int):
            raise MonitorError(f"{source}: columns[{i}] is not a column profile")
        out[col["name"]] = col
    return out
