"""How much of the event log each principal may read: a token bucket counted in events.

Reading the log is the one cheap request that costs the server real work: on a site with 50,000
events, a page of 10,000 took 1.2 s on SQLite and 1.3 s on PostGIS (up to 2.1 s and 4.9 s on a
busy machine), 14 MB of JSON and 78 MB of memory (docs/security.md, "Resource limits"). So a
page holds at most :data:`PAGE` events and says where the next starts, a resuming websocket
replays at most :data:`PAGE` missed events (a snapshot is cheaper than more), and every
principal has a budget: ``burst`` events at once, refilled at ``per_s`` events a second. A read
goes ahead while the budget holds anything, and what it read is taken afterwards (it may leave
a debt that the next reads wait out). An HTTP read beyond the budget gets 429 with
``Retry-After``; a websocket resume gets a snapshot instead of the replay. The clock is the
command post's, so tests advance time.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime

from gis.errors import FieldError, RallypointError
from plans.clock import Clock

#: The most events one page of ``GET .../events``, or one websocket resume, holds.
PAGE = 1_000


class TooManyReads(RallypointError):
    """The caller read more of the event log than its budget allows, for now."""

    status_code = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"this token has read its share of the event log for now: try again in "
            f"{retry_after_s} s",
            errors=[FieldError("after", "read the log more slowly")],
            extra={"retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s  # command.problems sends it as Retry-After


@dataclass(slots=True)
class _Bucket:
    level: float
    at: datetime


class EventReadBudget:
    """A bucket of ``burst`` events per principal, refilled at ``per_s`` events a second."""

    def __init__(self, clock: Clock, *, burst: int, per_s: float) -> None:
        self.clock = clock
        self.burst = burst
        self.per_s = per_s
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def wait_s(self, who: str) -> float:
        """Seconds until ``who`` may read again; 0 when it may now."""
        with self._lock:
            bucket = self._refilled(who)
            return 0.0 if bucket.level > 0 else (1 - bucket.level) / self.per_s

    def check(self, who: str) -> None:
        """Raise :class:`TooManyReads` unless ``who`` may read now."""
        wait = self.wait_s(who)
        if wait > 0:
            raise TooManyReads(max(1, math.ceil(wait)))

    def charge(self, who: str, events: int) -> None:
        """``who`` has read ``events`` events."""
        with self._lock:
            self._refilled(who).level -= events

    def _full(self, bucket: _Bucket, now: datetime) -> bool:
        return bucket.level + (now - bucket.at).total_seconds() * self.per_s >= self.burst

    def _refilled(self, who: str) -> _Bucket:
        now = self.clock.now()
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) > 10_000:  # forget the full ones: they are the default
                self._buckets = {k: b for k, b in self._buckets.items() if not self._full(b, now)}
            bucket = self._buckets[who] = _Bucket(float(self.burst), now)
        elapsed = max((now - bucket.at).total_seconds(), 0.0)  # a wall clock may step back
        bucket.level = min(float(self.burst), bucket.level + elapsed * self.per_s)
        bucket.at = now
        return bucket
