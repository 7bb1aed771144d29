"""People's latest positions, stored: the people layer, a restart and a new wall see them.

Positions are telemetry: each one is not an edit of the people layer (no new feature version,
no change log row, no new revision token, so the site model is not rebuilt for it). The latest
position of each person who moved is written once a second into their feature's geometry and
``seen_at``, the time it was observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import shapely
from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm import Session

from gis.storage.tables import PersonRow


def store_positions(
    session: Session, site_id: str, latest: Mapping[str, tuple[float, float, float]]
) -> int:
    """Write each person's latest position (lon, lat, observed at in seconds since the epoch)
    where it is newer than the stored one. A person no longer on the site (deleted by a
    planner meanwhile) is passed over. Returns how many rows were given."""
    if not latest:
        return 0
    statement = (
        update(PersonRow)
        .where(
            PersonRow.site_id == bindparam("b_site"),
            PersonRow.id == bindparam("b_id"),
            or_(PersonRow.seen_at.is_(None), PersonRow.seen_at <= bindparam("b_at")),
        )
        .values(geom=bindparam("b_geom"), seen_at=bindparam("b_at"))
    )
    session.connection().execute(
        statement,
        [
            {
                "b_site": site_id,
                "b_id": pid,
                "b_geom": shapely.Point(lon, lat),
                "b_at": datetime.fromtimestamp(at, UTC),
            }
            for pid, (lon, lat, at) in latest.items()
        ],
    )
    return len(latest)
