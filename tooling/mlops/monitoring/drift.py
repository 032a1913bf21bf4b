"""The drift report: per-feature drift tests between reference and current data, dataset drift, prediction
drift and data quality, as one JSON-able dict (the shape is in the ``DriftReport`` docs of issue 14).

Test selection follows Evidently 0.7's defaults (so verdicts agree with its ``DataDriftPreset``), after
dropping missing values (nulls, NaN, infinities):

- reference of more than 1,000 values: numerical with more than 5 distinct values (both sides together)
  -> normed Wasserstein; otherwise Jensen-Shannon; threshold 0.1;
- at most 1,000: numerical with more than 5 distinct values -> KS; otherwise chi-squared (more than 2
  categories) or the Z-test (2 or fewer); p-value threshold 0.05.

PSI is reported for every feature. The dataset drifts when the share of drifted features reaches
``share_threshold`` (0.5). Features are tested on two threads: sorting, which dominates, releases the GIL.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mlops.errors import MonitorError
from mlops.monitoring import columns, quality, stattests
from mlops.monitoring.profile import Side, category_text, column_profile, finite, side

SMALL = 1000  # references of at most this many values get p-value tests
FEW = 5  # numerical features with at most this many distinct values are tested as categories
BINNED = 20  # numerical features with more distinct reference values are binned (Sturges) for PSI/JS
PLOT_CATEGORIES = 20
OTHER = "<other>"


@dataclass(frozen=True)
class DriftOptions:
    """What the endpoint spec's ``monitoring.drift`` block sets (see ``from_spec``)."""

    threshold: float | None = None  # every feature's threshold, instead of its test's default
    tests: Mapping[str, str] = field(default_factory=dict)  # feature -> test name
    thresholds: Mapping[str, float] = field(default_factory=dict)  # feature -> threshold
    features: tuple[str, ...] | None = None  # only these (default: every reference column but metadata)
    share_threshold: float = 0.5
    categorical: tuple[str, ...] = ()
    numerical: tuple[str, ...] = ()
    quality: quality.QualityOptions = field(default_factory=quality.QualityOptions)

    @classmethod
    def from_spec(cls, block: Mapping[str, Any] | None) -> DriftOptions:
        """Options from a spec's ``monitoring.drift`` mapping (already schema-validated): keys
        ``threshold``, ``tests``, ``thresholds``, ``features``, ``share_threshold``, ``categorical``,
        ``numerical``, and ``quality: {missing_share, out_of_range_share, new_category_share}``."""
        block = block or {}
        tests = dict(block.get("tests") or {})
        for feature, test in tests.items():
            if test not in stattests.TESTS:
                raise MonitorError(f"drift test {test!r} for feature {feature!r} is unknown "
                                   f"(use one of {', '.join(stattests.TESTS)})")
        q = dict(block.get("quality") or {})
        known = set(quality.QualityOptions.__dataclass_fields__)
        for key in q:
            if key not in known:
                raise MonitorError(f"monitoring.drift.quality: unknown setting {key!r} (use {', '.join(sorted(known))})")
        return cls(threshold=block.get("threshold"), tests=tests, thresholds=dict(block.get("thresholds") or {}),
                   features=tuple(block["features"]) if block.get("features") else None,
                   share_threshold=float(block.get("share_threshold", 0.5)),
                   categorical=tuple(block.get("categorical") or ()), numerical=tuple(block.get("numerical") or ()),
                   quality=quality.QualityOptions(**{k: float(v) for k, v in q.items()}))


def default_test(kind: str, reference_values: int, distinct: int) -> str:
    """Evidently's choice of test for a feature."""
    if reference_values <= SMALL:
        if kind == columns.NUMERICAL and distinct > FEW:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    return "wasserstein" if kind == columns.NUMERICAL and distinct > FEW else "jensenshannon"


