"""Who has arrived (issue 13, item 2): the websocket says who stands at a muster point, in each
``positions`` message (for the people in it) and in the ``snapshot`` (everyone at one), so the
wall draws arrived people apart from those still moving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect

from command.auth import Role
from command.hub import Subscriber
from tests.conftest import DEMO_ID, live_with_tokens
from tests.live_server import LiveServer
from tests.test_incidents import CHLORINE_STORE, post_of
from tests.test_ws import WAIT_S, auth, subscribed
from tests.test_ws import Subscriber as WsSubscriber

SITE = f"/api/sites/{DEMO_ID}"
MUSTER, AT_MUSTER = "Z-033", [121.34490975, 30.7184466]  # inside muster point Z-033's area
ARRIVES, ELSEWHERE = "P-0001", "P-0002"


def place(person: str, lonlat: list[float]) -> dict[str, Any]:
    return {"person_id": person, "lon": lonlat[0], "lat": lonlat[1]}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A real server on a SQLite file, and tokens of a commander and a viewer."""
    users = {"chief": Role.COMMANDER, "watcher": Role.VIEWER}
    yield from live_with_tokens(tmp_path_factory.mktemp("arrivals") / "rallypoint.db", users)


def test_the_positions_and_the_snapshot_say_who_has_arrived(
    live: tuple[LiveServer, dict[str, str]],
) -> None:
    server, tokens = live

    def post_positions(rows: list[dict[str, Any]]) -> None:
        answer = httpx.post(
            f"{server.base}{SITE}/positions",
            json={"positions": rows},
            headers=auth(tokens["chief"]),
            timeout=WAIT_S,
        )
        assert answer.status_code == 200, answer.text

    def names(message: dict[str, Any], *people: str) -> bool:
        return message["type"] == "positions" and set(people) <= set(message["positions"])

    async def scenario() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        out = []
        async with subscribed(server, tokens["watcher"]) as wall:
            out.append(await wall.recv())  # the snapshot
            rows = [place(ARRIVES, AT_MUSTER), place(ELSEWHERE, CHLORINE_STORE)]
            await loop.run_in_executor(None, post_positions, rows)
            out.append((await wall.until(lambda m: names(m, ARRIVES, ELSEWHERE)))[-1])
        async with subscribed(server, tokens["watcher"], by_ticket=True) as fresh:
            out.append(await fresh.recv())
            # Walking on out of the muster area: no longer arrived.
            await loop.run_in_executor(None, post_positions, [place(ARRIVES, CHLORINE_STORE)])
            out.append((await fresh.until(lambda m: names(m, ARRIVES)))[-1])
        async with subscribed(server, tokens["watcher"]) as last:
            out.append(await last.recv())
        return out

    first, moved, snapshot, left, after = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT_S))
    assert first["type"] == "snapshot" and ARRIVES not in first["at_muster"]
    assert moved["at_muster"] == {ARRIVES: MUSTER, ELSEWHERE: None}
    assert set(moved["seen_at"]) == set(moved["positions"]) == set(moved["at_muster"])
    assert snapshot["type"] == "snapshot"
    assert snapshot["at_muster"][ARRIVES] == MUSTER
    assert ELSEWHERE not in snapshot["at_muster"]
    assert None not in snapshot["at_muster"].values()
    assert left["at_muster"] == {ARRIVES: None}
    assert ARRIVES not in after["at_muster"]


def test_arrivals_agree_with_the_headcount(command: TestClient) -> None:
    answer = command.post(
        f"{SITE}/positions",
        json={"positions": [place(ARRIVES, AT_MUSTER), place(ELSEWHERE, CHLORINE_STORE)]},
    )
    assert answer.status_code == 200, answer.text
    at = answer.json()["headcount"]["at"]
    arrived = post_of(command).site_snapshot(DEMO_ID)["at_muster"]
    assert arrived[ARRIVES] == MUSTER and ELSEWHERE not in arrived
    counted: dict[str, int] = {}
    for muster in arrived.values():
        counted[muster] = counted.get(muster, 0) + 1
    assert counted == {m: n for m, n in at.items() if n}


def test_coalesced_positions_keep_each_persons_latest_arrival() -> None:
    async def run() -> list[dict[str, Any]]:
        subscriber = Subscriber(DEMO_ID, None, asyncio.Queue(maxsize=10))
        for i, (person, muster) in enumerate(
            [("P-1", "Z-033"), ("P-2", None), ("P-1", None), ("P-3", "Z-034")]
        ):
            subscriber.offer(
                {
                    "type": "positions",
                    "seq": i,
                    "positions": {person: [i, i]},
                    "seen_at": {person: f"t{i}"},
                    "at_muster": {person: muster},
                    "headcount": {"accounted": i},
                }
            )
        return [subscriber.queue.get_nowait() for _ in range(subscriber.queue.qsize())]

    [message] = asyncio.run(run())
    assert message["at_muster"] == {"P-1": None, "P-2": None, "P-3": "Z-034"}
    assert message["seen_at"] == {"P-1": "t2", "P-2": "t1", "P-3": "t3"}
    assert message["positions"] == {"P-1": [2, 2], "P-2": [1, 1], "P-3": [3, 3]}


