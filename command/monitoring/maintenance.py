"""Calibration and bump-test records of detectors, and when each detector is due again.

- A **bump test** (functional check) puts gas on the detector to show that gas reaches the
  sensor and the alarms work. Default interval: ``BUMP_TEST_DAYS`` (30 days).
- A **calibration** sets zero and span with a certified gas. Default interval:
  ``CALIBRATION_DAYS`` (365 days: JJG 693-2011 verifies combustible-gas detectors at most
  yearly; manufacturers ask for a zero and span calibration at least once a year).

A record may name its own ``next_due`` (a manufacturer's or the site's shorter interval). A
failed test or calibration leaves the detector due at once, until a passing record follows. A
passing calibration applies gas too, so it also counts as a bump test. A detector with no
record is not flagged: nothing says when it was last checked (``docs/monitoring.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput
from gis.storage.tables import SensorMaintenanceRow

KINDS = ("calibration", "bump_test")
RESULTS = ("pass", "fail")
CALIBRATION_DAYS = 365
BUMP_TEST_DAYS = 30
INTERVAL_DAYS = {"calibration": CALIBRATION_DAYS, "bump_test": BUMP_TEST_DAYS}
#: A record may be entered this long after the work, not for work still to come.
MAX_AHEAD_S = 300.0
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MaintenanceRecord:
    kind: str
    at: datetime
    by: str
    result: str
    gas: str
    concentration: float
    unit: str | None
    next_due: datetime
    note: str | None


def parse_record(body: Any, *, now: datetime) -> MaintenanceRecord:
    """A record from a request body, every field checked: :class:`InvalidInput` names each bad
    field, and nothing is taken."""
    if not isinstance(body, dict):
        raise InvalidInput("send the record as an object", errors=[FieldError("body", "an object")])
    errors: list[FieldError] = []
    known = {"kind", "at", "by", "result", "gas", "concentration", "unit", "next_due", "note"}
    unknown = sorted(str(k) for k in set(body) - known)
    errors += [FieldError(k[:64] or "body", "not a field of a record") for k in unknown[:20]]
    kind, result = body.get("kind"), body.get("result")
    if kind not in KINDS:
        errors.append(FieldError("kind", "calibration or bump_test"))
    if result not in RESULTS:
        errors.append(FieldError("result", "pass or fail"))
    at = _time(body.get("at"))
    if at is None:
        errors.append(FieldError("at", "an ISO 8601 time with a UTC offset"))
    elif at > now + timedelta(seconds=MAX_AHEAD_S):
        errors.append(FieldError("at", "not in the future: record work done"))
    elif at < EARLIEST:
        errors.append(FieldError("at", "after 2000-01-01"))
    by = _text(body.get("by"), 200)
    if by is None:
        errors.append(FieldError("by", "who did it: 1 to 200 characters"))
    gas = _text(body.get("gas"), 100)
    if gas is None:
        errors.append(FieldError("gas", "the test gas: 1 to 100 characters"))
    conc: Any = body.get("concentration")
    if not (
        isinstance(conc, int | float)
        and not isinstance(conc, bool)
        and math.isfinite(conc)
        and 0 < conc <= 1e6
    ):
        errors.append(
            FieldError("concentration", "the test gas concentration: above 0, at most 1e6")
        )
    unit = body.get("unit")
    if unit is not None and _text(unit, 32) is None:
        errors.append(FieldError("unit", "1 to 32 characters"))
    note = body.get("note")
    if note is not None and _text(note, 1000) is None:
        errors.append(FieldError("note", "1 to 1000 characters"))
    due: datetime | None = None
    if body.get("next_due") is not None:
        due = _time(body.get("next_due"))
        if due is None:
            errors.append(FieldError("next_due", "an ISO 8601 time with a UTC offset"))
        elif result == "fail":
            errors.append(FieldError("next_due", "a failed check is due at once: leave it out"))
        elif at is not None and due <= at:
            errors.append(FieldError("next_due", "after the time of the work"))
        elif at is not None and due > at + timedelta(days=2 * CALIBRATION_DAYS):
            errors.append(FieldError("next_due", "within two years of the work"))
    if errors:
        raise InvalidInput(f"{len(errors)} bad field(s); the record was not taken", errors=errors)
    assert at is not None and by is not None and gas is not None  # checked above
    if due is None:
        due = at if result == "fail" else at + timedelta(days=INTERVAL_DAYS[str(kind)])
    return MaintenanceRecord(
        str(kind), at, by, str(result), gas, float(conc), unit, due, note if note else None
    )


def add_record(
    session: Session,
    site_id: str,
    sensor_id: str,
    record: MaintenanceRecord,
    *,
    actor: str,
    now: datetime,
) -> SensorMaintenanceRow:
    row = SensorMaintenanceRow(
        site_id=site_id,
        sensor_id=sensor_id,
        kind=record.kind,
        at=record.at,
        by=record.by,
        result=record.result,
        gas=record.gas,
        concentration=record.concentration,
        unit=record.unit,
        next_due=record.next_due,
        note=record.note,
        recorded_at=now,
        recorded_by=actor,
    )
    session.add(row)
    session.flush()
    return row


def record_dict(row: SensorMaintenanceRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "sensor_id": row.sensor_id,
        "kind": row.kind,
        "at": row.at.isoformat(),
        "by": row.by,
        "result": row.result,
        "gas": row.gas,
        "concentration": row.concentration,
        "unit": row.unit,
        "next_due": row.next_due.isoformat(),
        "note": row.note,
        "recorded_at": row.recorded_at.isoformat(),
        "recorded_by": row.recorded_by,
    }


def records(
    session: Session, site_id: str, sensor_id: str, *, limit: int = 200
) -> list[SensorMaintenanceRow]:
    """A sensor's records, latest work first."""
    return list(
        session.scalars(
            select(SensorMaintenanceRow)
            .where(
                SensorMaintenanceRow.site_id == site_id,
                SensorMaintenanceRow.sensor_id == sensor_id,
            )
            .order_by(SensorMaintenanceRow.at.desc(), SensorMaintenanceRow.id.desc())
            .limit(limit)
        )
    )


def due_dates(
    session: Session, site_id: str | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """site -> sensor -> kind -> when it is due (epoch seconds), from each sensor's latest
    record of each kind (a passing calibration counts as a bump test too)."""
    query = select(
        SensorMaintenanceRow.site_id,
        SensorMaintenanceRow.sensor_id,
        SensorMaintenanceRow.kind,
        SensorMaintenanceRow.at,
        SensorMaintenanceRow.result,
        SensorMaintenanceRow.next_due,
    ).order_by(SensorMaintenanceRow.at, SensorMaintenanceRow.id)
    if site_id is not None:
        query = query.where(SensorMaintenanceRow.site_id == site_id)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for site, sensor, kind, at, result, next_due in session.execute(query):  # oldest first
        due = out.setdefault(site, {}).setdefault(sensor, {})
        due[kind] = next_due.timestamp()
        if kind == "calibration" and result == "pass":
            # Gas was applied: as good as a bump test made then.
            due["bump_test"] = (at + timedelta(days=BUMP_TEST_DAYS)).timestamp()
    return out


def summary(due: Mapping[str, float], now: datetime) -> dict[str, Any]:
    """Each kind's due time and whether it has passed."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        at = due.get(kind)
        out[kind] = (
            None
            if at is None
            else {
                "due": datetime.fromtimestamp(at, UTC).isoformat(),
                "overdue": now.timestamp() >= at,
            }
        )
    return out


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    if at.tzinfo is None:
        return None
    try:
        return at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _text(value: object, most: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if 1 <= len(value) <= most else None
