"""Kiosk mode: a read-only wall token of one site (``rallypoint wall add SITE NAME``), stored
as its hash and revocable like a device token.

A real uvicorn server, real HTTP and a real websocket client: the wall token gets a websocket
ticket and follows its own site; every other site is 403 (4403 on the socket), every write is
403, even on its site, and so are the routes of a person's account. Revoking it (admin API, or
the command line, another process) closes its websocket with 4401 within a second. The attack
is a wall token taken off the wall's screen: it must read one site and do nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.requests import Request
from websockets.asyncio.client import connect

from command.auth import (
    HUMAN_ROLES,
    Role,
    create_wall_token,
    ended_tokens,
    issue_ticket,
    redeem_ticket,
    resolve_token,
    token_hash,
)
from command.cli import main
from command.deps import RoleCheck
from command.routes.sites import SITE_EXAMPLE
from gis.errors import InvalidInput, NotFound, NotPermitted, Unauthorized
from gis.sites import create_site
from gis.storage.db import Database, make_engine
from gis.storage.tables import AccountEventRow, TokenRow
from tests.conftest import DEMO_ID, site_database
from tests.live_server import LiveServer
from tests.test_ws_ticket import (
    WAIT_S,
    bearer,
    close_of,
    is_open,
    sign_in,
    subscribe,
    ticket_for,
)

OTHER_ID = "north-works"
SITE = f"/api/sites/{DEMO_ID}"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo site and a second one, an administrator and a commander; the URL."""
    path = tmp_path_factory.mktemp("wall-tokens") / "rallypoint.db"
    url = site_database(path, {"wall-root": Role.ADMIN, "chief": Role.COMMANDER})
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            create_site(session, {**SITE_EXAMPLE, "id": OTHER_ID}, actor="test")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[LiveServer]:
    with LiveServer(database) as live:
        yield live


