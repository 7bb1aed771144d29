"""The planner's layer editor on the wall (frontend/editor.js, issue 15), in a real headless
Chromium against the real server: drawing, reshaping, moving, attributes through the form
generated from the layer's schema, deleting; a refusal in the server's words on the feature;
no editor for commanders and viewers; a conflict and a merge with another planner's edit made
through the API meanwhile, told live on the feature.

What the page saved is read back from the database itself (SQL on the tables, the geometry
decoded from WKB), not through the server. Each test runs on a server of its own; the drawing
and refusal tests also on PostGIS, with a database of their own."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page
from shapely.geometry import Point, Polygon, shape
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from command.auth import Role
from command.routes import wall
from tests.conftest import (
    DEMO_ID,
    POSTGIS_URL_ENV,
    _admin,
    _drop_database,
    _load_demo,
    site_database,
)
from tests.live_server import LiveServer
from tests.test_accessibility import AXE, axe_violations, serious
from tests.test_browser import (
    Watched,
    browser,  # noqa: F401 (fixture)
    metres_apart,
    on_screen,
    open_wall,
    require,
    sign_in,
)
from tests.test_wall import new_page

PLANNER = "editor-planner"
ALICE = "editor-alice"  # another planner, editing through the API meanwhile
COMMANDER = "editor-commander"
VIEWER = "editor-viewer"
USERS = {PLANNER: Role.PLANNER, ALICE: Role.PLANNER, COMMANDER: Role.COMMANDER, VIEWER: Role.VIEWER}
BASE = f"/api/sites/{DEMO_ID}/layers"
MUSTER = "Z-004"  # muster point N1 of the demo site (capacity 500)
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "img"
GEOMAN = wall.geoman_dir(wall.FRONTEND) / "dist" / "leaflet-geoman.js"
NO_GEOMAN = "'npm ci --prefix frontend' installs it"


# -- servers ---------------------------------------------------------------------------------------


def _postgis_database(name: str) -> str:
    """A PostGIS database of this test's own (the worker's is rolled back after each test; a
    live server commits), with the demo site and the users; its URL."""
    shared = os.environ[POSTGIS_URL_ENV]
    url = make_url(shared).set(database=name).render_as_string(hide_password=False)
    _drop_database(shared, name)
    with _admin(shared) as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    _load_demo(url, USERS)
    return url


@pytest.fixture(params=["sqlite"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A server on a database of its own holding the demo site and the users; tests that ask
    for ``backend`` run on PostGIS too."""
    require(GEOMAN.is_file(), "Leaflet-Geoman is not installed", NO_GEOMAN)
    backend = getattr(request, "param", "sqlite")
    if backend == "postgis":
        if not os.environ.get(POSTGIS_URL_ENV):
            pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset); 'make test' provides one")
        name = f"{make_url(os.environ[POSTGIS_URL_ENV]).database}_editor"
        url = _postgis_database(name)
    else:
        url = site_database(tmp_path / "editor.db", USERS)
    try:
        with LiveServer(url, heartbeat_s=1.0) as live:
            yield live
    finally:
        if backend == "postgis":
            _drop_database(os.environ[POSTGIS_URL_ENV], name)


BOTH = pytest.mark.parametrize("server", ["sqlite", "postgis"], indirect=True)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:  # noqa: F811
    seen = new_page(browser)  # 1920 x 1080, the wall's size
    try:
        yield seen
    finally:
        seen.page.context.close()


# -- reading what was stored, from the database itself ---------------------------------------------


def stored(server: LiveServer, table: str, feature_id: str) -> dict[str, Any] | None:
    """A feature's row as the database holds it: its columns, the geometry decoded."""
    url = server.settings.database_url
    engine = create_engine(url)
    geometry = "ST_AsBinary(geom)" if url.startswith("postgresql") else "geom"
    try:
        with engine.connect() as connection:
            row = (
                connection.execute(
                    text(
                        f"SELECT *, {geometry} AS wkb FROM {table} WHERE site_id = :s AND id = :i"
                    ),
                    {"s": DEMO_ID, "i": feature_id},
                )
                .mappings()
                .first()
            )
    finally:
        engine.dispose()
    if row is None:
        return None
    out = dict(row)
    out["geom"] = shapely.from_wkb(bytes(out.pop("wkb")))
    return out


