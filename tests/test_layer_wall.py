"""The map wall follows ``layer.changed`` without a reload, in a real headless Chromium.

A zone is added, moved and deleted while a viewer's wall is open: through the layers API (a
server on SQLite), and with ``psql`` in the PostGIS tables as QGIS would (a server on PostGIS,
its triggers and listener). Each time the wall draws the zone where the server now has it, the
page is never loaded again, the zones layer is never asked for again, and no console error
shows. A network edge deleted through the API leaves the map too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page
from shapely import affinity
from shapely.geometry import Polygon, box, shape
from shapely.ops import unary_union

from tests.conftest import DEMO_ID, site_database
from tests.live_server import LiveServer
from tests.test_browser import WAIT_MS, Watched, open_wall
from tests.test_layer_feed import (
    PLANNER,
    USERS,
    VIEWER,
    bearer,
    login,
    postgis_server,  # noqa: F401 (a fixture)
    postgis_url,  # noqa: F401 (a fixture)
    psql,
)
from tests.test_wall import browser, new_page  # noqa: F401 (browser is a fixture)

BASE = f"/api/sites/{DEMO_ID}"
ZONE = "Z-live-1"
SIDE_DEG = 0.00005  # about 5 m
SHIFT_DEG = 0.0001  # about 10 m east


@dataclass
class Editing:
    """A running server and how a zone is added, moved and deleted on it."""

    server: LiveServer
    create: Callable[[Polygon], None]
    move: Callable[[float], None]
    delete: Callable[[], None]


def free_square(server: LiveServer, token: str) -> Polygon:
    """A small square inside the site, clear of every zone by a margin, with room to move east."""
    site = httpx.get(f"{server.base}{BASE}", headers=bearer(token)).json()
    zones = httpx.get(f"{server.base}{BASE}/layers/zones", headers=bearer(token)).json()
    taken = unary_union([shape(f["geometry"]) for f in zones["features"]]).buffer(0.0001)
    inside = shape(site["boundary"]).buffer(-0.0001)
    x0, y0, x1, y1 = inside.bounds
    steps = 80
    for i in range(steps):
        for j in range(steps):
            x, y = x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * j / steps
            square = box(x, y, x + SIDE_DEG, y + SIDE_DEG)
            swept = box(x, y, x + SIDE_DEG + SHIFT_DEG, y + SIDE_DEG)
            if inside.contains(swept) and not taken.intersects(swept):
                return square
    raise AssertionError("no free place for a zone on the demo site")


def office(square: Polygon) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": ZONE,
        "geometry": square.__geo_interface__,
        "properties": {"name": "Site office (temporary)", "kind": "office", "capacity": 4},
    }


@pytest.fixture(scope="module")
def sqlite_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    url = site_database(tmp_path_factory.mktemp("layer-wall") / "wall.db", USERS)
    with LiveServer(url, heartbeat_s=1.0) as live:
        yield live


def through_the_api(server: LiveServer) -> Editing:
    auth = bearer(login(server, PLANNER))
    url = f"{server.base}{BASE}/layers/zones"
    placed: dict[str, Polygon] = {}

    def create(square: Polygon) -> None:
        answer = httpx.post(url, json=office(square), headers=auth)
        assert answer.status_code == 201, answer.text
        placed["zone"] = square

    def move(dx: float) -> None:
        moved = affinity.translate(placed["zone"], xoff=dx)
        answer = httpx.patch(
            f"{url}/features/{ZONE}",
            json={"geometry": moved.__geo_interface__},
            headers={**auth, "If-Match": '"1"'},
        )
        assert answer.status_code == 200, answer.text

    def delete() -> None:
        answer = httpx.delete(f"{url}/features/{ZONE}", headers={**auth, "If-Match": '"2"'})
        assert answer.status_code == 204, answer.text

    return Editing(server, create, move, delete)


def in_the_database(server: LiveServer, url: str) -> Editing:
    def create(square: Polygon) -> None:
        psql(
            url,
            "INSERT INTO zones (site_id, id, name, kind, capacity, geom) VALUES "
            f"('{DEMO_ID}', '{ZONE}', 'Site office (temporary)', 'office', 4, "
            f"ST_GeomFromText('{square.wkt}', 4326))",
        )

    def move(dx: float) -> None:
        psql(url, f"UPDATE zones SET geom = ST_Translate(geom, {dx}, 0) WHERE id = '{ZONE}'")

    def delete() -> None:
        psql(url, f"DELETE FROM zones WHERE id = '{ZONE}'")

    return Editing(server, create, move, delete)


@pytest.fixture(params=["api", "psql"])
def editing(request: pytest.FixtureRequest) -> Editing:
    if request.param == "api":
        return through_the_api(request.getfixturevalue("sqlite_site"))
    server, url = request.getfixturevalue("postgis_server")
    return in_the_database(server, url)


def zone_box(page: Page, zone: str) -> dict[str, float] | None:
    found: dict[str, float] | None = page.evaluate(
        """(zone) => {
            const path = document.querySelector(`path.rp-z-${zone}`);
            if (!path) return null;
            const r = path.getBoundingClientRect();
            return {x: r.x, y: r.y, width: r.width, height: r.height};
        }""",
        zone,
    )
    return found


def screen_x(page: Page, lon: float, lat: float) -> float:
    x: float = page.evaluate(
        "([lon, lat]) => { const map = document.getElementById('map').leafletMap;"
        " return map.latLngToContainerPoint([lat, lon]).x; }",
        [lon, lat],
    )
    return x


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:  # noqa: F811 (the imported fixture)
    seen = new_page(browser)
    try:
        yield seen
    finally:
        seen.page.context.close()


def test_the_wall_adds_moves_and_removes_a_zone_without_a_reload(
    editing: Editing, watched: Watched
) -> None:
    page = watched.page
    server = editing.server
    open_wall(page, server, VIEWER)
    page.wait_for_selector("path.rp-zone")
    page.evaluate("window.rpNotReloaded = true")
    square = free_square(server, login(server, VIEWER))
    lon, lat = square.bounds[0], square.bounds[1]
    page.evaluate(
        "([lon, lat]) => document.getElementById('map').leafletMap.setView([lat, lon], 19)",
        [lon, lat],
    )
    zones_read = sum(1 for u in watched.urls if u.split("?")[0].endswith("/layers/zones"))

    editing.create(square)
    page.wait_for_selector(f"path.rp-z-{ZONE}", timeout=WAIT_MS)
    before = zone_box(page, ZONE)
    assert before is not None

    editing.move(SHIFT_DEG)
    expected = screen_x(page, lon + SHIFT_DEG, lat) - screen_x(page, lon, lat)
    page.wait_for_function(
        """([zone, x]) => {
            const path = document.querySelector(`path.rp-z-${zone}`);
            return path && Math.abs(path.getBoundingClientRect().x - x) < 2;
        }""",
        arg=[ZONE, before["x"] + expected],
        timeout=WAIT_MS,
    )
    after = zone_box(page, ZONE)
    assert after is not None
    assert expected > 20  # at zoom 19, 10 m are many pixels: the move is no rounding
    assert abs(after["y"] - before["y"]) < 2 and abs(after["width"] - before["width"]) < 2

    editing.delete()
    page.wait_for_selector(f"path.rp-z-{ZONE}", state="detached", timeout=WAIT_MS)

    assert page.evaluate("window.rpNotReloaded") is True  # the page was never loaded again
    again = sum(1 for u in watched.urls if u.split("?")[0].endswith("/layers/zones"))
    assert again == zones_read  # nor the zones layer read again: the events carried the zone
    assert page.locator("path.rp-zone").count() > 40  # the other zones are all still there
    assert watched.errors == []


def test_a_deleted_network_edge_leaves_the_wall(
    sqlite_site: LiveServer, watched: Watched, tmp_path: Path
) -> None:
    page = watched.page
    open_wall(page, sqlite_site, VIEWER)
    edge = "E-00001"
    page.wait_for_selector(f"path.rp-e-{edge}", state="attached")
    auth = bearer(login(sqlite_site, PLANNER))
    current = httpx.get(f"{sqlite_site.base}{BASE}/layers/network/features/{edge}", headers=auth)
    version = current.json()["properties"]["version"]
    answer = httpx.delete(
        f"{sqlite_site.base}{BASE}/layers/network/features/{edge}",
        headers={**auth, "If-Match": f'"{version}"'},
    )
    assert answer.status_code in (200, 204), answer.text
    page.wait_for_selector(f"path.rp-e-{edge}", state="detached", timeout=WAIT_MS)
    assert page.locator("path.rp-network").count() > 1000
    assert watched.errors == []
