"""The websocket against a real server: uvicorn on a loopback port, a SQLite file, real clients.

Each server runs in a thread of this process (so a test may also reach ``app.state``). The demo
site, the demo plans and three tokens (a commander, a viewer, a device) are put in a template
database once; each server gets its own copy of it, so no two servers share a file unless a
test means them to (the restart test).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from command import events as event_log
from command.auth import Role, create_device_token, create_user, issue_token
from gis.storage.db import Database, make_engine
from plans.engine import Actor
from tests.conftest import (
    CHLORINE_ACTIVATION,
    DEMO_ID,
    FAST_HASHER,
    TEST_PASSWORD,
    site_database,
)
from tests.live_server import LiveServer

WAIT_S = 10.0  # the longest any single await may take before the test fails


# The module's server keeps the incidents of earlier tests: each test opens one of its own.
CHLORINE = {**CHLORINE_ACTIVATION, "second_incident": True}


@dataclass(frozen=True)
class Tokens:
    commander: str
    viewer: str
    device: str


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tokens]:
    """A database file with the demo site, its plans and three tokens (copied per server)."""
    path = tmp_path_factory.mktemp("ws") / "template.db"
    engine = make_engine(site_database(path))
    try:
        with Database(engine).write() as session:
            commander = create_user(
                session, "commander", TEST_PASSWORD, [Role.COMMANDER], hasher=FAST_HASHER
            )
            viewer = create_user(
                session, "viewer", TEST_PASSWORD, [Role.VIEWER], hasher=FAST_HASHER
            )
            tokens = Tokens(
                commander=issue_token(session, commander, ttl_s=3600).token,
                viewer=issue_token(session, viewer, ttl_s=3600).token,
                device=create_device_token(session, DEMO_ID, "gateway-1", None).token,
            )
    finally:
        engine.dispose()  # the last connection checkpoints the WAL into the file
    return path, tokens


def copy_database(template: tuple[Path, Tokens], path: Path) -> str:
    shutil.copyfile(template[0], path)
    return f"sqlite:///{path}"


def verify_chain(url: str) -> int:
    """The number of events logged; fails on any break of the hash chain."""
    engine = make_engine(url)
    try:
        with Database(engine).read() as session:
            count, breaks = event_log.verify(session)
    finally:
        engine.dispose()
    assert breaks == []
    return count


@pytest.fixture(scope="module")
def server(
    template: tuple[Path, Tokens], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    url = copy_database(template, tmp_path_factory.mktemp("main") / "main.db")
    with LiveServer(url) as live:
        yield live
    verify_chain(url)


@pytest.fixture(scope="module")
def tokens(template: tuple[Path, Tokens]) -> Tokens:
    return template[1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- clients ----------------------------------------------------------------------------------


class Subscriber:
    """A websocket client that records what it receives; it answers pings unless told not to."""

    def __init__(self, ws: ClientConnection, *, pong: bool = True) -> None:
        self.ws = ws
        self.pong = pong
        self.pings = 0

    async def _next(self) -> dict[str, Any]:
        """The next message; a ping is counted (and answered, with ``pong``)."""
        message: dict[str, Any] = json.loads(await self.ws.recv())
        if message["type"] == "ping":
            self.pings += 1
            if self.pong:
                await self.ws.send(json.dumps({"type": "pong"}))
        return message

    async def recv(self, timeout: float = WAIT_S) -> dict[str, Any]:
        """The next message that is not a ping."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self._next()
                if message["type"] != "ping":
                    return message

    async def idle(self, pings: int, timeout: float = WAIT_S) -> None:
        """Wait for ``pings`` more pings; any other message (or a close) fails the test."""
        target = self.pings + pings
        async with asyncio.timeout(timeout):
            while self.pings < target:
                message = await self._next()
                assert message["type"] == "ping", message

    async def until(
        self, last: Callable[[dict[str, Any]], bool], timeout: float = WAIT_S
    ) -> list[dict[str, Any]]:
        """Messages up to and including the first for which ``last`` holds."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not out or not last(out[-1]):
            out.append(await self.recv(max(deadline - time.monotonic(), 0.01)))
        return out

    async def read_to_close(
        self, timeout: float = WAIT_S
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Read until the server closes (answering pings as configured): the messages other
        than pings, and the close code."""
        received: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    received.append(await self.recv(timeout))
        except ConnectionClosed as exc:
            return received, exc.rcvd.code if exc.rcvd else None


