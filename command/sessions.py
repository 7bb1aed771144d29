"""Open websockets and the tokens they came with: revoking a token closes them.

A websocket is signed in once, at connect. Each connection registers a :class:`Watch` naming
its token's hash and its user; logging out, revoking a device token, disabling a user and
resetting a password end the watches of those tokens at once (from the route that did it), and
the connection closes with 4401 and the reason. Acts done elsewhere (the command line, another
server process) and tokens that expire are found by :func:`sweep`, which asks the database
every :data:`SWEEP_S` seconds which of the open connections' tokens no longer sign anyone in,
and whether each signed-in person still holds a role at the site their connection follows (a
grant taken back from the command line would otherwise leave the wall streaming the site until
the token expires, 12 hours): those close with 4403. One query a sweep per 500 distinct tokens
and one per 500 distinct users (not one per connection), none while nothing is open. Wall and
device tokens hold their roles by their kind and site, fixed for the token's life: only the
token is checked again.

Routes call from worker threads; the watches' events live on the event loop, so ending hops
onto it with ``call_soon_threadsafe`` (as ``command.hub`` does).

Signing in is cached too (:class:`SignIns`): a token resolved within :data:`SIGN_IN_FRESH_S`
seconds is not looked up again, so a polling wall or a client reconnecting costs no query per
request. Any change this process makes to tokens, users or grants lapses the cache at once, and
ending a token or a user here forgets them there. On PostGIS every process hears of a
revoked or deleted token, a disabled or deleted user and a role change at once: migration 0019's
triggers send ``pg_notify`` on :data:`AUTH_CHANNEL`, :class:`AuthListener` forgets what they name
and sweeps now. Without that word (SQLite; another process's SQLite writes; a listener that is
reconnecting) the bound is :data:`SIGN_IN_FRESH_S` for requests and :data:`SWEEP_S` for open
websockets: a revoked token is refused everywhere within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from command.auth import (
    HUMAN_ROLES,
    KNOWN_ROLES,
    SITE_ROLES,
    Principal,
    Role,
    ended_tokens,
    resolve_token_hash,
    token_hash,
)
from command.pg_session import CHECK_EVERY_S, RETRY_MAX_S, Listener
from gis.errors import Unauthorized
from gis.storage.db import Database
from gis.storage.tables import SiteRoleRow, TokenRow, UserRow

log = logging.getLogger(__name__)

#: How often the open connections' tokens are checked against the database (seconds).
SWEEP_S = 0.5
#: The close code of a connection whose session ended (as for a bad token at connect).
SESSION_ENDED = 4401
#: The close code of a connection whose user lost every role on the site it follows.
ROLE_TAKEN = 4403
#: Its reason (as when the grant is taken back through the API).
ROLE_TAKEN_REASON = "no role on this site any more"
_NONE: frozenset[Role] = frozenset()
#: Users per roles query (their ids go in one ``IN``), as tokens per query in ``ended_tokens``.
BATCH = 500
#: How long a resolved token is taken as signing its holder in without asking the database
#: (seconds): the bound on how late a change no word arrives of is seen by a request.
SIGN_IN_FRESH_S = 0.5
#: Resolved tokens kept at most (the oldest go first).
SIGN_INS_KEPT = 20_000
#: The channel migration 0019's triggers notify: ``{"token": hash}`` or ``{"user": id}``.
AUTH_CHANNEL = "rallypoint_auth"


class _AuthWrites:
    """Counts this process's changes to who is signed in as what: tokens changed or deleted,
    users changed or deleted, site grants made, changed or taken back (ORM events: objects
    flushed, and ``update``/``delete`` statements on those tables), at the change and again
    at its commit. A token resolved while the count stood still is current but for other
    processes' changes, whatever path this process changed it by (a route, a command run in
    process, a test). The events are every session's, so the count is the process's."""

    KEY = "rallypoint_auth_writes"
    TABLES = (TokenRow.__table__, UserRow.__table__, SiteRoleRow.__table__)

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def bump(self) -> None:
        with self._lock:
            self.count += 1

    def flushed(self, session: Session, _context: Any, _instances: Any) -> None:
        # A grant made, changed or taken back; a token or user changed or deleted.
        changed = itertools.chain(session.dirty, session.deleted)
        if any(isinstance(o, TokenRow | UserRow | SiteRoleRow) for o in changed) or any(
            isinstance(o, SiteRoleRow) for o in session.new
        ):
            self._changed(session)

    def executed(self, state: ORMExecuteState) -> None:
        if (state.is_update or state.is_delete) and getattr(
            state.statement, "table", None
        ) in self.TABLES:
            self._changed(state.session)

    def _changed(self, session: Session) -> None:
        self.bump()
        session.info[self.KEY] = True

    def committed(self, session: Session) -> None:
        if session.info.pop(self.KEY, False):
            self.bump()

    def rolled_back(self, session: Session) -> None:
        session.info.pop(self.KEY, None)


_AUTH_WRITES = _AuthWrites()
event.listen(Session, "before_flush", _AUTH_WRITES.flushed)
event.listen(Session, "do_orm_execute", _AUTH_WRITES.executed)
event.listen(Session, "after_commit", _AUTH_WRITES.committed)
event.listen(Session, "after_rollback", _AUTH_WRITES.rolled_back)


@dataclass(frozen=True, slots=True)
class _SignIn:
    principal: Principal
    expires_at: datetime | None
    at: float  # monotonic, taken before the token was read
    stamp: tuple[int, int]  # this process's auth writes and forgettings, before the read


class SignIns:
    """Tokens resolved lately: token hash -> principal, each kept ``fresh_s`` seconds.

    A token's expiry is compared on every use, with the caller's ``now``, as the database
    would compare it. Every entry lapses when this process changes a token, a user or a grant
    (:class:`_AuthWrites`); an entry is forgotten when its token or user is ended here
    (:class:`LiveSockets`) or named by the database (:class:`AuthListener`). A lookup under
    way meanwhile is not kept, as it may have read the row before the change. Refusals are
    not kept: they cost a query each, as before."""

    def __init__(
        self,
        *,
        fresh_s: float = SIGN_IN_FRESH_S,
        monotonic: Callable[[], float] = time.monotonic,
        kept: int = SIGN_INS_KEPT,
    ) -> None:
        self.fresh_s = fresh_s
        self.kept = kept
        self._monotonic = monotonic
        self._known: dict[str, _SignIn] = {}
        self._forgotten = 0  # how many times entries were forgotten (a lookup's stamp)
        self._lock = threading.Lock()

    def resolve(self, db: Database, token: str, now: datetime | None = None) -> Principal:
        """Who holds ``token`` (:class:`Unauthorized` if unknown, expired or revoked)."""
        return self.resolve_hash(db, token_hash(token) if 0 < len(token) <= 200 else "", now)

    def resolve_hash(self, db: Database, hashed: str, now: datetime | None = None) -> Principal:
        """As :meth:`resolve`, from the token's hash."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        started, stamp = self._monotonic(), (_AUTH_WRITES.count, self._forgotten)
        known = self._known.get(hashed)
        if known is not None and known.stamp == stamp and started - known.at < self.fresh_s:
            if known.expires_at is not None and known.expires_at <= moment:
                raise Unauthorized("the token has expired: sign in again")
            return known.principal
        with db.read() as session:
            # The token and its user in one query: the lookups below find both in the session
            # (held here: the session keeps only weak references to what it loaded).
            held = session.execute(
                select(TokenRow, UserRow)
                .outerjoin(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.token_hash == hashed)
            ).all()
            principal = resolve_token_hash(session, hashed, moment)
            row = session.get(TokenRow, hashed)  # the row just read: no second query
            expires_at = row.expires_at if row is not None else None
            del held
        with self._lock:
            if (_AUTH_WRITES.count, self._forgotten) == stamp:
                self._known.pop(hashed, None)  # to the end: the oldest go first
                self._known[hashed] = _SignIn(principal, expires_at, started, stamp)
                while len(self._known) > self.kept:
                    del self._known[next(iter(self._known))]
        return principal

    def forget_tokens(self, hashes: Iterable[str]) -> None:
        with self._lock:
            self._forgotten += 1
            for hashed in hashes:
                self._known.pop(hashed, None)

    def forget_users(self, user_ids: Iterable[str]) -> None:
        """Forget the sessions of these users (their roles or their standing changed)."""
        ids = set(user_ids)
        with self._lock:
            self._forgotten += 1
            for hashed in [
                h
                for h, k in self._known.items()
                if k.principal.kind == "session" and k.principal.id in ids
            ]:
                del self._known[hashed]

    def clear(self) -> None:
        with self._lock:
            self._forgotten += 1
            self._known.clear()

    def __len__(self) -> int:
        return len(self._known)