def logged(server: LiveServer, layer: str, feature_id: str) -> list[tuple[str, int, str]]:
    """The change log's rows of a feature: (action, version, actor), oldest first."""
    engine = create_engine(server.settings.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT action, version, actor FROM changes WHERE site_id = :s AND "
                    "layer = :l AND feature_id = :i ORDER BY seq"
                ),
                {"s": DEMO_ID, "l": layer, "i": feature_id},
            ).all()
    finally:
        engine.dispose()
    return [(str(a), int(v), str(who)) for a, v, who in rows]


# -- driving the editor ----------------------------------------------------------------------------


def start_editing(page: Page, server: LiveServer) -> None:
    open_wall(page, server, PLANNER)
    page.click("#edit-toggle")
    page.wait_for_selector("#editor .ed-tools button[data-new='zone']")
    page.wait_for_selector(f".rp-edit-feature[data-feature='zones/{MUSTER}']", state="attached")


def feature_selector(key: str) -> str:
    return f"#map .rp-edit-feature[data-feature='{key}']"


def frame(page: Page, lonlat: tuple[float, float] | list[float], zoom: int = 19) -> None:
    """Centre the map on a point, zoomed in (nothing handed back: Playwright would copy the
    whole map object, its thousands of layers, for tens of seconds)."""
    page.evaluate(
        "([lon, lat, zoom]) => { document.querySelector('#map').leafletMap"
        ".setView([lat, lon], zoom, { animate: false }); }",
        [lonlat[0], lonlat[1], zoom],
    )


def click_feature(page: Page, key: str) -> None:
    """Click a feature where the page shows it (the middle of its outline or icon)."""
    handle = page.locator(feature_selector(key))
    found = handle.bounding_box()
    assert found is not None, key
    page.mouse.click(found["x"] + found["width"] / 2, found["y"] + found["height"] / 2)
    page.wait_for_selector(f".ed-form[data-feature='{key}']")


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
    page.mouse.move(*end, steps=4)
    page.mouse.up()


def lonlat_at(page: Page, at: tuple[float, float]) -> tuple[float, float]:
    """The lon/lat under a point of the page, by Leaflet's own projection."""
    lon, lat = page.evaluate(
        """([x, y]) => {
            const box = document.querySelector('#map');
            const r = box.getBoundingClientRect();
            const p = box.leafletMap.containerPointToLatLng([x - r.left, y - r.top]);
            return [p.lng, p.lat];
        }""",
        [at[0], at[1]],
    )
    return float(lon), float(lat)


def save(page: Page) -> None:
    page.click(".ed-form .ed-save")


def saved_state(page: Page) -> None:
    page.wait_for_selector(".ed-form .ed-state[data-state='clean']")


def features(server: LiveServer, layer: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.base}{BASE}/{layer}", headers=auth)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["features"]
    return found


def empty_spot(server: LiveServer, auth: dict[str, str]) -> Polygon:
    """A square of about 20 m inside the site, clear of every zone, resource and sensor by
    some metres: where a new zone can be drawn without touching anything."""
    sites = httpx.get(f"{server.base}/api/sites", headers=auth).json()["sites"]
    bbox = next(s for s in sites if s["id"] == DEMO_ID)["bbox"]
    taken = shapely.union_all(
        [shape(f["geometry"]) for f in features(server, "zones", auth)]
        + [
            shape(f["geometry"]).buffer(0.00005)
            for layer in ("resources", "sensors")
            for f in features(server, layer, auth)
        ]
    )
    west, south, east, north = bbox
    size = 0.00015  # about 14 m east-west, 17 m north-south here
    margin = 0.0004  # and clear of the fence
    xs, ys = np.meshgrid(
        np.arange(west + margin, east - margin - size, 0.00005),
        np.arange(south + margin, north - margin - size, 0.00005),
    )
    squares = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + size, ys.ravel() + size)
    clear = ~shapely.intersects(taken.buffer(0.00003), squares)
    if clear.any():
        found: Polygon = squares[np.flatnonzero(clear)[0]]
        return found
    raise AssertionError("no empty spot on the demo site")


