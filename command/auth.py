"""Users, roles and bearer tokens (no HTTP here: ``command.deps`` puts it behind FastAPI).

Passwords are hashed with Argon2id (argon2-cffi). A token is 32 random bytes shown to its holder
once; the database keeps only its SHA-256, so a copy of the database opens no session. A session
token comes from :func:`authenticate` and expires after ``RALLYPOINT_TOKEN_TTL_S``; a device
token (a sensor gateway) belongs to one site and may only post readings. A wall token (a map wall
in kiosk mode, :func:`create_wall_token`) belongs to one site and only reads it, as a viewer.

Roles are held on every site (``users.roles``) or on one site (``site_roles``); the roles at a
site are the union of both. A person granted a role on one site reads every other site of the
deployment as a viewer, unless given more there (the group rule, ``docs/group.md``). ``admin``
administers users and tokens, and is held only globally: it gives nothing on a site. A
websocket ticket (:func:`issue_ticket`) lets a browser open its websocket without putting its
token in a URL: it lives 30 seconds, opens one connection, and is stored as its SHA-256 only,
bound to the session that asked for it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound, Unauthorized
from gis.storage.tables import SiteRoleRow, SiteRow, TokenRow, UserRow, WsTicketRow


class Role(StrEnum):
    COMMANDER = "commander"
    DRILL_CONTROLLER = "drill_controller"
    PLANNER = "planner"
    APPROVER = "approver"  # approves plan versions others wrote (plans.workflow)
    RESPONDER = "responder"
    VIEWER = "viewer"
    ADMIN = "admin"  # users and tokens only: nothing on a site, never granted per site
    DEVICE = "device"  # held by device tokens only, never by a user
    REPLICATOR = "replicator"  # a site server's forwarder, at the group: its own site only


#: The roles that act on sites: each reads the site it is held on. They may be held globally
#: or granted on one site. (Named HUMAN_ROLES since before there was an admin.)
HUMAN_ROLES = frozenset(
    {
        Role.COMMANDER,
        Role.DRILL_CONTROLLER,
        Role.PLANNER,
        Role.APPROVER,
        Role.RESPONDER,
        Role.VIEWER,
    }
)
SITE_ROLES = HUMAN_ROLES
#: Every role a user may hold.
USER_ROLES = HUMAN_ROLES | {Role.ADMIN}
KNOWN_ROLES = frozenset(r.value for r in Role)
#: Token kinds that belong to one site, not to a user.
SITE_TOKEN_KINDS = ("device", "wall")
#: A websocket ticket opens a connection within this many seconds, once.
TICKET_TTL_S = 30

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # Argon2 takes any length; a cap keeps a login request cheap to refuse.
WRONG_LOGIN = "wrong username or password"
HASHER = PasswordHasher()  # Argon2id, the library's (RFC 9106 low-memory) parameters


SiteRoles = Mapping[str, frozenset[Role]]


def _no_site_roles() -> SiteRoles:
    return {}


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    display_name: str
    roles: frozenset[Role]
    disabled: bool
    created_at: datetime
    #: site id -> the roles granted on that site only
    site_roles: SiteRoles = field(default_factory=_no_site_roles, hash=False)

    def roles_at(self, site_id: str | None) -> frozenset[Role]:
        return _roles_at(self.roles, self.site_roles, site_id, group=True)

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "roles": sorted(self.roles),
            "site_roles": {s: sorted(r) for s, r in sorted(self.site_roles.items())},
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a signed-in user, or a device of one site.

    ``roles`` are the roles held on every site (what existing checks read); the roles at one
    site are :meth:`roles_at`. ``token_hash`` names the session or device token the call came
    with, so that revoking it can close the websockets it opened.
    """

    id: str
    username: str
    roles: frozenset[Role]
    kind: Literal["session", "device", "wall"]
    site_id: str | None = None
    site_roles: SiteRoles = field(default_factory=_no_site_roles, hash=False)
    token_hash: str = field(default="", compare=False)

    def roles_at(self, site_id: str | None) -> frozenset[Role]:
        """The roles held at ``site_id``: global ones and that site's grants (None: global),
        and a person's group view (:func:`_roles_at`); a device or wall token has none."""
        return _roles_at(self.roles, self.site_roles, site_id, group=self.kind == "session")

    def anywhere(self) -> frozenset[Role]:
        """Every role held on any site."""
        return self.roles.union(*self.site_roles.values())

    def sees(self, site_id: str) -> bool:
        """Whether the principal holds a role that reads ``site_id``."""
        return not self.roles_at(site_id).isdisjoint(HUMAN_ROLES)


