"""Time, injected: the plan engine asks a clock, never the system, so tests advance time.

:class:`SystemClock` is the real one. :class:`ManualClock` moves only when told to, by any
amount, and never backwards, so a test can jump an hour and check that every deadline in between
fired, in order. :class:`FileClock` is a manual clock several processes share: the time is
the one written in a file (tests of several server processes advance it for all of them).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock for tests, drills replayed at speed and benchmarks."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("the clock keeps aware UTC times")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if step < timedelta(0):
            raise ValueError("time does not run backwards")
        self._now += step
        return self._now


class FileClock:
    """The time written in ``path`` (ISO 8601 with its offset), as a clock of several processes:
    every server process started with ``RALLYPOINT_CLOCK_FILE`` reads the same time, and a test
    moves it for all of them with :meth:`set`. Never backwards, as :class:`ManualClock`. Read
    again only when the file changed. For tests and rehearsals, never a real deployment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._now = datetime(1970, 1, 1, tzinfo=UTC)
        self.now()  # a missing or bad file fails here, at start

    def now(self) -> datetime:
        info = os.stat(self.path)
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            text = self.path.read_text(encoding="utf-8").strip()
            if text:  # a writer caught between truncating and writing: the time before
                read = datetime.fromisoformat(text)
                if read.tzinfo is None:
                    raise ValueError(f"{self.path}: the clock keeps aware times, not {text!r}")
                self._now = max(self._now, read.astimezone(UTC))
                self._stamp = stamp
        return self._now

    @staticmethod
    def set(path: Path, at: datetime) -> None:
        """Write ``at`` as the time of every process reading ``path`` (atomically)."""
        if at.tzinfo is None:
            raise ValueError("the clock keeps aware UTC times")
        fresh = path.with_name(f".{path.name}.new")
        fresh.write_text(at.astimezone(UTC).isoformat(), encoding="utf-8")
        os.replace(fresh, path)
