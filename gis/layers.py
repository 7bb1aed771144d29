"""Features of a site's layers: read, create, replace, patch and delete, with versions.

Every feature carries a version. A change must name the version the caller last saw; a stale one
is refused, so two planners never overwrite each other silently. Every change stores who and
when on the feature and appends a row to the change log, with the data, so nothing is lost.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import shapely
from pydantic import TypeAdapter, ValidationError
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    String,
    cast,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from gis import conflicts, topology
from gis.errors import (
    AlreadyExists,
    FieldError,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    VersionConflict,
    VersionRequired,
)
from gis.geometry import SiteExtent, validate_geometries, validate_geometry
from gis.model import FEATURE_ID_PATTERN, LAYERS, MAX_COUNT, Layer
from gis.sites import Site, load_site
from gis.storage.bulk import insert_rows
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS, ChangeRow, FeatureRow, LayerRevision, PersonRow
from gis.storage.types import UTCDateTime

#: Keys the server keeps about a feature; accepted in input (``version`` is checked) but never
#: taken from it.
META_FIELDS = ("version", "created_at", "created_by", "updated_at", "updated_by")

VersionSource = Literal["header", "body"]


@dataclass(frozen=True)
class Feature:
    id: str
    geometry: BaseGeometry | None
    properties: dict[str, Any]
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    def to_geojson(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "id": self.id,
            "geometry": None if self.geometry is None else mapping(self.geometry),
            "properties": {**jsonable(self.properties), **self.meta()},
        }

    def meta(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


def geojson_features(features: Sequence[Feature]) -> list[dict[str, Any]]:
    """``[f.to_geojson() for f in features]``, equal item for item, with the geometries of
    the points and lines mapped together (:func:`geojson_geometries`): a 100,000-edge network
    in a fraction of the time."""
    geometries = geojson_geometries([f.geometry for f in features])
    metas: dict[tuple[Any, ...], dict[str, Any]] = {}  # features written together share theirs
    out = []
    for f, geometry in zip(features, geometries, strict=True):
        key = (f.version, f.created_at, f.created_by, f.updated_at, f.updated_by)
        meta = metas.get(key)
        if meta is None:
            meta = metas[key] = f.meta()
        out.append(
            {
                "type": "Feature",
                "id": f.id,
                "geometry": geometry,
                "properties": {**jsonable(f.properties), **meta},
            }
        )
    return out


def geojson_geometries(geometries: Sequence[BaseGeometry | None]) -> list[dict[str, Any] | None]:
    """Each geometry as shapely's ``mapping`` gives it (``None`` stays ``None``); 2-D points
    and lines have their coordinates read out in one array call."""
    shapes = np.empty(len(geometries), dtype=object)
    shapes[:] = geometries
    out: list[dict[str, Any] | None] = [None] * len(geometries)
    kinds = shapely.get_type_id(shapes)  # -1 for None
    plain = (shapely.get_coordinate_dimension(shapes) == 2) & ~shapely.is_empty(shapes)
    points = np.flatnonzero(plain & (kinds == shapely.GeometryType.POINT))
    point_xy = shapely.get_coordinates(shapes[points]).tolist()
    for i, xy in zip(points.tolist(), point_xy, strict=True):
        out[i] = {"type": "Point", "coordinates": tuple(xy)}
    lines = np.flatnonzero(plain & (kinds == shapely.GeometryType.LINESTRING))
    positions = list(map(tuple, shapely.get_coordinates(shapes[lines]).tolist()))
    ends = np.cumsum(shapely.get_num_coordinates(shapes[lines])).tolist()
    start = 0
    for i, end in zip(lines.tolist(), ends, strict=True):
        out[i] = {"type": "LineString", "coordinates": tuple(positions[start:end])}
        start = end
    rest = kinds >= 0
    rest[points] = rest[lines] = False
    for i in np.flatnonzero(rest).tolist():
        out[i] = mapping(shapes[i])
    return out


def jsonable(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Attribute values as JSON has them (datetimes become ISO 8601 strings)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in properties.items()}


@dataclass
class EditReport:
    """What a write tells its caller besides the feature: filled in when passed to
    :func:`create_feature`, :func:`replace_feature` or :func:`delete_feature`.

    ``warnings`` are human-readable (topology warnings, e.g. a door cut off from the foot
    network, naming the parts); ``merged`` describes a three-way merge that was applied to a
    stale edit (who changed what meanwhile), None when there was none."""

    warnings: list[str] = field(default_factory=list)
    merged: dict[str, Any] | None = None
    #: The topology warnings as data (:meth:`gis.topology.Violation.to_json`): rule, layer,
    #: id (ASCII, for a header), and the parts cut off.
    violations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ParsedFeature:
    """A feature that passed validation, ready to store."""

    id: str | None
    geometry: BaseGeometry | None
    properties: dict[str, Any]
    version: int | None


def get_layer(name: str) -> Layer:
    layer = LAYERS.get(name)
    if layer is None:
        raise NotFound(
            f"no layer {name!r}; the layers are {', '.join(LAYERS)}",
            errors=[FieldError("layer", f"must be one of {', '.join(LAYERS)}")],
        )
    return layer


# --- parsing: the one place features enter --------------------------------------------------


def parse_feature(
    layer: Layer,
    data: Mapping[str, Any],
    *,
    extent: SiteExtent | None,
    row: int | None = None,
    prefix: str = "properties.",
    base: Mapping[str, Any] | None = None,
) -> ParsedFeature:
    """Validate a GeoJSON feature (or a patch merged onto ``base`` properties).

    All faults are collected, so a planner sees every problem of a feature at once.
    """
    fid, version, properties, errors = _parse_attributes(layer, data, row, prefix, base)
    geometry: BaseGeometry | None = None
    try:
        geometry = validate_geometry(
            data.get("geometry"),
            expected_type=layer.geometry_type,
            required=layer.geometry_required,
            row=row,
            max_vertices=layer.max_vertices,
        )
    except InvalidInput as exc:
        errors.extend(exc.errors)
    if geometry is not None and extent is not None and layer.inside_site:
        outside = topology.inside_site_error(extent, geometry, row)  # the 'inside-site' rule
        errors.extend([outside] if outside else [])
    if errors:
        where = f"row {row}: " if row is not None else ""
        raise InvalidInput(f"{where}the {layer.name} feature is invalid", errors=errors)
    return ParsedFeature(fid, geometry, properties, version)


def parse_features(
    layer: Layer,
    items: Sequence[Mapping[str, Any]],
    *,
    extent: SiteExtent | None,
    rows: Sequence[int | None],
    prefix: str = "properties.",
) -> list[ParsedFeature | InvalidInput]:
    """:func:`parse_feature` for many features at once (a file import, a site load): per
    feature, the same result, or the same refusal as a value. The geometries are built and
    checked as arrays (:func:`gis.geometry.validate_geometries`), and the site boundary is
    tested once for all of them, which makes a 100,000-edge network several times faster to
    validate than feature by feature."""
    values = [data.get("geometry") for data in items]
    geometries = validate_geometries(
        values,
        expected_type=layer.geometry_type,
        required=layer.geometry_required,
        rows=rows,
        max_vertices=layer.max_vertices,
    )
    outside = np.zeros(len(items), dtype=bool)
    if extent is not None and layer.inside_site:
        placed = [i for i, g in enumerate(geometries) if isinstance(g, BaseGeometry)]
        shapes = np.empty(len(placed), dtype=object)
        shapes[:] = [geometries[i] for i in placed]
        outside[np.asarray(placed, dtype=np.int64)[~extent.covers_all(shapes)]] = True
    out: list[ParsedFeature | InvalidInput] = []
    for i, data in enumerate(items):
        row = rows[i]
        fid, version, properties, errors = _parse_attributes(layer, data, row, prefix, None)
        geometry = geometries[i]
        if isinstance(geometry, InvalidInput):
            errors.extend(geometry.errors)
            geometry = None
        if outside[i]:
            assert extent is not None and geometry is not None  # only placed ones are tested
            error = topology.inside_site_error(extent, geometry, row)
            errors.extend([error] if error else [])
        if errors:
            where = f"row {row}: " if row is not None else ""
            out.append(InvalidInput(f"{where}the {layer.name} feature is invalid", errors=errors))
        else:
            out.append(ParsedFeature(fid, geometry, properties, version))
    return out


def _parse_attributes(
    layer: Layer,
    data: Mapping[str, Any],
    row: int | None,
    prefix: str,
    base: Mapping[str, Any] | None,
) -> tuple[str | None, int | None, dict[str, Any], list[FieldError]]:
    """A feature's id, version and validated properties, and the faults found in them."""
    errors: list[FieldError] = []
    if data.get("type", "Feature") != "Feature":
        errors.append(FieldError("type", "must be 'Feature'", row))
    props = data.get("properties") or {}
    if not isinstance(props, Mapping):
        errors.append(FieldError("properties", "must be an object", row))
        props = {}
    props = dict(props)
    meta = {k: props.pop(k) for k in META_FIELDS if k in props}
    fid = data.get("id", props.pop("id", None))
    if fid is not None and (not isinstance(fid, str) or not FEATURE_ID_PATTERN.match(fid)):
        errors.append(
            FieldError("id", "1-64 letters, digits or '._:-', starting with a letter or digit", row)
        )
    version = _parse_version(meta.get("version"), prefix + "version", row, errors)

    merged = {**(base or {}), **props}
    properties: dict[str, Any] = {}
    try:
        model = layer.properties.model_validate(merged)
        properties = model.model_dump()
    except ValidationError as exc:
        errors.extend(_field_errors(exc, prefix, row))
    return fid, version, properties, errors


