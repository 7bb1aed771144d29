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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from command.auth import HUMAN_ROLES, KNOWN_ROLES, SITE_ROLES, Principal, Role, ended_tokens
from gis.storage.db import Database
from gis.storage.tables import SiteRoleRow, UserRow

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
    """The open websockets' sign-ins, by token hash and by user."""

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

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
            self._end(lambda w: w.token_hash in wanted, reason)

    def end_user(
        self, user_id: str, reason: str, *, site_id: str | None = None, code: int = SESSION_ENDED
    ) -> None:
        """Close every connection of the user, or those following ``site_id`` (any thread)."""
        self._end(lambda w: w.user_id == user_id and site_id in (None, w.site_id), reason, code)

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
    """The lifespan's task: :func:`sweep` every ``every_s`` seconds."""
    while True:
        await asyncio.sleep(every_s)
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
