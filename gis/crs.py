"""The one place where WGS84 meets metres.

Storage and every API speak WGS84 longitude/latitude (EPSG:4326, GeoJSON axis order). Distances,
areas and buffers are computed in a projected CRS for the site: the UTM zone estimated from the
site's location unless the site configures one (for instance a CGCS2000 3-degree Gauss-Krüger
zone such as EPSG:4549 in East China).

>>> crs = SiteCRS.for_site(121.35, 30.72)
>>> crs.metric.to_epsg()
32651
>>> from shapely import Point
>>> round(crs.to_wgs84(crs.to_metric(Point(121.35, 30.72))).x, 6)
121.35
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from pyproj.exceptions import CRSError

from gis.errors import FieldError, InvalidInput

WGS84 = CRS.from_epsg(4326)

G = TypeVar("G", bound=shapely.Geometry)


def estimate_utm_crs(lon: float, lat: float) -> CRS:
    """The WGS84 / UTM zone that contains ``(lon, lat)``."""
    infos = query_utm_crs_info(
        datum_name="WGS 84",
        area_of_interest=AreaOfInterest(lon, lat, lon, lat),
    )
    if not infos:  # UTM stops at 84 N and 80 S
        raise InvalidInput(
            f"no UTM zone covers lon={lon}, lat={lat}",
            errors=[FieldError("crs", "no UTM zone here: configure a metric CRS for the site")],
        )
    return CRS.from_epsg(int(infos[0].code))


def parse_metric_crs(value: str, *, field_name: str = "crs") -> CRS:
    """Parse a user-given CRS and check that it is projected in metres."""
    try:
        crs = CRS.from_user_input(value)
    except CRSError as exc:
        raise InvalidInput(
            f"unknown CRS {value!r}", errors=[FieldError(field_name, f"unknown CRS: {exc}")]
        ) from exc
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in {"metre", "meter"}:
        raise InvalidInput(
            f"CRS {value!r} is not a projected CRS in metres",
            errors=[FieldError(field_name, "must be a projected CRS with metre units")],
        )
    return crs


@dataclass(frozen=True)
class SiteCRS:
    """Transforms between WGS84 and a site's metric CRS (always x=east, y=north)."""

    metric: CRS
    _forward: Transformer = field(repr=False, compare=False)
    _inverse: Transformer = field(repr=False, compare=False)

    @classmethod
    def from_crs(cls, metric: CRS) -> SiteCRS:
        return cls(
            metric,
            Transformer.from_crs(WGS84, metric, always_xy=True),
            Transformer.from_crs(metric, WGS84, always_xy=True),
        )

    @classmethod
    def for_site(cls, lon: float, lat: float, configured: str | None = None) -> SiteCRS:
        """The configured CRS if there is one, else the UTM zone estimated from the site's
        centre ``(lon, lat)``. Found once per centre and configuration (:func:`_site_crs`)."""
        return _site_crs(lon, lat, configured)

    @cached_property
    def epsg(self) -> int | None:
        """The EPSG code of the metric CRS; None for one without (a PROJ string)."""
        code: int | None = self.metric.to_epsg()
        return code

    def to_metric(self, geom: G) -> G:
        return _transform(geom, self._forward)

    def to_wgs84(self, geom: G) -> G:
        return _transform(geom, self._inverse)

    def transform_xy(self, xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """An ``(n, 2)`` array of lon/lat to metric x/y, without making geometries."""
        x, y = self._forward.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    def length_m(self, geom: shapely.Geometry) -> float:
        """Length in metres of a WGS84 geometry."""
        return float(shapely.length(self.to_metric(geom)))

    def area_m2(self, geom: shapely.Geometry) -> float:
        """Area in square metres of a WGS84 geometry."""
        return float(shapely.area(self.to_metric(geom)))


@lru_cache(maxsize=256)
def _site_crs(lon: float, lat: float, configured: str | None) -> SiteCRS:
    """A site's CRS, kept: parsing a CRS or finding a UTM zone searches PROJ's database (a
    tenth of a second or more), and every ``load_site`` of every write asks for it. The key is
    all the answer depends on (the centre of the boundary and the configured CRS), so a site
    whose boundary or CRS changes gets its new CRS. A refusal is not kept. pyproj's CRS and
    Transformer are safe to share between threads (pyproj >= 3.1)."""
    metric = parse_metric_crs(configured) if configured else estimate_utm_crs(lon, lat)
    return SiteCRS.from_crs(metric)


def _transform(geom: G, transformer: Transformer) -> G:
    def apply(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, apply)
