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
from sqlalchemy import update
from sqlalchemy.orm import Session

from gis.storage.tables import PersonRow


def store_positions(
    session: Session, site_id: str, latest: Mapping[str, tuple[float, float, float]]
) -> int:
    """Write each person's latest position (lon, lat, observed at in seconds since the epoch)
    where it is newer than the stored one; returns how many rows were given."""
    if not latest:
        return 0
    session.execute(
        update(PersonRow),
        [
            {
                "site_id": site_id,
                "id": pid,
                "geom": shapely.Point(lon, lat),
                "seen_at": datetime.fromtimestamp(at, UTC),
            }
            for pid, (lon, lat, at) in latest.items()
        ],
    )
    return len(latest)
