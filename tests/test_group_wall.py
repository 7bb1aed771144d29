"""The group wall in a real browser (Debian's Chromium), 1920x1080, against a real server of 20
sites: incidents activated on two and alarms raised on two through the API. Every site has its
tile, the incidents' tiles are marked with their level, Chinese works, a tile opens that site's
map wall, nothing is asked of another server. Leaves a screenshot in docs/img/group-wall.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from command.auth import Role
from command.routes.sites import SITE_EXAMPLE
from gis.sites import create_site
from gis.storage.db import Database, make_engine
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, TEST_PASSWORD, site_database
from tests.live_server import LiveServer
from tests.test_browser import WAIT_MS, Watched, chromium
from tests.test_group_overview import (
    DETECTORS,
    PLANT,
    activation_on,
    load_plant,
    load_runnable_plant,
)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "img"
COMMANDER = "group-chief"
WARNINGS = "plant-d"  # detectors only: one in warning
#: The other works of the invented group, calm (a boundary, no layers).
CALM = [
    ("jinshan-polyols", "Jinshan polyols works"),
    ("pinghu-resins", "Pinghu resins plant"),
    ("zhapu-terminal", "Zhapu liquid terminal"),
    ("haiyan-silicones", "Haiyan silicones"),
    ("cixi-coatings", "Cixi coatings works"),
    ("ningbo-aromatics", "Ningbo aromatics"),
    ("shangyu-fluoro", "Shangyu fluorochemicals"),
    ("jiaxing-pta", "Jiaxing PTA plant"),
    ("tongxiang-fibres", "Tongxiang fibres"),
    ("haining-films", "Haining films works"),
    ("cao-e-pigments", "Cao'e pigments"),
    ("beilun-gases", "Beilun industrial gases"),
    ("zhenhai-cracker", "Zhenhai cracker (east)"),
    ("daishan-tanks", "Daishan tank farm"),
    ("xiaoshan-agro", "Xiaoshan agrochemicals"),
    ("linping-pharma", "Linping pharma intermediates"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("group")
    url = site_database(folder / "g.db", {COMMANDER: Role.COMMANDER})
    engine = make_engine(url)
    try:
        db = Database(engine)
        plant = load_runnable_plant(db, folder)
        detectors = load_plant(db, folder, DETECTORS, (121.10, 30.60), {"sensors", "people"})
        load_plant(db, folder, WARNINGS, (121.20, 30.50), {"sensors"})
        with db.write() as session:
            for site_id, name in CALM:
                create_site(session, {**SITE_EXAMPLE, "id": site_id, "name": name}, actor="t")
    finally:
        engine.dispose()
    with LiveServer(url) as server:
        yield server, {"plant": plant, "detectors": detectors}


def _sensor(layers: dict[str, Any], substance: str) -> tuple[str, dict[str, Any]]:
    for feature in layers["sensors"]["features"]:
        if feature["properties"].get("substance") == substance:
            return feature["id"], feature["properties"]
    raise AssertionError(f"no {substance} detector")


def test_the_group_wall_shows_every_site_and_marks_the_incidents(
    browser: Browser, served: tuple[LiveServer, dict[str, Any]]
) -> None:
    server, layers = served
    login = httpx.post(
        f"{server.base}/api/auth/login", json={"username": COMMANDER, "password": TEST_PASSWORD}
    )
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(f"{server.base}{path}", json=body, headers=auth, timeout=60)
        assert answer.status_code in (200, 201), answer.text
        result: dict[str, Any] = answer.json()
        return result

    post(f"/api/sites/{DEMO_ID}/incidents", CHLORINE_ACTIVATION)
    post(f"/api/sites/{PLANT}/incidents", {**activation_on(layers["plant"]), "level": "L3"})
    chlorine, props = _sensor(layers["detectors"], "Cl2")
    post(
        f"/api/sites/{DETECTORS}/readings",
        {"readings": [{"sensor_id": chlorine, "value": props["high_alarm"] * 2}]},
    )
    person = layers["detectors"]["people"]["features"][0]["id"]
    sos = {"device_id": "band-1", "kind": "sos", "person_id": person}
    post(f"/api/sites/{DETECTORS}/device-events", {"events": [sos]})
    h2s, props = _sensor(layers["detectors"], "H2S")  # the same layout: the same ids
    post(
        f"/api/sites/{WARNINGS}/readings",
        {"readings": [{"sensor_id": h2s, "value": props["warning"] + 0.5}]},
    )

    context = browser.new_context(
        viewport={"width": 1920, "height": 1080}, locale="en-GB", reduced_motion="reduce"
    )
    context.add_init_script(
        f"sessionStorage.setItem('rallypoint.token', {token!r});"
        "if (!localStorage.getItem('rallypoint.language'))"
        " localStorage.setItem('rallypoint.language', 'en');"
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    seen = Watched(page)
    try:
        page.goto(f"{server.base}/static/group.html")
        page.wait_for_selector("body[data-ready='true']")
        tiles = page.locator("#tiles > li")
        assert tiles.count() == 20
        states = {t.get_attribute("data-site"): t.get_attribute("data-status") for t in tiles.all()}
        assert states[DEMO_ID] == states[PLANT] == "incident"
        assert states[DETECTORS] == states[WARNINGS] == "alarm"
        assert {states[site_id] for site_id, _ in CALM} == {"calm"}
        # Incidents first, then alarms, then the calm sites.
        order = [str(state) for state in states.values()]
        assert order == sorted(order, key=["incident", "alarm", "calm"].index), order
        demo = page.locator(f"li[data-site='{DEMO_ID}']")
        assert demo.locator(".badge").inner_text() == "Incident"
        assert "Chlorine leak · L2" in demo.locator(".incident-line").inner_text()
        plant = page.locator(f"li[data-site='{PLANT}']")
        assert "L3" in plant.locator(".incident-line").inner_text()
        detectors = page.locator(f"li[data-site='{DETECTORS}'] .body").inner_text()
        assert "Alarms waiting: 1 · highest: high alarm" in detectors
        assert "SOS: 1" in detectors and "Man down" not in detectors
        # The incident tiles look different from the calm ones (the colour is the CSS's).
        colour = "el => getComputedStyle(el).borderTopColor"
        calm_tile = page.locator(f"li[data-site='{CALM[0][0]}']")
        assert demo.evaluate(colour) != calm_tile.evaluate(colour)
        page.screenshot(path=str(IMAGES / "group-wall.png"))

        # In Chinese, and remembered.
        page.select_option("#language", "zh-CN")
        assert page.locator("[data-g='title']").inner_text() == "集团总览"
        assert demo.locator(".badge").inner_text() == "事件处置中"
        assert "氯气泄漏" in demo.locator(".incident-line").inner_text()
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        assert page.locator("html").get_attribute("lang") == "zh-CN"

        # It follows the overview: plant-d's rise to high alarm shows within a poll or two.
        rise = {"readings": [{"sensor_id": h2s, "value": props["high_alarm"] * 2}]}
        post(f"/api/sites/{WARNINGS}/readings", rise)
        page.wait_for_function(
            f"() => document.querySelector(\"li[data-site='{WARNINGS}'] .alarms\")"
            ".className.includes('tier-high_alarm')"
        )

        # A tile opens that site's map wall.
        page.locator(f"li[data-site='{PLANT}'] a.open").click()
        page.wait_for_function(
            f"() => document.getElementById('site-name')?.textContent === 'Works {PLANT}'"
        )
        # And the map wall's bar leads back to the group wall.
        page.click("#group-open")
        page.wait_for_selector("body[data-ready='true']")
        assert page.locator("#tiles > li").count() == 20

        assert seen.errors == []
        outside = [
            u
            for u in seen.urls
            if not u.startswith((server.base, "ws://127.0.0.1", "blob:", "data:"))
        ]
        assert outside == []
    finally:
        context.close()
