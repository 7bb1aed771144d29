"""The one door through which geometry enters Rallypoint.

Every geometry, from the API, a file import, the demo site or OpenStreetMap, passes
:func:`validate_geometry`. It refuses with the reason, one reason per kind of fault, and never
repairs silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
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

    def covers_all(self, geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
        """:meth:`covers` for an array of geometries at once (one transform, one test)."""
        if not len(geoms):
            return np.zeros(0, dtype=bool)
        metric = shapely.transform(geoms, self.crs.transform_xy)
        found: npt.NDArray[np.bool_] = shapely.covers(self._metric, metric)
        return found


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


#: The GeoJSON types :func:`validate_geometries` builds in bulk: one array call for all the
#: points or lines of a layer instead of a ``shape()`` each.
_BULK_TYPES = ("Point", "LineString")


def validate_geometries(
    values: Sequence[Any],
    *,
    expected_type: str,
    required: bool = True,
    rows: Sequence[int | None] | None = None,
    max_vertices: int | None = None,
) -> list[BaseGeometry | InvalidGeometry | None]:
    """:func:`validate_geometry` for many values at once (a bulk load): per value, what it
    returns, or the :class:`InvalidGeometry` it raises (``rows`` numbers the values).

    Plain 2-D GeoJSON points and lines that pass every check (finite, in range, few enough
    vertices, valid) are built and checked together, as arrays; any other value, and any
    that fails a check, goes through :func:`validate_geometry` itself, so the geometries
    accepted and the reasons given are exactly the ones a single feature gets.
    """
    rows = rows if rows is not None else [None] * len(values)
    out: list[BaseGeometry | InvalidGeometry | None] = [None] * len(values)
    bulk: list[int] = []
    if expected_type in _BULK_TYPES:
        points = expected_type == "Point"
        positions: list[Any] = []
        counts: list[int] = []
        for i, value in enumerate(values):
            coords = _plain_coordinates(value, expected_type)
            if coords is None:
                continue
            bulk.append(i)
            if points:
                positions.append(coords)
            else:
                positions.extend(coords)
                counts.append(len(coords))
        if bulk:
            xy = np.array(positions, dtype=np.float64).reshape(-1, 2)
            sizes = np.array(counts, dtype=np.int64) if counts else np.ones(len(bulk), np.int64)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            fine = np.isfinite(xy).all(axis=1)
            fine &= (np.abs(xy[:, 1]) <= 90) & (np.abs(xy[:, 0]) <= 180)
            ok = np.logical_and.reduceat(fine, starts)
            if max_vertices is not None:
                ok &= sizes <= max_vertices
            # Only the values that passed so far are made into geometries, then checked.
            geoms = np.empty(int(ok.sum()), dtype=object)
            if points:
                geoms[:] = shapely.points(xy[ok])
            else:
                kept = sizes[ok]
                geoms[:] = shapely.linestrings(
                    xy[np.repeat(ok, sizes)], indices=np.repeat(np.arange(len(kept)), kept)
                )
            valid = shapely.is_valid(geoms)
            passed = np.flatnonzero(ok)[valid].tolist()
            for k, geom in zip(passed, geoms[valid].tolist(), strict=True):
                out[bulk[k]] = geom
            bulk = [bulk[k] for k in passed]
    done = set(bulk)
    for i, value in enumerate(values):
        if i in done:
            continue
        try:
            out[i] = validate_geometry(
                value,
                expected_type=expected_type,
                required=required,
                row=rows[i],
                max_vertices=max_vertices,
            )
        except InvalidGeometry as exc:
            out[i] = exc
    return out


def _plain_coordinates(value: Any, kind: str) -> Any:
    """The coordinates of a GeoJSON ``kind`` (a Point or a LineString) whose positions are all
    pairs of plain numbers (ints or floats, no booleans), as found; None for anything else."""
    if not isinstance(value, Mapping) or value.get("type") != kind:
        return None
    coords = value.get("coordinates")
    if kind == "Point":
        return coords if _plain_pair(coords) else None
    if not isinstance(coords, list | tuple) or len(coords) < 2:
        return None
    return coords if all(_plain_pair(p) for p in coords) else None


def _plain_pair(position: Any) -> bool:
    return (
        isinstance(position, list | tuple)
        and len(position) == 2
        and type(position[0]) in _NUMBER_TYPES
        and type(position[1]) in _NUMBER_TYPES
    )


_NUMBER_TYPES = (int, float)


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
