"""The device feed (/ws/sites/{site}/feed) against a real server, with real websocket clients:
batches of readings and positions are taken as the REST endpoints take them, answered in order,
and refused whole with a problem body that leaves the connection open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import DEMO_ID, TEST_PASSWORD
from tests.live_server import LiveServer
from tests.test_ws import (
    WAIT_S,
    Tokens,
    auth,
    copy_database,
    subscribed,
    template,  # noqa: F401  (the module's database template, a fixture)
    verify_chain,
    ws_ticket,
)

CL2 = "S-057"  # a chlorine detector of the demo site: warning 0.5, alarm 1, high alarm 3 ppm
MUSTER_POINT = (121.34490975, 30.7184466)  # inside muster point Z-033


@pytest.fixture
def server(template: tuple[Path, Tokens], tmp_path: Path) -> Iterator[LiveServer]:  # noqa: F811
    url = copy_database(template, tmp_path / "feed.db")
    with LiveServer(url) as live:
        yield live
    verify_chain(url)


@pytest.fixture
def tokens(template: tuple[Path, Tokens]) -> Tokens:  # noqa: F811
    return template[1]


def feed_url(server: LiveServer, site: str = DEMO_ID) -> str:
    return f"{server.ws_url}/sites/{site}/feed"


async def ask(ws: ClientConnection, message: dict[str, Any] | str) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    return answer


def log_of(server: LiveServer, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.base}/api/sites/{DEMO_ID}/events", headers=auth(token), timeout=WAIT_S
    )
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_a_device_feeds_readings_and_subscribers_see_their_events(
    server: LiveServer, tokens: Tokens
) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with subscribed(server, tokens.viewer) as watcher:
            assert (await watcher.recv())["type"] == "snapshot"
            async with connect(
                feed_url(server), additional_headers=auth(tokens.device), open_timeout=WAIT_S
            ) as ws:
                answers = [
                    await ask(
                        ws,
                        {
                            "type": "readings",
                            "id": f"r-{i}",
                            "readings": [{"sensor_id": CL2, "value": v}],
                        },
                    )
                    for i, v in enumerate((0.6, 0.7, 1.4))
                ]
            seen = await watcher.until(lambda m: m.get("event", {}).get("type") == "plan.proposed")
        return answers, seen

    answers, seen = asyncio.run(scenario())
    assert [a["type"] for a in answers] == ["ack", "ack", "ack"]
    assert [a["id"] for a in answers] == ["r-0", "r-1", "r-2"]
    warning, quiet, alarm = answers
    # The warning, and the check it asks of the post; the same tier again is no event.
    assert len(warning["events"]) == 2 and quiet["events"] == []
    assert len(alarm["events"]) == 2  # the alarm, and the plan it proposes
    events = {m["seq"]: m["event"] for m in seen if m["type"] == "event"}
    assert events[warning["events"][0]]["data"]["to"] == "warning"
    assert events[alarm["events"][1]]["type"] == "plan.proposed"
    assert events[alarm["events"][0]]["actor"].startswith("device")


def test_a_device_feeds_positions(server: LiveServer, tokens: Tokens) -> None:
    async def scenario() -> dict[str, Any]:
        async with connect(
            feed_url(server), additional_headers=auth(tokens.device), open_timeout=WAIT_S
        ) as ws:
            lon, lat = MUSTER_POINT
            return await ask(
                ws,
                {
                    "type": "positions",
                    "id": 7,
                    "positions": [
                        {"person_id": "P-0001", "lon": lon, "lat": lat},
                        {"person_id": "nobody", "lon": lon, "lat": lat},
                    ],
                },
            )

    answer = asyncio.run(scenario())
    assert answer == {"type": "ack", "id": 7, "accepted": 1, "unknown": ["nobody"], "events": []}


def test_a_bad_batch_is_refused_whole_and_the_feed_goes_on(
    server: LiveServer, tokens: Tokens
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with connect(
            feed_url(server), additional_headers=auth(tokens.device), open_timeout=WAIT_S
        ) as ws:
            return [
                # One good reading and one bad: neither is taken.
                await ask(
                    ws,
                    {
                        "type": "readings",
                        "id": "bad",
                        "readings": [
                            {"sensor_id": CL2, "value": 5.0},
                            {"sensor_id": CL2, "value": "high"},
                        ],
                    },
                ),
                await ask(
                    ws,
                    {
                        "type": "readings",
                        "id": "unknown",
                        "readings": [{"sensor_id": "S-999", "value": 1}],
                    },
                ),
                await ask(
                    ws,
                    {
                        "type": "positions",
                        "id": "far",
                        "positions": [{"person_id": "P-0001", "lon": 200, "lat": 0}],
                    },
                ),
                await ask(ws, {"type": "selfie", "id": "what"}),
                await ask(ws, "readings please"),
                await ask(ws, "x" * (4 * 1024 * 1024 + 1)),
                await ask(
                    ws,
                    {
                        "type": "readings",
                        "id": "good",
                        "readings": [{"sensor_id": CL2, "value": 0.6}],
                    },
                ),
            ]

    before = log_of(server, tokens.commander)
    bad, unknown, far, selfie, not_json, too_big, good = asyncio.run(scenario())
    assert bad["type"] == "error" and bad["id"] == "bad"
    assert bad["problem"]["status"] == 422
    assert bad["problem"]["errors"] == [{"field": "readings[1].value", "reason": "a finite number"}]
    assert unknown["problem"]["errors"][0]["field"] == "readings.sensor_id"
    assert far["problem"]["errors"][0]["field"] == "positions[0]"
    assert selfie["problem"]["errors"][0]["field"] == "type"
    assert not_json["problem"]["errors"][0] == {"field": "message", "reason": "not JSON"}
    assert too_big["problem"]["status"] == 413
    assert good["type"] == "ack" and len(good["events"]) == 2  # the warning, and its check
    # Only the good batch left an event: the bad one's good reading (5 ppm) was not taken.
    after = log_of(server, tokens.commander)
    new = after[len(before) :]
    assert [(e["type"], e["data"].get("to")) for e in new] == [
        ("sensor.state", "warning"),
        ("sensor.check_requested", None),
    ]


def test_a_binary_frame_is_read_as_json(server: LiveServer, tokens: Tokens) -> None:
    async def scenario() -> dict[str, Any]:
        async with connect(
            feed_url(server), additional_headers=auth(tokens.device), open_timeout=WAIT_S
        ) as ws:
            body = {"type": "readings", "id": "b", "readings": [{"sensor_id": CL2, "value": 0.2}]}
            await ws.send(json.dumps(body).encode())
            answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            return answer

    assert asyncio.run(scenario()) == {"type": "ack", "id": "b", "accepted": 1, "events": []}


def test_a_revoked_token_feeds_nothing_more(server: LiveServer, tokens: Tokens) -> None:
    async def scenario() -> tuple[dict[str, Any], int | None]:
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            signed = await http.post(
                "/api/auth/login", json={"username": "commander", "password": TEST_PASSWORD}
            )
            token = signed.json()["access_token"]
            async with connect(
                feed_url(server), additional_headers=auth(token), open_timeout=WAIT_S
            ) as ws:
                reading = {"type": "readings", "readings": [{"sensor_id": CL2, "value": 0.1}]}
                first = await ask(ws, reading)
                await http.post("/api/auth/logout", headers=auth(token))
                try:
                    await ask(ws, reading)
                except ConnectionClosed as exc:
                    return first, exc.rcvd.code if exc.rcvd else None
        return first, None

    first, code = asyncio.run(scenario())
    assert first["type"] == "ack"
    assert code == 4401


def test_who_may_feed(server: LiveServer, tokens: Tokens) -> None:
    async def close_code(url: str, headers: dict[str, str] | None) -> int | None:
        try:
            async with connect(url, additional_headers=headers, open_timeout=WAIT_S) as ws:
                await asyncio.wait_for(ws.recv(), WAIT_S)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        return None

    async def scenario() -> dict[str, int | None]:
        return {
            "anonymous": await close_code(feed_url(server), None),
            "device, token in the URL": await close_code(
                f"{feed_url(server)}?access_token={tokens.device}", None
            ),
            "viewer": await close_code(feed_url(server), auth(tokens.viewer)),
            "device, another site": await close_code(
                feed_url(server, "another-site"), auth(tokens.device)
            ),
            "commander, unknown site": await close_code(
                feed_url(server, "no-such-site"), auth(tokens.commander)
            ),
        }

    assert asyncio.run(scenario()) == {
        "anonymous": 4401,
        "device, token in the URL": 4401,
        "viewer": 4403,
        "device, another site": 4403,
        "commander, unknown site": 4404,
    }

    async def commander_feeds() -> dict[str, Any]:
        """A commander's tablet, a browser: it signs the feed in with a ticket."""
        ticket = await ws_ticket(server, tokens.commander)
        async with connect(f"{feed_url(server)}?ticket={ticket}", open_timeout=WAIT_S) as ws:
            return await ask(
                ws, {"type": "readings", "readings": [{"sensor_id": CL2, "value": 0.1}]}
            )

    assert asyncio.run(commander_feeds()) == {
        "type": "ack",
        "id": None,
        "accepted": 1,
        "events": [],
    }
