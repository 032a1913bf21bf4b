"""The drift report in a real headless browser: Debian's chromium, driven by Playwright for Python.

The page is served by a real HTTP server on 127.0.0.1 (and opened from disk as the CLI's link
does); every request the page makes, every console message, page error and dialog is recorded.
The report must render (title, one summary row per feature), show a visible plot for every drifted
feature, log no console error, and make no request but the one for the page itself.

Playwright's own browsers are never downloaded (no ``playwright install``): it launches the
system's chromium. Skipped, saying why, when chromium or playwright is missing
(``.ci/install-debian.sh`` installs chromium; the ``test`` extra installs playwright).
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlops.monitoring.report_html import MAX_PLOTS, render_html
from mlops.monitoring.reports import write_html_file
from tests.monitoring.reportdata import many_features_report, realistic_report

CHROMIUM = os.environ.get("MLOPS_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing that phones home: no QUIC, sync, component updates or background networking.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium, as .ci/install-debian.sh does; "
                    "or set MLOPS_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright, in the test extra; its driver comes "
                    "with it, and it uses the system's chromium, so no `playwright install`)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    seen: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        self.seen.append(self.path)


@dataclass
class Server:
    root: Path
    url: str
    seen: list[str]  # paths the server was asked for, by anyone


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []
    handler = type("Handler", (_Handler,), {"seen": seen})

    def make(*args: Any) -> http.server.SimpleHTTPRequestHandler:
        return handler(*args, directory=str(root))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}/", seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@dataclass
class Visit:
    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Console errors and warnings, page errors and dialogs: a clean page has none."""
        return [f"console {t}: {m}" for t, m in self.console if t in ("error", "warning")] + \
               [f"page error: {e}" for e in self.errors] + [f"dialog: {d}" for d in self.dialogs]


def visit(browser: Any, url: str) -> Visit:
    """Open ``url`` in a fresh context, recording what the page does, and wait until it is quiet."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    v = Visit(page, url)
    page.on("request", lambda r: v.requests.append(r.url))
    page.on("console", lambda m: v.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: v.errors.append(str(e)))
    page.on("dialog", lambda d: (v.dialogs.append(d.message), d.dismiss()))
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok  # file:// has no response
    page.wait_for_load_state("networkidle")
    return v


def serve(server: Server, text: str) -> str:
    name = f"report-{uuid.uuid4().hex[:8]}.html"
    (server.root / name).write_text(text, encoding="utf-8")
    return server.url + name


def _box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    return box


def test_the_report_renders_with_its_plots_and_loads_nothing(browser: Any, server: Server, tmp_path: Path) -> None:
    report = realistic_report()
    url = serve(server, render_html(report, endpoint="wine"))
    v = visit(browser, url)
    page = v.page
    assert page.title() == "Drift report: wine (2026-11-29T17:00:00Z)"
    assert page.locator("#summary tbody tr").count() == len(report["features"])
    drifted = [i for i, f in enumerate(report["features"]) if f["drifted"]]
    assert len(drifted) == 3
    for i in drifted:  # each drifted feature's plot is on screen, with its bars drawn
        svg = page.locator(f"figure#f{i} svg.plot")
        svg.scroll_into_view_if_needed()
        assert svg.is_visible()
        box = _box(svg)
        assert box["width"] > 300 and box["height"] > 100
        for series in ("ref", "cur"):
            bars = _box(svg.locator(f"path.{series}"))
            assert bars["width"] > 50 and bars["height"] > 10
        assert page.locator(f"figure#f{i} figcaption").inner_text().startswith(report["features"][i]["name"])
    assert page.locator("#prediction svg.plot").is_visible()
    assert page.locator("#quality tbody tr").count() == 3
    assert v.problems() == []
    assert v.requests == [url]
    assert [p for p in server.seen if not url.endswith(p)] == []  # nothing else asked the server (no favicon)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


HOSTILE = ['<script>window.pwned = 1; alert(1)</script>', '"><img src=x onerror="window.pwned=2">',
           "<svg onload=window.pwned=3>", "</style><style>body{background:url(/exfil)}</style>"]


def test_hostile_names_are_text_in_the_browser(browser: Any, server: Server) -> None:
    report = realistic_report()
    for i, name in enumerate(HOSTILE):
        report["features"][i]["name"] = name
    report["features"][-1]["plot"]["categories"][0] = HOSTILE[1]
    report["quality"]["findings"][0]["message"] = HOSTILE[1]
    url = serve(server, render_html(report, endpoint="wine"))
    v = visit(browser, url)
    page = v.page
    assert page.evaluate("window.pwned") is None
    names = page.locator("#summary td.name").all_inner_texts()
    assert set(HOSTILE) <= set(names)
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    assert page.get_by_text(HOSTILE[1], exact=True).first.is_visible()
    assert v.problems() == []
    assert v.requests == [url]


def test_the_table_sorts_and_other_plots_open(browser: Any, server: Server) -> None:
    report = realistic_report()
    v = visit(browser, serve(server, render_html(report)))
    page = v.page
    names = page.locator("#summary td.name")
    assert names.all_inner_texts()[:3] == ["alcohol", "proline", "region"]  # drifted first
    page.get_by_role("button", name="Feature").click()
    assert names.all_inner_texts() == sorted(f["name"] for f in report["features"])
    page.get_by_role("button", name="PSI").click()
    page.get_by_role("button", name="PSI").click()
    psi = sorted(report["features"], key=lambda f: -f["psi"])
    assert names.all_inner_texts() == [f["name"] for f in psi]
    assert page.locator("th[aria-sort=descending]").inner_text().startswith("PSI")
    # A feature that did not drift has its plot one click away, or two: from its name in the table.
    ids = {f["name"]: f"f{i}" for i, f in enumerate(report["features"])}
    for name, how in (("ash", "summary"), ("hue", "table link")):
        svg = page.locator(f"details#{ids[name]} svg.plot")
        assert not svg.is_visible()
        if how == "summary":
            page.locator(f"details#{ids[name]} summary").click()
        else:
            page.locator("#summary td.name a", has_text=name).click()
        svg.wait_for(state="visible", timeout=10_000)
        assert _box(svg)["height"] > 100
    assert v.problems() == []


def test_a_report_of_hundreds_of_features_opens(browser: Any, server: Server) -> None:
    report = many_features_report(400)
    url = serve(server, render_html(report))
    v = visit(browser, url)
    assert v.page.locator("#summary tbody tr").count() == 400
    figures = v.page.locator("#drifted svg.plot")
    drifted = sum(1 for f in report["features"] if f["drifted"])
    assert drifted > MAX_PLOTS and figures.count() == MAX_PLOTS  # the rest: "N more plots are left out"
    last = figures.last
    last.scroll_into_view_if_needed()
    assert last.is_visible() and _box(last)["width"] > 300
    assert v.problems() == [] and v.requests == [url]


def test_the_file_the_cli_links_to_opens_from_disk(browser: Any, tmp_path: Path) -> None:
    report = realistic_report()
    path = write_html_file(tmp_path, "wine", render_html(report, endpoint="wine"), report["created"])
    v = visit(browser, path.as_uri())
    assert v.page.locator("#summary tbody tr").count() == len(report["features"])
    assert v.page.locator("#drifted svg.plot").count() == 3
    assert v.problems() == [] and v.requests == [path.as_uri()]
