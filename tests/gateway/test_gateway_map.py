"""The map page in a real browser: Debian's chromium driven by Playwright, on the local stack.

One test blocks every request not to 127.0.0.1 and asserts none was attempted and none
failed (the page works air-gapped: MapLibre and the basemap come from the gateway). The
end-to-end test draws an area, submits batch inference, waits, sees the prediction layer
and the polygons, opens a polygon's popup and the lineage. Screenshots are written to
``test-artifacts/gateway/`` (``GEOMLOPS_TEST_ARTIFACTS`` elsewhere).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

# Long: the session trains and promotes a model first (minutes on 2 busy cores).
pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(3600)]
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
"""As root, chromium needs --no-sandbox; the rest keep it from calling Google's hosts."""
JOB_TIMEOUT_MS = 600_000


def artifacts() -> Path:
    folder = Path(os.environ.get("GEOMLOPS_TEST_ARTIFACTS", REPO / "test-artifacts")) / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Traffic:
    """Every request the page made, and those that were off loopback or failed."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.off_loopback: list[str] = []
        self.failed: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} {r.failure}"))

        def route(route: Any) -> None:
            url = route.request.url
            host = urlsplit(url).hostname
            if url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                route.continue_()
                return
            self.off_loopback.append(url)
            route.abort("blockedbyclient")

        page.route("**/*", route)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is needed (Debian package `chromium`: `make install`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:  # each launch gets a fresh temporary profile
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Traffic]]:
    context = browser.new_context(viewport={"width": 1280, "height": 820})
    page = context.new_page()
    traffic = Traffic()
    traffic.attach(page)
    yield page, traffic
    context.close()


def test_the_map_needs_nothing_off_this_machine(
    gateway: str, production: str, page: tuple[Any, Traffic]
) -> None:
    browser_page, traffic = page
    browser_page.goto(f"{gateway}/map")
    browser_page.wait_for_function("window.geomlops && window.geomlops.loaded", timeout=60_000)
    browser_page.wait_for_function(
        "document.querySelectorAll('#model option').length > 0", timeout=60_000
    )
    browser_page.wait_for_load_state("networkidle")
    browser_page.screenshot(path=str(artifacts() / "map-offline.png"))
    assert traffic.off_loopback == [], "the page asked for something off this machine"
    assert traffic.failed == []
    assert any(u.endswith("/vendor/maplibre-gl/maplibre-gl.mjs") for u in traffic.requests)
    assert any(u.endswith("/map/basemap.geojson") for u in traffic.requests)
    options = browser_page.eval_on_selector_all("#model option", "o => o.map(x => x.textContent)")
    assert any(
        o.startswith(f"flood-water-s2 v{production.rsplit('mv', 1)[1]} (production)")
        for o in options
    ), options


def test_draw_run_and_see_the_prediction(
    gateway: str,
    production: str,
    spain: dict,
    keys: dict[str, str],
    page: tuple[Any, Traffic],
) -> None:
    browser_page, traffic = page
    browser_page.goto(f"{gateway}/map")
    browser_page.wait_for_function("window.geomlops && window.geomlops.loaded", timeout=60_000)
    browser_page.wait_for_function(
        "document.querySelectorAll('#model option').length > 0", timeout=60_000
    )
    browser_page.fill("#key", keys["writer"])
    browser_page.dispatch_event("#key", "change")
    ring = spain["geometry"]["coordinates"][0]
    west, south = min(p[0] for p in ring), min(p[1] for p in ring)
    east, north = max(p[0] for p in ring), max(p[1] for p in ring)
    browser_page.evaluate(
        "b => { const m = window.geomlops.map; m.fitBounds(b, {padding: 120, animate: false}); }",
        [[west, south], [east, north]],
    )
    corners = browser_page.evaluate(
        """b => { const m = window.geomlops.map; const r = m.getCanvas().getBoundingClientRect();
        return b.map(c => { const p = m.project(c); return [p.x + r.left, p.y + r.top]; }); }""",
        [[west, south], [east, north]],
    )
    browser_page.click("#draw")
    for x, y in corners:
        browser_page.mouse.click(x, y)
    aoi = browser_page.evaluate("window.geomlops.aoi")
    assert aoi["type"] == "Polygon"
    drawn = aoi["coordinates"][0]
    assert abs(drawn[0][0] - west) < 1e-3 and abs(drawn[2][1] - north) < 1e-3

    browser_page.click("#run")
    browser_page.wait_for_function(
        "window.geomlops.shown && window.geomlops.lineage", timeout=JOB_TIMEOUT_MS
    )
    browser_page.wait_for_load_state("networkidle")
    state = browser_page.evaluate(
        "({layers: window.geomlops.layers, polygons: window.geomlops.polygons,"
        " lineage: window.geomlops.lineage, job: window.geomlops.job})"
    )
    assert {"imagery-0", "mask-0", "polygons"} <= set(state["layers"])
    assert state["polygons"] > 0
    lineage = state["lineage"]
    assert lineage["model"]["item"] == production
    assert lineage["model"]["approved_by"].startswith("gw-promoter-")
    assert lineage["workflow"]["run"] == state["job"]
    assert browser_page.is_visible("#lineage") and browser_page.is_visible("#downloads a")
    assert "tiles" in browser_page.inner_text("#tasks")
    browser_page.screenshot(path=str(artifacts() / "map-prediction.png"))

    # A polygon's popup: class, area, confidence.
    point = browser_page.evaluate(
        """() => { const m = window.geomlops.map;
        const f = m.queryRenderedFeatures({layers: ['polygons-fill']});
        if (!f.length) return null;
        const r = m.getCanvas().getBoundingClientRect();
        const w = r.width, h = r.height;
        for (let y = 10; y < h; y += 7) for (let x = 10; x < w; x += 7)
          if (m.queryRenderedFeatures([x, y], {layers: ['polygons-fill']}).length)
            return [x + r.left, y + r.top];
        return null; }"""
    )
    assert point is not None, "the polygons are drawn on the map"
    browser_page.mouse.click(*point)
    popup = browser_page.wait_for_selector(".maplibregl-popup-content", timeout=10_000)
    text = popup.inner_text()
    assert "class" in text and "km²" in text and "confidence" in text
    browser_page.screenshot(path=str(artifacts() / "map-popup.png"))
    assert traffic.off_loopback == [] and traffic.failed == []


def test_a_link_to_a_published_run_shows_it_without_a_key(
    gateway: str, production: str, finished_job: dict[str, Any], page: tuple[Any, Traffic]
) -> None:
    """``/map?run=RUN`` (the link `make demo` prints) shows the run's layers and lineage.

    No key is typed: a published run is read from the catalog as its tiles are.
    """
    run = finished_job["jobID"]
    browser_page, traffic = page
    browser_page.goto(f"{gateway}/map?run={run}")
    browser_page.wait_for_function(
        "run => window.geomlops && window.geomlops.shown === run", arg=run, timeout=120_000
    )
    browser_page.wait_for_load_state("networkidle")
    state = browser_page.evaluate(
        "({layers: window.geomlops.layers, polygons: window.geomlops.polygons,"
        " lineage: window.geomlops.lineage})"
    )
    assert {"imagery-0", "mask-0", "polygons"} <= set(state["layers"])
    assert state["polygons"] > 0
    assert state["lineage"]["prediction"] == run
    assert state["lineage"]["model"]["item"] == production
    browser_page.screenshot(path=str(artifacts() / "map-run-link.png"))
    assert traffic.off_loopback == [] and traffic.failed == []

    browser_page.goto(f"{gateway}/map?run=no-such-run")
    browser_page.wait_for_function(
        "document.getElementById('status').textContent.includes('no-such-run')", timeout=60_000
    )
