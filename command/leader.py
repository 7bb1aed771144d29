"""One process leads: deadlines, call-tree fallbacks and monitoring timers fire once (issue 17).

Every server process on a PostgreSQL database follows the event log and knows every incident
(``command.log_follower``), but only one fires what is due: overdue steps, the next contact of
an unanswered call-out, alarm delays, fence stays, man-down, stale detectors, drills' timers.
It is the process holding a session-level advisory lock (:data:`LOCK_KEY`) on a connection of
its own (:class:`Leadership`). The others try for it every :data:`TRY_EVERY_S`.

When the leader dies its connection closes and PostgreSQL releases the lock at once; another
process takes it within :data:`TRY_EVERY_S`, catches up with the log (so nothing the old leader
fired fires again), and fires at its next tick (a second): within 2 s. A leader whose lock
connection fails stops leading at once, before it could know whether another took over.

On SQLite there is one server process (the database is a file of one machine): it leads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import psycopg

from command.pg_session import Reconnecting

if TYPE_CHECKING:
    from command.post import CommandPost

log = logging.getLogger(__name__)

#: The advisory lock's key: "RP" and 17 (any constant the database's other users leave alone).
LOCK_KEY = 0x5250_0017
#: How often a follower tries for the lock, and the leader checks its connection (seconds).
TRY_EVERY_S = 0.5
RETRY_MAX_S = 5.0
APPLICATION_NAME = "rallypoint leader"


class Leadership(Reconnecting):
    """Tries for the lock, holds it while the connection lives, and sets ``post.leading``; a
    connection lost is made again (``command.pg_session``), and the lock tried for again."""

    def __init__(self, post: CommandPost, url: str, *, every_s: float = TRY_EVERY_S) -> None:
        super().__init__(url, APPLICATION_NAME, retry_first_s=every_s, retry_max_s=RETRY_MAX_S)
        self.post = post
        self.every_s = every_s
        post.leading = False  # until the lock is held
        #: Set while this process leads (tests wait for it).
        self.leads = asyncio.Event()

    def _lead(self, leading: bool) -> None:
        if leading != self.post.leading:
            log.warning("this process %s", "leads now" if leading else "no longer leads")
        self.post.leading = leading
        if leading:
            self.leads.set()
        else:
            self.leads.clear()

    def lost(self) -> None:
        self._lead(False)  # the lock went with the connection

    async def session(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            if self.post.leading:
                await conn.execute("SELECT 1")  # still ours: a dead connection fails here
            else:
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                row: Any = await cursor.fetchone()
                if row is not None and row[0]:
                    self._lead(True)
            await asyncio.sleep(self.every_s)
