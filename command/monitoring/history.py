"""The alarm history the false-alarm analysis reads (``docs/monitoring.md``).

- **The alarm journal** (``alarm_journal``): one row per alarm, from a sensor's rise out of
  normal to its return, with the highest tier it reached, its peak reading and the outcome
  someone recorded. It is *derived*: it follows the event log's ``sensor.state`` and
  ``alarm.outcome`` events (``alarm_journal_heads`` keeps how far), live as the command post
  logs them and again from any point, so :func:`rebuild_journal` gives the same rows from the
  log, which stays the record.
- **Reading history** (``reading_history``): each sensor's readings per 10-minute period (the
  WMO's averaging period for wind): count, least, mean, greatest, and the wind's direction as
  a unit-vector mean. The command post keeps the open period in memory and writes a period
  once a later reading closes it; readings of a period still open when the server stops are
  lost (a coarse trace, not the record).
- **Hot-work permits** (``hot_work_permits``), recorded through the API and logged
  (``permit.recorded``).

Demo history (``command.monitoring.demo_history``) goes into these tables marked
``generated``, never into the hash-chained log.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import shapely
from shapely.geometry import shape
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from command import events as event_log
from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound
from gis.storage.db import Database
from gis.storage.tables import (
    AlarmJournalHeadRow,
    AlarmJournalRow,
    EventRow,
    HotWorkPermitRow,
    ReadingHistoryRow,
    SiteRow,
)

if TYPE_CHECKING:
    from command.post import CommandPost
    from command.sensors import Reading

OUTCOMES = ("real", "false", "test", "maintenance")
TIERS = ("warning", "alarm", "high_alarm")
PERMIT_KINDS = ("welding", "cutting", "grinding", "brazing", "open_flame", "other")
#: The reading history's period: ten minutes, as the WMO averages wind.
PERIOD_S = 600
MAX_NOTE = 2000
MAX_PERMIT_RADIUS_M = 1000.0
MAX_PERMIT_DAYS = 31
#: The events the journal follows: state changes and outcomes; shelving, out of service and
#: test mode (``command.monitoring.alarms``) mark the alarm open at the time (a shelved or
#: out-of-service sensor logs no state change meanwhile; one in test marks its own).
JOURNAL_TYPES = (
    "sensor.state",
    "alarm.outcome",
    "sensor.shelved",
    "sensor.out_of_service",
    "sensor.test_started",
)


# -- the journal -----------------------------------------------------------------------------------


def journal_row(row: AlarmJournalRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "sensor_id": row.sensor_id,
        "substance": row.substance,
        "tier": row.tier,
        "started_at": row.started_at.isoformat(),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "peak": row.peak,
        "outcome": row.outcome,
        "outcome_by": row.outcome_by,
        "outcome_at": row.outcome_at.isoformat() if row.outcome_at else None,
        "outcome_note": row.outcome_note,
        "test": row.test,
        "shelved": row.shelved,
        "generated": row.generated,
    }


def apply_events(session: Session, site_id: str, events: Iterable[event_log.LoggedEvent]) -> int:
    """Follow ``events`` (in log order) into the journal; a drill's (``exercise``) pass. The
    last seq applied, or 0."""
    last = 0
    for event in events:
        last = event.seq
        data = event.data
        if data.get("exercise") is not None:
            continue
        if event.type == "sensor.state":
            _state(session, site_id, event.seq, event.at, data)
        elif event.type in ("sensor.shelved", "sensor.out_of_service", "sensor.test_started"):
            row = _open_alarm(session, site_id, str(data.get("sensor_id")))
            if row is not None and event.type == "sensor.test_started":
                row.test = True
            elif row is not None:
                row.shelved = True
        elif event.type == "alarm.outcome":
            row = session.get(AlarmJournalRow, (site_id, str(data.get("alarm_id"))))
            if row is not None:
                row.outcome = str(data.get("outcome"))
                row.outcome_by = str(data.get("by_name") or data.get("by") or event.actor)[:200]
                row.outcome_at = event.at
                row.outcome_note = data.get("note")
    session.flush()
    return last


def _open_alarm(session: Session, site_id: str, sensor_id: str) -> AlarmJournalRow | None:
    return session.scalars(
        select(AlarmJournalRow)
        .where(
            AlarmJournalRow.site_id == site_id,
            AlarmJournalRow.sensor_id == sensor_id,
            AlarmJournalRow.ended_at.is_(None),
            AlarmJournalRow.generated.is_(False),
        )
        .order_by(AlarmJournalRow.started_at.desc())
        .limit(1)
    ).first()


def _state(session: Session, site_id: str, seq: int, at: datetime, data: Mapping[str, Any]) -> None:
    sensor_id = str(data.get("sensor_id"))
    after = data.get("to")
    value = float(data.get("value") or 0.0)
    marks = {
        "test": bool(data.get("test") or data.get("maintenance")),
        "shelved": bool(data.get("shelved")),
    }
    row = _open_alarm(session, site_id, sensor_id)
    if after is None:
        if row is not None:
            row.ended_at = at
        return
    if row is None:
        session.add(
            AlarmJournalRow(
                site_id=site_id,
                id=f"e{seq}",
                sensor_id=sensor_id,
                substance=data.get("substance"),
                tier=str(after),
                started_at=at,
                ended_at=None,
                peak=value,
                test=marks["test"],
                shelved=marks["shelved"],
                generated=False,
            )
        )
        return
    if after in TIERS and row.tier in TIERS and TIERS.index(after) > TIERS.index(row.tier):
        row.tier = str(after)
    row.peak = max(row.peak, value)
    row.test = row.test or marks["test"]
    row.shelved = row.shelved or marks["shelved"]


def sync_journal(session: Session, site_id: str) -> int:
    """Follow the site's log from where the journal stopped; how many events were read.

    Server processes sharing a database follow it one at a time: each queues on the site's
    row (PostgreSQL; as an append does), then reads where the journal stopped, so no event is
    journaled twice."""
    session.get(SiteRow, site_id, with_for_update={"key_share": True})
    head = session.get(AlarmJournalHeadRow, site_id)
    after = head.seq if head is not None else 0
    rows = session.scalars(
        select(EventRow)
        .where(
            EventRow.site_id == site_id,
            EventRow.seq > after,
            EventRow.type.in_(JOURNAL_TYPES),
        )
        .order_by(EventRow.seq)
    ).all()
    if not rows:
        return 0
    last = apply_events(session, site_id, [event_log.logged_event(r) for r in rows])
    if head is None:
        session.add(AlarmJournalHeadRow(site_id=site_id, seq=last))
    else:
        head.seq = last
    session.flush()
    return len(rows)


def rebuild_journal(session: Session, site_id: str) -> int:
    """Forget the journal's live rows and follow the whole log again (generated rows stay)."""
    session.execute(
        delete(AlarmJournalRow).where(
            AlarmJournalRow.site_id == site_id, AlarmJournalRow.generated.is_(False)
        )
    )
    session.execute(delete(AlarmJournalHeadRow).where(AlarmJournalHeadRow.site_id == site_id))
    session.flush()
    return sync_journal(session, site_id)


