"""Drift reports kept in the artifact store, and written to disk for a browser.

    monitoring/<endpoint>/reports/20261129T170000Z-0123456789ab.json   one record per report

A record is small: when the report was made, its verdict (for listings and alerts without a blob
read) and the sha256 of two blobs, the report as JSON and as HTML. Keys sort by time (the report's
``created``, to the second, then the JSON's digest), so the latest report of an endpoint is the last
key of its listing. The same report written twice makes the same record under the same key.

For a person, ``write_html_file`` puts the page at ``.mlops/reports/<endpoint>/<created>.html`` in
the repository (mlops's own directory: no symbolic link below ``.mlops`` is followed), a path the
CLI prints as a link.

Records are untrusted input: a damaged one is a ``CorruptRecordError`` naming it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops.errors import CorruptRecordError, MlopsError, PathError, StoreError
from mlops.store.digest import is_digest
from mlops.store.protocol import ArtifactStore

RECORD_KIND = "DriftReportRecord"
REPORTS_DIR = ".mlops/reports"
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")  # an endpoint's name, as its spec's schema says
_RECORD_NAME = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{12})\.json$")
_STAMP = "%Y%m%dT%H%M%SZ"
_FIX = "delete it (mlops monitor writes a new report on its next run)"


@dataclass(frozen=True)
class StoredReport:
    """The record of one drift report: where its JSON and HTML blobs are, and its verdict."""

    endpoint: str
    created: str  # UTC, ISO 8601 with a Z
    report: str  # sha256 of the JSON blob
    html: str  # sha256 of the HTML blob
    dataset_drift: bool | None = None
    drift_share: float | None = None
    drifted_count: int | None = None
    features_count: int | None = None
    quality_passed: bool | None = None
    kind: str = RECORD_KIND
    schema: int = 1

    @property
    def key(self) -> str:
        """The record's key in the store."""
        return report_key(self.endpoint, self.created, self.report)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, indent=2) + "\n").encode()


def reports_prefix(endpoint: str) -> str:
    return f"monitoring/{_check_endpoint(endpoint, StoreError)}/reports/"


def report_key(endpoint: str, created: str, json_digest: str) -> str:
    """``monitoring/<endpoint>/reports/<created as 20261129T170000Z>-<12 hex of the JSON's digest>.json``."""
    return f"{reports_prefix(endpoint)}{_parse_time(created).strftime(_STAMP)}-{json_digest[:12]}.json"