# -- the plugin, served from here ------------------------------------------------------------------


def test_the_editing_plugin_is_served_from_here_with_its_licence() -> None:
    require(GEOMAN.is_file(), "Leaflet-Geoman is not installed", NO_GEOMAN)
    package = json.loads((GEOMAN.parents[1] / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((wall.FRONTEND / "package-lock.json").read_text(encoding="utf-8"))
    pinned = lock["packages"]["node_modules/@geoman-io/leaflet-geoman-free"]
    assert package["version"] == pinned["version"] and package["license"] == "MIT"
    # It works with Leaflet 1.2 and later, and the wall's Leaflet is 1.9.
    assert package["peerDependencies"]["leaflet"] == "^1.2.0"
    assert lock["packages"]["node_modules/leaflet"]["version"].startswith("1.9.")
    app = FastAPI()
    wall.mount(app)
    with TestClient(app) as client:
        script = client.get("/vendor/geoman/dist/leaflet-geoman.js")
        assert script.status_code == 200 and "L.PM" in script.text
        assert client.get("/vendor/geoman/dist/leaflet-geoman.css").status_code == 200
        licence = client.get("/vendor/geoman/LICENSE")
        assert licence.status_code == 200 and licence.text.startswith("MIT License")
    # Nothing of the page names it but the editor, which loads it for planners only.
    users = [p.name for p in wall.FRONTEND.glob("*.js") if "/vendor/geoman/" in p.read_text()]
    assert users == ["editor.js"]


# -- the layers API's schema, as the form reads it -------------------------------------------------


def test_the_layers_describe_each_field_for_a_form(server: LiveServer) -> None:
    answer = httpx.get(f"{server.base}{BASE}", headers=sign_in(server, PLANNER))
    assert answer.status_code == 200, answer.text
    described = {layer["name"]: layer for layer in answer.json()["layers"]}
    zones = described["zones"]
    assert zones["required"] == ["name", "kind"]
    # Enumerations written out on their field (no $ref a form would have to chase).
    assert "muster_point" in zones["fields"]["kind"]["enum"]
    grades = next(v for v in zones["fields"]["risk_grade"]["anyOf"] if v.get("enum"))
    assert grades["enum"] == ["red", "orange", "yellow", "blue"]
    capacity = next(v for v in zones["fields"]["capacity"]["anyOf"] if v.get("type"))
    assert capacity["type"] == "integer" and capacity["minimum"] == 0
    assert described["resources"]["fields"]["status"]["enum"] == [
        "available",
        "assigned",
        "out_of_service",
    ]
    assert "$ref" not in answer.text


# -- drawing, reshaping, moving, attributes, deleting ----------------------------------------------


@BOTH
def test_a_planner_draws_a_zone_and_saves_it(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    spot = empty_spot(server, sign_in(server, PLANNER))
    start_editing(page, server)
    frame(page, (spot.centroid.x, spot.centroid.y))
    page.click("#editor button[data-new='zone']")
    corners = list(spot.exterior.coords)[:4]
    for corner in corners:
        page.mouse.click(*on_screen(page, corner))
    page.mouse.click(*on_screen(page, corners[0]))  # back on the first corner closes it
    page.wait_for_selector(".ed-form[data-feature^='zones/new-']")
    assert page.inner_text("#ed-feature-title") == "New: Zone"
    # The form, from the schema: the kinds as a select, the required fields marked.
    kinds = page.eval_on_selector_all("#ed-kind option", "options => options.map(o => o.value)")
    assert kinds[0] == "" and "muster_point" in kinds and "tank_farm" in kinds
    assert page.get_attribute("#ed-name", "aria-required") == "true"
    assert page.get_attribute("#ed-capacity", "type") == "number"
    page.fill("#ed-name", "Drum store 7")
    page.select_option("#ed-kind", "storage")
    page.select_option("#ed-risk_grade", "orange")
    page.fill("#ed-capacity", "4")
    save(page)
    saved_state(page)
    key = page.get_attribute(".ed-form", "data-feature")
    assert key and key.startswith("zones/") and "new-" not in key
    zone_id = key.split("/", 1)[1]

    row = stored(server, "zones", zone_id)
    assert row is not None
    assert (row["name"], row["kind"], row["risk_grade"], row["capacity"]) == (
        "Drum store 7",
        "storage",
        "orange",
        4,
    )
    assert row["version"] == 1 and row["created_by"] == PLANNER
    # The corners clicked, as stored (Leaflet's projection of the clicks, to the pixel).
    outline = list(row["geom"].exterior.coords)
    assert len(outline) == 5
    for corner in corners:
        assert min(metres_apart(list(corner), list(p)) for p in outline) < 0.5, corner
    assert logged(server, "zones", zone_id) == [("create", 1, PLANNER)]

    # Out of edit mode, the wall draws the new zone as it draws every zone.
    page.click("#edit-toggle")
    page.wait_for_selector(f"#map path.rp-z-{zone_id}", state="attached")
    assert page.locator(".rp-edit-feature").count() == 0
    assert watched.errors == []
    assert watched.outside() == []


def test_a_planner_reshapes_a_muster_point(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    before = stored(server, "zones", MUSTER)
    assert before is not None
    start_editing(page, server)
    frame(page, (before["geom"].centroid.x, before["geom"].centroid.y), 18)
    click_feature(page, f"zones/{MUSTER}")
    # Its corners are handles now; the north-east one is dragged further out.
    corner = max(before["geom"].exterior.coords[:-1], key=lambda c: c[0] + c[1])
    x, y = on_screen(page, corner)
    page.wait_for_selector(".marker-icon:not(.marker-icon-middle)")
    drag(page, (x, y), (x + 40, y - 30))
    page.wait_for_selector(".ed-form .ed-state[data-state='unsaved']")
    assert "the geometry" in page.inner_text(".ed-form .ed-state")
    assert page.get_attribute(feature_selector(f"zones/{MUSTER}"), "data-state") == "unsaved"
    target = lonlat_at(page, (x + 40, y - 30))
    save(page)
    saved_state(page)

    after = stored(server, "zones", MUSTER)
    assert after is not None and after["version"] == 2 and after["updated_by"] == PLANNER
    coords = after["geom"].exterior.coords[:-1]
    assert len(coords) == 4
    assert min(metres_apart(list(target), list(c)) for c in coords) < 0.5
    moved = [c for c in before["geom"].exterior.coords[:-1] if c not in coords]
    assert moved == [corner]  # the other corners stay where they were
    assert after["name"] == before["name"] and after["capacity"] == 500
    assert watched.errors == []


def test_a_planner_moves_a_resource_by_dragging(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    auth = sign_in(server, PLANNER)
    resource = features(server, "resources", auth)[10]
    rid = resource["id"]
    start = resource["geometry"]["coordinates"]
    start_editing(page, server)
    frame(page, start, 19)
    x, y = on_screen(page, start)
    drag(page, (x, y), (x + 60, y + 45))
    page.wait_for_selector(
        f".ed-form[data-feature='resources/{rid}'] .ed-state[data-state='unsaved']"
    )
    target = lonlat_at(page, (x + 60, y + 45))
    # The position inputs follow the drag.
    assert abs(float(page.input_value("#ed-lon")) - target[0]) < 2e-6
    save(page)
    saved_state(page)

    row = stored(server, "resources", rid)
    assert row is not None and row["version"] == 2
    point: Point = row["geom"]
    assert metres_apart([point.x, point.y], list(target)) < 0.5
    assert metres_apart([point.x, point.y], start) > 5
    assert (row["kind"], row["quantity"], row["status"]) == (
        resource["properties"]["kind"],
        resource["properties"]["quantity"],
        resource["properties"]["status"],
    )
    assert watched.errors == []


def test_a_planner_edits_attributes_in_the_generated_form(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    auth = sign_in(server, PLANNER)
    sensor = next(f for f in features(server, "sensors", auth) if f["properties"]["kind"] == "gas")
    sid = sensor["id"]
    start_editing(page, server)
    page.fill("#editor-find", sid)
    page.click(".ed-find button")
    page.wait_for_selector(f".ed-form[data-feature='sensors/{sid}']")
    # The form is the layer's schema: numbers as number inputs, enumerations as selects.
    assert page.get_attribute("#ed-alarm", "type") == "number"
    assert page.eval_on_selector_all("#ed-kind option", "o => o.map(x => x.value)") == [
        "",
        "gas",
        "wind",
        "temperature",
    ]
    assert float(page.input_value("#ed-alarm")) == sensor["properties"]["alarm"]
    page.fill("#ed-name", "Cl2 detector, east wall")
    page.fill("#ed-high_alarm", "")  # none: the default
    page.fill("#ed-alarm", "12.5")
    assert "Name" in page.inner_text(".ed-form .ed-state")
    save(page)
    saved_state(page)

    row = stored(server, "sensors", sid)
    assert row is not None
    assert (row["name"], row["alarm"], row["high_alarm"], row["version"]) == (
        "Cl2 detector, east wall",
        12.5,
        None,
        2,
    )
    assert row["substance"] == sensor["properties"]["substance"]  # untouched
    # And a resource's status, from its select.
    resource = features(server, "resources", auth)[0]
    page.fill("#editor-find", resource["id"])
    page.click(".ed-find button")
    page.wait_for_selector(f".ed-form[data-feature='resources/{resource['id']}']")
    page.select_option("#ed-status", "out_of_service")
    page.fill("#ed-quantity", "3")
    save(page)
    saved_state(page)
    row = stored(server, "resources", resource["id"])
    assert row is not None and (row["status"], row["quantity"]) == ("out_of_service", 3)
    assert watched.errors == []


def test_a_planner_deletes_a_feature(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    auth = sign_in(server, PLANNER)
    resource = features(server, "resources", auth)[5]
    rid = resource["id"]
    start_editing(page, server)
    frame(page, resource["geometry"]["coordinates"], 19)
    click_feature(page, f"resources/{rid}")
    page.click(".ed-form .ed-delete")
    page.click(".ed-confirm button[data-confirm='delete']")
    page.wait_for_selector(feature_selector(f"resources/{rid}"), state="detached")
    assert f"Deleted {rid}" in page.inner_text("#editor .ed-message")
    assert stored(server, "resources", rid) is None
    assert logged(server, "resources", rid)[-1] == ("delete", 1, PLANNER)
    assert watched.errors == []


# -- refusals, on the feature ----------------------------------------------------------------------


@BOTH
def test_a_refused_edit_shows_the_servers_words_on_the_feature_and_changes_nothing(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    before = stored(server, "zones", MUSTER)
    assert before is not None
    # What the server says to the same edit, asked directly (refused: nothing changes).
    direct = httpx.patch(
        f"{server.base}{BASE}/zones/features/{MUSTER}",
        json={"properties": {"capacity": -1, "version": 1}},
        headers=sign_in(server, ALICE),
    )
    assert direct.status_code == 422, direct.text
    problem = direct.json()

    start_editing(page, server)
    frame(page, (before["geom"].centroid.x, before["geom"].centroid.y), 18)
    click_feature(page, f"zones/{MUSTER}")
    page.fill("#ed-capacity", "-1")
    save(page)
    popup = page.wait_for_selector(".rp-edit-popup-refused .rp-edit-notice")
    assert popup is not None
    said = popup.inner_text()
    assert "422" in said and problem["detail"] in said
    for error in problem["errors"]:
        assert f"{error['field']}: {error['reason']}" in said
    # On the feature: the popup is anchored to the zone, which stays edited and marked.
    spot = popup.bounding_box()
    zone = page.locator(feature_selector(f"zones/{MUSTER}")).bounding_box()
    assert spot is not None and zone is not None
    assert zone["x"] <= spot["x"] + spot["width"] / 2 <= zone["x"] + zone["width"]
    assert page.get_attribute(feature_selector(f"zones/{MUSTER}"), "data-state") == "refused"
    assert page.input_value("#ed-capacity") == "-1"
    assert page.get_attribute("#ed-capacity", "aria-invalid") == "true"
    reason = next(e["reason"] for e in problem["errors"] if e["field"] == "properties.capacity")
    assert page.inner_text("#ed-capacity-error") == reason

    # The 1920 x 1080 wall with the form open and the refusal shown, for the docs.
    IMAGES.mkdir(parents=True, exist_ok=True)
    if server.settings.database_url.startswith("sqlite"):
        page.screenshot(path=str(IMAGES / "editor-refusal.png"))
    if AXE.is_file():
        found = serious(axe_violations(page))
        assert not found, "\n".join(found)

    after = stored(server, "zones", MUSTER)
    assert after is not None and (after["version"], after["capacity"]) == (1, 500)
    assert logged(server, "zones", MUSTER) == [("create", 1, "test-setup")]

    # Cancel: back to the server's version, nothing marked.
    page.click(".rp-edit-popup .rp-notice-actions button[data-action='revert']")
    page.wait_for_selector(".rp-edit-popup", state="detached")
    saved_state(page)
    assert page.input_value("#ed-capacity") == "500"
    assert page.get_attribute(feature_selector(f"zones/{MUSTER}"), "data-state") == "clean"
    assert watched.unexpected_errors(422) == []


def test_a_point_typed_outside_the_site_is_refused_on_the_point(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    auth = sign_in(server, PLANNER)
    resource = features(server, "resources", auth)[3]
    rid = resource["id"]
    start_editing(page, server)
    page.fill("#editor-find", rid)
    page.press("#editor-find", "Enter")  # from the keyboard
    page.wait_for_selector(f".ed-form[data-feature='resources/{rid}']")
    page.fill("#ed-lon", "121.40")  # some 5 km east, outside the fence
    page.press("#ed-lon", "Tab")
    page.wait_for_selector(".ed-form .ed-state[data-state='unsaved']")
    page.press(".ed-form .ed-save", "Enter")
    popup = page.wait_for_selector(".rp-edit-popup-refused .rp-edit-notice")
    assert popup is not None and "geometry lies outside the site boundary" in popup.inner_text()
    assert "outside the site boundary" in page.inner_text("#ed-geometry-error")
    row = stored(server, "resources", rid)
    assert row is not None and row["version"] == 1
    assert list(row["geom"].coords[0]) == resource["geometry"]["coordinates"]
    assert watched.unexpected_errors(422) == []


# -- who gets the editor ---------------------------------------------------------------------------


@pytest.mark.parametrize("username", [COMMANDER, VIEWER])
def test_commanders_and_viewers_get_no_edit_controls(
    server: LiveServer, watched: Watched, username: str
) -> None:
    page = watched.page
    open_wall(page, server, username)
    page.wait_for_selector("#map path.rp-muster", state="attached")
    assert page.locator("#edit-toggle").count() == 0
    assert page.locator("#editor").count() == 0
    # The editing plugin is not even loaded: no handle can appear by accident.
    assert not [u for u in watched.urls if "/vendor/geoman/" in u]
    assert page.evaluate("() => window.L === undefined")
    assert page.evaluate("() => document.querySelector('#map').leafletMap.pm === undefined")
    assert page.locator(".marker-icon, .leaflet-pm-toolbar, .rp-edit-feature").count() == 0


def test_a_planners_wall_is_as_before_until_edit_mode(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    open_wall(page, server, PLANNER)
    page.wait_for_selector("#edit-toggle[aria-pressed='false']")
    assert page.inner_text("#edit-toggle") == "Edit layers"
    assert page.locator(".marker-icon, .rp-edit-feature").count() == 0
    assert page.locator("#editor").is_hidden()
    page.focus("#edit-toggle")
    page.keyboard.press("Enter")
    page.wait_for_selector("#edit-toggle[aria-pressed='true']")
    page.wait_for_selector(".rp-edit-feature", state="attached")
    assert page.evaluate("() => window.L.PM.optIn") is True  # only the editor's layers
    page.click("#edit-toggle")
    page.wait_for_selector("#edit-toggle[aria-pressed='false']")
    assert page.locator(".marker-icon, .rp-edit-feature").count() == 0
    assert watched.errors == []


# -- conflicts and merges with another planner's edit ----------------------------------------------


def patch(server: LiveServer, who: str, feature: str, properties: dict[str, Any]) -> None:
    answer = httpx.patch(
        f"{server.base}{BASE}/zones/features/{feature}",
        json={"properties": properties},
        headers=sign_in(server, who),
    )
    assert answer.status_code == 200, answer.text


def edit_muster_name(page: Page, server: LiveServer, name: str) -> None:
    start_editing(page, server)
    page.fill("#editor-find", MUSTER)
    page.click(".ed-find button")
    page.wait_for_selector(f".ed-form[data-feature='zones/{MUSTER}']")
    page.fill("#ed-name", name)
    page.wait_for_selector(".ed-form .ed-state[data-state='unsaved']")


def wait_stale(page: Page) -> str:
    """Alice's change reached the wall live: the feature being edited says so, form kept."""
    notice = page.wait_for_selector(".rp-edit-popup-stale .rp-edit-notice")
    assert notice is not None
    return notice.inner_text()


@pytest.mark.parametrize("choice", ["keep-mine", "take-theirs"])
def test_a_conflict_says_who_changed_what_and_the_planner_chooses(
    server: LiveServer, watched: Watched, choice: str
) -> None:
    page = watched.page
    edit_muster_name(page, server, "N1 lawn (planner)")
    patch(server, ALICE, MUSTER, {"name": "N1 lawn (alice)", "version": 1})
    said = wait_stale(page)
    assert ALICE in said and "version 2" in said and "Name" in said
    assert page.input_value("#ed-name") == "N1 lawn (planner)"  # not overwritten

    save(page)
    notice = page.wait_for_selector(".rp-edit-popup-conflict .rp-edit-notice")
    assert notice is not None
    said = notice.inner_text()
    assert "409" in said and ALICE in said
    assert "Name “Muster point N1 (north gate lawn)” → “N1 lawn (alice)”" in said
    assert "You both changed: Name" in said
    assert "version 1" in said and "version 2" in said
    assert page.get_attribute(feature_selector(f"zones/{MUSTER}"), "data-state") == "conflict"
    row = stored(server, "zones", MUSTER)
    assert row is not None and (row["name"], row["version"]) == ("N1 lawn (alice)", 2)

    page.click(f".rp-edit-popup .rp-notice-actions button[data-action='{choice}']")
    saved_state(page)
    row = stored(server, "zones", MUSTER)
    assert row is not None
    if choice == "keep-mine":
        assert (row["name"], row["version"], row["updated_by"]) == ("N1 lawn (planner)", 3, PLANNER)
    else:
        assert (row["name"], row["version"], row["updated_by"]) == ("N1 lawn (alice)", 2, ALICE)
    assert page.input_value("#ed-name") == row["name"]
    assert page.get_attribute(feature_selector(f"zones/{MUSTER}"), "data-state") == "clean"
    assert watched.unexpected_errors(409) == []


@BOTH
def test_edits_of_different_attributes_are_merged_and_the_planner_is_told(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    edit_muster_name(page, server, "N1 lawn (planner)")
    patch(server, ALICE, MUSTER, {"capacity": 650, "version": 1})
    said = wait_stale(page)
    assert ALICE in said and "Capacity" in said

    save(page)
    notice = page.wait_for_selector(".rp-edit-popup-merged .rp-edit-notice")
    assert notice is not None
    said = notice.inner_text()
    assert f"merged with {ALICE}'s change (version 2): Capacity (people)" in said
    assert "Yours kept: Name; now version 3" in said
    row = stored(server, "zones", MUSTER)
    assert row is not None
    assert (row["name"], row["capacity"], row["version"]) == ("N1 lawn (planner)", 650, 3)
    assert page.input_value("#ed-capacity") == "650"  # the form shows what is stored now
    assert watched.errors == []


def test_a_feature_not_being_edited_follows_live_changes(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    start_editing(page, server)
    page.fill("#editor-find", MUSTER)
    page.click(".ed-find button")
    page.wait_for_selector(f".ed-form[data-feature='zones/{MUSTER}']")
    patch(server, ALICE, MUSTER, {"capacity": 480, "version": 1})
    page.wait_for_function("() => document.querySelector('#ed-capacity').value === '480'")
    assert f"Updated by {ALICE}: version 2" in page.inner_text(".ed-form .ed-state")
    assert page.locator(".rp-edit-popup").count() == 0
    assert watched.errors == []
