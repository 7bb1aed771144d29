"""User and token administration, for the ``admin`` role (which gives nothing on a site).

Every act is recorded in ``account_events`` (``GET /api/admin/events``). Disabling a user,
resetting a password and revoking a device or wall token revoke the tokens concerned and close the
websockets they opened, at once, with 4401.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from command import accounts, auth
from command.auth import HUMAN_ROLES, Role
from command.deps import AdminDep, DatabaseDep
from command.sessions import ROLE_TAKEN, ROLE_TAKEN_REASON, live_sockets
from gis.errors import FieldError, InvalidInput

router = APIRouter(prefix="/api/admin", tags=["administration"])


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=auth.MAX_PASSWORD)


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str = Field(min_length=1, max_length=64)
    role: Role


def _end(request: Request, hashes: list[str], reason: str, user_id: str | None = None) -> None:
    sockets = live_sockets(request.app)
    if sockets is not None:
        sockets.end_tokens(hashes, reason)
        if user_id is not None:
            sockets.end_user(user_id, reason)


@router.get("/users", summary="Every user: roles held everywhere, roles granted per site")
def list_users(db: DatabaseDep, admin: AdminDep) -> dict[str, Any]:
    with db.read() as session:
        users = auth.list_users(session)
    return {"users": [{**u.to_json(), "disabled": u.disabled} for u in users]}


@router.post(
    "/users/{username}/disable",
    summary="Disable a user: no sign-in; every session revoked and its websockets closed",
)
def disable_user(
    request: Request, db: DatabaseDep, admin: AdminDep, username: str
) -> dict[str, Any]:
    if username.strip().lower() == admin.username:
        raise InvalidInput(
            "an administrator cannot disable themselves",
            errors=[FieldError("username", "not your own account")],
        )
    with db.write() as session:
        revoked = accounts.disable_user(session, username, actor=admin.username)
        user = auth.find_user(session, username)
    _end(request, revoked, "the account was disabled", user.id)
    return {**user.to_json(), "disabled": True, "sessions_revoked": len(revoked)}


@router.post("/users/{username}/enable", summary="Let a disabled user sign in again")
def enable_user(db: DatabaseDep, admin: AdminDep, username: str) -> dict[str, Any]:
    with db.write() as session:
        accounts.enable_user(session, username, actor=admin.username)
        user = auth.find_user(session, username)
    return {**user.to_json(), "disabled": False}


@router.post(
    "/users/{username}/password",
    status_code=204,
    summary="Set a user's password; all their sessions are revoked and websockets closed",
)
def reset_password(
    request: Request, db: DatabaseDep, admin: AdminDep, username: str, body: NewPassword
) -> Response:
    with db.write() as session:
        revoked = accounts.reset_password(session, username, body.password, actor=admin.username)
        user = auth.find_user(session, username)
    _end(request, revoked, "the password was reset", user.id)
    return Response(status_code=204)


@router.post("/users/{username}/grants", summary="Grant a user a role on one site")
def grant_role(db: DatabaseDep, admin: AdminDep, username: str, body: Grant) -> dict[str, Any]:
    with db.write() as session:
        accounts.grant(session, username, body.site, body.role.value, actor=admin.username)
        return auth.find_user(session, username).to_json()


@router.delete(
    "/users/{username}/grants/{site_id}/{role}", summary="Take back a role granted on one site"
)
def revoke_grant(
    request: Request, db: DatabaseDep, admin: AdminDep, username: str, site_id: str, role: str
) -> dict[str, Any]:
    with db.write() as session:
        accounts.revoke_grant(session, username, site_id, role, actor=admin.username)
        user = auth.find_user(session, username)
    sockets = live_sockets(request.app)
    if sockets is not None and user.roles_at(site_id).isdisjoint(HUMAN_ROLES):
        # No role left on the site: the walls that follow it close (4403, as at subscribe).
        sockets.end_user(user.id, ROLE_TAKEN_REASON, site_id=site_id, code=ROLE_TAKEN)
    return user.to_json()


@router.get("/sites/{site_id}/devices", summary="The site's device tokens (never the tokens)")
def list_devices(db: DatabaseDep, admin: AdminDep, site_id: str) -> dict[str, Any]:
    with db.read() as session:
        return {"devices": [d.to_json() for d in accounts.list_devices(session, site_id)]}


@router.delete(
    "/sites/{site_id}/devices/{device}",
    summary="Revoke a device token by id, or every live one of that name; its feed closes",
)
def revoke_device(
    request: Request, db: DatabaseDep, admin: AdminDep, site_id: str, device: str
) -> dict[str, Any]:
    with db.write() as session:
        revoked, hashes = accounts.revoke_device(session, site_id, device, actor=admin.username)
    _end(request, hashes, "the device token was revoked")
    return {"revoked": [d.to_json() for d in revoked]}


class NewWall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    ttl_days: int = Field(default=365, ge=1, le=3650)


@router.post(
    "/sites/{site_id}/walls",
    status_code=201,
    summary="Issue a read-only wall token (kiosk mode); the token is shown once",
    description="The wall opens `/#wall=<token>`: the fragment never reaches the server or "
    "its logs. The token is a viewer of this site only and may only read and ask for a "
    "websocket ticket; only its hash is stored.",
)
def add_wall(
    response: Response, db: DatabaseDep, admin: AdminDep, site_id: str, body: NewWall
) -> dict[str, Any]:
    response.headers["Cache-Control"] = "no-store"  # a token: never kept by a cache
    with db.write() as session:
        issued, wall = accounts.add_wall(
            session, site_id, body.name, timedelta(days=body.ttl_days), actor=admin.username
        )
    return {**wall.to_json(), "token": issued.token, "kiosk_path": f"/#wall={issued.token}"}


@router.get("/sites/{site_id}/walls", summary="The site's wall tokens (never the tokens)")
def list_walls(db: DatabaseDep, admin: AdminDep, site_id: str) -> dict[str, Any]:
    with db.read() as session:
        return {"walls": [w.to_json() for w in accounts.list_devices(session, site_id, "wall")]}


@router.delete(
    "/sites/{site_id}/walls/{wall}",
    summary="Revoke a wall token by id, or every live one of that name; its websocket closes",
)
def revoke_wall(
    request: Request, db: DatabaseDep, admin: AdminDep, site_id: str, wall: str
) -> dict[str, Any]:
    with db.write() as session:
        revoked, hashes = accounts.revoke_device(
            session, site_id, wall, actor=admin.username, kind="wall"
        )
    _end(request, hashes, "the wall token was revoked")
    return {"revoked": [w.to_json() for w in revoked]}


@router.get("/events", summary="The record of account administration, oldest first")
def account_events(
    db: DatabaseDep,
    admin: AdminDep,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    with db.read() as session:
        return {"events": [e.to_json() for e in accounts.events(session, after=after, limit=limit)]}
