"""Call-tree notifications: requested on activation, acknowledged, passed on to fallbacks,
posted to a real webhook gateway with retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
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
    answer = command.post(f"{SITE}/notifications/{first['seq']}/ack")
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["contact"] == first["data"]["contact"]
    assert_problem(command.post(f"{SITE}/notifications/{first['seq']}/ack"), 404)
    assert_problem(command.post(f"{SITE}/notifications/99999/ack"), 404)


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


def test_notifications_reach_the_webhook_with_retries(db: Database, gateway: str) -> None:
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
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
    assert {"contact", "role", "site_id"} <= set(Gateway.received[0])
