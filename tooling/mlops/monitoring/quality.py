"""Data-quality findings: current data checked against a reference *profile* (``profile.profile_table``),
so the checks work when only the profile stored at registration is at hand.

Checks (``check``, in the report's ``quality.findings``):

- ``empty`` (error): the current data has no rows;
- ``missing_column`` (error) / ``unexpected_column`` (warning): columns only in the reference / only in
  current (capture metadata ``_ts``, ``_deployment``, ``_version`` and ``prediction.*`` are not features);
- ``type_mismatch`` (error): a column holds another kind of value than in the reference (numbers vs text);
- ``missing`` (error): the share of missing values grew by more than ``missing_share`` over the reference's;
- ``out_of_range`` (warning): more than ``out_of_range_share`` of a numerical column's values fall outside
  the reference's [min, max];
- ``new_category`` (warning): more than ``new_category_share`` of a categorical column's values are
  categories the reference never had (only when the profile lists all of its categories).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mlops.monitoring import columns
from mlops.monitoring.profile import Side, category_text, profile_columns, side

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class QualityOptions:
    """Allowed shares before a finding: growth of missing values over the reference, values outside the
    reference range, values of categories the reference never had."""

    missing_share: float = 0.05
    out_of_range_share: float = 0.01
    new_category_share: float = 0.0


def is_metadata(name: str) -> bool:
    """Capture columns that are not features: ``_ts``, ``_deployment``, ``_version``, ``prediction.*``."""
    return name.startswith("_") or name.startswith("prediction.")


def finding(feature: str | None, check: str, severity: str, value: float | None, threshold: float | None,
            message: str) -> dict[str, Any]:
    return {"feature": feature, "check": check, "severity": severity, "value": value, "threshold": threshold,
            "message": message}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def schema_findings(reference: dict[str, dict[str, Any]], current: pa.Schema, current_rows: int
                    ) -> list[dict[str, Any]]:
    """Findings about the current data's shape: empty, missing and unexpected columns, type mismatches."""
    out = []
    if current_rows == 0:
        out.append(finding(None, "empty", ERROR, 0, None, "the current data has no rows"))
    names = set(current.names)
    for name in reference:
        if name not in names:
            out.append(finding(name, "missing_column", ERROR, None, None,
                               f"column {name!r} is in the reference but not in current data"))
    for field in current:
        if field.name not in reference:
            if not is_metadata(field.name):
                out.append(finding(field.name, "unexpected_column", WARNING, None, None,
                                   f"column {field.name!r} is in current data but not in the reference"))
            continue
        want = reference[field.name]
        mismatch = type_mismatch(want, field.type)
        if mismatch:
            out.append(finding(field.name, "type_mismatch", ERROR, None, None, mismatch))
    return out


def type_mismatch(ref_col: dict[str, Any], current_type: pa.DataType) -> str | None:
    """Why a current column's type cannot be compared with the reference column's, or None: numbers where
    the reference had text, text where it had numbers, and so on (int vs float is no mismatch)."""
    family = columns.type_family(current_type)
    ref_family = "number" if ref_col["kind"] == columns.NUMERICAL else _family_of(str(ref_col.get("type", "")))
    if ref_family == family or "other" in (ref_family, family):
        return None
    return f"column {ref_col['name']!r} holds {current_type} values in current data, " \
           f"{ref_col.get('type')} in the reference"


def _family_of(type_name: str) -> str:
    t = type_name.split("<", 1)[1] if type_name.startswith("dictionary<values=") else type_name
    t = t.removeprefix("values=")
    if t.startswith(("int", "uint", "float", "double", "halffloat", "decimal")):
        return "number"
    if t.startswith(("string", "large_string", "utf8")):
        return "string"
    if t.startswith("bool"):
        return "bool"
    if t.startswith(("timestamp", "date", "time", "duration")):
        return "time"
    return "other"


def column_findings(ref_col: dict[str, Any], ref_rows: int, cur: Side, options: QualityOptions
                    ) -> list[dict[str, Any]]:
    """Findings about one column's values: missing, out of range, new categories."""
    out = []
    name = cur.name
    ref_missing = ref_col["missing"] / ref_rows if ref_rows else 0.0
    cur_missing = cur.missing / cur.rows if cur.rows else 0.0
    if cur.rows and cur_missing > ref_missing + options.missing_share:
        out.append(finding(name, "missing", ERROR, cur_missing, options.missing_share,
                           f"{_pct(cur_missing)} missing in current (reference {_pct(ref_missing)}, "
                           f"allowed {_pct(options.missing_share)} more)"))
    if cur.kind == columns.NUMERICAL and cur.values is not None and len(cur.values) \
            and isinstance(ref_col.get("min"), (int, float)) and isinstance(ref_col.get("max"), (int, float)):
        lo, hi = float(ref_col["min"]), float(ref_col["max"])
        x = cur.values
        outside = int(np.searchsorted(x, lo, "left")) + len(x) - int(np.searchsorted(x, hi, "right"))
        share = outside / len(x)
        if outside and share > options.out_of_range_share:
            out.append(finding(name, "out_of_range", WARNING, share, options.out_of_range_share,
                               f"{_pct(share)} of current values outside the reference range "
                               f"[{lo:.6g}, {hi:.6g}] (current [{x[0]:.6g}, {x[-1]:.6g}])"))
    if cur.kind == columns.CATEGORICAL and cur.keys is not None and cur.counts is not None \
            and ref_col.get("truncated") is False and isinstance(ref_col.get("top"), list):
        known = {str(c[0]) for c in ref_col["top"] if isinstance(c, list) and c}
        new = [(category_text(k), int(n)) for k, n in zip(cur.keys, cur.counts.tolist(), strict=True)
               if category_text(k) not in known]
        total = int(cur.counts.sum())
        share = sum(n for _, n in new) / total if total else 0.0
        if new and share > options.new_category_share:
            new.sort(key=lambda kn: -kn[1])
            shown = ", ".join(repr(k[:40]) for k, _ in new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
            out.append(finding(name, "new_category", WARNING, share, options.new_category_share,
                               f"{_pct(share)} of current values are categories the reference never had: {shown}"))
    return out


def result(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's ``quality`` block."""
    return {"passed": not any(f["severity"] == ERROR for f in findings), "findings": findings}


def check(current: columns.Columns, reference_profile: Any, *, options: QualityOptions | None = None,
          source: str = "reference profile") -> dict[str, Any]:
    """Data quality of ``current`` against a stored reference profile alone: ``{"passed", "findings"}``."""
    options = options or QualityOptions()
    ref = profile_columns(reference_profile, source)
    columns.check_unique(current.column_names, "current data")
    findings = schema_findings(ref, current.schema, current.num_rows)
    bad = {f["feature"] for f in findings if f["check"] == "type_mismatch"}
    for name, col in ref.items():
        if name in current.column_names and name not in bad:
            findings += column_findings(col, reference_profile["rows"],
                                        side(current.column(name), name, col["kind"]), options)
    return result(findings)
