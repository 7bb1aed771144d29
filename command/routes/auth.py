"""Signing in and out, websocket tickets, and a user's own password.

Failed sign-ins are throttled per username and per address (``command.ratelimit``): past the
free failures the answer is 429 with ``Retry-After``, whatever the password. Signing out and
changing one's password close the websockets of the sessions that end (``command.sessions``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from command import accounts, auth, ratelimit
from command.deps import DatabaseDep, PersonOrWallDep, SignedInDep, TokenDep
from command.problems import PROBLEM_JSON, problem_body
from command.sessions import live_sockets
from command.settings import Settings
from gis.errors import Unauthorized
from plans.clock import Clock, SystemClock

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/auth", tags=["auth"])

THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Too many failed sign-ins for the username or from the address: "
        "refused without checking the password; `Retry-After` says when to try again.",
        "content": {PROBLEM_JSON: {}},
    }
}


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=auth.MAX_PASSWORD)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_password: str = Field(min_length=1, max_length=auth.MAX_PASSWORD)
    new_password: str = Field(min_length=1, max_length=auth.MAX_PASSWORD)


def _clock(request: Request) -> Clock:
    """The command post's clock: tests advance it to end a lockout instead of waiting."""
    post = getattr(request.app.state, "post", None)
    clock: Clock = getattr(post, "clock", None) or SystemClock()
    return clock


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _iso(moment: Any) -> str:
    return str(moment.isoformat().replace("+00:00", "Z"))


async def too_many_attempts(request: Request, exc: Exception) -> JSONResponse:
    """The 429 problem, with ``Retry-After`` (RFC 9110 section 10.2.3) in whole seconds."""
    assert isinstance(exc, ratelimit.TooManyAttempts)
    return JSONResponse(
        problem_body(exc, instance=request.url.path),
        status_code=exc.status_code,
        media_type=PROBLEM_JSON,
        headers={"Retry-After": str(exc.retry_after_s), "Cache-Control": "no-store"},
    )


@router.post(
    "/login",
    summary="Sign in: a bearer token for a username and password",
    description="Send the token as `Authorization: Bearer <token>` until `expires_at`. A wrong "
    "username or password is 401, with the same message either way. After 5 failures for a "
    "username (20 from an address) each further one locks it for 1 s, 2 s, 4 s, ... up to "
    "15 min: meanwhile every attempt is 429, the right password too.",
    responses=THROTTLED,
)
def login(
    db: DatabaseDep,
    request: Request,
    response: Response,
    body: Annotated[
        Login,
        Body(
            openapi_examples={"planner": {"value": {"username": "demo-planner", "password": "…"}}}
        ),
    ],
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    response.headers["Cache-Control"] = "no-store"  # a token: never kept by a cache
    now, address = _clock(request).now(), _address(request)
    with db.write() as session:  # counted before the password is checked: no burst gets by
        ratelimit.reserve(session, body.username, address, now=now)
    try:
        with db.write() as session:
            issued = auth.authenticate(
                session, body.username, body.password, ttl_s=settings.token_ttl_s
            )
            ratelimit.succeeded(session, body.username, address)
    except Unauthorized:
        with db.write() as session:
            ratelimit.locked_warning(session, body.username, address)
            known = auth.user_exists(session, body.username)
        # The typed name only if it is a user's: a password typed into the username box
        # must not reach the log.
        shown = repr(body.username.strip().lower()[:100]) if known else "an unknown username"
        log.warning("failed sign-in as %s from %s", shown, address)
        raise
    assert issued.user is not None and issued.expires_at is not None
    return {
        "access_token": issued.token,
        "token_type": "bearer",
        "expires_at": _iso(issued.expires_at),
        "user": issued.user.to_json(),
    }


@router.post("/logout", status_code=204, summary="Sign out: revoke the token sent")
def logout(request: Request, db: DatabaseDep, principal: SignedInDep, token: TokenDep) -> Response:
    """The token is revoked, and the websockets it opened (or its tickets did) close with 4401
    at once."""
    with db.write() as session:
        auth.revoke(session, token)
    sockets = live_sockets(request.app)
    if sockets is not None:
        sockets.end_tokens([principal.token_hash], "signed out")
    return Response(status_code=204)


@router.get(
    "/me",
    summary="Who the token belongs to: global roles, and roles granted per site",
    description="A wall token (kiosk mode) is answered too: its name, `kind: wall`, and the "
    "viewer role on its one site.",
)
def me(db: DatabaseDep, principal: PersonOrWallDep) -> dict[str, Any]:
    if principal.kind == "wall":
        return {
            "username": principal.username,
            "display_name": principal.username,
            "roles": [],
            "site_roles": {s: sorted(r) for s, r in sorted(principal.site_roles.items())},
            "kind": "wall",
        }
    with db.read() as session:
        return auth.find_user(session, principal.username).to_json()


@router.post(
    "/ws-ticket",
    summary="A ticket to open the websocket with (?ticket=): once, within 30 s",
    description="Browsers cannot send a header on a websocket; rather than the token, the URL "
    "carries this ticket: `wss://HOST/ws?ticket=...`. It opens one connection, as this "
    "session, within 30 seconds; a second use is closed with 4401. Signing out ends the "
    "connection too. A wall token (kiosk mode) gets one too: its websocket follows its own "
    "site only, and revoking the token closes it.",
)
def ws_ticket(db: DatabaseDep, principal: PersonOrWallDep, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "no-store"
    with db.write() as session:
        issued = auth.issue_ticket(session, principal)
    assert issued.expires_at is not None
    return {
        "ticket": issued.token,
        "expires_at": _iso(issued.expires_at),
        "expires_in_s": auth.TICKET_TTL_S,
    }


@router.post(
    "/password",
    status_code=204,
    summary="Change your own password (the current one is needed)",
    description="Every other session of yours is revoked and its websockets closed; this one "
    "stays. A wrong current password counts as a failed sign-in.",
    responses=THROTTLED,
)
def change_password(
    request: Request, db: DatabaseDep, principal: SignedInDep, body: PasswordChange
) -> Response:
    now, address = _clock(request).now(), _address(request)
    with db.write() as session:
        ratelimit.reserve(session, principal.username, address, now=now)
    try:
        with db.write() as session:
            revoked = accounts.change_password(
                session,
                principal.id,
                body.old_password,
                body.new_password,
                keep=principal.token_hash,
            )
    except accounts.WrongPassword:
        with db.write() as session:
            ratelimit.locked_warning(session, principal.username, address)
        raise
    with db.write() as session:
        ratelimit.succeeded(session, principal.username, address)
    sockets = live_sockets(request.app)
    if sockets is not None:
        sockets.end_tokens(revoked, "the password was changed")
    return Response(status_code=204)
