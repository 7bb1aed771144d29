"""CAP 1.2 alerts from the running command post (issue 14, item 10): an activation, an
escalation and a stand-down each give one alert, logged as ``cap.alert`` and posted to a real
HTTP receiver as ``application/cap+xml``; a drill's are ``Exercise`` and reach the platform only
when it is configured as exercise-safe. Each alert is checked here with xmlschema against the
bundled OASIS schema, loaded by the test itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar
from xml.etree import ElementTree as ET

import pytest
import xmlschema
from fastapi.testclient import TestClient

from command.app import create_app
from command.auth import Role
from command.post import CommandPost
from command.settings import Settings
from gis.storage.db import Database
from plans.clock import ManualClock
from plans.store import load_plan_files
from tests.conftest import DEMO_ID, DEMO_PLANS, sign_in
from tests.test_drills import SCENARIO

SITE = f"/api/sites/{DEMO_ID}"
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
SCHEMA = xmlschema.XMLSchema10("command/schemas/CAP-v1.2.xsd")


class Platform(BaseHTTPRequestHandler):
    """The park's alert platform: keeps what it is sent."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Platform.received.append((self.headers["Content-Type"], body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def platform() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Platform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Platform.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}/cap"
    server.shutdown()


def _app(db: Database, platform: str, clock: ManualClock, **settings: Any) -> TestClient:
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    app = create_app(
        Settings(database_url=str(db.engine.url), cap_webhook_url=platform, **settings),
        database=db,
        clock=clock,
        ticking=False,
    )
    return TestClient(app)


def _events(client: TestClient, kind: str) -> list[dict[str, Any]]:
    found = client.get(f"{SITE}/events", params={"limit": 1000}).json()["events"]
    return [e for e in found if e["type"] == kind]


def _wait_for(count: int) -> None:
    deadline = time.monotonic() + 10
    while len(Platform.received) < count:
        assert time.monotonic() < deadline, f"the platform got {len(Platform.received)} alerts"
        time.sleep(0.05)


def test_activation_escalation_and_stand_down_each_send_a_valid_alert(
    db: Database, platform: str
) -> None:
    clock = ManualClock()
    with _app(db, platform, clock) as client:
        client.headers.update(sign_in(db, "cmd-cap", [Role.COMMANDER]))
        post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
        from tests.test_incidents import activate

        incident = activate(client)["incident"]["id"]
        assert _events(client, "cap.alert") == []  # made on the tick, off the activation's path
        post.tick()
        assert client.post(f"{SITE}/incidents/{incident}/escalate", json={}).status_code == 200
        post.tick()
        closed = client.post(
            f"{SITE}/incidents/{incident}/stand-down", json={"force": True, "reason": "drill over"}
        )
        assert closed.status_code == 200, closed.text
        post.tick()
        logged = _events(client, "cap.alert")
        assert [e["data"]["msg_type"] for e in logged] == ["Alert", "Update", "Update"]
        _wait_for(3)
        deadline = time.monotonic() + 10
        while len(_events(client, "cap.delivered")) < 3:
            assert time.monotonic() < deadline, "the deliveries were not logged"
            time.sleep(0.05)
    assert {kind for kind, _ in Platform.received} == {"application/cap+xml"}
    sent = {body for _, body in Platform.received}
    assert sent == {e["data"]["xml"].encode() for e in logged}
    first_id = None
    for event in logged:
        xml = event["data"]["xml"]
        SCHEMA.validate(xml)
        root = ET.fromstring(xml)
        assert root.findtext("cap:status", namespaces=NS) == "Actual"
        sent_at = root.findtext("cap:sent", namespaces=NS) or ""
        assert sent_at.endswith("+08:00"), sent_at  # the site's offset, never "Z"
        for polygon in root.iterfind(".//cap:polygon", NS):
            pairs = (polygon.text or "").split()
            assert len(pairs) >= 4 and pairs[0] == pairs[-1]
            lat, lon = map(float, pairs[0].split(","))
            assert 30 < lat < 31 and 121 < lon < 122  # lat first
        if first_id is None:
            first_id = root.findtext("cap:identifier", namespaces=NS)
        else:
            assert first_id in (root.findtext("cap:references", namespaces=NS) or "")
    closing = ET.fromstring(logged[-1]["data"]["xml"])
    assert closing.findtext(".//cap:responseType", namespaces=NS) == "AllClear"


@pytest.mark.parametrize("safe", [False, True])
def test_a_drills_alerts_are_exercise_and_reach_only_an_exercise_safe_platform(
    db: Database, platform: str, safe: bool
) -> None:
    clock = ManualClock()
    with _app(db, platform, clock, cap_exercise_safe=safe) as client:
        controller = sign_in(db, "ctl-cap", [Role.DRILL_CONTROLLER])
        client.headers.update(sign_in(db, "viewer-cap", [Role.VIEWER]))
        post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
        client.post(f"{SITE}/drills/scenarios", json=SCENARIO, headers=controller)
        drill = client.post(
            f"{SITE}/drills",
            json={"scenario_id": SCENARIO["id"], "mode": "announced"},
            headers=controller,
        )
        assert drill.status_code == 201, drill.text
        post.tick()
        [alert] = _events(client, "cap.alert")
        SCHEMA.validate(alert["data"]["xml"])
        root = ET.fromstring(alert["data"]["xml"])
        assert root.findtext("cap:status", namespaces=NS) == "Exercise"
        assert "EXERCISE / 演练" in (root.findtext(".//cap:headline", namespaces=NS) or "")
        assert alert["data"]["exercise"] == drill.json()["id"]
        if safe:
            _wait_for(1)
        else:
            time.sleep(0.3)  # a post that should not happen: give it time to show
            assert Platform.received == []
