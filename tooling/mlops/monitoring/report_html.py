"""The drift report as one self-contained HTML page (a drift report dict in, a string out).

What users like in Evidently's reports, without its 3 MB of JavaScript: a header with the verdict,
a summary table of every feature (drifted ones first, sortable by any column), reference against
current per drifted feature (overlaid histograms for numerical features, grouped bars for
categorical ones; the others one click away), prediction drift, and the data-quality findings.

The page loads nothing: the plots are inline SVG whose geometry is computed here, and a
Content-Security-Policy meta tag forbids every network load (``default-src 'none'``); the page's
one style sheet and one small script (column sorting) are allowed by their sha256 only, so even
markup that slipped through could run no script and fetch nothing.

Everything in a report is untrusted text: feature and category names come from data files,
messages and sources from specs. The template autoescapes every value, nothing is marked safe
but the page's own style and script, and the report is read defensively: a missing or mistyped
field shows as a dash, never as an error, and long names or huge reports are cut to a size a
browser opens quickly (the JSON report has everything).
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2

MAX_NAME = 200  # characters of a name shown in a cell; the full name (up to MAX_TITLE) is its tooltip
MAX_TITLE = 2000
MAX_TEXT = 1000  # of a message or a source
MAX_PLOTS = 200  # SVG plots in one page, drifted features first
MAX_CATEGORIES = 24  # bars in one plot; the rest are summed into one "N more" group
MAX_BINS = 200
MAX_FINDINGS = 1000
MAX_ROWS = 5000  # of the summary table
DASH = "—"

# The SVG canvas: a plot area inside margins for the axes' labels.
WIDTH, HEIGHT = 560.0, 210.0
LEFT, RIGHT, TOP = 48.0, 24.0, 10.0
BOTTOM, BOTTOM_ROTATED = 30.0, 70.0


@dataclass(frozen=True)
class Label:
    """A piece of axis text at (x, y); ``rotate`` in degrees (category names slant when crowded)."""

    x: float
    y: float
    text: str
    anchor: str = "middle"
    rotate: float = 0.0
    title: str = ""

    def __post_init__(self) -> None:  # short SVG: tenths of a pixel are plenty
        object.__setattr__(self, "x", round(self.x, 1))
        object.__setattr__(self, "y", round(self.y, 1))


@dataclass(frozen=True)
class Hover:
    """A transparent band over one bin or category whose tooltip gives both shares."""

    x: float
    width: float
    title: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", round(self.x, 1))
        object.__setattr__(self, "width", round(self.width, 1))


@dataclass(frozen=True)
class Plot:
    """One SVG chart: a path per series, axis labels, y grid lines and hover bands."""

    kind: str  # histogram | bars | none
    height: float
    bottom: float  # y of the x axis
    reference: str = ""  # SVG path data
    current: str = ""
    xlabels: list[Label] = field(default_factory=list)
    ygrid: list[Label] = field(default_factory=list)
    hovers: list[Hover] = field(default_factory=list)
    note: str = ""  # said under the plot (bins at equal width, categories summed)
    missing: str = ""  # why there is no plot

    width: float = WIDTH
    left: float = LEFT
    right: float = WIDTH - RIGHT
    top: float = TOP


def render_html(report: dict[str, Any], *, endpoint: str | None = None) -> str:
    """The drift report ``report`` (the JSON contract, ``kind: DriftReport``) as a self-contained
    HTML page; ``endpoint`` names what it is about in the title. Never raises on a malformed report:
    what cannot be read shows as a dash."""
    report = report if isinstance(report, dict) else {}
    return _env().get_template("report.html.j2").render(page=_page(report, endpoint))


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("mlops.monitoring", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["csp_hash"] = csp_hash
    return env


def csp_hash(text: str) -> str:
    """The Content-Security-Policy hash (to be quoted) that allows exactly this inline script or style."""
    return "sha256-" + base64.b64encode(hashlib.sha256(str(text).encode()).digest()).decode()


# -- reading the report defensively -----------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _text(v: Any, limit: int = MAX_TEXT) -> str:
    """Untrusted text cut to ``limit`` characters (escaping is the template's)."""
    if v is None:
        return ""
    s = v if isinstance(v, str) else str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _flag(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def fmt(v: Any, digits: int = 4) -> str:
    """A number as the page shows it (``digits`` significant digits), a dash for none."""
    x = _num(v)
    if x is None:
        return DASH
    if isinstance(v, int):
        return f"{v:,}"
    return f"{x:.{digits}g}"


def pct(v: Any) -> str:
    """A share (0..1) as a percentage."""
    x = _num(v)
    if x is None:
        return DASH
    if x == 0:
        return "0%"
    if abs(x) < 0.001:
        return f"{x * 100:.2g}%"
    return f"{x * 100:.1f}".removesuffix(".0") + "%"


def _sort_key(v: float | None) -> str:
    return "" if v is None else repr(v)


# -- the page -----------------------------------------------------------------------------------
def _page(report: dict[str, Any], endpoint: str | None) -> dict[str, Any]:
    raw = report.get("features")
    entries = [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []
    skipped = (len(raw) if isinstance(raw, list) else 0) - len(entries)
    features = [_feature(f, i) for i, f in enumerate(entries)]
    # Drifted first (the ones to look at), then the undecided, then the rest; by name within each.
    features.sort(key=lambda f: ({True: 0, None: 1, False: 2}[f["drifted"]], f["name"]))
    plotted = 0
    for f in features:
        if plotted < MAX_PLOTS and f["has_plot"]:
            f["plot"] = _plot(f.pop("raw_plot"))
            plotted += 1
        else:
            f.pop("raw_plot")
    shown = features[:MAX_ROWS]
    drifted = [f for f in shown if f["drifted"] and f["plot"] is not None]
    others = [f for f in shown if not f["drifted"] and f["plot"] is not None]
    prediction = report.get("prediction")
    pred = _feature(prediction, -1) if isinstance(prediction, dict) else None
    if pred is not None:
        pred["plot"] = _plot(pred.pop("raw_plot"))
    schema = report.get("schema")
    return {
        "endpoint": _text(endpoint, 200) if endpoint else "",
        "kind_ok": report.get("kind") == "DriftReport",
        "schema": _text(schema, 20), "schema_newer": isinstance(schema, int) and schema > 1,
        "created": _text(report.get("created"), 64),
        "reference": _side(report.get("reference")), "current": _side(report.get("current")),
        "dataset_drift": _flag(report.get("dataset_drift")),
        "drift_share": pct(report.get("drift_share")), "share_threshold": pct(report.get("share_threshold")),
        "drifted_count": fmt(_count(report.get("drifted_count"))),
        "features_count": fmt(_count(report.get("features_count"))),
        "features": shown, "more_rows": len(features) - len(shown), "skipped": skipped,
        "drifted": drifted, "others": others,
        "unplotted": sum(1 for f in features if f["has_plot"] and f["plot"] is None),
        "prediction": pred, "quality": _quality(report.get("quality")),
    }


def _side(v: Any) -> dict[str, str]:
    d = v if isinstance(v, dict) else {}
    digest = d.get("digest")
    return {"source": _text(d.get("source"), MAX_TEXT) or DASH, "rows": fmt(_count(d.get("rows"))),
            "digest": digest[:12] if isinstance(digest, str) else "",
            "digest_full": _text(digest, 100) if isinstance(digest, str) else ""}


def _feature(f: dict[str, Any], index: int) -> dict[str, Any]:
    name = _text(f.get("name"), MAX_TITLE) or "(unnamed)"
    statistic, threshold, psi = _num(f.get("statistic")), _num(f.get("threshold")), _num(f.get("psi"))
    p_value = f.get("statistic_kind") == "p_value"
    missing = f.get("missing")
    missing = missing if isinstance(missing, dict) else {}
    miss_ref, miss_cur = _num(missing.get("reference")), _num(missing.get("current"))
    raw_plot = f.get("plot")
    return {
        "id": "prediction-plot" if index < 0 else f"f{index}",
        "name": name, "short": _text(name, MAX_NAME), "kind": _text(f.get("kind"), 20) or DASH,
        "test": _text(f.get("test"), 30) or DASH,
        "measure": "p-value" if p_value else ("distance" if f.get("statistic_kind") == "distance" else ""),
        "statistic": fmt(statistic), "statistic_sort": _sort_key(statistic),
        "threshold": DASH if threshold is None else ("< " if p_value else "≥ ") + fmt(threshold),
        "threshold_sort": _sort_key(threshold),
        "drifted": _flag(f.get("drifted")),
        "psi": fmt(psi), "psi_sort": _sort_key(psi),
        "missing_reference": pct(miss_ref), "missing_reference_sort": _sort_key(miss_ref),
        "missing_current": pct(miss_cur), "missing_current_sort": _sort_key(miss_cur),
        "has_plot": isinstance(raw_plot, dict), "raw_plot": raw_plot, "plot": None,
    }


def _quality(v: Any) -> dict[str, Any]:
    q = v if isinstance(v, dict) else {}
    raw = q.get("findings")
    findings = [f for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []
    rows = [{"severity": "error" if f.get("severity") == "error" else
             ("warning" if f.get("severity") == "warning" else _text(f.get("severity"), 20) or DASH),
             "feature": _text(f.get("feature"), MAX_NAME), "feature_title": _text(f.get("feature"), MAX_TITLE),
             "check": _text(f.get("check"), 40) or DASH, "value": fmt(f.get("value")),
             "threshold": fmt(f.get("threshold")), "message": _text(f.get("message"))} for f in findings]
    rows.sort(key=lambda r: ({"error": 0, "warning": 1}.get(r["severity"], 2), r["feature"]))
    return {"present": isinstance(v, dict), "passed": _flag(q.get("passed")),
            "errors": sum(1 for r in rows if r["severity"] == "error"),
            "warnings": sum(1 for r in rows if r["severity"] == "warning"),
            "findings": rows[:MAX_FINDINGS], "more": max(len(rows) - MAX_FINDINGS, 0)}


# -- plots --------------------------------------------------------------------------------------
def _shares(v: Any, n: int) -> list[float] | None:
    if not isinstance(v, list) or len(v) != n:
        return None
    out = [_num(x) for x in v]
    return [max(x, 0.0) if x is not None else 0.0 for x in out]


def _plot(p: Any) -> Plot:
    if not isinstance(p, dict):
        return Plot("none", 0, 0, missing="the report holds no plot for this")
    kind = p.get("type")
    if kind == "histogram":
        return _histogram(p)
    if kind == "bars":
        return _bars(p)
    return Plot("none", 0, 0, missing=f"no plot of type {_text(kind, 30) or DASH!s}")


def _histogram(p: dict[str, Any]) -> Plot:
    edges_raw = p.get("edges")
    n = len(edges_raw) - 1 if isinstance(edges_raw, list) else 0
    edges = [_num(e) for e in edges_raw] if isinstance(edges_raw, list) else []
    ref, cur = _shares(p.get("reference"), n), _shares(p.get("current"), n)
    if n < 1 or n > MAX_BINS or ref is None or cur is None or any(e is None for e in edges):
        return Plot("none", 0, 0, missing="the report holds no readable histogram for this feature")
    xs = [float(e) for e in edges if e is not None]
    widths = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    # Bins drawn where they are on the axis, unless their widths differ so much (quantile bins with a
    # far outlier) that most would be slivers: then side by side at equal width, labelled by their edges.
    equal = any(w <= 0 for w in widths) or max(widths) > 20 * min(widths)
    plot_w = WIDTH - LEFT - RIGHT
    if equal:
        pos = [LEFT + plot_w * i / n for i in range(n + 1)]
    else:
        span = xs[-1] - xs[0]
        pos = [LEFT + plot_w * (x - xs[0]) / span for x in xs]
    bottom = HEIGHT - BOTTOM
    top = _nice_top(max(ref + cur))
    scale = (bottom - TOP) / top

    def path(shares: list[float]) -> str:
        parts = []
        for i, s in enumerate(shares):
            h = s * scale
            if h > 0:
                parts.append(f"M{pos[i]:.1f} {bottom:.1f}V{bottom - h:.1f}H{pos[i + 1]:.1f}V{bottom:.1f}Z")
        return "".join(parts)

    ticks = _tick_indexes(n + 1, 6)
    xlabels = [Label(pos[i], bottom + 16, fmt(xs[i], 3)) for i in ticks]
    hovers = [Hover(pos[i], max(pos[i + 1] - pos[i], 0.5),
                    f"[{fmt(xs[i], 4)}, {fmt(xs[i + 1], 4)}{']' if i == n - 1 else ')'}: "
                    f"reference {pct(ref[i])}, current {pct(cur[i])}") for i in range(n)]
    return Plot("histogram", HEIGHT, bottom, path(ref), path(cur), xlabels, _ygrid(top, scale, bottom), hovers,
                note="bins drawn at equal width (their edges vary widely)" if equal else "")


def _bars(p: dict[str, Any]) -> Plot:
    cats_raw = p.get("categories")
    n = len(cats_raw) if isinstance(cats_raw, list) else 0
    ref, cur = _shares(p.get("reference"), n), _shares(p.get("current"), n)
    if n < 1 or ref is None or cur is None or not isinstance(cats_raw, list):
        return Plot("none", 0, 0, missing="the report holds no readable category shares for this feature")
    cats = ["(null)" if c is None else _text(c, MAX_TITLE) for c in cats_raw]
    note = ""
    if n > MAX_CATEGORIES:  # the first ones (the producer orders them), and the rest as one group
        keep = MAX_CATEGORIES - 1
        rest = n - keep
        cats = [*cats[:keep], f"({rest} more)"]
        ref = [*ref[:keep], sum(ref[keep:])]
        cur = [*cur[:keep], sum(cur[keep:])]
        note = f"the last bar sums {rest} more categories"
        n = MAX_CATEGORIES
    rotated = n > 6 or any(len(c) > 12 for c in cats)
    height = HEIGHT - BOTTOM + (BOTTOM_ROTATED if rotated else BOTTOM)
    bottom = height - (BOTTOM_ROTATED if rotated else BOTTOM)
    plot_w = WIDTH - LEFT - RIGHT
    group = plot_w / n
    bar = min(group * 0.38, 40.0)
    top = _nice_top(max(ref + cur))
    scale = (bottom - TOP) / top

    def path(shares: list[float], offset: float) -> str:
        parts = []
        for i, s in enumerate(shares):
            h = s * scale
            if h > 0:
                x = LEFT + group * (i + 0.5) + offset
                parts.append(f"M{x:.1f} {bottom:.1f}V{bottom - h:.1f}h{bar:.1f}V{bottom:.1f}Z")
        return "".join(parts)

    xlabels = []
    for i, c in enumerate(cats):
        x = LEFT + group * (i + 0.5)
        short = _text(c, 14 if rotated else max(4, int(group / 7)))
        if rotated:
            xlabels.append(Label(x + 3, bottom + 12, short, "end", -35.0, c))
        else:
            xlabels.append(Label(x, bottom + 16, short, "middle", 0.0, c))
    hovers = [Hover(LEFT + group * i, group, f"{c}: reference {pct(ref[i])}, current {pct(cur[i])}")
              for i, c in enumerate(cats)]
    return Plot("bars", height, bottom, path(ref, -bar), path(cur, 0.0), xlabels, _ygrid(top, scale, bottom),
                hovers, note=note)


def _nice_top(v: float) -> float:
    """The top of the y axis: the largest share rounded up to 1, 2 or 5 times a power of ten."""
    if v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1.0, 2.0, 5.0, 10.0):
        top = m * 10.0 ** exp
        if top >= v * (1 - 1e-9):
            return min(top, 1.0) if v <= 1 else top
    return v


def _ygrid(top: float, scale: float, bottom: float) -> list[Label]:
    return [Label(LEFT - 6, bottom - top * k / 2 * scale, pct(top * k / 2), "end") for k in range(3)]


def _tick_indexes(count: int, most: int) -> list[int]:
    if count <= most:
        return list(range(count))
    step = (count - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})
