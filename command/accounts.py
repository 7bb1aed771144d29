"""Account administration: disable and enable users, reset and change passwords, grant roles on
one site, list and revoke device tokens; and the record of every such act.

The record is the ``account_events`` table, written in the same transaction as the act, so an
act is recorded if and only if it happened. Not the site event log: that log is per site and
hash-chained for incident command, while accounts belong to no site. Not only the application
log either: the command line runs in a process of its own, whose log goes to a terminal, and an
administrator reads the record over the API (``GET /api/admin/events``). Each act is logged too.

Every function returns what the server must act on beyond the database: the hashes of the
tokens it revoked, so that the websockets they opened are closed (``command.sessions``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from command.auth import (
    HASHER,
    SITE_ROLES,
    IssuedToken,
    Role,
    check_password,
    check_roles,
    create_wall_token,
    device_id,
    revoke_sessions,
    token_hash,
    user_row,
    verify,
)
from gis.errors import FieldError, InvalidInput, NotFound, Unauthorized
from gis.storage.tables import AccountEventRow, SiteRoleRow, SiteRow, TokenRow, UserRow

log = logging.getLogger(__name__)


class WrongPassword(InvalidInput):
    """The current password given to change it is not the user's (counted as a failed
    sign-in: a stolen session must not become a way to guess the password)."""


@dataclass(frozen=True, slots=True)
class Device:
    """A device token as an administrator sees it: never the token, only its id."""

    id: str
    site_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "site": self.site_id,
            "name": self.name,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class AccountEvent:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    site_id: str | None
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "site": self.site_id,
            "detail": self.detail,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def record(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    *,
    site_id: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Keep who did ``action`` to ``subject`` (a username, or ``device:NAME``), and when."""
    session.add(
        AccountEventRow(
            at=_now(now),
            actor=actor,
            action=action,
            subject=subject,
            site_id=site_id,
            detail=detail or {},
        )
    )
    session.flush()
    log.info("account: %s %s %s%s", actor, action, subject, f" at {site_id}" if site_id else "")


def events(session: Session, *, after: int = 0, limit: int = 1000) -> list[AccountEvent]:
    query = (
        select(AccountEventRow)
        .where(AccountEventRow.id > after)
        .order_by(AccountEventRow.id)
        .limit(limit)
    )
    return [
        AccountEvent(r.id, r.at, r.actor, r.action, r.subject, r.site_id, dict(r.detail))
        for r in session.scalars(query)
    ]


# -- users --------------------------------------------------------------------------------------


def disable_user(session: Session, username: str, *, actor: str) -> list[str]:
    """Disable the user: no sign-in, every session revoked (their hashes are returned)."""
    row = user_row(session, username)
    row.disabled = True
    revoked = revoke_sessions(session, row.id)
    record(session, actor, "user.disabled", row.username, detail={"sessions": len(revoked)})
    return revoked


def enable_user(session: Session, username: str, *, actor: str) -> None:
    """Let the user sign in again (their old sessions stay revoked)."""
    row = user_row(session, username)
    row.disabled = False
    record(session, actor, "user.enabled", row.username)


def reset_password(
    session: Session,
    username: str,
    password: str,
    *,
    actor: str,
    hasher: PasswordHasher = HASHER,
) -> list[str]:
    """Set a new password for the user and revoke every session they hold."""
    check_password(password)
    row = user_row(session, username)
    row.password_hash = hasher.hash(password)
    revoked = revoke_sessions(session, row.id)
    record(session, actor, "user.password_reset", row.username, detail={"sessions": len(revoked)})
    return revoked


def change_password(
    session: Session,
    user_id: str,
    old: str,
    new: str,
    *,
    keep: str,
    hasher: PasswordHasher = HASHER,
) -> list[str]:
    """A user's own change: the old password must match. Every other session of theirs is
    revoked; the one hashed ``keep`` (the caller's) stays."""
    check_password(new)
    row = session.get(UserRow, user_id)
    if row is None or row.disabled:
        raise Unauthorized("the token's user is disabled or gone")
    if not verify(row.password_hash, old):
        raise WrongPassword(
            "the current password is wrong",
            errors=[FieldError("old_password", "not the current password")],
        )
    row.password_hash = hasher.hash(new)
    revoked = revoke_sessions(session, row.id, keep=keep)
    record(session, row.username, "user.password_changed", row.username)
    return revoked


