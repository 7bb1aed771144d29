"""Websocket sign-in without a token in the URL, and sessions that end close their sockets:
a real uvicorn server on a loopback port, real websocket clients, real HTTP.

- A browser opens ``/ws?ticket=`` with a ticket from ``POST /api/auth/ws-ticket``: single use
  (a replay is 4401), stored hashed, bound to the session that asked for it. A token in the
  URL (``?access_token=``) is refused with 4401 and never reaches the log.
- Signing out, an administrator disabling a user or resetting a password, revoking a device
  token, and the same done by the command line (another process: the server only sees the
  database) close the sockets concerned with 4401 within a second. The deadline is the bound
  of the wait on the real socket.
- A role granted on one site subscribes to that site only (4403 elsewhere), and taking it
  back closes the wall that follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import event, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from command import accounts
from command.auth import (
    HUMAN_ROLES,
    TICKET_TTL_S,
    Role,
    create_device_token,
    create_user,
    create_wall_token,
    ended_tokens,
    find_user,
    issue_ticket,
    issue_token,
    redeem_ticket,
    resolve_token,
    revoke,
)
from command.cli import main
from command.deps import TOKEN_IN_URL
from command.routes.sites import SITE_EXAMPLE
from command.sessions import LiveSockets, sweep
from gis.errors import Unauthorized
from gis.sites import create_site
from gis.storage.db import Database, make_engine
from gis.storage.tables import UserRow, WsTicketRow
from tests.conftest import DEMO_ID, FAST_HASHER, TEST_PASSWORD, site_database
from tests.live_server import LiveServer

WAIT_S = 10.0  # the longest an answer that is not under test may take
CLOSE_DEADLINE_S = 1.0  # a session that ends closes its sockets within this
OTHER_ID = "north-works"
VIEWERS = ["ticket-user", "watcher", "disabled-soon", "reset-soon", "cli-disabled", "old-client"]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A SQLite file: the demo site and a second one, viewers, a user granted on the demo works
    only, an administrator and a device token; its URL and the device token."""
    path = tmp_path_factory.mktemp("ws-ticket") / "rallypoint.db"
    url = site_database(path, dict.fromkeys(VIEWERS, Role.VIEWER))
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            create_site(session, {**SITE_EXAMPLE, "id": OTHER_ID}, actor="test")
            create_user(session, "root", TEST_PASSWORD, [Role.ADMIN], hasher=FAST_HASHER)
            create_user(
                session, "demo-only", TEST_PASSWORD, ["viewer"], site_id=DEMO_ID, hasher=FAST_HASHER
            )
            device = create_device_token(session, DEMO_ID, "gateway-1", timedelta(days=1)).token
    finally:
        engine.dispose()
    return url, device


@pytest.fixture(scope="module")
def server(database: tuple[str, str]) -> Iterator[LiveServer]:
    with LiveServer(database[0]) as live:
        yield live


