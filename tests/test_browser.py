"""The map wall in a real headless Chromium, against the real server (uvicorn in a thread).

Chromium is Debian's (``/usr/bin/chromium``, installed by ``scripts/chromium.sh`` on the
``make test`` path), driven by Playwright; Playwright's own browser downloads are never used.
With ``CI=true`` a missing Chromium or Leaflet install fails these tests instead of skipping them.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, WebSocket, sync_playwright
from shapely.geometry import shape
from sqlalchemy import create_engine, select, update

from command.auth import Role
from command.hub import Hub
from command.routes import wall
from gis.storage.tables import EventRow
from tests.conftest import (
    CHLORINE_ACTIVATION,
    DEMO_ID,
    TEST_PASSWORD,
    site_database,
)
from tests.live_server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
LEAFLET = wall.leaflet_dir(wall.FRONTEND) / "leaflet.js"
WAIT_MS = 10_000  # the longest the page may take to show anything asked of it
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
COMMANDER = "wall-commander"
VIEWER = "wall-viewer"
PLANNER = "wall-planner"
RESPONDER = "wall-responder"
NO_LEAFLET = "'make test' installs it, or 'npm ci --prefix frontend'"
NO_CHROMIUM = "'make test' installs it with scripts/chromium.sh"
WIND_STATION = "S-005"  # a wind station of the demo site
CL2_DETECTOR = "S-062"  # a chlorine detector of the demo site (alarm at 1 ppm)


def require(ready: bool, missing: str, remedy: str) -> None:
    """Skip when something is ``missing``; under CI, fail instead: CI runs the browser tests."""
    if ready:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing}: the browser tests must run in CI ({remedy})")
    pytest.skip(f"{missing} ({remedy})")


# The module's server keeps the incidents of earlier tests: each test opens one of its own.
CHLORINE = {**CHLORINE_ACTIVATION, "second_incident": True}


def demo_database(path: Path) -> str:
    """A SQLite file holding the demo site, its plans and a user of each role; its URL."""
    return site_database(
        path,
        {
            COMMANDER: Role.COMMANDER,
            VIEWER: Role.VIEWER,
            PLANNER: Role.PLANNER,
            RESPONDER: Role.RESPONDER,
        },
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on a SQLite file holding the demo site, its plans and a commander."""
    url = demo_database(tmp_path_factory.mktemp("wall") / "wall.db")
    with LiveServer(url, heartbeat_s=1.0) as live:
        yield live


@pytest.fixture
def windless(tmp_path: Path) -> Iterator[LiveServer]:
    """A server just started: no wind station has reported to it yet."""
    with LiveServer(demo_database(tmp_path / "windless.db"), heartbeat_s=1.0) as live:
        yield live


@contextmanager
def chromium(*, kiosk: bool = False) -> Iterator[Browser]:
    """Debian's Chromium, headless, never a downloaded one ('playwright install' needs the
    internet); skipped without it or Leaflet (failed with CI=true). ``kiosk``: started as a
    wall's kiosk is, so that the alarm tone plays without a click."""
    require(LEAFLET.is_file(), "Leaflet is not installed", NO_LEAFLET)
    require(CHROMIUM.is_file(), f"no Chromium at {CHROMIUM}", NO_CHROMIUM)
    args = ["--autoplay-policy=no-user-gesture-required"] if kiosk else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


class Watched:
    """A page, with every request it made, and every console error and uncaught exception."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.sent: list[dict[str, Any]] = []  # what the page sent over its websockets
        self.activations: list[dict[str, Any]] = []  # the bodies it posted to .../incidents
        page.on("request", self._request)
        page.on("websocket", self._websocket)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)
        if request.method == "POST" and urlsplit(request.url).path.endswith("/incidents"):
            self.activations.append(json.loads(request.post_data or "null"))

    def _websocket(self, socket: WebSocket) -> None:
        self.urls.append(socket.url)
        socket.on("framesent", self._sent)

    def _sent(self, payload: str | bytes) -> None:
        self.sent.append(json.loads(payload))

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        """Let the page run until ``ready()`` (checked between Playwright's event dispatches)."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while not ready():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.page.wait_for_timeout(50)

    def watch_status(self) -> None:
        """From now on, record every state the connection badge shows (window.seenStates)."""
        self.page.evaluate(
            """() => {
                const badge = document.querySelector('#status');
                window.seenStates = [];
                new MutationObserver(() => window.seenStates.push(badge.dataset.state))
                    .observe(badge, {attributes: true});
            }"""
        )

    def seen_states(self) -> list[str]:
        states: list[str] = self.page.evaluate("window.seenStates")
        return states

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location})")

    def unexpected_errors(self, *statuses: int) -> list[str]:
        """Console errors, less Chromium's note of each refused request the test caused."""
        refused = tuple(f"status of {status}" for status in statuses)
        return [
            e
            for e in self.errors
            if not ("Failed to load resource" in e and any(r in e for r in refused))
        ]

    def outside(self) -> list[str]:
        """Requests to anywhere but this machine (data: URLs stay in the page)."""
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname not in LOOPBACK
        ]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        yield Watched(page)
    finally:
        context.close()