# -- roles on one site --------------------------------------------------------------------------


def _site(session: Session, site_id: str) -> SiteRow:
    site = session.get(SiteRow, site_id)
    if site is None:
        raise NotFound(f"no site {site_id!r}", errors=[FieldError("site", "unknown site id")])
    return site


def grant(session: Session, username: str, site_id: str, role: str, *, actor: str) -> list[Role]:
    """Give the user ``role`` on ``site_id`` only; the roles they then hold there by grant."""
    (wanted,) = check_roles([role], SITE_ROLES)
    row = user_row(session, username)
    _site(session, site_id)
    held = session.get(SiteRoleRow, (row.id, site_id))
    if held is None:
        held = SiteRoleRow(user_id=row.id, site_id=site_id, roles=[])
        session.add(held)
    roles = sorted({*held.roles, wanted.value})
    if roles != sorted(held.roles):
        held.roles = roles
        record(session, actor, "role.granted", row.username, site_id=site_id, detail={"role": role})
    session.flush()
    return [Role(r) for r in roles]


def revoke_grant(
    session: Session, username: str, site_id: str, role: str, *, actor: str
) -> list[Role]:
    """Take back a role granted on ``site_id``; the roles left there by grant."""
    row = user_row(session, username)
    held = session.get(SiteRoleRow, (row.id, site_id))
    if held is None or role not in held.roles:
        raise NotFound(
            f"{row.username} holds no grant of {role!r} on {site_id!r}",
            errors=[FieldError("role", "not granted on this site")],
        )
    roles = sorted(set(held.roles) - {role})
    if roles:
        held.roles = roles
    else:
        session.delete(held)
    record(session, actor, "role.revoked", row.username, site_id=site_id, detail={"role": role})
    session.flush()
    return [Role(r) for r in roles]


# -- device tokens ------------------------------------------------------------------------------


def _device(row: TokenRow) -> Device:
    assert row.site_id is not None
    return Device(
        id=device_id(row.token_hash),
        site_id=row.site_id,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked,
    )


def list_devices(
    session: Session, site_id: str, kind: Literal["device", "wall"] = "device"
) -> list[Device]:
    """The site's device (or wall) tokens, revoked and expired ones too (the caller shows
    which)."""
    _site(session, site_id)
    query = (
        select(TokenRow)
        .where(TokenRow.kind == kind, TokenRow.site_id == site_id)
        .order_by(TokenRow.name, TokenRow.created_at)
    )
    return [_device(r) for r in session.scalars(query)]


def revoke_device(
    session: Session,
    site_id: str,
    name_or_id: str,
    *,
    actor: str,
    kind: Literal["device", "wall"] = "device",
) -> tuple[list[Device], list[str]]:
    """Revoke the site's device (or wall) token with that id, or every live one of that name (a
    gateway re-issued keeps its name); the devices revoked and their token hashes."""
    _site(session, site_id)
    rows = [
        r
        for r in session.scalars(
            select(TokenRow).where(
                TokenRow.kind == kind,
                TokenRow.site_id == site_id,
                TokenRow.revoked.is_(False),
            )
        )
        if device_id(r.token_hash) == name_or_id or r.name == name_or_id.strip()
    ]
    if not rows:
        raise NotFound(
            f"site {site_id!r} has no live {kind} token {name_or_id!r}",
            errors=[FieldError(kind, f"no live {kind} token of that name or id")],
        )
    hashes = [r.token_hash for r in rows]
    session.execute(update(TokenRow).where(TokenRow.token_hash.in_(hashes)).values(revoked=True))
    devices = [_device(r) for r in rows]
    for device in devices:
        record(
            session,
            actor,
            f"{kind}.revoked",
            f"{kind}:{device.name}",
            site_id=site_id,
            detail={"id": device.id},
        )
    return devices, hashes


def add_wall(
    session: Session, site_id: str, name: str, ttl: timedelta | None, *, actor: str
) -> tuple[IssuedToken, Device]:
    """Issue a read-only wall token for ``site_id`` (kiosk mode) and record who did; the token
    is in the answer once, only its hash is kept."""
    issued = create_wall_token(session, site_id, name, ttl)
    row = session.get(TokenRow, token_hash(issued.token))
    assert row is not None
    wall = _device(row)
    detail = {"id": wall.id}
    record(session, actor, "wall.added", f"wall:{wall.name}", site_id=site_id, detail=detail)
    return issued, wall
