"""The map wall as a command post's screen (issue 13), in a real headless Chromium against the
real server: key figures against the API's own picture, framing, alarms on every role's wall
with their tone and acknowledgement, command actions and their refusals, the call tree, the
surroundings, languages and kiosk walls.

Each test runs on a server of its own (an alarm or an incident of one test must not show on
another's wall). Chromium runs with ``--autoplay-policy=no-user-gesture-required``, as a kiosk
wall is started, so the alarm tone plays without a click.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page
from shapely.geometry import shape

from command.auth import Role
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, site_database
from tests.live_server import LiveServer
from tests.test_browser import (
    ARRIVED,
    CL2_DETECTOR,
    COMMANDER,
    MOVING,
    RESPONDER,
    VIEWER,
    WAIT_MS,
    Watched,
    chromium,
    incident_picture,
    layer,
    open_wall,
    sign_in,
    wait_for_dot,
    zoom_to,
)

ADMIN = "wall-admin"
BASE = f"/api/sites/{DEMO_ID}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(kiosk=True) as launched:  # the alarm tone plays without a click
        yield launched


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    url = site_database(
        tmp_path / "wall.db",
        {
            COMMANDER: Role.COMMANDER,
            VIEWER: Role.VIEWER,
            RESPONDER: Role.RESPONDER,
            ADMIN: Role.ADMIN,
        },
    )
    with LiveServer(url, heartbeat_s=1.0) as live:
        yield live


def new_page(browser: Browser, width: int = 1920, height: int = 1080) -> Watched:
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return Watched(page)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    seen = new_page(browser)
    try:
        yield seen
    finally:
        seen.page.context.close()


def activate(server: LiveServer, auth: dict[str, str], **changes: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.base}{BASE}/incidents", json={**CHLORINE_ACTIVATION, **changes}, headers=auth
    )
    assert answer.status_code == 201, answer.text
    picture: dict[str, Any] = answer.json()
    return picture


def wall_with_incident(page: Page, server: LiveServer) -> tuple[dict[str, str], str, str]:
    """A commander's wall open on the demo site, and an incident activated through the API:
    the commander's headers, the incident's id and its card's selector."""
    open_wall(page, server)
    auth = sign_in(server)
    incident = str(activate(server, auth)["incident"]["id"])
    return auth, incident, f".incident[data-incident='{incident}']"


def kpi(page: Page, key: str) -> str:
    return page.inner_text(f"#kpis .kpi[data-kpi='{key}'] .kpi-value")


def wait_kpi(page: Page, key: str, value: int | str) -> None:
    page.wait_for_function(
        "([key, value]) => document.querySelector(`#kpis .kpi[data-kpi='${key}'] .kpi-value`)"
        "?.textContent === value",
        arg=[key, str(value)],
    )


def post(server: LiveServer, path: str, auth: dict[str, str], body: Any = None) -> httpx.Response:
    return httpx.post(f"{server.base}{BASE}{path}", json=body, headers=auth)


# -- key figures ----------------------------------------------------------------------------------