def _roles_at(
    roles: frozenset[Role], site_roles: SiteRoles, site_id: str | None, *, group: bool
) -> frozenset[Role]:
    """The roles at ``site_id``. ``group``: a person granted a role on some site of the
    deployment (the group, ``docs/group.md``) reads every other site as a viewer, no more,
    unless given more there."""
    if site_id is None:
        return roles
    held = roles | site_roles.get(site_id, frozenset())
    if group and held.isdisjoint(HUMAN_ROLES) and any(site_roles.values()):
        return held | {Role.VIEWER}
    return held


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as its holder sees it, once; only its hash is stored."""

    token: str
    expires_at: datetime | None
    user: User | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _known(roles: Iterable[str]) -> frozenset[Role]:
    return frozenset(Role(r) for r in roles if r in KNOWN_ROLES)  # skip retired roles


def _user(row: UserRow, site_roles: SiteRoles | None = None) -> User:
    return User(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        roles=_known(row.roles),
        disabled=row.disabled,
        created_at=row.created_at,
        site_roles=site_roles or {},
    )


def site_roles_of(
    session: Session, user_ids: Iterable[str]
) -> dict[str, dict[str, frozenset[Role]]]:
    """user id -> site id -> the roles granted there (one query for any number of users)."""
    ids = list(user_ids)
    out: dict[str, dict[str, frozenset[Role]]] = {}
    if not ids:
        return out
    for row in session.scalars(select(SiteRoleRow).where(SiteRoleRow.user_id.in_(ids))):
        roles = _known(row.roles) & SITE_ROLES
        if roles:
            out.setdefault(row.user_id, {})[row.site_id] = roles
    return out


def load_user(session: Session, row: UserRow) -> User:
    """``row`` as a :class:`User`, with its site grants."""
    return _user(row, site_roles_of(session, [row.id]).get(row.id))


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


def check_roles(roles: Iterable[str], allowed: frozenset[Role] = USER_ROLES) -> frozenset[Role]:
    """The roles named, all of them ``allowed`` (a site grant allows no ``admin``)."""
    wanted = list(roles)
    known = {r.value for r in allowed}
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
    site_id: str | None = None,
    now: datetime | None = None,
    hasher: PasswordHasher = HASHER,
) -> User:
    """Add a user holding ``roles`` on every site, or with ``site_id`` on that site only;
    ``hasher`` is for tests that need many users quickly."""
    name = check_username(username)
    check_password(password)
    role_set = check_roles(roles, SITE_ROLES if site_id is not None else USER_ROLES)
    if site_id is not None and session.get(SiteRow, site_id) is None:
        raise NotFound(f"no site {site_id!r}", errors=[FieldError("site", "unknown site id")])
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
        roles=sorted(role_set) if site_id is None else [],
        disabled=False,
        created_at=_now(now),
    )
    session.add(row)
    if site_id is not None:
        session.flush()  # the user first: the grant refers to it
        session.add(SiteRoleRow(user_id=row.id, site_id=site_id, roles=sorted(role_set)))
    session.flush()
    return load_user(session, row)


def user_row(session: Session, username: str) -> UserRow:
    """The row of ``username``; :class:`NotFound` (naming the field) if there is none."""
    row = session.scalar(select(UserRow).where(UserRow.username == username.strip().lower()))
    if row is None:
        raise NotFound(f"no user {username!r}", errors=[FieldError("username", "unknown user")])
    return row


def find_user(session: Session, username: str) -> User:
    return load_user(session, user_row(session, username))


def user_exists(session: Session, username: str) -> bool:
    name = username.strip().lower()
    return session.scalar(select(UserRow.id).where(UserRow.username == name)) is not None


def list_users(session: Session) -> list[User]:
    rows = list(session.scalars(select(UserRow).order_by(UserRow.username)))
    grants = site_roles_of(session, [r.id for r in rows])
    return [_user(r, grants.get(r.id)) for r in rows]


def set_password(
    session: Session, username: str, password: str, *, hasher: PasswordHasher = HASHER
) -> None:
    check_password(password)
    row = user_row(session, username)
    row.password_hash = hasher.hash(password)
    session.flush()


def password_matches(session: Session, username: str, password: str) -> bool:
    """Whether ``password`` is the user's (for tools; logging in is :func:`authenticate`)."""
    row = session.scalar(select(UserRow).where(UserRow.username == username.strip().lower()))
    return row is not None and _verify(row.password_hash, password)


