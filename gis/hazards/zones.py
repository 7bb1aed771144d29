"""Threat zones on the map: the shape every hazard model hands to the rest of Rallypoint.

A zone has a level of concern as ALOHA draws them: 3 is the innermost (most severe), 1 the
outermost. Models compute in metres around the source; this module places their shapes on the
map. Footprints are built in the site's metric CRS and returned in WGS84. A downwind footprint
is computed in a local frame (x metres downwind, y metres crosswind to the left) and turned so
that x points where the wind blows *to*: the wind's "from" direction plus 180 degrees, measured
from true north. True north is taken from the CRS at the source, so the grid convergence of a
UTM or Gauss-Krüger zone (about 0.8 degrees at the demo site) does not skew the footprint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely import affinity
from shapely.geometry import Point, mapping
from shapely.geometry.base import BaseGeometry

from gis.crs import SiteCRS
from gis.errors import FieldError, InvalidInput
from gis.hazards.checks import within

#: Vertices per quarter circle of a buffer: zones are drawn, not surveyed.
CIRCLE_SEGMENTS = 16
#: No zone reaches farther than this: beyond it an input is impossible for a site, and the
#: site's metric CRS no longer keeps distances true.
MAX_REACH_M = 100_000.0


@dataclass(frozen=True)
class ThreatZone:
    """A threat-zone polygon (WGS84) and its level of concern: 3 innermost, 1 outermost.

    ``threshold`` and ``unit`` say what bounds the zone (e.g. 20 ppm, 10 kW/m2, 8 psi),
    ``label`` names it for people ("AEGL-3 (60 min)"), ``distance_m`` is its farthest reach
    from the source.
    """

    level: int
    geometry: BaseGeometry
    threshold: float | None = None
    unit: str | None = None
    label: str | None = None
    distance_m: float | None = None

    def __post_init__(self) -> None:
        if self.level not in (1, 2, 3):
            raise InvalidInput(
                f"threat zone level {self.level} is not 1, 2 or 3",
                errors=[FieldError("level", "1 (outer), 2 or 3 (innermost)")],
            )


@dataclass(frozen=True)
class ThreatAssessment:
    """One model's answer: its zones (innermost first), what it assumed, and its caveats.

    ``uncertainty`` is the wind-direction confidence area of a plume (where the footprint may
    lie as the wind meanders), ``None`` for models without a direction. ``notes`` say in words
    whatever the model did that a commander should know (calm wind, range cut, a threshold not
    reached, a level of concern with no value, a gas denser than the model assumes); they are
    never empty when the model stepped outside its valid range.
    """

    model: str
    source_lonlat: tuple[float, float]
    zones: tuple[ThreatZone, ...]
    uncertainty: BaseGeometry | None = None
    notes: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def zone(self, level: int) -> ThreatZone | None:
        return next((z for z in self.zones if z.level == level), None)

    def as_geojson(self) -> dict[str, Any]:
        """A FeatureCollection: the zones, then the uncertainty area, with the model's facts."""
        features: list[dict[str, Any]] = [
            {
                "type": "Feature",
                "geometry": mapping(zone.geometry),
                "properties": {
                    "kind": "threat_zone",
                    "level": zone.level,
                    "threshold": zone.threshold,
                    "unit": zone.unit,
                    "label": zone.label,
                    "distance_m": zone.distance_m,
                },
            }
            for zone in self.zones
        ]
        if self.uncertainty is not None:
            features.append(
                {
                    "type": "Feature",
                    "geometry": mapping(self.uncertainty),
                    "properties": {"kind": "wind_direction_uncertainty"},
                }
            )
        return {
            "type": "FeatureCollection",
            "features": features,
            "properties": {
                "model": self.model,
                "source": list(self.source_lonlat),
                "notes": list(self.notes),
                "parameters": dict(self.parameters),
            },
        }


def check_wind_direction(from_deg: float, *, field_name: str = "wind_from_deg") -> float:
    """A wind direction in degrees from 0 to 360 (where the wind comes from; 360 is north)."""
    if not (
        isinstance(from_deg, int | float)
        and not isinstance(from_deg, bool)
        and math.isfinite(from_deg)
        and 0 <= from_deg <= 360
    ):
        raise InvalidInput(
            f"wind direction {from_deg!r} is outside 0-360 degrees",
            errors=[FieldError(field_name, "degrees from 0 to 360, where the wind comes from")],
        )
    return float(from_deg)


def check_source(lonlat: tuple[float, float], *, field_name: str = "source") -> tuple[float, float]:
    """A source position: finite longitude and latitude within their ranges."""
    try:
        lon, lat = (float(v) for v in lonlat)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            "the source must be a longitude/latitude pair",
            errors=[FieldError(field_name, "[lon, lat] in degrees")],
        ) from exc
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidInput(
            f"source {lon}, {lat} is not a position on Earth",
            errors=[FieldError(field_name, "longitude -180..180 and latitude -90..90")],
        )
    return lon, lat


@dataclass(frozen=True)
class SourceFrame:
    """Metres around a source in the site CRS, with true north known there."""

    crs: SiteCRS
    lonlat: tuple[float, float]
    origin: tuple[float, float]
    north: tuple[float, float]  # unit vector of true north in grid coordinates

    @classmethod
    def at(cls, crs: SiteCRS, lonlat: tuple[float, float]) -> SourceFrame:
        lon, lat = check_source(lonlat)
        area = crs.metric.area_of_use
        # A UTM or Gauss-Krüger zone keeps distances true near its meridian only: a source
        # outside the CRS's area would get zones of the wrong size.
        if area is not None and not (
            area.west - 1 <= lon <= area.east + 1 and area.south - 1 <= lat <= area.north + 1
        ):
            raise InvalidInput(
                f"source {lon}, {lat} lies outside the area of the site's CRS",
                errors=[FieldError("source", f"within {area.name} ({crs.metric.name})")],
            )
        step = 1e-4 if lat < 89.9 else -1e-4
        xy = crs.transform_xy(np.array([[lon, lat], [lon, lat + step]]))
        dx, dy = (xy[1] - xy[0]) * math.copysign(1.0, step)
        norm = math.hypot(dx, dy)
        return cls(crs, (lon, lat), (float(xy[0, 0]), float(xy[0, 1])), (dx / norm, dy / norm))

    def circle(self, radius_m: float) -> BaseGeometry:
        """A circle of ``radius_m`` around the source, in WGS84."""
        within(radius_m, "distance_m", high=MAX_REACH_M)
        return self.crs.to_wgs84(Point(self.origin).buffer(radius_m, CIRCLE_SEGMENTS))

    def downwind(self, local: BaseGeometry, wind_from_deg: float) -> BaseGeometry:
        """A shape from the local downwind frame (x downwind, y to the left), in WGS84."""
        bearing = math.radians((check_wind_direction(wind_from_deg) + 180.0) % 360.0)
        nx, ny = self.north
        # Turn true north clockwise by the bearing: the downwind axis in grid coordinates.
        dx = nx * math.cos(bearing) + ny * math.sin(bearing)
        dy = -nx * math.sin(bearing) + ny * math.cos(bearing)
        lx, ly = -dy, dx  # to the left of downwind
        x0, y0 = self.origin
        placed = affinity.affine_transform(local, [dx, lx, dy, ly, x0, y0])
        return self.crs.to_wgs84(placed)