# -- reading history -------------------------------------------------------------------------------


@dataclass
class Period:
    """One sensor's open 10-minute period."""

    start_s: int
    n: int
    low: float
    high: float
    total: float
    east: float = 0.0  # sums of the unit vectors of the wind's direction
    north: float = 0.0
    directions: int = 0

    def add(self, value: float, direction_deg: float | None) -> None:
        self.n += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        if direction_deg is not None:
            self.east += math.sin(math.radians(direction_deg))
            self.north += math.cos(math.radians(direction_deg))
            self.directions += 1

    def direction(self) -> float | None:
        if not self.directions or math.hypot(self.east, self.north) < 1e-9:
            return None
        return math.degrees(math.atan2(self.east, self.north)) % 360.0


class ReadingPeriods:
    """The open period of each sensor, per site; :meth:`take` hands back those a reading
    closed."""

    def __init__(self) -> None:
        self.open: dict[str, dict[str, Period]] = {}

    def take(
        self, site_id: str, readings: Sequence[Reading], at: datetime
    ) -> list[tuple[str, Period]]:
        start = int(at.timestamp()) // PERIOD_S * PERIOD_S
        periods = self.open.setdefault(site_id, {})
        closed: list[tuple[str, Period]] = []
        for r in readings:
            period = periods.get(r.sensor_id)
            if period is not None and start < period.start_s:
                # Relayed by another process after a later reading came here: a period of
                # its own, merged into the stored one (``store_periods``).
                late = Period(start, 0, r.value, r.value, 0.0)
                late.add(r.value, r.direction_deg)
                closed.append((r.sensor_id, late))
                continue
            if period is None or period.start_s != start:
                if period is not None:
                    closed.append((r.sensor_id, period))
                period = periods[r.sensor_id] = Period(start, 0, r.value, r.value, 0.0)
            period.add(r.value, r.direction_deg)
        return closed


