"""Drift reports in the store (a record pointing at a JSON and an HTML blob) and on disk for a browser."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mlops.errors import CorruptRecordError, IntegrityError, PathError, StoreError
from mlops.monitoring.reports import (
    latest_report,
    load_report,
    read_record,
    report_key,
    reports_prefix,
    write_html_file,
    write_report,
)
from mlops.store.local import LocalStore
from mlops.store.memory import MemoryStore
from tests.monitoring.reportdata import realistic_report


def test_a_report_is_stored_as_two_blobs_and_a_record_that_the_reader_finds(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    report = realistic_report()
    json_digest, html_digest = write_report(store, report, endpoint="wine")
    keys = list(store.list_records("monitoring/"))
    assert keys == [f"monitoring/wine/reports/20261129T170000Z-{json_digest[:12]}.json"]
    assert json.loads(store.get_bytes(json_digest)) == report
    page = store.get_bytes(html_digest).decode()
    assert page.startswith("<!DOCTYPE html>") and "Drift report: wine" in page
    rec = latest_report(store, "wine")
    assert rec is not None and rec.key == keys[0]
    assert (rec.report, rec.html, rec.created) == (json_digest, html_digest, "2026-11-29T17:00:00Z")
    assert (rec.dataset_drift, rec.drifted_count, rec.features_count, rec.quality_passed) == (False, 3, 14, False)
    assert load_report(store, rec) == report
    # The same report again is the same record; another endpoint has none.
    assert write_report(store, report, endpoint="wine") == (json_digest, html_digest)
    assert len(list(store.list_records("monitoring/"))) == 1
    assert latest_report(store, "other") is None


def test_the_latest_report_is_the_most_recently_created() -> None:
    store = MemoryStore()
    for created in ("2026-11-29T17:00:00Z", "2026-12-01T08:30:00+01:00", "2026-11-30T23:59:59Z"):
        report = realistic_report()
        report["created"] = created
        write_report(store, report, endpoint="wine")
    store.write_record("monitoring/wine/reports/zzz-notes.json", b"{}")  # not a report's name: not ours
    rec = latest_report(store, "wine")
    assert rec is not None and rec.created == "2026-12-01T07:30:00Z"


def test_nan_and_numpy_values_become_plain_json() -> None:
    store = MemoryStore()
    report = realistic_report()
    report["drift_share"] = np.float64(0.25)
    report["drifted_count"] = np.int64(3)
    report["features"][0]["statistic"] = float("nan")
    report["features"][0]["psi"] = np.float32("inf")
    report["features"][0]["plot"]["reference"] = np.array([0.5, 0.5])
    report["created"] = "not a time"  # dated now instead
    json_digest, _ = write_report(store, report, endpoint="wine")
    stored = json.loads(store.get_bytes(json_digest))
    assert stored["drift_share"] == 0.25 and stored["drifted_count"] == 3
    assert stored["features"][0]["statistic"] is None and stored["features"][0]["psi"] is None
    assert stored["features"][0]["plot"]["reference"] == [0.5, 0.5]
    rec = latest_report(store, "wine")
    assert rec is not None and rec.drift_share == 0.25 and rec.drifted_count == 3


@pytest.mark.parametrize("endpoint", ["", "../x", "a/b", "UPPER", ".hidden", "x" * 64, "a\nb"])
def test_an_endpoint_name_that_cannot_name_reports_is_refused(endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="endpoint name"):
        write_report(MemoryStore(), realistic_report(), endpoint=endpoint)
    with pytest.raises(StoreError, match="endpoint name"):
        latest_report(MemoryStore(), endpoint)
    with pytest.raises(PathError, match="endpoint name"):
        write_html_file(tmp_path, endpoint, "<p>x</p>")
    assert not (tmp_path / ".mlops").exists()


def _one(store: MemoryStore) -> str:
    write_report(store, realistic_report(), endpoint="wine")
    (key,) = store.records
    return key


@pytest.mark.parametrize("damage, message", [
    (lambda rec: b"{not json", "is not valid JSON"),
    (lambda rec: json.dumps({**rec, "report": "x" * 64}).encode(), "not a drift report record"),
    (lambda rec: json.dumps({**rec, "kind": "Other"}).encode(), "not a drift report record"),
    (lambda rec: json.dumps({**rec, "endpoint": "other"}).encode(), "does not describe the report its key names"),
    (lambda rec: json.dumps({**rec, "created": "2020-01-01T00:00:00Z"}).encode(), "does not describe"),
    (lambda rec: json.dumps({**rec, "created": "yesterday"}).encode(), "does not describe"),
    (lambda rec: json.dumps({**rec, "dataset_drift": "yes"}).encode(), "wrong type"),
    (lambda rec: json.dumps([rec]).encode(), "not a JSON object"),
])
def test_a_damaged_record_is_refused_naming_it(damage: object, message: str) -> None:
    store = MemoryStore()
    key = _one(store)
    store.records[key] = damage(json.loads(store.records[key]))  # type: ignore[operator]
    with pytest.raises(CorruptRecordError, match=message) as e:
        latest_report(store, "wine")
    assert key in str(e.value)


def test_a_damaged_blob_is_refused() -> None:
    store = MemoryStore()
    json_digest, _ = write_report(store, realistic_report(), endpoint="wine")
    rec = latest_report(store, "wine")
    assert rec is not None
    store.blobs[json_digest] = b'{"kind": "DriftReport"}'
    with pytest.raises(IntegrityError):
        load_report(store, rec)
    # A blob that is intact but not a report (a record pointing at another blob) is refused too.
    other = store.put_bytes(b'{"kind": "Plan"}')
    forged = rec.key.replace(json_digest[:12], other[:12])
    store.records[forged] = json.dumps({**json.loads(rec.to_json()), "report": other}).encode()
    with pytest.raises(CorruptRecordError, match="is not a drift report"):
        load_report(store, read_record(store, forged))
    assert read_record(store, rec.key) == rec


def test_keys_sort_by_time() -> None:
    early = report_key("wine", "2026-11-29T09:00:00Z", "f" * 64)
    late = report_key("wine", "2026-11-29T10:00:00Z", "0" * 64)
    assert early < late and early.startswith(reports_prefix("wine"))


def test_the_html_file_lands_under_mlops_reports(tmp_path: Path) -> None:
    path = write_html_file(tmp_path, "wine", "<p>report</p>", "2026-11-29T17:00:00Z")
    assert path == tmp_path / ".mlops/reports/wine/20261129T170000Z.html"
    assert path.read_text() == "<p>report</p>"
    assert write_html_file(tmp_path, "wine", b"<p>2</p>", "2026-11-29T17:00:00Z").read_bytes() == b"<p>2</p>"


def test_the_html_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = tmp_path / "repo"
    (repo / ".mlops").mkdir(parents=True)
    os.symlink(outside, repo / ".mlops" / "reports")
    with pytest.raises(PathError, match="symbolic link"):
        write_html_file(repo, "wine", "<p>x</p>", "2026-11-29T17:00:00Z")
    assert list(outside.iterdir()) == []
