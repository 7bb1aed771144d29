"""A PostgreSQL connection of its own, kept open: for LISTEN and for the leader's lock.

Several parts of the server hold a connection outside the pool for as long as it runs: the
listeners for edits made in the tables (``command.layer_listener``), for sign-ins ended
(``command.sessions``) and for the event log and relayed positions (``command.log_follower``),
and the leader's advisory lock (``command.leader``). Each is a :class:`Reconnecting`: it runs its
:meth:`~Reconnecting.session` on a fresh autocommit connection, and when the connection drops or
the database is away it waits and connects again, backing off from half a second, doubling, up
to a bound, starting over once a connection had been made. A :class:`Listener` LISTENs on its
channels and hands each notification over; a quiet connection is asked a question now and then,
so that a dead one fails and is replaced.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from gis.storage.db import Database

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
#: A listening connection that heard nothing this long is asked a question: a dead one fails.
CHECK_EVERY_S = 30.0


def conninfo(db: Database) -> str:
    """The libpq URL of the server's database (the engine's, without SQLAlchemy's driver)."""
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class Reconnecting:
    """Runs :meth:`session` on a connection of its own, again after each failure (see the
    module). ``name`` is the connection's ``application_name`` and the logs' word for it."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.url = url
        self.name = name
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        #: Connections made so far (tests wait for a new one).
        self.connections = 0

    async def run(self) -> None:
        wait = self.retry_first_s
        try:
            while True:
                connections = self.connections
                try:
                    conn = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, application_name=self.name
                    )
                    async with conn:
                        self.connections += 1
                        await self.session(conn)
                except Exception as exc:  # the connection dropped, or the database is away
                    self.lost()
                    if self.connections > connections:  # it had connected: start over
                        wait = self.retry_first_s
                    log.warning(
                        "%s: %s; connecting again in %.1f s",
                        self.name,
                        str(exc).strip() or type(exc).__name__,
                        wait,
                        # A dropped connection is no news; anything else gets its traceback.
                        exc_info=not isinstance(exc, psycopg.Error | OSError),
                    )
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, self.retry_max_s)
        finally:
            self.lost()

    async def session(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """What to do with a fresh connection; returns or raises only when it is done for."""
        raise NotImplementedError

    def lost(self) -> None:
        """The connection is gone (or the work stops): whatever held on it no longer holds."""


class Listener(Reconnecting):
    """LISTENs on ``channels``; :meth:`heard` gets each notification (on the event loop: it
    must not wait), and :meth:`listening_again` runs each time a connection starts listening
    (what changed while nobody listened)."""

    def __init__(
        self,
        url: str,
        name: str,
        channels: tuple[str, ...],
        *,
        retry_max_s: float = RETRY_MAX_S,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        super().__init__(url, name, retry_max_s=retry_max_s)
        self.channels = channels
        self.check_every_s = check_every_s
        #: Set while a connection is listening (tests wait for it).
        self.listening = asyncio.Event()

    async def session(self, conn: psycopg.AsyncConnection[Any]) -> None:
        for channel in self.channels:
            await conn.execute(f"LISTEN {channel}")
        self.listening.set()
        log.info("%s: listening on %s", self.name, ", ".join(self.channels))
        await self.listening_again()
        while True:
            async for note in conn.notifies(timeout=self.check_every_s):
                self.heard(note.channel, note.payload)
            await conn.execute("SELECT 1")  # quiet for a while: still there?

    def lost(self) -> None:
        self.listening.clear()

    async def listening_again(self) -> None:
        """Called once a connection listens: catch up with what was missed meanwhile."""

    def heard(self, channel: str, payload: str) -> None:
        raise NotImplementedError