def write_report(store: ArtifactStore, report: dict[str, Any], *, endpoint: str) -> tuple[str, str]:
    """Store ``report`` (a drift report dict) as a JSON blob and as an HTML page blob, and the record
    that points at both under ``monitoring/<endpoint>/reports/``. Returns (JSON digest, HTML digest).

    Non-finite floats become null and numpy scalars plain numbers, so the JSON is what the contract
    says whatever the producer left in. A report without a readable ``created`` is dated now."""
    from mlops.monitoring.report_html import render_html

    _check_endpoint(endpoint, StoreError)
    plain = _plain(report)
    if not isinstance(plain, dict):
        raise TypeError(f"a drift report is a dict, not {type(report).__name__}")
    created = plain.get("created")
    try:
        when = _parse_time(created) if isinstance(created, str) else _now()
    except ValueError:
        when = _now()
    data = (json.dumps(plain, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()
    json_digest = store.put_bytes(data)
    html_digest = store.put_bytes(render_html(plain, endpoint=endpoint).encode())
    quality = plain.get("quality")
    record = StoredReport(
        endpoint=endpoint, created=when.strftime("%Y-%m-%dT%H:%M:%SZ"), report=json_digest, html=html_digest,
        dataset_drift=_typed(plain.get("dataset_drift"), bool), drift_share=_typed(plain.get("drift_share"), float),
        drifted_count=_typed(plain.get("drifted_count"), int), features_count=_typed(plain.get("features_count"), int),
        quality_passed=_typed(quality.get("passed"), bool) if isinstance(quality, dict) else None)
    store.write_record(record.key, record.to_json())
    return json_digest, html_digest


def latest_report(store: ArtifactStore, endpoint: str) -> StoredReport | None:
    """The record of ``endpoint``'s most recent report, or None when it has none."""
    prefix = reports_prefix(endpoint)
    names = [k[len(prefix):] for k in store.list_records(prefix)]
    names = [n for n in names if _RECORD_NAME.fullmatch(n)]
    return read_record(store, prefix + max(names)) if names else None


def read_record(store: ArtifactStore, key: str) -> StoredReport:
    """The report record at ``key``, checked: it must describe the report its key names."""
    from mlops.recordjson import fields_of, parse_json

    where = f"drift report record {key} in {store.url}"
    raw = store.read_record(key)
    if raw is None:
        raise CorruptRecordError(f"{where} vanished while it was read; {_FIX}")
    rec = fields_of(StoredReport, parse_json(raw, where, _FIX), where, _FIX)
    if rec.kind != RECORD_KIND or not is_digest(rec.report) or not is_digest(rec.html):
        raise CorruptRecordError(f"{where} is not a drift report record (kind {RECORD_KIND} with two sha256 "
                                 f"digests); {_FIX}")
    try:
        same = rec.key == key
    except (ValueError, MlopsError):
        same = False
    if not same:
        raise CorruptRecordError(f"{where} does not describe the report its key names (endpoint "
                                 f"{rec.endpoint!r}, created {rec.created!r}); {_FIX}")
    return rec


def load_report(store: ArtifactStore, record: StoredReport) -> dict[str, Any]:
    """The drift report (JSON) a record points at; its blob is verified against the digest on read."""
    from mlops.recordjson import parse_json

    where = f"drift report blob {record.report} (of {record.key}) in {store.url}"
    data = parse_json(store.get_bytes(record.report), where, _FIX)
    if not isinstance(data, dict) or data.get("kind") != "DriftReport":
        raise CorruptRecordError(f"{where} is not a drift report (kind DriftReport); {_FIX}")
    return data


def write_html_file(root: Path, endpoint: str, html: str | bytes, created: str | None = None,
                    version: int | None = None) -> Path:
    """Write a report's HTML page to ``<root>/.mlops/reports/<endpoint>/<created>[-v<version>].html``
    (atomically; ``created`` defaults to now) and return its path, for the CLI to print as a link.
    ``PathError`` when a component below the repository's ``.mlops`` is a symbolic link."""
    from mlops import paths

    _check_endpoint(endpoint, PathError)
    try:
        when = _parse_time(created) if created else _now()
    except ValueError:
        when = _now()
    tail = f"-v{int(version)}" if isinstance(version, int) and not isinstance(version, bool) else ""
    path = paths.own_path(Path(root), f"{REPORTS_DIR}/{endpoint}/{when.strftime(_STAMP)}{tail}.html")
    paths.write_atomic(path, html.encode() if isinstance(html, str) else html)
    return path


# -- helpers ------------------------------------------------------------------------------------
def _check_endpoint(endpoint: str, error: type[MlopsError]) -> str:
    if not isinstance(endpoint, str) or not _NAME_RE.fullmatch(endpoint):
        raise error(f"endpoint name {endpoint!r} cannot name drift reports: use lowercase letters, digits, '.', "
                    "'-' and '_' (at most 63), starting and ending with a letter or digit")
    return endpoint


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _parse_time(text: str) -> datetime:
    """A UTC ISO 8601 time (``2026-11-29T17:00:00Z`` or with an offset) as an aware datetime in UTC."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an ISO 8601 time")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-29T17:00:00Z)") from e
    value = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _typed(value: Any, kind: type) -> Any:
    if kind is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return value if isinstance(value, kind) else None


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data: NaN and infinities null, numpy scalars and arrays as Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy here
        return _plain(value.tolist())
    raise TypeError(f"a drift report holds a {type(value).__name__}, which JSON cannot hold")
