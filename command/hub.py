"""Fan-out of logged events to websocket subscribers: one bounded queue each.

Events reach the hub only after their transaction committed, in sequence order. Each subscriber
has its own queue, and publishing never waits. A subscriber whose queue is full has fallen
behind: it is marked for resync and its queue is cleared, so it cannot stall the others or hold
memory. Its connection then tells the client to resync; the client reconnects with the last
sequence number it saw and catches up from the event log.

Publishing may come from worker threads (the REST routes run there), so it hops onto the event
loop with ``call_soon_threadsafe``.

**In sequence, each once.** Several threads, and with several server processes on one database
(``command.log_follower``) several processes, append to a site's log; their events may reach
the hub in another order than their numbers. The hub keeps, per site, the last event number it
delivered: an event already delivered is dropped, and one that comes after a gap first has the
gap filled from the log (``fill``, set by the log follower: those events committed before it).
So every subscriber of every process gets the site's events in order, with no gap and no
repeat, whoever wrote them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)

#: Messages a subscriber may have waiting before it is told to resync.
DEFAULT_QUEUE = 1000
#: Where a message keeps its JSON text once encoded (never part of the JSON itself).
ENCODED = "__json"
#: The parts of a ``positions`` message keyed by person, merged when messages coalesce.
PER_PERSON = ("positions", "seen_at", "at_muster")


def encode_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON. orjson: an L3 picture of 5,000 routes (MBs) encodes ~10x faster
    than with the json module, and that encoding sits between activation and every screen."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def encode(message: dict[str, Any]) -> str:
    return encode_bytes({k: v for k, v in message.items() if k != ENCODED}).decode()


@dataclass(eq=False)
class Subscriber:
    site_id: str
    incident_id: str | None
    queue: asyncio.Queue[dict[str, Any]]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    #: The positions message waiting in the queue, which newer positions merge into.
    pending_positions: dict[str, Any] | None = None
    #: Called (on the loop) when a message is queued or the queue overflowed: the connection's
    #: wake-up, so it need not keep a task waiting on the queue.
    wake: Callable[[], None] | None = None

    def offer(self, message: dict[str, Any]) -> None:
        if self.overflowed.is_set():
            return
        incident = message.get("incident_id")
        if self.incident_id is not None and incident not in (None, self.incident_id):
            return
        if message["type"] == "positions":
            pending = self.pending_positions
            if pending is not None and not pending.get("taken"):
                # Coalesced: the client gets each person's latest position (when it was seen,
                # and the muster point they are at), not every one.
                for key in PER_PERSON:
                    if key in message:
                        pending.setdefault(key, {}).update(message[key])
                pending["headcount"] = message["headcount"]
                pending["seq"] = max(pending["seq"], message["seq"])
                return
            message = {**message, **{k: dict(message[k]) for k in PER_PERSON if k in message}}
            self.pending_positions = message
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Behind by a whole queue: drop what is waiting and have the client resync.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.overflowed.set()
            log.warning("subscriber of %s fell behind: told to resync", self.site_id)
        if self.wake is not None:
            self.wake()


#: Reads the site's events numbered from ``first`` to ``last`` from the log, as messages.
Fill = Callable[[str, int, int], list[dict[str, Any]]]


class Hub:
    def __init__(self, *, queue_size: int = DEFAULT_QUEUE) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        #: Per site, the last event number delivered (unknown until the first, or
        #: :meth:`start_at`); the sequencing lock of each site.
        self.delivered: dict[str, int] = {}
        self._site_locks: dict[str, threading.Lock] = {}
        #: Reads a gap's events from the log (the log follower's); None: gaps pass as they are.
        self.fill: Fill | None = None

    def start_at(self, site_id: str, seq: int) -> None:
        """Deliver the site's events after ``seq`` (the log's end when following begins)."""
        with self._sequencing(site_id):
            self.delivered[site_id] = max(seq, self.delivered.get(site_id, seq))

    def _sequencing(self, site_id: str) -> threading.Lock:
        with self._lock:
            lock = self._site_locks.get(site_id)
            if lock is None:
                lock = self._site_locks[site_id] = threading.Lock()
            return lock

    def _in_sequence(
        self, site_id: str, messages: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """``messages`` with the events already delivered dropped and any gap before an event
        filled from the log (called under the site's sequencing lock)."""
        out: list[dict[str, Any]] = []
        last = self.delivered.get(site_id)
        for message in messages:
            seq = message.get("seq")
            if message.get("type") != "event":
                # A picture or positions "as of" an event goes after that event: a client
                # takes its seq as seen, and would skip an earlier event still to come.
                if isinstance(seq, int) and last is not None and seq > last and self.fill:
                    out += self._filled(site_id, last + 1, seq)
                    last = seq
                out.append(message)
                continue
            seq = int(message["seq"])
            if last is not None and seq <= last:
                continue  # delivered already (by its writer, or by the follower)
            if last is not None and seq > last + 1:
                out += self._filled(site_id, last + 1, seq - 1)
            out.append(message)
            last = seq
        if last is not None:
            self.delivered[site_id] = last
        return out

    def _filled(self, site_id: str, first: int, last: int) -> list[dict[str, Any]]:
        """The site's events ``first`` to ``last`` from the log, encoded (none without a
        filler, or when the log cannot be read: the subscribers resync from it themselves)."""
        if self.fill is None:
            return []
        try:
            missing = self.fill(site_id, first, last)
        except Exception:
            log.exception("could not read events %d-%d of %s", first, last, site_id)
            return []
        for event in missing:
            event.setdefault(ENCODED, encode(event))
        return missing

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the subscribers' queues live on (set by the app's lifespan)."""
        self._loop = loop

    @contextmanager
    def subscribe(self, site_id: str, incident_id: str | None = None) -> Iterator[Subscriber]:
        subscriber = Subscriber(site_id, incident_id, asyncio.Queue(maxsize=self.queue_size))
        with self._lock:
            self._subscribers.setdefault(site_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            with self._lock:
                self._subscribers.get(site_id, set()).discard(subscriber)

    def subscriber_count(self, site_id: str | None = None) -> int:
        with self._lock:
            if site_id is not None:
                return len(self._subscribers.get(site_id, ()))
            return sum(len(s) for s in self._subscribers.values())

    def publish(self, site_id: str, messages: Sequence[dict[str, Any]]) -> None:
        """Offer messages to every subscriber of the site (from any thread)."""
        if not messages:
            return
        for message in messages:
            if message["type"] != "positions":  # positions merge per subscriber
                # Encoded once for every subscriber, and here, off the event loop.
                message.setdefault(ENCODED, encode(message))
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # Sequenced and handed to the loop under one lock: the loop delivers in that order.
        with self._sequencing(site_id):
            ordered = self._in_sequence(site_id, messages)
            if not ordered:
                return
            if loop is None or running is loop:
                self._deliver(site_id, ordered)
            else:
                loop.call_soon_threadsafe(self._deliver, site_id, ordered)

    def _deliver(self, site_id: str, messages: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            targets = list(self._subscribers.get(site_id, ()))
        for subscriber in targets:
            for message in messages:
                subscriber.offer(message)
