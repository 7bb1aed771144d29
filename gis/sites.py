"""Sites: the frame every layer lives in (boundary, time zone, metric CRS)."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import shapely
from pyproj import Geod
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gis.crs import SiteCRS, parse_metric_crs
from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound
from gis.geometry import SiteExtent, validate_geometry
from gis.model import LAYERS
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS, ChangeRow, SiteRow

SITE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
#: What a site description may hold (``note`` is free text, kept in the change log only).
SITE_FIELDS = frozenset({"id", "name", "timezone", "crs", "boundary", "note"})
#: The widest a site may be, in metres (the diagonal of its boundary's bounding box, measured on
#: the WGS84 ellipsoid). The largest industrial complexes and ports are some tens of kilometres
#: across; a boundary the size of a country is a mistake, and every buffer, index and hazard
#: model of the site would work on it.
MAX_SITE_ACROSS_M = 100_000.0
_WGS84 = Geod(ellps="WGS84")


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    timezone: str
    crs_name: str | None
    boundary: shapely.Polygon
    version: int
    updated_at: datetime
    updated_by: str

    @cached_property
    def crs(self) -> SiteCRS:
        centre = self.boundary.centroid
        return SiteCRS.for_site(centre.x, centre.y, self.crs_name)

    @cached_property
    def extent(self) -> SiteExtent:
        return SiteExtent(self.crs, self.boundary)

    def to_json(self, *, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "timezone": self.timezone,
            "crs": self.crs_name,
            "metric_crs": self.crs.metric.to_string(),
            "boundary": mapping(self.boundary),
            "bbox": list(self.boundary.bounds),
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }
        if counts is not None:
            out["layers"] = dict(counts)
        return out


def _from_row(row: SiteRow) -> Site:
    assert isinstance(row.boundary, shapely.Polygon)
    return Site(
        row.id,
        row.name,
        row.timezone,
        row.crs,
        row.boundary,
        row.version,
        row.updated_at,
        row.updated_by,
    )


def load_site(session: Session, site_id: str) -> Site:
    row = session.get(SiteRow, site_id) if SITE_ID_PATTERN.match(site_id) else None
    if row is None:
        raise NotFound(f"no site {site_id!r}", errors=[FieldError("site", "unknown site id")])
    return _from_row(row)


def get_site(db: Database, site_id: str) -> Site:
    with db.read() as session:
        return load_site(session, site_id)


def list_sites(db: Database) -> list[tuple[Site, dict[str, int]]]:
    """Every site with the number of features in each of its layers."""
    with db.read() as session:
        sites = [_from_row(r) for r in session.scalars(select(SiteRow).order_by(SiteRow.id))]
        counts: dict[str, dict[str, int]] = {s.id: dict.fromkeys(LAYERS, 0) for s in sites}
        for layer, row in LAYER_ROWS.items():
            stmt = select(row.site_id, func.count()).group_by(row.site_id)
            for site_id, n in session.execute(stmt):
                counts[site_id][layer] = n
        return [(s, counts[s.id]) for s in sites]


def parse_site(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a site description (``id``, ``name``, ``timezone``, ``crs``, ``boundary``)."""
    errors: list[FieldError] = []
    unknown = sorted(set(data) - SITE_FIELDS)
    if unknown:
        errors.append(
            FieldError(
                unknown[0] or "body",
                f"unknown field {unknown[0]!r}; a site has {', '.join(sorted(SITE_FIELDS))}",
            )
        )
    site_id = data.get("id")
    if not isinstance(site_id, str) or not SITE_ID_PATTERN.match(site_id):
        errors.append(FieldError("id", "lower-case letters, digits and '-', at most 64"))
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append(FieldError("name", "a non-empty name of at most 200 characters"))
    tz = data.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors.append(FieldError("timezone", f"unknown IANA time zone {tz!r}"))
    crs = data.get("crs")
    if crs is not None and (not isinstance(crs, str) or len(crs) > 200):
        errors.append(FieldError("crs", "a CRS as text of at most 200 characters, e.g. EPSG:4549"))
    elif crs is not None:
        try:
            parse_metric_crs(crs)
        except InvalidInput as exc:
            errors.extend(exc.errors)
    try:
        boundary = validate_geometry(
            data.get("boundary"), expected_type="Polygon", field_name="boundary"
        )
    except InvalidInput as exc:
        errors.extend(exc.errors)
        boundary = None
    if boundary is not None and (too_wide := _too_wide(boundary)):
        errors.append(FieldError("boundary", too_wide))
        boundary = None
    if boundary is not None and not any(e.field == "crs" for e in errors):
        # The metric CRS must exist for this place (no UTM zone near the poles, say).
        try:
            SiteCRS.for_site(boundary.centroid.x, boundary.centroid.y, crs)
        except InvalidInput as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInput("the site description is invalid", errors=errors)
    return {
        "id": site_id,
        "name": str(name).strip(),
        "timezone": str(tz),
        "crs": crs,
        "boundary": boundary,
    }


def _too_wide(boundary: BaseGeometry) -> str | None:
    """Why ``boundary`` is too large for a site, or None."""
    west, south, east, north = boundary.bounds
    across = _WGS84.inv(west, south, east, north)[2]
    if across > MAX_SITE_ACROSS_M:
        return (
            f"the boundary is {across / 1000:,.0f} km across; a site is at most "
            f"{MAX_SITE_ACROSS_M / 1000:,.0f} km across (the diagonal of its bounding box)"
        )
    return None


def create_site(session: Session, data: Mapping[str, Any], *, actor: str) -> Site:
    fields = parse_site(data)
    if session.get(SiteRow, fields["id"]) is not None:
        raise AlreadyExists(
            f"site {fields['id']!r} exists already", errors=[FieldError("id", "already taken")]
        )
    now = datetime.now(UTC)
    row = SiteRow(
        **fields, version=1, created_at=now, created_by=actor, updated_at=now, updated_by=actor
    )
    session.add(row)
    session.add(
        ChangeRow(
            site_id=row.id,
            layer="site",
            feature_id=row.id,
            action="create",
            version=1,
            actor=actor,
            at=now,
            data={k: v for k, v in data.items() if k != "boundary"},
        )
    )
    session.flush()
    return _from_row(row)


def delete_site(session: Session, site_id: str, *, actor: str) -> None:
    row = session.get(SiteRow, site_id)
    if row is None:
        raise NotFound(f"no site {site_id!r}")
    # The layers go with the site (ON DELETE CASCADE); log each feature's deletion first.
    from gis.layers import log_site_deletions  # gis.layers builds on this module

    log_site_deletions(session, site_id, actor=actor)
    session.add(
        ChangeRow(
            site_id=site_id,
            layer="site",
            feature_id=site_id,
            action="delete",
            version=row.version,
            actor=actor,
            at=datetime.now(UTC),
            data=_from_row(row).to_json(),
        )
    )
    session.delete(row)
    session.flush()
