"""The drift report: Evidently's test selection by size and kind, verdicts, dataset drift, prediction
drift, PSI and plots, per-feature overrides, and the report's JSON shape."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from mlops.errors import MonitorError
from mlops.monitoring import drift

rng = np.random.default_rng(14)


def tables(n_ref: int, n_cur: int, shift: float = 0.0) -> tuple[pa.Table, pa.Table]:
    def make(n: int, s: float) -> pa.Table:
        return pa.table({
            "num": rng.normal(s, 1, n),
            "few": rng.integers(0, 3, n),  # numerical, 3 distinct values
            "two": rng.integers(0, 2, n),  # numerical, 2 distinct values
            "cat": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1] if not s else [0.1, 0.2, 0.3, 0.4]),
            "flag": rng.random(n) < (0.5 + s / 4),
        })
    return make(n_ref, 0.0), make(n_cur, shift)


def by_name(report: dict) -> dict:
    return {f["name"]: f for f in report["features"]}


def test_large_reference_gets_wasserstein_and_jensenshannon() -> None:
    ref, cur = tables(1500, 800, shift=1.0)
    f = by_name(drift.drift_report(ref, cur))
    assert {k: v["test"] for k, v in f.items()} == {
        "num": "wasserstein", "few": "jensenshannon", "two": "jensenshannon", "cat": "jensenshannon",
        "flag": "jensenshannon"}
    assert f["num"]["statistic_kind"] == "distance" and f["num"]["threshold"] == 0.1
    expected = stats.wasserstein_distance(ref["num"].to_numpy(), cur["num"].to_numpy()) / np.std(ref["num"].to_numpy())
    assert f["num"]["statistic"] == pytest.approx(expected, abs=1e-6)
    assert f["num"]["drifted"] and f["cat"]["drifted"]


def test_small_reference_gets_ks_chisquare_and_z() -> None:
    ref, cur = tables(1000, 400)
    f = by_name(drift.drift_report(ref, cur))
    assert {k: v["test"] for k, v in f.items()} == {
        "num": "ks", "few": "chisquare", "two": "z", "cat": "chisquare", "flag": "z"}
    assert all(v["statistic_kind"] == "p_value" and v["threshold"] == 0.05 for v in f.values())
    assert f["num"]["statistic"] == pytest.approx(
        stats.ks_2samp(ref["num"].to_numpy(), cur["num"].to_numpy()).pvalue, abs=1e-6)


def test_the_selection_counts_values_without_missing_ones() -> None:
    """1,001 rows of which 2 are missing: 999 values, a small reference (Evidently drops NaN first)."""
    x = rng.normal(0, 1, 1001)
    x[:2] = np.nan
    ref = pa.table({"x": pa.array(x)})
    cur = pa.table({"x": pa.array(rng.normal(0, 1, 50))})
    f = drift.drift_report(ref, cur)["features"][0]
    assert f["test"] == "ks" and f["reference_rows"] == 999
    assert f["missing"]["reference"] == pytest.approx(2 / 1001)


def test_categories_on_one_side_only_count_in_the_union() -> None:
    ref = pa.table({"c": ["a"] * 1200 + ["b"] * 800})
    cur = pa.table({"c": ["b"] * 500 + ["z"] * 500})
    f = drift.drift_report(ref, cur)["features"][0]
    p, q = np.array([0.6, 0.4, 0.0]), np.array([0.0, 0.5, 0.5])
    from scipy.spatial import distance
    assert f["statistic"] == pytest.approx(distance.jensenshannon(p, q), abs=1e-6)
    assert f["plot"]["type"] == "bars" and set(f["plot"]["categories"]) == {"a", "b", "z"}
    assert math.isfinite(f["psi"]) and f["psi"] > 0.1


def test_constant_columns_do_not_drift_and_give_no_nan() -> None:
    ref = pa.table({"k": np.full(2000, 3.0), "s": ["x"] * 2000})
    cur = pa.table({"k": np.full(10, 3.0), "s": ["x"] * 10})
    report = drift.drift_report(ref, cur)
    json.dumps(report, allow_nan=False)
    assert [f["drifted"] for f in report["features"]] == [False, False]
    small = drift.drift_report(ref.slice(0, 20), cur)
    assert [f["test"] for f in small["features"]] == ["z", "z"]
    assert [f["statistic"] for f in small["features"]] == [1.0, 1.0]


def test_an_empty_side_gives_no_statistic_and_a_quality_error() -> None:
    ref = pa.table({"x": rng.normal(0, 1, 100)})
    cur = pa.table({"x": pa.array([], pa.float64())})
    report = drift.drift_report(ref, cur)
    f = report["features"][0]
    assert f["statistic"] is None and f["drifted"] is False
    assert not report["quality"]["passed"]
    assert [x["check"] for x in report["quality"]["findings"]] == ["empty"]
    json.dumps(report, allow_nan=False)


def test_single_rows() -> None:
    report = drift.drift_report(pa.table({"x": [1.0]}), pa.table({"x": [2.0]}))
    assert report["features"][0]["test"] == "z"
    json.dumps(report, allow_nan=False)


def test_dataset_drift_is_the_share_of_drifted_features() -> None:
    ref, cur = tables(1500, 1500, shift=1.0)
    report = drift.drift_report(ref, cur, options=drift.DriftOptions(share_threshold=0.3))
    n = sum(f["drifted"] for f in report["features"])
    assert report["drifted_count"] == n and report["features_count"] == 5
    assert report["drift_share"] == n / 5
    assert report["dataset_drift"] == (n / 5 >= 0.3)


def test_spec_options_override_tests_thresholds_features_and_kinds() -> None:
    ref, cur = tables(1500, 1500)
    opts = drift.DriftOptions.from_spec({"tests": {"num": "psi", "cat": "chisquare"}, "thresholds": {"few": 0.5},
                                         "threshold": 0.2, "features": ["num", "cat", "few", "two"],
                                         "categorical": ["two"], "share_threshold": 0.25})
    f = by_name(drift.drift_report(ref, cur, options=opts))
    assert list(f) == ["num", "cat", "few", "two"]
    assert (f["num"]["test"], f["num"]["threshold"], f["num"]["statistic"]) == ("psi", 0.2, f["num"]["psi"])
    assert (f["cat"]["test"], f["cat"]["threshold"], f["cat"]["statistic_kind"]) == ("chisquare", 0.2, "p_value")
    assert f["few"]["threshold"] == 0.5
    assert f["two"]["kind"] == "categorical"


def test_unknown_test_or_feature_is_a_monitor_error() -> None:
    ref, cur = tables(50, 50)
    with pytest.raises(MonitorError, match="drift test 'kl'"):
        drift.DriftOptions.from_spec({"tests": {"num": "kl"}})
    with pytest.raises(MonitorError, match="'nope'"):
        drift.drift_report(ref, cur, options=drift.DriftOptions(features=("nope",)))
    with pytest.raises(MonitorError, match="needs a numerical feature"):
        drift.drift_report(ref, cur, options=drift.DriftOptions(tests={"cat": "wasserstein"}))
    with pytest.raises(MonitorError, match="forced numerical"):
        drift.drift_report(ref, cur, options=drift.DriftOptions(numerical=("cat",)))


def test_prediction_drift_is_reported_apart_and_metadata_is_no_feature() -> None:
    ref, cur = tables(1500, 1500)
    ref = ref.append_column("target", pa.array(rng.integers(0, 3, 1500)))
    cur = cur.append_column("prediction.label", pa.array(rng.choice(3, 1500, p=[0.8, 0.1, 0.1])))
    cur = cur.append_column("_ts", pa.array(np.zeros(1500))).append_column("_deployment", pa.array(["blue"] * 1500))
    report = drift.drift_report(ref, cur, prediction=("target", "prediction.label"))
    assert [f["name"] for f in report["features"]] == ["num", "few", "two", "cat", "flag"]
    assert report["prediction"]["name"] == "prediction.label" and report["prediction"]["drifted"]
    assert report["quality"]["findings"] == []
    with pytest.raises(MonitorError, match="prediction column 'label'"):
        drift.drift_report(ref, cur, prediction="label")


def test_numerical_plot_is_a_histogram_of_shares() -> None:
    ref, cur = tables(3000, 2000, shift=0.5)
    f = by_name(drift.drift_report(ref, cur))["num"]
    plot = f["plot"]
    assert plot["type"] == "histogram"
    assert len(plot["edges"]) == len(plot["reference"]) + 1 == len(plot["current"]) + 1
    assert sum(plot["reference"]) == pytest.approx(1) and sum(plot["current"]) == pytest.approx(1)


def test_progress_is_called_per_feature() -> None:
    ref, cur = tables(100, 100)
    seen = []
    drift.drift_report(ref, cur, progress=lambda done, total: seen.append((done, total)))
    assert sorted(seen) == [(i, 5) for i in range(1, 6)]


def test_report_shape() -> None:
    ref, cur = tables(300, 300, shift=1.0)
    report = drift.drift_report(ref, cur, reference_source="registry m@1 train data", reference_digest="ab" * 32,
                                current_source="captures")
    assert report["kind"] == "DriftReport" and report["schema"] == 1
    assert report["reference"] == {"source": "registry m@1 train data", "digest": "ab" * 32, "rows": 300}
    assert report["current"] == {"source": "captures", "digest": None, "rows": 300}
    assert set(report["features"][0]) == {"name", "kind", "test", "statistic", "threshold", "drifted",
                                          "statistic_kind", "psi", "reference_rows", "current_rows", "missing",
                                          "plot"}
    json.dumps(report, allow_nan=False)


def test_quality_settings_come_from_the_spec_block() -> None:
    opts = drift.DriftOptions.from_spec({"quality": {"missing_share": 0.2, "new_category_share": 0.1}})
    assert opts.quality.missing_share == 0.2 and opts.quality.new_category_share == 0.1
    assert drift.DriftOptions.from_spec(None) == drift.DriftOptions()
    with pytest.raises(MonitorError, match="unknown setting 'missing'"):
        drift.DriftOptions.from_spec({"quality": {"missing": 0.2}})


def test_a_report_from_parquet_read_column_by_column_equals_one_from_tables(tmp_path) -> None:
    import pyarrow.parquet as pq

    from mlops.monitoring import columns

    ref, cur = tables(1500, 1200, shift=0.5)
    pq.write_table(ref, tmp_path / "ref.parquet")
    pq.write_table(cur, tmp_path / "cur.parquet")
    lazy = drift.drift_report(columns.open_data(tmp_path / "ref.parquet"), columns.open_data(tmp_path / "cur.parquet"))
    eager = drift.drift_report(ref, cur)
    for report in (lazy, eager):
        del report["created"]
    assert lazy == eager


def test_duplicate_column_names_are_a_monitor_error() -> None:
    dup = pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([3.0, 4.0])], names=["x", "x"])
    ok = pa.table({"x": [1.0, 2.0]})
    with pytest.raises(MonitorError, match="^captures: column 'x' appears more than once$"):
        drift.drift_report(ok, dup, current_source="captures")
    with pytest.raises(MonitorError, match="^reference: column 'x' appears more than once$"):
        drift.drift_report(dup, ok)


def test_chisquare_or_z_forced_on_a_continuous_feature_counts_its_values_as_evidently_does() -> None:
    ref = pa.table({"x": rng.normal(0, 1, 400).round(1)})
    cur = pa.table({"x": rng.normal(0.3, 1, 300).round(1)})
    report = drift.drift_report(ref, cur, options=drift.DriftOptions(tests={"x": "chisquare"}))
    f = report["features"][0]
    r, c = ref["x"].to_numpy(), cur["x"].to_numpy()
    keys = np.union1d(r, c)
    rc = np.array([(r == k).sum() for k in keys])
    cc = np.array([(c == k).sum() for k in keys])
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = stats.chisquare(cc, rc * (len(c) / len(r))).pvalue
    assert f["test"] == "chisquare" and f["statistic"] == pytest.approx(0.0 if np.isnan(expected) else expected, abs=1e-6)
    z = drift.drift_report(ref, cur, options=drift.DriftOptions(tests={"x": "z"}))["features"][0]
    p1, p2 = (r == keys[0]).mean(), (c == keys[0]).mean()
    pooled = (p1 * len(r) + p2 * len(c)) / (len(r) + len(c))
    zstat = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / len(r) + 1 / len(c)))
    assert z["statistic"] == pytest.approx(2 * (1 - stats.norm.cdf(abs(zstat))), abs=1e-6)
