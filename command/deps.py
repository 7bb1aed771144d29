"""Dependencies shared by the routers (``Annotated`` aliases, as in FastAPI's template).

Every route but ``/healthz`` and the login names the roles it needs with :func:`requires`;
``tests/test_auth.py`` walks ``app.routes`` and fails on a route that does not. Roles are
checked at the site of the route's ``{site_id}`` path parameter (global roles and that site's
grants); a route without one checks global roles, or with ``anywhere`` roles held on any site.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Literal

from fastapi import Depends, Header, Request, Security, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from command.auth import (
    HUMAN_ROLES,
    USER_ROLES,
    Principal,
    Role,
    redeem_ticket,
    resolve_token,
    resolve_token_hash,
)
from command.sessions import SignIns, live_sockets
from gis.errors import FieldError, InvalidInput, NotPermitted, Unauthorized
from gis.storage.db import Database

log = logging.getLogger(__name__)

# auto_error=False: a missing or malformed header becomes our 401 problem, not FastAPI's 403.
bearer = HTTPBearer(
    auto_error=False,
    description="A token from POST /api/auth/login (or a device token from "
    "'rallypoint device add'), sent as 'Authorization: Bearer <token>'.",
)


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("sign in first: send 'Authorization: Bearer <token>'")
    return credentials.credentials


def principal_for(db: Database, token: str, sign_ins: SignIns | None = None) -> Principal:
    """Who holds ``token``: from ``sign_ins`` (the app's tokens resolved lately, see
    ``command.sessions``), or from the database when there are none."""
    if sign_ins is not None:
        return sign_ins.resolve(db, token)
    with db.read() as session:
        return resolve_token(session, token)


def _sign_ins(app: object) -> SignIns | None:
    sockets = live_sockets(app)
    return sockets.sign_ins if sockets is not None else None


def get_principal(
    request: Request,
    db: Annotated[Database, Depends(get_db)],
    token: Annotated[str, Depends(get_token)],
) -> Principal:
    return principal_for(db, token, _sign_ins(request.app))


class RoleCheck:
    """A dependency that lets through a principal holding any of ``roles``, else 403.

    The roles are those held at the site of the route's ``site_id`` path parameter; on a route
    without one, global roles, or with ``anywhere`` roles held on any site (the site list,
    signing out).

    A wall token (kiosk mode) is a viewer of its one site that only reads: it is refused (403)
    on every route that is not GET or HEAD, but those built with ``walls="ticket"`` (its
    websocket ticket), and on every route built with ``walls="never"`` (a person's account)."""

    def __init__(
        self,
        roles: frozenset[Role],
        *,
        anywhere: bool = False,
        walls: Literal["read", "ticket", "never"] = "read",
    ) -> None:
        self.roles = roles
        self.anywhere = anywhere
        self.walls = walls

    def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> Principal:
        site_id = request.path_params.get("site_id")
        if principal.kind == "wall":
            check_wall(principal, request.method, self.walls)
        check_roles(principal, self.roles, site_id, anywhere=self.anywhere)
        return principal


WallRule = Literal["read", "ticket", "never"]


def check_wall(principal: Principal, method: str, walls: WallRule) -> None:
    """Refuse a wall token anything but reading (and asking for its websocket ticket)."""
    reads = method in ("GET", "HEAD") and walls != "never"
    if not reads and walls != "ticket":
        raise NotPermitted(
            f"{principal.username} is a wall token: it only reads its site",
            errors=[FieldError("role", "a signed-in person; a wall token only reads")],
        )


def check_roles(
    principal: Principal,
    roles: frozenset[Role],
    site_id: str | None = None,
    *,
    anywhere: bool = False,
) -> None:
    """Refuse (403, naming the roles that may) a principal without one of ``roles`` at
    ``site_id`` (None: global roles; ``anywhere``: on any site)."""
    held = principal.anywhere() if anywhere else principal.roles_at(site_id)
    if held.isdisjoint(roles):
        needed = ", ".join(sorted(roles))
        shown = ", ".join(sorted(held)) or "none"
        where = f" at {site_id}" if site_id is not None and not anywhere else ""
        raise NotPermitted(
            f"this needs one of the roles {needed}; {principal.username} holds {shown}{where}",
            errors=[FieldError("role", f"one of {needed}")],
        )


def requires(
    *roles: Role, anywhere: bool = False, walls: Literal["read", "ticket", "never"] = "read"
) -> RoleCheck:
    """``Depends(requires(Role.PLANNER))``: the caller must hold one of ``roles`` (at the
    route's site, or ``anywhere``); ``walls`` says what a wall token may do (see
    :class:`RoleCheck`)."""
    if not roles:
        raise ValueError("requires() needs at least one role")
    return RoleCheck(frozenset(roles), anywhere=anywhere, walls=walls)


#: Why a websocket with ``?access_token=`` is refused (its close reason, under 123 bytes).
TOKEN_IN_URL = (
    "a token in a URL is refused: use the Authorization header, or a ticket from "
    "POST /api/auth/ws-ticket"
)


def websocket_principal(
    websocket: WebSocket, db: Database, *roles: Role, site_id: str | None = None
) -> Principal:
    """The principal of a websocket, checked for ``roles`` at ``site_id`` (None: anywhere; the
    subscription then names the site, checked there).

    A client signs in with ``Authorization: Bearer <token>``. Browsers cannot set headers on a
    websocket, so they send ``?ticket=`` instead: a ticket from ``POST /api/auth/ws-ticket``,
    good for one connection within 30 s. ``?access_token=`` (a token in the URL, RFC 6750
    section 2.3) is refused, even beside a good header: URLs end up in logs and histories.
    Raises :class:`Unauthorized` or :class:`NotPermitted`; the route closes the socket with
    4401 or 4403.
    """
    if "access_token" in websocket.query_params:
        # Neither the token nor the URL: the address is enough to find the stale client.
        client = websocket.client.host if websocket.client else "unknown"
        log.warning("refused a websocket from %s with a token in its URL", client)
        raise Unauthorized(TOKEN_IN_URL)
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else ""
    ticket = websocket.query_params.get("ticket", "")
    if token:
        principal = principal_for(db, token, _sign_ins(websocket.app))
    elif ticket:
        with db.write() as session:
            principal = redeem_ticket(session, ticket)
    else:
        raise Unauthorized(
            "sign in first: send 'Authorization: Bearer <token>' or ?ticket= from "
            "POST /api/auth/ws-ticket"
        )
    check_roles(principal, frozenset(roles), site_id, anywhere=site_id is None)
    return principal


def still_signed_in(
    db: Database, principal: Principal, *roles: Role, site_id: str | None = None
) -> Principal:
    """``principal`` again from its token's hash (a long-lived connection's later check): the
    token must still be valid and hold ``roles`` at ``site_id``."""
    with db.read() as session:
        again = resolve_token_hash(session, principal.token_hash)
    check_roles(again, frozenset(roles), site_id, anywhere=site_id is None)
    return again


def parse_if_match(value: str | None) -> int | None:
    """``If-Match: "3"`` (or ``W/"3"``) names version 3; ``*`` or nothing names none."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) < 1:
        raise InvalidInput(
            'If-Match must be the ETag of the feature, such as "3"',
            errors=[FieldError("If-Match", 'an ETag such as "3"')],
        )
    return int(text)


def get_if_match(
    if_match: Annotated[
        str | None, Header(description='The version you last saw, as its ETag ("3").')
    ] = None,
) -> int | None:
    return parse_if_match(if_match)


DatabaseDep = Annotated[Database, Depends(get_db)]
IfMatchDep = Annotated[int | None, Depends(get_if_match)]
TokenDep = Annotated[str, Depends(get_token)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
# Reading needs any site role at the site (a device token reads nothing); changing the site model
# and the plans needs a planner there.
ReaderDep = Annotated[Principal, Depends(requires(*HUMAN_ROLES))]
PlannerDep = Annotated[Principal, Depends(requires(Role.PLANNER))]
#: A site role on some site (the site list then shows only those sites).
AnyReaderDep = Annotated[Principal, Depends(requires(*HUMAN_ROLES, anywhere=True))]
#: Any signed-in person, an administrator too (their own account: me, logout, password); never
#: a wall token.
SignedInDep = Annotated[Principal, Depends(requires(*USER_ROLES, anywhere=True, walls="never"))]
#: A signed-in person or a wall token (kiosk mode): the websocket ticket.
PersonOrWallDep = Annotated[
    Principal, Depends(requires(*USER_ROLES, anywhere=True, walls="ticket"))
]
#: User and token administration; gives nothing on a site.
AdminDep = Annotated[Principal, Depends(requires(Role.ADMIN))]