def sign_in(server: LiveServer, username: str = COMMANDER) -> dict[str, str]:
    login = {"username": username, "password": TEST_PASSWORD}
    answer = httpx.post(f"{server.base}/api/auth/login", json=login)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def layer(server: LiveServer, name: str, auth: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(f"{server.base}/api/sites/{DEMO_ID}/layers/{name}", headers=auth)
    assert answer.status_code == 200, answer.text
    collection: dict[str, Any] = answer.json()
    return collection


def count(page: Page, selector: str) -> int:
    return page.locator(selector).count()


def test_the_wall_follows_an_incident(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{server.base}/")

    # Sign in through the form, then choose the site.
    page.fill("#username", COMMANDER)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-submit")
    page.click(f"#site-list button[data-site='{DEMO_ID}']")
    assert page.evaluate("sessionStorage.getItem('rallypoint.token')")

    # The site's own layers are the basemap: every zone and network line, the muster points.
    auth = sign_in(server)
    layers = {name: layer(server, name, auth)["features"] for name in ("zones", "network")}
    page.wait_for_selector("#status[data-state='live']")
    page.wait_for_function(
        "([zones, lines]) => document.querySelectorAll('#map path.rp-zone').length === zones"
        " && document.querySelectorAll('#map path.rp-network').length === lines",
        arg=[len(layers["zones"]), len(layers["network"])],
    )
    assert count(page, "path.rp-muster") > 0
    assert page.locator("#no-incident").is_visible()

    # A commander activates a plan elsewhere: the wall shows it live.
    answer = httpx.post(f"{server.base}/api/sites/{DEMO_ID}/incidents", json=CHLORINE, headers=auth)
    assert answer.status_code == 201, answer.text
    picture: dict[str, Any] = answer.json()
    incident = picture["incident"]["id"]
    card = f".incident[data-incident='{incident}']"
    page.wait_for_selector(f"{card} li.step")
    for level in (3, 2, 1):
        page.wait_for_selector(f"#map path.rp-threat-{level}", state="attached")
    assert count(page, f"{card} li.step") == len(picture["plan"]["steps"])
    # Everyone with a route is a dot on the people canvas; the trapped are markers of their own.
    people = picture["evacuation"]["people"]
    routed = [p for p in people if p["muster"] is not None]
    page.wait_for_function(
        "n => document.querySelector('canvas.rp-people')?.dataset.people === String(n)",
        arg=len(routed),
    )
    assert routed and count(page, "#map path.rp-person") == len(people) - len(routed)
    assert count(page, "#map path.rp-route") == 1
    nearest = [kind for kind, found in picture["resources"].items() if found]
    assert count(page, "#map path.rp-resource") == len(nearest) > 0
    total = f"{card} .site-total"  # in the people tab
    assert "at muster points" in (page.text_content(total) or "")
    assert not page.locator("#no-incident").is_visible()

    # A step moves: its event updates the panel.
    ready = next(s["id"] for s in picture["plan"]["steps"] if s["status"] == "ready")
    moved = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}/steps/{ready}/acknowledge",
        headers=auth,
    )
    assert moved.status_code == 200, moved.text
    page.wait_for_selector(f"{card} li.step[data-step='{ready}'][data-status='acknowledged']")

    # Positions move the dots and the headcount follows: one person reaches a muster point.
    person = routed[0]["id"]
    headcount_before = page.text_content(total)
    muster = next(f for f in layers["zones"] if f["properties"]["kind"] == "muster_point")
    there = shape(muster["geometry"]).representative_point()
    sent = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/positions",
        json={"positions": [{"person_id": person, "lon": there.x, "lat": there.y}]},
        headers=auth,
    )
    assert sent.status_code == 200, sent.text
    wait_for_dot(page, (there.x, there.y), ARRIVED)  # moved there, and drawn as arrived
    page.click(f"{card} .tab[data-tab='people']")  # the people tab is painted when shown
    page.wait_for_function(
        "([total, before]) => document.querySelector(total).textContent !== before",
        arg=[total, headcount_before],
    )

    # Pings are answered (the server closes a client silent for two heartbeats).
    watched.watch_status()
    pongs = len(watched.sent_of("pong"))
    watched.wait_until(lambda: len(watched.sent_of("pong")) >= pongs + 3, "three pongs")
    assert watched.seen_states() == [] and page.get_attribute("#status", "data-state") == "live"

    assert watched.outside() == []
    assert watched.errors == []


def test_a_dropped_connection_resumes_after_the_last_event(
    server: LiveServer, watched: Watched
) -> None:
    activated = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/incidents", json=CHLORINE, headers=sign_in(server)
    )
    assert activated.status_code == 201, activated.text
    page = watched.page
    page.goto(f"{server.base}/")
    page.fill("#username", COMMANDER)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-submit")
    page.click(f"#site-list button[data-site='{DEMO_ID}']")
    page.wait_for_selector("#status[data-state='live']")
    page.wait_for_selector(".incident:not([hidden]) li.step")  # from the snapshot

    # The server tells the page to resync and drops it; the page comes back by itself and
    # subscribes with the last sequence number it saw.
    assert watched.sent_of("subscribe") == [
        {
            "type": "subscribe",
            "site": DEMO_ID,
            "incident": None,
            "last_seq": None,
            "positions": "compact",
        }
    ]
    watched.watch_status()
    hub: Hub = server.app.state.hub

    def overflow() -> None:  # as for a client too slow to keep up: the server says resync
        for subscriber in hub._subscribers.get(DEMO_ID, ()):
            subscriber.overflowed.set()

    assert hub._loop is not None
    hub._loop.call_soon_threadsafe(overflow)
    page.wait_for_function("() => window.seenStates.includes('reconnecting')")
    page.wait_for_selector("#status[data-state='live']")
    again = watched.sent_of("subscribe")
    assert len(again) == 2 and again[1]["last_seq"] is not None and again[1]["last_seq"] > 0

    assert watched.outside() == []
    assert watched.errors == []


