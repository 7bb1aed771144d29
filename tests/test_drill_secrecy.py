"""Secrecy of a scheduled drill (issue 14, item 4): before it starts, no role but the drill
controller gets at its scenario, schedule or injects, through any route, error message, listing
count or websocket message. Every route of the app is called by every other role, each answer
searched for what only the scenario holds."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect

from command.auth import USER_ROLES, Role, create_device_token
from command.drills import DrillDesk
from gis.storage.db import Database
from tests.conftest import DEMO_ID, live_with_tokens, sign_in
from tests.live_server import LiveServer
from tests.test_auth import PATH_PARAM, ROUTES, Endpoint, bearer
from tests.test_drills import SCENARIO
from tests.test_ws import WAIT_S, auth

SITE = f"/api/sites/{DEMO_ID}"
#: Written only into the scenario: any answer holding one of these has leaked it.
MARKER = "Xylophone-7c1e"


def secret_scenario() -> dict[str, Any]:
    scenario = copy.deepcopy(SCENARIO)
    scenario["id"] = "xylophone-drill"
    scenario["title"] = f"{MARKER} night release"
    for inject in scenario["injects"]:
        inject["title"] = f"{MARKER} {inject['title']}"
    return scenario


def window() -> dict[str, Any]:
    return {"start": "2026-06-03T08:00:00+08:00", "end": "2026-06-05T18:00:00+08:00"}


@pytest.fixture
def scheduled(command: TestClient, db: Database) -> dict[str, Any]:
    controller = sign_in(db, "ctl-secret", [Role.DRILL_CONTROLLER])
    before = command.get(f"{SITE}/events", params={"limit": 1}).json()
    saved = command.post(f"{SITE}/drills/scenarios", json=secret_scenario(), headers=controller)
    assert saved.status_code == 201, saved.text
    drill = command.post(
        f"{SITE}/drills",
        json={"scenario_id": "xylophone-drill", "mode": "blind", "window": window()},
        headers=controller,
    )
    assert drill.status_code == 201, drill.text
    return {"drill": drill.json(), "before": before, "controller": controller}


def headers_for(db: Database, role: Role) -> dict[str, str]:
    if role is Role.DEVICE:
        with db.write() as session:
            token = create_device_token(session, DEMO_ID, "secret", timedelta(hours=1)).token
        return bearer(token)
    return sign_in(db, f"secret-{role.value.replace('_', '-')}", [role])


OTHERS = [Role.DEVICE, *sorted(USER_ROLES - {Role.DRILL_CONTROLLER})]


def _url(endpoint: Endpoint, drill: dict[str, Any]) -> str:
    values = {
        "site_id": DEMO_ID,
        "drill_id": drill["id"],
        "scenario_id": drill["scenario_id"],
        "layer": "zones",
        "feature_id": "Z-001",
        "plan_id": "chlorine-leak",
        "incident_id": "inc-none",
    }
    return PATH_PARAM.sub(lambda m: values.get(m[1], "x"), endpoint.path)


def test_no_other_role_finds_a_trace_of_a_scheduled_drill_on_any_route(
    command: TestClient, db: Database, scheduled: dict[str, Any]
) -> None:
    drill = scheduled["drill"]
    secrets = [MARKER, drill["id"], drill["scenario_id"], "sealed"]
    # Nothing reached the log: the site's sequence did not move.
    after = command.get(f"{SITE}/events", params={"limit": 1}).json()
    assert after == scheduled["before"]
    for role in OTHERS:
        headers = headers_for(db, role)
        for endpoint in ROUTES:
            if endpoint.path.startswith("/api/admin") and role is not Role.ADMIN:
                continue
            body: dict[str, Any] | None = (
                {} if endpoint.method in ("POST", "PUT", "PATCH") else None
            )
            if endpoint.method != "GET" and not endpoint.path.startswith(f"{SITE_ROUTE}/drills"):
                continue  # changes elsewhere are the role matrix's (tests/test_auth.py)
            answer = command.request(
                endpoint.method, _url(endpoint, drill), json=body, headers=headers
            )
            text = answer.text
            if answer.headers.get("content-type", "").startswith("application/problem+json"):
                # "instance" echoes the path the caller sent, ids and all: not a leak.
                text = json.dumps({k: v for k, v in answer.json().items() if k != "instance"})
            where = f"{role.value}: {endpoint}"
            assert not any(s in text for s in secrets), (where, text[:300])
            if endpoint.path.startswith(f"{SITE_ROUTE}/drills"):
                assert answer.status_code == 403, (where, answer.status_code)


SITE_ROUTE = "/api/sites/{site_id}"


def test_while_a_drill_runs_its_scenario_stays_the_controllers(
    command: TestClient, db: Database, clock: Any
) -> None:
    """Started, the drill is revealed (its incident marked, the banner on every wall), but its
    scenario is not: the injects to come, the actions expected and their targets, the
    contingencies, the evaluator's notes. No other role finds them on any route."""
    controller = sign_in(db, "ctl-running", [Role.DRILL_CONTROLLER])
    assert (
        command.post(
            f"{SITE}/drills/scenarios", json=secret_scenario(), headers=controller
        ).status_code
        == 201
    )
    drill = command.post(
        f"{SITE}/drills",
        json={"scenario_id": "xylophone-drill", "mode": "announced"},
        headers=controller,
    ).json()
    post = command.app.state.post  # type: ignore[attr-defined]
    clock.advance(200)  # injects fire, the first expected action is missed, a contingency fires
    post.tick()
    note = command.post(
        f"{SITE}/drills/{drill['id']}/notes",
        json={"text": f"{MARKER} the shift leader hesitated"},
        headers=controller,
    )
    assert note.status_code == 200, note.text
    kept = command.get(f"{SITE}/drills/{drill['id']}/events", headers=controller).json()
    assert {"drill.inject", "drill.action_missed", "drill.note"} <= {
        e["type"] for e in kept["events"]
    }
    secrets = [MARKER, "xylophone", "first-report", "target_s", "on_miss"]
    for role in OTHERS:
        headers = headers_for(db, role)
        for endpoint in ROUTES:
            if endpoint.method != "GET":
                continue
            answer = command.get(_url(endpoint, drill), headers=headers)
            text = answer.text
            if answer.headers.get("content-type", "").startswith("application/problem+json"):
                text = json.dumps({k: v for k, v in answer.json().items() if k != "instance"})
            assert not any(s in text for s in secrets), (f"{role.value}: {endpoint}", text[:300])
    # Once it ends, the record joins the log for everyone's review.
    command.post(f"{SITE}/drills/{drill['id']}/end", json={}, headers=controller)
    logged = command.get(f"{SITE}/events", params={"limit": 1000}).json()["events"]
    assert any(e["type"] == "drill.note" and MARKER in e["data"]["text"] for e in logged)


