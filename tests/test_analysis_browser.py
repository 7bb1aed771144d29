"""The alarm analysis page in a real browser (Debian's Chromium) against a real server holding
the demo's generated month: the figures, ECharts' charts from /vendor, a bad actor's trace
by a click, the recommendations, Chinese, the report download; nothing from outside the
server, no error. Leaves a 1920x1080 screenshot in docs/img/analysis.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from command.auth import Role
from command.monitoring.demo_history import DEMO_SEED, generate_history
from gis.storage.db import Database, make_engine
from tests.conftest import DEMO_ID, TEST_PASSWORD, site_database
from tests.live_server import LiveServer
from tests.test_browser import CHROMIUM, LEAFLET, NO_CHROMIUM, NO_LEAFLET, WAIT_MS, Watched, require

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "img"
ECHARTS = ROOT / "frontend" / "node_modules" / "echarts" / "dist" / "echarts.min.js"
COMMANDER = "fa-commander"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(
        LEAFLET.is_file() and ECHARTS.is_file(), "the npm packages are not installed", NO_LEAFLET
    )
    require(CHROMIUM.is_file(), f"no Chromium at {CHROMIUM}", NO_CHROMIUM)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    url = site_database(tmp_path_factory.mktemp("analysis") / "a.db", {COMMANDER: Role.COMMANDER})
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            made = generate_history(session, DEMO_ID, days=30, seed=DEMO_SEED)
    finally:
        engine.dispose()
    with LiveServer(url) as server:
        yield server, made


def test_the_analysis_page_charts_the_month_and_names_what_to_fix(
    browser: Browser, served: tuple[LiveServer, dict[str, Any]]
) -> None:
    server, made = served
    planted = made["planted"]
    login = httpx.post(
        f"{server.base}/api/auth/login", json={"username": COMMANDER, "password": TEST_PASSWORD}
    )
    token = login.json()["access_token"]
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-GB")
    context.add_init_script(
        f"sessionStorage.setItem('rallypoint.token', {token!r});"
        f"sessionStorage.setItem('rallypoint.site', {DEMO_ID!r});"
        "if (!localStorage.getItem('rallypoint.language'))"
        " localStorage.setItem('rallypoint.language', 'en');"
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS * 3)
    seen = Watched(page)
    try:
        page.goto(f"{server.base}/static/analysis.html")
        page.wait_for_selector("body[data-ready='true']")
        # The figures are the API's.
        api = httpx.get(
            f"{server.base}/api/sites/{DEMO_ID}/alarm-analysis",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ).json()
        shown = page.locator("[data-figure='alarms'] .value").inner_text()
        assert shown.replace(",", "") == str(api["totals"]["counted"])
        assert page.locator("[data-figure='top10'] .value").get_attribute("class") == "value bad"
        # Each chart is drawn by ECharts, with its data.
        series = page.evaluate(
            "() => Object.fromEntries(['chart-daily', 'chart-bad', 'chart-rate', 'chart-plume',"
            " 'chart-trace'].map(id => [id, echarts.getInstanceByDom(document.getElementById(id))"
            "?.getOption().series.length ?? 0]))"
        )
        assert series == {
            "chart-daily": 5,
            "chart-bad": 1,
            "chart-rate": 1,
            "chart-plume": 1,
            "chart-trace": 5,
        }, series
        trace = page.locator("#chart-trace")
        page.wait_for_function(
            f"() => document.getElementById('chart-trace').dataset.sensor === "
            f"{planted['chattering']!r}"
        )
        # A click on the drifting detector's bar shows its trace.
        bar = page.evaluate(
            "([id]) => { const c = echarts.getInstanceByDom(document.getElementById('chart-bad'));"
            " const o = c.getOption(); const i = o.yAxis[0].data.indexOf(id);"
            " return c.convertToPixel({seriesIndex: 0}, [o.series[0].data[i], i]); }",
            [planted["drifting"]],
        )
        box = page.locator("#chart-bad").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + bar[0] - 3, box["y"] + bar[1])
        page.wait_for_function(
            f"() => document.getElementById('chart-trace').dataset.sensor === "
            f"{planted['drifting']!r}"
        )
        assert planted["drifting"] in page.locator("#trace-name").inner_text()
        assert trace.locator("canvas").count() >= 1
        # What to fix, by detector; nothing for the real leak.
        rows = page.locator("#recommendations tbody tr")
        found = {
            (r.get_attribute("data-sensor"), r.get_attribute("data-action")) for r in rows.all()
        }
        assert {
            (planted["chattering"], "relocate"),
            (planted["chattering"], "on_delay"),
            (planted["drifting"], "recalibrate"),
            (planted["stuck"], "recalibrate"),
        } <= found
        assert all(sensor != planted["leak"] for sensor, _ in found)
        # The evidence in words, not keys: the on-delay it suggests, in seconds.
        chattering = planted["chattering"]
        delay = f"#recommendations tr[data-sensor='{chattering}'][data-action='on_delay']"
        evidence = page.locator(f"{delay} div.evidence").inner_text()
        assert re.search(r"suggested on-delay: \d+ s", evidence), evidence
        assert "_" not in evidence, evidence  # no raw key left
        page.screenshot(path=str(IMAGES / "analysis.png"))

        # The printable report, downloaded.
        with page.expect_download() as download:
            page.click("#report")
        text = Path(download.value.path()).read_text(encoding="utf-8")
        assert "False-alarm analysis" in text and planted["chattering"] in text
        assert "suggested on-delay: " in text and "suggested_on_delay_s" not in text

        # In Chinese, and remembered.
        page.select_option("#language", "zh-CN")
        assert page.locator("[data-a='title']").inner_text() == "报警分析"
        assert page.locator("#recommendations tbody tr td").first.inner_text() in (
            "迁移位置",
            "重新标定",
            "增加报警延时",
            "增加死区",
        )
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        assert page.locator("html").get_attribute("lang") == "zh-CN"

        assert seen.errors == []
        outside = [u for u in seen.urls if not u.startswith((server.base, "blob:", "data:"))]
        assert outside == []
    finally:
        context.close()
