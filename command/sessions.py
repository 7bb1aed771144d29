"""Open websockets and the tokens they came with: revoking a token closes them.

A websocket is signed in once, at connect. Each connection registers a :class:`Watch` naming
its token's hash and its user; logging out, revoking a device token, disabling a user and
resetting a password end the watches of those tokens at once (from the route that did it), and
the connection closes with 4401 and the reason. Acts done elsewhere (the command line, another
server process) and tokens that expire are found by :func:`sweep`, which asks the database
every :data:`SWEEP_S` seconds which of the open connections' tokens no longer sign anyone in:
one query a sweep per 500 distinct tokens (not one per connection), none while there are none.

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

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from command.auth import Principal, ended_tokens
from gis.storage.db import Database

log = logging.getLogger(__name__)

#: How often the open connections' tokens are checked against the database (seconds).
SWEEP_S = 0.5
#: The close code of a connection whose session ended (as for a bad token at connect).
SESSION_ENDED = 4401
#: The close code of a connection whose user lost every role on the site it follows.
ROLE_TAKEN = 4403


@dataclass(eq=False)
class Watch:
    """One open connection's sign-in; ``ended`` is set when its token no longer counts."""

    token_hash: str
    user_id: str | None
    #: The site the connection follows, once it subscribed.
    site_id: str | None = None
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
    def watch(self, principal: Principal) -> Iterator[Watch]:
        """Register a connection for as long as it is open (call on the event loop)."""
        user_id = principal.id if principal.kind == "session" else None
        watch = Watch(principal.token_hash, user_id)
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

    def token_hashes(self) -> set[str]:
        with self._lock:
            return {w.token_hash for w in self._watches if w.token_hash}

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
    """End the connections whose tokens were revoked or expired elsewhere; how many tokens."""
    hashes = sockets.token_hashes()
    if not hashes:
        return 0
    with db.read() as session:
        ended = ended_tokens(session, hashes)
    sockets.end_tokens(ended, "the session ended (signed out, revoked or expired)")
    return len(ended)


async def sweep_forever(sockets: LiveSockets, db: Database, every_s: float = SWEEP_S) -> None:
    """The lifespan's task: :func:`sweep` every ``every_s`` seconds."""
    while True:
        await asyncio.sleep(every_s)
        if not sockets.count():
            continue
        try:
            await run_in_threadpool(sweep, sockets, db)
        except Exception:
            log.exception("checking the websockets' tokens failed; the next sweep retries")


def live_sockets(app: object) -> LiveSockets | None:
    """The app's registry (None before its lifespan started, as in a route-walking test)."""
    state = getattr(app, "state", None)
    sockets = getattr(state, "sockets", None)
    return sockets if isinstance(sockets, LiveSockets) else None


async def close_when_ended(
    websocket: WebSocket, sockets: LiveSockets, principal: Principal
) -> None:
    """Watch the connection's sign-in for as long as this task runs; close the connection when
    it ends. For a route whose loop waits on the client alone (the device feed)."""
    with sockets.watch(principal) as watch:
        await watch.ended.wait()
        with contextlib.suppress(Exception):
            await websocket.close(code=watch.code, reason=watch.reason[:120])
