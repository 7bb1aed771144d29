"""The site's layers as OGC API - Features collections: pages cut by id, CRSs, windows,
queryables and extents. HTTP lives in ``command/routes/ogc.py``; this module knows none of it.

A collection is one layer of one site, ``{site_id}.{layer}`` (site ids hold no dot). Pages are
cut by id (keyset paging): the next page starts after the last id of this one, so the hundredth
page of a 100,000-edge network costs what the first costs, where an OFFSET would read and drop
every row before it. Geometries are stored in WGS84 longitude/latitude, which is OGC's CRS84;
the site's metric CRS is offered besides, in its own axis order (a CGCS2000 Gauss-Krüger zone
is northing first).
"""

from __future__ import annotations

import bisect
import math
import re
import threading
import typing
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Select,
    String,
    and_,
    cast,
    false,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput
from gis.layers import (
    META_FIELDS,
    READ_CHUNK,
    Feature,
    _attribute_filters,
    get_layer,
    parse_bbox,
)
from gis.model import LAYERS, Layer
from gis.sites import SITE_ID_PATTERN, Site, load_site
from gis.spatial_index import LayerIndex, revision_token
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS, PersonRow
from gis.storage.types import UTCDateTime

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
#: The calendar of temporal extents (OGC API Features Part 1, 7.14.4).
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
#: Layers with a time, and the attribute that holds it (``datetime`` filters on it).
TEMPORAL = {"people": "seen_at"}
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
_CRS84 = CRS.from_user_input("OGC:CRS84")
_EPSG_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/0/([0-9]{1,6})$")


class BadParameter(InvalidInput):
    """A query parameter OGC API Features answers with 400: unknown, or of a bad value."""

    status_code = 400


def bad_parameter(exc: InvalidInput) -> BadParameter:
    """The same refusal as a 400 (the layers API says 422 for a bad filter or bbox)."""
    return BadParameter(exc.detail, errors=exc.errors)


# --- collections -------------------------------------------------------------------------------


def collection_id(site_id: str, layer: str) -> str:
    return f"{site_id}.{layer}"


def parse_collection_id(text: str) -> tuple[str, Layer] | None:
    """``demo-works.zones`` as (site id, layer); None when it cannot name a collection."""
    site_id, dot, name = text.partition(".")
    if not dot or not SITE_ID_PATTERN.match(site_id) or name not in LAYERS:
        return None
    return site_id, LAYERS[name]


@dataclass(frozen=True)
class Extent:
    """Where a collection's features lie (CRS84) and, for a layer with a time, when."""

    bbox: tuple[float, float, float, float]
    interval: tuple[datetime | None, datetime | None] | None = None


def layer_extent(db: Database, session: Session, site: Site, layer: Layer) -> Extent:
    """The bounding box of the layer's features (the site boundary's when it has none), and the
    first and last time of a layer that has times."""
    row = LAYER_ROWS[layer.name]
    bounds: tuple[float, ...] | None = None
    if db.is_postgis:
        text = session.scalar(
            select(cast(func.ST_Extent(row.geom), String)).where(row.site_id == site.id)
        )
        if text:  # BOX(x0 y0,x1 y1)
            bounds = tuple(float(v) for v in re.findall(r"-?[0-9.]+(?:[eE][-+]?[0-9]+)?", text))
    else:
        geoms = (
            _people_geometries(session, site.id)[1]
            if layer.name == "people"
            else db.spatial_indexes.get(session, site.id, layer.name).geoms
        )
        if len(geoms):
            bounds = tuple(float(v) for v in shapely.total_bounds(geoms))
    if bounds is None or len(bounds) != 4 or not all(map(math.isfinite, bounds)):
        bounds = tuple(float(v) for v in site.boundary.bounds)
    interval = None
    if layer.name in TEMPORAL:
        column = getattr(row, TEMPORAL[layer.name])
        first, last = session.execute(
            select(func.min(column), func.max(column)).where(row.site_id == site.id)
        ).one()
        if first is not None:
            interval = (first, last)
    x0, y0, x1, y1 = bounds
    return Extent((x0, y0, x1, y1), interval)


