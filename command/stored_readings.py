"""Each sensor's latest reading, kept in the database (``sensor_readings``).

Readings that change nothing are not events, so the event log alone cannot tell a restarted
server what the wind is. The command post stores each sensor's latest reading (once a second,
as it stores positions) and starts from them; a design release is still evaluated only under a
wind reading younger than ``MAX_WIND_AGE_S`` (10 minutes, ``command.incidents``).

The demo has no real wind station: :func:`seed_wind` gives each wind station of a site a
reading observed now (``rallypoint demo wind``, which ``make run`` calls before serving), so the
one-action activation with ``{"model": "plan"}`` works on a fresh install.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput, NotFound
from gis.storage.tables import SensorReadingRow, SensorRow, SiteRow

#: The demo's weather: a light north-easterly, as off Hangzhou Bay (metres a second, degrees the
#: wind blows from).
DEMO_WIND_M_S = 3.0
DEMO_WIND_FROM_DEG = 45.0
MAX_WIND_M_S = 120.0

#: One reading as the command post keeps it in memory (``CommandPost.last_readings``).
Latest = dict[str, Any]


def _reading(row: SensorReadingRow) -> Latest:
    return {
        "value": row.value,
        "direction_deg": row.direction_deg,
        "at": row.observed_at.astimezone(UTC).isoformat(),
        "by": row.actor,
    }


def store_readings(session: Session, site_id: str, latest: Mapping[str, Latest]) -> int:
    """Keep ``latest`` (sensor id -> reading, ``at`` in ISO 8601) as the sensors' last readings,
    replacing older ones; a stored reading observed later than the one given stays. How many
    were written."""
    if not latest:
        return 0
    rows = {
        r.sensor_id: r
        for r in session.scalars(
            select(SensorReadingRow).where(
                SensorReadingRow.site_id == site_id,
                SensorReadingRow.sensor_id.in_(sorted(latest)),
            )
        )
    }
    written = 0
    for sensor_id, reading in latest.items():
        observed = datetime.fromisoformat(str(reading["at"])).astimezone(UTC)
        row = rows.get(sensor_id)
        if row is None:
            row = SensorReadingRow(site_id=site_id, sensor_id=sensor_id)
            session.add(row)
        elif row.observed_at > observed:
            continue
        row.value = float(reading["value"])
        direction = reading.get("direction_deg")
        row.direction_deg = None if direction is None else float(direction)
        row.observed_at = observed
        row.actor = str(reading.get("by") or "unknown")[:200]
        written += 1
    session.flush()
    return written


def stored_readings(session: Session, site_id: str | None = None) -> dict[str, dict[str, Latest]]:
    """site id -> sensor id -> its stored latest reading (every site, or ``site_id``'s)."""
    query = select(SensorReadingRow)
    if site_id is not None:
        query = query.where(SensorReadingRow.site_id == site_id)
    out: dict[str, dict[str, Latest]] = {}
    for row in session.scalars(query):
        out.setdefault(row.site_id, {})[row.sensor_id] = _reading(row)
    return out


def seed_wind(
    session: Session,
    site_id: str,
    *,
    speed_m_s: float = DEMO_WIND_M_S,
    from_deg: float = DEMO_WIND_FROM_DEG,
    now: datetime | None = None,
    actor: str = "demo",
) -> list[str]:
    """Give every wind station of ``site_id`` a reading observed ``now``; their ids. For the
    demo and for drills: a real site's stations report through ``POST .../readings``."""
    if session.get(SiteRow, site_id) is None:
        raise NotFound(f"no site {site_id!r}", errors=[FieldError("site", "unknown site id")])
    if not 0 <= speed_m_s <= MAX_WIND_M_S:
        raise InvalidInput(
            f"a wind speed is 0 to {MAX_WIND_M_S:g} m/s",
            errors=[FieldError("speed", f"0 to {MAX_WIND_M_S:g} m/s")],
        )
    if not 0 <= from_deg < 360:
        raise InvalidInput(
            "a wind direction is 0 to 360 degrees (from north, clockwise)",
            errors=[FieldError("from_deg", "0 (north) up to 360")],
        )
    stations = list(
        session.scalars(
            select(SensorRow.id)
            .where(SensorRow.site_id == site_id, SensorRow.kind == "wind")
            .order_by(SensorRow.id)
        )
    )
    if not stations:
        raise NotFound(
            f"site {site_id!r} has no wind station",
            errors=[FieldError("site", "no sensor of kind 'wind'")],
        )
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    reading = {"value": speed_m_s, "direction_deg": from_deg, "at": at, "by": actor}
    store_readings(session, site_id, dict.fromkeys(stations, reading))
    return stations