async def add_wall(http: httpx.AsyncClient, admin: dict[str, str], name: str) -> dict[str, Any]:
    answer = await http.post(
        f"/api/admin/sites/{DEMO_ID}/walls", json={"name": name, "ttl_days": 30}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    issued: dict[str, Any] = answer.json()
    return issued


def test_the_admin_api_issues_lists_and_revokes_wall_tokens(
    server: LiveServer, database: str
) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            admin = bearer(await sign_in(http, "wall-root"))
            chief = bearer(await sign_in(http, "chief"))
            issued = await add_wall(http, admin, "lobby")
            out["issued"] = issued
            out["listed"] = (
                await http.get(f"/api/admin/sites/{DEMO_ID}/walls", headers=admin)
            ).json()
            out["by commander"] = (
                await http.post(
                    f"/api/admin/sites/{DEMO_ID}/walls", json={"name": "x"}, headers=chief
                )
            ).status_code
            bad = {
                "no name": ({"name": ""}, DEMO_ID),
                "ttl 0": ({"name": "x", "ttl_days": 0}, DEMO_ID),
                "extra field": ({"name": "x", "roles": ["commander"]}, DEMO_ID),
                "unknown site": ({"name": "x"}, "nowhere"),
            }
            out["bad"] = {
                k: (
                    await http.post(f"/api/admin/sites/{site}/walls", json=body, headers=admin)
                ).status_code
                for k, (body, site) in bad.items()
            }
            wall = bearer(issued["token"])
            out["before"] = (await http.get(f"{SITE}/sensors/state", headers=wall)).status_code
            revoked = await http.delete(
                f"/api/admin/sites/{DEMO_ID}/walls/{issued['id']}", headers=admin
            )
            out["revoked"] = revoked.json()
            out["after"] = (await http.get(f"{SITE}/sensors/state", headers=wall)).status_code
            out["again"] = (
                await http.delete(f"/api/admin/sites/{DEMO_ID}/walls/lobby", headers=admin)
            ).status_code
        return out

    out = asyncio.run(scenario())
    issued = out["issued"]
    assert issued["name"] == "lobby" and issued["site"] == DEMO_ID and not issued["revoked"]
    assert issued["kiosk_path"] == f"/#wall={issued['token']}"  # the fragment: never sent
    listed = [w for w in out["listed"]["walls"] if w["id"] == issued["id"]]
    assert listed and "token" not in listed[0]
    assert out["by commander"] == 403
    assert out["bad"] == {"no name": 422, "ttl 0": 422, "extra field": 422, "unknown site": 404}
    assert (out["before"], out["after"], out["again"]) == (200, 401, 404)
    assert [w["id"] for w in out["revoked"]["revoked"]] == [issued["id"]]
    # Only the hash is stored; the acts are on the account record.
    engine = make_engine(database)
    try:
        with Database(engine).read() as session:
            row = session.get(TokenRow, token_hash(issued["token"]))
            assert row is not None and row.kind == "wall" and row.revoked
            assert session.scalar(select(TokenRow).where(TokenRow.name == issued["token"])) is None
            actions = {
                (e.action, e.subject)
                for e in session.scalars(select(AccountEventRow))
                if e.site_id == DEMO_ID
            }
            assert {("wall.added", "wall:lobby"), ("wall.revoked", "wall:lobby")} <= actions
    finally:
        engine.dispose()


def test_a_stolen_wall_token_reads_its_site_and_nothing_else(server: LiveServer) -> None:
    """The attack: the token off the wall's screen. It reads the demo works; the other site,
    every write (its own site too), the account routes and administration are 403."""

    async def scenario() -> dict[str, int]:
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            admin = bearer(await sign_in(http, "wall-root"))
            wall = bearer((await add_wall(http, admin, "control-room"))["token"])
            activation = {
                "plan_id": "chlorine-leak",
                "level": "L2",
                "location": {"type": "Point", "coordinates": [121.35, 30.72]},
                "hazard": {"model": "plan", "wind_speed_m_s": 2, "wind_from_deg": 10},
            }
            tries = {
                "read its site": http.get(f"{SITE}/events", headers=wall),
                "its site's sensors": http.get(f"{SITE}/sensors/state", headers=wall),
                "read another site": http.get(f"/api/sites/{OTHER_ID}/events", headers=wall),
                "activate": http.post(f"{SITE}/incidents", json=activation, headers=wall),
                "post readings": http.post(f"{SITE}/readings", json={"readings": []}, headers=wall),
                "me": http.get("/api/auth/me", headers=wall),
                "sign out": http.post("/api/auth/logout", headers=wall),
                "change password": http.post(
                    "/api/auth/password",
                    json={"old_password": "x" * 10, "new_password": "y" * 10},
                    headers=wall,
                ),
                "administer": http.get("/api/admin/users", headers=wall),
                "ticket": http.post("/api/auth/ws-ticket", headers=wall),
            }
            codes = {k: (await v).status_code for k, v in tries.items()}
            sites = (await http.get("/api/sites", headers=wall)).json()
            codes["sites listed"] = len(sites["sites"]) if isinstance(sites, dict) else len(sites)
            events = (await http.get(f"{SITE}/events", headers=wall)).json()
            codes["incidents logged"] = sum(
                e["type"] == "incident.activated" for e in events["events"]
            )
            return codes

    assert asyncio.run(scenario()) == {
        "read its site": 200,
        "its site's sensors": 200,
        "read another site": 403,
        "activate": 403,
        "post readings": 403,
        "me": 200,  # its name, kind "wall" and the viewer role on its site
        "sign out": 403,
        "change password": 403,
        "administer": 403,
        "ticket": 200,
        "sites listed": 1,
        "incidents logged": 0,
    }


def test_a_wall_follows_its_site_over_a_ticket_and_revoking_closes_it(server: LiveServer) -> None:
    """The wall's websocket: a ticket from its token, a snapshot of its site, 4403 for another
    site; it stays open across the server's sweeps, and revoking the token closes it with 4401
    at once."""

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            admin = bearer(await sign_in(http, "wall-root"))
            token = (await add_wall(http, admin, "gatehouse"))["token"]
            ticket = await ticket_for(http, token)
            async with connect(f"{server.ws_url}?ticket={await ticket_for(http, token)}") as ws:
                out["elsewhere"] = await subscribe(ws, OTHER_ID)
            async with connect(f"{server.ws_url}?ticket={ticket}", open_timeout=WAIT_S) as ws:
                out["here"] = (await subscribe(ws, DEMO_ID))["type"]
                await asyncio.sleep(1.2)  # two sweeps of the open sockets' tokens
                out["open after sweeps"] = await is_open(ws)
                answer = await http.delete(
                    f"/api/admin/sites/{DEMO_ID}/walls/gatehouse", headers=admin
                )
                assert answer.status_code == 200, answer.text
                out["closed"] = await close_of(ws)
        return out

    out = asyncio.run(scenario())
    assert out["elsewhere"] == {"closed": 4403}
    assert out["here"] == "snapshot"
    assert out["open after sweeps"] is True
    assert out["closed"] == (4401, "the wall token was revoked")


def test_the_command_line_issues_lists_and_revokes_and_closes_the_wall(
    server: LiveServer, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rallypoint wall add/list/revoke``; revoking from the command line (another process)
    closes the wall's websocket within a second (the server's sweep)."""
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", database)
    added = CliRunner().invoke(main, ["wall", "add", DEMO_ID, "canteen", "--ttl-days", "7"])
    assert added.exit_code == 0, added.output
    lines = added.output.splitlines()
    token = lines[1]
    assert lines[2].endswith(f"/#wall={token}") and "?" not in lines[2]
    listed = CliRunner().invoke(main, ["wall", "list", DEMO_ID])
    assert "\tcanteen\t" in listed.output and token not in listed.output
    assert "\tlive" in next(li for li in listed.output.splitlines() if "\tcanteen\t" in li)
    unknown = CliRunner().invoke(main, ["wall", "revoke", DEMO_ID, "nobody"])
    assert unknown.exit_code != 0 and "no live wall token" in unknown.output

    async def scenario() -> tuple[int, str]:
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            ticket = await ticket_for(http, token)
        async with connect(f"{server.ws_url}?ticket={ticket}", open_timeout=WAIT_S) as ws:
            assert (await subscribe(ws))["type"] == "snapshot"
            result = await asyncio.to_thread(
                CliRunner().invoke, main, ["wall", "revoke", DEMO_ID, "canteen"]
            )
            assert result.exit_code == 0 and "revoked" in result.output, result.output
            return await close_of(ws)

    code, reason = asyncio.run(scenario())
    assert code == 4401 and "session ended" in reason
    listed = CliRunner().invoke(main, ["wall", "list", DEMO_ID])
    assert "\trevoked" in next(li for li in listed.output.splitlines() if "\tcanteen\t" in li)


def test_a_wall_token_is_a_viewer_of_one_site(db: Database) -> None:
    with db.write() as session:
        issued = create_wall_token(session, DEMO_ID, "lobby", timedelta(days=1))
        wall = resolve_token(session, issued.token)
        assert wall.kind == "wall" and wall.username == "wall:lobby"
        assert wall.roles_at(DEMO_ID) == {Role.VIEWER} and wall.roles == frozenset()
        assert wall.sees(DEMO_ID) and not wall.sees("north-works")
        # A ticket opens one connection as the wall.
        ticket = issue_ticket(session, wall).token
        assert redeem_ticket(session, ticket).token_hash == wall.token_hash
        # The sweep keeps a live wall's socket; an expired one ends.
        assert ended_tokens(session, [wall.token_hash]) == set()
        later = datetime.now(UTC) + timedelta(days=2)
        assert ended_tokens(session, [wall.token_hash], later) == {wall.token_hash}
        with pytest.raises(Unauthorized):
            resolve_token(session, issued.token, later)
        with pytest.raises(NotFound):
            create_wall_token(session, "nowhere", "lobby", None)
        with pytest.raises(InvalidInput):
            create_wall_token(session, DEMO_ID, " ", None)


def _request(method: str) -> Request:
    return Request({"type": "http", "method": method, "path_params": {"site_id": DEMO_ID}})


def test_a_wall_token_never_writes_whatever_role_a_route_lets_a_viewer_do(db: Database) -> None:
    """A write route open to viewers (none is today) still refuses a wall token: the rule is
    the token's, not each route's."""
    with db.write() as session:
        wall = resolve_token(session, create_wall_token(session, DEMO_ID, "w", None).token)
    readers = RoleCheck(frozenset(HUMAN_ROLES))
    assert readers(_request("GET"), wall) is wall
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(NotPermitted):
            readers(_request(method), wall)
    assert RoleCheck(frozenset(HUMAN_ROLES), walls="ticket")(_request("POST"), wall) is wall
    with pytest.raises(NotPermitted):
        RoleCheck(frozenset(HUMAN_ROLES), walls="never")(_request("GET"), wall)