@dataclass(eq=False)
class Watch:
    """One open connection's sign-in; ``ended`` is set when its token no longer counts."""

    token_hash: str
    user_id: str | None
    #: The site the connection follows, once it subscribed.
    site_id: str | None = None
    #: One of these roles at ``site_id`` keeps a person's connection open (checked at subscribe,
    #: and by every sweep).
    needs: frozenset[Role] = HUMAN_ROLES
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    code: int = SESSION_ENDED

    def end(self, reason: str, code: int = SESSION_ENDED) -> None:
        if not self.ended.is_set():
            self.reason, self.code = reason, code
            self.ended.set()


class LiveSockets:
    """The open websockets' sign-ins, by token hash and by user; and the tokens resolved
    lately (``sign_ins``), which ending a token or a user here forgets too."""

    def __init__(self, sign_ins: SignIns | None = None) -> None:
        self.sign_ins = sign_ins or SignIns()
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set to sweep now rather than at the next interval (:meth:`sweep_soon`).
        self.woken = asyncio.Event()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the connections run on (set by the app's lifespan)."""
        self._loop = loop

    @contextmanager
    def watch(
        self,
        principal: Principal,
        *,
        site_id: str | None = None,
        needs: frozenset[Role] = HUMAN_ROLES,
    ) -> Iterator[Watch]:
        """Register a connection for as long as it is open (call on the event loop); one that
        follows ``site_id`` needs one of ``needs`` there (set ``site_id`` later once known)."""
        user_id = principal.id if principal.kind == "session" else None
        watch = Watch(principal.token_hash, user_id, site_id, needs)
        with self._lock:
            self._watches.add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                self._watches.discard(watch)

    def count(self) -> int:
        with self._lock:
            return len(self._watches)

    def open_watches(self) -> list[Watch]:
        """The connections open now (a copy: the sweep reads it off the event loop)."""
        with self._lock:
            return list(self._watches)

    def end_watches(self, watches: Iterable[Watch], reason: str, code: int) -> None:
        """Close these connections (from any thread)."""
        wanted = set(watches)
        if wanted:
            self._end(lambda w: w in wanted, reason, code)

    def end_tokens(self, hashes: Iterable[str], reason: str) -> None:
        """Close the connections opened with any of these tokens (from any thread)."""
        wanted = set(hashes)
        if wanted:
            self.sign_ins.forget_tokens(wanted)
            self._end(lambda w: w.token_hash in wanted, reason)

    def end_user(
        self, user_id: str, reason: str, *, site_id: str | None = None, code: int = SESSION_ENDED
    ) -> None:
        """Close every connection of the user, or those following ``site_id`` (any thread)."""
        self.sign_ins.forget_users([user_id])
        self._end(lambda w: w.user_id == user_id and site_id in (None, w.site_id), reason, code)

    def sweep_soon(self) -> None:
        """Check the open connections' tokens and roles now (call on the event loop)."""
        self.woken.set()

    def _end(self, which: Callable[[Watch], bool], reason: str, code: int = SESSION_ENDED) -> None:
        with self._lock:
            targets = [w for w in self._watches if which(w)]
        if not targets:
            return
        log.info("closing %d websocket(s): %s", len(targets), reason)
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for watch in targets:
            if loop is None or running is loop:
                watch.end(reason, code)
            else:
                loop.call_soon_threadsafe(watch.end, reason, code)


def sweep(sockets: LiveSockets, db: Database) -> int:
    """End the connections whose tokens were revoked or expired elsewhere (4401), and those
    whose person no longer holds a role they need at the site they follow (4403); how many
    tokens and connections ended."""
    watches = [w for w in sockets.open_watches() if w.token_hash]
    if not watches:
        return 0
    with db.read() as session:
        ended = ended_tokens(session, {w.token_hash for w in watches})
        # A token that ended closes with 4401 whatever its roles: only the others are asked.
        following = [w for w in watches if _follows(w) and w.token_hash not in ended]
        held = roles_at_sites(session, {_place(w) for w in following})
    lost = [w for w in following if held[_place(w)].isdisjoint(w.needs)]
    sockets.end_tokens(ended, "the session ended (signed out, revoked or expired)")
    sockets.end_watches(lost, ROLE_TAKEN_REASON, ROLE_TAKEN)
    return len(ended) + len(lost)


def _follows(watch: Watch) -> bool:
    """Whether the connection is a person's on one site (their roles there may change)."""
    return watch.user_id is not None and watch.site_id is not None


def _place(watch: Watch) -> tuple[str, str]:
    """The (user id, site id) of a connection that :func:`_follows` a site."""
    assert watch.user_id is not None and watch.site_id is not None
    return watch.user_id, watch.site_id


def roles_at_sites(
    session: Session, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], frozenset[Role]]:
    """(user id, site id) -> the roles the user holds at that site: those held on every site
    and that site's grants, as :meth:`command.auth.Principal.roles_at` reads them at sign-in.
    One query per :data:`BATCH` users; none for no pair. A user who is gone holds none."""
    wanted = set(pairs)
    users = sorted({user for user, _ in wanted})
    sites = sorted({site for _, site in wanted})
    everywhere: dict[str, frozenset[Role]] = {}
    granted: dict[tuple[str, str], frozenset[Role]] = {}
    for start in range(0, len(users), BATCH):
        query = (
            select(UserRow.id, UserRow.roles, SiteRoleRow.site_id, SiteRoleRow.roles)
            .outerjoin(
                SiteRoleRow,
                (SiteRoleRow.user_id == UserRow.id) & SiteRoleRow.site_id.in_(sites),
            )
            .where(UserRow.id.in_(users[start : start + BATCH]))
        )
        for user_id, roles, site_id, site_roles in session.execute(query):
            everywhere[user_id] = _known(roles)
            if site_id is not None:
                granted[(user_id, site_id)] = _known(site_roles) & SITE_ROLES
    return {
        (user, site): everywhere.get(user, _NONE) | granted.get((user, site), _NONE)
        for user, site in wanted
    }