def _numeric_counts(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct values of both, reference counts, current counts) of two sorted samples."""
    rk, rc = stattests.value_counts_sorted(ref)
    ck, cc = stattests.value_counts_sorted(cur)
    keys = np.union1d(rk, ck)
    r = np.zeros(len(keys), np.int64)
    c = np.zeros(len(keys), np.int64)
    r[np.searchsorted(keys, rk)] = rc
    c[np.searchsorted(keys, ck)] = cc
    return keys, r, c


def _sort_first(keys: list[Any]) -> int:
    """Index of the smallest category (the Z-test's), by value, or by text for mixed types."""
    try:
        return min(range(len(keys)), key=lambda i: keys[i])
    except TypeError:
        return min(range(len(keys)), key=lambda i: str(keys[i]))


def compare(ref: Side, cur: Side, *, test: str | None = None, threshold: float | None = None) -> dict[str, Any]:
    """The report entry of one feature from its two prepared sides (same kind)."""
    name, kind = cur.name, ref.kind
    entry: dict[str, Any] = {"name": name, "kind": kind, "test": test, "statistic": None,
                             "threshold": threshold, "drifted": False, "statistic_kind": None, "psi": None,
                             "reference_rows": ref.present, "current_rows": cur.present,
                             "missing": {"reference": ref.missing / ref.rows if ref.rows else 0.0,
                                         "current": cur.missing / cur.rows if cur.rows else 0.0},
                             "plot": None}
    keys_num: np.ndarray | None = None  # numerical features with few values: their distinct values
    if kind == columns.NUMERICAL:
        assert ref.values is not None and cur.values is not None
        r, c = ref.values, cur.values
        distinct_ref = stattests.distinct_sorted(r)
        distinct = max(distinct_ref, stattests.distinct_sorted(c))
        if distinct <= FEW:
            distinct = len(np.union1d(np.unique(r), np.unique(c)))
        rc = cc = np.zeros(0, np.int64)
        if distinct_ref <= BINNED and len(r) and len(c):
            keys_num, rc, cc = _numeric_counts(r, c)
        first = 0
    else:
        assert ref.keys is not None and cur.keys is not None and ref.counts is not None and cur.counts is not None
        keys, rc, cc = columns.aligned_counts((ref.keys, ref.counts), (cur.keys, cur.counts))
        distinct = len(keys)
        first = _sort_first(keys) if keys else 0
    test = test or default_test(kind, ref.present, distinct)
    if test in stattests.NUMERICAL_ONLY and kind != columns.NUMERICAL:
        raise MonitorError(f"feature {name!r}: the {test} test needs a numerical feature, it is categorical")
    threshold = stattests.DEFAULT_THRESHOLDS[test] if threshold is None else threshold
    entry.update(test=test, threshold=threshold, statistic_kind=stattests.TESTS[test])
    if not ref.present or not cur.present:  # nothing to compare: the quality findings say why
        return entry
    if kind == columns.NUMERICAL and keys_num is None:
        bins = stattests.numerical_bins(r, c)
        assert bins.edges is not None
        entry["plot"] = {"type": "histogram", "edges": _floats(bins.edges), "reference": _floats(bins.reference),
                         "current": _floats(bins.current)}
    else:
        bins = stattests.shares(rc, cc)
        labels = [category_text(k) for k in (keys_num.tolist() if keys_num is not None else keys)]
        entry["plot"] = _bars(labels, bins.reference, bins.current)
    entry["psi"] = finite(stattests.psi(bins.reference, bins.current))
    if test == "psi":
        statistic = entry["psi"]
    elif test == "jensenshannon":
        statistic = stattests.jensenshannon(bins.reference, bins.current)
    elif test == "wasserstein":
        statistic = stattests.wasserstein_norm(r, c)
    elif test == "ks":
        statistic = stattests.ks_pvalue(r, c)
    else:
        if kind == columns.NUMERICAL and keys_num is None:  # forced on a binned feature: Evidently counts values
            _, rc, cc = _numeric_counts(r, c)
        statistic = stattests.chisquare_pvalue(rc, cc) if test == "chisquare" else stattests.z_pvalue(rc, cc, first)
    entry["statistic"] = finite(statistic) if statistic is not None else None
    entry["drifted"] = statistic is not None and stattests.is_drifted(test, statistic, threshold)
    return entry


def _floats(x: np.ndarray) -> list[float | None]:
    return [finite(v) for v in x.tolist()]


def _bars(labels: list[str], ref: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
    """Bars of the most frequent categories (both sides together); the rest as ``<other>``."""
    order = np.argsort(-(ref + cur), kind="stable")
    top, rest = order[:PLOT_CATEGORIES], order[PLOT_CATEGORIES:]
    cats = [labels[i] for i in top.tolist()]
    r, c = ref[top].tolist(), cur[top].tolist()
    if len(rest):
        cats.append(OTHER)
        r.append(float(ref[rest].sum()))
        c.append(float(cur[rest].sum()))
    return {"type": "bars", "categories": cats, "reference": _floats(np.array(r)), "current": _floats(np.array(c))}


def drift_report(reference: columns.Columns, current: columns.Columns, *, options: DriftOptions | None = None,
                 prediction: str | tuple[str, str] | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 reference_source: str = "", reference_digest: str | None = None,
                 current_source: str = "", current_digest: str | None = None) -> dict[str, Any]:
    """The drift report of ``current`` against ``reference`` (``pyarrow.Table``s, or ``columns.open_data``
    of files: Parquet is then read a column at a time, as the tests need it).

    ``prediction``: the model output's column, the same name in both tables or (reference column,
    current column), e.g. ``("target", "prediction.label")``: tested like a feature, reported apart.
    ``progress(done, total)`` is called as features finish (from worker threads, never two at once).
    ``reference_source``/``current_source`` and the digests are copied into the report as they are.
    """
    options = options or DriftOptions()
    columns.check_unique(reference.column_names, reference_source or "reference")
    columns.check_unique(current.column_names, current_source or "current")
    ref_kinds = columns.column_kinds(reference.schema, categorical=options.categorical,
                                     numerical=options.numerical, source=reference_source or "reference")
    pred = (prediction, prediction) if isinstance(prediction, str) else prediction
    for col, table, what in ((pred[0], reference, "reference"), (pred[1], current, "current")) if pred else ():
        if col not in table.column_names:
            raise MonitorError(f"{what} data has no prediction column {col!r}")
    if options.features is not None:
        unknown = [f for f in options.features if f not in ref_kinds]
        if unknown:
            raise MonitorError(f"feature {unknown[0]!r} (monitoring.drift.features) is not a reference column")
        names = list(options.features)
    else:
        names = [n for n in reference.column_names if not quality.is_metadata(n) and (not pred or n != pred[0])]
    # Shape checks against every reference column (not metadata, not the prediction); those about
    # columns left out of ``features`` are not findings.
    known = {n: {"name": n, "kind": k, "type": str(reference.schema.field(n).type)} for n, k in ref_kinds.items()
             if not quality.is_metadata(n) and (not pred or n != pred[0])}
    cur_schema = pa.schema([f for f in current.schema if not pred or f.name != pred[1]])
    tested = set(names)
    findings = [f for f in quality.schema_findings(known, cur_schema, current.num_rows)
                if f["check"] not in ("missing_column", "type_mismatch") or f["feature"] in tested]
    skip = {f["feature"] for f in findings if f["check"] in ("type_mismatch", "missing_column")}
    jobs = [(n, n, ref_kinds[n], False) for n in names if n not in skip]
    if pred:
        jobs.append((pred[0], pred[1], ref_kinds[pred[0]], True))
    total = len(jobs)
    done = [0]
    lock = threading.Lock()

    def one(job: tuple[str, str, str, bool]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        ref_name, cur_name, kind, is_prediction = job
        ref_side = side(reference.column(ref_name), cur_name, kind)
        cur_col = current.column(cur_name)
        if kind == columns.NUMERICAL and not columns.is_numeric_type(cur_col.type):
            raise MonitorError(f"current data: column {cur_name!r} holds {cur_col.type} values, the "
                               "reference numbers")
        cur_side = side(cur_col, cur_name, kind)
        entry = compare(ref_side, cur_side, test=options.tests.get(cur_name),
                        threshold=options.thresholds.get(cur_name, options.threshold))
        found = [] if is_prediction else quality.column_findings(
            column_profile(ref_side, top=None), reference.num_rows, cur_side, options.quality)
        if progress is not None:
            with lock:  # called from the worker threads, one at a time, in order of completion
                done[0] += 1
                progress(done[0], total)
        return entry, found

    workers = min(2, os.cpu_count() or 1, max(total, 1))
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="drift") as pool:
            results = list(pool.map(one, jobs))
    else:
        results = [one(j) for j in jobs]
    features = [e for e, _ in results[: len(results) - (1 if pred else 0)]]
    for _, f in results:
        findings += f
    drifted = sum(1 for e in features if e["drifted"])
    share = drifted / len(features) if features else 0.0
    return {
        "kind": "DriftReport", "schema": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reference": {"source": reference_source, "digest": reference_digest, "rows": reference.num_rows},
        "current": {"source": current_source, "digest": current_digest, "rows": current.num_rows},
        "dataset_drift": bool(features) and share >= options.share_threshold,
        "drift_share": share, "drifted_count": drifted, "features_count": len(features),
        "share_threshold": options.share_threshold,
        "features": features,
        "prediction": results[-1][0] if pred else None,
        "quality": quality.result(findings),
    }
