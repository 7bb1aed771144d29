"""Column types that behave the same on SQLite and PostGIS.

On PostgreSQL a geometry is a real PostGIS ``geometry(<type>, 4326)`` column with a GiST index,
so QGIS and SQL can use it directly. On SQLite (no SpatiaLite on a fresh machine) it is stored as
WKB in a BLOB; spatial queries there are served by :mod:`gis.spatial_index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from geoalchemy2 import Geometry as PostGISGeometry
from geoalchemy2.elements import WKBElement
from shapely.geometry.base import BaseGeometry
from sqlalchemy import DateTime, Dialect, LargeBinary
from sqlalchemy.types import TypeDecorator, TypeEngine

SRID = 4326


class Geometry(TypeDecorator[BaseGeometry]):
    """A shapely geometry in WGS84, stored natively on PostGIS and as WKB elsewhere."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, geometry_type: str = "GEOMETRY") -> None:
        super().__init__()
        self.geometry_type = geometry_type.upper()
        # Read by GeoAlchemy2's DDL events: the migrations create the GiST indexes themselves.
        self.srid = SRID
        self.dimension = 2
        self.spatial_index = False
        self.use_N_D_index = False
        self.use_typmod: bool | None = None

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # GeoAlchemy2's DDL events probe this with no dialect at all.
        if dialect is None:
            return LargeBinary()
        if dialect.name == "postgresql":
            return dialect.type_descriptor(
                PostGISGeometry(self.geometry_type, srid=SRID, spatial_index=False)
            )
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: BaseGeometry | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            # Extended WKB (with the SRID) in hex, which GeoAlchemy2 passes to ST_GeomFromEWKT
            # as it is: plain WKB it turns into WKT through shapely first, at several times
            # the cost (it dominated the loading of a 100,000-edge network).
            ewkb = shapely.to_wkb(shapely.set_srid(value, SRID), hex=True, include_srid=True)
            return WKBElement(ewkb, srid=SRID, extended=True)
        return shapely.to_wkb(value)

    def process_bind_params(
        self, values: Sequence[BaseGeometry | None], dialect: Dialect
    ) -> list[Any]:
        """:meth:`process_bind_param` for many values, their WKB written in one array call
        (a bulk insert, ``gis.layers``)."""
        shapes = np.empty(len(values), dtype=object)
        shapes[:] = values
        placed = shapely.get_type_id(shapes) >= 0
        out: list[Any] = [None] * len(values)
        if dialect.name == "postgresql":
            ewkb = shapely.to_wkb(
                shapely.set_srid(shapes[placed], SRID), hex=True, include_srid=True
            ).tolist()
            blobs: list[Any] = [WKBElement(h, srid=SRID, extended=True) for h in ewkb]
        else:
            blobs = shapely.to_wkb(shapes[placed]).tolist()
        for i, blob in zip(np.flatnonzero(placed).tolist(), blobs, strict=True):
            out[i] = blob
        return out

    def process_result_value(self, value: Any, dialect: Dialect) -> BaseGeometry | None:
        if value is None:
            return None
        if isinstance(value, WKBElement):
            value = value.data
        if isinstance(value, memoryview):
            value = value.tobytes()
        geom: BaseGeometry = shapely.from_wkb(value)
        return geom


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Rallypoint stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