def subscribe_message(
    site: str = DEMO_ID, incident: str | None = None, last_seq: int | None = None
) -> str:
    return json.dumps(
        {"type": "subscribe", "site": site, "incident": incident, "last_seq": last_seq}
    )


@contextlib.asynccontextmanager
async def subscribed(
    server: LiveServer,
    token: str,
    *,
    last_seq: int | None = None,
    pong: bool = True,
    by_ticket: bool = False,
    **options: Any,
) -> AsyncIterator[Subscriber]:
    """A connection that has subscribed to the demo site: the token in the header, or, as a
    browser signs in, ``?ticket=`` from ``POST /api/auth/ws-ticket``; ``options`` go to the
    websockets client."""
    url, headers = server.ws_url, auth(token)
    if by_ticket:
        url, headers = f"{url}?ticket={await ws_ticket(server, token)}", {}
    async with connect(url, additional_headers=headers, open_timeout=WAIT_S, **options) as ws:
        await ws.send(subscribe_message(last_seq=last_seq))
        yield Subscriber(ws, pong=pong)


async def ws_ticket(server: LiveServer, token: str) -> str:
    """A single-use ticket to open one websocket as ``token``'s session."""
    async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as client:
        response = await client.post("/api/auth/ws-ticket", headers=auth(token))
    assert response.status_code == 200, response.text
    ticket: str = response.json()["ticket"]
    return ticket


async def activate(server: LiveServer, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as client:
        response = await client.post(
            f"/api/sites/{DEMO_ID}/incidents", json=CHLORINE, headers=auth(token)
        )
    assert response.status_code == 201, response.text
    picture: dict[str, Any] = response.json()
    return picture


def add_notes(server: LiveServer, token: str, incident_id: str, texts: list[str]) -> list[int]:
    """Notes by REST, one request each; the sequence numbers they were logged under."""
    seqs = []
    with httpx.Client(base_url=server.base, timeout=WAIT_S, headers=auth(token)) as client:
        for text in texts:
            response = client.post(
                f"/api/sites/{DEMO_ID}/incidents/{incident_id}/notes", json={"text": text}
            )
            assert response.status_code == 200, response.text
            [event] = response.json()["events"]
            seqs.append(event["seq"])
    return seqs


def note_in_process(server: LiveServer, incident_id: str, text: str) -> int:
    """A note given straight to the command post (no HTTP): its sequence number."""
    actor = Actor("commander", frozenset())  # a note needs no plan role
    [logged] = server.post.command(DEMO_ID, incident_id, lambda run: run.note(actor, text))
    return logged.seq


def events_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "event"]


def check_chain(site_id: str, prev_hash: str, events: list[dict[str, Any]]) -> None:
    """What a client can check itself: each hash is sha256(previous hash + canonical JSON).

    Written from docs/protocol.md, not with command.events, so it checks the documentation too.
    """
    for event in events:
        at = datetime.fromisoformat(event["at"]).astimezone(UTC).isoformat()
        body = {
            "site_id": site_id,
            "seq": event["seq"],
            "at": at,
            "type": event["type"],
            "actor": event["actor"],
            "incident_id": event["incident_id"],
            "data": event["data"],
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(prev_hash.encode() + canonical.encode()).hexdigest()
        assert digest == event["hash"], f"event {event['seq']} does not chain"
        prev_hash = digest


def log_events(server: LiveServer, token: str, after: int) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base}/api/sites/{DEMO_ID}/events",
        params={"after": after, "limit": 10_000},
        headers=auth(token),
        timeout=WAIT_S,
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def hash_of(server: LiveServer, token: str, seq: int) -> str:
    """The hash of event ``seq`` (the chain's start for 0), for checking the events after it."""
    if seq == 0:
        return event_log.GENESIS
    found: str = log_events(server, token, seq - 1)["events"][0]["hash"]
    return found


