"""The responder's phone app in a real headless Chromium at 360 x 740, against the real server,
with the network cut (Playwright's offline mode): actions taken offline are kept, survive a
reload, and reach the server once each, in order, when the network returns; one made impossible
meanwhile is shown as such, naming who. The event log is read through the API, not the page.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Geolocation, Page, Route, ViewportSize

from command.auth import Role
from command.routes import phone
from command.routes.wall import FRONTEND
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, TEST_PASSWORD, site_database
from tests.live_server import LiveServer
from tests.test_accessibility import AXE, axe_violations, serious
from tests.test_browser import chromium, require

COMMANDER = "phone-commander"
RESPONDER = "phone-responder"
WAIT_MS = 20_000
VIEWPORT: ViewportSize = {"width": 360, "height": 740}
HERE: Geolocation = {
    "longitude": 121.3489525,
    "latitude": 30.718595,
}  # where a person of the demo stands
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
#: The steps the responder acts on offline (their duties: shift leader, control room operator)
ACKED = ["l1-remote-isolate", "l1-absorption", "l1-don-scba", "l1-warn-nearby"]
DONE_BY_PHONE = "l1-detect-report"  # acknowledged, started, completed with a reference
TAKEN = "l1-first-aid"  # completed by the commander through the API while the phone is offline


def built_worker() -> Path:
    """The service worker, built again when a file it keeps is newer (``make frontend`` does the
    same); skipped without Node or the npm install (failed with CI=true)."""
    worker = phone.service_worker_path()
    require(
        (FRONTEND / "node_modules" / "workbox-build").is_dir(),
        "workbox-build is not installed",
        "'npm ci --prefix frontend'",
    )
    sources = [*FRONTEND.glob("phone*"), FRONTEND / "page.js"]
    if not worker.is_file() or max(p.stat().st_mtime for p in sources) > worker.stat().st_mtime:
        subprocess.run(["node", str(FRONTEND / "phone-build.mjs")], check=True, timeout=120)
    return worker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    built_worker()
    path = tmp_path_factory.mktemp("phone") / "phone.db"
    url = site_database(path, {COMMANDER: Role.COMMANDER, RESPONDER: Role.RESPONDER})
    with LiveServer(url, heartbeat_s=1.0) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def auth(server: LiveServer, username: str) -> dict[str, str]:
    answer = httpx.post(
        f"{server.base}/api/auth/login", json={"username": username, "password": TEST_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def incident_with_duties(server: LiveServer, commander: dict[str, str]) -> str:
    """A chlorine incident in which the responder is shift leader and control room operator."""
    body = {**CHLORINE_ACTIVATION, "second_incident": True}
    answer = httpx.post(
        f"{server.base}/api/sites/{DEMO_ID}/incidents", json=body, headers=commander, timeout=60
    )
    assert answer.status_code == 201, answer.text
    incident: str = answer.json()["incident"]["id"]
    for role in ("shift_leader", "control_room_operator"):
        duty = httpx.post(
            f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}/duties",
            json={"role": role, "username": RESPONDER},
            headers=commander,
        )
        assert duty.status_code == 200, duty.text
    return incident


def last_seq(server: LiveServer, headers: dict[str, str]) -> int:
    answer = httpx.get(f"{server.base}/api/sites/{DEMO_ID}/events?after=0&limit=1", headers=headers)
    assert answer.status_code == 200, answer.text
    seq: int = answer.json()["last_seq"]
    return seq


def events_after(server: LiveServer, headers: dict[str, str], after: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = f"/api/sites/{DEMO_ID}/events?after={after}"
    while url:
        page = httpx.get(f"{server.base}{url}", headers=headers)
        assert page.status_code == 200, page.text
        found += page.json()["events"]
        url = page.json().get("next")
    return found


def phone_context(browser: Browser) -> BrowserContext:
    return browser.new_context(
        viewport=VIEWPORT,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-GB",
        geolocation=HERE,
        permissions=["geolocation"],
    )


def open_phone(page: Page, server: LiveServer, username: str = RESPONDER) -> None:
    """Sign in on the phone app, wait until the service worker controls it and has kept the
    reads for offline."""
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.base}/phone/")
    page.select_option("#language", "en")
    page.fill("input[name='username']", username)
    page.fill("input[name='password']", TEST_PASSWORD)
    page.click("#signin-form button[type='submit']")
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    # The worker kept the tasks (read again through it when it took over).
    page.wait_for_function(
        """async () => {
            const cache = await caches.open('rallypoint-phone-api');
            const keys = (await cache.keys()).map((r) => new URL(r.url).pathname);
            return keys.some((k) => k.endsWith('/tasks'))
                && keys.some((k) => k.includes('/plans/'));
        }"""
    )


def card(step: str, incident: str) -> str:
    """A task's card: the module's server runs the incidents of earlier tests too."""
    return f"#tasks li.card[data-incident='{incident}'][data-step='{step}']"


def tap(page: Page, step: str, incident: str, action: str) -> None:
    page.click(f"{card(step, incident)} button[data-action='{action}']")


def test_offline_actions_reach_the_server_once_in_order(
    server: LiveServer, browser: Browser
) -> None:
    commander = auth(server, COMMANDER)
    incident = incident_with_duties(server, commander)
    context = phone_context(browser)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        open_phone(page, server)
        page.wait_for_selector(card(TAKEN, incident))
        for step in [*ACKED, DONE_BY_PHONE, TAKEN]:
            assert page.get_attribute(card(step, incident), "data-status") == "ready"
        # The countdowns count: each task shows its deadline.
        assert "due in" in page.inner_text(
            f"{card(DONE_BY_PHONE, incident)} .countdown"
        ) or "late" in page.inner_text(f"{card(DONE_BY_PHONE, incident)} .countdown")
        before = last_seq(server, commander)

        # 1. The network drops: act on 5 steps (and on a sixth that someone else will finish).
        context.set_offline(True)
        page.wait_for_function("() => !navigator.onLine")
        for step in ACKED:
            tap(page, step, incident, "acknowledge")
            page.wait_for_selector(
                f"{card(step, incident)}[data-pending='true'][data-status='acknowledged']"
            )
        tap(page, DONE_BY_PHONE, incident, "acknowledge")
        page.wait_for_selector(f"{card(DONE_BY_PHONE, incident)}[data-status='acknowledged']")
        tap(page, DONE_BY_PHONE, incident, "start")  # offered from the status the phone expects now
        page.wait_for_selector(f"{card(DONE_BY_PHONE, incident)}[data-status='in_progress']")
        tap(page, DONE_BY_PHONE, incident, "complete")
        # Completing this step asks for its reference; an empty answer is refused on the phone.
        page.wait_for_selector("#ask:not([hidden])")
        assert "notify duty manager" in page.inner_text("#ask-label")
        page.click("#ask button[type='submit']")
        assert page.inner_text("#ask-error")
        page.fill("#ask-input", "radio log 14:02")
        if DOCS_IMG.is_dir():
            page.screenshot(path=str(DOCS_IMG / "phone-complete.png"))
        page.click("#ask button[type='submit']")
        page.wait_for_selector(
            f"{card(DONE_BY_PHONE, incident)}[data-status='done'][data-pending='true']"
        )
        tap(page, TAKEN, incident, "acknowledge")
        page.wait_for_selector(f"{card(TAKEN, incident)}[data-pending='true']")
        pending = page.locator("#outbox li[data-state='pending']")
        assert pending.count() == 8
        assert page.get_attribute("#net", "data-state") == "offline"
        assert last_seq(server, commander) == before  # nothing reached the server

        # Meanwhile the commander finishes the sixth step through the API.
        path = f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}/steps/{TAKEN}"
        for move in ("acknowledge", "start", "complete"):
            answer = httpx.post(f"{path}/{move}", json={}, headers=commander)
            assert answer.status_code == 200, answer.text
        taken_seq = last_seq(server, commander)

        # 2. Reload while still offline: the app comes from the worker's cache, the actions
        # from IndexedDB, the tasks from the kept copy (and the bar says so).
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        assert page.locator("#outbox li[data-state='pending']").count() == 8
        page.wait_for_selector(f"{card(ACKED[0], incident)}[data-pending='true']")
        assert page.get_attribute("#net", "data-state") == "offline"
        assert "offline, as of" in page.inner_text("#net")  # the reads are the kept copies
        assert last_seq(server, commander) == taken_seq
        if DOCS_IMG.is_dir():
            page.screenshot(path=str(DOCS_IMG / "phone-offline.png"))

        # 3. The network returns: everything is sent, in order, each once.
        context.set_offline(False)
        page.wait_for_function(
            "() => !document.querySelector(\"#outbox li[data-state='pending']\")"
        )
        queued = page.evaluate(
            """async () => {
                const db = await new Promise((ok, ko) => {
                    const r = indexedDB.open('rallypoint-phone');
                    r.onsuccess = () => ok(r.result);
                    r.onerror = () => ko(r.error);
                });
                return await new Promise((ok) => {
                    const r = db.transaction('actions').objectStore('actions').getAll();
                    r.onsuccess = () => ok(r.result.map((a) => ({id: a.id, state: a.state,
                        acted_at: a.acted_at, path: a.path, by: a.by, detail: a.detail})));
                });
            }"""
        )
        assert [a["state"] for a in queued] == ["sent"] * 7 + ["conflict"]
        ids = [a["id"] for a in queued]
        assert ids == sorted(ids)  # UUIDv7: made in order, sorted in order
        assert all(i[14] == "7" and i[19] in "89ab" for i in ids)  # version 7, RFC 9562 variant

        # The server's log, read through the API: each action once, in the order taken, with
        # both times, the responder's before the server's receipt.
        logged = [
            e
            for e in events_after(server, commander, taken_seq)
            if e["actor"] == RESPONDER and e["data"].get("action_id")
        ]
        assert [e["data"]["action_id"] for e in logged] == ids[:7]
        assert [e["type"] for e in logged] == ["plan.step.acknowledged"] * 5 + [
            "plan.step.started",
            "plan.step.done",
        ]
        assert [e["data"]["step_id"] for e in logged][:5] == [*ACKED, DONE_BY_PHONE]
        assert logged[-1]["data"]["data"]["reference"] == "radio log 14:02", logged[-1]
        for event, action in zip(logged, queued, strict=False):
            acted = datetime.fromisoformat(event["data"]["acted_at"].replace("Z", "+00:00"))
            assert acted == datetime.fromisoformat(action["acted_at"].replace("Z", "+00:00"))
            assert acted < datetime.fromisoformat(event["at"])
        assert len({e["seq"] for e in logged}) == 7 and [e["seq"] for e in logged] == sorted(
            e["seq"] for e in logged
        )
        # Nothing of the impossible one was logged.
        assert not [
            e
            for e in events_after(server, commander, taken_seq)
            if e["data"].get("action_id") == ids[7]
        ]

        # 4. The impossible one is shown as such, naming who did it: not pending, not an error.
        conflict = page.locator(f"#outbox li[data-state='conflict'][data-step='{TAKEN}']")
        assert "already done by" in conflict.inner_text() and COMMANDER in conflict.inner_text()
        assert queued[7]["by"] == COMMANDER
        page.wait_for_selector(f"{card(ACKED[0], incident)}[data-pending='false']")
        page.wait_for_selector("#net[data-state='online']")
        assert not errors, errors
    finally:
        context.close()


def test_the_app_installs_and_works_from_its_cache(server: LiveServer, browser: Browser) -> None:
    commander = auth(server, COMMANDER)
    incident_with_duties(server, commander)
    context = phone_context(browser)
    try:
        page = context.new_page()
        open_phone(page, server)
        page.wait_for_selector("#tasks li.card button[data-action='acknowledge']")
        if DOCS_IMG.is_dir():
            page.screenshot(path=str(DOCS_IMG / "phone-tasks.png"))
        if AXE.is_file():  # axe-core, from npm: no serious WCAG 2.1 A/AA violation, any tab
            found = []
            for language in ("zh-CN", "en"):
                page.select_option("#language", language)
                for tab in ("note", "callout", "tasks"):
                    page.click(f"#tabs button[data-tab='{tab}']")
                    found += [f"[{language} {tab}] {v}" for v in serious(axe_violations(page))]
            assert found == []
        script = page.evaluate("navigator.serviceWorker.controller.scriptURL")
        assert script == f"{server.base}/phone/sw.js"
        scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
        assert scope == f"{server.base}/phone/"
        # Chromium's own reading of the manifest and of what installing needs.
        cdp = context.new_cdp_session(page)
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [], manifest["errors"]
        parsed = json.loads(manifest["data"])
        assert parsed["start_url"] == "/phone/" and parsed["display"] == "standalone"
        # A Playwright context is an incognito profile, where Chromium never installs: that
        # reason aside, nothing stands in the way (manifest, icons, worker, scope).
        found = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
        assert [e for e in found if e["errorId"] != "in-incognito"] == [], found
        for icon in parsed["icons"]:
            answer = httpx.get(f"{server.base}{icon['src']}")
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"

        # The route: from the phone's position, along the incident's routing, on the map.
        page.click("#tabs button[data-tab='route']")
        page.wait_for_function(
            "() => document.querySelector('#route-info').textContent.includes('muster point')"
        )
        assert page.locator("#map .leaflet-interactive").count() >= 2  # the route and me
        if DOCS_IMG.is_dir():
            page.screenshot(path=str(DOCS_IMG / "phone-route.png"))

        # Offline, a new page of the app still opens, from the worker's cache only.
        context.set_offline(True)
        again = context.new_page()
        again.set_default_timeout(WAIT_MS)
        again.goto(f"{server.base}/phone/")
        again.wait_for_selector("body[data-ready='true']")
        again.wait_for_selector("#tasks li.card")
        assert "offline" in again.inner_text("#net")
    finally:
        context.close()


def test_a_note_with_a_photo_a_call_out_and_a_refusal(
    server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    commander = auth(server, COMMANDER)
    incident = incident_with_duties(server, commander)
    context = phone_context(browser)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        open_phone(page, server)
        # In Chinese, the words follow at once.
        page.select_option("#language", "zh-CN")
        assert (
            page.inner_text(f"{card(ACKED[0], incident)} button[data-action='acknowledge']")
            == "确认"
        )
        page.select_option("#language", "en")
        start = last_seq(server, commander)

        # A note with a camera's photo (4000 x 3000): scaled down on the phone before it is kept.
        big = tmp_path / "scene.jpg"
        Image.effect_noise((4000, 3000), 64).convert("RGB").save(big, quality=95)
        page.click("#tabs button[data-tab='note']")
        page.select_option("#note-incident", incident)
        page.fill("#note-form textarea", "Valve V-12 frosted over; two people at the eyewash")
        page.set_input_files("#photo", str(big))
        page.wait_for_function(
            "() => document.querySelector('#photo-info').textContent.includes('1600\\u00d71200')"
        )
        page.click("#note-form button[type='submit']")
        page.wait_for_selector("#outbox li[data-kind='note'][data-state='sent']", state="attached")
        notes = [e for e in events_after(server, commander, start) if e["type"] == "plan.note"]
        assert len(notes) == 1 and notes[0]["actor"] == RESPONDER
        logged = notes[0]["data"]
        assert "Valve V-12" in json.dumps(logged)
        digest = json.dumps(logged).split('"sha256": "')[1][:64]
        photo = httpx.get(
            f"{server.base}/api/sites/{DEMO_ID}/attachments/{digest}", headers=commander
        )
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(photo.content)).size == (1600, 1200)

        # My call-out (I hold the shift leader's duty): answered from its card.
        page.click("#tabs button[data-tab='callout']")
        mine = f"#callouts li.card[data-incident='{incident}']"  # earlier tests' call-outs too
        page.wait_for_selector(f"{mine} button[data-action='answer']")
        seq = page.get_attribute(mine, "data-seq")
        page.click(f"{mine}[data-seq='{seq}'] button[data-action='answer']")
        page.wait_for_selector(
            "#outbox li[data-kind='callout'][data-state='sent']", state="attached"
        )
        notices = httpx.get(
            f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}/notices", headers=commander
        )
        answered = [n for n in notices.json()["notices"] if str(n["seq"]) == seq]
        assert answered and answered[0]["status"] == "acknowledged", answered

        # Offline, the responder acts on a step whose duty the commander then takes back: when
        # the network returns it is refused for good (the server's words), and what follows is
        # still sent.
        page.click("#tabs button[data-tab='tasks']")
        context.set_offline(True)
        page.wait_for_function("() => !navigator.onLine")
        tap(page, "l1-remote-isolate", incident, "acknowledge")
        tap(page, "l1-don-scba", incident, "acknowledge")
        page.wait_for_selector(f"{card('l1-don-scba', incident)}[data-pending='true']")
        taken_back = httpx.delete(
            f"{server.base}/api/sites/{DEMO_ID}/incidents/{incident}/duties/control_room_operator/{RESPONDER}",
            headers=commander,
        )
        assert taken_back.status_code == 200, taken_back.text
        # The app is closed before the network returns: opened again, it sends what waits.
        page.close()
        context.set_offline(False)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.base}/phone/")
        refused = page.locator("#outbox li[data-state='refused'][data-step='l1-remote-isolate']")
        refused.wait_for()
        assert "refused" in refused.inner_text() and "control_room_operator" in refused.inner_text()
        page.wait_for_selector("#outbox li[data-state='sent'][data-step='l1-don-scba']")
        assert not page.locator("#outbox li[data-state='pending']").count()
        assert not errors, errors
    finally:
        context.close()


def test_a_server_error_keeps_the_action_and_it_is_sent_later(
    server: LiveServer, browser: Browser
) -> None:
    """A 503 (the front answers while the app restarts) or a 409 idempotency-key-in-use is no
    answer: the action stays pending, first in line, and is sent again with the same key."""
    commander = auth(server, COMMANDER)
    incident = incident_with_duties(server, commander)
    context = phone_context(browser)
    keys: list[str] = []
    refusals = [
        (503, {"type": "/problems/unavailable", "title": "Service Unavailable", "detail": "x"}),
        (409, {"type": "/problems/idempotency-key-in-use", "title": "Conflict", "detail": "y"}),
    ]

    def flaky(route: Route) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if refusals:
            status, body = refusals.pop(0)
            route.fulfill(status=status, json=body, content_type="application/problem+json")
        else:
            route.fallback()

    try:
        page = context.new_page()
        open_phone(page, server)
        context.route(f"**/incidents/{incident}/steps/**", flaky)
        start = last_seq(server, commander)
        tap(page, ACKED[0], incident, "acknowledge")
        page.wait_for_selector(f"#outbox li[data-state='sent'][data-step='{ACKED[0]}']")
        assert len(keys) == 3 and len(set(keys)) == 1  # the same action, sent three times
        logged = [e for e in events_after(server, commander, start) if e["actor"] == RESPONDER]
        assert [e["data"]["action_id"] for e in logged] == keys[:1]
    finally:
        context.close()


def test_reads_fall_back_to_the_kept_copy_when_the_server_errs(
    server: LiveServer, browser: Browser
) -> None:
    """Online, but the server answers 502 (its front, while the app restarts): the worker
    shows the kept copy, and the bar says how old it is."""
    commander = auth(server, COMMANDER)
    incident = incident_with_duties(server, commander)
    context = phone_context(browser)
    try:
        page = context.new_page()
        open_phone(page, server)
        context.route(
            "**/api/sites/*/tasks",
            lambda route: route.fulfill(status=502, body="Bad Gateway", content_type="text/plain"),
        )
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        page.wait_for_selector(card(ACKED[0], incident))
        assert "offline, as of" in page.inner_text("#net")
    finally:
        context.close()