def store_periods(session: Session, site_id: str, closed: Sequence[tuple[str, Period]]) -> None:
    """Write closed periods; one already stored (a restart inside it) is merged."""
    for sensor_id, p in closed:
        row = session.get(ReadingHistoryRow, (site_id, sensor_id, p.start_s))
        mean = p.total / p.n
        if row is None:
            session.add(
                ReadingHistoryRow(
                    site_id=site_id,
                    sensor_id=sensor_id,
                    period_s=p.start_s,
                    n=p.n,
                    low=p.low,
                    mean=mean,
                    high=p.high,
                    direction_deg=p.direction(),
                    generated=False,
                )
            )
        else:
            row.mean = (row.mean * row.n + p.total) / (row.n + p.n)
            row.n += p.n
            row.low = min(row.low, p.low)
            row.high = max(row.high, p.high)
            row.direction_deg = p.direction() if row.direction_deg is None else row.direction_deg
    session.flush()


class AlarmHistory:
    """What the command post calls after it logged a batch of real readings (one call,
    inside its lock): the readings go into their periods, closed periods are written, and
    the journal follows the logged state changes.

    With several server processes every process takes every reading (its own, and those the
    others relay: ``CommandPost.relayed_readings``), and only the leading one stores the
    periods (``store``), so each reading is counted once whichever process took it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.periods = ReadingPeriods()

    def follow(
        self,
        site_id: str,
        logged: Sequence[event_log.LoggedEvent],
        readings: Sequence[Reading],
        at: datetime,
        *,
        store: bool = True,
    ) -> None:
        closed = self.periods.take(site_id, readings, at)
        if not store:
            closed = []
        journal = any(e.type in JOURNAL_TYPES for e in logged)
        if not closed and not journal:
            return
        with self.db.write() as session:
            if closed:
                store_periods(session, site_id, closed)
            if journal:
                sync_journal(session, site_id)


# -- outcomes and permits --------------------------------------------------------------------------


def record_outcome(
    post: CommandPost,
    site_id: str,
    alarm_id: str,
    body: Any,
    *,
    actor: str,
    by_name: str | None = None,
) -> dict[str, Any]:
    """Whoever checked an alarm says what it was: ``alarm.outcome`` is logged and the journal
    row carries it. A later outcome for the same alarm corrects the earlier one (both stay in
    the log)."""
    if not isinstance(body, dict):
        raise InvalidInput("send {outcome, note}", errors=[FieldError("body", "an object")])
    outcome, note = body.get("outcome"), body.get("note")
    errors = []
    if outcome not in OUTCOMES:
        errors.append(FieldError("outcome", f"one of {', '.join(OUTCOMES)}"))
    if note is not None and not (isinstance(note, str) and len(note) <= MAX_NOTE):
        errors.append(FieldError("note", f"text of at most {MAX_NOTE} characters"))
    unknown = sorted(set(body) - {"outcome", "note"})
    if unknown:
        errors.append(
            FieldError(unknown[0] or "body", f"{unknown[0]!r} is not a field of an outcome")
        )
    if errors:
        raise InvalidInput("the outcome was not recorded", errors=errors)
    with post._lock:  # the log's order is the command post's
        with post.db.write() as session:
            sync_journal(session, site_id)
            row = session.get(AlarmJournalRow, (site_id, alarm_id))
            if row is None:
                raise NotFound(
                    f"no alarm '{alarm_id}' at site '{site_id}'",
                    errors=[FieldError("alarm_id", "unknown")],
                )
            data = {
                "alarm_id": alarm_id,
                "sensor_id": row.sensor_id,
                "outcome": outcome,
                "note": note,
                "by": actor,
                "by_name": by_name,
            }
            event = event_log.append(
                session, site_id, "alarm.outcome", actor=actor, data=data, now=post.clock.now()
            )
            sync_journal(session, site_id)
            out = journal_row(row)
        post.hub.publish(site_id, [_message(event)])
    return out


def _message(event: event_log.LoggedEvent) -> dict[str, Any]:
    from command.post import event_message

    return event_message(event)


def permit_row(row: HotWorkPermitRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "location": row.location,
        "radius_m": row.radius_m,
        "valid_from": row.valid_from.isoformat(),
        "valid_to": row.valid_to.isoformat(),
        "issued_by": row.issued_by,
        "note": row.note,
        "recorded_at": row.recorded_at.isoformat(),
        "recorded_by": row.recorded_by,
        "generated": row.generated,
    }


def parse_permit(body: Any) -> dict[str, Any]:
    """A permit's fields, every one checked; :class:`InvalidInput` names each bad one."""
    if not isinstance(body, dict):
        raise InvalidInput("send a permit as an object", errors=[FieldError("body", "an object")])
    errors: list[FieldError] = []
    allowed = {"id", "kind", "location", "radius_m", "valid_from", "valid_to", "issued_by", "note"}
    for name in sorted(set(body) - allowed):
        errors.append(FieldError(name or "body", f"{name!r} is not a field of a permit"))
    permit_id = body.get("id", f"HW-{uuid.uuid4().hex[:10]}")
    if not (isinstance(permit_id, str) and 0 < len(permit_id) <= 64):
        errors.append(FieldError("id", "text of 1 to 64 characters"))
    kind = body.get("kind")
    if kind not in PERMIT_KINDS:
        errors.append(FieldError("kind", f"one of {', '.join(PERMIT_KINDS)}"))
    location = body.get("location")
    geometry = None
    try:
        if not isinstance(location, dict) or location.get("type") not in ("Point", "Polygon"):
            raise ValueError
        geometry = shape(location)
        x0, y0, x1, y1 = geometry.bounds
        if not (geometry.is_valid and -180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
            raise ValueError
    except (
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        shapely.errors.ShapelyError,
    ):
        errors.append(FieldError("location", "a valid GeoJSON Point or Polygon in lon/lat"))
    radius = body.get("radius_m", 0)
    if not (
        isinstance(radius, int | float)
        and not isinstance(radius, bool)
        and 0 <= radius <= MAX_PERMIT_RADIUS_M
    ):
        errors.append(FieldError("radius_m", f"metres from 0 to {MAX_PERMIT_RADIUS_M:g}"))
    times = {}
    for name in ("valid_from", "valid_to"):
        value = body.get(name)
        try:
            at = datetime.fromisoformat(value) if isinstance(value, str) else None
            at = at.astimezone(UTC) if at is not None and at.tzinfo is not None else None
            if at is not None:
                at.timestamp()
        except (ValueError, OverflowError, OSError):
            at = None
        if at is None:
            errors.append(FieldError(name, "an ISO 8601 time with a UTC offset"))
        else:
            times[name] = at
    if len(times) == 2:
        span = times["valid_to"] - times["valid_from"]
        if not timedelta(0) < span <= timedelta(days=MAX_PERMIT_DAYS):
            errors.append(
                FieldError("valid_to", f"after valid_from, at most {MAX_PERMIT_DAYS} days later")
            )
    issued_by = body.get("issued_by")
    if not (isinstance(issued_by, str) and 0 < len(issued_by.strip()) <= 200):
        errors.append(FieldError("issued_by", "who issued the permit, 1 to 200 characters"))
    note = body.get("note")
    if note is not None and not (isinstance(note, str) and len(note) <= MAX_NOTE):
        errors.append(FieldError("note", f"text of at most {MAX_NOTE} characters"))
    if errors:
        raise InvalidInput("the permit was not recorded", errors=errors)
    return {
        "id": permit_id,
        "kind": kind,
        "location": location,
        "radius_m": float(radius),
        "valid_from": times["valid_from"],
        "valid_to": times["valid_to"],
        "issued_by": str(issued_by).strip(),
        "note": note,
    }


def record_permit(post: CommandPost, site_id: str, body: Any, *, actor: str) -> dict[str, Any]:
    """Record a hot-work permit and log it (``permit.recorded``), together or not at all."""
    fields = parse_permit(body)
    post.model(site_id)  # an unknown site is 404
    with post._lock, post.db.write() as session:
        if session.get(HotWorkPermitRow, (site_id, fields["id"])) is not None:
            raise AlreadyExists(
                f"permit '{fields['id']}' is recorded already",
                errors=[FieldError("id", "taken")],
            )
        now = post.clock.now()
        row = HotWorkPermitRow(
            site_id=site_id, recorded_at=now, recorded_by=actor, generated=False, **fields
        )
        session.add(row)
        session.flush()
        out = permit_row(row)
        event_log.append(session, site_id, "permit.recorded", actor=actor, data=out, now=now)
    return out


def list_permits(
    session: Session, site_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Permits valid at some time in [start, end)."""
    rows = session.scalars(
        select(HotWorkPermitRow)
        .where(
            HotWorkPermitRow.site_id == site_id,
            HotWorkPermitRow.valid_from < end,
            HotWorkPermitRow.valid_to > start,
        )
        .order_by(HotWorkPermitRow.valid_from, HotWorkPermitRow.id)
    ).all()
    return [permit_row(r) for r in rows]