def test_without_leaflet_the_page_says_how_to_set_up(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>wall</title>", encoding="utf-8")
    app = FastAPI()
    wall.mount(app, tmp_path)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 503 and "npm ci --prefix frontend" in page.text
        leaflet = client.get("/vendor/leaflet/leaflet.js")
        assert leaflet.status_code == 503 and "make run" in leaflet.text


def page_modules(frontend: Path = wall.FRONTEND) -> list[str]:
    """The page's own ES modules, as the browser finds them: the module scripts of index.html,
    then every static ``import ... from "./x.js"`` of each module and every worker module it
    starts (``new URL("./x.js", import.meta.url)``), transitively (no build step)."""
    index = (frontend / "index.html").read_text(encoding="utf-8")
    entries = re.findall(r'<script type="module" src="/static/([\w.-]+\.js)">', index)
    found: list[str] = []
    while entries:
        name = entries.pop(0)
        if name in found:
            continue
        found.append(name)
        source = (frontend / name).read_text(encoding="utf-8")
        entries += re.findall(r'^import\s[^;]*?["\']\./([\w.-]+\.js)["\'];', source, re.M)
        entries += re.findall(r'new URL\(\s*"\./([\w.-]+\.js)",\s*import\.meta\.url', source)
    return found


def test_the_wall_is_served_from_here() -> None:
    # No file of the page names anything outside this server.
    for name in ("index.html", "style.css", *page_modules()):
        text = (wall.FRONTEND / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://|[\"'(]//[a-z]", text), name
    require(LEAFLET.is_file(), "Leaflet is not installed", NO_LEAFLET)
    app = FastAPI()
    wall.mount(app)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and "/static/main.js" in page.text
        for name in page_modules():
            assert client.get(f"/static/{name}").status_code == 200, name
        assert client.get("/static/style.css").status_code == 200
        assert client.get("/vendor/leaflet/leaflet.css").status_code == 200
        assert client.get("/vendor/leaflet/leaflet-src.esm.js").status_code == 200
        assert client.get("/static/node_modules/leaflet/package.json").status_code == 404
        assert client.get("/static/package.json").status_code == 404


def test_every_module_of_the_page_is_served_as_javascript_and_no_script_is_inline() -> None:
    """The wall is ES modules with no build step: a browser runs a module only if it comes with a
    JavaScript MIME type, and the policy (script-src 'self') refuses inline script. Each module is
    found by following the imports over HTTP from the page the server sends, as a browser does;
    together they are every .js file of the page (none orphaned, none missing)."""
    require(LEAFLET.is_file(), "Leaflet is not installed", NO_LEAFLET)
    app = FastAPI()
    wall.mount(app)
    with TestClient(app) as client:
        page = client.get("/").text
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
        assert scripts, "the page loads no script"
        for attributes, body in scripts:
            assert 'type="module"' in attributes and 'src="/static/' in attributes, attributes
            assert body.strip() == "", f"inline script: {body[:80]}"
        assert not re.search(r"\son[a-z]+\s*=", page), "an inline event handler"
        queue = [re.findall(r'src="([^"]+)"', attributes)[0] for attributes, _ in scripts]
        served: dict[str, str] = {}
        while queue:
            url = queue.pop(0)
            if url in served:
                continue
            answer = client.get(url)
            assert answer.status_code == 200, url
            served[url] = answer.headers["content-type"]
            base = url.rsplit("/", 1)[0]
            for target in re.findall(r'^import\s[^;]*?["\']([^"\']+)["\'];', answer.text, re.M):
                queue.append(f"{base}/{target[2:]}" if target.startswith("./") else target)
            # A worker's module, as a browser starts it: new URL("./x.js", import.meta.url).
            for target in re.findall(r'new URL\(\s*"\./([^"]+)",\s*import\.meta\.url', answer.text):
                queue.append(f"{base}/{target}")
        javascript = ("text/javascript", "application/javascript")
        for url, kind in served.items():
            assert kind.split(";")[0].strip() in javascript, (url, kind)
        assert "/vendor/leaflet/leaflet-src.esm.js" in served
        own = {url.removeprefix("/static/") for url in served if url.startswith("/static/")}
        # answer.js, analysis.js and group.js are their own pages' (answer, analysis, group),
        # page.js what the last two share; phone*.js the phone app's (/phone/)
        others = {"answer.js", "analysis.js", "group.js", "page.js"}
        others |= {p.name for p in wall.FRONTEND.glob("phone*.js")}
        pages_js = {p.name for p in wall.FRONTEND.glob("*.js")} - others
        assert own == pages_js == set(page_modules())
        assert {"main.js", "map.js", "socket.js", "state.js", "panels.js", "actions.js"} <= own
        assert "i18n.js" in own


# -- acting from the wall ----------------------------------------------------------------------


def open_wall(page: Page, server: LiveServer, username: str = COMMANDER) -> None:
    """Sign in through the form as ``username``, choose the demo site, wait until live."""
    page.goto(f"{server.base}/")
    page.fill("#username", username)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-submit")
    page.click(f"#site-list button[data-site='{DEMO_ID}']")
    page.wait_for_selector("#status[data-state='live']")


def activate(server: LiveServer, auth: dict[str, str]) -> dict[str, Any]:
    answer = httpx.post(f"{server.base}/api/sites/{DEMO_ID}/incidents", json=CHLORINE, headers=auth)
    assert answer.status_code == 201, answer.text
    picture: dict[str, Any] = answer.json()
    return picture


def template_steps(server: LiveServer, auth: dict[str, str], plan: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.base}/api/sites/{DEMO_ID}/plans/{plan}", headers=auth)
    assert answer.status_code == 200, answer.text
    levels = answer.json()["template"]["levels"].values()
    return {step["id"]: step for level in levels for step in level["steps"]}


def step_events(
    server: LiveServer, auth: dict[str, str], incident: str, step: str
) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.base}/api/sites/{DEMO_ID}/events", headers=auth)
    assert answer.status_code == 200, answer.text
    return [
        e
        for e in answer.json()["events"]
        if e["incident_id"] == incident
        and e["type"].startswith("plan.step.")
        and e["data"]["step_id"] == step
    ]


def incident_picture(server: LiveServer, auth: dict[str, str], incident: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}", headers=auth)
    assert answer.status_code == 200, answer.text
    picture: dict[str, Any] = answer.json()
    return picture


def click_zone(page: Page, zone: str) -> None:
    """Click the map, as a person would, in the middle of a zone's outline on the screen, once
    zoomed in on it (the wall frames the plume of an incident, and a zone is then small)."""
    page.evaluate(
        """zone => {
            const map = document.querySelector('#map').leafletMap;
            const path = document.querySelector(`#map path.rp-z-${zone}`);
            const box = path.getBBox();
            const centre = map.layerPointToLatLng([box.x + box.width / 2, box.y + box.height / 2]);
            map.setView(centre, 18, { animate: false });
        }""",
        zone,
    )
    box = page.locator(f"#map path.rp-z-{zone}").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_a_commander_completes_a_step_by_clicking(server: LiveServer, watched: Watched) -> None:
    auth = sign_in(server)
    picture = activate(server, auth)
    incident = picture["incident"]["id"]
    about = template_steps(server, auth, "chlorine-leak")
    # A step that is ready and done by a plain confirmation.
    step = next(
        s["id"]
        for s in picture["plan"]["steps"]
        if s["status"] == "ready" and about[s["id"]]["done_when"]["kind"] == "confirmation"
    )
    page = watched.page
    open_wall(page, server)
    item = f".incident[data-incident='{incident}'] li.step[data-step='{step}']"
    page.wait_for_selector(f"{item}[data-status='ready'] button[data-action='acknowledge']")

    for action, status in (
        ("acknowledge", "acknowledged"),
        ("start", "in_progress"),
        ("complete", "done"),
    ):
        page.click(f"{item} button[data-action='{action}']")
        page.wait_for_selector(f"{item}[data-status='{status}']")
    assert page.inner_text(f"{item} .step-status").lower() == "done"
    page.wait_for_selector(f"{item} .step-actions button", state="detached")  # nothing left to do
    assert page.inner_text(f"{item} .step-error") == ""

    # The log holds each move once, by the commander: the page sent each action once, and
    # the websocket event alone moved the step.
    moves = [
        e
        for e in step_events(server, auth, incident, step)
        if e["type"] not in ("plan.step.ready", "plan.step.overdue")
    ]
    assert [e["type"] for e in moves] == [
        "plan.step.acknowledged",
        "plan.step.started",
        "plan.step.done",
    ]
    assert {e["actor"] for e in moves} == {COMMANDER}
    assert watched.outside() == []
    assert watched.errors == []


@pytest.mark.parametrize("username", [VIEWER, PLANNER])
def test_viewers_and_planners_see_no_step_buttons(
    server: LiveServer, watched: Watched, username: str
) -> None:
    picture = activate(server, sign_in(server))
    incident = picture["incident"]["id"]
    page = watched.page
    open_wall(page, server, username)
    card = f".incident[data-incident='{incident}']"
    page.wait_for_selector(f"{card} li.step")
    page.wait_for_selector(f"{card} .step-title:not(:empty)")  # the plan's text has loaded
    assert count(page, ".incident .step-actions button") == 0
    assert count(page, ".duty-form") == 0 and count(page, ".duties button") == 0
    assert not page.locator("#activate").is_visible()
    assert not page.locator("#proposals").is_visible()
    assert watched.outside() == []
    assert watched.errors == []


def test_a_refused_step_action_shows_the_servers_reason(
    server: LiveServer, watched: Watched
) -> None:
    auth = sign_in(server)
    picture = activate(server, auth)
    incident = picture["incident"]["id"]
    step = next(s["id"] for s in picture["plan"]["steps"] if s["status"] == "ready")
    page = watched.page
    open_wall(page, server)
    item = f".incident[data-incident='{incident}'] li.step[data-step='{step}']"

    # Skipping asks why; with no reason, the server refuses and the page says so by the step.
    page.click(f"{item} button[data-action='skip']")
    page.click(f"{item} .step-form button[data-confirm='skip']")
    error = page.locator(f"{item} .step-error")
    error.wait_for(state="visible")
    assert "a reason is required" in error.inner_text()  # the server's own words
    assert "reason: 1 to 2000 characters" in error.inner_text()
    assert page.get_attribute(item, "data-status") == "ready"
    assert [e["type"] for e in step_events(server, auth, incident, step)] == ["plan.step.ready"]

    # With a reason, it goes through; the error is gone.
    page.fill(f"{item} .step-form input[name='reason']", "Already isolated by the previous shift")
    page.click(f"{item} .step-form button[data-confirm='skip']")
    page.wait_for_selector(f"{item}[data-status='skipped']")
    assert error.inner_text() == ""
    moves = step_events(server, auth, incident, step)
    reasons = [e["data"]["data"]["reason"] for e in moves if e["type"] == "plan.step.skipped"]
    assert reasons == ["Already isolated by the previous shift"]
    assert watched.outside() == []
    assert watched.unexpected_errors(422) == []


def report_wind(server: LiveServer, auth: dict[str, str], speed: float, from_deg: float) -> None:
    """The wind station reports (as its gateway would)."""
    reading = {"sensor_id": WIND_STATION, "value": speed, "direction_deg": from_deg}
    answer = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/readings", json={"readings": [reading]}, headers=auth
    )
    assert answer.status_code == 200, answer.text


