"""Drills on the map wall (issue 14, items 5, 6, 7 and 9): the replay route, then in a real
headless Chromium against the real server, the exercise banner on every wall, the drill
controller's console and the replay of a closed incident.

The browser tests share one server (on a manual clock, so that an incident can span minutes
of log time within a test) and one browser; each ends the drills and incidents it starts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page

from command.app import create_app
from command.auth import Role
from command.post import CommandPost
from command.serving import uvicorn_options
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, TEST_PASSWORD, sign_in, site_database
from tests.live_server import LiveServer
from tests.test_accessibility import AXE, axe_violations, serious
from tests.test_browser import (
    WAIT_MS,
    Watched,
    chromium,
)
from tests.test_drills import PRIVATE, SCENARIO

SITE = f"/api/sites/{DEMO_ID}"
DRILLS = f"{SITE}/drills"
ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"


# -- the replay route ----------------------------------------------------------------------------


@pytest.fixture
def controller(db: Database) -> dict[str, str]:
    return sign_in(db, "ctl-replay", [Role.DRILL_CONTROLLER])


def events_of_site(client: TestClient) -> list[dict[str, Any]]:
    answer = client.get(f"{SITE}/events", params={"after": 0, "limit": 1000})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def events_of(client: TestClient, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in events_of_site(client) if e["incident_id"] == incident_id]


def test_a_closed_incident_is_replayed_from_its_events_and_an_active_one_is_not(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    activated = command.post(f"{SITE}/incidents", json=CHLORINE_ACTIVATION)
    assert activated.status_code == 201, activated.text
    incident = activated.json()["incident"]["id"]
    replay = f"{SITE}/incidents/{incident}/replay"
    active = command.get(replay)
    assert active.status_code == 409 and active.json()["errors"][0]["field"] == "incident"
    clock.advance(90)
    step = command.post(f"{SITE}/incidents/{incident}/steps/l1-detect-report/acknowledge")
    assert step.status_code == 200, step.text
    clock.advance(60)
    assert command.post(f"{SITE}/incidents/{incident}/escalate", json={}).status_code == 200
    clock.advance(60)
    wind = command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": "S-005", "value": 4.0, "direction_deg": 200}]},
    )
    assert wind.status_code == 200, wind.text
    clock.advance(300)
    closed = command.post(
        f"{SITE}/incidents/{incident}/stand-down", json={"force": True, "reason": "drill over"}
    )
    assert closed.status_code == 200, closed.text

    viewer = sign_in(db, "replay-viewer", [Role.VIEWER])
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    last = events_of_site(command)[-1]["seq"]
    with post.hub.subscribe(DEMO_ID) as subscriber:
        answer = command.get(replay, headers=viewer)
        assert answer.status_code == 200, answer.text
        command.get("/healthz")  # the app's loop has run what was handed to it
        # Nothing of a replay reaches a subscriber of the site, nor the log.
        assert subscriber.queue.empty() and events_of_site(command)[-1]["seq"] == last
        alarm = {"readings": [{"sensor_id": "S-057", "value": 5.0}]}
        assert command.post(f"{SITE}/readings", json=alarm).status_code == 200
        command.get("/healthz")
        assert not subscriber.queue.empty()  # while a real event does
    body = answer.json()
    logged = events_of(command, incident)
    # Every event of the incident, in the log's order, as GET /events gives them.
    assert body["events"] == logged
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert body["exercise"] is None and body["started_at"] == logged[0]["at"]
    # The picture after activation, after the escalation and after the wind change.
    pictures = body["pictures"]
    assert [p["reason"] for p in pictures] == ["activation", "level", "wind"]
    assert [p["snapshot"]["plan"]["level"] for p in pictures] == ["L2", "L3", "L3"]
    by_seq = {e["seq"]: e for e in logged}
    escalated = next(e for e in logged if e["type"] == "plan.run.escalated")
    assert pictures[1]["seq"] >= escalated["seq"] and pictures[1]["seq"] in by_seq
    assert all(p["snapshot"]["incident"]["status"] == "active" for p in pictures)
    assert all(p["snapshot"]["seq"] == p["seq"] for p in pictures)

    # The acknowledged step is so in the pictures after it, and not in the first.
    def status(picture: dict[str, Any]) -> str:
        steps = picture["snapshot"]["plan"]["steps"]
        found: str = next(s["status"] for s in steps if s["id"] == "l1-detect-report")
        return found

    assert status(pictures[0]) == "ready" and status(pictures[1]) == "acknowledged"
    wind_changed = next(e for e in logged if e["type"] == "incident.wind_changed")
    assert pictures[2]["snapshot"]["incident"]["hazard"] == wind_changed["data"]["hazard"]
    # The call tree's changes end where GET .../notices is.
    final: dict[int, dict[str, Any]] = {}
    for change in body["notices"]:
        assert change["seq"] in by_seq
        final.update({n["seq"]: n for n in change["notices"]})
    notices = command.get(f"{SITE}/incidents/{incident}/notices").json()["notices"]
    assert [final[seq] for seq in sorted(final)] == notices

    # Readers of the site only; an unknown incident is 404.
    assert command.get(replay, headers={"Authorization": "Bearer nope"}).status_code == 401
    stranger = sign_in(db, "replay-admin", [Role.ADMIN])
    assert command.get(replay, headers=stranger).status_code == 403
    assert command.get(f"{SITE}/incidents/inc-nope/replay").status_code == 404


def test_a_drills_incident_is_replayed_once_the_drill_has_ended(
    command: TestClient, controller: dict[str, str], db: Database
) -> None:
    saved = command.post(f"{DRILLS}/scenarios", json=SCENARIO, headers=controller)
    assert saved.status_code == 201, saved.text
    drill = command.post(
        DRILLS, json={"scenario_id": SCENARIO["id"], "mode": "announced"}, headers=controller
    ).json()
    incident = drill["incident_id"]
    replay = f"{SITE}/incidents/{incident}/replay"
    assert command.get(replay).status_code == 409
    # The controller's console reads the drill's own events; nobody else does.
    log = command.get(f"{DRILLS}/{drill['id']}/events", headers=controller)
    assert log.status_code == 200, log.text
    assert [e["type"] for e in log.json()["events"]][:2] == ["drill.started", "drill.inject"]
    for role in (Role.COMMANDER, Role.VIEWER, Role.RESPONDER, Role.PLANNER):
        other = sign_in(db, f"not-ctl-{role.value}", [role])
        assert command.get(f"{DRILLS}/{drill['id']}/events", headers=other).status_code == 403
        assert command.get(f"{DRILLS}/drill-nope/events", headers=other).status_code == 403
    assert command.get(f"{DRILLS}/drill-nope/events", headers=controller).status_code == 404

    ended = command.post(f"{DRILLS}/{drill['id']}/end", json={}, headers=controller)
    assert ended.status_code == 200, ended.text
    viewer = sign_in(db, "drill-replay-viewer", [Role.VIEWER])
    answer = command.get(replay, headers=viewer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["exercise"] == drill["id"]
    types = [e["type"] for e in body["events"]]
    assert types[0] == "drill.started" and "drill.ended" in types
    # The injected reading, logged without the incident, is the drill's and is in it.
    injected = [e for e in body["events"] if e["type"] == "sensor.state"]
    assert injected and all(e["data"]["exercise"] == drill["id"] for e in injected)
    # The log's order; the drill's record (logged together when it ended) by its times.
    seqs = [e["seq"] for e in body["events"] if e["type"] not in PRIVATE]
    assert seqs == sorted(seqs)
    kept = [e for e in body["events"] if e["type"] in PRIVATE]
    at = [e["at"] for e in kept]
    assert kept and at == sorted(at)
    assert body["pictures"][0]["reason"] == "activation"
    assert body["pictures"][0]["snapshot"]["incident"]["exercise"] == drill["id"]


# -- on the wall, in a real browser ---------------------------------------------------------------

CONTROLLER = "wall-controller"
COMMANDER = "wall-commander"
VIEWER = "wall-viewer"
#: The real incident of these tests: a chlorine release where the drill's is, a second one
#: allowed (the drill's incident or an earlier test's may run there).
REAL = {**CHLORINE_ACTIVATION, "level": "L1", "second_incident": True}


class ClockedServer(LiveServer):
    """The real server, on a manual clock: an incident spans minutes of log time in a test
    that lasts seconds (the ticker still runs every second, firing what is due)."""

    def __init__(self, url: str, clock: ManualClock) -> None:
        super().__init__(url, heartbeat_s=1.0)
        self.app = create_app(self.settings, clock=clock)
        config = uvicorn.Config(self.app, log_level="warning", **uvicorn_options(self.settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )


@pytest.fixture(scope="module")
def wall_clock() -> ManualClock:
    """Starts now, so that the browser's clock and the server's agree until a test moves it."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, wall_clock: ManualClock
) -> Iterator[LiveServer]:
    url = site_database(
        tmp_path_factory.mktemp("drill-wall") / "wall.db",
        {CONTROLLER: Role.DRILL_CONTROLLER, COMMANDER: Role.COMMANDER, VIEWER: Role.VIEWER},
    )
    with ClockedServer(url, wall_clock) as live:
        auth = login(live, CONTROLLER)
        saved = httpx.post(f"{live.base}{DRILLS}/scenarios", json=SCENARIO, headers=auth)
        assert saved.status_code == 201, saved.text
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def pages(browser: Browser) -> Iterator[list[Watched]]:
    """Pages of 1920 x 1080 (the wall's design size), each in a context of its own."""
    opened: list[Watched] = []
    yield opened
    for watched in opened:
        watched.page.context.close()