# -- tests ------------------------------------------------------------------------------------


def test_three_subscribers_see_the_same_sequence(server: LiveServer, tokens: Tokens) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], list[list[Any]]]:
        async with (
            subscribed(server, tokens.commander) as a,
            subscribed(server, tokens.viewer) as b,
            subscribed(server, tokens.viewer, by_ticket=True) as c,
        ):
            firsts = [await s.recv() for s in (a, b, c)]
            picture = await activate(server, tokens.commander)
            incident_id = picture["incident"]["id"]

            def done(m: dict[str, Any]) -> bool:
                return bool(m["type"] == "incident" and m["incident_id"] == incident_id)

            streams = [await s.until(done) for s in (a, b, c)]
        return firsts, picture, streams

    firsts, picture, streams = asyncio.run(scenario())
    assert [f["type"] for f in firsts] == ["snapshot"] * 3
    assert firsts[0] == firsts[1] == firsts[2]
    assert streams[0] == streams[1] == streams[2]
    stream = streams[0]
    events = events_of(stream)
    start = firsts[0]["seq"]
    assert [e["seq"] for e in events] == list(range(start + 1, start + 1 + len(events)))
    kinds = [e["event"]["type"] for e in events]
    assert kinds[0] == "incident.activated"
    assert {"plan.run.activated", "plan.calltree.activated", "notification.requested"} <= set(kinds)
    last = stream[-1]
    assert last["seq"] == picture["seq"] == events[-1]["seq"] == last["snapshot"]["seq"]
    assert last["snapshot"]["incident"]["id"] == picture["incident"]["id"]
    assert last["snapshot"] == picture
    check_chain(DEMO_ID, hash_of(server, tokens.viewer, start), [e["event"] for e in events])


def test_reconnect_with_last_seq_gets_exactly_what_was_missed(
    server: LiveServer, tokens: Tokens
) -> None:
    incident_id = asyncio.run(activate(server, tokens.commander))["incident"]["id"]

    async def first_visit() -> int:
        async with subscribed(server, tokens.viewer) as client:
            snapshot = await client.recv()
        assert snapshot["type"] == "snapshot"
        assert incident_id in [i["incident"]["id"] for i in snapshot["incidents"]]
        seq: int = snapshot["seq"]
        return seq

    last_seq = asyncio.run(first_visit())
    texts = [f"note {i}" for i in range(50)]
    note_seqs = add_notes(server, tokens.commander, incident_id, texts)

    async def second_visit() -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        async with subscribed(server, tokens.viewer, last_seq=last_seq) as client:
            missed = await client.until(lambda m: m["type"] == "caught_up")
            async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as rest:
                response = await rest.post(
                    f"/api/sites/{DEMO_ID}/incidents/{incident_id}/notes",
                    json={"text": "live again"},
                    headers=auth(tokens.commander),
                )
                assert response.status_code == 200
            live = await client.until(
                lambda m: m["type"] == "event" and m["event"]["type"] == "plan.note"
            )
        answer: dict[str, Any] = response.json()
        return {"missed": missed, "live": live}, answer

    got, live_answer = asyncio.run(second_visit())
    missed, caught_up = got["missed"][:-1], got["missed"][-1]
    assert all(m["type"] == "event" for m in missed)
    seqs = [m["seq"] for m in missed]
    # Consecutive from the one after last_seq, no gap, no duplicate, up to caught_up.
    assert seqs == list(range(last_seq + 1, caught_up["seq"] + 1))
    notes = [m["event"] for m in missed if m["event"]["type"] == "plan.note"]
    assert [n["seq"] for n in notes] == note_seqs
    assert [n["data"]["data"]["text"] for n in notes] == texts
    # Nobody but the system (a deadline passing) did anything else meanwhile.
    assert all(m["event"]["type"] == "plan.note" for m in missed if m["event"]["actor"] != "system")
    log = log_events(server, tokens.viewer, last_seq)
    assert [e["seq"] for e in log["events"]][: len(seqs)] == seqs
    assert [m["event"] for m in missed] == log["events"][: len(seqs)]
    live_seqs = [m["seq"] for m in got["live"] if m["type"] == "event"]
    assert live_seqs[0] == caught_up["seq"] + 1
    assert live_seqs[-1] == live_answer["events"][0]["seq"]
    check_chain(DEMO_ID, hash_of(server, tokens.viewer, last_seq), [m["event"] for m in missed])