def test_the_key_figures_are_the_pictures_and_follow_arrivals(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    open_wall(page, server)
    auth = sign_in(server)
    incident = activate(server, auth)["incident"]["id"]
    page.wait_for_selector(f".incident[data-incident='{incident}'] li.step")
    picture = incident_picture(server, auth, incident)
    people = picture["evacuation"]["people"]
    missing = {m["id"] for m in picture["headcount"]["missing"]}
    assert people and missing
    wait_kpi(page, "to_move", len(people))
    assert kpi(page, "trapped") == str(len(picture["evacuation"]["trapped"]))
    assert kpi(page, "missing") == str(len(missing))
    assert kpi(page, "arrived") == str(len(people) - len(missing))
    for level, counts in picture["exposure"]["counts"].items():
        assert kpi(page, f"threat-{level}") == str(counts["people"]), level
    # Threat levels are named for what they mean, never "L3" (a response level).
    label = page.inner_text("#kpis .kpi[data-kpi='threat-3'] .kpi-label")
    assert "life-threatening" in label and "AEGL-3" in label and "L3" not in label
    assert kpi(page, "overdue") == "0"

    # One of those to move walks onto their muster point: arrived +1, drawn as arrived.
    person = next(p for p in people if p["id"] in missing and p["muster"])
    zones = layer(server, "zones", auth)["features"]
    muster = next(f for f in zones if str(f["id"]) == person["muster"])
    there = shape(muster["geometry"]).representative_point()
    sent = post(
        server,
        "/positions",
        auth,
        {"positions": [{"person_id": person["id"], "lon": there.x, "lat": there.y}]},
    )
    assert sent.status_code == 200, sent.text
    wait_kpi(page, "arrived", len(people) - len(missing) + 1)
    assert kpi(page, "missing") == str(len(missing) - 1)
    wait_for_dot(page, (there.x, there.y), ARRIVED)  # drawn as arrived: a white dot, green ring
    assert page.get_attribute("canvas.rp-people", "data-arrived") == "1"

    # Each tile opens its list: the people tab, at the list of those not yet arrived.
    page.click("#kpis .kpi[data-kpi='missing']")
    card = f".incident[data-incident='{incident}']"
    assert page.get_attribute(f"{card} .tab[data-tab='people']", "aria-selected") == "true"
    assert page.is_visible(f"{card} .tab-panel[data-tab='people'] .missing-list")
    page.click("#kpis .kpi[data-kpi='overdue']")
    assert page.is_visible(f"{card} .tab-panel[data-tab='steps']")
    # The headcount per muster point counts against those sent there, not the whole site.
    row = page.inner_text(f"{card} .muster-list li[data-muster='{person['muster']}']")
    expected = sum(1 for p in people if p["muster"] == person["muster"])
    assert f"of {expected} expected" in row
    assert watched.errors == []


# -- framing --------------------------------------------------------------------------------------


def box_of(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]}


def settled(page: Page, selector: str) -> dict[str, float]:
    """The element's box once it stops moving (a drag glides on for a moment)."""
    before = box_of(page, selector)
    for _ in range(100):
        page.wait_for_timeout(100)
        now = box_of(page, selector)
        if now == before:
            return now
        before = now
    raise AssertionError(f"{selector} never stopped moving")


def inside(inner: dict[str, float], outer: dict[str, float], slack: float = 2) -> bool:
    return (
        inner["x"] >= outer["x"] - slack
        and inner["y"] >= outer["y"] - slack
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack
    )


