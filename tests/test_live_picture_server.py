"""Issue 11's reproductions against the real server, as users trigger them: HTTP requests from a
commander, a planner and a gateway, and a map wall's websocket (a real client on a real socket).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from shapely.geometry import shape
from websockets.asyncio.client import connect

from command.auth import Role, create_device_token, create_user, issue_token
from gis.storage.db import Database, make_engine
from tests.conftest import DEMO_ID, DEMO_SITE, FAST_HASHER, TEST_PASSWORD, site_database
from tests.live_server import LiveServer
from tests.test_incidents import chlorine
from tests.test_ws import Subscriber, subscribe_message

SITE = f"/api/sites/{DEMO_ID}"
WAIT_S = 10.0
ZONES = json.loads((DEMO_SITE / "zones.geojson").read_text(encoding="utf-8"))["features"]
AREAS = {f["id"]: shape(f["geometry"]) for f in ZONES}
N1, E1 = "Z-004", "Z-032"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    path: Path = tmp_path_factory.mktemp("live-picture") / "rallypoint.db"
    engine = make_engine(site_database(path))
    with Database(engine).write() as session:
        tokens = {}
        for name, role in (("commander", Role.COMMANDER), ("planner", Role.PLANNER)):
            user = create_user(session, name, TEST_PASSWORD, [role], hasher=FAST_HASHER)
            tokens[name] = issue_token(session, user, ttl_s=3600).token
        tokens["device"] = create_device_token(session, DEMO_ID, "gateway", None).token
    engine.dispose()
    with LiveServer(f"sqlite:///{path}") as live:
        yield live, tokens


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def wall(live: LiveServer, token: str) -> AsyncIterator[tuple[Subscriber, dict[str, Any]]]:
    """A map wall's websocket, subscribed to the demo site: the client and its snapshot."""
    async with connect(
        live.ws_url, additional_headers=headers(token), open_timeout=WAIT_S, max_size=None
    ) as ws:
        await ws.send(subscribe_message())
        client = Subscriber(ws)
        snapshot = await client.recv()
        assert snapshot["type"] == "snapshot"
        yield client, snapshot


async def picture_for(client: Subscriber, incident: str) -> dict[str, Any]:
    """The next new picture of ``incident`` the wall receives."""
    messages = await client.until(
        lambda m: m["type"] == "incident" and m["incident_id"] == incident
    )
    picture: dict[str, Any] = messages[-1]["snapshot"]
    return picture