def test_a_stalled_client_does_not_delay_the_others(
    template: tuple[Path, Tokens], tmp_path: Path
) -> None:
    url = copy_database(template, tmp_path / "stall.db")
    tokens = template[1]
    with LiveServer(url, queue_size=100, send_buffer=4096) as live:
        incident_id = asyncio.run(activate(live, tokens.commander))["incident"]["id"]

        async def scenario() -> tuple[list[float], list[dict[str, Any]], int | None, int]:
            # The stalled client reads nothing after its snapshot: a one-message queue in the
            # library, a small socket receive buffer and no compression (the notes are random
            # text), so the server's sends to it block after a few dozen notes.
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.setblocking(False)
            await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", live.port))
            async with subscribed(
                live, tokens.viewer, sock=raw, max_queue=1, compression=None
            ) as stalled:
                first = await stalled.recv()  # the snapshot; then it reads no more
                [stalled_subscriber] = live.post.hub._subscribers[DEMO_ID]
                async with subscribed(live, tokens.viewer) as normal:
                    start = (await normal.recv())["seq"]
                    assert first["seq"] == start
                    assert live.post.hub.subscriber_count(DEMO_ID) == 2
                    latencies: list[float] = []
                    sent = 0
                    loop = asyncio.get_running_loop()
                    # Notes one after another (each a committed transaction) until the stalled
                    # client has fallen a whole queue behind, and 20 more.
                    after_overflow = 0
                    while after_overflow < 20:
                        assert sent < 2000, "the stalled client never fell behind"
                        issued = time.monotonic()
                        seq = await loop.run_in_executor(
                            None, note_in_process, live, incident_id, secrets.token_urlsafe(1400)
                        )
                        sent += 1
                        message = await normal.recv(timeout=5.0)
                        assert message["type"] == "event" and message["seq"] == seq
                        latencies.append(time.monotonic() - issued)
                        if stalled_subscriber.overflowed.is_set():
                            after_overflow += 1
                    assert live.post.hub.subscriber_count(DEMO_ID) == 2
                    # Only now does the stalled client read: what it had, then resync and 4008.
                    received, code = await stalled.read_to_close()
            return latencies, received, code, start

        latencies, received, code, start = asyncio.run(scenario())
        assert code == 4008
        assert received[-1]["type"] == "resync"
        events = events_of(received)
        # What it did get was in order without gaps, and resync names the last one it got.
        assert [e["seq"] for e in events] == list(range(start + 1, start + 1 + len(events)))
        assert received[-1]["seq"] == (events[-1]["seq"] if events else start)
        assert max(latencies) < 1.0, f"the normal client waited {max(latencies):.3f} s"
    verify_chain(url)