def new_page(browser: Browser, pages: list[Watched]) -> Watched:
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = Watched(page)
    pages.append(watched)
    return watched


def login(server: LiveServer, username: str) -> dict[str, str]:
    answer = httpx.post(
        f"{server.base}/api/auth/login", json={"username": username, "password": TEST_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def open_wall(page: Page, server: LiveServer, username: str) -> None:
    page.goto(f"{server.base}/")
    page.fill("#username", username)
    page.fill("#password", TEST_PASSWORD)
    page.click("#login-submit")
    page.click(f"#site-list button[data-site='{DEMO_ID}']")
    page.wait_for_selector("#status[data-state='live']")


def call(server: LiveServer, auth: dict[str, str], path: str, body: Any = None) -> dict[str, Any]:
    answer = httpx.post(f"{server.base}{SITE}{path}", json=body, headers=auth, timeout=30)
    assert answer.status_code in (200, 201), answer.text
    found: dict[str, Any] = answer.json()
    return found


def drill_state(server: LiveServer, auth: dict[str, str], drill: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.base}{DRILLS}/{drill}", headers=auth)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def start_drill(server: LiveServer) -> dict[str, Any]:
    return call(
        server,
        login(server, CONTROLLER),
        "/drills",
        {"scenario_id": SCENARIO["id"], "mode": "announced"},
    )


def screenshot(page: Page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name))


def test_the_exercise_banner_is_on_a_drills_incident_and_never_on_a_real_one(
    server: LiveServer, browser: Browser, pages: list[Watched]
) -> None:
    watched = new_page(browser, pages)
    page = watched.page
    open_wall(page, server, VIEWER)
    assert page.is_hidden("#exercise-banner")
    assert page.locator("#drill-console").count() == 0  # the controller's alone
    drill = start_drill(server)
    exercise = drill["incident_id"]
    page.wait_for_selector(f".incident[data-incident='{exercise}']")
    page.wait_for_selector("#exercise-banner[data-kind='exercise']")
    words = page.inner_text("#exercise-banner")
    # Marked as a drill; what the drill holds (its scenario's name) stays the controller's.
    assert "EXERCISE / 演练" in words and SCENARIO["title"] not in words
    page.wait_for_function(
        "() => document.querySelector('#exercise-banner').innerText.includes('Chlorine leak')"
    )  # the plan under test, by its title
    assert page.get_attribute("#exercise-banner", "data-state") == "running"
    # The drill's detector alarm is on the alarm bar, marked, with nothing to acknowledge.
    alarm = f".alarm[data-exercise='{drill['id']}']"
    page.wait_for_selector(alarm)
    assert page.inner_text(f"{alarm} h2").startswith("EXERCISE / 演练")
    assert page.locator(f"{alarm} .alarm-ack").count() == 0
    assert page.is_visible(f".incident[data-incident='{exercise}'] .exercise-badge")
    assert "exercise-shown" in (page.get_attribute("#wall", "class") or "")
    screenshot(page, "drill-banner.png")

    # A real activation: the drill is suspended, and the real incident takes the wall.
    commander = login(server, COMMANDER)
    real = call(server, commander, "/incidents", REAL)["incident"]["id"]
    page.wait_for_selector("#exercise-banner[data-kind='real'][data-state='suspended']")
    assert "REAL INCIDENT" in page.inner_text("#exercise-banner")
    assert "suspended" in page.inner_text("#exercise-banner")
    assert page.is_visible(f".incident[data-incident='{real}']")
    assert page.is_hidden(f".incident[data-incident='{exercise}']")
    assert page.locator(f".incident[data-incident='{real}'] .exercise-badge").count() == 0
    assert "null" not in page.inner_text(f".incident[data-incident='{real}'] .incident-head")
    assert "exercise-shown" not in (page.get_attribute("#wall", "class") or "")
    page.wait_for_selector(f"#map[data-framed='{real}']")
    # Shown again, the exercise says it is suspended.
    page.click(f"#incident-switch button[data-incident='{exercise}']")
    page.wait_for_selector("#exercise-banner[data-kind='exercise'][data-state='suspended']")
    assert "SUSPENDED" in page.inner_text("#exercise-banner .banner-state")

    # The drill aborted: its incident goes, and the banner with it.
    call(server, login(server, CONTROLLER), f"/drills/{drill['id']}/abort", {})
    page.wait_for_selector(f".incident[data-incident='{exercise}']", state="detached")
    page.wait_for_selector("#exercise-banner", state="hidden")
    call(server, commander, f"/incidents/{real}/stand-down", {"force": True, "reason": "test"})
    assert watched.errors == []


def test_the_console_is_a_drill_controllers_alone_and_its_orders_work(
    server: LiveServer, browser: Browser, pages: list[Watched], wall_clock: ManualClock
) -> None:
    other = new_page(browser, pages).page  # a viewer's: see the banner's test
    open_wall(other, server, COMMANDER)
    assert other.locator("#drill-console").count() == 0
    watched = new_page(browser, pages)
    page = watched.page
    open_wall(page, server, CONTROLLER)
    page.wait_for_selector("#drill-console .dc-none:not([hidden])")
    auth = login(server, CONTROLLER)
    drill = start_drill(server)
    live = f"#drill-console .dc-live[data-drill='{drill['id']}']"
    page.wait_for_selector(f"{live}[data-state='running']")
    page.wait_for_selector(f"{live} li[data-inject='detector-rises'][data-status='fired']")
    status = {
        inject: page.get_attribute(f"{live} li[data-inject='{inject}']", "data-status")
        for inject in ("contractor-missing", "smell-at-gate")
    }
    assert status == {"contractor-missing": "due", "smell-at-gate": "contingency"}
    assert page.locator(f"#drill-console li[data-drill='{drill['id']}']").count() == 1
    # The players act: the first report is met, before its target.
    commander = login(server, COMMANDER)
    call(server, commander, f"/incidents/{drill['incident_id']}/steps/l1-detect-report/acknowledge")
    met = f"{live} li[data-expected='first-report']"
    page.wait_for_selector(f"{met}[data-status='on-time']")
    assert "early" in page.inner_text(met) and COMMANDER in page.inner_text(met)
    assert page.get_attribute(f"{live} li[data-expected='isolate']", "data-status") == "open"
    # An evaluator's note, stamped with drill time.
    page.fill("#dc-note-text", "Shift leader answered the radio at once")
    page.click(f"{live} .dc-note-add")
    page.wait_for_selector(f"{live} .dc-notes li:has-text('answered the radio at once')")
    assert "T+" in page.inner_text(f"{live} .dc-notes li")
    page.eval_on_selector("#drill-console", "(box) => { box.scrollTop = 0; }")
    screenshot(page, "drill-console.png")
    if AXE.is_file():  # the console and the banner as accessible as the rest of the wall
        assert serious(axe_violations(page)) == []

    # Fire the next inject early: the contractor goes missing now.
    page.click(f"{live} .dc-fire")
    page.wait_for_selector(f"{live} li[data-inject='contractor-missing'][data-status='fired']")
    fired = {i["id"]: i["fired"] for i in drill_state(server, auth, drill["id"])["injects"]}
    assert fired["contractor-missing"] and not fired["wind-shift"]
    assert "early" in page.inner_text(f"{live} li[data-inject='contractor-missing']")
    # Hold and resume.
    page.click(f"{live} .dc-hold")
    page.wait_for_selector(f"{live}[data-state='held']")
    assert drill_state(server, auth, drill["id"])["state"] == "held"
    page.wait_for_selector("#exercise-banner[data-state='held']")  # every wall says so
    assert page.is_disabled(f"{live} .dc-fire") and page.is_disabled(f"{live} .dc-hold")
    page.click(f"{live} .dc-resume")
    page.wait_for_selector(f"{live}[data-state='running']")
    # End, confirmed in the console.
    page.click(f"{live} .dc-end")
    assert drill_state(server, auth, drill["id"])["state"] == "running"  # asked first
    page.fill("#dc-reason", "objectives met")
    page.click("#drill-console .dc-confirm button[data-confirm='end']")
    page.wait_for_selector("#drill-console .dc-none:not([hidden])")
    assert drill_state(server, auth, drill["id"])["state"] == "ended"
    page.wait_for_selector(f"#drill-console li[data-drill='{drill['id']}'][data-state='ended']")
    page.wait_for_selector(f".incident[data-incident='{drill['incident_id']}']", state="detached")
    # Its review was made at the end; 72 hours on, not signed off, the console flags it.
    listed = f"#drill-console li[data-drill='{drill['id']}']"
    page.wait_for_selector(f"{listed} .dc-review[data-review='open']")
    wall_clock.advance(72 * 3600 + 60)
    page.reload()
    page.wait_for_selector(f"{listed} .dc-review[data-review='overdue']")
    assert "OVERDUE" in page.inner_text(f"{listed} .dc-review")
    assert watched.errors == []


def test_a_closed_incident_replays_at_60x_and_the_live_wall_is_untouched(
    server: LiveServer, browser: Browser, pages: list[Watched], wall_clock: ManualClock
) -> None:
    clock = wall_clock
    commander = login(server, COMMANDER)
    # An incident of five minutes of log time: a step at +1 min, escalated at +2, closed at +5.
    closed = call(server, commander, "/incidents", REAL)["incident"]["id"]
    clock.advance(60)
    call(server, commander, f"/incidents/{closed}/steps/l1-detect-report/acknowledge")
    clock.advance(60)
    call(server, commander, f"/incidents/{closed}/escalate", {"reason": "spreading"})
    clock.advance(180)
    call(server, commander, f"/incidents/{closed}/stand-down", {"force": True, "reason": "over"})
    live = call(server, commander, "/incidents", REAL)["incident"]["id"]

    watched = new_page(browser, pages)
    page = watched.page
    open_wall(page, server, VIEWER)
    page.wait_for_selector(f".incident[data-incident='{live}'] li[data-step='l1-detect-report']")
    page.click("#replay-open")
    page.click(f"#replays li[data-incident='{closed}'] .replay-start")
    page.wait_for_selector("#replay-bar[data-state='playing']")
    replayed = f".incident[data-incident='{closed}']"
    page.wait_for_selector(replayed)
    # The replay is drawn on a page of its own: the live incident is not on it.
    assert page.locator(f".incident[data-incident='{live}']").count() == 0
    assert "REPLAY" in page.inner_text("#replay-bar")
    page.click("#replay-bar button[data-speed='60']")
    assert page.get_attribute("#replay-bar button[data-speed='60']", "aria-pressed") == "true"
    # A live event during the replay: kept by the live wall, not applied, not replayed.
    call(server, commander, f"/incidents/{live}/steps/l1-detect-report/acknowledge")
    before = float(page.get_attribute("#replay-slider", "data-position") or 0)
    page.wait_for_selector(f"{replayed} .response-badge[data-level='L2']")  # the escalation
    after = float(page.get_attribute("#replay-slider", "data-position") or 0)
    assert after > before + 30, (before, after)  # 60x: minutes of log in seconds
    step = f"{replayed} li[data-step='l1-detect-report']"
    assert page.get_attribute(step, "data-status") == "acknowledged"
    state = page.evaluate(
        """async (live) => {
            const { Wall } = await import('/static/state.js');
            const shown = Wall.live.incidents.get(live);
            return {
                incidents: [...Wall.live.incidents.keys()],
                step: shown.picture.plan.steps.find((s) => s.id === 'l1-detect-report').status,
            };
        }""",
        live,
    )
    assert state == {"incidents": [live], "step": "ready"}
    if AXE.is_file():
        assert serious(axe_violations(page)) == []
    page.wait_for_selector("#replay-bar[data-state='ended']", timeout=3 * WAIT_MS)
    page.wait_for_selector(replayed, state="detached")  # stood down at the end, as it was
    # The slider back to the start: the incident as it was activated.
    page.eval_on_selector(
        "#replay-slider",
        "(slider) => { slider.value = '30'; slider.dispatchEvent(new Event('input')); }",
    )
    page.wait_for_selector(f"{replayed} .response-badge[data-level='L1']")
    assert page.get_attribute(step, "data-status") == "ready"

    # Back to live: the event that came during the replay is shown now.
    page.click("#replay-exit")
    page.wait_for_selector("#replay-bar", state="hidden")
    page.wait_for_selector(
        f".incident[data-incident='{live}'] li[data-step='l1-detect-report']"
        "[data-status='acknowledged']"
    )
    assert page.locator(replayed).count() == 0
    assert page.get_attribute("#status", "data-state") == "live"
    call(server, commander, f"/incidents/{live}/stand-down", {"force": True, "reason": "test"})
    assert watched.errors == []
