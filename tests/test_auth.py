"""Users, tokens and roles: login, expiry, logout, and the roles every route needs, at the site
of the route."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from command import accounts
from command.app import create_app
from command.auth import (
    HUMAN_ROLES,
    USER_ROLES,
    WRONG_LOGIN,
    Principal,
    Role,
    create_device_token,
    create_user,
    find_user,
    issue_token,
    resolve_token,
    revoke,
)
from command.deps import RoleCheck
from command.routes.sites import SITE_EXAMPLE
from command.settings import Settings
from gis.errors import AlreadyExists, InvalidInput, NotFound, Unauthorized
from gis.sites import create_site
from gis.storage.db import Database
from gis.storage.tables import TokenRow, UserRow
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, FAST_HASHER, TEST_PASSWORD, sign_in
from tests.problems import assert_problem

# Open to anyone: a monitor asks /healthz without signing in, the login hands out tokens, the
# map wall's page (no data: it signs in through the login) is where a browser starts, and the
# API documentation's pages (no data either: the Authorize button takes a token).
PUBLIC = {
    ("GET", "/healthz"),
    ("POST", "/api/auth/login"),
    # The person called answers with their call-out's token, which answers that notice only.
    ("POST", "/api/notices/answer"),
    ("GET", "/answer"),
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", "/docs/swagger-init.js"),
    ("GET", "/redoc"),
    ("GET", "/redoc/redoc-init.js"),
    # The phone app's shell: the page signs in itself, and holds no data until it has.
    ("GET", "/phone"),
    ("GET", "/phone/"),
    ("GET", "/phone/manifest.webmanifest"),
    ("GET", "/phone/sw.js"),
}
SITE_MODEL_AND_PLANS = re.compile(r"/api/sites(/\{site_id\}(/(layers|plans)(/.*)?)?)?")
PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
PATH_VALUES = {"site_id": DEMO_ID, "layer": "zones", "feature_id": "Z-001", "plan_id": "no-plan"}


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- login, tokens, logout ---------------------------------------------------------------------


def test_login_me_and_the_argon2_hash(anonymous_client: TestClient, db: Database) -> None:
    with db.write() as session:
        create_user(session, "Chen.Wei", "a long enough password", ["commander"], "Chen Wei")
        stored = session.scalar(select(UserRow.password_hash).where(UserRow.username == "chen.wei"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert "a long enough password" not in stored

    before = datetime.now(UTC)
    response = login(anonymous_client, "chen.wei", "a long enough password")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"] == {
        "username": "chen.wei",
        "display_name": "Chen Wei",
        "roles": ["commander"],
        "site_roles": {},
    }
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=11.9) < expires - before < timedelta(hours=12.1)  # the default TTL

    me = anonymous_client.get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == "chen.wei"
    with db.read() as session:
        hashes = set(session.scalars(select(TokenRow.token_hash)))
    assert body["access_token"] not in hashes  # stored as its SHA-256 only


def test_a_wrong_login_says_the_same_for_unknown_users(
    anonymous_client: TestClient, db: Database
) -> None:
    with db.write() as session:
        create_user(session, "sun-li", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        create_user(session, "gone-user", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        session.execute(
            update(UserRow).where(UserRow.username == "gone-user").values(disabled=True)
        )
    details = set()
    for username, password in [
        ("sun-li", "not the password"),
        ("nobody-here", TEST_PASSWORD),
        ("gone-user", TEST_PASSWORD),
        ("sun-li", "x" * 2000),
    ]:
        response = login(anonymous_client, username, password)
        body = assert_problem(response, 401 if len(password) < 2000 else 422)
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
            assert body["type"] == "/problems/unauthorized"
            details.add(body["detail"])
    assert details == {WRONG_LOGIN}
    assert_problem(
        anonymous_client.post("/api/auth/login", json={"username": "sun-li"}),
        422,
        field="body.password",
    )


def test_a_login_upgrades_a_weak_hash(anonymous_client: TestClient, db: Database) -> None:
    with db.write() as session:
        create_user(session, "old-hash", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
    assert login(anonymous_client, "old-hash", TEST_PASSWORD).status_code == 200
    with db.read() as session:
        stored = session.scalar(select(UserRow.password_hash).where(UserRow.username == "old-hash"))
    assert stored is not None and stored.startswith("$argon2id$v=19$m=65536,")


def test_tokens_expire_and_are_revoked(anonymous_client: TestClient, db: Database) -> None:
    with db.write() as session:
        user = create_user(session, "wang-fang", TEST_PASSWORD, ["planner"], hasher=FAST_HASHER)
        yesterday = datetime.now(UTC) - timedelta(days=1)
        stale = issue_token(session, user, ttl_s=3600, now=yesterday).token
        fresh = issue_token(session, user, ttl_s=3600).token
        principal = resolve_token(session, fresh)
        assert principal == Principal(user.id, "wang-fang", frozenset({Role.PLANNER}), "session")
        later = datetime.now(UTC) + timedelta(seconds=3601)
        with pytest.raises(Unauthorized, match="expired"):
            resolve_token(session, fresh, later)

    body = assert_problem(anonymous_client.get("/api/auth/me", headers=bearer(stale)), 401)
    assert "expired" in body["detail"]
    assert anonymous_client.get("/api/auth/me", headers=bearer(fresh)).status_code == 200
    assert anonymous_client.post("/api/auth/logout", headers=bearer(fresh)).status_code == 204
    body = assert_problem(anonymous_client.get("/api/auth/me", headers=bearer(fresh)), 401)
    assert "revoked" in body["detail"]
    with db.write() as session:
        revoke(session, fresh)  # twice is harmless
        revoke(session, "never-issued")


def test_a_disabled_user_loses_their_sessions(anonymous_client: TestClient, db: Database) -> None:
    headers = sign_in(db, "zhao-min", [Role.RESPONDER])
    assert anonymous_client.get("/api/sites", headers=headers).status_code == 200
    with db.write() as session:
        session.execute(update(UserRow).where(UserRow.username == "zhao-min").values(disabled=True))
    assert_problem(anonymous_client.get("/api/sites", headers=headers), 401)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-token",
        "Bearer " + "x" * 300,
    ],
)
def test_missing_or_bad_credentials_are_401(
    anonymous_client: TestClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = anonymous_client.get("/api/sites", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_docs_and_health_need_no_token(anonymous_client: TestClient) -> None:
    assert anonymous_client.get("/healthz").json()["status"] == "ok"
    assert anonymous_client.get("/docs").status_code == 200
    schema = anonymous_client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    assert schema["paths"]["/api/sites"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


# --- users and devices (the domain, without HTTP) ---------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "roles", "field"),
    [
        ("ab", TEST_PASSWORD, ["viewer"], "username"),
        ("has space", TEST_PASSWORD, ["viewer"], "username"),
        ("-dash-first", TEST_PASSWORD, ["viewer"], "username"),
        ("x" * 65, TEST_PASSWORD, ["viewer"], "username"),
        ("li-na", "short", ["viewer"], "password"),
        ("li-na", " " * 12, ["viewer"], "password"),
        ("li-na", TEST_PASSWORD, [], "roles"),
        ("li-na", TEST_PASSWORD, ["root"], "roles"),
        ("li-na", TEST_PASSWORD, ["device"], "roles"),
    ],
)
def test_user_rules(
    db: Database, username: str, password: str, roles: list[str], field: str
) -> None:
    with db.write() as session, pytest.raises(InvalidInput) as raised:
        create_user(session, username, password, roles, hasher=FAST_HASHER)
    assert [e.field for e in raised.value.errors] == [field]


def test_a_username_is_taken_whatever_its_case(db: Database) -> None:
    with db.write() as session:
        create_user(session, "liu-yang", TEST_PASSWORD, ["viewer"], hasher=FAST_HASHER)
        with pytest.raises(AlreadyExists):
            create_user(session, "Liu-Yang", TEST_PASSWORD, ["planner"], hasher=FAST_HASHER)
        assert find_user(session, "LIU-YANG").roles == {Role.VIEWER}


def test_device_tokens(anonymous_client: TestClient, db: Database) -> None:
    with db.write() as session:
        issued = create_device_token(session, DEMO_ID, "gateway-north", timedelta(days=30))
        principal = resolve_token(session, issued.token)
        with pytest.raises(NotFound):
            create_device_token(session, "no-such-site", "gw", timedelta(days=1))
        with pytest.raises(InvalidInput):
            create_device_token(session, DEMO_ID, " ", timedelta(days=1))
    assert principal.kind == "device" and principal.site_id == DEMO_ID
    assert principal.roles == {Role.DEVICE} and principal.username == "device:gateway-north"
    body = assert_problem(anonymous_client.get("/api/sites", headers=bearer(issued.token)), 403)
    assert "viewer" in body["detail"]


# --- the role matrix: every route of the app -----------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    dependant: Dependant

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def endpoints() -> list[Endpoint]:
    """Every HTTP route of a fresh app, one per method (included routers flattened)."""
    found = []
    for context in iter_route_contexts(create_app(Settings()).routes):
        if isinstance(context.original_route, APIRoute):
            for method in context.methods or ():
                found.append(Endpoint(method, context.path or "", context.dependant))
    return sorted(found, key=lambda e: (e.path, e.method))


def required_roles(endpoint: Endpoint) -> frozenset[Role] | None:
    """The roles the route's :class:`RoleCheck` lets in; None when it has none."""
    found: frozenset[Role] | None = None
    pending = list(endpoint.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if isinstance(dependency.call, RoleCheck):
            found = (found or frozenset()) | dependency.call.roles
        pending.extend(dependency.dependencies)
    return found


ROUTES = endpoints()
PRINCIPALS: list[Role | None] = [None, Role.DEVICE, *sorted(USER_ROLES)]


def test_every_route_names_the_roles_it_needs() -> None:
    unchecked = [
        str(e) for e in ROUTES if (e.method, e.path) not in PUBLIC and not required_roles(e)
    ]
    assert not unchecked, f"routes without a role check (Depends(requires(...))): {unchecked}"


#: The plan workflow's reviews (docs/planners.md): approving is a commander's or an
#: approver's; a submission goes back to draft by its reviewers or a planner.
PLAN_REVIEWS = {
    "/api/sites/{site_id}/plans/{plan_id}/approve": {Role.COMMANDER, Role.APPROVER},
    "/api/sites/{site_id}/plans/{plan_id}/return": {Role.PLANNER, Role.COMMANDER, Role.APPROVER},
}


def test_the_site_model_and_plans_policy() -> None:
    """Reading needs any human role; changing sites, layers and plans needs a planner, and
    approving a plan a commander or an approver."""
    site_routes = [e for e in ROUTES if SITE_MODEL_AND_PLANS.fullmatch(e.path)]
    for e in site_routes:
        expected = HUMAN_ROLES if e.method == "GET" else PLAN_REVIEWS.get(e.path, {Role.PLANNER})
        assert required_roles(e) == expected, str(e)
    assert {e.path for e in site_routes} >= set(PLAN_REVIEWS)
    assert len(site_routes) >= 19
    for e in ROUTES:
        if e.path.startswith("/api/auth/") and (e.method, e.path) not in PUBLIC:
            assert required_roles(e) == USER_ROLES, str(e)  # one's own account: admins too
        if e.path.startswith("/api/admin/"):
            assert required_roles(e) == frozenset({Role.ADMIN}), str(e)
        elif Role.ADMIN in (required_roles(e) or ()):
            assert e.path.startswith("/api/auth/"), f"admin gives nothing on a site: {e}"


#: A site's layer conflicts with the group (docs/offline.md): its planners and commanders read
#: them, its planners settle them.
LAYER_CONFLICTS = {
    ("GET", "/api/sites/{site_id}/layer-conflicts"): frozenset({Role.PLANNER, Role.COMMANDER}),
    ("POST", "/api/sites/{site_id}/layer-conflicts/{conflict_id}/resolve"): frozenset(
        {Role.PLANNER}
    ),
}


def test_the_layer_conflicts_policy() -> None:
    found = {(e.method, e.path): required_roles(e) for e in ROUTES if "/layer-conflicts" in e.path}
    assert found == LAYER_CONFLICTS


def _request(client: TestClient, endpoint: Endpoint, headers: dict[str, str]) -> httpx.Response:
    url = PATH_PARAM.sub(lambda m: PATH_VALUES.get(m[1], "x"), endpoint.path)
    body: dict[str, Any] | None = {} if endpoint.method in ("POST", "PUT", "PATCH") else None
    response: httpx.Response = client.request(endpoint.method, url, json=body, headers=headers)
    return response


@pytest.mark.parametrize("endpoint", ROUTES, ids=str)
def test_role_matrix(anonymous_client: TestClient, db: Database, endpoint: Endpoint) -> None:
    """Anonymous: 401. A principal without a needed role: 403 naming them. Anyone else gets
    through the check (whatever the route then says of the empty request: 200, 404, 422...)."""
    needed = required_roles(endpoint) or frozenset()
    public = (endpoint.method, endpoint.path) in PUBLIC
    for role in PRINCIPALS:
        if role is None:
            headers = {}
        elif role is Role.DEVICE:
            with db.write() as session:
                token = create_device_token(session, DEMO_ID, "matrix", timedelta(hours=1)).token
            headers = bearer(token)
        else:
            headers = sign_in(db, f"matrix-{role.value.replace('_', '-')}", [role])
        response = _request(anonymous_client, endpoint, headers)
        who = f"{role or 'anonymous'}: {endpoint}"
        assert response.status_code < 500, (who, response.text)
        if public or (role is not None and role in needed):
            assert response.status_code not in (401, 403), (who, response.text)
        elif role is None:
            assert_problem(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
        else:
            body = assert_problem(response, 403, field="role")
            assert body["type"] == "/problems/not-permitted", who
            assert all(r in body["detail"] for r in needed), who


def test_a_viewer_reads_but_does_not_write(client: TestClient, db: Database) -> None:
    viewer = sign_in(db, "only-viewer", [Role.VIEWER])
    zones = client.get(f"/api/sites/{DEMO_ID}/layers/zones", headers=viewer)
    assert zones.status_code == 200 and len(zones.json()["features"]) == 48
    feature = zones.json()["features"][0]
    url = f"/api/sites/{DEMO_ID}/layers/zones/features/{feature['id']}"
    body = assert_problem(client.put(url, json=feature, headers=viewer), 403)
    assert "planner" in body["detail"] and "only-viewer" in body["detail"]
    assert client.get(url, headers=viewer).json() == client.get(url).json()


def test_the_login_answer_is_never_cached(anonymous_client: TestClient, db: Database) -> None:
    sign_in(db, "cache-test")
    answer = anonymous_client.post(
        "/api/auth/login", json={"username": "cache-test", "password": TEST_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"


def test_no_token_in_a_query_string_reaches_the_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn logs a websocket's path with its query string ('"WebSocket /ws?access_token=..."
    [accepted]'); the app's filter keeps the path and drops the rest, on uvicorn's loggers and
    its own."""
    secret = "tok-9f8e7d6c5b4a"
    caplog.set_level(logging.INFO)
    # A uvicorn server started earlier in the session (a live-server test) set its loggers
    # to WARNING and not to propagate: hear them directly, or the test would depend on order.
    for name in ("uvicorn.error", "uvicorn.access"):
        caplog.set_level(logging.INFO, logger=name)
        logging.getLogger(name).addHandler(caplog.handler)
    try:
        _log_and_request(client, secret)
    finally:
        for name in ("uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).removeHandler(caplog.handler)
    # The server's lines (the test client's own httpx logger is not the server's).
    records = {id(r): r for r in caplog.records}.values()
    logged = "\n".join(
        r.getMessage() for r in records if r.name.startswith(("uvicorn", "rallypoint"))
    )
    assert "/ws?[redacted]" in logged and "/api/sites" in logged
    assert secret not in logged


def _log_and_request(client: TestClient, secret: str) -> None:
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5555", f"/ws?access_token={secret}"
    )
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5555",
        "GET",
        f"/api/sites?access_token={secret}",
        "1.1",
        200,
    )
    client.get(f"/api/sites?access_token={secret}")


# --- roles per site ------------------------------------------------------------------------------

OTHER_ID = "north-works"


def add_other_site(db: Database) -> str:
    """A second site beside the demo works (empty: the checks come before any work)."""
    with db.write() as session:
        create_site(session, {**SITE_EXAMPLE, "id": OTHER_ID}, actor="test")
    return OTHER_ID


def granted(db: Database, username: str, site_id: str, roles: set[Role]) -> dict[str, str]:
    """A session of a new user who holds ``roles`` on ``site_id`` only."""
    with db.write() as session:
        create_user(session, username, TEST_PASSWORD, roles, site_id=site_id, hasher=FAST_HASHER)
    return sign_in(db, username)


def test_a_commander_of_one_site_is_a_viewer_of_another(command: TestClient, db: Database) -> None:
    """Granted commander on the demo works, viewer everywhere: activating on the other site is
    403, reading it is 200; activating on the demo works goes through."""
    other = add_other_site(db)
    headers = sign_in(db, "plant-a-cmd", [Role.VIEWER])
    with db.write() as session:
        accounts.grant(session, "plant-a-cmd", DEMO_ID, "commander", actor="test")
    refused = command.post(
        f"/api/sites/{other}/incidents", json=CHLORINE_ACTIVATION, headers=headers
    )
    body = assert_problem(refused, 403, field="role")
    assert "commander" in body["detail"] and f"at {other}" in body["detail"]
    assert command.get(f"/api/sites/{other}", headers=headers).status_code == 200
    assert command.get(f"/api/sites/{other}/incidents", headers=headers).status_code == 200
    activated = command.post(
        f"/api/sites/{DEMO_ID}/incidents", json=CHLORINE_ACTIVATION, headers=headers
    )
    assert activated.status_code == 201, activated.text
    me = command.get("/api/auth/me", headers=headers).json()
    assert me["roles"] == ["viewer"] and me["site_roles"] == {DEMO_ID: ["commander"]}


def test_a_grant_alone_reads_the_group(anonymous_client: TestClient, db: Database) -> None:
    """No global role: the granted site and, as a viewer (the group rule, docs/group.md),
    every other site; writing there is 403."""
    other = add_other_site(db)
    headers = granted(db, "north-only", other, {Role.PLANNER})
    listed = anonymous_client.get("/api/sites", headers=headers)
    assert listed.status_code == 200, listed.text
    assert {s["id"] for s in listed.json()["sites"]} == {other, DEMO_ID}
    zones = f"/api/sites/{DEMO_ID}/layers/zones"
    assert anonymous_client.get(zones, headers=headers).status_code == 200
    refused = anonymous_client.post(zones, json={}, headers=headers)
    assert "holds viewer at" in assert_problem(refused, 403, field="role")["detail"]
    everywhere = sign_in(db, "global-viewer", [Role.VIEWER])
    seen = {s["id"] for s in anonymous_client.get("/api/sites", headers=everywhere).json()["sites"]}
    assert {DEMO_ID, other} <= seen
    admin = sign_in(db, "only-admin", [Role.ADMIN])  # administers accounts, sees no site
    assert_problem(anonymous_client.get("/api/sites", headers=admin), 403)


SITE_ROUTES = [e for e in ROUTES if "{site_id}" in e.path]


def test_site_routes_are_all_found() -> None:
    assert len(SITE_ROUTES) >= 30, [str(e) for e in SITE_ROUTES]


def test_every_site_route_checks_roles_at_its_site(
    anonymous_client: TestClient, db: Database
) -> None:
    """Every site role, granted on another site, is a viewer on the demo works (the group
    rule): 403 on each route that needs more, through on those a viewer may use; granted here,
    it gets through every check. So no route reads global roles where it has a site (one app
    for every route: the matrix above already pays an app per route)."""
    other = add_other_site(db)
    elsewhere = granted(db, "granted-elsewhere", other, set(HUMAN_ROLES))
    here = granted(db, "granted-here", DEMO_ID, set(HUMAN_ROLES))
    checked = 0
    for endpoint in SITE_ROUTES:
        needed = required_roles(endpoint) or frozenset()
        if needed.isdisjoint(HUMAN_ROLES):  # administration (devices): admin is global only
            # ... or a site server's forwarder at the group (its own site: test_replication.py)
            assert needed in ({Role.ADMIN}, {Role.REPLICATOR}), str(endpoint)
            continue
        seen = _request(anonymous_client, endpoint, elsewhere)
        if Role.VIEWER in needed:
            assert seen.status_code not in (401, 403), (str(endpoint), seen.text)
        else:
            body = assert_problem(seen, 403, field="role")
            assert f"holds viewer at {DEMO_ID}" in body["detail"], str(endpoint)
        response = _request(anonymous_client, endpoint, here)
        assert response.status_code not in (401, 403), (str(endpoint), response.text)
        assert response.status_code < 500, (str(endpoint), response.text)
        checked += 1
    assert checked >= 30
