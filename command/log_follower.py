"""Several server processes on one database: each follows the event log (issue 17).

The event log in the database is the only source of order: appends queue on the site's row, so
sequence numbers stay gapless and unique per site whichever process writes
(``command.events.append_many``). Each process keeps in memory what it needs to command
(incidents, plan runs, duties, sensor tiers and alarms, the call tree); this module keeps that
memory, and every subscriber of the process, up with what *other* processes wrote:

- **Woken, then reading.** On PostgreSQL a trigger on ``event_heads`` sends ``pg_notify`` on
  :data:`CHANNEL` with the site id when an append commits (migration 0018); a dedicated psycopg
  connection LISTENs (:class:`EventListener`, reconnecting with backoff). A notification is a
  wake-up only: the events are read from the table. A sweep every :data:`SWEEP_S` catches what
  a dropped connection missed (and, on SQLite, a command-line tool's appends).
- **Applied once.** Each event carries the process that wrote it (``events.origin``); a process
  applies to its memory only the others' (``CommandPost.apply_foreign``), in log order.
- **Delivered in order.** Every event read goes to the hub, which delivers each site's events
  in sequence, each once, filling any gap from the log (``command.hub``): a subscriber of any
  process sees the same ordered stream.
- **Decided on the current picture.** A command is decided on the process's memory of the site;
  the append checks, under the site's lock, that the log still ends where that memory does
  (``expect``), and otherwise the process catches up and decides again (:meth:`LogFollower.view`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import typing
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from command import events as event_log
from command.hub import ENCODED, encode
from command.pg_session import Listener
from gis.storage.db import Database
from gis.storage.tables import EventHeadRow, EventRow, PositionFeedRow

if TYPE_CHECKING:
    from command.post import CommandPost

log = logging.getLogger(__name__)

#: The channel of migration 0018's trigger.
CHANNEL = "rallypoint_events"
#: The safety net: every site's head is compared this often (seconds) whatever was heard.
SWEEP_S = 1.0
#: A listener cut off tries again after at most this long (the sweep covers the gap meanwhile).
RETRY_MAX_S = 10.0
#: A listening connection that heard nothing this long is asked a question (a dead one fails).
CHECK_EVERY_S = 15.0
#: Events read at once while catching up.
BATCH = 2_000
#: People's latest positions between processes (PostgreSQL; migration 0018): a row per process
#: and site every :data:`RELAY_EVERY_S`, read by the others, kept :data:`POSITIONS_KEPT_S`.
POSITIONS_CHANNEL = "rallypoint_positions"
POSITION_FEED = typing.cast(sa.Table, PositionFeedRow.__table__)
RELAY_EVERY_S = 0.25
POSITIONS_KEPT_S = 60.0
#: Feed rows may commit out of their id order (two processes insert at once): each read looks
#: this many ids back, and rows already taken are known by id.
FEED_LOOK_BACK = 500
APPLICATION_NAME = "rallypoint event follower"


def claim_origin() -> str:
    """This process's name in the events it appends (host, pid and a random part: a restarted
    process on a reused pid is another writer)."""
    if event_log.ORIGIN is None:
        event_log.ORIGIN = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    return event_log.ORIGIN


class LogFollower:
    """Keeps a process's memory and subscribers up with the log (see the module's text).

    ``applied[site]``: every event of the site up to it is in this process's memory (its own
    as it wrote them, others' as :meth:`catch_up` applied them)."""

    def __init__(self, post: CommandPost) -> None:
        self.post = post
        self.db: Database = post.db
        self.applied: dict[str, int] = {}
        #: One catch-up at a time (it applies events to the post's memory, under its lock).
        self._lock = threading.RLock()
        #: Guards ``applied`` alone, and is never held while taking another lock: the post
        #: moves it (:meth:`wrote`) under its own lock, which a catch-up waits for.
        self._applied_lock = threading.Lock()
        self.origin = claim_origin()
        #: The relayed positions read so far: the highest feed row id, and the ids taken.
        self._positions_lock = threading.Lock()
        self._feed_mark = 0
        self._feed_taken: set[int] = set()

    def start(self) -> None:
        """Follow from the log's end now (the memory was just rebuilt from it), and let the hub
        fill gaps from the log."""
        with self._lock:
            heads = self._heads(None)
        for site_id, seq in heads.items():
            with self._applied_lock:
                self.applied[site_id] = seq
            self.post.hub.start_at(site_id, seq)
        self.post.hub.fill = self.fill
        self.post.follower = self
        if self.db.is_postgis:  # positions relayed from now on (the stored ones are read)
            with self.db.read() as session:
                ids = session.scalars(select(POSITION_FEED.c.id)).all()
            self._feed_mark = max(ids, default=0)
            self._feed_taken = {int(i) for i in ids if i > self._feed_mark - FEED_LOOK_BACK}
            self.post.relaying = True

    def fill(self, site_id: str, first: int, last: int) -> list[dict[str, Any]]:
        """The site's events ``first`` to ``last``, as messages (the hub's gap filler)."""
        from command.post import event_message

        with self.db.read() as session:
            events = event_log.since(session, site_id, first - 1, limit=last - first + 1)
        return [event_message(e) for e in events if e.seq <= last]

    def _heads(self, site_id: str | None) -> dict[str, int]:
        """Each site's last sequence number (one site's, or all): one small query."""
        query = select(EventHeadRow.site_id, EventHeadRow.seq)
        if site_id is not None:
            query = query.where(EventHeadRow.site_id == site_id)
        with self.db.read() as session:
            return {str(site): int(seq) for site, seq in session.execute(query) if seq is not None}

    def catch_up(self, site_id: str | None = None) -> dict[str, int]:
        """Read and apply what other processes logged since :attr:`applied` (one site, or all),
        and hand every event read to the hub. Returns ``applied`` after."""
        with self._lock:
            for site, head in self._heads(site_id).items():
                while head > self.applied.get(site, 0):
                    if not self._step(site, self.applied.get(site, 0)):
                        break
            return dict(self.applied)

    def _step(self, site_id: str, after: int) -> bool:
        from command.post import event_message

        with self.db.read() as session:
            rows = session.execute(
                select(*event_log.RAW_COLUMNS, EventRow.origin)
                .where(EventRow.site_id == site_id, EventRow.seq > after)
                .order_by(EventRow.seq)
                .limit(BATCH)
            ).all()
        if not rows:
            return False
        events: list[event_log.LoggedEvent] = []
        foreign: list[event_log.LoggedEvent] = []
        for raw in rows:
            try:
                event = event_log.read_row(raw)
            except event_log.Unreadable as exc:  # 'audit verify' names it; the rest goes on
                log.error("site %s: event %s is unreadable (%s); skipped", site_id, raw.seq, exc)
                continue
            events.append(event)
            if raw.origin != self.origin:
                foreign.append(event)
        # To the walls first (in order; what this process sent already is dropped by the hub),
        # then into memory: an incident rebuilt sends its picture after its events.
        self.post.hub.publish(site_id, [event_message(e) for e in events])
        if foreign:
            self.post.apply_foreign(site_id, foreign)
        with self._applied_lock:
            self.applied[site_id] = max(self.applied.get(site_id, 0), int(rows[-1].seq))
        return True

    # -- positions --------------------------------------------------------------------------

    def relay(self) -> int:
        """Hand the positions and readings this process took since the last call to the others
        (one feed row per site). How many."""
        taken, readings = self.post.take_relay()
        if not taken and not readings:
            return 0
        now = self.post.clock.now()
        rows = [
            {
                "site_id": site,
                "origin": self.origin,
                "at": now,
                "positions": taken.get(site, {}),
                "readings": readings.get(site),
            }
            for site in sorted(set(taken) | set(readings))
        ]
        try:
            with self.db.write() as session:
                session.execute(sa.insert(POSITION_FEED), rows)
        except Exception:
            self.post.retake_relay(taken, readings)  # not lost: the next call sends them
            raise
        return sum(len(m) for m in taken.values()) + sum(
            len(b[1]) for r in readings.values() for b in r["batches"]
        )

    # -- pictures ---------------------------------------------------------------------------

    def relay_picture(self, session: Session, last: event_log.LoggedEvent, body: bytes) -> None:
        """In the transaction that logs ``last`` (an incident's last event): the incident's
        picture as of it, encoded, for the other processes (:meth:`relayed_picture`)."""
        picture = {"incident_id": last.incident_id, "seq": last.seq, "json": body.decode()}
        session.execute(
            sa.insert(POSITION_FEED),
            {
                "site_id": last.site_id,
                "origin": self.origin,
                "at": last.at,
                "positions": {},
                "readings": {"picture": picture},
            },
        )

    def relayed_picture(self, last: event_log.LoggedEvent) -> dict[str, Any] | None:
        """The picture another process relayed with ``last`` (an incident's last event read),
        as the message its walls got, if any: found by the time of the append (an indexed
        read), of the incident, as of ``last`` or an event of the same append after it."""
        with self.db.read() as session:
            rows = session.scalars(
                select(POSITION_FEED.c.readings).where(
                    POSITION_FEED.c.at == last.at,
                    POSITION_FEED.c.site_id == last.site_id,
                    POSITION_FEED.c.origin != self.origin,
                )
            ).all()
        for readings in rows:
            picture = (readings or {}).get("picture")
            if (
                isinstance(picture, dict)
                and picture.get("incident_id") == last.incident_id
                and int(picture.get("seq") or 0) >= last.seq
            ):
                message: dict[str, Any] = {
                    "type": "incident",
                    "seq": int(picture["seq"]),
                    "incident_id": last.incident_id,
                }
                head = encode(message)[:-1]
                message[ENCODED] = f'{head},"snapshot":{picture["json"]}}}'
                return message
        return None

    def take_positions(self, site_id: str | None = None) -> int:
        """Apply the positions other processes relayed since the last call (one site, or
        all). How many rows were taken."""
        with self._positions_lock:
            # The ids first (the look-back's rows were mostly taken already), then the
            # payloads of the new ones only.
            query = select(POSITION_FEED.c.id).where(
                POSITION_FEED.c.id > self._feed_mark - FEED_LOOK_BACK,
                POSITION_FEED.c.origin != self.origin,
            )
            if site_id is not None:
                query = query.where(POSITION_FEED.c.site_id == site_id)
            with self.db.read() as session:
                ids = [int(i) for i in session.scalars(query)]
                new = sorted(i for i in ids if i not in self._feed_taken)
                rows = (
                    session.execute(
                        select(
                            POSITION_FEED.c.id,
                            POSITION_FEED.c.site_id,
                            POSITION_FEED.c.positions,
                            POSITION_FEED.c.readings,
                        )
                        .where(POSITION_FEED.c.id.in_(new))
                        .order_by(POSITION_FEED.c.id)
                    ).all()
                    if new
                    else []
                )
            fresh = [r for r in rows if r.id not in self._feed_taken]
            for row in fresh:
                moves = {
                    str(pid): (float(v[0]), float(v[1]), float(v[2]))
                    for pid, v in dict(row.positions).items()
                }
                try:
                    if row.readings and "picture" not in row.readings:  # pictures: _refreshed
                        self.post.relayed_readings(str(row.site_id), dict(row.readings))
                    if moves:
                        self.post.relayed_positions(str(row.site_id), moves)
                except Exception:  # a site deleted meanwhile, a person unknown: the rest go on
                    log.exception("relayed positions of %s not taken", row.site_id)
                self._feed_taken.add(int(row.id))
            if ids:
                self._feed_mark = max(self._feed_mark, max(ids))
            low = self._feed_mark - FEED_LOOK_BACK
            self._feed_taken = {i for i in self._feed_taken if i > low}
            return len(fresh)

    def prune_positions(self) -> int:
        """Delete feed rows older than :data:`POSITIONS_KEPT_S` (the leader does)."""
        cutoff = self.post.clock.now().timestamp() - POSITIONS_KEPT_S
        with self.db.write() as session:
            done = session.execute(
                sa.delete(POSITION_FEED).where(
                    POSITION_FEED.c.at < datetime.fromtimestamp(cutoff, UTC)
                )
            )
        return int(getattr(done, "rowcount", 0) or 0)

    async def relay_forever(self) -> None:
        """Every :data:`RELAY_EVERY_S`: relay this process's positions (PostgreSQL)."""
        while True:
            await asyncio.sleep(RELAY_EVERY_S)
            try:
                await run_in_threadpool(self.relay)
            except Exception:
                log.exception("relaying positions failed; the next round retries")

    def view(self, site_id: str) -> int:
        """Catch up on the site, then the number its memory ends at (the ``expect`` of a
        command's append)."""
        return self.catch_up(site_id).get(site_id, 0)

    def wrote(self, site_id: str, expected: int, logged: Iterable[event_log.LoggedEvent]) -> None:
        """This process appended ``logged`` right after ``expected`` (checked under the site's
        lock): the memory, which holds them already, now ends at the last."""
        last = max((e.seq for e in logged), default=expected)
        with self._applied_lock:  # called under the post's lock: never the catch-up's lock
            if self.applied.get(site_id, 0) == expected:
                self.applied[site_id] = last

    async def sweep_forever(self) -> None:
        """Every :data:`SWEEP_S`: catch up on every site (what no notification announced)."""
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await run_in_threadpool(self.catch_up)
                if self.post.relaying:
                    await run_in_threadpool(self.take_positions)
            except Exception:
                log.exception("following the event log failed; the next sweep retries")


