"""Sign-ins and the site model's layer tokens are cached, and a revoked token is still refused
within a second on every process (issue 17, reconnect storms).

Real servers (tests/live_server.py in this process; real ``rallypoint serve`` subprocesses for
the three-process test) on real databases. "Another process" changing the database is another
connection committing its own statement. Waiting for a refusal is a real-time property: the
tests poll with a deadline and assert how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import event, text, update
from websockets.asyncio.client import ClientConnection, connect

from command.auth import Role, find_user, issue_token, token_hash
from command.sessions import AUTH_CHANNEL, SignIns
from command.site_model import SiteModels
from gis.errors import Unauthorized
from gis.layers import touch_layer
from gis.storage.db import Database, make_engine
from gis.storage.tables import TokenRow
from tests.conftest import DEMO_ID, site_database
from tests.conftest import sign_in as sign_in_directly
from tests.live_server import LiveServer
from tests.processes import ServerProcess, drop_database, postgis_demo_database, require_postgis
from tests.test_ws_ticket import bearer, close_of, sign_in, subscribe

WAIT_S = 10.0
#: A token revoked, a user disabled or a role taken back is refused within this, everywhere.
BOUND_S = 1.0
SITES = "/api/sites"
SITE = f"/api/sites/{DEMO_ID}"
USERS = {
    "revoked-db": Role.VIEWER,
    "revoked-api": Role.VIEWER,
    "disabled-db": Role.VIEWER,
    "demoted-db": Role.VIEWER,
    "far-away": Role.VIEWER,
}


@pytest.fixture(scope="module", params=["sqlite", "postgis"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The demo site and :data:`USERS`, on each backend; the URL."""
    if request.param == "sqlite":
        yield site_database(tmp_path_factory.mktemp("auth-cache") / "rallypoint.db", USERS)
        return
    url = postgis_demo_database("auth_cache", USERS)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[LiveServer]:
    with LiveServer(database) as live:
        listener = live.app.state.auth_listener
        deadline = time.monotonic() + WAIT_S
        while listener is not None and not listener.listening.is_set():
            assert time.monotonic() < deadline, "the auth listener did not start"
            time.sleep(0.02)
        yield live