def _known(roles: Iterable[str] | None) -> frozenset[Role]:
    """The roles named, without retired ones (as ``command.auth`` reads them)."""
    return frozenset(Role(r) for r in roles or () if r in KNOWN_ROLES)


async def sweep_forever(sockets: LiveSockets, db: Database, every_s: float = SWEEP_S) -> None:
    """The lifespan's task: :func:`sweep` every ``every_s`` seconds, and when woken."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sockets.woken.wait(), every_s)
        sockets.woken.clear()
        if not sockets.count():
            continue
        try:
            await run_in_threadpool(sweep, sockets, db)
        except Exception:
            log.exception(
                "checking the websockets' tokens and roles failed; the next sweep retries"
            )


def live_sockets(app: object) -> LiveSockets | None:
    """The app's registry (None before its lifespan started, as in a route-walking test)."""
    state = getattr(app, "state", None)
    sockets = getattr(state, "sockets", None)
    return sockets if isinstance(sockets, LiveSockets) else None


async def close_when_ended(
    websocket: WebSocket,
    sockets: LiveSockets,
    principal: Principal,
    *,
    site_id: str | None = None,
    needs: frozenset[Role] = HUMAN_ROLES,
) -> None:
    """Watch the connection's sign-in (and a person's roles at ``site_id``) for as long as this
    task runs; close the connection when it ends. For a route whose loop waits on the client
    alone (the device feed)."""
    with sockets.watch(principal, site_id=site_id, needs=needs) as watch:
        await watch.ended.wait()
        with contextlib.suppress(Exception):
            await websocket.close(code=watch.code, reason=watch.reason[:120])


