"""Dependencies shared by the routers (``Annotated`` aliases, as in FastAPI's template).

Every route but ``/healthz`` and the login names the roles it needs with :func:`requires`;
``tests/test_auth.py`` walks ``app.routes`` and fails on a route that does not.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Request, Security, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from command.auth import HUMAN_ROLES, Principal, Role, resolve_token
from gis.errors import FieldError, InvalidInput, NotPermitted, Unauthorized
from gis.storage.db import Database

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


def principal_for(db: Database, token: str) -> Principal:
    with db.read() as session:
        return resolve_token(session, token)


def get_principal(
    db: Annotated[Database, Depends(get_db)], token: Annotated[str, Depends(get_token)]
) -> Principal:
    return principal_for(db, token)


class RoleCheck:
    """A dependency that lets through a principal holding any of ``roles``, else 403."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        check_roles(principal, self.roles)
        return principal


def check_roles(principal: Principal, roles: frozenset[Role]) -> None:
    if principal.roles.isdisjoint(roles):
        needed = ", ".join(sorted(roles))
        held = ", ".join(sorted(principal.roles)) or "none"
        raise NotPermitted(
            f"this needs one of the roles {needed}; {principal.username} holds {held}",
            errors=[FieldError("role", f"one of {needed}")],
        )


def requires(*roles: Role) -> RoleCheck:
    """``Depends(requires(Role.PLANNER))``: the caller must hold one of ``roles``."""
    if not roles:
        raise ValueError("requires() needs at least one role")
    return RoleCheck(frozenset(roles))


def websocket_principal(websocket: WebSocket, db: Database, *roles: Role) -> Principal:
    """The principal of a websocket subscription, checked for ``roles``.

    Browsers cannot set headers on a websocket, so the token may also come as
    ``?access_token=`` (RFC 6750 section 2.3; the request log never records query strings).
    Raises :class:`Unauthorized` or :class:`NotPermitted`; the route closes the socket with
    4401 or 4403 before accepting it.
    """
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else ""
    token = token or websocket.query_params.get("access_token", "")
    if not token:
        raise Unauthorized("sign in first: send 'Authorization: Bearer <token>' or ?access_token=")
    principal = principal_for(db, token)
    check_roles(principal, frozenset(roles))
    return principal


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
# Reading needs any human role (a device token reads nothing); changing the site model and the
# plans needs a planner.
ReaderDep = Annotated[Principal, Depends(requires(*HUMAN_ROLES))]
PlannerDep = Annotated[Principal, Depends(requires(Role.PLANNER))]