async def sign_in(http: httpx.AsyncClient, username: str) -> str:
    answer = await http.post(
        "/api/auth/login", json={"username": username, "password": TEST_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ticket_for(http: httpx.AsyncClient, token: str) -> str:
    answer = await http.post("/api/auth/ws-ticket", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    ticket: str = answer.json()["ticket"]
    return ticket


async def subscribe(ws: ClientConnection, site: str = DEMO_ID) -> dict[str, Any]:
    """Subscribe; the first answer (a snapshot), or the close code as ``{"closed": code}``."""
    await ws.send(
        json.dumps({"type": "subscribe", "site": site, "incident": None, "last_seq": None})
    )
    try:
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            if message["type"] not in ("ping", "error"):
                return message
    except ConnectionClosed as exc:
        return {"closed": exc.rcvd.code if exc.rcvd else None}


async def close_of(ws: ClientConnection, deadline_s: float = CLOSE_DEADLINE_S) -> tuple[int, str]:
    """The close code and reason, which must come within ``deadline_s`` (else TimeoutError:
    the test fails). Messages before it (pings, events) are passed over."""
    with pytest.raises(ConnectionClosed) as closed:
        await _read_for(ws, deadline_s)
    received = closed.value.rcvd
    assert received is not None, "closed without a close frame"
    return received.code, received.reason


async def _read_for(ws: ClientConnection, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while True:
            await ws.recv()


async def is_open(ws: ClientConnection) -> bool:
    """Whether the connection still answers a protocol ping."""
    try:
        await asyncio.wait_for(await ws.ping(), WAIT_S)
    except ConnectionClosed:
        return False
    return True


def test_a_ticket_opens_one_connection(server: LiveServer, database: tuple[str, str]) -> None:
    """The wall's sign-in: no token in the URL; the ticket works once, and it is kept only as
    its SHA-256."""

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with httpx.AsyncClient(base_url=server.base) as http:
            token = await sign_in(http, "ticket-user")
            answer = await http.post("/api/auth/ws-ticket", headers=bearer(token))
            out["answer"] = answer.json()
            ticket = answer.json()["ticket"]
            async with connect(f"{server.ws_url}?ticket={ticket}", open_timeout=WAIT_S) as ws:
                out["first"] = await subscribe(ws)
            async with connect(f"{server.ws_url}?ticket={ticket}", open_timeout=WAIT_S) as ws:
                out["replay"] = await close_of(ws, WAIT_S)
            async with connect(f"{server.ws_url}?ticket=made-up", open_timeout=WAIT_S) as ws:
                out["made up"] = await close_of(ws, WAIT_S)
            device = await http.post("/api/auth/ws-ticket", headers=bearer(database[1]))
            out["device"] = device.status_code
            out["anonymous"] = (await http.post("/api/auth/ws-ticket")).status_code
        return out

    out = asyncio.run(scenario())
    assert out["answer"]["expires_in_s"] == TICKET_TTL_S == 30
    assert out["first"]["type"] == "snapshot" and out["first"]["site_id"] == DEMO_ID
    code, reason = out["replay"]
    assert code == 4401 and "used" in reason
    assert out["made up"][0] == 4401
    assert out["device"] == 403 and out["anonymous"] == 401
    engine = make_engine(database[0])
    try:
        with Database(engine).read() as session:
            stored = set(session.scalars(select(WsTicketRow.ticket_hash)))
    finally:
        engine.dispose()
    ticket = out["answer"]["ticket"]
    assert ticket not in stored and hashlib.sha256(ticket.encode()).hexdigest() in stored


def test_a_ticket_expires_and_is_bound_to_its_session(db: Database) -> None:
    """30 seconds, then refused; a ticket of a session signed out since is refused too."""
    with db.write() as session:
        user = create_user(session, "ticket-holder", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        token = issue_token(session, user, ttl_s=3600).token
        principal = resolve_token(session, token)
        now = datetime.now(UTC)
        late = issue_ticket(session, principal, now=now).token
        with pytest.raises(Unauthorized, match="expired"):
            redeem_ticket(session, late, now=now + timedelta(seconds=TICKET_TTL_S))
        in_time = issue_ticket(session, principal, now=now).token
        assert redeem_ticket(session, in_time, now=now + timedelta(seconds=29)).id == user.id
        orphan = issue_ticket(session, principal, now=now).token
        accounts.disable_user(session, "ticket-holder", actor="test")
        with pytest.raises(Unauthorized):
            redeem_ticket(session, orphan, now=now)


def test_signing_out_closes_that_sessions_sockets_within_a_second(server: LiveServer) -> None:
    """Two sockets of one session (by ticket and by header) close with 4401 when it signs out;
    a socket of the same user's other session stays open."""

    async def scenario() -> tuple[list[tuple[int, str]], bool]:
        async with httpx.AsyncClient(base_url=server.base) as http:
            token, other = await sign_in(http, "watcher"), await sign_in(http, "watcher")
            ticket = await ticket_for(http, token)
            async with (
                connect(f"{server.ws_url}?ticket={ticket}", open_timeout=WAIT_S) as by_ticket,
                connect(server.ws_url, additional_headers=bearer(token)) as by_header,
                connect(server.ws_url, additional_headers=bearer(other)) as other_session,
            ):
                for ws in (by_ticket, by_header, other_session):
                    assert (await subscribe(ws))["type"] == "snapshot"
                out = await http.post("/api/auth/logout", headers=bearer(token))
                assert out.status_code == 204
                closes = [await close_of(by_ticket), await close_of(by_header)]
                return closes, await is_open(other_session)

    closes, other_open = asyncio.run(scenario())
    assert closes == [(4401, "signed out"), (4401, "signed out")]
    assert other_open


def test_an_administrator_disabling_or_resetting_closes_sockets(server: LiveServer) -> None:
    async def scenario() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(base_url=server.base) as http:
            admin = bearer(await sign_in(http, "root"))
            closes = []
            for username, act in (
                ("disabled-soon", ("/disable", None)),
                ("reset-soon", ("/password", {"password": "a new password here"})),
            ):
                token = await sign_in(http, username)
                async with connect(server.ws_url, additional_headers=bearer(token)) as ws:
                    assert (await subscribe(ws))["type"] == "snapshot"
                    path, body = act
                    url = f"/api/admin/users/{username}{path}"
                    answer = await http.post(url, json=body, headers=admin)
                    assert answer.status_code in (200, 204), answer.text
                    closes.append(await close_of(ws))
            return closes

    assert asyncio.run(scenario()) == [
        (4401, "the account was disabled"),
        (4401, "the password was reset"),
    ]


def test_the_command_line_disabling_a_user_closes_their_socket(
    server: LiveServer, database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line is another process: the server learns of it from the database alone
    (its sweep of the open sockets' tokens), and still closes the socket within a second."""
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", database[0])

    async def scenario() -> tuple[int, str]:
        async with httpx.AsyncClient(base_url=server.base) as http:
            token = await sign_in(http, "cli-disabled")
        async with connect(server.ws_url, additional_headers=bearer(token)) as ws:
            assert (await subscribe(ws))["type"] == "snapshot"
            result = await asyncio.to_thread(
                CliRunner().invoke, main, ["user", "disable", "cli-disabled"]
            )
            assert result.exit_code == 0, result.output
            return await close_of(ws)

    code, reason = asyncio.run(scenario())
    assert code == 4401 and "session ended" in reason


def test_revoking_a_device_token_closes_its_feed(
    server: LiveServer, database: tuple[str, str]
) -> None:
    """The device feed stays open while idle; revoking its token closes it at once."""
    feed_url = f"ws://127.0.0.1:{server.port}/ws/sites/{DEMO_ID}/feed"

    async def scenario() -> tuple[int, str]:
        async with httpx.AsyncClient(base_url=server.base) as http:
            admin = bearer(await sign_in(http, "root"))
            async with connect(feed_url, additional_headers=bearer(database[1])) as feed:
                await feed.send(json.dumps({"type": "readings", "id": "r-1", "readings": []}))
                answer = json.loads(await asyncio.wait_for(feed.recv(), WAIT_S))
                assert answer["id"] == "r-1", answer  # answered: the feed is signed in
                answer = await http.delete(
                    f"/api/admin/sites/{DEMO_ID}/devices/gateway-1", headers=admin
                )
                assert answer.status_code == 200, answer.text
                return await close_of(feed)

    assert asyncio.run(scenario()) == (4401, "the device token was revoked")


def test_a_grant_on_one_site_subscribes_there_and_reads_the_group(server: LiveServer) -> None:
    """Granted viewer on the demo works alone: the other site of the deployment is read as a
    viewer too (the group rule, docs/group.md); taking the grant back, nothing is left, and
    the demo works' wall closes with 4403."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], tuple[int, str]]:
        async with httpx.AsyncClient(base_url=server.base) as http:
            token = await sign_in(http, "demo-only")
            admin = bearer(await sign_in(http, "root"))
            async with connect(server.ws_url, additional_headers=bearer(token)) as ws:
                elsewhere = await subscribe(ws, OTHER_ID)
            async with connect(server.ws_url, additional_headers=bearer(token)) as ws:
                here = await subscribe(ws, DEMO_ID)
                taken = await http.delete(
                    f"/api/admin/users/demo-only/grants/{DEMO_ID}/viewer", headers=admin
                )
                assert taken.status_code == 200, taken.text
                return elsewhere, here, await close_of(ws)

    elsewhere, here, closed = asyncio.run(scenario())
    assert elsewhere["type"] == "snapshot" and elsewhere["site_id"] == OTHER_ID
    assert here["type"] == "snapshot"
    assert closed == (4403, "no role on this site any more")


def test_the_command_line_taking_back_a_grant_closes_that_sites_wall(
    server: LiveServer, database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's case: ``rallypoint user revoke-grant`` works on the database alone, so
    the server learns of it from its sweep, which re-checks each open wall's roles at its site
    as the subscribe did. The wall on the site taken back closes with 4403 within a second; the
    same session's wall on a site still granted stays open."""
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", database[0])
    engine = make_engine(database[0])
    try:
        with Database(engine).write() as session:
            name, password = "cli-ungranted", TEST_PASSWORD
            create_user(session, name, password, ["viewer"], site_id=DEMO_ID, hasher=FAST_HASHER)
            accounts.grant(session, name, OTHER_ID, "viewer", actor="test")
    finally:
        engine.dispose()
    revoke_grant = ["user", "revoke-grant", "cli-ungranted", "--site", DEMO_ID, "--role", "viewer"]

    async def scenario() -> tuple[tuple[int, str], bool]:
        async with httpx.AsyncClient(base_url=server.base) as http:
            token = await sign_in(http, "cli-ungranted")
        async with (
            connect(server.ws_url, additional_headers=bearer(token)) as demo,
            connect(server.ws_url, additional_headers=bearer(token)) as other,
        ):
            assert (await subscribe(demo, DEMO_ID))["type"] == "snapshot"
            assert (await subscribe(other, OTHER_ID))["type"] == "snapshot"
            result = await asyncio.to_thread(CliRunner().invoke, main, revoke_grant)
            assert result.exit_code == 0, result.output
            assert "no role" in result.output  # none left on the demo works by grant
            return await close_of(demo), await is_open(other)

    closed, other_open = asyncio.run(scenario())
    assert closed == (4403, "no role on this site any more")
    assert other_open


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every line the server logs at INFO and above, uvicorn's too: its loggers do not pass
    their lines on to the root logger, so the capture is put on them as well."""
    caplog.set_level(logging.INFO)
    for name in ("uvicorn.error", "uvicorn.access"):
        caplog.set_level(logging.INFO, logger=name)
    closed_off = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access")]
    for logger in closed_off:
        logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        for logger in closed_off:
            logger.removeHandler(caplog.handler)


def test_a_token_in_the_url_is_refused_and_never_logged(
    server: LiveServer, server_log: pytest.LogCaptureFixture
) -> None:
    """The attack of the issue: the wall's ``?access_token=`` put live tokens in the server
    log. A websocket that carries one is closed with 4401, even beside a good header or
    ticket, and no line of the log (the refusal's warning, uvicorn's websocket line) holds the
    token. The same token still signs in from the header."""

    async def scenario() -> tuple[str, dict[str, tuple[int, str]], dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server.base) as http:
            token = await sign_in(http, "old-client")
            ticket = await ticket_for(http, token)
        in_url = f"{server.ws_url}?access_token={token}"
        closes = {}
        async with connect(in_url, open_timeout=WAIT_S) as ws:
            closes["alone"] = await close_of(ws, WAIT_S)
        async with connect(in_url, additional_headers=bearer(token), open_timeout=WAIT_S) as ws:
            closes["beside a header"] = await close_of(ws, WAIT_S)
        async with connect(f"{in_url}&ticket={ticket}", open_timeout=WAIT_S) as ws:
            closes["beside a ticket"] = await close_of(ws, WAIT_S)
        async with connect(server.ws_url, additional_headers=bearer(token)) as ws:
            return token, closes, await subscribe(ws)

    token, closes, by_header = asyncio.run(scenario())
    refused = (4401, TOKEN_IN_URL)
    assert closes == dict.fromkeys(["alone", "beside a header", "beside a ticket"], refused)
    assert by_header["type"] == "snapshot"
    lines = [(r.name, r.levelno, r.getMessage()) for r in server_log.records]
    warned = [m for name, level, m in lines if name == "command.deps" and level == logging.WARNING]
    assert len(warned) == 3 and all("token in its URL" in m for m in warned), warned
    # uvicorn's websocket lines were captured (so the check below can fail), redacted.
    assert any(name.startswith("uvicorn") and "/ws?[redacted]" in m for name, _, m in lines)
    assert not [m for _, _, m in lines if token in m]


def test_the_wall_asks_for_a_ticket_not_a_token_url() -> None:
    """The map wall's code opens its socket with a ticket; no token goes in a URL."""
    frontend = Path(__file__).resolve().parent.parent / "frontend"
    source = (frontend / "socket.js").read_text()
    assert "/api/auth/ws-ticket" in source and "/ws?ticket=" in source
    for module in frontend.glob("*.js"):
        assert "access_token=" not in module.read_text(), module.name


def test_the_sweep_finds_every_ended_token(db: Database) -> None:
    """What the server's sweep closes: revoked, expired, unknown tokens and those of disabled
    users; a live session and a live device token stay."""
    with db.write() as session:
        user = create_user(session, "sweep-me", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        other = create_user(session, "sweep-not", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        live = resolve_token(session, issue_token(session, other, ttl_s=3600).token).token_hash
        device_token = create_device_token(session, DEMO_ID, "gw", None).token
        device = resolve_token(session, device_token).token_hash
        short = resolve_token(session, issue_token(session, other, ttl_s=60).token).token_hash
        disabled = resolve_token(session, issue_token(session, user, ttl_s=3600).token).token_hash
        revoked_token = issue_token(session, other, ttl_s=3600).token
        revoked = resolve_token(session, revoked_token).token_hash
        revoke(session, revoked_token)
        accounts.disable_user(session, "sweep-me", actor="test")
        later = datetime.now(UTC) + timedelta(seconds=61)
        hashes = {live, device, short, disabled, revoked, "0" * 64}
        assert ended_tokens(session, hashes, later) == {short, disabled, revoked, "0" * 64}


def test_the_sweep_checks_each_open_walls_roles_at_its_site(db: Database) -> None:
    """What the sweep closes with 4403: a person's connection whose site no longer gives them a
    role it needs (a grant taken back, a global role taken away), read in one query for all;
    a token that ended is 4401 instead. Wall and device tokens, a global viewer and a grant
    still held stay; with nothing open the sweep asks the database nothing."""
    with db.write() as session:
        create_user(session, "global-viewer", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        for name, role in (("granted", "commander"), ("taken", "viewer"), ("gone-off", "viewer")):
            create_user(session, name, TEST_PASSWORD, [role], site_id=DEMO_ID, hasher=FAST_HASHER)
        create_user(session, "demoted", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        names = ("global-viewer", "granted", "taken", "demoted", "gone-off")
        tokens = {n: issue_token(session, find_user(session, n), ttl_s=60).token for n in names}
        signed_in = {n: resolve_token(session, token) for n, token in tokens.items()}
        wall = resolve_token(session, create_wall_token(session, DEMO_ID, "w", None).token)
        device = resolve_token(session, create_device_token(session, DEMO_ID, "d", None).token)
    sockets = LiveSockets()
    commander_only = frozenset({Role.DEVICE, Role.COMMANDER})  # the device feed's roles
    opened = {
        "global viewer": (signed_in["global-viewer"], DEMO_ID, HUMAN_ROLES),
        "global viewer elsewhere": (signed_in["global-viewer"], OTHER_ID, HUMAN_ROLES),
        "grant held": (signed_in["granted"], DEMO_ID, HUMAN_ROLES),
        "feed of a granted commander": (signed_in["granted"], DEMO_ID, commander_only),
        "feed of a viewer": (signed_in["global-viewer"], DEMO_ID, commander_only),
        "granted elsewhere only": (signed_in["granted"], OTHER_ID, HUMAN_ROLES),
        "grant taken back": (signed_in["taken"], DEMO_ID, HUMAN_ROLES),
        "global role taken away": (signed_in["demoted"], DEMO_ID, HUMAN_ROLES),
        "user disabled": (signed_in["gone-off"], DEMO_ID, HUMAN_ROLES),
        "wall token": (wall, DEMO_ID, HUMAN_ROLES),
        "device token": (device, DEMO_ID, commander_only),
    }
    statements: list[str] = []

    def count(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("SELECT"):
            statements.append(args[2])

    assert db.connection is not None
    event.listen(db.connection, "before_cursor_execute", count)
    try:
        assert sweep(sockets, db) == 0 and statements == []  # nothing open: no query
        with contextlib.ExitStack() as stack:
            watches = {
                name: stack.enter_context(sockets.watch(who, site_id=site, needs=needs))
                for name, (who, site, needs) in opened.items()
            }
            with db.write() as session:
                accounts.revoke_grant(session, "taken", DEMO_ID, "viewer", actor="test")
                session.get_one(UserRow, signed_in["demoted"].id).roles = []
                accounts.disable_user(session, "gone-off", actor="test")
            statements.clear()
            assert sweep(sockets, db) == 5
            assert len(statements) == 2, statements  # the tokens, then the roles
            closed = {n: w.code for n, w in watches.items() if w.ended.is_set()}
    finally:
        event.remove(db.connection, "before_cursor_execute", count)
    assert closed == {
        "feed of a viewer": 4403,
        "granted elsewhere only": 4403,
        "grant taken back": 4403,
        "global role taken away": 4403,
        "user disabled": 4401,
    }