def commit_elsewhere(url: str, statement: str, **params: Any) -> float:
    """Run ``statement`` on a connection of its own, as another process would, and commit;
    when it was committed (monotonic)."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), params)
        return time.monotonic()
    finally:
        engine.dispose()


async def refused_after(
    http: httpx.AsyncClient, path: str, token: str, since: float, status: int
) -> float:
    """Seconds from ``since`` until ``path`` answers ``status`` to ``token`` (polled); fails
    after :data:`WAIT_S`."""
    while True:
        answer = await http.get(path, headers=bearer(token))
        if answer.status_code == status:
            return time.monotonic() - since
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - since < WAIT_S, f"{path} still answers {answer.status_code}"
        await asyncio.sleep(0.02)


async def opened(ws_url: str, token: str) -> ClientConnection:
    ws = await connect(ws_url, additional_headers=bearer(token), open_timeout=WAIT_S)
    first = await subscribe(ws)
    assert first["type"] == "snapshot", first
    return ws


def changed_in_the_database(
    server: LiveServer, database: str, username: str, statement: str, path: str, status: int
) -> tuple[float, tuple[int, str]]:
    """Sign ``username`` in, use the token (now cached) over HTTP and a websocket, run
    ``statement`` elsewhere; how long until ``path`` answered ``status`` and the websocket
    was closed (the later of the two), and the close code and reason."""

    async def scenario() -> tuple[float, tuple[int, str]]:
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            token = await sign_in(http, username)
            assert (await http.get(path, headers=bearer(token))).status_code == 200
            ws = await opened(server.ws_url, token)
            try:
                at = commit_elsewhere(database, statement, name=username, hash=token_hash(token))
                took = await refused_after(http, path, token, at, status)
                closed = await close_of(ws, WAIT_S)
                return max(took, time.monotonic() - at), closed
            finally:
                await ws.close()

    return asyncio.run(scenario())


def test_a_token_revoked_in_the_database_is_refused_within_a_second(
    server: LiveServer, database: str
) -> None:
    took, closed = changed_in_the_database(
        server,
        database,
        "revoked-db",
        "UPDATE tokens SET revoked = true WHERE token_hash = :hash",
        SITES,
        401,
    )
    assert took < BOUND_S
    assert closed[0] == 4401


def test_a_user_disabled_in_the_database_is_refused_within_a_second(
    server: LiveServer, database: str
) -> None:
    took, closed = changed_in_the_database(
        server,
        database,
        "disabled-db",
        "UPDATE users SET disabled = true WHERE username = :name",
        SITES,
        401,
    )
    assert took < BOUND_S
    assert closed[0] == 4401


def test_a_role_taken_back_in_the_database_is_refused_within_a_second(
    server: LiveServer, database: str
) -> None:
    # An administrator only: nothing on a site (the roles are JSON, written as such).
    took, closed = changed_in_the_database(
        server,
        database,
        "demoted-db",
        "UPDATE users SET roles = '[\"admin\"]' WHERE username = :name",
        SITE,
        403,
    )
    assert took < BOUND_S
    assert closed[0] == 4403


def test_a_token_revoked_through_the_api_is_refused_at_once(server: LiveServer) -> None:
    async def scenario() -> tuple[int, tuple[int, str]]:
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            token = await sign_in(http, "revoked-api")
            assert (await http.get(SITES, headers=bearer(token))).status_code == 200
            ws = await opened(server.ws_url, token)
            try:
                answer = await http.post("/api/auth/logout", headers=bearer(token))
                assert answer.status_code == 204, answer.text
                after = (await http.get(SITES, headers=bearer(token))).status_code
                return after, await close_of(ws)
            finally:
                await ws.close()

    after, closed = asyncio.run(scenario())
    assert after == 401
    assert closed == (4401, "signed out")


# -- the caches on their own, with their clocks injected -----------------------------------------


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    """The statements sent to the database meanwhile."""
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def session_token(db: Database, username: str, *, ttl_s: int = 3600) -> tuple[str, datetime]:
    with db.write() as session:
        issued = issue_token(session, find_user(session, username), ttl_s=ttl_s)
    assert issued.expires_at is not None
    return issued.token, issued.expires_at


def test_a_cached_token_costs_no_query_and_still_expires_on_time(db: Database) -> None:
    sign_in_directly(db, "cached-one", [Role.VIEWER])
    token, expires_at = session_token(db, "cached-one")
    ticks = Ticks()  # never moves: the entry would be kept for ever
    sign_ins = SignIns(monotonic=ticks)
    first = sign_ins.resolve(db, token, now=expires_at - timedelta(minutes=1))
    with counted(db) as sent:
        again = sign_ins.resolve(db, token, now=expires_at - timedelta(microseconds=1))
        assert again == first and again.username == "cached-one"
        with pytest.raises(Unauthorized, match="expired"):
            sign_ins.resolve(db, token, now=expires_at)
    assert sent == []


def test_a_change_by_this_process_lapses_the_cache_at_once(db: Database) -> None:
    sign_in_directly(db, "cached-two", [Role.VIEWER])
    token, _ = session_token(db, "cached-two")
    sign_ins = SignIns(monotonic=Ticks())
    sign_ins.resolve(db, token)
    with db.write() as session:  # as revoke_sessions does: an UPDATE statement, no objects
        session.execute(
            update(TokenRow).where(TokenRow.token_hash == token_hash(token)).values(revoked=True)
        )
    with pytest.raises(Unauthorized, match="revoked"):
        sign_ins.resolve(db, token)


def test_a_change_no_word_arrives_of_is_seen_after_the_fresh_time(db: Database) -> None:
    sign_in_directly(db, "cached-three", [Role.VIEWER])
    token, _ = session_token(db, "cached-three")
    ticks = Ticks()
    sign_ins = SignIns(monotonic=ticks)
    sign_ins.resolve(db, token)
    # Past the ORM, as another process's write: this process hears nothing of it.
    assert db.connection is not None
    db.connection.execute(
        text("UPDATE tokens SET revoked = true WHERE token_hash = :hash"),
        {"hash": token_hash(token)},
    )
    assert sign_ins.resolve(db, token).username == "cached-three"  # kept: no word came
    ticks.now += sign_ins.fresh_s
    with pytest.raises(Unauthorized, match="revoked"):
        sign_ins.resolve(db, token)


def test_the_layer_tokens_are_kept_and_lapse_on_a_write_or_in_time(db: Database) -> None:
    ticks = Ticks()
    models = SiteModels(db, monotonic=ticks)
    first = models.get(DEMO_ID)
    with counted(db) as sent:
        assert models.current(DEMO_ID)
        assert models.get(DEMO_ID) is first
    assert sent == []
    # Another process's write (past the ORM): seen once the tokens lapse.
    assert db.connection is not None
    db.connection.execute(
        text(
            "UPDATE layer_revisions SET token = 'elsewhere' WHERE site_id = :site "
            "AND layer = 'zones'"
        ),
        {"site": DEMO_ID},
    )
    assert models.get(DEMO_ID) is first
    ticks.now += models.fresh_s
    assert not models.current(DEMO_ID)
    second = models.get(DEMO_ID)
    assert second is not first and second.tokens["zones"] == "elsewhere"
    # This process's own write: seen at once.
    with db.write() as session:
        touch_layer(session, DEMO_ID, "zones")
    third = models.get(DEMO_ID)
    assert third is not second and third.tokens["zones"] != "elsewhere"
    # A wake-up (an edit in the PostGIS tables, command.layer_listener): seen at once too.
    db.connection.execute(
        text(
            "UPDATE layer_revisions SET token = 'edited' WHERE site_id = :site AND layer = 'zones'"
        ),
        {"site": DEMO_ID},
    )
    models.forget(DEMO_ID)
    assert models.get(DEMO_ID).tokens["zones"] == "edited"


# -- PostGIS: every process hears of it --------------------------------------------------------


def test_the_database_names_revoked_tokens_and_changed_users(tmp_path: Path) -> None:
    """Migration 0019's triggers: a token revoked or deleted names its hash; a user disabled,
    or a grant made, changed or taken back, names the user; other changes are quiet."""
    require_postgis()
    url = postgis_demo_database("auth_notify", {"notified": Role.VIEWER})
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            user = find_user(session, "notified")
            hashed = token_hash(issue_token(session, user, ttl_s=60).token)
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as listening:
            listening.execute(f"LISTEN {AUTH_CHANNEL}")
            for statement in (
                "UPDATE tokens SET revoked = true WHERE token_hash = :hash",
                "UPDATE tokens SET revoked = true WHERE token_hash = :hash",  # no change: quiet
                "UPDATE users SET disabled = true WHERE id = :user",
                "UPDATE users SET display_name = 'n' WHERE id = :user",  # not a sign-in: quiet
                "INSERT INTO site_roles (user_id, site_id, roles) "
                "VALUES (:user, :site, '[\"planner\"]')",
                "UPDATE site_roles SET roles = '[\"viewer\"]' WHERE user_id = :user",
                "DELETE FROM site_roles WHERE user_id = :user",
                "DELETE FROM tokens WHERE token_hash = :hash",
            ):
                with engine.begin() as connection:
                    connection.execute(
                        text(statement), {"hash": hashed, "user": user.id, "site": DEMO_ID}
                    )
            heard = [json.loads(n.payload) for n in listening.notifies(timeout=1.0)]
    finally:
        engine.dispose()
        drop_database(url)
    token, person = {"token": hashed}, {"user": user.id}
    assert heard == [token, person, person, person, person, token]


def test_a_token_revoked_on_one_process_is_refused_on_all_three(tmp_path: Path) -> None:
    """Three ``rallypoint serve`` processes on one PostGIS: a token signed in on the first and
    used on all three (HTTP and websockets), signed out on the first, is refused by all three
    within a second, and their websockets close."""
    url = postgis_demo_database("auth_three", {"roaming": Role.VIEWER})
    servers = [ServerProcess(url, tmp_path / f"p{i}.log", ws_heartbeat_s=1) for i in range(3)]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready()
        took, closed = asyncio.run(_three(servers))
    finally:
        for server in servers:
            server.stop()
        drop_database(url)
    assert all(t < BOUND_S for t in took), took
    assert [code for code, _ in closed] == [4401, 4401, 4401], closed


async def _three(servers: list[ServerProcess]) -> tuple[list[float], list[tuple[int, str]]]:
    first = servers[0]
    clients = [httpx.AsyncClient(base_url=s.base, timeout=WAIT_S) for s in servers]
    try:
        token = await sign_in(clients[0], "roaming")
        for http in clients:
            assert (await http.get(SITES, headers=bearer(token))).status_code == 200
        sockets = [await opened(s.ws_url, token) for s in servers]
        try:
            answer = await clients[0].post("/api/auth/logout", headers=bearer(token))
            assert answer.status_code == 204, answer.text
            at = time.monotonic()
            took = list(
                await asyncio.gather(*(refused_after(h, SITES, token, at, 401) for h in clients))
            )
            closed = list(await asyncio.gather(*(close_of(ws, WAIT_S) for ws in sockets)))
            took.append(time.monotonic() - at)  # when the last websocket closed
        finally:
            for ws in sockets:
                await ws.close()
        assert first.running
        return took, closed
    finally:
        for http in clients:
            await http.aclose()
