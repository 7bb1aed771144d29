"""People's alarms on the map wall, in a real headless Chromium against the real server: a
wristband's SOS waits in the people's alarm bar with the tone and a marker at the last position,
on every wall, until a responder acknowledges it.

Chromium runs with ``--autoplay-policy=no-user-gesture-required``, as a kiosk wall is started,
so the alarm tone plays without a click.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from command.auth import Role
from tests.conftest import DEMO_ID, site_database, zone_centroid
from tests.live_server import LiveServer
from tests.test_browser import (
    COMMANDER,
    RESPONDER,
    VIEWER,
    WAIT_MS,
    Watched,
    chromium,
    open_wall,
    sign_in,
)

BASE = f"/api/sites/{DEMO_ID}"
WORKER = "P-0001"
REACTOR = "Z-020"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(kiosk=True) as launched:  # the alarm tone plays without a click
        yield launched


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    url = site_database(
        tmp_path / "bands.db",
        {COMMANDER: Role.COMMANDER, VIEWER: Role.VIEWER, RESPONDER: Role.RESPONDER},
    )
    with LiveServer(url, heartbeat_s=1.0) as live:
        yield live


def new_page(browser: Browser) -> Watched:
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return Watched(page)


def test_an_sos_sounds_on_every_wall_with_its_place_until_acknowledged(
    server: LiveServer, browser: Browser
) -> None:
    viewer = new_page(browser)
    responder = new_page(browser)
    try:
        open_wall(viewer.page, server, VIEWER)
        open_wall(responder.page, server, RESPONDER)
        auth = sign_in(server)
        lon, lat = zone_centroid(REACTOR)
        fix = {"person_id": WORKER, "lon": lon, "lat": lat, "accuracy_m": 3}
        walked = httpx.post(
            f"{server.base}{BASE}/positions", json={"positions": [fix]}, headers=auth
        )
        assert walked.status_code == 200, walked.text
        sos = {"events": [{"device_id": "WB-7", "kind": "sos", "person_id": WORKER}]}
        pressed = httpx.post(f"{server.base}{BASE}/device-events", json=sos, headers=auth)
        assert pressed.status_code == 200, pressed.text
        banner = f"#person-alarms .person-alarm[data-person='{WORKER}'][data-kind='sos']"
        marker = f"path.rp-person-alarm-sos[data-person-alarm='{WORKER}/sos']"
        for page in (viewer.page, responder.page):
            page.wait_for_selector(banner)
            text = page.inner_text(banner)
            assert "SOS" in text and "Wu Yingqing" in text and "Reactor unit R-100" in text
            page.wait_for_selector(marker)
        viewer.page.wait_for_function(
            "() => Number(document.querySelector('#sound').dataset.beeps || 0) >= 2"
        )
        assert viewer.page.locator(f"{banner} .person-ack").count() == 0  # a viewer cannot
        responder.page.click(f"{banner} .person-ack")
        for page in (viewer.page, responder.page):
            page.wait_for_selector(banner, state="detached")
            page.wait_for_selector(marker, state="detached")
        responder.page.wait_for_function(
            "() => document.querySelector('#sound').dataset.playing === 'false'"
        )
        events = httpx.get(f"{server.base}{BASE}/events", headers=auth).json()["events"]
        [ack] = [e for e in events if e["type"] == "person.alarm_acknowledged"]
        assert ack["data"]["person_id"] == WORKER and ack["data"]["by"] == RESPONDER
        assert viewer.errors == [] and responder.errors == []
    finally:
        viewer.page.context.close()
        responder.page.context.close()