def _parse_version(value: Any, field: str, row: int | None, errors: list[FieldError]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        errors.append(FieldError(field, "must be a whole number of 1 or more", row))
        return None
    return value


def _field_errors(exc: ValidationError, prefix: str, row: int | None) -> list[FieldError]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        # A rule over the whole feature (no single field) is reported against its properties.
        field = prefix + loc if loc else prefix.rstrip(".") or "properties"
        out.append(FieldError(field, msg, row))
    return out


# --- reading ----------------------------------------------------------------------------------


def _to_feature(layer: Layer, row: FeatureRow) -> Feature:
    props = {name: getattr(row, name) for name in layer.fields}
    return Feature(
        row.id,
        row.geom,
        props,
        row.version,
        row.created_at,
        row.created_by,
        row.updated_at,
        row.updated_by,
    )


def _attribute_filters(layer: Layer, filters: Mapping[str, str]) -> list[ColumnElement[bool]]:
    row = LAYER_ROWS[layer.name]
    clauses: list[ColumnElement[bool]] = []
    errors: list[FieldError] = []
    for name, raw in filters.items():
        if name not in layer.fields:
            errors.append(
                FieldError(name, f"not an attribute of {layer.name}: {', '.join(layer.fields)}")
            )
            continue
        info = layer.properties.model_fields[name]
        # The field's type with its constraints (ranges), so a filter value is checked as a
        # stored value would be.
        form: Any = info.annotation
        if info.metadata:
            form = Annotated.__class_getitem__((form, *info.metadata))  # type: ignore[attr-defined]
        adapter: TypeAdapter[Any] = TypeAdapter(form)
        try:
            if "\x00" in raw:
                raise ValueError("NUL character")
            values = [_utc(adapter.validate_strings(v)) for v in raw.split(",")]
        except (ValueError, OverflowError) as exc:
            reason = (
                exc.errors()[0]["msg"]
                if isinstance(exc, ValidationError)
                else "outside the representable range"
                if isinstance(exc, OverflowError)
                else str(exc)
            )
            errors.append(FieldError(name, f"bad filter value {raw!r}: {reason}"))
            continue
        values = [v.value if hasattr(v, "value") else v for v in values]
        column = getattr(row, name)
        clauses.append(column.in_(values) if len(values) > 1 else column == values[0])
    if errors:
        raise InvalidInput("bad attribute filter", errors=errors)
    return clauses


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def parse_bbox(text: str, *, field: str = "bbox") -> tuple[float, float, float, float]:
    """``minLon,minLat,maxLon,maxLat`` as in RFC 7946 and OGC API Features."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or not all(map(math.isfinite, parts)):
        raise InvalidInput(
            "bad bbox", errors=[FieldError(field, "four numbers: minLon,minLat,maxLon,maxLat")]
        )
    x0, y0, x1, y1 = parts
    if x0 > x1 or y0 > y1 or abs(y0) > 90 or abs(y1) > 90 or abs(x0) > 180 or abs(x1) > 180:
        raise InvalidInput(
            "bad bbox", errors=[FieldError(field, "min must not exceed max; lon/lat in range")]
        )
    return x0, y0, x1, y1


def list_features(
    db: Database,
    site_id: str,
    layer_name: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    filters: Mapping[str, str] | None = None,
) -> list[Feature]:
    """Features of a layer, filtered by bounding box and attribute equality, ordered by id."""
    layer = get_layer(layer_name)
    row = LAYER_ROWS[layer.name]
    clauses = _attribute_filters(layer, filters or {})
    with db.read() as session:
        load_site(session, site_id)
        stmt = select(row).where(row.site_id == site_id, *clauses).order_by(row.id)
        wanted: set[str] | None = None
        if bbox is not None:
            envelope = box(*bbox)
            if db.is_postgis:
                stmt = stmt.where(func.ST_Intersects(row.geom, _postgis_envelope(bbox)))
            elif layer.name == "people":
                # People's positions move without a new revision token (command/positions.py),
                # so the cached index could hold old ones: the rows themselves are tested.
                shapely.prepare(envelope)
                return [
                    _to_feature(layer, r)
                    for r in session.scalars(stmt)
                    if r.geom is not None and envelope.intersects(r.geom)
                ]
            else:
                hits = db.spatial_indexes.get(session, site_id, layer.name).intersecting(envelope)
                if len(hits) <= 10_000:
                    stmt = stmt.where(row.id.in_(hits))
                else:
                    wanted = set(hits)
        rows = session.scalars(stmt)
        return [_to_feature(layer, r) for r in rows if wanted is None or r.id in wanted]


def _postgis_envelope(bbox: tuple[float, float, float, float]) -> Any:
    """The bbox as PostGIS geometry. A box of no width or height is sent as the line (or
    point) it is: PostGIS finds nothing inside a polygon without area, where shapely, and so the
    SQLite index, sees the line."""
    if bbox[0] < bbox[2] and bbox[1] < bbox[3]:
        return func.ST_MakeEnvelope(*bbox, 4326)
    low, high = (func.ST_SetSRID(func.ST_MakePoint(x, y), 4326) for x, y in (bbox[:2], bbox[2:]))
    return low if bbox[:2] == bbox[2:] else func.ST_MakeLine(low, high)


#: Ids per query when reading features by id (SQLite allows some 32,000 bound values).
READ_CHUNK = 1000


def read_features(
    session: Session, site_id: str, layer_name: str, *, ids: Collection[str] | None = None
) -> list[Feature]:
    """Features of a layer, in bulk: the same features :func:`list_features` gives without
    filters, ordered by id, read as columns rather than ORM objects. The geometries are read
    as WKB and decoded together; the times are converted a column at a time, each distinct
    value once (a layer loaded or edited together shares its times)."""
    layer = get_layer(layer_name)
    fields = layer.fields
    row = LAYER_ROWS[layer.name]
    connection = session.connection()
    dialect = connection.dialect
    # PostGIS sends the WKB with the SRID (EWKB), as the geometry type itself reads it.
    geom = (
        func.ST_AsEWKB(row.geom, type_=LargeBinary)
        if dialect.name == "postgresql"
        else type_coerce(row.geom, LargeBinary)
    )
    stamps = [row.version, row.created_at, row.created_by, row.updated_at, row.updated_by]
    typed = [*(getattr(row, name) for name in fields), *stamps]
    # Times are read as the driver sends them and converted below, each distinct one once.
    timed = [isinstance(c.type, UTCDateTime) for c in typed]
    raw = [type_coerce(c, NullType()) if t else c for c, t in zip(typed, timed, strict=True)]
    columns = [row.id, geom, *raw]
    if ids is None:
        statements = [select(*columns).where(row.site_id == site_id).order_by(row.id)]
    else:
        wanted = sorted(ids)
        statements = [
            select(*columns).where(row.site_id == site_id, row.id.in_(wanted[i : i + READ_CHUNK]))
            for i in range(0, len(wanted), READ_CHUNK)
        ]
    if session.autoflush:
        session.flush()  # as session.execute would: the session's own changes are read too
    # Core rows, not the ORM's: its bookkeeping per row cost more than the query at 100,000.
    rows = [r for stmt in statements for r in connection.execute(stmt)]
    if not rows:
        return []
    found = list(zip(*rows, strict=True))
    blobs = np.empty(len(rows), dtype=object)
    blobs[:] = found[1]
    geometries = shapely.from_wkb(blobs).tolist()
    values = [
        _converted(found[2 + j], column.type.dialect_impl(dialect).result_processor(dialect, None))
        if timed[j]
        else found[2 + j]
        for j, column in enumerate(typed)
    ]
    n = len(fields)
    return [
        Feature(fid, g, dict(zip(fields, v[:n], strict=True)), *v[n:])
        for fid, g, v in zip(found[0], geometries, zip(*values, strict=True), strict=True)
    ]


def _converted(raw: Sequence[Any], process: Callable[[Any], Any] | None) -> Sequence[Any]:
    """A column's values as its type converts them, each distinct value converted once."""
    if process is None:
        return raw
    done: dict[Any, Any] = {}
    out = []
    for value in raw:
        try:
            out.append(done[value])
        except KeyError:
            out.append(done.setdefault(value, process(value)))
    return out


def feature_stamps(session: Session, site_id: str, layer_name: str) -> set[str]:
    """Per feature of a layer, its id, version and time of last change (and for people, when
    their position was observed), as one space-separated string: two readings differ exactly
    in the features changed, created, deleted or moved in between (a feature deleted and
    created again has a new time). One aggregate query, so the 100,000 features of a large
    network take tens of milliseconds, not seconds."""
    layer = get_layer(layer_name)
    row = LAYER_ROWS[layer.name]
    stamp = (
        row.id
        + literal(" ")
        + cast(row.version, String)
        + literal(" ")
        + cast(row.updated_at, String)
    )
    if layer.name == "people":
        # Positions are written without a new version (command/positions.py).
        stamp = stamp + literal(" ") + func.coalesce(cast(PersonRow.seen_at, String), "-")
    text = session.scalar(select(func.aggregate_strings(stamp, "\n")).where(row.site_id == site_id))
    return set(text.split("\n")) if text else set()


def get_feature(db: Database, site_id: str, layer_name: str, feature_id: str) -> Feature:
    layer = get_layer(layer_name)
    with db.read() as session:
        load_site(session, site_id)
        return _to_feature(layer, _load_row(session, layer, site_id, feature_id))


def _load_row(
    session: Session, layer: Layer, site_id: str, feature_id: str, *, for_update: bool = False
) -> FeatureRow:
    """The row of a feature; ``for_update`` locks it (PostgreSQL) until the transaction ends,
    so two writers holding the same version cannot both pass the version check."""
    row = None
    if FEATURE_ID_PATTERN.match(feature_id):
        row = session.get(
            LAYER_ROWS[layer.name], (site_id, feature_id), with_for_update=for_update or None
        )
    if row is None:
        raise NotFound(
            f"no {layer.name} feature {feature_id!r} on site {site_id!r}",
            errors=[FieldError("id", "unknown feature id")],
        )
    return row


# --- writing ----------------------------------------------------------------------------------


def touch_layer(session: Session, site_id: str, layer_name: str) -> None:
    """Give the layer a fresh revision token (caches keyed on it become stale)."""
    token = uuid.uuid4().hex
    revision = session.get(LayerRevision, (site_id, layer_name))
    if revision is None:
        session.add(LayerRevision(site_id=site_id, layer=layer_name, token=token))
    else:
        revision.token = token


def _log(
    session: Session,
    site_id: str,
    layer: Layer,
    feature: Feature,
    action: str,
    actor: str,
    at: datetime,
    note: str | None = None,
) -> None:
    session.add(
        ChangeRow(
            site_id=site_id,
            layer=layer.name,
            feature_id=feature.id,
            action=action,
            version=feature.version,
            actor=actor,
            at=at,
            data=feature.to_geojson(),
            note=note,
        )
    )


def _log_many(
    session: Session,
    site_id: str,
    layer: Layer,
    features: Sequence[Feature],
    action: str,
    actor: str,
    at: datetime,
    note: str | None = None,
) -> None:
    """:func:`_log` for many features, written in bulk (:func:`gis.storage.bulk.insert_rows`)."""
    insert_rows(
        session,
        ChangeRow,
        [
            {
                "site_id": site_id,
                "layer": layer.name,
                "feature_id": f.id,
                "action": action,
                "version": f.version,
                "actor": actor,
                "at": at,
                "data": data,
                "note": note,
            }
            for f, data in zip(features, geojson_features(features), strict=True)
        ],
    )


def check_version(
    current: int,
    expected: int | None,
    source: VersionSource | None,
    what: str,
    *,
    body_field: str | None = "properties.version",
) -> None:
    """Refuse a change that names no version (428) or a stale one (412 from If-Match, else
    409). ``body_field`` is where the body may name it instead of If-Match (None: nowhere)."""
    if expected is None:
        where = f"If-Match header or {body_field}" if body_field else 'If-Match header, e.g. "3"'
        raise VersionRequired(
            f"say which version of {what} you are changing ({where}); it is at version {current}",
            errors=[FieldError("If-Match" if body_field is None else "version", "required")],
        )
    if expected != current:
        error = PreconditionFailed if source == "header" else VersionConflict
        raise error(
            f"{what} is at version {current}, not {expected}: someone changed it since you "
            "read it; reload and apply your change again",
            errors=[FieldError("version", f"stale: current version is {current}")],
        )


def insert_features(
    session: Session,
    site_id: str,
    layer: Layer,
    parsed: Iterable[ParsedFeature],
    *,
    actor: str,
    now: datetime | None = None,
    note: str | None = None,
) -> list[Feature]:
    """Store new features at version 1, each with its creation in the change log, and give
    the layer a fresh revision token. The rows go in per table in bulk (COPY on PostgreSQL,
    one executemany on SQLite; no ORM object per row): one feature or a 100,000-edge network
    take the same path, the large one in seconds rather than a minute."""
    now = now or datetime.now(UTC)
    fields = layer.fields
    features = [
        Feature(
            p.id or f"{layer.name[:4]}-{uuid.uuid4().hex[:12]}",
            p.geometry,
            {name: p.properties.get(name) for name in fields},
            1,
            now,
            actor,
            now,
            actor,
        )
        for p in parsed
    ]
    if features:
        stamp = {
            "version": 1,
            "created_at": now,
            "created_by": actor,
            "updated_at": now,
            "updated_by": actor,
        }
        insert_rows(
            session,
            LAYER_ROWS[layer.name],
            [
                {"site_id": site_id, "id": f.id, "geom": f.geometry, **f.properties, **stamp}
                for f in features
            ],
        )
        _log_many(session, site_id, layer, features, "create", actor, now, note)
    touch_layer(session, site_id, layer.name)
    return features


def update_row(
    session: Session,
    site_id: str,
    layer: Layer,
    row: FeatureRow,
    parsed: ParsedFeature,
    *,
    actor: str,
    now: datetime | None = None,
    note: str | None = None,
) -> tuple[Feature, bool]:
    """Apply ``parsed`` to ``row``; bump the version only if something really changed."""
    before = _to_feature(layer, row)
    geometry_same = (before.geometry is None and parsed.geometry is None) or (
        before.geometry is not None
        and parsed.geometry is not None
        and shapely.equals_exact(before.geometry, parsed.geometry, tolerance=1e-9)
    )
    if geometry_same and before.properties == parsed.properties:
        return before, False
    now = now or datetime.now(UTC)
    for name, value in parsed.properties.items():
        setattr(row, name, value)
    row.geom = parsed.geometry
    row.version += 1
    row.updated_at = now
    row.updated_by = actor
    feature = _to_feature(layer, row)
    _log(session, site_id, layer, feature, "update", actor, now, note)
    touch_layer(session, site_id, layer.name)
    return feature, True


def create_feature(
    db: Database,
    site_id: str,
    layer_name: str,
    data: Mapping[str, Any],
    *,
    actor: str,
    report: EditReport | None = None,
    note: str | None = None,
    then: Callable[[Session], None] | None = None,
) -> Feature:
    """POST a feature; ``note`` goes to its change, ``then`` runs in the same transaction."""
    layer = get_layer(layer_name)
    with db.write() as session:
        site = load_site(session, site_id)
        parsed = parse_feature(layer, data, extent=site.extent)
        model = LAYER_ROWS[layer.name]
        if parsed.id is not None and session.get(model, (site_id, parsed.id)) is not None:
            raise AlreadyExists(
                f"{layer.name} feature {parsed.id!r} exists already; PUT or PATCH it to change it",
                errors=[FieldError("id", "already taken")],
            )
        topology.check_edit(
            db,
            session,
            site,
            layer.name,
            feature_id=parsed.id,
            before=None,
            after=parsed,
            report=report,
        )
        try:
            (feature,) = insert_features(session, site_id, layer, [parsed], actor=actor, note=note)
            session.flush()
        except IntegrityError:  # created meanwhile by someone else
            raise AlreadyExists(
                f"{layer.name} feature {parsed.id!r} exists already",
                errors=[FieldError("id", "already taken")],
            ) from None
        if then is not None:
            then(session)
        return feature


def replace_feature(
    db: Database,
    site_id: str,
    layer_name: str,
    feature_id: str,
    data: Mapping[str, Any],
    *,
    actor: str,
    if_match: int | None = None,
    partial: bool = False,
    report: EditReport | None = None,
    note: str | None = None,
    then: Callable[[Session], None] | None = None,
) -> Feature:
    """PUT (whole feature) or, with ``partial``, PATCH (JSON merge patch of the feature);
    ``note`` goes to its change, ``then`` runs in the same transaction."""
    layer = get_layer(layer_name)
    with db.write() as session:
        site = load_site(session, site_id)
        row = _load_row(session, layer, site_id, feature_id, for_update=True)
        current = _to_feature(layer, row)
        base: Mapping[str, Any] | None = None
        if partial:
            body, base = _patch_onto(data, current.geometry, current.properties)
        else:
            body = dict(data)
        if body.get("id") not in (None, feature_id):
            raise InvalidInput(
                "the feature's id cannot change",
                errors=[FieldError("id", f"must be {feature_id!r} (or left out)")],
            )
        body["id"] = feature_id
        stated = _stated_version(body)
        expected = if_match if if_match is not None else stated
        stale = expected is not None and expected != row.version
        parsed: ParsedFeature | InvalidInput
        try:
            parsed = parse_feature(layer, body, extent=site.extent, base=base)
        except InvalidInput as exc:
            if not (partial and stale):
                raise
            parsed = exc  # a stale patch is read over the version it was made on, below
        source: VersionSource = "header" if if_match is not None else "body"
        if if_match is not None and stated not in (None, if_match):
            raise InvalidInput(
                "If-Match and properties.version disagree",
                errors=[FieldError("version", "If-Match and properties.version must agree")],
            )
        merge: conflicts.Conflict | None = None
        if expected is not None and stale:
            # Stale: merged when the two edits changed different fields, else explained.
            parsed, merge = _merge_stale(
                session, site, layer, current, data, parsed, expected, partial, source
            )
        else:
            check_version(row.version, expected, source, f"{layer.name} feature {feature_id!r}")
        assert isinstance(parsed, ParsedFeature)  # an invalid stale patch was raised above
        topology.check_edit(
            db,
            session,
            site,
            layer.name,
            feature_id=feature_id,
            before=current,
            after=parsed,
            report=report,
        )
        notes = [n for n in (note, merge.note() if merge is not None else None) if n]
        feature, _ = update_row(
            session, site_id, layer, row, parsed, actor=actor, note="; ".join(notes) or None
        )
        if merge is not None and report is not None:
            report.merged = merge.report(version=feature.version)
        if then is not None:
            then(session)
        return feature


def _patch_onto(
    data: Mapping[str, Any], geometry: BaseGeometry | None, properties: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JSON merge patch over a feature: the body to parse and the properties it patches."""
    body = dict(data)
    if "geometry" not in body:
        body["geometry"] = geometry
    base = dict(properties)
    patch_props = body.get("properties") or {}
    if isinstance(patch_props, Mapping):
        # RFC 7396: null removes a member, which for us means "back to the default".
        base = {k: v for k, v in properties.items() if patch_props.get(k, k) is not None}
        body["properties"] = {k: v for k, v in patch_props.items() if v is not None}
    return body, base


def _stated_version(body: Mapping[str, Any]) -> int | None:
    """The version a body names in ``properties.version``, if a valid one."""
    props = body.get("properties")
    if not isinstance(props, Mapping):
        return None
    return _parse_version(props.get("version"), "version", None, [])


def _merge_stale(
    session: Session,
    site: Site,
    layer: Layer,
    current: Feature,
    data: Mapping[str, Any],
    parsed: ParsedFeature | InvalidInput,
    yours: int,
    partial: bool,
    source: VersionSource,
) -> tuple[ParsedFeature, conflicts.Conflict]:
    """An edit made on version ``yours`` of ``current``, which has changed since: the three-way
    merge (base from the change log, theirs, mine) to apply, when the edits changed different
    fields and the version came in the body. Otherwise refused (409, or 412 for a stale
    If-Match, which is never applied) with who changed what, and the merge proposed if any.
    ``parsed`` is the edit, or why a patch is invalid over the current version (it may be
    valid over its own)."""
    past, theirs = _since(session, site.id, layer, current, yours)
    unpatchable = parsed if isinstance(parsed, InvalidInput) else None
    if partial and past.base is not None:  # mine is the patch over the base, not over theirs
        body, base = _patch_onto(data, past.base.geometry, past.base.properties)
        body["id"] = current.id
        try:
            parsed = parse_feature(layer, body, extent=site.extent, base=base)
            unpatchable = None
        except InvalidInput as exc:
            if isinstance(parsed, InvalidInput):
                raise  # invalid over either version: the patch's own fault
            unpatchable = exc
    if isinstance(parsed, InvalidInput):  # no base in the log to read the patch over
        raise parsed
    mine = conflicts.snapshot(parsed.properties, parsed.geometry)
    conflict = conflicts.three_way(
        layer, current.id, yours, past, current_version=current.version, theirs=theirs, mine=mine
    )
    header = source == "header"
    if unpatchable is not None:
        conflict.refuse_merge(
            f"your patch does not apply to version {yours}: {_reasons(unpatchable)}",
            _field_names(unpatchable),
        )
    merged: ParsedFeature | None = None
    if conflict.merged is not None:
        try:
            merged = parse_feature(layer, conflict.merged, extent=site.extent)
        except InvalidInput as exc:
            conflict.refuse_merge(_reasons(exc), _field_names(exc))
    if merged is None or header:
        raise conflict.error(header=header)
    return merged, conflict


def _reasons(exc: InvalidInput) -> str:
    return "; ".join(f"{e.field}: {e.reason}" for e in exc.errors) or exc.detail


def _field_names(exc: InvalidInput) -> list[str]:
    return [e.field.removeprefix("properties.").split(".")[0] for e in exc.errors]


def delete_feature(
    db: Database,
    site_id: str,
    layer_name: str,
    feature_id: str,
    *,
    actor: str,
    version: int | None,
    source: VersionSource = "header",
    report: EditReport | None = None,
    note: str | None = None,
    then: Callable[[Session], None] | None = None,
) -> None:
    """DELETE a feature; ``note`` goes to its change, ``then`` runs in the same transaction."""
    layer = get_layer(layer_name)
    with db.write() as session:
        site = load_site(session, site_id)
        row = _load_row(session, layer, site_id, feature_id, for_update=True)
        if version is not None and version != row.version:
            raise _stale_deletion(session, site_id, layer, _to_feature(layer, row), version, source)
        check_version(row.version, version, source, f"{layer.name} feature {feature_id!r}")
        topology.check_edit(
            db,
            session,
            site,
            layer.name,
            feature_id=feature_id,
            before=_to_feature(layer, row),
            after=None,
            report=report,
        )
        delete_row(session, site_id, layer, row, actor=actor, note=note)
        if then is not None:
            then(session)


def _stale_deletion(
    session: Session,
    site_id: str,
    layer: Layer,
    current: Feature,
    yours: int,
    source: VersionSource,
) -> VersionConflict:
    """The refusal of a deletion of version ``yours`` of ``current``: who changed what since."""
    past, theirs = _since(session, site_id, layer, current, yours)
    conflict = conflicts.three_way(
        layer, current.id, yours, past, current_version=current.version, theirs=theirs, mine=None
    )
    return conflict.error(header=source == "header")


def _since(
    session: Session, site_id: str, layer: Layer, current: Feature, yours: int
) -> tuple[conflicts.History, conflicts.Snapshot]:
    """What the change log says happened to ``current`` since version ``yours``; its state."""
    rows = conflicts.logged_changes(session, site_id, layer.name, [current.id])[current.id]
    return since(layer, rows, current, yours)


def since(
    layer: Layer, rows: Sequence[ChangeRow], current: Feature, yours: int
) -> tuple[conflicts.History, conflicts.Snapshot]:
    """The history of ``current`` since version ``yours`` from its change-log ``rows``, and
    the current state as a snapshot (an import reads the rows of many features at once)."""
    theirs = conflicts.snapshot(current.properties, current.geometry)
    past = conflicts.history(
        layer,
        rows,
        yours,
        current_version=current.version,
        current=theirs,
        updated_by=current.updated_by,
        updated_at=current.updated_at,
    )
    return past, theirs


def delete_row(
    session: Session,
    site_id: str,
    layer: Layer,
    row: FeatureRow,
    *,
    actor: str,
    now: datetime | None = None,
    note: str | None = None,
) -> None:
    _log(
        session,
        site_id,
        layer,
        _to_feature(layer, row),
        "delete",
        actor,
        now or datetime.now(UTC),
        note,
    )
    session.delete(row)
    touch_layer(session, site_id, layer.name)


def feature_counts(session: Session, site_id: str) -> dict[str, int]:
    return {
        name: session.scalar(select(func.count()).select_from(row).where(row.site_id == site_id))
        or 0
        for name, row in LAYER_ROWS.items()
    }


def log_site_deletions(session: Session, site_id: str, *, actor: str) -> None:
    """Record the deletion of every feature of a site that is about to be deleted."""
    now = datetime.now(UTC)
    for name, model in LAYER_ROWS.items():
        layer = LAYERS[name]
        for row in session.scalars(select(model).where(model.site_id == site_id)):
            feature = _to_feature(layer, row)
            _log(session, site_id, layer, feature, "delete", actor, now, "site deleted")