def decode_compact(message: dict[str, Any]) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """The compact positions form read as docs/protocol.md states it (ids; integer steps of
    unit_deg from origin; an index into musters per id, -1 for none)."""
    ids, xy = message["ids"], message["xy"]
    lon0, lat0 = message["origin"]
    unit = message["unit_deg"]
    positions = {
        pid: [lon0 + unit * xy[2 * i], lat0 + unit * xy[2 * i + 1]] for i, pid in enumerate(ids)
    }
    at = {
        pid: (message["musters"][k] if k >= 0 else None)
        for pid, k in zip(ids, message["at"], strict=True)
    }
    return positions, at


def test_a_wall_may_take_positions_in_the_compact_form(
    live: tuple[LiveServer, dict[str, str]],
) -> None:
    """The same positions, to a subscriber of the full form and one of the compact form: the
    compact one decodes to the same places (to 1e-7 degrees) and the same arrivals, with no
    seen_at; an unknown form is refused before anything is sent."""
    server, tokens = live

    def post_positions(rows: list[dict[str, Any]]) -> None:
        answer = httpx.post(
            f"{server.base}{SITE}/positions",
            json={"positions": rows},
            headers=auth(tokens["chief"]),
            timeout=WAIT_S,
        )
        assert answer.status_code == 200, answer.text

    def both(message: dict[str, Any]) -> bool:
        people = message.get("ids") or list(message.get("positions", {}))
        return message["type"] == "positions" and {ARRIVES, ELSEWHERE} <= set(people)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        loop = asyncio.get_running_loop()
        headers = auth(tokens["watcher"])
        async with (
            subscribed(server, tokens["watcher"]) as full,
            connect(server.ws_url, additional_headers=headers, open_timeout=WAIT_S) as raw,
        ):
            request = {"type": "subscribe", "site": DEMO_ID, "incident": None, "last_seq": None}
            await raw.send(json.dumps({**request, "positions": "compact"}))
            compact = WsSubscriber(raw)
            await full.recv()
            await compact.recv()  # the snapshots
            rows = [place(ARRIVES, AT_MUSTER), place(ELSEWHERE, CHLORINE_STORE)]
            await loop.run_in_executor(None, post_positions, rows)
            got_full = (await full.until(both))[-1]
            got_compact = (await compact.until(both))[-1]
        async with connect(server.ws_url, additional_headers=headers) as wrong:
            await wrong.send(json.dumps({**request, "positions": "tiny"}))
            refusal = json.loads(await asyncio.wait_for(wrong.recv(), WAIT_S))
        return got_full, got_compact, refusal

    full, compact, refusal = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT_S))
    assert "seen_at" not in compact and "positions" not in compact
    positions, at = decode_compact(compact)
    assert set(positions) == set(full["positions"])
    for pid, (lon, lat) in positions.items():
        assert lon == pytest.approx(full["positions"][pid][0], abs=1.5e-7)
        assert lat == pytest.approx(full["positions"][pid][1], abs=1.5e-7)
    assert at == full["at_muster"] == {ARRIVES: MUSTER, ELSEWHERE: None}
    assert compact["headcount"] == full["headcount"]
    assert len(json.dumps(compact)) < len(json.dumps(full))
    assert refusal == {"type": "error", "detail": "send a subscribe message"}


def test_a_wall_resuming_after_a_gap_learns_who_arrived_meanwhile(
    live: tuple[LiveServer, dict[str, str]],
) -> None:
    """Positions are not logged, so a resume cannot replay them: after ``caught_up`` comes a
    positions message of everyone, with who stands at a muster point now."""
    server, tokens = live

    async def scenario() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        async with subscribed(server, tokens["watcher"]) as wall:
            first = await wall.recv()
        last_seq = first["seq"]
        # While the wall is away: someone walks onto the muster point (no event is logged).
        answer = await loop.run_in_executor(
            None,
            lambda: httpx.post(
                f"{server.base}{SITE}/positions",
                json={"positions": [place(ARRIVES, AT_MUSTER)]},
                headers=auth(tokens["chief"]),
                timeout=WAIT_S,
            ),
        )
        assert answer.status_code == 200, answer.text
        async with subscribed(server, tokens["watcher"], last_seq=last_seq) as back:
            return await back.until(lambda m: m["type"] == "positions")

    messages = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT_S))
    kinds = [m["type"] for m in messages]
    assert "snapshot" not in kinds and kinds[-2:] == ["caught_up", "positions"]
    now = messages[-1]
    assert now["at_muster"][ARRIVES] == MUSTER
    assert now["positions"][ARRIVES] == pytest.approx(AT_MUSTER)
    assert set(now["at_muster"]) == set(now["positions"])  # everyone, null where at none