class AuthListener(Listener):
    """LISTEN on :data:`AUTH_CHANNEL` (PostGIS): forget the tokens and users named, and sweep
    the open websockets now. A dropped connection is opened again, backing off from half a
    second to 30 s (``command.pg_session``); once listening again, everything resolved before
    is forgotten (changes made while nobody listened)."""

    def __init__(
        self,
        sockets: LiveSockets,
        url: str,
        *,
        retry_max_s: float = RETRY_MAX_S,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        super().__init__(
            url,
            "rallypoint auth listener",
            (AUTH_CHANNEL,),
            retry_max_s=retry_max_s,
            check_every_s=check_every_s,
        )
        self.sockets = sockets

    async def listening_again(self) -> None:
        self.sockets.sign_ins.clear()  # what changed while nobody listened
        self.sockets.sweep_soon()

    def heard(self, channel: str, payload: str) -> None:
        """Forget what ``payload`` names (all, if it names nothing known); sweep now."""
        try:
            named = json.loads(payload)
        except ValueError:
            named = None
        token = named.get("token") if isinstance(named, dict) else None
        user = named.get("user") if isinstance(named, dict) else None
        if isinstance(token, str):
            self.sockets.sign_ins.forget_tokens([token])
        elif isinstance(user, str):
            self.sockets.sign_ins.forget_users([user])
        else:
            log.warning("a word on %s naming nothing: %r", AUTH_CHANNEL, payload[:200])
            self.sockets.sign_ins.clear()
        self.sockets.sweep_soon()