class EventListener(Listener):
    """LISTENs on :data:`CHANNEL` and :data:`POSITIONS_CHANNEL` and wakes the follower for each
    site named; a dropped connection is opened again with backoff (``command.pg_session``),
    and then everything is caught up. The wake-ups are taken by a worker of their own: the
    listening loop never waits on the database."""

    def __init__(self, follower: LogFollower, url: str) -> None:
        super().__init__(
            url,
            APPLICATION_NAME,
            (CHANNEL, POSITIONS_CHANNEL),
            retry_max_s=RETRY_MAX_S,
            check_every_s=CHECK_EVERY_S,
        )
        self.follower = follower
        self._woken: set[str | None] = set()
        self._positions: set[str | None] = set()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        worker = asyncio.create_task(self._work())
        try:
            await super().run()
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def listening_again(self) -> None:
        # What was logged and relayed while nobody listened: every site.
        self._poke(CHANNEL, None)
        self._poke(POSITIONS_CHANNEL, None)

    def heard(self, channel: str, payload: str) -> None:
        self._poke(channel, payload)

    def _poke(self, channel: str, site_id: str | None) -> None:
        (self._positions if channel == POSITIONS_CHANNEL else self._woken).add(site_id)
        self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            woken, self._woken = self._woken, set()
            moved, self._positions = self._positions, set()
            try:
                if None in woken:
                    await run_in_threadpool(self.follower.catch_up)
                else:
                    for site_id in sorted(s for s in woken if s is not None):
                        await run_in_threadpool(self.follower.catch_up, site_id)
                if None in moved:
                    await run_in_threadpool(self.follower.take_positions)
                else:
                    for site_id in sorted(s for s in moved if s is not None):
                        await run_in_threadpool(self.follower.take_positions, site_id)
            except Exception:
                log.exception("following the event log failed; the next wake-up retries")