async def activate(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post(f"{SITE}/incidents", json={**body, "second_incident": True})
    assert answer.status_code == 201, answer.text
    picture: dict[str, Any] = answer.json()
    return picture


async def stand_down(http: httpx.AsyncClient, incident: str) -> None:
    answer = await http.post(
        f"{SITE}/incidents/{incident}/stand-down", json={"force": True, "reason": "test over"}
    )
    assert answer.status_code == 200, answer.text


def moving(picture: dict[str, Any]) -> set[str]:
    return {p["id"] for p in picture["evacuation"]["people"]}


def test_escalation_widens_the_evacuation_on_the_wall(
    server: tuple[LiveServer, dict[str, str]],
) -> None:
    live, tokens = server

    async def run() -> None:
        async with (
            httpx.AsyncClient(base_url=live.base, headers=headers(tokens["commander"])) as http,
            wall(live, tokens["commander"]) as (client, _),
        ):
            first = await activate(http, chlorine("L2"))
            incident = first["incident"]["id"]
            await picture_for(client, incident)
            on_site = first["headcount"]["on_site"]
            assert len(moving(first)) < on_site
            answer = await http.post(f"{SITE}/incidents/{incident}/escalate")
            assert answer.status_code == 200, answer.text
            at_l3 = await picture_for(client, incident)
            assert at_l3["plan"]["level"] == "L3" and len(moving(at_l3)) == on_site
            await stand_down(http, incident)

    asyncio.run(run())


def test_musters_in_the_zones_are_refused_and_a_wall_opened_later_sees_positions_now(
    server: tuple[LiveServer, dict[str, str]],
) -> None:
    live, tokens = server

    async def run() -> None:
        async with httpx.AsyncClient(
            base_url=live.base, headers=headers(tokens["commander"])
        ) as http:
            picture = await activate(http, chlorine("L3", wind_from_deg=270))
            incident = picture["incident"]["id"]
            assert E1 in picture["evacuation"]["unusable_musters"]
            assert E1 not in {p["muster"] for p in picture["evacuation"]["people"]}
            # A gateway reports two people at N1; a wall opened afterwards draws them there.
            n1 = AREAS[N1].representative_point()
            rows = [{"person_id": p, "lon": n1.x, "lat": n1.y} for p in ("P-0011", "P-0012")]
            gateway = headers(tokens["device"])
            answer = await http.post(f"{SITE}/positions", json={"positions": rows}, headers=gateway)
            assert answer.status_code == 200, answer.text
            async with wall(live, tokens["commander"]) as (_, snapshot):
                assert snapshot["positions"]["P-0011"][:2] == [n1.x, n1.y]
                [shown] = [i for i in snapshot["incidents"] if i["incident"]["id"] == incident]
                assert shown["headcount"]["at"][N1] >= 2
            await stand_down(http, incident)

    asyncio.run(run())


def test_a_planners_edit_keeps_the_headcount_and_the_wall_is_told(
    server: tuple[LiveServer, dict[str, str]],
) -> None:
    live, tokens = server

    async def run() -> None:
        async with (
            httpx.AsyncClient(base_url=live.base, headers=headers(tokens["commander"])) as http,
            wall(live, tokens["commander"]) as (client, _),
        ):
            incident = (await activate(http, chlorine("L2")))["incident"]["id"]
            await picture_for(client, incident)
            n1 = AREAS[N1].representative_point()
            rows = [{"person_id": p, "lon": n1.x, "lat": n1.y} for p in ("P-0021", "P-0022")]
            counted = await http.post(f"{SITE}/positions", json={"positions": rows})
            before = counted.json()["headcount"]["at"][N1]
            planner = headers(tokens["planner"])
            zone = (await http.get(f"{SITE}/layers/zones/features/Z-001", headers=planner)).json()
            answer = await http.patch(
                f"{SITE}/layers/zones/features/Z-001",
                json={"properties": {"capacity": 12, "version": zone["properties"]["version"]}},
                headers=planner,
            )
            assert answer.status_code == 200, answer.text
            assert incident in answer.headers["Rallypoint-Warning"]
            messages = await client.until(
                lambda m: m["type"] == "incident" and m["incident_id"] == incident
            )
            events = [m["event"] for m in messages if m["type"] == "event"]
            assert any(
                e["type"] == "incident.network_changed" and e["incident_id"] == incident
                for e in events
            )
            assert messages[-1]["snapshot"]["headcount"]["at"][N1] == before
            await stand_down(http, incident)

    asyncio.run(run())


def test_an_old_batch_replayed_by_a_gateway_moves_nobody_back(
    server: tuple[LiveServer, dict[str, str]],
) -> None:
    live, tokens = server
    n1 = AREAS[N1].representative_point()
    gateway = headers(tokens["device"])
    now = datetime.now(UTC)
    newer = {"person_id": "P-0031", "lon": n1.x, "lat": n1.y, "observed_at": now.isoformat()}
    older = {
        **newer,
        "lon": 121.35,
        "lat": 30.72,
        "observed_at": (now - timedelta(minutes=1)).isoformat(),
    }
    with httpx.Client(base_url=live.base, headers=gateway) as http:
        assert http.post(f"{SITE}/positions", json={"positions": [newer]}).json()["accepted"] == 1
        replay = http.post(f"{SITE}/positions", json={"positions": [older]}).json()
    assert replay["stale"] == ["P-0031"]
    model = live.post.model(DEMO_ID)
    assert tuple(model.person_lonlat[model.person_row["P-0031"]]) == (n1.x, n1.y)


def test_duplicates_stand_down_and_closed_incidents_over_http(
    server: tuple[LiveServer, dict[str, str]],
) -> None:
    live, tokens = server
    with httpx.Client(base_url=live.base, headers=headers(tokens["commander"])) as http:
        for old in http.get(f"{SITE}/incidents").json()["incidents"]:
            http.post(
                f"{SITE}/incidents/{old['id']}/stand-down", json={"force": True, "reason": "reset"}
            )
        first = http.post(f"{SITE}/incidents", json=chlorine("L2"))
        assert first.status_code == 201, first.text
        incident = first.json()["incident"]["id"]
        twice = http.post(f"{SITE}/incidents", json=chlorine("L2"))
        assert twice.status_code == 409 and twice.json()["incident_id"] == incident
        assert twice.headers["content-type"] == "application/problem+json"
        refused = http.post(f"{SITE}/incidents/{incident}/stand-down")
        assert refused.status_code == 409 and refused.json()["open_steps"]
        closed = http.post(
            f"{SITE}/incidents/{incident}/stand-down", json={"force": True, "reason": "drill"}
        )
        assert closed.status_code == 200, closed.text
        final = http.get(f"{SITE}/incidents/{incident}")
        assert final.status_code == 200 and final.json()["incident"]["status"] == "closed"
        past = http.get(f"{SITE}/incidents", params={"state": "closed"}).json()["incidents"]
        assert incident in {i["id"] for i in past}