def _people_geometries(
    session: Session, site_id: str, clauses: Sequence[ColumnElement[bool]] = ()
) -> tuple[list[str], npt.NDArray[np.object_]]:
    """People's ids (in id order) and positions, read from the rows: positions move without a
    new revision token (command/positions.py), so the cached spatial index may hold old ones."""
    geom = type_coerce(PersonRow.geom, LargeBinary)
    rows = session.execute(
        select(PersonRow.id, geom)
        .where(PersonRow.site_id == site_id, PersonRow.geom.is_not(None), *clauses)
        .order_by(PersonRow.id)
    ).all()
    blobs = np.empty(len(rows), dtype=object)
    blobs[:] = [r[1] for r in rows]
    return [r[0] for r in rows], shapely.from_wkb(blobs)


# --- coordinate reference systems ----------------------------------------------------------------


@dataclass(frozen=True)
class CoordinateSystem:
    """A CRS a collection offers: CRS84 (storage, no transformation) or the site's metric CRS,
    its coordinates in that CRS's own axis order."""

    uri: str
    epsg: int | None = None

    @property
    def is_crs84(self) -> bool:
        return self.epsg is None

    def from_crs84(self, geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
        """An array of geometries (CRS84; None for none) in this CRS, in one transformation."""
        if self.epsg is None or not len(geoms):
            return geoms
        forward, _ = _transformers(self.epsg)
        out: npt.NDArray[np.object_] = shapely.transform(geoms, _apply(forward))
        return out

    def to_crs84(self, geom: BaseGeometry) -> BaseGeometry:
        if self.epsg is None:
            return geom
        _, inverse = _transformers(self.epsg)
        out: BaseGeometry = shapely.transform(geom, _apply(inverse))
        return out


DEFAULT_CRS = CoordinateSystem(CRS84)


@lru_cache(maxsize=16)
def _transformers(epsg: int) -> tuple[Transformer, Transformer]:
    """CRS84 to the EPSG CRS and back, each in the CRS's own axis order (pyproj's
    ``always_xy=False``): OGC API Features Part 2 gives coordinates in that order."""
    target = CRS.from_epsg(epsg)
    return (
        Transformer.from_crs(_CRS84, target, always_xy=False),
        Transformer.from_crs(target, _CRS84, always_xy=False),
    )


def _apply(transformer: Transformer) -> Any:
    def apply(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        a, b = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([a, b])

    return apply


def coordinate_systems(site: Site) -> list[CoordinateSystem]:
    """The CRSs a collection of ``site`` offers: CRS84, and the site's metric CRS when it has an
    EPSG code (a CRS given as a PROJ string has no URI to name it by)."""
    epsg = site.crs.epsg
    if epsg is None:
        return [DEFAULT_CRS]
    return [DEFAULT_CRS, CoordinateSystem(EPSG_URI.format(code=epsg), epsg)]


def resolve_crs(site: Site, value: str | None, *, field: str) -> CoordinateSystem:
    """The CRS named by ``value`` (a URI, with or without angle brackets), if the site's
    collections offer it; CRS84 when ``value`` is None."""
    if value is None:
        return DEFAULT_CRS
    uri = value.strip().removeprefix("<").removesuffix(">").strip()
    offered = coordinate_systems(site)
    epsg = _EPSG_URI.match(uri)
    for cs in offered:
        if uri == cs.uri or (epsg is not None and cs.epsg == int(epsg[1])):
            return cs
    raise BadParameter(
        f"{field} {value!r} is not a CRS of this collection",
        errors=[FieldError(field, "one of " + ", ".join(cs.uri for cs in offered))],
    )


def geometry_to_crs84(data: Mapping[str, Any], cs: CoordinateSystem) -> dict[str, Any]:
    """A GeoJSON feature (or merge patch) whose geometry is in ``cs``, with its geometry in
    CRS84. A geometry that does not parse is left as it is, for the layer's validation to
    refuse with its reason."""
    out = dict(data)
    geometry = out.get("geometry")
    if cs.is_crs84 or not isinstance(geometry, Mapping):
        return out
    try:
        parsed = shape(dict(geometry))
    except Exception:  # validate_geometry names what is wrong with it
        return out
    out["geometry"] = mapping(cs.to_crs84(parsed))
    return out


def feature_geojson(feature: Feature, cs: CoordinateSystem) -> dict[str, Any]:
    """A feature as GeoJSON, its geometry in ``cs``."""
    out = feature.to_geojson()
    if not cs.is_crs84 and feature.geometry is not None:
        out["geometry"] = mapping(cs.from_crs84(_array([feature.geometry]))[0])
    return out


def _array(values: Sequence[Any]) -> npt.NDArray[np.object_]:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


# --- query parameters --------------------------------------------------------------------------


def parse_window(text: str, cs: CoordinateSystem, *, field: str = "bbox") -> BaseGeometry:
    """A ``bbox`` (4 numbers, or 6 with heights, which are ignored) in ``cs``'s axis order, as
    the CRS84 area it covers: a polygon, or the line or point of a box without width or
    height. A box in a projected CRS is densified before it is transformed, so its edges bend
    as they do on the map."""
    parts = text.split(",")
    if len(parts) == 6:
        parts = [*parts[:2], *parts[3:5]]
    if cs.is_crs84:
        try:
            x0, y0, x1, y1 = parse_bbox(",".join(parts), field=field)
        except InvalidInput as exc:
            raise bad_parameter(exc) from None
        return _box_or_less(x0, y0, x1, y1)
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(map(math.isfinite, values)) or any(abs(v) > 1e8 for v in values):
        raise BadParameter(
            f"bad {field}", errors=[FieldError(field, "four numbers in the CRS's axis order")]
        )
    a0, b0, a1, b1 = values
    if a0 > a1 or b0 > b1:
        raise BadParameter(f"bad {field}", errors=[FieldError(field, "min must not exceed max")])
    local = _box_or_less(a0, b0, a1, b1)
    step = max(a1 - a0, b1 - b0) / 32
    if step > 0:
        local = shapely.segmentize(local, step)
    return cs.to_crs84(local)


def _box_or_less(x0: float, y0: float, x1: float, y1: float) -> BaseGeometry:
    if x0 == x1 and y0 == y1:
        return shapely.Point(x0, y0)
    if x0 == x1 or y0 == y1:
        return shapely.LineString([(x0, y0), (x1, y1)])
    return shapely.box(x0, y0, x1, y1)


def parse_datetime(text: str) -> tuple[datetime | None, datetime | None]:
    """An RFC 3339 instant, or an interval ``start/end`` whose open ends are ``..`` or empty."""
    ends = text.split("/")
    if len(ends) > 2 or (len(ends) == 2 and all(e in ("", "..") for e in ends)):
        ends = []
    try:
        times = [None if e in ("", "..") else _instant(e) for e in ends]
    except ValueError:
        times = []
    if not times or (len(times) == 1 and times[0] is None):
        raise BadParameter(
            "bad datetime",
            errors=[FieldError("datetime", "an RFC 3339 time, or an interval start/end ('..')")],
        )
    start, end = (times[0], times[0]) if len(times) == 1 else (times[0], times[1])
    if start is not None and end is not None and start > end:
        raise BadParameter(
            "bad datetime", errors=[FieldError("datetime", "the interval ends before it starts")]
        )
    return start, end


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("z", "Z"))
    if value.tzinfo is None or "T" not in text.upper():
        raise ValueError("an RFC 3339 date-time with its offset")
    return value.astimezone(UTC)


def parse_limit(text: str) -> int:
    """A page size: a whole number of 1 or more; above the maximum, the maximum."""
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise BadParameter(
            "bad limit", errors=[FieldError("limit", f"a whole number from 1 to {MAX_LIMIT}")]
        )
    return min(int(text), MAX_LIMIT)


def queryables(layer: Layer) -> dict[str, dict[str, Any]]:
    """The layer's attributes as JSON Schema properties: what ``?name=value`` filters on."""
    schema = layer.properties.model_json_schema()
    defs = schema.get("$defs", {})
    return {name: _simple(spec, defs) for name, spec in schema["properties"].items()}


_KEPT = (
    "type",
    "enum",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "description",
)


def _simple(spec: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """One property's schema without references or the ``null`` of an optional value."""
    spec = dict(spec)
    if "$ref" in spec:
        spec = {**defs[spec.pop("$ref").rsplit("/", 1)[-1]], **spec}
    options = [o for o in spec.pop("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        spec = {**_simple(options[0], defs), **spec}
    out = {k: spec[k] for k in _KEPT if k in spec}
    out["title"] = spec.get("title", "")
    return out


# --- pages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a collection's items as GeoJSON features, in id order. ``next_after`` and
    ``prev_before`` are the cursors of the pages beside it (None: there is none)."""

    features: list[dict[str, Any]]
    matched: int
    next_after: str | None
    prev_before: str | None


def items_page(
    db: Database,
    site_id: str,
    layer_name: str,
    *,
    window: BaseGeometry | None = None,
    filters: Mapping[str, str] | None = None,
    interval: tuple[datetime | None, datetime | None] | None = None,
    limit: int = DEFAULT_LIMIT,
    after: str | None = None,
    before: str | None = None,
    cs: CoordinateSystem = DEFAULT_CRS,
) -> Page:
    """The features intersecting ``window`` (CRS84) that match ``filters`` (attribute
    equality, ``a,b`` for either) and whose time lies in ``interval`` (a layer without times
    has none that does), in id order: the ``limit`` after the id ``after``, or the ``limit``
    before the id ``before``, or the first ``limit``; as GeoJSON in ``cs``. ``matched`` counts
    them all."""
    layer = get_layer(layer_name)
    clauses = _attribute_filters(layer, filters or {})
    if interval is not None:
        clauses.extend(_time_clauses(layer, interval))
    with db.read() as session:
        load_site(session, site_id)
        columns = _Columns.of(layer, sqlite=not db.is_postgis)
        # SQLite's in-memory index holds every feature of a layer whose geometry is required,
        # in id order too: it cuts the pages of such a layer without a filter (no count of
        # 100,000 rows each page). PostGIS's own indexes do that work there.
        by_index = window is not None or (not clauses and layer.geometry_required)
        if db.is_postgis or not by_index:
            if db.is_postgis:
                _small_answers(session)
            query = (
                window.wkb if window is not None else None,
                tuple(sorted((filters or {}).items())),
            )
            rows, matched, has_before, has_after = _sql_page(
                session,
                site_id,
                layer,
                columns,
                window,
                clauses,
                limit,
                after,
                before,
                (query, interval),
            )
            ids = [r[0] for r in rows]
        else:
            ordered = _ordered_matches(session, db, site_id, layer, window, clauses)
            ids, has_before, has_after = _slice(ordered, limit, after, before)
            matched = len(ordered)
            rows = _rows_by_id(session, site_id, layer, columns, ids)
        features = columns.geojson(rows, cs)
    return Page(
        features,
        matched,
        next_after=ids[-1] if ids and has_after else None,
        prev_before=ids[0] if ids and has_before else None,
    )


@dataclass(frozen=True)
class _Columns:
    """What a page reads of a layer's rows, as plain columns: the id, the geometry as WKB,
    then the attributes and ``META_FIELDS``, times as UTC text. Rows read so are encoded
    together (geometries by GEOS, times from their text): a page of 1,000 costs a few
    milliseconds, where making each a :class:`Feature` first costs ten times that."""

    selected: list[ColumnElement[Any]]
    names: list[str]
    times: frozenset[str]

    @classmethod
    def of(cls, layer: Layer, *, sqlite: bool) -> _Columns:
        row = LAYER_ROWS[layer.name]
        names = [*layer.fields, *META_FIELDS]
        times = frozenset(n for n in names if isinstance(getattr(row, n).type, UTCDateTime))
        # SQLite keeps a time as text already; PostgreSQL is asked for that same text: making
        # a datetime in its time zone costs more than the rest of the feature.
        columns: list[ColumnElement[Any]] = [
            getattr(row, n)
            if n not in times
            else type_coerce(getattr(row, n), String)
            if sqlite
            else func.to_char(func.timezone("UTC", getattr(row, n)), _PG_TIME)
            for n in names
        ]
        geom = type_coerce(row.geom, LargeBinary) if sqlite else func.ST_AsBinary(row.geom)
        return cls([row.id.expression, geom, *columns], names, times)

    def geojson(self, rows: Sequence[Any], cs: CoordinateSystem) -> list[dict[str, Any]]:
        """Rows read with :attr:`selected` as GeoJSON features, geometries in ``cs``."""
        wkb = _array([None if r[1] is None else bytes(r[1]) for r in rows])
        geojson = shapely.to_geojson(cs.from_crs84(shapely.from_wkb(wkb)))
        names, times = self.names, self.times
        out = []
        for r, text in zip(rows, geojson, strict=True):
            properties = dict(zip(names, r[2:], strict=True))
            for name in times:
                properties[name] = _iso(properties[name])
            geometry = None if text is None else orjson.Fragment(text)
            out.append(
                {"type": "Feature", "id": r[0], "geometry": geometry, "properties": properties}
            )
        return out


#: A time as PostgreSQL's ``to_char`` writes it (of the time in UTC): the text SQLite keeps.
_PG_TIME = "YYYY-MM-DD HH24:MI:SS.US"


def _rows_by_id(
    session: Session, site_id: str, layer: Layer, columns: _Columns, ids: Sequence[str]
) -> list[Any]:
    """The rows of the features ``ids`` (``columns``), in that order, those that exist: the
    page SQLite's in-memory index cut."""
    row = LAYER_ROWS[layer.name]
    found: dict[str, Any] = {}
    for start in range(0, len(ids), READ_CHUNK):
        chunk = list(ids[start : start + READ_CHUNK])
        stmt = select(*columns.selected).where(row.site_id == site_id, row.id.in_(chunk))
        found.update((r[0], r) for r in session.connection().execute(stmt).all())
    return [found[i] for i in ids if i in found]


def _small_answers(session: Session) -> None:
    """Tell PostgreSQL, for this transaction, that its answers are small: a page's query is
    estimated dear (ST_Intersects declares a high cost), so the planner would start a
    parallel worker and compile the query with JIT, each costing more than the page."""
    session.execute(
        select(
            func.set_config("jit", "off", True),
            func.set_config("max_parallel_workers_per_gather", "0", True),
        )
    )


def _iso(value: datetime | str | None) -> str | None:
    """A stored UTC time as ``datetime.isoformat`` writes it: from a datetime (PostgreSQL), or
    from the text SQLite keeps (``2026-01-15 01:58:21.000000``, always with microseconds)
    without parsing it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if len(value) == 26 and value[10] == " " and value[19] == ".":
        date, time_ = value[:10], value[11:19] if value.endswith(".000000") else value[11:]
        return f"{date}T{time_}+00:00"
    return datetime.fromisoformat(value).replace(tzinfo=UTC).isoformat()


def _time_clauses(
    layer: Layer, interval: tuple[datetime | None, datetime | None]
) -> list[ColumnElement[bool]]:
    if layer.name not in TEMPORAL:
        return [false()]  # no feature of the layer has a time that lies in the interval
    column = getattr(LAYER_ROWS[layer.name], TEMPORAL[layer.name])
    start, end = interval
    clauses: list[ColumnElement[bool]] = [column.is_not(None)]
    if start is not None:
        clauses.append(column >= start)
    if end is not None:
        clauses.append(column <= end)
    return clauses


def _sql_page(
    session: Session,
    site_id: str,
    layer: Layer,
    columns: _Columns,
    window: BaseGeometry | None,
    clauses: list[ColumnElement[bool]],
    limit: int,
    after: str | None,
    before: str | None,
    query: Hashable,
) -> tuple[Sequence[Any], int, bool, bool]:
    """The page's rows (``columns``) from the database alone, in one query (PostGIS tests the
    window with its index): rows, the number matched, whether features lie before and after
    the page. ``query`` says what ``window`` and ``clauses`` select, for the count's memo."""
    row = LAYER_ROWS[layer.name]
    where = [row.site_id == site_id, *clauses]
    if window is not None:
        envelope = func.ST_GeomFromWKB(shapely.to_wkb(window), 4326)
        exact: ColumnElement[Any] = func.ST_Intersects(row.geom, envelope)
        inner = _inner_box(window)
        if inner is not None:
            # As on SQLite (:func:`_intersecting`): a feature whose box lies inside the window
            # intersects it, so only those near its edges take the exact test.
            inside = row.geom.op("@")(func.ST_GeomFromWKB(shapely.to_wkb(inner), 4326))
            exact = and_(row.geom.op("&&")(envelope), or_(inside, exact))
        where.append(exact)
    matched = _COUNTS.count(
        session, site_id, layer, query, select(func.count()).select_from(row).where(*where)
    )
    read = session.connection().execute
    if before is not None:
        stmt = select(*columns.selected).where(*where, row.id < before).order_by(row.id.desc())
        got = read(stmt.limit(limit + 1)).all()
        return got[:limit][::-1], matched, len(got) > limit, True
    stmt = select(*columns.selected).where(*where, *([row.id > after] if after is not None else []))
    got = read(stmt.order_by(row.id).limit(limit + 1)).all()
    return got[:limit], matched, after is not None, len(got) > limit


class _CountMemo:
    """The number of features a query matches, per layer revision: every page of a walk says
    ``numberMatched``, and counting a bbox over a whole 100,000-edge network costs PostGIS far
    more than the page itself. Every write to a layer (the API's, an import's, a trigger's on
    PostGIS) gives it a new revision token, so a count is never used past a change. People are
    not kept: their positions move without a new token (command/positions.py)."""

    def __init__(self, size: int = 256) -> None:
        self._counts: OrderedDict[Hashable, int] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def count(
        self,
        session: Session,
        site_id: str,
        layer: Layer,
        query: Hashable,
        stmt: Select[int],
    ) -> int:
        token = None if layer.name == "people" else revision_token(session, site_id, layer.name)
        key = (site_id, layer.name, token, query)
        with self._lock:
            known = self._counts.get(key) if token is not None else None
            if known is not None:
                self._counts.move_to_end(key)
                return known
        counted = session.scalar(stmt) or 0
        if token is not None:
            with self._lock:
                self._counts[key] = counted
                while len(self._counts) > self._size:
                    self._counts.popitem(last=False)
        return counted


# A memo of pure results keyed by revision tokens (random, so never shared by two databases).
_COUNTS = _CountMemo()


def _ordered_matches(
    session: Session,
    db: Database,
    site_id: str,
    layer: Layer,
    window: BaseGeometry | None,
    clauses: list[ColumnElement[bool]],
) -> Sequence[str]:
    """Every id matching, in id order, on SQLite: the window through the in-memory index (None:
    every feature), put in id order by rank (integers), then the attribute filters through the
    database."""
    if layer.name == "people" and window is not None:
        ids, geoms = _people_geometries(session, site_id, clauses)
        shapely.prepare(window)
        inside = shapely.intersects(window, geoms)
        return [i for i, hit in zip(ids, inside, strict=True) if hit]
    index = db.spatial_indexes.get(session, site_id, layer.name)
    by_id, rank = index.id_order
    # An array of ids, used as a sequence (bisect and slices): no list of 100,000 made.
    if window is None:
        ordered = typing.cast(Sequence[str], by_id)
    else:
        hits = _intersecting(index, window)
        ordered = typing.cast(Sequence[str], by_id[np.sort(rank[hits])])
    if clauses:
        row = LAYER_ROWS[layer.name]
        keep = set(session.scalars(select(row.id).where(row.site_id == site_id, *clauses)))
        ordered = [i for i in ordered if i in keep]
    return ordered


def _intersecting(index: LayerIndex, window: BaseGeometry) -> npt.NDArray[np.intp]:
    """Positions in ``index`` of the features intersecting ``window``. For a rectangle (a bbox
    in CRS84) the features whose box lies inside it are taken without an exact test: the exact
    test of every feature of a bbox over the whole site costs ten times the index search."""
    if not _rectangle(window):
        found: npt.NDArray[np.intp] = index.tree.query(window, predicate="intersects")
        return found
    x0, y0, x1, y1 = window.bounds
    candidates = index.tree.query(window)
    boxes = index.envelopes[candidates]
    inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
    edge = candidates[~inside]
    touching = edge[shapely.intersects(window, index.geoms[edge])]
    return np.concatenate([candidates[inside], touching])


def _rectangle(window: BaseGeometry) -> bool:
    """Whether ``window`` is a rectangle with area (a bbox in CRS84)."""
    if not isinstance(window, shapely.Polygon) or window.area <= 0:
        return False
    return bool(shapely.equals(window, shapely.box(*window.bounds)))


def _inner_box(window: BaseGeometry) -> BaseGeometry | None:
    """For a rectangular ``window``, a box inside it by more than PostGIS rounds: its box
    operators (``@``) compare single-precision boxes rounded outwards (a relative error of
    2^-23), so a feature whose box is ``@`` this one lies inside the window for certain. None
    for a window that is no rectangle, or too small to leave one."""
    if not _rectangle(window):
        return None
    x0, y0, x1, y1 = window.bounds
    margin = max(abs(x0), abs(y0), abs(x1), abs(y1), 1.0) * 2.0**-19
    if x1 - x0 <= 4 * margin or y1 - y0 <= 4 * margin:
        return None
    return shapely.box(x0 + margin, y0 + margin, x1 - margin, y1 - margin)


def _slice(
    ordered: Sequence[str], limit: int, after: str | None, before: str | None
) -> tuple[list[str], bool, bool]:
    """A page of ``ordered`` ids, and whether ids lie before and after it."""
    if before is not None:
        end = bisect.bisect_left(ordered, before)
        start = max(0, end - limit)
        return [str(i) for i in ordered[start:end]], start > 0, True
    start = bisect.bisect_right(ordered, after) if after is not None else 0
    end = start + limit
    return [str(i) for i in ordered[start:end]], start > 0, end < len(ordered)
