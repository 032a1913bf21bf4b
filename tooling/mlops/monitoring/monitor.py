"""``mlops monitor ENDPOINT``: compare what an endpoint was asked with what its model was trained on.

The story, per endpoint:

1. collect the inputs and predictions the deployments captured (sealed files move into the store);
2. take the captures of the last ``window_hours``, grouped by the model version that answered them;
3. for each version, its baseline is in its lineage (the training data's digest and profile, fixed at
   registration): the captured tensor columns get the training table's feature names, the training
   table is read from the store, and the version's model scores it once for prediction drift;
4. the drift report (per-feature tests, prediction drift, data quality) is written to the store as
   JSON and self-contained HTML;
5. the operational alert rules are judged on the live metrics since the last run;
6. ``drift.detected``, ``data_quality.failed`` and ``alert.fired`` events go to the project's sinks and
   to the endpoint's action (one GitHub issue per endpoint, or a ``repository_dispatch`` that starts
   the retraining workflow).

``--reference`` / ``--current`` replace steps 1-3 with files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops.errors import MlopsError, MonitorError
from mlops.monitoring.settings import Settings
from mlops.spec.model import Endpoint, Specs
from mlops.store.protocol import ArtifactStore

MAX_REFERENCE_BYTES = 4 << 30  # training data read whole for the comparison; larger: --reference a sample
MAX_PREDICTED_ROWS = 200_000  # reference rows the model scores for prediction drift (a seeded sample beyond)
Progress = Callable[[str, int, int], None]


@dataclass
class Comparison:
    """One drift report: the rows one model version answered, against its training data."""

    model: str | None
    version: int | None
    deployments: list[str]
    report: dict[str, Any] | None  # None: not enough rows
    rows: int
    html: str | None = None
    record: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        r = self.report or {}
        return {"model": self.model, "version": self.version, "deployments": self.deployments, "rows": self.rows,
                "note": self.note, "html": self.html, "record": self.record,
                "dataset_drift": r.get("dataset_drift"), "drift_share": r.get("drift_share"),
                "drifted": [f["name"] for f in r.get("features", []) if f.get("drifted")],
                "prediction_drift": (r.get("prediction") or {}).get("drifted"),
                "quality_passed": (r.get("quality") or {}).get("passed"),
                "report": self.report}


@dataclass
class Outcome:
    endpoint: str
    comparisons: list[Comparison] = field(default_factory=list)
    operational: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return any(c.report and (c.report.get("dataset_drift") or (c.report.get("prediction") or {}).get("drifted"))
                   for c in self.comparisons)

    @property
    def quality_failed(self) -> bool:
        return any(c.report and not (c.report.get("quality") or {}).get("passed", True) for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "drift": self.drift, "quality_failed": self.quality_failed,
                "comparisons": [c.to_dict() for c in self.comparisons], "operational": self.operational,
                "alerts": self.alerts, "events": self.events, "warnings": self.warnings}


@dataclass
class Context:
    root: Path
    specs: Specs
    store: ArtifactStore
    now: float = field(default_factory=time.time)
    progress: Progress | None = None
    warn: Callable[[str], None] = lambda _m: None


def monitor_endpoint(ctx: Context, name: str, *, reference: Path | None = None, current: Path | None = None,
                     window_hours: float | None = None, notify: bool = True) -> Outcome:
    """Steps 1-6 of the module docstring for endpoint ``name``."""
    ep = ctx.specs.endpoints.get(name)
    if ep is None:
        raise MonitorError(f"no endpoint {name!r} in endpoints/ (known: {', '.join(sorted(ctx.specs.endpoints))})")
    settings = Settings.from_spec(ep.monitoring, ep.file)
    out = Outcome(name)
    if current is not None:
        out.comparisons.append(_files(ctx, ep, settings, reference, current))
    else:
        hours = window_hours if window_hours is not None else settings.window_hours
        out.comparisons.extend(_captures(ctx, ep, settings, reference, hours, out))
    _operational(ctx, ep, settings, out)
    if notify:
        _notify(ctx, ep, settings, out)
    return out


# -- current data -------------------------------------------------------------------------------------

def _files(ctx: Context, ep: Endpoint, settings: Settings, reference: Path | None, current: Path) -> Comparison:
    from mlops.monitoring.columns import read_table

    cur = read_table(current)
    ref, baseline = (read_table(reference), None) if reference is not None else _baseline_of(ctx, ep, None)
    return _compare(ctx, ep, settings, ref, cur, baseline, model=None, version=None, deployments=[],
                    sources=(str(reference or "training data"), str(current)), predict=None)


def _captures(ctx: Context, ep: Endpoint, settings: Settings, reference: Path | None, hours: float,
              out: Outcome) -> list[Comparison]:
    import pyarrow.compute as pc

    from mlops.monitoring.captured import collect, read_captured, read_open

    since = ctx.now - hours * 3600.0
    recent = []
    for directory in _capture_dirs(ctx, ep, out):
        collect(ctx.store, directory, ep.name)  # sealed files into the store, then what is still being written
        recent += [t.filter(pc.and_(pc.greater_equal(t.column("_ts"), since), pc.less_equal(t.column("_ts"), ctx.now)))
                   for t in read_open(directory, ep.name)]
    table = read_captured(ctx.store, ep.name, since=since, until=ctx.now)
    table = _with_recent(table, recent, lambda why: out.warnings.append(
        f"endpoint {ep.name}: the captures still being written do not fit the stored ones ({why}): left out"))
    if table.num_rows == 0:
        out.warnings.append(f"endpoint {ep.name}: no captured requests in the last {hours:g} h "
                            "(is capture on? it is by default when the endpoint has a monitoring block)")
        return []
    comparisons = []
    versions = sorted({(d, v) for d, v in zip(table.column("_deployment").to_pylist(),
                                              table.column("_version").to_pylist(), strict=True)})
    by_model: dict[tuple[str, int], list[str]] = {}
    for dep, version in versions:
        spec_dep = _spec_deployment(ep, dep)
        if spec_dep is None or version is None:
            out.warnings.append(f"endpoint {ep.name}: captures of deployment {dep!r} (no longer in the spec) skipped")
            continue
        by_model.setdefault((spec_dep.model.name, int(version)), []).append(dep)
    for (model, version), deps in sorted(by_model.items()):
        mask = pc.and_(pc.is_in(table.column("_deployment"), value_set=_array(deps)),
                       pc.equal(table.column("_version"), version))
        rows = table.filter(mask)
        if rows.num_rows < settings.min_rows:
            comparisons.append(Comparison(model, version, deps, None, rows.num_rows,
                                          note=f"{rows.num_rows} rows: fewer than min_rows {settings.min_rows}, "
                                               "no verdict"))
            continue
        try:
            mv = _version(ctx, model, version)
        except MonitorError as e:  # rows of a version the registry lacks (a capture file's say): not these rows
            comparisons.append(Comparison(model, version, deps, None, rows.num_rows, note=f"not compared: {e}"))
            continue
        ref, baseline = (_read_ref(reference), None) if reference is not None else _baseline_of(ctx, ep, mv)
        cur = _named(rows, baseline)
        comparisons.append(_compare(ctx, ep, settings, ref, cur, baseline, model=model, version=version,
                                    deployments=deps, sources=(f"{model}@{version} training data"
                                                               if reference is None else str(reference),
                                                               f"captures of {', '.join(deps)}"), predict=mv))
    return comparisons


def _with_recent(table: Any, recent: list[Any], warn: Callable[[str], None]) -> Any:
    """``table`` (the stored captures) with the rows still being written, each file's as far as it fits:
    a file of other column types (untrusted data) is left out this time, with a warning, not an error."""
    import pyarrow as pa

    for part in recent:
        try:
            table = pa.concat_tables([table, part], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            warn(" ".join(str(e).split())[:200])
    return table


def _read_ref(path: Path) -> Any:
    from mlops.monitoring.columns import read_table

    return read_table(path)


def _array(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.string())


def _spec_deployment(ep: Endpoint, slot: str) -> Any:
    """The spec deployment a live slot serves (``blue``, or its rollout slots ``blue-canary``/``blue-preview``)."""
    for d in ep.deployments:
        if slot == d.name or slot in (f"{d.name}-canary", f"{d.name}-preview"):
            return d
    return None


def _capture_dirs(ctx: Context, ep: Endpoint, out: Outcome) -> list[Path]:
    """Where the endpoint's servers write captures: ``capture/`` in its state directory on this machine
    (the local and docker targets); a kubernetes target's pods keep theirs (not collected here)."""
    from mlops.deploy.local import CAPTURE_DIR
    from mlops.deploy.targets import open_target, target_config

    name = ep.target or ctx.specs.project.default_target or "local"
    target = open_target(name, target_config(ctx.specs.project, name), ctx.root)
    state_dir = getattr(target, "state_dir", None)
    if state_dir is None:
        out.warnings.append(f"endpoint {ep.name}: target {name} keeps its captures where mlops cannot collect "
                            "them from this machine: compare files with --current")
        return []
    return [state_dir(ep.name) / CAPTURE_DIR]