def raise_chlorine_alarm(server: LiveServer, auth: dict[str, str]) -> None:
    """The chlorine detector crosses its alarm tier (1 ppm): the server proposes the plan."""
    answer = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/readings",
        json={"readings": [{"sensor_id": CL2_DETECTOR, "value": 2.0}]},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    proposed = [e for e in answer.json()["events"] if e["type"] == "plan.proposed"]
    assert [e["data"]["plans"] for e in proposed] == [["chlorine-leak"]]


def sensor_position(server: LiveServer, auth: dict[str, str], sensor: str) -> list[float]:
    sensors = layer(server, "sensors", auth)["features"]
    where: list[float] = next(f["geometry"]["coordinates"] for f in sensors if f["id"] == sensor)
    return where


def choose_plan(page: Page, plan: str) -> None:
    """Choose a plan in the activation panel; wait until its hazard inputs are filled in."""
    page.select_option("#activate-plan", plan)
    page.wait_for_selector(f"#activate-hazard[data-plan='{plan}']", state="attached")


def test_a_commander_activates_a_plan_from_the_panel(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    open_wall(page, server)
    page.wait_for_selector("#activate-plan option[value='tank-fire']", state="attached")

    # Choosing the plan offers its design release, and says what it is and where it comes from.
    choose_plan(page, "tank-fire")
    assert page.input_value("#activate-model") == "plan"
    design = page.inner_text("#activate-design")
    assert "a pool fire of methanol, 20 m across" in design
    assert "Basis: Demo figure" in design
    assert count(page, "#activate-wind_from_deg") == 0  # a fire needs no wind

    # The pool fire model, to check the figures: prefilled from the design release.
    page.select_option("#activate-model", "pool_fire")
    assert page.input_value("#activate-fuel") == "methanol"
    assert page.input_value("#activate-diameter_m") == "20"
    assert "Prefilled from the plan's design release" in page.inner_text("#activate-design")
    page.select_option("#activate-level", "L2")

    # Without a place, nothing is sent; the panel asks for a click on the map.
    page.click("#activate-submit")
    assert "Click the map" in page.inner_text("#activate-error-location")
    click_zone(page, "Z-009")  # tank farm T1
    page.wait_for_selector("#map path.rp-pick", state="attached")
    assert page.inner_text("#activate-error-location") == ""

    # A figure left empty is asked for by the field; nothing is sent.
    page.fill("#activate-diameter_m", "")
    page.click("#activate-submit")
    assert "required" in page.inner_text("#activate-error-diameter_m")
    assert "Not activated" in page.inner_text("#activate-error")
    assert watched.activations == []

    # The server's validation errors show next to the field they name.
    page.fill("#activate-diameter_m", "-5")
    page.click("#activate-submit")
    page.wait_for_function(
        "() => document.querySelector('#activate-error-diameter_m').textContent !== ''"
    )
    assert "> 0" in page.inner_text("#activate-error-diameter_m")  # the server's own words
    assert "Not activated" in page.inner_text("#activate-error")

    page.fill("#activate-diameter_m", "25")
    page.click("#activate-submit")
    result = page.wait_for_selector("#activate-result [data-incident]")
    assert result is not None
    incident = result.get_attribute("data-incident")
    assert incident and page.inner_text("#activate-error") == ""

    # The picture comes over the websocket: the card and the threat zones.
    page.wait_for_selector(f".incident[data-incident='{incident}'] li.step")
    for level in (3, 2, 1):
        page.wait_for_selector(f"#map path.rp-inc-{incident}.rp-threat-{level}", state="attached")
    picture = incident_picture(server, sign_in(server), incident)
    assert picture["incident"]["plan_id"] == "tank-fire"
    assert picture["incident"]["level"] == "L2"
    assert picture["incident"]["activated_by"] == COMMANDER
    hazard = picture["incident"]["hazard"]
    assert (hazard["model"], hazard["fuel"], hazard["diameter_m"]) == ("pool_fire", "methanol", 25)
    zones = layer(server, "zones", sign_in(server))["features"]
    tank_farm = next(shape(f["geometry"]) for f in zones if f["id"] == "Z-009")
    assert tank_farm.contains(shape(picture["incident"]["location"]))
    assert [a["hazard"]["diameter_m"] for a in watched.activations] == [-5, 25]
    assert watched.outside() == []
    assert watched.unexpected_errors(422) == []


def test_a_plan_without_a_design_release_leaves_the_figures_to_the_commander(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    open_wall(page, server)
    page.wait_for_selector("#activate-plan option[value='general-evacuation']", state="attached")
    choose_plan(page, "general-evacuation")
    assert page.input_value("#activate-model") == "radius"

    # Nothing is known of the radii: the field is empty and required, nothing is guessed.
    assert page.input_value("#activate-radii_m") == ""
    assert page.eval_on_selector("#activate-radii_m", "input => input.required")
    assert page.eval_on_selector(
        "#activate-model option[value='plan']", "option => option.disabled"
    )
    assert "no design release" in page.inner_text("#activate-design")
    assert page.input_value("#activate-level") == "L1"  # a manual activation starts at L1

    click_zone(page, "Z-009")
    page.click("#activate-submit")
    assert "required" in page.inner_text("#activate-error-radii_m")
    assert page.get_attribute("#activate-radii_m", "aria-invalid") == "true"
    assert "Not activated" in page.inner_text("#activate-error")
    assert watched.activations == []

    page.fill("#activate-radii_m", "150, 400")
    page.click("#activate-submit")
    result = page.wait_for_selector("#activate-result [data-incident]")
    assert result is not None
    picture = incident_picture(server, sign_in(server), str(result.get_attribute("data-incident")))
    assert picture["incident"]["plan_id"] == "general-evacuation"
    assert picture["incident"]["hazard"] == {"model": "radius", "radii_m": [150, 400]}
    assert watched.outside() == []
    assert watched.errors == []


def test_a_gas_release_is_prefilled_from_the_design_release_and_the_wind_station(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    auth = sign_in(server)
    report_wind(server, auth, 3.5, 120)
    open_wall(page, server)
    page.wait_for_selector("#activate-plan option[value='ammonia-leak']", state="attached")
    choose_plan(page, "ammonia-leak")
    assert page.input_value("#activate-model") == "plan"

    # The plume model: the design release's figures, the station's wind, each saying whence.
    page.select_option("#activate-model", "toxic_release")
    assert page.input_value("#activate-substance") == "ammonia"
    assert page.input_value("#activate-rate_g_s") == "1500"
    assert page.input_value("#activate-release_height_m") == "2"
    assert page.input_value("#activate-wind_speed_m_s") == "3.5"
    assert page.input_value("#activate-wind_from_deg") == "120"
    assert f"from {WIND_STATION} at " in page.inner_text("#activate-wind-note")

    # The station reports again: the wind follows it, until the commander types over it.
    report_wind(server, auth, 4, 130)
    page.click("#activate summary")  # closed and opened again: the wind is asked again
    page.click("#activate summary")
    page.wait_for_function(
        "() => document.querySelector('#activate-wind_from_deg').value === '130'"
    )
    page.fill("#activate-wind_from_deg", "200")
    assert "Typed" in page.inner_text("#activate-wind-note")

    # Back to the design release: only the typed wind is sent, the server takes the rest.
    page.select_option("#activate-model", "plan")
    assert page.input_value("#activate-wind_from_deg") == "200"
    click_zone(page, "Z-027")
    page.click("#activate-submit")
    result = page.wait_for_selector("#activate-result [data-incident]")
    assert result is not None
    assert watched.activations[-1]["hazard"] == {"model": "plan", "wind_from_deg": 200}
    picture = incident_picture(server, auth, str(result.get_attribute("data-incident")))
    hazard = picture["incident"]["hazard"]
    assert (hazard["substance"], hazard["rate_g_s"]) == ("ammonia", 1500)
    assert (hazard["wind_speed_m_s"], hazard["wind_from_deg"]) == (4, 200)
    assert watched.outside() == []
    assert watched.errors == []


def test_a_proposed_plan_is_activated_with_one_click(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    open_wall(page, server)
    page.wait_for_selector("#activate-plan option[value='chlorine-leak']", state="attached")

    # The wind station reports, then a chlorine detector alarms: the server proposes the plan.
    auth = sign_in(server)
    report_wind(server, auth, 4.5, 270)
    raise_chlorine_alarm(server, auth)

    banner = f"#alarms .alarm[data-sensor='{CL2_DETECTOR}']"
    page.wait_for_selector(banner)
    assert "ALARM" in page.inner_text(banner)
    button = f"{banner} button.activate-now[data-plan='chlorine-leak']"
    assert "at L1" in page.inner_text(button)  # the level it activates at, said
    # The panel is ready for it: the plan's design release under the station's wind.
    page.wait_for_selector("#activate-hazard[data-plan='chlorine-leak']", state="attached")
    page.wait_for_function(
        "station => (document.querySelector('#activate-wind-note')?.textContent || '')"
        ".includes(station)",
        arg=f"from {WIND_STATION} at ",
    )
    assert page.input_value("#activate-model") == "plan"
    assert "1250 g/s of chlorine" in page.inner_text("#activate-design")
    assert page.input_value("#activate-wind_from_deg") == "270"
    page.click(button)  # the one click

    result = page.wait_for_selector("#activate-result [data-incident]")
    assert result is not None
    incident = result.get_attribute("data-incident")
    assert "1250 g/s of chlorine, wind 4.5 m/s from 270°" in page.inner_text("#activate-result")
    page.wait_for_selector(f".incident[data-incident='{incident}'] li.step")
    for level in (3, 2, 1):
        page.wait_for_selector(f"#map path.rp-inc-{incident}.rp-threat-{level}", state="attached")
    # The alarm no longer offers the plan; it stays until someone acknowledges it.
    page.wait_for_selector(f"{banner} .proposal-plan", state="detached")
    assert page.is_visible(f"{banner} .alarm-ack")
    assert watched.activations[-1]["hazard"] == {"model": "plan"}
    picture = incident_picture(server, auth, str(incident))
    where = sensor_position(server, auth, CL2_DETECTOR)
    assert picture["incident"]["location"]["coordinates"] == pytest.approx(where, abs=1e-7)
    assert picture["incident"]["plan_id"] == "chlorine-leak"
    hazard = picture["incident"]["hazard"]
    assert (hazard["model"], hazard["substance"]) == ("toxic_release", "chlorine")
    assert (hazard["rate_g_s"], hazard["release_height_m"]) == (1250, 1)  # the design release
    assert (hazard["wind_speed_m_s"], hazard["wind_from_deg"]) == (4.5, 270)  # the station's
    assert watched.outside() == []
    assert watched.errors == []


def test_without_a_wind_reading_the_one_click_asks_for_the_wind(
    windless: LiveServer, watched: Watched
) -> None:
    page = watched.page
    open_wall(page, windless)
    page.wait_for_selector("#activate-plan option[value='chlorine-leak']", state="attached")
    auth = sign_in(windless)
    raise_chlorine_alarm(windless, auth)
    banner = f"#alarms .alarm[data-sensor='{CL2_DETECTOR}']"
    button = f"{banner} button.activate-now[data-plan='chlorine-leak']"
    page.wait_for_selector(banner)
    page.wait_for_selector("#activate-hazard[data-plan='chlorine-leak']", state="attached")
    assert page.input_value("#activate-model") == "plan"
    assert "No wind station has reported yet" in page.inner_text("#activate-wind-note")
    assert page.input_value("#activate-wind_from_deg") == ""  # no guessed wind

    # The one click: the server refuses without a wind, and the banner and the panel say so.
    page.click(button)
    refusal = page.locator(f"{banner} .error")
    page.wait_for_function(
        "selector => document.querySelector(selector).textContent !== ''",
        arg=f"{banner} .error",
    )
    said = refusal.inner_text()
    assert "no wind station of the site has reported a wind yet" in said  # the server's words
    assert "wind_from_deg). Type the wind" in said
    assert "no wind station reading" in page.inner_text("#activate-error-wind_from_deg")
    for field in ("wind_speed_m_s", "wind_from_deg"):
        assert page.get_attribute(f"#activate-{field}", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "activate-wind_speed_m_s"
    assert page.inner_text("#activate-result") == ""
    assert watched.activations == [
        {
            "plan_id": "chlorine-leak",
            "level": "L1",
            "location": {
                "type": "Point",
                "coordinates": sensor_position(windless, auth, CL2_DETECTOR),
            },
            "hazard": {"model": "plan"},
            "capacity_aware": False,
        }
    ]

    # The commander types the wind and clicks again: activated, under that wind.
    page.fill("#activate-wind_speed_m_s", "2")
    page.fill("#activate-wind_from_deg", "90")
    page.click(button)
    result = page.wait_for_selector("#activate-result [data-incident]")
    assert result is not None
    assert refusal.count() == 0 or refusal.inner_text() == ""
    assert watched.activations[-1]["hazard"] == {
        "model": "plan",
        "wind_speed_m_s": 2,
        "wind_from_deg": 90,
    }
    picture = incident_picture(windless, auth, str(result.get_attribute("data-incident")))
    hazard = picture["incident"]["hazard"]
    assert (hazard["rate_g_s"], hazard["wind_speed_m_s"], hazard["wind_from_deg"]) == (1250, 2, 90)
    assert watched.outside() == []
    assert watched.unexpected_errors(422) == []


def test_a_responder_acts_on_the_steps_of_their_duty(
    server: LiveServer, browser: Browser, watched: Watched
) -> None:
    auth = sign_in(server)
    picture = activate(server, auth)
    incident = picture["incident"]["id"]
    card = f".incident[data-incident='{incident}']"
    role = "control_room_operator"
    about = template_steps(server, auth, "chlorine-leak")

    # The responder's wall: before any duty, no step of this incident has a button.
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        responder = Watched(context.new_page())
        responder.page.set_default_timeout(WAIT_MS)
        theirs = responder.page
        open_wall(theirs, server, RESPONDER)
        theirs.wait_for_selector(f"{card} .step-title:not(:empty)")
        assert count(theirs, f"{card} .step-actions button") == 0
        assert count(theirs, ".duty-form") == 0 and not theirs.locator("#activate").is_visible()

        # The commander gives them the role from the wall.
        page = watched.page
        open_wall(page, server)
        page.click(f"{card} .tab[data-tab='command']")  # duties are in the command tab
        page.wait_for_selector(f"{card} .duty-form")
        page.select_option(f"{card} .duty-form select[name='role']", role)
        page.fill(f"{card} .duty-form input[name='username']", RESPONDER)
        page.click(f"{card} .duty-form button[type='submit']")
        holder = f"{card} .duty-list li[data-role='{role}'] .holder[data-username='{RESPONDER}']"
        page.wait_for_selector(holder)
        theirs.wait_for_selector(f"{holder}.mine", state="attached")  # on their wall, as theirs

        # Now they may act on that role's steps, and only on those.
        step = next(
            s["id"]
            for s in picture["plan"]["steps"]
            if s["role"] == role and s["status"] == "ready"
        )
        item = f"{card} li.step[data-step='{step}']"
        theirs.wait_for_selector(f"{item} button[data-action='acknowledge']")
        with_buttons = theirs.eval_on_selector_all(
            f"{card} li.step:has(.step-actions button)", "items => items.map(i => i.dataset.step)"
        )
        assert with_buttons and {about[s]["role"] for s in with_buttons} == {role}
        assert count(theirs, f"{item} button[data-action='skip']") == (
            1 if about[step]["optional"] else 0
        )  # only the commander skips a step that is not optional
        theirs.click(f"{item} button[data-action='acknowledge']")
        theirs.wait_for_selector(f"{item}[data-status='acknowledged']")
        page.wait_for_selector(f"{item}[data-status='acknowledged']", state="attached")
        moves = [
            e
            for e in step_events(server, auth, incident, step)
            if e["type"] == "plan.step.acknowledged"
        ]
        assert [e["actor"] for e in moves] == [RESPONDER]

        # The commander releases the duty: the responder's buttons go.
        page.click(f"{holder} button.release")
        page.wait_for_selector(holder, state="detached")
        theirs.wait_for_selector(f"{card} .step-actions button", state="detached")
        assert watched.outside() == [] and responder.outside() == []
        assert watched.errors == [] and responder.errors == []
    finally:
        context.close()


def metres_apart(a: list[float], b: list[float]) -> float:
    """The distance between two lon/lat points, near enough for a site (equirectangular)."""
    mid = math.radians((a[1] + b[1]) / 2)
    dx = math.radians(b[0] - a[0]) * math.cos(mid)
    dy = math.radians(b[1] - a[1])
    return 6_371_000 * math.hypot(dx, dy)


def on_screen(page: Page, lonlat: Sequence[float]) -> tuple[float, float]:
    """Where a point is on the page, by Leaflet's own projection of the map as shown."""
    x, y = page.evaluate(
        """([lon, lat]) => {
            const box = document.querySelector('#map');
            const p = box.leafletMap.latLngToContainerPoint([lat, lon]);
            const r = box.getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [lonlat[0], lonlat[1]],
    )
    return float(x), float(y)


def pixel(page: Page, at: tuple[float, float]) -> tuple[int, int, int]:
    """The colour Chromium shows at a point of the page: a 1x1 screenshot, decoded."""
    png = page.screenshot(clip={"x": round(at[0]), "y": round(at[1]), "width": 1, "height": 1})
    colour = Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))
    assert isinstance(colour, tuple), colour
    return int(colour[0]), int(colour[1]), int(colour[2])


def near(colour: tuple[int, int, int], wanted: tuple[int, int, int], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(colour, wanted, strict=True))


MOVING = (17, 17, 17)  # a person to move: a black dot (frontend/people-paint.js)
ARRIVED = (255, 255, 255)  # arrived: a white dot in a green ring


def zoom_to(page: Page, lonlat: Sequence[float], zoom: int = 19) -> None:
    """Centre the map on a point, zoomed in, as a person would before clicking a dot there.
    (The braces: setView returns the map, which Playwright would copy back, every layer.)"""
    page.evaluate(
        "([lon, lat, zoom]) => { document.querySelector('#map').leafletMap"
        ".setView([lat, lon], zoom, { animate: false }); }",
        [lonlat[0], lonlat[1], zoom],
    )


def wait_for_dot(page: Page, lonlat: Sequence[float], colour: tuple[int, int, int]) -> None:
    """Until the page shows a dot of ``colour`` at ``lonlat`` (read from a screenshot)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not near(pixel(page, on_screen(page, lonlat)), colour):
        assert time.monotonic() < deadline, f"no {colour} dot at {lonlat}"
        page.wait_for_timeout(50)


def line_start(page: Page, selector: str) -> tuple[float, float]:
    found = re.match(r"M\s*(-?[\d.]+)[ ,](-?[\d.]+)", page.get_attribute(selector, "d") or "")
    assert found, selector
    return float(found[1]), float(found[2])


def metres_per_pixel(page: Page) -> float:
    """From the map's scale bar: its label (``200 m``, ``1 km``) over its width in pixels."""
    bar = page.locator(".leaflet-control-scale-line").first
    value, unit = bar.inner_text().split()
    width: float = bar.evaluate("bar => parseFloat(bar.style.width)")
    return float(value) * (1000 if unit == "km" else 1) / width


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of its own: no other test's incident draws dots over this one's."""
    with LiveServer(demo_database(tmp_path / "fresh.db"), heartbeat_s=1.0) as live:
        yield live


def test_a_clicked_person_gets_the_route_from_where_they_are_now(
    fresh: LiveServer, watched: Watched
) -> None:
    server = fresh
    auth = sign_in(server)
    picture = activate(server, auth)
    incident = picture["incident"]["id"]
    where = {
        str(f["id"]): f["geometry"]["coordinates"]
        for f in layer(server, "people", auth)["features"]
        if f["geometry"]
    }
    dotted = {p["id"] for p in picture["evacuation"]["people"]}
    person = next(p["id"] for p in picture["evacuation"]["people"] if p["muster"] is not None)

    def routed(lonlat: list[float]) -> bool:
        answer = httpx.get(
            f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}/route",
            params={"lon": lonlat[0], "lat": lonlat[1]},
            headers=auth,
        )
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["route"])

    # They walk well away, to where someone without a dot stands and a route leads from;
    # no other dot lies there to take the click.
    there = next(
        lonlat
        for other, lonlat in where.items()
        if other not in dotted
        and metres_apart(where[person], lonlat) > 50
        and all(metres_apart(where[p], lonlat) > 10 for p in dotted)
        and routed(lonlat)
    )
    page = watched.page
    open_wall(page, server)
    page.wait_for_selector("canvas.rp-people[data-drawn]")
    zoom_to(page, where[person])  # zoomed out on the plume, the site's dots crowd each other
    wait_for_dot(page, where[person], MOVING)

    sent = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/positions",
        json={"positions": [{"person_id": person, "lon": there[0], "lat": there[1]}]},
        headers=auth,
    )
    assert sent.status_code == 200, sent.text
    zoom_to(page, there)  # at the plume's framing, 10 m is less than a pixel
    wait_for_dot(page, there, MOVING)

    def asked() -> list[str]:
        return [u for u in watched.urls if "/route?" in u]

    assert asked() == []  # a position message asks nothing

    # The click asks once for the route from where they are now, and draws it.
    with page.expect_response(lambda r: "/route?" in r.url) as answered:
        page.mouse.click(*on_screen(page, there))
    answer = answered.value.json()
    assert answer["person"] == person and answer["muster"] is not None and answer["route"]
    assert metres_apart(answer["from"], there) < 1
    assert asked() == [
        f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}/route?person={person}"
    ]
    chosen = "#map path.rp-route-chosen"
    page.wait_for_selector(chosen)
    assert count(page, chosen) == 1
    scale = metres_per_pixel(page)
    # The line starts at their new position, not where the picture's route starts (the
    # popup may have panned the map: both are read in its present view).
    box = page.locator("#map").bounding_box()
    assert box is not None
    start = line_start(page, chosen)
    start = (start[0], start[1])
    now = on_screen(page, there)
    origin = page.evaluate(
        "() => { const m = document.querySelector('#map').leafletMap;"
        " const p = m.containerPointToLayerPoint([0, 0]); return [p.x, p.y]; }"
    )
    start = (start[0] - origin[0] + box["x"], start[1] - origin[1] + box["y"])
    before = on_screen(page, where[person])
    assert math.dist(start, now) * scale < 5  # at their new position...
    assert math.dist(start, before) * scale > 40  # ...not where the picture's route starts
    label = page.inner_text(f".rp-route-now[data-person='{person}'] .route-label")
    walk = round(answer["walk_time_s"])
    walked = f"{walk // 60} min {walk % 60:02d} s" if walk >= 60 else f"{walk} s"
    assert label.startswith("to ") and answer["muster"] in label
    assert f"{walked} on foot" in label
    assert "error" not in (page.get_attribute(".rp-route-now .route-label", "class") or "")

    # Refused (the incident stood down meanwhile, say): the server's reason, in red; no route.
    gone = f"no active incident '{incident}' at {DEMO_ID}"
    page.route(
        "**/route?*",
        lambda route: route.fulfill(
            status=404,
            content_type="application/problem+json",
            body=json.dumps({"title": "Not Found", "status": 404, "detail": gone}),
        ),
    )
    page.click(".rp-route-popup .leaflet-popup-close-button")  # and the highlight goes
    page.wait_for_selector(chosen, state="detached")
    page.mouse.click(*on_screen(page, there))
    refused = page.locator(f".rp-route-now[data-person='{person}'] .route-label.error")
    refused.wait_for()
    assert "404" in refused.inner_text() and gone in refused.inner_text()
    assert count(page, chosen) == 0
    assert len(asked()) == 2

    assert watched.outside() == []
    assert watched.unexpected_errors(404) == []


def test_the_wall_shows_muster_verdicts_threat_notes_and_a_layer_change(
    server: LiveServer, watched: Watched
) -> None:
    """Wind from the west at L3: E1 lies in the plume, and the wall says it is not used; the
    chlorine plume's notes (a dense gas) are shown; a planner's edit during the incident puts a
    warning on the incident; an alarm for the running plan points to the incident."""
    west = {**CHLORINE, "level": "L3", "hazard": {**CHLORINE["hazard"], "wind_from_deg": 270}}
    activated = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/incidents", json=west, headers=sign_in(server)
    )
    assert activated.status_code == 201, activated.text
    incident = activated.json()["incident"]["id"]
    card = f".incident[data-incident='{incident}']"
    page = watched.page
    page.goto(f"{server.base}/")
    page.fill("#username", COMMANDER)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-submit")
    page.click(f"#site-list button[data-site='{DEMO_ID}']")
    page.wait_for_selector(f"{card} .muster-unusable[data-muster='Z-032']")
    assert "not used" in page.inner_text(f"{card} .muster-unusable[data-muster='Z-032']")
    assert "heavier than air" in (page.text_content(f"{card} .threat-notes") or "")
    # Marked on the map too, once for this incident.
    assert count(page, f"path.rp-muster-unusable.rp-mv-Z-032.rp-inc-{incident}") == 1

    planner = sign_in(server, PLANNER)
    zone = httpx.get(
        f"{server.base}/api/sites/{DEMO_ID}/layers/zones/features/Z-001", headers=planner
    ).json()
    edited = httpx.patch(
        f"{server.base}/api/sites/{DEMO_ID}/layers/zones/features/Z-001",
        json={"properties": {"capacity": 9, "version": zone["properties"]["version"]}},
        headers=planner,
    )
    assert edited.status_code == 200, edited.text
    page.wait_for_selector(f"{card} .layers-changed")
    assert "zones" in page.inner_text(f"{card} .layers-changed")

    alarm = {"readings": [{"sensor_id": "S-066", "value": 5.0}]}  # downwind, in the plume
    httpx.post(f"{server.base}/api/sites/{DEMO_ID}/readings", json=alarm, headers=sign_in(server))
    page.wait_for_selector(".proposal-running[data-plan='chlorine-leak']")
    assert page.get_attribute(".proposal-running", "data-incident") is not None
    assert watched.errors == []


def test_a_name_with_html_is_shown_as_text_and_the_policy_blocks_inline_script(
    fresh: LiveServer, watched: Watched
) -> None:
    """A planner's zone name that carries markup (the stored script injection of issue 12) is
    drawn as its own text; and the page's policy refuses inline script, which the harness sees
    as a console error: any violation fails a browser test."""
    server = fresh
    planner = sign_in(server, PLANNER)
    name = '<img src=x onerror="window.pwned=1">Tank <b>farm</b>'
    zone = httpx.get(
        f"{server.base}/api/sites/{DEMO_ID}/layers/zones/features/Z-010", headers=planner
    ).json()
    edited = httpx.patch(
        f"{server.base}/api/sites/{DEMO_ID}/layers/zones/features/Z-010",
        json={"properties": {"name": name, "version": zone["properties"]["version"]}},
        headers=planner,
    )
    assert edited.status_code == 200, edited.text
    page = watched.page
    open_wall(page, server)
    page.hover("#map path.rp-z-Z-010")
    hovered = ".leaflet-tooltip:not(.rp-place-label, .rp-receptor-label, .rp-zone-label)"
    page.wait_for_selector(hovered)
    assert name in page.inner_text(hovered)
    assert count(page, ".leaflet-tooltip img, .leaflet-tooltip b") == 0
    assert page.evaluate("window.pwned") is None
    assert watched.errors == []

    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.pwned = 2'; document.body.append(s); }"
    )
    assert page.evaluate("window.pwned") is None
    page.wait_for_function("() => true")
    assert any("Content Security Policy" in e for e in watched.errors), watched.errors


def test_the_wall_names_a_quarantined_incident_after_a_restart(
    tmp_path: Path, watched: Watched
) -> None:
    """Issue 12: an incident whose logged events were altered is left aside at restart, the
    server starts anyway, and the wall says which incident and why."""
    url = demo_database(tmp_path / "quarantine.db")
    with LiveServer(url, heartbeat_s=1.0) as first:
        incident = activate(first, sign_in(first, COMMANDER))["incident"]["id"]
    engine = create_engine(url)
    with engine.begin() as connection:
        seq = connection.execute(
            select(EventRow.seq).where(EventRow.incident_id == incident).order_by(EventRow.seq)
        ).all()[1][0]
        connection.execute(
            update(EventRow).where(EventRow.seq == seq).values(data={"forged": True})
        )
    engine.dispose()
    with LiveServer(url, heartbeat_s=1.0) as second:
        second.recovered()
        page = watched.page
        open_wall(page, second)
        banner = page.wait_for_selector(f"#recovery .quarantined[data-incident='{incident}']")
        assert banner is not None
        text = banner.inner_text()
        assert incident in text and f"event {seq}" in text
        assert watched.errors == []
