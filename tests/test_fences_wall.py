"""Geofences on the map wall, in a real headless Chromium against the real server: a breach
waits in the alarm bar with the tone until a responder acknowledges it; a planner draws a crane's
swing radius with Leaflet-Geoman and every wall shows it.

Chromium runs with ``--autoplay-policy=no-user-gesture-required``, as a kiosk wall is started,
so the alarm tone plays without a click.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from command.auth import Role
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, site_database, zone_centroid
from tests.live_server import LiveServer
from tests.test_browser import (
    COMMANDER,
    PLANNER,
    RESPONDER,
    VIEWER,
    WAIT_MS,
    Watched,
    chromium,
    open_wall,
    sign_in,
)

BASE = f"/api/sites/{DEMO_ID}"
COMPRESSORS = "Z-023"  # hydrogen compressor house: nobody inside at the start
WELDER = "P-0106"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(kiosk=True) as launched:  # the alarm tone plays without a click
        yield launched


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    url = site_database(
        tmp_path / "fences.db",
        {
            COMMANDER: Role.COMMANDER,
            VIEWER: Role.VIEWER,
            RESPONDER: Role.RESPONDER,
            PLANNER: Role.PLANNER,
        },
    )
    with LiveServer(url, heartbeat_s=1.0) as live:
        yield live


def new_page(browser: Browser) -> Watched:
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return Watched(page)


def logged(server: LiveServer, auth: dict[str, str], kind: str) -> list[dict[str, Any]]:
    events = httpx.get(f"{server.base}{BASE}/events", headers=auth).json()["events"]
    return [e for e in events if e["type"] == kind]


def test_a_breach_sounds_on_every_wall_until_a_responder_acknowledges_it(
    server: LiveServer, browser: Browser
) -> None:
    planner = sign_in(server, PLANNER)
    rules = {"rules": {"roles": ["electrician"]}}
    answer = httpx.put(
        f"{server.base}{BASE}/zones/{COMPRESSORS}/rules", json=rules, headers=planner
    )
    assert answer.status_code == 200, answer.text
    viewer = new_page(browser)
    responder = new_page(browser)
    try:
        open_wall(viewer.page, server, VIEWER)
        open_wall(responder.page, server, RESPONDER)
        auth = sign_in(server)
        lon, lat = zone_centroid(COMPRESSORS)
        walked = httpx.post(
            f"{server.base}{BASE}/positions",
            json={"positions": [{"person_id": WELDER, "lon": lon, "lat": lat}]},
            headers=auth,
        )
        assert walked.status_code == 200, walked.text
        [breach] = logged(server, auth, "fence.breach")
        banner = f"#fence-alarms .fence-breach[data-breach='{breach['seq']}']"
        for page in (viewer.page, responder.page):
            page.wait_for_selector(banner)
            text = page.inner_text(banner)
            assert "Fence breach" in text and "welder may not enter" in text
            assert "Jinshan Insulation Services" in text
        viewer.page.wait_for_function(
            "() => Number(document.querySelector('#sound').dataset.beeps || 0) >= 2"
        )
        assert viewer.page.get_attribute("#sound", "data-playing") == "true"
        assert viewer.page.locator(f"{banner} .fence-ack").count() == 0  # a viewer cannot
        # Muting is the wall's own choice, for breaches as for detector alarms.
        viewer.page.click("#sound")
        assert viewer.page.get_attribute("#sound", "data-playing") == "false"
        responder.page.click(f"{banner} .fence-ack")
        for page in (viewer.page, responder.page):
            page.wait_for_selector(banner, state="detached")
        responder.page.wait_for_function(
            "() => document.querySelector('#sound').dataset.playing === 'false'"
        )
        [ack] = logged(server, auth, "fence.acknowledged")
        assert ack["data"]["breach"] == breach["seq"] and ack["data"]["by"] == RESPONDER
        assert viewer.errors == [] and responder.errors == []
    finally:
        viewer.page.context.close()
        responder.page.context.close()


def test_acknowledging_a_breach_keeps_the_tone_while_an_sos_waits(
    server: LiveServer, browser: Browser
) -> None:
    """The tone is one for every kind of alarm: the breach acknowledged, the SOS still waiting
    keeps it sounding."""
    planner = sign_in(server, PLANNER)
    rules = {"rules": {"roles": ["electrician"]}}
    answer = httpx.put(
        f"{server.base}{BASE}/zones/{COMPRESSORS}/rules", json=rules, headers=planner
    )
    assert answer.status_code == 200, answer.text
    responder = new_page(browser)
    try:
        open_wall(responder.page, server, RESPONDER)
        auth = sign_in(server)
        sos = {"events": [{"device_id": "WB-9", "kind": "sos", "person_id": WELDER}]}
        pressed = httpx.post(f"{server.base}{BASE}/device-events", json=sos, headers=auth)
        assert pressed.status_code == 200, pressed.text
        lon, lat = zone_centroid(COMPRESSORS)
        walked = httpx.post(
            f"{server.base}{BASE}/positions",
            json={"positions": [{"person_id": WELDER, "lon": lon, "lat": lat}]},
            headers=auth,
        )
        assert walked.status_code == 200, walked.text
        [breach] = logged(server, auth, "fence.breach")
        banner = f"#fence-alarms .fence-breach[data-breach='{breach['seq']}']"
        page = responder.page
        page.wait_for_selector(banner)
        page.wait_for_selector(f"#person-alarms .person-alarm[data-person='{WELDER}']")
        page.click(f"{banner} .fence-ack")
        page.wait_for_selector(banner, state="detached")
        page.wait_for_timeout(300)  # a repaint that wrongly silenced the tone would have run
        assert page.get_attribute("#sound", "data-playing") == "true"
        assert responder.errors == []
    finally:
        responder.page.context.close()


def test_a_planner_draws_a_crane_swing_radius_that_every_wall_shows(
    server: LiveServer, browser: Browser
) -> None:
    drawer = new_page(browser)
    viewer = new_page(browser)
    try:
        open_wall(viewer.page, server, VIEWER)
        open_wall(drawer.page, server, PLANNER)
        assert viewer.page.locator("#fence-draw-open").count() == 0  # viewers draw nothing
        page = drawer.page
        page.click("#fence-draw-open")
        page.select_option("#fence-kind", "crane_swing")
        page.fill("#fence-name", "Crane TC-3")
        page.fill("#fence-hours", "2")
        page.click("#fence-start")
        page.wait_for_function("() => Boolean(window.L && window.L.PM)")
        box = page.locator("#map").bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
        page.mouse.click(x, y)
        page.mouse.move(x + 40, y, steps=4)
        page.mouse.click(x + 40, y)
        page.wait_for_function(
            "() => document.querySelector('#fence-status')?.textContent.includes('drawn')"
        )
        for shown in (page, viewer.page):
            shown.wait_for_selector("path.rp-fence-crane_swing", state="attached")
        auth = sign_in(server, PLANNER)
        fences = httpx.get(f"{server.base}{BASE}/fences", headers=auth).json()["features"]
        [crane] = fences
        assert crane["properties"]["kind"] == "crane_swing"
        assert crane["properties"]["name"] == "Crane TC-3"
        assert crane["properties"]["radius_m"] > 1
        assert crane["properties"]["rules"]["closed"] is True
        assert drawer.errors == [] and viewer.errors == []
    finally:
        drawer.page.context.close()
        viewer.page.context.close()


def test_the_people_tab_counts_the_evacuation_by_employer_in_both_languages(
    server: LiveServer, browser: Browser
) -> None:
    watched = new_page(browser)
    try:
        page = watched.page
        open_wall(page, server, COMMANDER)
        auth = sign_in(server)
        answer = httpx.post(
            f"{server.base}{BASE}/incidents", json=CHLORINE_ACTIVATION, headers=auth
        )
        assert answer.status_code == 201, answer.text
        incident = answer.json()["incident"]["id"]
        lon, lat = zone_centroid("Z-033")  # muster point W1
        walked = httpx.post(
            f"{server.base}{BASE}/positions",
            json={"positions": [{"person_id": WELDER, "lon": lon, "lat": lat}]},
            headers=auth,
        )
        assert walked.status_code == 200, walked.text
        by = walked.json()["headcount"]["by_employer"]["Jinshan Insulation Services"]
        card = f".incident[data-incident='{incident}']"
        page.wait_for_selector(card)
        page.click(f"{card} .tab[data-tab='people']")
        row = f"{card} .employer-list li[data-employer='Jinshan Insulation Services']"
        page.wait_for_function(
            "([sel, n]) => document.querySelector(sel)?.textContent.includes(`${n} of`)",
            arg=[row, by["accounted"]],
        )
        assert f"{by['accounted']} of {by['on_site']} at muster points" in page.inner_text(row)
        assert "Headcount by employer" in page.inner_text(f"{card} .employer-head")
        page.select_option("#language", "zh-CN")
        page.wait_for_function(
            "sel => document.querySelector(sel)?.textContent.includes('按单位清点')",
            arg=f"{card} .employer-head",
        )
        assert f"{by['on_site']} 人，{by['accounted']} 人已在集合点" in page.inner_text(row)
        assert watched.errors == []
    finally:
        watched.page.context.close()
