"""The one door through which geometry enters Rallypoint.

Every geometry, from the API, a file import, the demo site or OpenStreetMap, passes
:func:`validate_geometry`. It refuses with the reason, one reason per kind of fault, and never
repairs silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from gis.crs import SiteCRS
from gis.errors import FieldError, InvalidGeometry

GEOJSON_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)

#: How far outside its boundary a feature may reach, in metres (digitising slack).
BOUNDARY_TOLERANCE_M = 1.0


@dataclass(frozen=True)
class SiteExtent:
    """A site's boundary, prepared in metric coordinates for fast containment checks."""

    crs: SiteCRS
    boundary: shapely.Polygon
    _metric: BaseGeometry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        metric = self.crs.to_metric(self.boundary).buffer(BOUNDARY_TOLERANCE_M)
        shapely.prepare(metric)
        object.__setattr__(self, "_metric", metric)

    def covers(self, geom: BaseGeometry) -> bool:
        return bool(self._metric.covers(self.crs.to_metric(geom)))


def validate_geometry(
    value: Any,
    *,
    expected_type: str,
    required: bool = True,
    extent: SiteExtent | None = None,
    field_name: str = "geometry",
    row: int | None = None,
    max_vertices: int | None = None,
) -> BaseGeometry | None:
    """Return a valid 2-D shapely geometry of ``expected_type`` or raise :class:`InvalidGeometry`.

    ``value`` is a GeoJSON geometry mapping or a shapely geometry. Z values are dropped: the site
    model is planar and heights have their own attributes.
    """

    def refuse(reason: str) -> InvalidGeometry:
        return InvalidGeometry(
            f"{field_name}: {reason}", errors=[FieldError(field_name, reason, row)]
        )

    if value is None:
        if required:
            raise refuse("geometry is required")
        return None
    if isinstance(value, BaseGeometry):
        geom = value
    elif isinstance(value, Mapping):
        geom = _from_geojson(value, refuse)
    else:
        raise refuse(f"expected a GeoJSON geometry object, got {type(value).__name__}")

    if geom.is_empty:
        raise refuse("geometry is empty")
    if expected_type != "Geometry" and geom.geom_type != expected_type:
        raise refuse(f"expected a {expected_type}, got a {geom.geom_type}")
    geom = shapely.force_2d(geom)
    coords = shapely.get_coordinates(geom)
    if max_vertices is not None and len(coords) > max_vertices:
        raise refuse(
            f"{len(coords)} vertices; at most {max_vertices} for this layer "
            "(simplify the outline, or split the line into edges at its junctions)"
        )
    if not np.isfinite(coords).all():
        raise refuse("coordinates must be finite numbers")
    lon, lat = coords[:, 0], coords[:, 1]
    if (np.abs(lat) > 90).any():
        hint = " (are longitude and latitude swapped?)" if (np.abs(lon) <= 90).all() else ""
        raise refuse(f"latitude must lie within [-90, 90]{hint}")
    if (np.abs(lon) > 180).any():
        raise refuse("longitude must lie within [-180, 180]")
    reason = shapely.is_valid_reason(geom)
    if reason != "Valid Geometry":
        raise refuse(f"invalid {expected_type}: {reason}")
    if extent is not None and not extent.covers(geom):
        raise refuse("geometry lies outside the site boundary")
    return geom


def _from_geojson(value: Mapping[str, Any], refuse: Any) -> BaseGeometry:
    kind = value.get("type")
    if not isinstance(kind, str) or "coordinates" not in value:
        raise refuse("a GeoJSON geometry needs 'type' and 'coordinates'")
    if kind not in GEOJSON_TYPES:
        raise refuse(f"unknown geometry type {kind!r}; GeoJSON has {', '.join(GEOJSON_TYPES)}")
    if not _numbers_only(value["coordinates"]):
        raise refuse("coordinates must be numbers (not text or true/false)")
    if kind in {"Polygon", "MultiPolygon"} and not _rings_closed(value["coordinates"]):
        # shapely would close them silently; RFC 7946 says a ring's last position is its first.
        raise refuse("polygon rings must be closed (last position equal to the first)")
    try:
        geom = shape(dict(value))
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, ShapelyError) as exc:
        raise refuse(f"malformed {kind} coordinates: {exc}") from exc
    if not isinstance(geom, BaseGeometry):  # pragma: no cover - shape() always returns one
        raise refuse("not a geometry")
    return geom


def _rings_closed(coordinates: Any) -> bool:
    """False if any linear ring in (Multi)Polygon coordinates is not closed; True if unsure."""
    try:
        if coordinates and coordinates[0] and isinstance(coordinates[0][0][0], list | tuple):
            return all(_rings_closed(polygon) for polygon in coordinates)
        return all(list(ring[0]) == list(ring[-1]) for ring in coordinates if len(ring) > 0)
    except (TypeError, IndexError, KeyError):
        return True  # malformed: shapely reports it next, with its own reason


def _numbers_only(coordinates: Any, depth: int = 0) -> bool:
    """True unless a position holds something other than a number (shapely would coerce it)."""
    if isinstance(coordinates, list | tuple):
        if depth > 4:
            return True  # too deep to be a position: shapely reports the shape
        return all(_numbers_only(c, depth + 1) for c in coordinates)
    return isinstance(coordinates, int | float) and not isinstance(coordinates, bool)
