"""Data-quality findings, from a reference profile alone (as stored at registration) and in the report."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mlops.errors import MonitorError
from mlops.monitoring import drift, profile, quality


def reference() -> pa.Table:
    return pa.table({"x": [1.0, 2.0, 3.0, 4.0] * 25, "colour": ["red", "white", "red", "rose"] * 25,
                     "n": list(range(100))})


def checks(result: dict) -> list[tuple[str | None, str, str]]:
    return [(f["feature"], f["check"], f["severity"]) for f in result["findings"]]


def test_profile_is_small_json_with_what_checks_need() -> None:
    p = profile.profile_table(reference())
    text = json.dumps(p, allow_nan=False)
    assert len(text) < 2000
    cols = {c["name"]: c for c in p["columns"]}
    assert p["rows"] == 100
    assert cols["x"]["min"] == 1.0 and cols["x"]["max"] == 4.0 and cols["x"]["unique"] == 4
    assert cols["x"]["quantiles"]["0.5"] == pytest.approx(np.quantile([1.0, 2, 3, 4] * 25, 0.5))
    assert cols["x"]["std"] == pytest.approx(np.std([1.0, 2, 3, 4] * 25))
    assert cols["colour"]["top"] == [["red", 50], ["white", 25], ["rose", 25]]
    assert cols["colour"]["truncated"] is False


def test_profile_of_many_categories_is_truncated() -> None:
    p = profile.profile_table(pa.table({"id": [f"u{i}" for i in range(500)]}))
    col = p["columns"][0]
    assert len(col["top"]) == profile.TOP and col["truncated"] is True and col["unique"] == 500


def test_clean_current_data_passes() -> None:
    result = quality.check(reference().slice(0, 40), profile.profile_table(reference()))
    assert result == {"passed": True, "findings": []}


def test_every_check_from_the_profile_alone() -> None:
    p = json.loads(json.dumps(profile.profile_table(reference())))  # as read back from a record
    current = pa.table({
        "x": pa.array([1.0, None, None, 9.0, 2.0, float("nan"), 3.0, 2.0, 1.0, 2.0]),
        "colour": ["red", "blue", "red", "red", "green", "red", "red", "red", "red", "red"],
        "extra": list(range(10)),
        "_ts": [0.0] * 10,
    })
    result = quality.check(current, p)
    assert not result["passed"]
    assert checks(result) == [
        ("n", "missing_column", "error"),
        ("extra", "unexpected_column", "warning"),
        ("x", "missing", "error"),
        ("x", "out_of_range", "warning"),
        ("colour", "new_category", "warning"),
    ]
    f = {x["check"]: x for x in result["findings"]}
    assert f["missing"]["value"] == pytest.approx(0.3)
    assert "30.0% missing in current (reference 0.0%" in f["missing"]["message"]
    assert f["out_of_range"]["value"] == pytest.approx(1 / 7)
    assert f["new_category"]["value"] == pytest.approx(0.2) and "'blue'" in f["new_category"]["message"]


def test_type_mismatch_and_empty() -> None:
    p = profile.profile_table(reference())
    current = pa.table({"x": pa.array([], pa.string()), "colour": pa.array([], pa.int64()),
                        "n": pa.array([], pa.int32())})
    assert checks(quality.check(current, p)) == [
        (None, "empty", "error"), ("x", "type_mismatch", "error"), ("colour", "type_mismatch", "error")]


def test_thresholds_allow_some() -> None:
    p = profile.profile_table(reference())
    current = pa.table({"x": [1.0, 2.0, None, 50.0], "colour": ["red", "red", "red", "teal"], "n": [1, 2, 3, 4]})
    strict = quality.check(current, p)
    assert {f["check"] for f in strict["findings"]} == {"missing", "out_of_range", "new_category"}
    lenient = quality.check(current, p, options=quality.QualityOptions(missing_share=0.3, out_of_range_share=0.5,
                                                                       new_category_share=0.3))
    assert lenient == {"passed": True, "findings": []}


def test_truncated_profile_makes_no_new_category_finding() -> None:
    ref = pa.table({"id": [f"u{i}" for i in range(500)]})
    assert quality.check(pa.table({"id": ["brand-new"]}), profile.profile_table(ref))["findings"] == []


@pytest.mark.parametrize("bad", [None, [], {"kind": "Profile"}, {"kind": "Profile", "schema": 1, "rows": 3,
                                                                 "columns": [{"name": 1}]}])
def test_a_bad_stored_profile_is_a_monitor_error(bad: object) -> None:
    with pytest.raises(MonitorError, match="^model m@1 lineage: "):
        quality.check(reference(), bad, source="model m@1 lineage")


def test_report_carries_the_same_findings() -> None:
    ref = reference()
    current = pa.table({"x": [1.0, None, None, 2.0], "colour": ["red", "red", "red", "rose"], "n": ["a", "b", "c", "d"]})
    report = drift.drift_report(ref, current)
    assert checks(report["quality"]) == [("n", "type_mismatch", "error"), ("x", "missing", "error")]
    assert [f["name"] for f in report["features"]] == ["x", "colour"]  # a mismatched column is not tested


def test_the_report_knows_every_reference_category() -> None:
    """With the reference data at hand (not only its profile), new categories are found past the profile's top."""
    ref = pa.table({"id": [f"u{i}" for i in range(500)]})
    report = drift.drift_report(ref, pa.table({"id": ["u1", "u499", "brand-new"]}))
    assert [(f["check"], f["value"]) for f in report["quality"]["findings"]] == [("new_category", pytest.approx(1 / 3))]


def test_duplicate_columns_are_a_monitor_error() -> None:
    dup = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["x", "x"])
    with pytest.raises(MonitorError, match="column 'x' appears more than once"):
        quality.check(dup, profile.profile_table(reference()))
    with pytest.raises(MonitorError, match="column 'x' appears more than once"):
        profile.profile_table(dup)