def test_a_player_cannot_tell_a_drill_id_from_a_made_up_one(
    command: TestClient, db: Database, scheduled: dict[str, Any]
) -> None:
    """The same refusal, word for word, whether the drill exists or not."""
    drill = scheduled["drill"]
    for role in OTHERS:
        headers = headers_for(db, role)
        for suffix in ("", "/hold", "/end"):
            method = "GET" if not suffix else "POST"
            real = command.request(method, f"{SITE}/drills/{drill['id']}{suffix}", headers=headers)
            fake = command.request(
                method, f"{SITE}/drills/drill-000000000000{suffix}", headers=headers
            )
            assert real.status_code == fake.status_code == 403
            assert _without_instance(real.json()) == _without_instance(fake.json())


def _without_instance(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem less its "instance" (the path the caller sent)."""
    return {k: v for k, v in problem.items() if k != "instance"}


def test_scenarios_are_not_plans(command: TestClient, scheduled: dict[str, Any]) -> None:
    plans = command.get(f"{SITE}/plans").json()["plans"]
    assert "xylophone-drill" not in {p["id"] for p in plans}
    assert command.get(f"{SITE}/plans/xylophone-drill").status_code == 404


def test_the_controller_sees_the_window_never_the_start(
    command: TestClient, scheduled: dict[str, Any]
) -> None:
    controller = scheduled["controller"]
    drill = scheduled["drill"]
    desk: DrillDesk = command.app.state.drills  # type: ignore[attr-defined]
    for answer in (
        command.get(f"{SITE}/drills", headers=controller),
        command.get(f"{SITE}/drills/{drill['id']}", headers=controller),
    ):
        text = answer.text
        assert answer.status_code == 200 and drill["window"]["start"] in text
        with desk.db.read() as session:
            from gis.storage.tables import DrillRow

            row = session.get(DrillRow, drill["id"])
            assert row is not None and row.sealed_start is not None
            sealed = row.sealed_start
        for shown in (sealed.isoformat(), sealed.astimezone().isoformat()[:16]):
            assert shown not in text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    users = {"ctl": Role.DRILL_CONTROLLER, "watcher": Role.VIEWER, "chief": Role.COMMANDER}
    yield from live_with_tokens(tmp_path_factory.mktemp("secrecy") / "rallypoint.db", users)


def test_no_websocket_message_carries_a_scheduled_drill(
    live: tuple[LiveServer, dict[str, str]],
) -> None:
    """Subscribers on a real socket get nothing when a drill is written and scheduled, and
    their snapshot holds none of it."""
    import httpx

    server, tokens = live

    async def run() -> list[str]:
        seen: list[str] = []
        for who in ("watcher", "chief"):
            async with connect(server.ws_url, additional_headers=auth(tokens[who])) as socket:
                await socket.send(json.dumps({"type": "subscribe", "site": DEMO_ID}))
                seen.append(str(await asyncio.wait_for(socket.recv(), WAIT_S)))
                if who == "watcher":
                    await asyncio.to_thread(schedule)
                try:
                    while True:
                        seen.append(str(await asyncio.wait_for(socket.recv(), 1.0)))
                except TimeoutError:
                    pass
        return seen

    def schedule() -> None:
        headers = auth(tokens["ctl"])
        saved = httpx.post(
            f"{server.base}{SITE}/drills/scenarios", json=secret_scenario(), headers=headers
        )
        assert saved.status_code == 201, saved.text
        drill = httpx.post(
            f"{server.base}{SITE}/drills",
            json={"scenario_id": "xylophone-drill", "mode": "blind", "window": ahead},
            headers=headers,
        )
        assert drill.status_code == 201, drill.text

    now = datetime.now(UTC)  # the live server runs on the system clock
    ahead = {
        "start": (now + timedelta(days=1)).isoformat(),
        "end": (now + timedelta(days=3)).isoformat(),
    }
    seen = asyncio.run(run())
    assert seen and all(MARKER not in m and "xylophone" not in m for m in seen)
    assert all(json.loads(m)["type"] != "event" for m in seen[1:])