def verify(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (never raises)."""
    return _verify(password_hash, password[:MAX_PASSWORD])


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
    return issue_token(session, load_user(session, row), ttl_s=ttl_s, now=now)


def resolve_token(session: Session, token: str, now: datetime | None = None) -> Principal:
    """Who holds ``token``; :class:`Unauthorized` if it is unknown, expired or revoked."""
    row = session.get(TokenRow, token_hash(token)) if 0 < len(token) <= 200 else None
    return _principal(session, row, now)


def resolve_token_hash(session: Session, hashed: str, now: datetime | None = None) -> Principal:
    """As :func:`resolve_token`, from the token's hash (a connection checked again later)."""
    return _principal(session, session.get(TokenRow, hashed) if hashed else None, now)


def _principal(session: Session, row: TokenRow | None, now: datetime | None) -> Principal:
    if row is None or row.revoked:
        raise Unauthorized("the token is unknown or revoked: sign in again")
    if row.expires_at is not None and row.expires_at <= _now(now):
        raise Unauthorized("the token has expired: sign in again")
    if row.kind == "wall" and row.site_id is not None:
        # A viewer on its one site, nothing anywhere else; ``deps`` lets it only read.
        return Principal(
            id=device_id(row.token_hash),
            username=f"wall:{row.name}",
            roles=frozenset(),
            kind="wall",
            site_id=row.site_id,
            site_roles={row.site_id: frozenset({Role.VIEWER})},
            token_hash=row.token_hash,
        )
    if row.kind == "replicator" and row.site_id is not None:
        # A site server forwarding its log to the group (command.replication): its site only.
        return Principal(
            id=device_id(row.token_hash),
            username=f"replicator:{row.name}",
            roles=frozenset(),
            kind="device",
            site_id=row.site_id,
            site_roles={row.site_id: frozenset({Role.REPLICATOR})},
            token_hash=row.token_hash,
        )
    if row.kind == "device":
        return Principal(
            id=device_id(row.token_hash),
            username=f"device:{row.name}",
            roles=frozenset({Role.DEVICE}),
            kind="device",
            site_id=row.site_id,
            token_hash=row.token_hash,
        )
    user = session.get(UserRow, row.user_id) if row.user_id else None
    if user is None or user.disabled:
        raise Unauthorized("the token's user is disabled or gone")
    found = load_user(session, user)
    return Principal(
        id=found.id,
        username=found.username,
        roles=found.roles,
        kind="session",
        site_roles=found.site_roles,
        token_hash=row.token_hash,
    )


def device_id(hash_of_token: str) -> str:
    """A device token's public id: the start of its hash (the token itself is never shown)."""
    return hash_of_token[:16]


def revoke(session: Session, token: str) -> None:
    """Revoke ``token``; revoking an unknown or revoked token does nothing."""
    row = session.get(TokenRow, token_hash(token))
    if row is not None:
        row.revoked = True
        session.flush()


def revoke_sessions(session: Session, user_id: str, *, keep: str | None = None) -> list[str]:
    """Revoke every live session token of the user (but the one hashed ``keep``); their hashes."""
    query = select(TokenRow.token_hash).where(
        TokenRow.user_id == user_id, TokenRow.kind == "session", TokenRow.revoked.is_(False)
    )
    hashes = [h for h in session.scalars(query) if h != keep]
    if hashes:
        session.execute(
            update(TokenRow).where(TokenRow.token_hash.in_(hashes)).values(revoked=True)
        )
    return hashes


def ended_tokens(session: Session, hashes: Iterable[str], now: datetime | None = None) -> set[str]:
    """Those of ``hashes`` that no longer sign anyone in: unknown, revoked, expired, or of a
    disabled user (the server closes the websockets they opened)."""
    wanted = set(hashes)
    alive: set[str] = set()
    moment = _now(now)
    listed = sorted(wanted)
    for start in range(0, len(listed), 500):
        query = (
            select(TokenRow.token_hash)
            .outerjoin(UserRow, UserRow.id == TokenRow.user_id)
            .where(
                TokenRow.token_hash.in_(listed[start : start + 500]),
                TokenRow.revoked.is_(False),
                (TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > moment),
                TokenRow.kind.in_(SITE_TOKEN_KINDS) | (UserRow.disabled.is_(False)),
            )
        )
        alive.update(session.scalars(query))
    return wanted - alive


def issue_ticket(
    session: Session, principal: Principal, *, now: datetime | None = None
) -> IssuedToken:
    """A websocket ticket for the session (or wall token) ``principal`` signed in with: it opens
    one connection within :data:`TICKET_TTL_S` seconds, as that session (revoking the session
    ends both)."""
    if principal.kind not in ("session", "wall") or not principal.token_hash:
        raise Unauthorized("a websocket ticket is for a signed-in person's session or a wall")
    issued = _now(now)
    # Spent and expired tickets go as new ones come: the table stays the size of a minute.
    session.execute(
        delete(WsTicketRow).where(
            WsTicketRow.expires_at < issued - timedelta(seconds=2 * TICKET_TTL_S)
        )
    )
    ticket = secrets.token_urlsafe(32)
    expires_at = issued + timedelta(seconds=TICKET_TTL_S)
    session.add(
        WsTicketRow(
            ticket_hash=token_hash(ticket),
            token_hash=principal.token_hash,
            created_at=issued,
            expires_at=expires_at,
            used_at=None,
        )
    )
    session.flush()
    return IssuedToken(token=ticket, expires_at=expires_at)


def redeem_ticket(session: Session, ticket: str, *, now: datetime | None = None) -> Principal:
    """The session a ticket was issued to, once: the ticket is spent by the same statement that
    checks it, so two connections (or two server processes) cannot both use it."""
    moment = _now(now)
    hashed = token_hash(ticket) if 0 < len(ticket) <= 200 else ""
    spent = session.execute(
        update(WsTicketRow)
        .where(
            WsTicketRow.ticket_hash == hashed,
            WsTicketRow.used_at.is_(None),
            WsTicketRow.expires_at > moment,
        )
        .values(used_at=moment)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise Unauthorized("the ticket is unknown, used or expired: ask for a new one")
    bound = session.scalar(select(WsTicketRow.token_hash).where(WsTicketRow.ticket_hash == hashed))
    return _principal(session, session.get(TokenRow, bound) if bound else None, moment)


def create_device_token(
    session: Session,
    site_id: str,
    name: str,
    ttl: timedelta | None,
    *,
    now: datetime | None = None,
) -> IssuedToken:
    """A token for a sensor gateway of ``site_id``; ``ttl`` None means it never expires."""
    return _site_token(session, "device", site_id, name, ttl, now=now)


def create_wall_token(
    session: Session,
    site_id: str,
    name: str,
    ttl: timedelta | None,
    *,
    now: datetime | None = None,
) -> IssuedToken:
    """A read-only token for a map wall of ``site_id`` (kiosk mode): a viewer of that site
    only, revocable like a device token; ``ttl`` None means it never expires."""
    return _site_token(session, "wall", site_id, name, ttl, now=now)


def _site_token(
    session: Session,
    kind: Literal["device", "wall"],
    site_id: str,
    name: str,
    ttl: timedelta | None,
    *,
    now: datetime | None,
) -> IssuedToken:
    if session.get(SiteRow, site_id) is None:
        raise NotFound(f"no site {site_id!r}", errors=[FieldError("site", "unknown site id")])
    label = name.strip()
    if not label or len(label) > 100:
        raise InvalidInput(
            f"a {kind} name has 1 to 100 characters",
            errors=[FieldError("name", "1 to 100 characters")],
        )
    if ttl is not None and ttl <= timedelta(0):
        raise InvalidInput(
            f"a {kind} token's lifetime must be positive", errors=[FieldError("ttl", "positive")]
        )
    issued = _now(now)
    token = secrets.token_urlsafe(32)
    expires_at = issued + ttl if ttl is not None else None
    session.add(
        TokenRow(
            token_hash=token_hash(token),
            kind=kind,
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