# -- reference data -----------------------------------------------------------------------------------

def _version(ctx: Context, model: str, version: int) -> Any:
    from mlops.registry.models import get_model

    try:
        return get_model(ctx.store, model, version)
    except MlopsError as e:
        raise MonitorError(f"{model}@{version}: {e}") from None


def _baseline_of(ctx: Context, ep: Endpoint, mv: Any) -> tuple[Any, dict[str, Any]]:
    """The training table and baseline entry of version ``mv`` (None: the first deployment's current version)."""
    from mlops.monitoring.baseline import load_blob_table, read_baseline

    if mv is None:
        mv = _serving_version(ctx, ep)
    where = f"{mv.name}@{mv.version}"
    baseline = read_baseline(mv.lineage, where)
    if baseline is None:
        raise MonitorError(f"{where} has no monitoring baseline in its lineage (registered before mlops recorded "
                           "one, or its pipeline has no tabular training data): give --reference FILE, or set "
                           "monitoring.reference in the model spec and register a new version")
    table = load_blob_table(ctx.store, baseline["digest"], baseline["path"], f"{where}: training data",
                            max_bytes=MAX_REFERENCE_BYTES)
    if table is None:
        raise MonitorError(f"{where}: its training data is over {MAX_REFERENCE_BYTES >> 30} GB: compare with a sample "
                           "of it (--reference FILE)")
    return table, baseline