def test_a_restart_mid_incident_loses_nothing(
    template: tuple[Path, Tokens], tmp_path: Path
) -> None:
    url = copy_database(template, tmp_path / "restart.db")
    tokens = template[1]

    def incident_view(live: LiveServer, incident_id: str) -> dict[str, Any]:
        with httpx.Client(base_url=live.base, headers=auth(tokens.viewer), timeout=WAIT_S) as c:
            listed = c.get(f"/api/sites/{DEMO_ID}/incidents").json()["incidents"]
            picture = c.get(f"/api/sites/{DEMO_ID}/incidents/{incident_id}").json()
        return {"listed": listed, "picture": picture}

    with LiveServer(url) as first:

        async def before() -> tuple[dict[str, Any], int]:
            async with subscribed(first, tokens.viewer) as client:
                await client.recv()
                picture = await activate(first, tokens.commander)
                stream = await client.until(lambda m: m["type"] == "incident")
            return picture, stream[-1]["seq"]

        picture, last_seq = asyncio.run(before())
        incident_id = picture["incident"]["id"]
        note_seqs = add_notes(first, tokens.commander, incident_id, ["a", "b", "c"])
        seen_before = incident_view(first, incident_id)

    with LiveServer(url) as second:
        second.recovered()
        assert incident_id in second.post.incidents
        seen_after = incident_view(second, incident_id)

        async def after() -> list[dict[str, Any]]:
            async with subscribed(second, tokens.viewer, last_seq=last_seq) as client:
                missed = await client.until(lambda m: m["type"] == "caught_up")
                await asyncio.get_running_loop().run_in_executor(
                    None, add_notes, second, tokens.commander, incident_id, ["after restart"]
                )
                missed += await client.until(lambda m: m["type"] == "event")
            return missed

        messages = asyncio.run(after())

    caught_up = next(m for m in messages if m["type"] == "caught_up")
    seqs = [m["seq"] for m in events_of(messages)]
    assert seqs == list(range(last_seq + 1, seqs[-1] + 1))
    assert caught_up["seq"] == seqs[-2]
    assert seqs[: len(note_seqs)] == note_seqs
    assert events_of(messages)[-1]["event"]["data"]["data"]["text"] == "after restart"
    [listed] = [i for i in seen_after["listed"] if i["id"] == incident_id]
    assert listed["active"] is True
    assert seen_after["listed"] == seen_before["listed"]
    due = [(s["id"], s["status"], s["due_at"]) for s in seen_before["picture"]["plan"]["steps"]]
    assert [
        (s["id"], s["status"], s["due_at"]) for s in seen_after["picture"]["plan"]["steps"]
    ] == due
    assert any(d for _, _, d in due)
    assert seen_after["picture"]["incident"] == seen_before["picture"]["incident"]
    assert verify_chain(url) == seqs[-1]


def test_socket_sign_in_and_subscription_errors(server: LiveServer, tokens: Tokens) -> None:
    async def close_code_of(
        headers: dict[str, str] | None = None, query: str = "", first: str | None = None
    ) -> tuple[int | str | None, list[dict[str, Any]]]:
        received: list[dict[str, Any]] = []
        try:
            async with connect(
                server.ws_url + query, additional_headers=headers, open_timeout=WAIT_S
            ) as ws:
                if first is not None:
                    await ws.send(first)
                async with asyncio.timeout(WAIT_S):
                    async for text in ws:
                        received.append(json.loads(text))
                return (ws.close_code, received)
        except ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None, received)
        except InvalidStatus as exc:  # refused during the handshake: no close code to read
            return (f"HTTP {exc.response.status_code}", received)

    async def scenario() -> dict[str, Any]:
        results: dict[str, Any] = {
            "no token": await close_code_of(first=subscribe_message()),
            "bad token": await close_code_of(auth("not-a-token"), first=subscribe_message()),
            "device": await close_code_of(auth(tokens.device), first=subscribe_message()),
            "not subscribe": await close_code_of(
                auth(tokens.viewer), first=json.dumps({"type": "hello"})
            ),
            "not JSON": await close_code_of(auth(tokens.viewer), first="subscribe please"),
            "bad last_seq": await close_code_of(
                auth(tokens.viewer),
                first=json.dumps({"type": "subscribe", "site": DEMO_ID, "last_seq": -1}),
            ),
            "unknown site": await close_code_of(
                auth(tokens.viewer), first=subscribe_message(site="no-such-site")
            ),
        }
        for name, by_ticket in (("header", False), ("ticket", True)):
            query = f"?ticket={await ws_ticket(server, tokens.viewer)}" if by_ticket else ""
            async with connect(
                server.ws_url + query,
                additional_headers=None if by_ticket else auth(tokens.viewer),
                open_timeout=WAIT_S,
            ) as ws:
                await ws.send(subscribe_message())
                results[f"viewer by {name}"] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        return results

    results = asyncio.run(scenario())
    assert results["no token"][0] == 4401
    assert results["bad token"][0] == 4401
    assert results["device"][0] == 4403
    for name in ("not subscribe", "not JSON", "bad last_seq"):
        code, received = results[name]
        assert code == 4400, name
        assert [m["type"] for m in received] == ["error"], name
        assert received[0]["detail"], name
    code, received = results["unknown site"]
    assert code == 4404
    assert [m["type"] for m in received] == ["error"]
    assert "no-such-site" in received[0]["detail"]
    for name in ("viewer by header", "viewer by ticket"):
        assert results[name]["type"] == "snapshot"
        assert results[name]["site_id"] == DEMO_ID


