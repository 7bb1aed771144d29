"""Failed sign-ins, counted per username and per address, with lockout and back-off.

The policy, and why:

- A username's first :data:`PER_USER` ``.free`` (5) failures cost nothing: people mistype.
  After that each failure locks the username for 1 s, then 2 s, 4 s, ... up to 15 minutes.
  While it is locked every attempt is refused with 429 before the password is checked (the
  right password too), and the refusal is not counted: knocking on a lock does not make it
  longer. So a lock is short, and to keep one user locked an attacker must come back every
  15 minutes with a new failure.
- An address gets :data:`PER_ADDRESS` ``.free`` (20) failures, across every username, then
  the same back-off. The two limits are independent, and a refusal for the address does not
  count against the username: one address cannot lock out many users, since after its free
  failures it gets one try per delay. (Many addresses can; that is for the network in front
  of the server to stop.)
- Counts are forgotten :data:`FORGET_AFTER` (an hour) after the last failure. A successful
  sign-in clears the username's count but not the address's: knowing one password must not buy
  an address more guesses at the others.

The counts live in the database (``login_failures``), not in memory: a restart does not
forgive them, and every server process in front of one database shares them. The clock is the
caller's (the command post's), so tests advance time instead of waiting.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, case, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gis.errors import FieldError, RallypointError
from gis.storage.tables import LoginFailureRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    """``free`` failures without delay; then ``first_delay_s``, doubling up to ``max_delay_s``."""

    free: int
    first_delay_s: float = 1.0
    max_delay_s: float = 900.0

    def delay_s(self, failures: int) -> float:
        """How long the lock lasts after the ``failures``-th failure."""
        if failures < self.free:
            return 0.0
        return min(self.first_delay_s * 2.0 ** min(failures - self.free, 60), self.max_delay_s)


PER_USER = Limit(free=5)
PER_ADDRESS = Limit(free=20)
FORGET_AFTER = timedelta(hours=1)


class TooManyAttempts(RallypointError):
    """Sign-in refused without checking the password: too many recent failures."""

    status_code = 429
    slug = "too-many-attempts"
    title = "Too many attempts"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many failed sign-ins for this username or from this address: try again in "
            f"{retry_after_s} s",
            errors=[FieldError("password", "locked for now after repeated failures")],
            extra={"retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s


def user_key(username: str) -> str:
    return "user:" + username.strip().lower()[:100]


def address_key(address: str) -> str:
    return "address:" + address[:100]


def _keys(username: str, address: str) -> dict[str, Limit]:
    return {user_key(username): PER_USER, address_key(address): PER_ADDRESS}


def reserve(session: Session, username: str, address: str, *, now: datetime) -> None:
    """Before a password is checked: refuse (:class:`TooManyAttempts`) while the username or
    the address is locked, else count this attempt as a failure now, in ``session``'s write
    transaction (the rows locked on PostgreSQL; SQLite writes one at a time). Parallel
    attempts thus each see the ones before them: a burst of guesses sent at once gets no more
    than the free ones. :func:`succeeded` takes the count back for a right password."""
    check(session, username, address, now=now, lock=True)
    session.execute(
        delete(LoginFailureRow).where(LoginFailureRow.last_failure_at < now - FORGET_AFTER)
    )
    for key in _keys(username, address):
        _count(session, key, now)


def locked_warning(session: Session, username: str, address: str) -> None:
    """After a wrong password (counted by :func:`reserve`): log a lock it starts."""
    for key, limit in _keys(username, address).items():
        failures = session.scalar(
            select(LoginFailureRow.failures).where(LoginFailureRow.key == key)
        )
        if failures is not None and failures >= limit.free:
            log.warning(
                "sign-in locked for %.0f s after %d failures (%s)",
                limit.delay_s(failures),
                failures,
                key,
            )


def check(
    session: Session, username: str, address: str, *, now: datetime, lock: bool = False
) -> None:
    """Refuse (:class:`TooManyAttempts`) while the username or the address is locked."""
    limits = _keys(username, address)
    query = select(LoginFailureRow).where(LoginFailureRow.key.in_(limits))
    rows = session.scalars(query.with_for_update() if lock else query)
    wait = 0.0
    for row in rows:
        if now - row.last_failure_at > FORGET_AFTER:
            continue
        until = row.last_failure_at + timedelta(seconds=limits[row.key].delay_s(row.failures))
        wait = max(wait, (until - now).total_seconds())
    if wait > 0:
        raise TooManyAttempts(max(1, math.ceil(wait)))


def failed(session: Session, username: str, address: str, *, now: datetime) -> None:
    """Count a failed sign-in against the username and the address."""
    session.execute(
        delete(LoginFailureRow).where(LoginFailureRow.last_failure_at < now - FORGET_AFTER)
    )
    for key, limit in _keys(username, address).items():
        failures = _count(session, key, now)
        if failures >= limit.free:
            log.warning(
                "sign-in locked for %.0f s after %d failures (%s)",
                limit.delay_s(failures),
                failures,
                key,
            )


def succeeded(session: Session, username: str, address: str | None = None) -> None:
    """A right password: the username's count starts over; the address's provisional count of
    this attempt (:func:`reserve`) is taken back, its earlier failures stay."""
    session.execute(delete(LoginFailureRow).where(LoginFailureRow.key == user_key(username)))
    if address is not None:
        session.execute(
            update(LoginFailureRow)
            .where(LoginFailureRow.key == address_key(address), LoginFailureRow.failures > 0)
            .values(failures=LoginFailureRow.failures - 1)
            .execution_options(synchronize_session=False)
        )


def _count(session: Session, key: str, now: datetime) -> int:
    """One more failure for ``key`` (one statement, so concurrent failures all count)."""
    if not _increment(session, key, now):
        try:
            with session.begin_nested():
                session.add(LoginFailureRow(key=key, failures=1, last_failure_at=now))
        except IntegrityError:  # another request or process counted the first one meanwhile
            _increment(session, key, now)
    counted = session.scalar(select(LoginFailureRow.failures).where(LoginFailureRow.key == key))
    return counted or 1


def _increment(session: Session, key: str, now: datetime) -> bool:
    stale = LoginFailureRow.last_failure_at < now - FORGET_AFTER
    result = session.execute(
        update(LoginFailureRow)
        .where(LoginFailureRow.key == key)
        .values(
            failures=case((stale, 1), else_=LoginFailureRow.failures + 1),
            last_failure_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount > 0