def _serving_version(ctx: Context, ep: Endpoint) -> Any:
    """The version the endpoint's first deployment serves now (its stage's holder for ``MODEL@STAGE``)."""
    from mlops.deploy.desired import resolve

    try:
        return resolve(ep, 0, ctx.specs, ctx.store)
    except MlopsError as e:
        raise MonitorError(str(e)) from None


def _named(rows: Any, baseline: dict[str, Any] | None) -> Any:
    """Captured columns with the training table's names: ``X[j]`` of a model's one 2-D input is feature j."""
    features = (baseline or {}).get("features") or []
    names = list(rows.column_names)
    inputs = [c for c in names if not c.startswith(("_", "prediction."))]
    # column names come from the model's input names (and capture files are untrusted): only ``NAME[<digits>]``
    indexed = [c for c in inputs if c.endswith("]") and c.rpartition("[")[2][:-1].isdecimal()]
    stems = {c.rpartition("[")[0] for c in indexed}
    if len(stems) == 1 and len(indexed) == len(inputs) == len(features):
        order = sorted(indexed, key=lambda c: int(c.rpartition("[")[2][:-1]))
        mapping = dict(zip(order, features, strict=True))
        names = [mapping.get(c, c) for c in names]
    return rows.rename_columns(names).drop_columns([c for c in names if c.startswith("_")])


