"""The drift report's HTML page: what it shows, that untrusted text stays text, that it loads nothing,
and that malformed or huge reports still make a small, readable page. (The browser test is
test_report_browser.py.)"""

from __future__ import annotations

import base64
import copy
import hashlib
import html.parser
import re
from typing import Any

import pytest

from mlops.monitoring import report_html
from mlops.monitoring.report_html import render_html
from tests.monitoring.reportdata import (
    categorical_entry,
    drift_report,
    many_features_report,
    realistic_report,
)

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "'><svg onload=alert(3)>",
           "</title><script>alert(4)</script>", "{{ 7*7 }}", "&lt;b&gt;", "a\u202eb"]


class Page(html.parser.HTMLParser):
    """Every element of a page, with its attributes, and the text inside ``<script>``/``<style>``."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self.texts: list[str] = []
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in self.raw:
            self._in = tag
            self.raw[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in][-1] += data
        else:
            self.texts.append(data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == name]


def _summary_rows(text: str) -> int:
    body = text.split('<table id="summary">', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return body.count("<tr")


def _csp(page: Page) -> str:
    metas = [a for a in page.tags("meta") if (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert len(metas) == 1
    return str(metas[0]["content"])


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_a_realistic_report_shows_verdict_table_plots_prediction_and_quality() -> None:
    report = realistic_report()
    text = render_html(report, endpoint="wine")
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>")
    assert page.tags("title") and "Drift report: wine (2026-11-29T17:00:00Z)" in text
    assert _summary_rows(text) == len(report["features"]) == 14
    # Drifted first: alcohol, proline and region come before every feature that did not drift.
    body = text.split('<table id="summary">', 1)[1].split("</table>", 1)[0]
    names = re.findall(r'<td class="name"[^>]*>(?:<a href="#f\d+">)?([^<]+)', body)
    assert names[:3] == ["alcohol", "proline", "region"] and sorted(names[3:]) == names[3:]
    # One plot per drifted feature, in a figure; every other feature's plot one click away; and the prediction's.
    figures = [a["id"] for a in page.tags("figure")]
    assert len(figures) == 3 + 1 and "prediction-plot" in figures
    ids = [a["id"] for _, a in page.elements if "id" in a]
    assert len(ids) == len(set(ids))
    assert len(page.tags("details")) == 11
    assert len([a for a in page.tags("svg") if a.get("class") == "plot"]) == 14 + 1
    assert "Detected" not in text.split("Dataset drift</h2>", 1)[1][:60]  # 3 of 14 < 50%: not detected
    assert "3 of 14 features drifted (21.4%)" in text
    assert "12.0% missing in current (reference 0.0%, allowed 5.0%)" in text and "new_category" in text
    assert "prediction.label" in text and "jensenshannon" in text


def test_histograms_and_bars_are_drawn_from_the_shares() -> None:
    report = drift_report([categorical_entry("colour", ["red"] * 3 + ["blue"], ["red"] + ["blue"] * 3)])
    bars = report_html._plot(report["features"][0]["plot"])
    assert bars.kind == "bars" and [lb.text for lb in bars.xlabels] == ["red", "blue"]
    # Four bars: red 75% vs 25%, blue 25% vs 75%; the y axis tops at 100% (75% rounded up to 1, 2 or 5 x 10^k).
    assert bars.reference.count("M") == 2 and bars.current.count("M") == 2
    assert [lb.text for lb in bars.ygrid] == ["0%", "50%", "100%"]
    assert "red: reference 75%, current 25%" in [h.title for h in bars.hovers]
    hist = report_html._plot({"type": "histogram", "edges": [0, 1, 2, 3], "reference": [0.5, 0.5, 0],
                              "current": [0, 0.25, 0.75]})
    assert hist.kind == "histogram" and hist.reference.count("M") == 2 and hist.current.count("M") == 2
    assert [h.title for h in hist.hovers][-1] == "[2, 3]: reference 0%, current 75%"
    # Quantile bins with one far outlier are drawn side by side at equal width, and the page says so.
    skewed = report_html._plot({"type": "histogram", "edges": [0, 1, 2, 1000], "reference": [0.3, 0.3, 0.4],
                                "current": [0.3, 0.3, 0.4]})
    assert "equal width" in skewed.note and len({h.width for h in skewed.hovers}) == 1


@pytest.mark.parametrize("hostile", HOSTILE)
def test_untrusted_text_renders_as_text(hostile: str) -> None:
    report = realistic_report()
    report["features"][0]["name"] = hostile
    report["features"][1]["name"] = hostile + " " * 3 + "x" * 400  # cut, with the full name as the tooltip
    report["features"][-1]["plot"]["categories"][0] = hostile
    report["prediction"]["name"] = hostile
    report["reference"]["source"] = hostile
    report["current"]["digest"] = hostile
    report["created"] = hostile
    report["quality"]["findings"][0].update(feature=hostile, message=hostile, check=hostile, severity=hostile)
    text = render_html(report, endpoint=hostile)
    page = Page(text)
    # The only elements are the page's own: one script (the sorter), no image, no event handler anywhere.
    assert len(page.tags("script")) == 1 and not page.tags("img")
    assert not any(k.startswith("on") for _, attrs in page.elements for k in attrs)
    assert len([a for a in page.tags("svg") if a.get("class") == "plot"]) == 15
    assert "alert" not in page.raw["script"][0]
    # ... and the text reads as written.
    shown = "".join(page.texts)
    assert shown.count(hostile) >= 5
    assert "<script>alert(1)</script>" not in text and "<img" not in text and "<svg onload" not in text


def test_the_page_loads_nothing_and_allows_only_its_own_style_and_script() -> None:
    text = render_html(realistic_report(), endpoint="wine")
    page = Page(text)
    csp = _csp(page)
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == _hash(page.raw["script"][0])
    assert directives["style-src"] == _hash(page.raw["style"][0])
    assert directives["img-src"] == directives["connect-src"] == directives["font-src"] == "'none'"
    # Nothing names anything to fetch: no src, no link element, no URL; links only within the page.
    assert not any("src" in attrs for _, attrs in page.elements) and not page.tags("link")
    assert "http:" not in text and "https:" not in text and "//" not in text.replace("://", "")
    assert all(str(a.get("href")).startswith("#") for a in page.tags("a"))
    assert page.tags("style") == [{}] and not any("style" in attrs for _, attrs in page.elements)


@pytest.mark.parametrize("report", [
    {},
    {"kind": "DriftReport", "schema": 1, "features": []},
    {"kind": "DriftReport", "features": None, "prediction": None, "quality": None, "reference": None},
    {"kind": "DriftReport", "features": "nope", "quality": {"passed": None, "findings": "x"}},
    {"kind": "Something", "schema": 7, "features": [None, 3, "x", {}], "prediction": {"name": None}},
], ids=["empty", "no-features", "nulls", "wrong-types", "not-a-report"])
def test_malformed_reports_make_a_page_not_an_error(report: dict[str, Any]) -> None:
    text = render_html(report)
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    Page(text)


def test_bad_values_in_features_show_as_dashes() -> None:
    base = realistic_report()
    f = copy.deepcopy(base["features"][0])
    bad = [
        {**f, "statistic": None, "threshold": None, "psi": None, "drifted": None, "missing": None},
        {**f, "name": None, "statistic": "0.3", "threshold": True, "psi": float("nan"), "kind": 3},
        {**f, "plot": {"type": "histogram", "edges": [0, 1], "reference": [0.5, 0.5], "current": [1]}},
        {**f, "plot": {"type": "histogram", "edges": [0, None, 2], "reference": [0.5, 0.5], "current": [1, 0]}},
        {**f, "plot": {"type": "histogram", "edges": [1, 1, 1], "reference": [-1, 5], "current": [None, 0]}},
        {**f, "plot": {"type": "bars", "categories": [None, 1, True], "reference": [1, 0, 0],
                       "current": [0, 0, float("inf")]}},
        {**f, "plot": {"type": "pie"}},
        {**f, "plot": {"type": "histogram", "edges": [0.0, 1e308, 1.7e308], "reference": [0, 0],
                       "current": [0, 0]}},
    ]
    for entry in bad:
        entry["drifted"] = True if entry.get("drifted") is not None else None
    text = render_html(drift_report(bad))
    page = Page(text)
    assert _summary_rows(text) == len(bad)
    assert "(unnamed)" in text and "(null)" in text
    assert "no readable histogram" in text and "no plot of type pie" in text
    assert "nan" not in "".join(page.texts).lower()


def test_hundreds_of_features_make_a_page_of_bounded_size() -> None:
    report = many_features_report(600)
    text = render_html(report)
    assert _summary_rows(text) == 600
    plots = text.count('<svg class="plot"')
    assert plots == report_html.MAX_PLOTS
    assert f"{600 - report_html.MAX_PLOTS} more plots are left out" in text
    assert len(text) < 3_000_000
    # Categorical plots with 40 categories show 24 bars, the last summing the rest.
    assert "(17 more)" in text and "the last bar sums 17 more categories" in text


def test_very_long_names_are_cut() -> None:
    report = many_features_report(20, name_length=50_000)
    report["quality"]["findings"] = [{"feature": "y" * 50_000, "check": "missing", "severity": "error",
                                      "value": 0.5, "threshold": 0.1, "message": "m" * 50_000}]
    text = render_html(report)
    assert len(text) < 600_000
    assert "y" * report_html.MAX_TITLE not in text and "m" * report_html.MAX_TEXT not in text
    assert "…" in text
