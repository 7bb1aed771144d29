"""People's latest positions, stored: the people layer, a restart and a new wall see them.

Positions are telemetry: each one is not an edit of the people layer (no new feature version,
no change log row, no new revision token, so the site model is not rebuilt for it). The latest
position of each person who moved is written once a second into their feature's geometry and
``seen_at``, the time it was observed.

A position far from the site (more than ``REACH_M`` outside its boundary) is refused: (0, 0) from
a tag without a fix, or another continent, would otherwise move people off every route and
muster point.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput
from gis.sites import Site
from gis.storage.tables import PersonRow

#: How far outside its boundary a position of a site's person may be, in metres: people walk out
#: of the gates to an outer muster point or an ambulance, not kilometres away.
REACH_M = 5_000.0
_reaches: dict[tuple[str, int, datetime], shapely.Geometry] = {}
_reaches_lock = threading.Lock()


def _reach(site: Site) -> shapely.Geometry:
    """The site's boundary buffered by ``REACH_M``, in its metric CRS, prepared (kept per
    version of the site)."""
    key = (site.id, site.version, site.updated_at)
    with _reaches_lock:
        reach = _reaches.get(key)
        if reach is None:
            if len(_reaches) > 256:  # sites come and go in tests; a server has a few
                _reaches.clear()
            reach = site.crs.to_metric(site.boundary).buffer(REACH_M)
            shapely.prepare(reach)
            _reaches[key] = reach
        return reach


def refuse_far_positions(site: Site, moves: Mapping[str, tuple[float, float, Any]]) -> None:
    """:class:`InvalidInput` naming each person whose position (lon, lat, ...) lies more than
    ``REACH_M`` outside the site's boundary; nothing of the batch is taken."""
    if not moves:
        return
    ids = list(moves)
    lonlat = np.array([moves[pid][:2] for pid in ids], dtype=np.float64)
    xy = site.crs.transform_xy(lonlat)
    near = shapely.contains_xy(_reach(site), xy[:, 0], xy[:, 1])
    far = [pid for pid, ok in zip(ids, near, strict=True) if not ok]
    if far:
        raise InvalidInput(
            f"{len(far)} position(s) more than {REACH_M / 1000:g} km outside site {site.id}; "
            "none was taken",
            errors=[
                FieldError(f"positions.{pid}", f"more than {REACH_M / 1000:g} km off the site")
                for pid in far[:100]
            ],
        )


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