def _predictions(ctx: Context, mv: Any, ref: Any, features: list[str], column: str) -> Any:
    """The version's answers on (a seeded sample of) the reference rows, as a column named ``column``."""
    import numpy as np
    import pyarrow as pa

    from mlops.evaluation.onnxmodel import session, version_file

    if ref.num_rows > MAX_PREDICTED_ROWS:
        pick = np.sort(np.random.default_rng(0).choice(ref.num_rows, MAX_PREDICTED_ROWS, replace=False))
        ref = ref.take(pa.array(pick))
    with version_file(ctx.store, mv) as path:
        sess = session(path)
        inputs = sess.get_inputs()
        if len(inputs) == 1:
            matrix = np.column_stack([ref.column(f).to_numpy(zero_copy_only=False).astype(np.float32)
                                      for f in features])
            feeds = {inputs[0].name: matrix}
        else:
            feeds = {i.name: ref.column(i.name).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)
                     for i in inputs}
        first = sess.get_outputs()[0].name
        out = np.asarray(sess.run([first], feeds)[0])
    return ref.append_column(column, pa.array(out.reshape(len(out), -1)[:, 0]))


# -- the report ---------------------------------------------------------------------------------------

def _compare(ctx: Context, ep: Endpoint, settings: Settings, ref: Any, cur: Any, baseline: dict[str, Any] | None,
             *, model: str | None, version: int | None, deployments: list[str], sources: tuple[str, str],
             predict: Any) -> Comparison:
    from mlops.monitoring.drift import drift_report
    from mlops.monitoring.reports import report_key, write_html_file, write_report

    label = (baseline or {}).get("label")
    if label is not None and label in ref.column_names:
        ref = ref.drop_columns([label])
    prediction = None
    if predict is not None and settings.prediction:
        column = next((c for c in cur.column_names if c.startswith("prediction.") and "[" not in c), None)
        if column is not None:
            try:
                ref = _predictions(ctx, predict, ref, [c for c in ref.column_names if c in cur.column_names
                                                        or not c.startswith("prediction.")], column)
                prediction = column
            except (MlopsError, ValueError, RuntimeError, KeyError) as e:
                ctx.warn(f"{model}@{version}: no prediction drift: the model could not score the training data "
                         f"({str(e)[:200]})")
    cur = cur.drop_columns([c for c in cur.column_names if c.startswith("prediction.") and c != prediction])
    options = drift_options(settings)
    bar = ctx.progress
    report = drift_report(ref, cur, options=options, prediction=prediction,
                          progress=(lambda done, total: bar(f"{ep.name}: drift", done, total)) if bar else None)
    report["reference"].update(source=sources[0], digest=(baseline or {}).get("digest"))
    report["current"].update(source=sources[1])
    report.update(endpoint=ep.name, model=model, version=version, deployments=deployments,
                  created=datetime.fromtimestamp(ctx.now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    json_digest, html_digest = write_report(ctx.store, report, endpoint=ep.name)
    html = write_html_file(ctx.root, ep.name, ctx.store.get_bytes(html_digest), report["created"], version)
    return Comparison(model, version, deployments, report, cur.num_rows, html=str(html),
                      record=report_key(ep.name, report["created"], json_digest))


def drift_options(settings: Settings) -> Any:
    """The statistics' options from the spec's ``drift`` and ``quality`` blocks (spec names -> theirs)."""
    from mlops.monitoring.drift import DriftOptions

    block = {k: v for k, v in settings.drift.items() if k not in ("prediction", "share")}
    if "share" in settings.drift:
        block["share_threshold"] = settings.drift["share"]
    names = {"max_missing": "missing_share", "max_out_of_range": "out_of_range_share",
             "max_new_categories": "new_category_share"}
    unknown = sorted(set(settings.quality) - set(names))
    if unknown:
        raise MonitorError(f"monitoring.quality: unknown setting {unknown[0]!r} (use {', '.join(sorted(names))})")
    block["quality"] = {names[k]: v for k, v in settings.quality.items()}
    return DriftOptions.from_spec(block)


# -- operational metrics and events -------------------------------------------------------------------

def _operational(ctx: Context, ep: Endpoint, settings: Settings, out: Outcome) -> None:
    from mlops.deploy.targets import open_target, target_config
    from mlops.monitoring import operational

    if ep.type != "online":
        return
    try:
        name = ep.target or ctx.specs.project.default_target or "local"
        target = open_target(name, target_config(ctx.specs.project, name), ctx.root)
        if target.read(ep.name) is None:
            out.warnings.append(f"endpoint {ep.name} is not running: no operational metrics")
            return
        now = target.metrics(ep.name)
    except MlopsError as e:
        out.warnings.append(f"endpoint {ep.name}: cannot read its metrics: {e}")
        return
    before = operational.load_snapshot(ctx.store, ep.name)
    out.operational, out.alerts = operational.judge(settings.alerts, before, now)
    operational.save_snapshot(ctx.store, ep.name, now, datetime.fromtimestamp(ctx.now, timezone.utc).isoformat())


def _notify(ctx: Context, ep: Endpoint, settings: Settings, out: Outcome) -> None:
    from mlops.events import emit, endpoint_subject
    from mlops.events.sinks import Limits, build_sink, configured_sinks

    limits = Limits.from_env(None)
    sinks = configured_sinks(ctx.specs.project, ctx.root, limits)
    if settings.action != "none":
        mode = "issue" if settings.action == "issue" else "dispatch"
        action = build_sink({"type": "github", "mode": mode, "labels": ["mlops", "monitoring"],
                             "events": ["drift.detected", "data_quality.failed", "alert.fired"]},
                            ctx.root, limits, os.environ)
        sinks += [action] if action.id not in {s.id for s in sinks} else []
    subject = endpoint_subject(ep.name)
    for c in out.comparisons:
        if c.report is None:
            continue
        model = c.model or ep.deployments[0].model.name  # files compared: the model the endpoint serves
        facts = {"endpoint": ep.name, "model": model, "version": c.version, "deployments": c.deployments,
                 "rows": c.rows, "report": c.record, "html": c.html, "action": settings.action}
        r = c.report
        if r.get("dataset_drift") or (r.get("prediction") or {}).get("drifted"):
            drifted = [f["name"] for f in r.get("features", []) if f.get("drifted")]
            emit(ctx.specs.project, ctx.store, ctx.root, "drift.detected", subject,
                 {**facts, "drift_share": r.get("drift_share"), "drifted": drifted[:50],
                  "prediction_drift": (r.get("prediction") or {}).get("drifted")}, sinks=sinks, warn=ctx.warn)
            out.events.append("drift.detected")
        if not (r.get("quality") or {}).get("passed", True):
            # names and shares only: a finding's message quotes live values (new categories, ranges), and events
            # may land in a public GitHub issue; the report in the store has the details
            findings = [f"{str(f.get('feature'))[:100]}: {f.get('check')}"
                        + (f" {f['value']:.1%}" if isinstance(f.get("value"), (int, float)) else "")
                        for f in r["quality"].get("findings", []) if f.get("severity") == "error"]
            emit(ctx.specs.project, ctx.store, ctx.root, "data_quality.failed", subject,
                 {**facts, "findings": findings[:50]}, sinks=sinks, warn=ctx.warn)
            out.events.append("data_quality.failed")
    for alert in out.alerts:
        emit(ctx.specs.project, ctx.store, ctx.root, "alert.fired", subject,  # one topic (GitHub issue) per endpoint
             {"endpoint": ep.name, **alert, "action": settings.action}, sinks=sinks, warn=ctx.warn)
        out.events.append("alert.fired")