HEARTBEAT_S = 0.2


@pytest.fixture(scope="module")
def beating(
    template: tuple[Path, Tokens], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that sends a heartbeat every 0.2 s."""
    url = copy_database(template, tmp_path_factory.mktemp("beat") / "beat.db")
    with LiveServer(url, heartbeat_s=HEARTBEAT_S) as live:
        yield live
    verify_chain(url)


def test_heartbeats_close_a_silent_client(beating: LiveServer, tokens: Tokens) -> None:
    async def scenario() -> tuple[int | None, float, int, int]:
        async with (
            subscribed(beating, tokens.viewer, pong=False) as silent,
            subscribed(beating, tokens.viewer) as answering,
        ):
            assert (await silent.recv())["type"] == "snapshot"
            assert (await answering.recv())["type"] == "snapshot"
            subscribed_at = time.monotonic()
            # Meanwhile the client that answers gets eight pings, and nothing else.
            answers = asyncio.create_task(answering.idle(8, timeout=40 * HEARTBEAT_S))
            received, code = await silent.read_to_close(timeout=20 * HEARTBEAT_S)
            assert received == []
            closed_after = time.monotonic() - subscribed_at
            await answers
            return code, closed_after, silent.pings, answering.pings

    code, closed_after, silent_pings, answered = asyncio.run(scenario())
    assert code == 4408
    assert silent_pings >= 1
    assert 1.5 * HEARTBEAT_S <= closed_after <= 6 * HEARTBEAT_S, closed_after
    assert answered >= 8


def test_heartbeats_spare_a_client_that_was_busy(beating: LiveServer, tokens: Tokens) -> None:
    """A client that answers every ping it gets is not closed after a stretch of events."""
    incident_id = asyncio.run(activate(beating, tokens.commander))["incident"]["id"]

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        async with subscribed(beating, tokens.viewer) as client:
            assert (await client.recv())["type"] == "snapshot"
            # Events for longer than two heartbeats, closer together than one: no ping is due.
            busy_until = time.monotonic() + 4 * HEARTBEAT_S
            notes = 0
            while time.monotonic() < busy_until:
                await loop.run_in_executor(None, note_in_process, beating, incident_id, "busy")
                await client.until(lambda m: m["type"] == "event")
                notes += 1
                await asyncio.sleep(HEARTBEAT_S / 4)
            pings_before = client.pings
            # Then idle: it gets pings, answers them, and is not closed.
            await client.idle(4, timeout=20 * HEARTBEAT_S)
            return notes, client.pings - pings_before

    notes, pings = asyncio.run(scenario())
    assert notes >= 4
    assert pings >= 4


def test_the_event_log_chain_holds(server: LiveServer, tokens: Tokens) -> None:
    """After everything above, the main server's log verifies and matches what REST lists."""
    url = str(server.app.state.settings.database_url)
    count = verify_chain(url)
    log = log_events(server, tokens.viewer, 0)
    assert log["last_seq"] == count == len(log["events"])
    check_chain(DEMO_ID, event_log.GENESIS, log["events"])