def test_the_map_frames_the_incident_unless_someone_panned(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    open_wall(page, server)
    auth = sign_in(server)
    incident = activate(server, auth)["incident"]["id"]
    zone = f"#map path.rp-inc-{incident}.rp-threat-1"
    page.wait_for_selector(zone, state="attached")
    page.wait_for_function(
        "id => document.querySelector('#map').dataset.framed === id", arg=incident
    )
    # The whole outermost zone is on screen (the plume runs kilometres off the site).
    assert inside(box_of(page, zone), box_of(page, "#map"))
    # Someone pans: the next picture (an escalation) keeps their view.
    before = box_of(page, zone)
    page.mouse.move(700, 600)
    page.mouse.down()
    page.mouse.move(900, 700, steps=5)
    page.mouse.up()
    panned = settled(page, zone)  # after the drag's inertia
    assert abs(panned["x"] - before["x"]) > 100
    assert post(server, f"/incidents/{incident}/escalate", auth).status_code == 200
    page.wait_for_selector(".incident .response-badge[data-level='L3']")
    page.wait_for_selector(zone, state="attached")
    after = box_of(page, zone)
    assert abs(after["x"] - panned["x"]) < 5 and abs(after["y"] - panned["y"]) < 5
    # The wind arrow says where the wind comes from and points where it blows.
    wind = page.inner_text(".rp-wind")
    assert "from NE (45°)" in wind
    assert page.get_attribute(".rp-wind", "data-from") == "45"
    assert watched.errors == []


# -- alarms ---------------------------------------------------------------------------------------


def test_an_alarm_shows_on_a_viewers_wall_with_a_tone_until_acknowledged(
    server: LiveServer, browser: Browser
) -> None:
    viewer = new_page(browser)
    responder = new_page(browser)
    try:
        open_wall(viewer.page, server, VIEWER)
        open_wall(responder.page, server, RESPONDER)
        auth = sign_in(server)
        answer = post(
            server, "/readings", auth, {"readings": [{"sensor_id": CL2_DETECTOR, "value": 2.0}]}
        )
        assert answer.status_code == 200, answer.text
        alarm = f"#alarms .alarm[data-sensor='{CL2_DETECTOR}']"
        for page in (viewer.page, responder.page):
            page.wait_for_selector(alarm)
            assert "ALARM" in page.inner_text(alarm)
            # The detector on the map takes its tier's colour.
            page.wait_for_selector(".rp-sensor.rp-tier-alarm", state="attached")
        # The tone sounds (Web Audio), beep after beep, on the viewer's wall too.
        viewer.page.wait_for_function(
            "() => Number(document.querySelector('#sound').dataset.beeps || 0) >= 2"
        )
        assert viewer.page.get_attribute("#sound", "data-playing") == "true"
        # A viewer cannot acknowledge; the alarm stays even when the reading falls back.
        assert viewer.page.locator(f"{alarm} .alarm-ack").count() == 0
        post(server, "/readings", auth, {"readings": [{"sensor_id": CL2_DETECTOR, "value": 0.0}]})
        viewer.page.wait_for_function(
            "sel => document.querySelector(sel)?.textContent.includes('not yet acknowledged')",
            arg=alarm,
        )
        # Muting is this wall's choice, remembered.
        viewer.page.click("#sound")
        assert viewer.page.get_attribute("#sound", "data-state") == "muted"
        assert viewer.page.get_attribute("#sound", "data-playing") == "false"

        responder.page.click(f"{alarm} .alarm-ack")
        for page in (viewer.page, responder.page):
            page.wait_for_selector(alarm, state="detached")
        responder.page.wait_for_function(
            "() => document.querySelector('#sound').dataset.playing === 'false'"
        )
        events = httpx.get(f"{server.base}{BASE}/events", headers=auth).json()["events"]
        acked = [e for e in events if e["type"] == "sensor.acknowledged"]
        assert [(e["data"]["sensor_id"], e["data"]["by"]) for e in acked] == [
            (CL2_DETECTOR, RESPONDER)
        ]
        viewer.page.reload()
        viewer.page.wait_for_selector("#status[data-state='live']")
        assert viewer.page.get_attribute("#sound", "data-state") == "muted"
        assert viewer.page.locator(alarm).count() == 0
        assert viewer.errors == [] and responder.errors == []
    finally:
        viewer.page.context.close()
        responder.page.context.close()


def test_an_alarm_for_a_running_plan_points_to_its_incident(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    auth = sign_in(server)
    sensor = next(
        f for f in layer(server, "sensors", auth)["features"] if str(f["id"]) == CL2_DETECTOR
    )
    incident = activate(
        server, auth, location={"type": "Point", "coordinates": sensor["geometry"]["coordinates"]}
    )["incident"]["id"]
    open_wall(page, server, VIEWER)
    post(server, "/readings", auth, {"readings": [{"sensor_id": CL2_DETECTOR, "value": 2.0}]})
    running = f"#alarms .alarm[data-sensor='{CL2_DETECTOR}'] .proposal-running"
    page.wait_for_selector(running)
    assert page.get_attribute(running, "data-incident") == incident
    assert incident in page.inner_text(running)
    # A viewer gets no activation button.
    assert page.locator("#alarms button.activate-now").count() == 0
    assert watched.errors == []


# -- command actions ------------------------------------------------------------------------------


def test_a_commander_escalates_deescalates_notes_and_stands_down_from_the_wall(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    auth, incident, card = wall_with_incident(page, server)
    page.wait_for_selector(f"{card} li.step")
    page.click(f"{card} .tab[data-tab='command']")

    # Escalate: a confirmation first; nothing happens until it is confirmed.
    page.click(f"{card} .order[data-order='escalate']")
    assert "L3" in page.inner_text(f"{card} .order-question")
    assert incident_picture(server, auth, incident)["plan"]["level"] == "L2"
    page.fill(f"{card} .order-reason", "plume reaches the expressway")
    page.click(f"{card} .order-yes")
    page.wait_for_selector(f"{card} .response-badge[data-level='L3']")

    # De-escalate needs a reason: without one the wall asks for it and sends nothing.
    page.click(f"{card} .order[data-order='deescalate']")
    page.click(f"{card} .order-yes")
    assert "Say why" in page.inner_text(f"{card} .order-error")
    assert incident_picture(server, auth, incident)["plan"]["level"] == "L3"
    page.fill(f"{card} .order-reason", "leak isolated")
    page.click(f"{card} .order-yes")
    page.wait_for_selector(f"{card} .response-badge[data-level='L2']")
    events = httpx.get(f"{server.base}{BASE}/events", headers=auth).json()["events"]
    down = next(e for e in events if e["type"] == "plan.run.deescalated")
    assert (down["actor"], down["data"]["data"]["reason"]) == (COMMANDER, "leak isolated")

    # A note goes to the log, and shows in the wall's log tab.
    page.fill(f"{card} .note-text", "wind backing north")
    page.click(f"{card} .note-add")
    page.wait_for_selector(f"{card} .note-result:text('Note logged.')")
    page.click(f"{card} .tab[data-tab='log']")
    page.wait_for_selector(f"{card} .log li[data-type='plan.note']:has-text('wind backing north')")

    # Stand down: the server refuses while people are missing, in its own words; closing
    # anyway takes a reason, and the incident leaves the wall.
    page.click(f"{card} .tab[data-tab='command']")
    page.click(f"{card} .order[data-order='stand-down']")
    page.fill(f"{card} .order-reason", "drill over")
    page.click(f"{card} .order-yes")
    refusal = page.wait_for_selector(f"{card} .order-error:has-text('people missing')")
    assert refusal is not None
    assert "Refused" in refusal.inner_text()
    assert page.inner_text(f"{card} .order-yes") == "Stand down anyway"
    page.fill(f"{card} .order-reason", "all accounted for by radio")
    page.click(f"{card} .order-yes")
    page.wait_for_selector(card, state="detached")
    assert page.is_visible("#no-incident")
    assert watched.unexpected_errors(409) == []


def test_a_viewer_gets_no_orders_and_a_responder_only_notes(
    server: LiveServer, browser: Browser
) -> None:
    auth = sign_in(server)
    incident = activate(server, auth)["incident"]["id"]
    card = f".incident[data-incident='{incident}']"
    for username, notes in ((VIEWER, False), (RESPONDER, True)):
        seen = new_page(browser)
        try:
            open_wall(seen.page, server, username)
            seen.page.wait_for_selector(f"{card} li.step")
            seen.page.click(f"{card} .tab[data-tab='command']")
            assert seen.page.locator(f"{card} .order").count() == 0, username
            assert seen.page.is_visible(f"{card} .note-form") is notes, username
        finally:
            seen.page.context.close()


def test_the_call_tree_shows_each_notice_and_a_commander_answers_for_someone(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    auth, incident, card = wall_with_incident(page, server)
    notices = httpx.get(f"{server.base}{BASE}/incidents/{incident}/notices", headers=auth).json()[
        "notices"
    ]
    assert notices
    page.click(f"{card} .tab[data-tab='calltree']")
    page.wait_for_selector(f"{card} .notice")
    assert page.locator(f"{card} .notice").count() == len(notices)
    first = notices[0]
    item = f"{card} .notice[data-seq='{first['seq']}']"
    assert first["contact"]["name"] in page.inner_text(item)
    page.click(f"{item} .on-behalf")
    page.select_option(f"{item} select[name='channel']", "radio")
    page.click(f"{item} button[data-confirm='ack']")
    page.wait_for_selector(f"{item}[data-status='acknowledged']")
    assert "radio" in page.inner_text(item)
    assert COMMANDER in page.inner_text(item)
    assert watched.errors == []


# -- surroundings ---------------------------------------------------------------------------------


def test_the_surroundings_are_drawn_and_the_receptors_inside_are_listed(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    open_wall(page, server)
    # The basemap is drawn from the site's own layer, on a canvas; the receptors are named.
    page.wait_for_selector(".leaflet-pane.leaflet-basemap-pane canvas", state="attached")
    page.wait_for_selector(".rp-receptor-label:has-text('Dongwan primary school')")
    page.wait_for_selector(".rp-place-label:has-text('Dongwan river')", state="attached")
    auth = sign_in(server)
    incident = activate(server, auth)
    inside = {r["name"] for rs in incident["receptors"].values() for r in rs}
    assert inside, "the demo's plume reaches a receptor"
    card = f".incident[data-incident='{incident['incident']['id']}']"
    page.wait_for_selector(card)
    page.click(f"{card} .tab[data-tab='people']")
    listed = page.inner_text(f"{card} .receptor-list")
    for name in inside:
        assert name in listed
    assert watched.outside() == []
    assert watched.errors == []


# -- languages ------------------------------------------------------------------------------------


def test_the_wall_switches_to_chinese_with_the_plans_own_words_and_remembers(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    _, _, card = wall_with_incident(page, server)
    page.wait_for_selector(f"{card} li.step[data-step='l1-detect-report']")
    page.wait_for_selector(f"{card} .step-title:has-text('Confirm the Cl2 detector alarm')")
    page.select_option("#language", "zh-CN")
    assert page.get_attribute("html", "lang") == "zh-CN"
    step = f"{card} li.step[data-step='l1-detect-report'] .step-title"
    page.wait_for_selector(f"{step}:has-text('从上风向确认氯气报警')")
    assert page.inner_text(f"{card} .incident-title") == "氯气泄漏专项应急预案"
    assert "生命威胁" in page.inner_text("#kpis .kpi[data-kpi='threat-3']")
    assert page.inner_text(f"{card} .tab[data-tab='steps']").startswith("处置步骤")
    assert "当班班长" in page.inner_text(f"{card} li.step[data-step='l1-detect-report'] .step-meta")
    assert page.inner_text("#sign-out") == "退出登录"
    # The key figures' labels are all Chinese (the criterion, such as AEGL-3, aside).
    labels = page.locator("#kpis .kpi-label").all_inner_texts()
    assert not [x for x in labels if re.search(r"[a-z]{3,}", re.sub(r"AEGL-\d", "", x))]
    page.reload()
    page.wait_for_selector("#status[data-state='live']")
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert page.input_value("#language") == "zh-CN"
    page.select_option("#language", "en")
    page.wait_for_selector(f"{step}:has-text('Confirm the Cl2 detector alarm')")
    assert watched.errors == []


# -- kiosk ----------------------------------------------------------------------------------------


def test_a_kiosk_wall_starts_from_its_url_without_a_sign_in_and_says_when_revoked(
    server: LiveServer, watched: Watched
) -> None:
    admin = sign_in(server, ADMIN)
    issued = httpx.post(
        f"{server.base}/api/admin/sites/{DEMO_ID}/walls", json={"name": "gatehouse"}, headers=admin
    )
    assert issued.status_code == 201, issued.text
    me = httpx.get(
        f"{server.base}/api/auth/me",
        headers={"Authorization": f"Bearer {issued.json()['token']}"},
    ).json()
    assert (me["kind"], me["site_roles"]) == ("wall", {DEMO_ID: ["viewer"]})
    page = watched.page
    page.goto(f"{server.base}{issued.json()['kiosk_path']}")
    page.wait_for_selector("#status[data-state='live']")
    # The token left the address bar; no sign-in, no sign-out, no site switch, no activation.
    assert "#" not in page.url and "wall=" not in page.url
    assert not page.is_visible("#login")
    assert not page.is_visible("#sign-out") and not page.is_visible("#change-site")
    assert not page.is_visible("#activate")
    auth = sign_in(server)
    incident = activate(server, auth)["incident"]["id"]
    page.wait_for_selector(f".incident[data-incident='{incident}'] li.step")
    assert page.locator(".step-actions button").count() == 0
    # Revoked: the socket closes with 4401 and the screen says so, full-screen, never a login.
    revoked = httpx.delete(
        f"{server.base}/api/admin/sites/{DEMO_ID}/walls/gatehouse", headers=admin
    )
    assert revoked.status_code in (200, 204), revoked.text
    page.wait_for_selector("#kiosk:not([hidden])", timeout=20_000)
    assert "refused" in page.inner_text("#kiosk-title")
    assert not page.is_visible("#login")
    assert watched.unexpected_errors(401) == []


def test_a_wrong_wall_token_shows_the_refusal_never_a_sign_in(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{server.base}/#wall=not-a-token")
    page.wait_for_selector("#kiosk:not([hidden])")
    assert "refused" in page.inner_text("#kiosk-title")
    assert not page.is_visible("#login")
    assert "not-a-token" not in page.url


def test_without_offscreen_canvas_the_page_paints_the_people_itself(
    server: LiveServer, browser: Browser
) -> None:
    """A browser without OffscreenCanvas (or workers) gets the same dots, painted on the page."""
    seen = new_page(browser)
    try:
        seen.page.add_init_script("delete HTMLCanvasElement.prototype.transferControlToOffscreen;")
        open_wall(seen.page, server)
        auth = sign_in(server)
        picture = activate(server, auth)
        person = next(p for p in picture["evacuation"]["people"] if p["muster"])
        where = {
            str(f["id"]): f["geometry"]["coordinates"]
            for f in layer(server, "people", auth)["features"]
            if f["geometry"]
        }
        seen.page.wait_for_selector("canvas.rp-people[data-painter='page'][data-drawn]")
        zoom_to(seen.page, where[person["id"]])
        wait_for_dot(seen.page, where[person["id"]], MOVING)
        assert seen.errors == []
    finally:
        seen.page.context.close()


def test_an_acknowledged_alarm_that_dips_and_rises_again_stays_quiet_also_after_a_reload(
    server: LiveServer, watched: Watched
) -> None:
    """ISA-18.2 as the server keeps it: after an acknowledgement, only a rise above the tier
    acknowledged raises the alarm again; the wall agrees, also once reloaded (it knows nothing
    of the acknowledgement then but what the server tells it)."""
    page = watched.page
    open_wall(page, server)
    auth = sign_in(server)
    alarm = f"#alarms .alarm[data-sensor='{CL2_DETECTOR}']"

    def reading(value: float) -> None:
        body = {"readings": [{"sensor_id": CL2_DETECTOR, "value": value}]}
        answer = post(server, "/readings", auth, body)
        assert answer.status_code == 200, answer.text

    def tier_drawn(tier: str) -> None:
        page.wait_for_selector(f".rp-sensor.rp-tier-{tier}", state="attached")

    def shown_since() -> int:
        """How often the alarm was put on the bar since watch() (even for a moment)."""
        count: int = page.evaluate("window.alarmShown")
        return count

    def watch() -> None:
        page.evaluate(
            """sensor => {
                window.alarmShown = 0;
                new MutationObserver((changes) => {
                    for (const c of changes) for (const n of c.addedNodes)
                        if (n.dataset?.sensor === sensor) window.alarmShown += 1;
                }).observe(document.querySelector('#alarms'), {childList: true});
            }""",
            CL2_DETECTOR,
        )

    reading(2.0)  # alarm
    page.click(f"{alarm} .alarm-ack")
    page.wait_for_selector(alarm, state="detached")
    for _ in range(2):
        watch()
        reading(0.7)  # dips to warning...
        tier_drawn("warning")
        reading(2.0)  # ...and rises back to the tier acknowledged: no new alarm
        tier_drawn("alarm")
        page.wait_for_timeout(500)
        assert shown_since() == 0
        page.reload()
        page.wait_for_selector("#status[data-state='live']")
        page.wait_for_timeout(500)
        assert page.locator(alarm).count() == 0
    # Above the tier acknowledged: the alarm again, for everyone.
    reading(5.0)
    page.wait_for_selector(f"{alarm}[data-tier='high_alarm']")
    assert watched.errors == []


def test_the_threat_zone_figures_follow_people_walking_out(
    server: LiveServer, watched: Watched
) -> None:
    page = watched.page
    open_wall(page, server)
    auth = sign_in(server)
    picture = activate(server, auth)
    incident = picture["incident"]["id"]
    page.wait_for_selector(f".incident[data-incident='{incident}'] li.step")
    inner = picture["exposure"]["inside"]["3"]["people"]
    assert inner
    wait_kpi(page, "threat-3", len(inner))
    zones = layer(server, "zones", auth)["features"]
    muster = next(f for f in zones if f["properties"]["kind"] == "muster_point")
    there = shape(muster["geometry"]).representative_point()
    walking = inner[:3]
    sent = post(
        server,
        "/positions",
        auth,
        {"positions": [{"person_id": p, "lon": there.x, "lat": there.y} for p in walking]},
    )
    assert sent.status_code == 200, sent.text
    now = incident_picture(server, auth, incident)["exposure"]["counts"]
    assert now["3"]["people"] == len(inner) - len(walking)
    for level, counts in now.items():
        wait_kpi(page, f"threat-{level}", counts["people"])
    assert watched.errors == []


def test_dots_stay_on_their_people_while_the_map_is_dragged(
    server: LiveServer, watched: Watched
) -> None:
    """The canvas moves with the map while a drag is under way: a paint then (positions come
    four times a second) must draw the dots where the canvas lies, not where the view is."""
    page = watched.page
    open_wall(page, server)
    auth = sign_in(server)
    picture = activate(server, auth)
    person = next(p for p in picture["evacuation"]["people"] if p["muster"])
    where = {
        str(f["id"]): f["geometry"]["coordinates"]
        for f in layer(server, "people", auth)["features"]
        if f["geometry"]
    }
    page.wait_for_selector("canvas.rp-people[data-drawn]")
    zoom_to(page, where[person["id"]], 18)
    wait_for_dot(page, where[person["id"]], MOVING)
    page.mouse.move(300, 700)
    page.mouse.down()
    page.mouse.move(420, 760, steps=6)  # held: the drag is under way
    draws = page.get_attribute("canvas.rp-people", "data-draws")
    moved = [where[person["id"]][0] + 0.00005, where[person["id"]][1]]
    body = {"positions": [{"person_id": person["id"], "lon": moved[0], "lat": moved[1]}]}
    assert post(server, "/positions", auth, body).status_code == 200
    page.wait_for_function(
        "n => document.querySelector('canvas.rp-people').dataset.draws !== n", arg=draws
    )
    wait_for_dot(page, moved, MOVING)
    page.mouse.up()
    assert watched.errors == []
