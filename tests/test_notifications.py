"""Call-tree notifications: requested on activation, acknowledged, passed on to fallbacks,
posted to a real webhook gateway with retries."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from command.app import create_app
from command.auth import Role
from command.post import CommandPost
from command.settings import Settings
from gis.storage.db import Database
from plans.clock import ManualClock
from plans.store import load_plan_files
from tests.conftest import DEMO_ID, DEMO_PLANS, sign_in
from tests.problems import assert_problem
from tests.test_incidents import activate

SITE = f"/api/sites/{DEMO_ID}"


def events(client: TestClient, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        e for e in client.get(f"{SITE}/events").json()["events"] if e["type"] == kind
    ]
    return found


def test_activation_requests_every_call_tree_entry_and_an_answer_stops_it(
    command: TestClient,
) -> None:
    activate(command)  # L2: the call trees of L1 and L2
    requested = events(command, "notification.requested")
    levels = {e["data"]["level"] for e in requested}
    assert levels == {"L1", "L2"}
    first = requested[0]
    radio = {"channel": "radio"}
    answer = command.post(f"{SITE}/notifications/{first['seq']}/ack", json=radio)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["contact"] == first["data"]["contact"]
    assert (data["by"], data["channel"]) == ("commander", "radio")
    assert answer.json()["actor"] == "cmd-zhou"
    assert_problem(command.post(f"{SITE}/notifications/{first['seq']}/ack", json=radio), 404)
    assert_problem(command.post(f"{SITE}/notifications/99999/ack", json=radio), 404)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.RESPONDER, Role.PLANNER, Role.DRILL_CONTROLLER])
def test_no_one_but_the_person_called_or_a_commander_silences_the_call_tree(
    command: TestClient, db: Database, clock: ManualClock, role: Role
) -> None:
    """Issue 12's reproduction: any signed-in role could acknowledge any notification, which
    stopped its fallbacks. Now every other role is refused, and the fallback is still called."""
    activate(command)
    requested = events(command, "notification.requested")
    target = next(e for e in requested if e["data"]["fallbacks"])
    other = sign_in(db, f"someone-{role.value}".replace("_", "-"), [role])
    for body in ({"channel": "phone"}, None):
        answer = command.post(f"{SITE}/notifications/{target['seq']}/ack", json=body, headers=other)
        assert_problem(answer, 403)
    # A session token is no answer token either.
    session_token = other["Authorization"].removeprefix("Bearer ")
    answer = command.post("/api/notices/answer", json={"token": session_token}, headers={})
    assert_problem(answer, 404, field="token")
    clock.advance(target["data"]["acknowledge_within_s"] + 1)
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    post.tick()
    assert any(
        e["data"].get("after") == target["seq"] for e in events(command, "notification.requested")
    ), "the fallback was called"
    assert not events(command, "notification.acknowledged")


def test_a_commander_must_say_how_the_person_was_reached(command: TestClient) -> None:
    activate(command)
    seq = events(command, "notification.requested")[0]["seq"]
    assert_problem(command.post(f"{SITE}/notifications/{seq}/ack"), 422)
    assert_problem(
        command.post(f"{SITE}/notifications/{seq}/ack", json={"channel": "telepathy"}),
        422,
        field="body.channel",
    )
    assert not events(command, "notification.acknowledged")


def test_silence_passes_the_call_to_the_fallback_then_to_unanswered(
    command: TestClient, clock: ManualClock
) -> None:
    activate(command)
    requested = events(command, "notification.requested")
    with_fallback = next(e for e in requested if e["data"]["fallbacks"])
    alone = next((e for e in requested if not e["data"]["fallbacks"]), None)
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    post.tick()
    assert not any(
        e["data"].get("after") == with_fallback["seq"]
        for e in events(command, "notification.requested")
    )
    clock.advance(with_fallback["data"]["acknowledge_within_s"] + 1)
    post.tick()
    passed = [
        e
        for e in events(command, "notification.requested")
        if e["data"].get("after") == with_fallback["seq"]
    ]
    assert len(passed) == 1 and passed[0]["data"]["fallback"] is True
    assert passed[0]["data"]["contact"] == with_fallback["data"]["fallbacks"][0]
    if alone is not None:
        clock.advance(alone["data"]["acknowledge_within_s"] + 1)
        post.tick()
        assert any(
            e["data"]["after"] == alone["seq"] for e in events(command, "notification.unanswered")
        )


class Gateway(BaseHTTPRequestHandler):
    """An SMS gateway that fails each message's first attempt."""

    received: ClassVar[list[dict[str, Any]]] = []
    seen: ClassVar[set[int]] = set()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Gateway.received.append(body)
        first = body["notification"] not in Gateway.seen
        Gateway.seen.add(body["notification"])
        self.send_response(503 if first else 202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Gateway.received, Gateway.seen = [], set()
    yield f"http://127.0.0.1:{server.server_address[1]}/sms"
    server.shutdown()


def test_notifications_reach_the_webhook_with_retries(
    db: Database, gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    # The gateway's key rides in its URL, as many SMS gateways want it: never in the log.
    gateway = f"{gateway}?api_key=gw-secret-4711"
    settings = Settings(database_url=str(db.engine.url), webhook_url=gateway)
    app = create_app(settings, database=db, clock=ManualClock(), ticking=False)
    with TestClient(app) as client:
        client.headers.update(sign_in(db, "cmd-li", [Role.COMMANDER]))
        activate(client)
        wanted = len(events(client, "notification.requested"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            delivered = events(client, "notification.delivered")
            if len(delivered) == wanted:
                break
            time.sleep(0.1)
    assert len(delivered) == wanted
    assert {e["data"]["attempts"] for e in delivered} == {2}  # the first attempt failed
    assert len(Gateway.received) == 2 * wanted
    assert {"contact", "role", "site_id", "answer_token", "answer_url"} <= set(Gateway.received[0])
    assert not any("gw-secret-4711" in r.getMessage() for r in caplog.records)


def test_the_person_called_answers_with_the_token_of_their_call_out(
    db: Database, gateway: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway gets each notice's own token and link; the link's token answers that notice
    and no other, once, without signing in; the token is in no event and no log line."""
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    settings = Settings(
        database_url=str(db.engine.url),
        webhook_url=gateway,
        public_url="https://rallypoint.plant.example/",
    )
    clock = ManualClock()
    app = create_app(settings, database=db, clock=clock, ticking=False)
    with TestClient(app) as client:
        commander = sign_in(db, "cmd-li", [Role.COMMANDER])
        client.headers.update(commander)
        activate(client)
        wanted = len(events(client, "notification.requested"))
        deadline = time.monotonic() + 20
        while len({m["notification"] for m in Gateway.received}) < wanted:
            assert time.monotonic() < deadline, "the gateway never got every notice"
            time.sleep(0.05)
        by_notice = {m["notification"]: m for m in Gateway.received}
        tokens = {m["answer_token"] for m in by_notice.values()}
        assert len(tokens) == wanted, "each notice has its own token"
        first, second = sorted(by_notice)[:2]
        token = by_notice[first]["answer_token"]
        assert by_notice[first]["answer_url"] == (
            f"https://rallypoint.plant.example/answer#{token}"
        )
        client.headers.pop("Authorization")
        answer = client.post("/api/notices/answer", json={"token": token})
        assert answer.status_code == 200, answer.text
        assert answer.json()["notification"] == first
        replay = client.post("/api/notices/answer", json={"token": token})
        assert_problem(replay, 409, field="token")
        client.headers.update(commander)
        acknowledged = events(client, "notification.acknowledged")
        assert [e["data"]["notification"] for e in acknowledged] == [first]
        assert acknowledged[0]["data"]["by"] == "contact"
        assert acknowledged[0]["data"]["channel"] == "link"
        # The other notice is still waiting: its fallback is called when its time is up.
        waited = next(e for e in events(client, "notification.requested") if e["seq"] == second)
        clock.advance(waited["data"]["acknowledge_within_s"] + 1)
        post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
        post.tick()
        passed_on = {
            e["data"].get("after")
            for e in events(client, "notification.requested")
            + events(client, "notification.unanswered")
        }
        assert second in passed_on and first not in passed_on
        log_text = json.dumps(client.get(f"{SITE}/events?limit=1000").json())
        assert not any(t in log_text for t in tokens), "a token reached the event log"
    assert not any(any(t in r.getMessage() for t in tokens) for r in caplog.records)


def test_the_answer_page_takes_the_token_from_the_fragment_only(
    anonymous_client: TestClient,
) -> None:
    page = anonymous_client.get("/answer")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert '<script src="/static/answer.js"></script>' in page.text
    script = anonymous_client.get("/static/answer.js").text
    assert "location.hash" in script and "history.replaceState" in script


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (Role.COMMANDER, 200),
        (Role.RESPONDER, 200),
        (Role.VIEWER, 403),
        (Role.PLANNER, 403),
        (Role.DRILL_CONTROLLER, 403),
    ],
)
def test_notes_follow_the_readmes_roles(
    command: TestClient, db: Database, role: Role, status: int
) -> None:
    """README: a responder adds notes, a commander commands the run; viewers, planners and
    drill controllers read."""
    incident = activate(command)["incident"]["id"]
    headers = sign_in(db, f"noter-{role.value}".replace("_", "-"), [role])
    answer = command.post(
        f"{SITE}/incidents/{incident}/notes", json={"text": "seen smoke at gate 3"}, headers=headers
    )
    assert answer.status_code == status, answer.text


def test_each_fallback_call_out_goes_to_the_contact_its_event_names(
    command: TestClient, clock: ManualClock
) -> None:
    """Found with the drills (issue 14): a fallback's notice counted its place in the whole call
    tree inside the shorter list of the contacts left, so the gateway got the wrong person for
    the second fallback, and an IndexError for the last one."""
    sent: list[Any] = []
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    post.outbox = sent.extend  # what the webhook sender is handed, notice by notice
    activate(command)
    requested = events(command, "notification.requested")
    longest = max(requested, key=lambda e: len(e["data"]["fallbacks"]))
    assert len(longest["data"]["fallbacks"]) >= 1
    chain = [longest["data"]["contact"], *longest["data"]["fallbacks"]]
    for _ in chain[1:]:
        clock.advance(max(e["data"]["acknowledge_within_s"] for e in requested) + 1)
        post.tick()
    called = [
        e
        for e in events(command, "notification.requested")
        if e["seq"] == longest["seq"] or e["data"].get("fallback")
    ]
    for event in called:
        notice = next(n for n in sent if n.seq == event["seq"])
        assert notice.contact == event["data"]["contact"]
    ours = [longest["data"]["contact"]]
    after = longest["seq"]
    while nxt := next((e for e in called if e["data"].get("after") == after), None):
        ours.append(nxt["data"]["contact"])
        assert nxt["data"]["index"] == len(ours) - 1
        after = nxt["seq"]
    assert ours == chain
