"""Users, roles and bearer tokens (no HTTP here: ``command.deps`` puts it behind FastAPI).

Passwords are hashed with Argon2id (argon2-cffi). A token is 32 random bytes shown to its holder
once; the database keeps only its SHA-256, so a copy of the database opens no session. A session
token comes from :func:`authenticate` and expires after ``RALLYPOINT_TOKEN_TTL_S``; a device
token (a sensor gateway) belongs to one site and may only post readings.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound, Unauthorized
from gis.storage.tables import SiteRow, TokenRow, UserRow


class Role(StrEnum):
    COMMANDER = "commander"
    DRILL_CONTROLLER = "drill_controller"
    PLANNER = "planner"
    RESPONDER = "responder"
    VIEWER = "viewer"
    DEVICE = "device"  # held by device tokens only, never by a user


HUMAN_ROLES = frozenset(r for r in Role if r is not Role.DEVICE)
KNOWN_ROLES = frozenset(r.value for r in Role)

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # Argon2 takes any length; a cap keeps a login request cheap to refuse.
WRONG_LOGIN = "wrong username or password"
HASHER = PasswordHasher()  # Argon2id, the library's (RFC 9106 low-memory) parameters


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    display_name: str
    roles: frozenset[Role]
    disabled: bool
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "roles": sorted(self.roles),
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a signed-in user, or a device of one site."""

    id: str
    username: str
    roles: frozenset[Role]
    kind: Literal["session", "device"]
    site_id: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as its holder sees it, once; only its hash is stored."""

    token: str
    expires_at: datetime | None
    user: User | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        roles=frozenset(Role(r) for r in row.roles if r in KNOWN_ROLES),  # skip retired roles
        disabled=row.disabled,
        created_at=row.created_at,
    )


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{username!r} is not a valid username",
            errors=[
                FieldError(
                    "username",
                    "3 to 64 characters: lowercase letters, digits, '.', '_' or '-', "
                    "starting and ending with a letter or digit",
                )
            ],
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        raise InvalidInput(
            f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            errors=[FieldError("password", f"at least {MIN_PASSWORD} characters")],
        )
    if not password.strip():
        raise InvalidInput(
            "a password cannot be only spaces",
            errors=[FieldError("password", "not only spaces")],
        )
    return password


def check_roles(roles: Iterable[str]) -> frozenset[Role]:
    wanted = list(roles)
    known = {r.value for r in HUMAN_ROLES}
    unknown = [r for r in wanted if r not in known]
    if not wanted or unknown:
        raise InvalidInput(
            f"unknown role(s): {', '.join(map(repr, unknown))}"
            if unknown
            else "a user needs a role",
            errors=[FieldError("roles", "one or more of " + ", ".join(sorted(known)))],
        )
    return frozenset(Role(r) for r in wanted)


def create_user(
    session: Session,
    username: str,
    password: str,
    roles: Iterable[str],
    display_name: str | None = None,
    *,
    now: datetime | None = None,
    hasher: PasswordHasher = HASHER,
) -> User:
    """Add a user; ``hasher`` is for tests that need many users quickly."""
    name = check_username(username)
    check_password(password)
    role_set = check_roles(roles)
    shown = (display_name or name).strip()
    if not shown or len(shown) > 200:
        raise InvalidInput(
            "a display name has 1 to 200 characters",
            errors=[FieldError("display_name", "1 to 200 characters")],
        )
    if session.scalar(select(UserRow.id).where(UserRow.username == name)) is not None:
        raise AlreadyExists(
            f"the username {name!r} is taken", errors=[FieldError("username", "taken")]
        )
    row = UserRow(
        id=uuid.uuid4().hex,
        username=name,
        display_name=shown,
        password_hash=hasher.hash(password),
        roles=sorted(role_set),
        disabled=False,
        created_at=_now(now),
    )
    session.add(row)
    session.flush()
    return _user(row)


def find_user(session: Session, username: str) -> User:
    row = session.scalar(select(UserRow).where(UserRow.username == username.strip().lower()))
    if row is None:
        raise NotFound(f"no user {username!r}", errors=[FieldError("username", "unknown user")])
    return _user(row)


def list_users(session: Session) -> list[User]:
    return [_user(r) for r in session.scalars(select(UserRow).order_by(UserRow.username))]


def set_password(
    session: Session, username: str, password: str, *, hasher: PasswordHasher = HASHER
) -> None:
    check_password(password)
    row = session.scalar(select(UserRow).where(UserRow.username == username.strip().lower()))
    if row is None:
        raise NotFound(f"no user {username!r}", errors=[FieldError("username", "unknown user")])
    row.password_hash = hasher.hash(password)
    session.flush()


def password_matches(session: Session, username: str, password: str) -> bool:
    """Whether ``password`` is the user's (for tools; logging in is :func:`authenticate`)."""
    row = session.scalar(select(UserRow).where(UserRow.username == username.strip().lower()))
    return row is not None and _verify(row.password_hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def issue_token(
    session: Session, user: User, *, ttl_s: int, now: datetime | None = None
) -> IssuedToken:
    """A new session token for ``user`` (after :func:`authenticate` checked the password)."""
    issued = _now(now)
    token = secrets.token_urlsafe(32)
    expires_at = issued + timedelta(seconds=ttl_s)
    session.add(
        TokenRow(
            token_hash=token_hash(token),
            kind="session",
            user_id=user.id,
            site_id=None,
            name=f"session of {user.username}",
            created_at=issued,
            expires_at=expires_at,
            revoked=False,
        )
    )
    session.flush()
    return IssuedToken(token=token, expires_at=expires_at, user=user)


def authenticate(
    session: Session, username: str, password: str, *, ttl_s: int, now: datetime | None = None
) -> IssuedToken:
    """Check the password and issue a session token; :class:`Unauthorized` otherwise.

    Unknown users, wrong passwords and disabled users get the same answer, after the same
    amount of hashing, so neither the message nor the time tells which usernames exist.
    """
    row = None
    if len(password) <= MAX_PASSWORD and len(username) <= 100:
        row = session.scalar(select(UserRow).where(UserRow.username == username.strip().lower()))
    if row is None:
        _verify(_dummy_hash(), password[:MAX_PASSWORD])
        raise Unauthorized(WRONG_LOGIN)
    if not _verify(row.password_hash, password) or row.disabled:
        raise Unauthorized(WRONG_LOGIN)
    if HASHER.check_needs_rehash(row.password_hash):
        row.password_hash = HASHER.hash(password)  # stronger parameters since it was set
    return issue_token(session, _user(row), ttl_s=ttl_s, now=now)


def resolve_token(session: Session, token: str, now: datetime | None = None) -> Principal:
    """Who holds ``token``; :class:`Unauthorized` if it is unknown, expired or revoked."""
    row = session.get(TokenRow, token_hash(token)) if 0 < len(token) <= 200 else None
    if row is None or row.revoked:
        raise Unauthorized("the token is unknown or revoked: sign in again")
    if row.expires_at is not None and row.expires_at <= _now(now):
        raise Unauthorized("the token has expired: sign in again")
    if row.kind == "device":
        return Principal(
            id=row.token_hash[:16],
            username=f"device:{row.name}",
            roles=frozenset({Role.DEVICE}),
            kind="device",
            site_id=row.site_id,
        )
    user = session.get(UserRow, row.user_id) if row.user_id else None
    if user is None or user.disabled:
        raise Unauthorized("the token's user is disabled or gone")
    found = _user(user)
    return Principal(id=found.id, username=found.username, roles=found.roles, kind="session")


def revoke(session: Session, token: str) -> None:
    """Revoke ``token``; revoking an unknown or revoked token does nothing."""
    row = session.get(TokenRow, token_hash(token))
    if row is not None:
        row.revoked = True
        session.flush()


def create_device_token(
    session: Session,
    site_id: str,
    name: str,
    ttl: timedelta | None,
    *,
    now: datetime | None = None,
) -> IssuedToken:
    """A token for a sensor gateway of ``site_id``; ``ttl`` None means it never expires."""
    if session.get(SiteRow, site_id) is None:
        raise NotFound(f"no site {site_id!r}", errors=[FieldError("site", "unknown site id")])
    label = name.strip()
    if not label or len(label) > 100:
        raise InvalidInput(
            "a device name has 1 to 100 characters",
            errors=[FieldError("name", "1 to 100 characters")],
        )
    if ttl is not None and ttl <= timedelta(0):
        raise InvalidInput(
            "a device token's lifetime must be positive", errors=[FieldError("ttl", "positive")]
        )
    issued = _now(now)
    token = secrets.token_urlsafe(32)
    expires_at = issued + ttl if ttl is not None else None
    session.add(
        TokenRow(
            token_hash=token_hash(token),
            kind="device",
            user_id=None,
            site_id=site_id,
            name=label,
            created_at=issued,
            expires_at=expires_at,
            revoked=False,
        )
    )
    session.flush()
    return IssuedToken(token=token, expires_at=expires_at)
