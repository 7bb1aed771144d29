"""The map wall in a real headless Chromium, against the real server (uvicorn in a thread).

Chromium is Debian's (``/usr/bin/chromium``, installed by ``scripts/chromium.sh`` on the
``make test`` path), driven by Playwright; Playwright's own browser downloads are never used.
With ``CI=true`` a missing Chromium or Leaflet install fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, WebSocket, sync_playwright
from shapely.geometry import shape

from command.auth import Role, create_user
from command.hub import Hub
from command.routes import wall
from gis.site_bundle import load_bundle
from gis.storage.db import Database, make_engine, upgrade
from plans.store import load_plan_files
from tests.conftest import (
    CHLORINE_ACTIVATION,
    DEMO_ID,
    DEMO_PLANS,
    DEMO_SITE,
    FAST_HASHER,
    TEST_PASSWORD,
)
from tests.live_server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
LEAFLET = wall.leaflet_dir(wall.FRONTEND) / "leaflet.js"
WAIT_MS = 10_000  # the longest the page may take to show anything asked of it
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
COMMANDER = "wall-commander"
NO_LEAFLET = "'make test' installs it, or 'npm ci --prefix frontend'"
NO_CHROMIUM = "'make test' installs it with scripts/chromium.sh"


def require(ready: bool, missing: str, remedy: str) -> None:
    """Skip when something is ``missing``; under CI, fail instead: CI runs the browser tests."""
    if ready:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing}: the browser tests must run in CI ({remedy})")
    pytest.skip(f"{missing} ({remedy})")


CHLORINE = CHLORINE_ACTIVATION


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on a SQLite file holding the demo site, its plans and a commander."""
    path = tmp_path_factory.mktemp("wall") / "wall.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        db = Database(engine)
        load_bundle(db, DEMO_SITE, actor="test-setup")
        with db.write() as session:
            load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
            create_user(session, COMMANDER, TEST_PASSWORD, [Role.COMMANDER], hasher=FAST_HASHER)
    finally:
        engine.dispose()
    with LiveServer(f"sqlite:///{path}", heartbeat_s=1.0) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(LEAFLET.is_file(), "Leaflet is not installed", NO_LEAFLET)
    require(CHROMIUM.is_file(), f"no Chromium at {CHROMIUM}", NO_CHROMIUM)
    with sync_playwright() as playwright:
        # Debian's Chromium, never a downloaded one ('playwright install' needs the internet).
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


class Watched:
    """A page, with every request it made, and every console error and uncaught exception."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.sent: list[dict[str, Any]] = []  # what the page sent over its websockets
        page.on("request", self._request)
        page.on("websocket", self._websocket)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)

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


def sign_in(server: LiveServer) -> dict[str, str]:
    login = {"username": COMMANDER, "password": TEST_PASSWORD}
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
    assert count(page, "#map path.rp-person") == len(picture["evacuation"]["people"]) > 0
    assert count(page, "#map path.rp-route") == 1
    nearest = [kind for kind, found in picture["resources"].items() if found]
    assert count(page, "#map path.rp-resource") == len(nearest) > 0
    assert "at muster points" in page.inner_text("#headcount-total")
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
    person = picture["evacuation"]["people"][0]["id"]
    dot = f"#map path.rp-person.rp-p-{person}"
    dot_before = page.get_attribute(dot, "d")
    headcount_before = page.inner_text("#headcount-total")
    muster = next(f for f in layers["zones"] if f["properties"]["kind"] == "muster_point")
    there = shape(muster["geometry"]).representative_point()
    sent = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/positions",
        json={"positions": [{"person_id": person, "lon": there.x, "lat": there.y}]},
        headers=auth,
    )
    assert sent.status_code == 200, sent.text
    page.wait_for_function(
        "([dot, before]) => document.querySelector(dot).getAttribute('d') !== before",
        arg=[dot, dot_before],
    )
    page.wait_for_function(
        "before => document.querySelector('#headcount-total').textContent !== before",
        arg=headcount_before,
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
    page.wait_for_selector(".incident li.step")  # from the snapshot

    # The server tells the page to resync and drops it; the page comes back by itself and
    # subscribes with the last sequence number it saw.
    assert watched.sent_of("subscribe") == [
        {"type": "subscribe", "site": DEMO_ID, "incident": None, "last_seq": None}
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


def test_the_wall_is_served_from_here() -> None:
    # No file of the page names anything outside this server.
    for name in ("index.html", "app.js", "style.css"):
        text = (wall.FRONTEND / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://|[\"'(]//[a-z]", text), name
    require(LEAFLET.is_file(), "Leaflet is not installed", NO_LEAFLET)
    app = FastAPI()
    wall.mount(app)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/static/style.css").status_code == 200
        assert client.get("/vendor/leaflet/leaflet.css").status_code == 200
        assert client.get("/vendor/leaflet/leaflet-src.esm.js").status_code == 200
        assert client.get("/static/node_modules/leaflet/package.json").status_code == 404
        assert client.get("/static/package.json").status_code == 404
