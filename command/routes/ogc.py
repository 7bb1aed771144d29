"""OGC API - Features under ``/ogc``: every layer of every site the caller may read, for QGIS,
GDAL and OWSLib. Parts 1 (Core, GeoJSON), 2 (CRS), 3 (queryables as query parameters) and the
draft Part 4 (create, replace, update, delete with ETags). The work is ``gis.ogc``'s and
``gis.layers``'s; writes go through the same validation, versions and change log as the layers
API (``command/routes/layers.py``).

A collection is ``{site_id}.{layer}``. A site the caller holds no role on is invisible: its
collections are not listed and answer 404. Reading needs a site role; writing needs a planner
at that site.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Body, Depends, Header, Request, Response

from command.auth import Principal, Role
from command.deps import AnyReaderDep, DatabaseDep, IfMatchDep, check_roles, requires
from command.routes.layers import MERGED_HEADER, _replanned, _warned, merged_header
from gis import layers, ogc
from gis.errors import FieldError, InvalidInput, NotFound, VersionRequired
from gis.layers import Feature
from gis.model import LAYERS, Layer
from gis.sites import Site, get_site, list_sites
from gis.storage.db import Database

router = APIRouter(prefix="/ogc", tags=["ogc-api-features"])

JSON = "application/json"
GEOJSON = "application/geo+json"
SCHEMA_JSON = "application/schema+json"
OPENAPI_31 = "application/vnd.oai.openapi+json;version=3.1"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"

#: What ``/conformance`` claims: each class is exercised by tests/test_ogc.py and
#: tests/test_ogc_clients.py. Not claimed: HTML, OpenAPI 3.0 (FastAPI's document is 3.1),
#: CQL2 filters, Part 4's timestamps and handling preference.
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/optimistic-locking-etags",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
]
#: ``f=`` values meaning the one encoding served (there is no HTML).
JSON_FORMATS = frozenset({"json", "geojson", JSON, GEOJSON})
#: Parameters of ``/items`` besides the queryables (the layer's attributes).
ITEMS_PARAMETERS = ("f", "limit", "bbox", "bbox-crs", "crs", "datetime", "cursor")

PlannerAnywhereDep = Annotated[Principal, Depends(requires(Role.PLANNER, anywhere=True))]
ContentCrsHeader = Annotated[
    str | None,
    Header(
        alias="Content-Crs",
        description="The CRS of the body's geometry, as a URI (default CRS84): "
        "one of the collection's `crs`.",
    ),
]

BAD_PARAMETER: dict[int | str, dict[str, Any]] = {
    400: {"description": "A parameter unknown here, or of a bad value"}
}


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


#: The parameters of ``GET /items``, described here because they are read by hand: OGC API
#: Features answers a bad one with 400, where FastAPI's validation says 422.
ITEMS_OPENAPI = {
    "parameters": [
        _parameter(
            "limit",
            f"Features per page (default {ogc.DEFAULT_LIMIT}; more than {ogc.MAX_LIMIT} "
            f"gives {ogc.MAX_LIMIT}).",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": ogc.MAX_LIMIT,
                "default": ogc.DEFAULT_LIMIT,
            },
        ),
        _parameter(
            "bbox",
            "Features intersecting minx,miny,maxx,maxy (in bbox-crs's axis order; CRS84 is "
            "lon,lat).",
            {"type": "string"},
        ),
        _parameter("bbox-crs", "The CRS of bbox, a URI (default CRS84).", {"type": "string"}),
        _parameter(
            "crs", "The CRS of the answer's geometries (default CRS84).", {"type": "string"}
        ),
        _parameter(
            "datetime",
            "An RFC 3339 time or interval (a/b, '..' for an open end): people seen then; "
            "other layers have no time.",
            {"type": "string"},
        ),
        _parameter("cursor", "Where a page starts: from a next or prev link.", {"type": "string"}),
        _parameter("f", "json (the only encoding).", {"type": "string"}),
    ]
}


# --- answers -----------------------------------------------------------------------------------


def _json(
    body: dict[str, Any],
    *,
    media_type: str = JSON,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media_type, headers=headers)


def _url(request: Request, path: str, query: Iterable[tuple[str, str]] = ()) -> str:
    """An absolute URL of this server (links are followed by clients from anywhere)."""
    query = list(query)
    base = str(request.base_url).rstrip("/")
    return base + path + ("?" + urlencode(query) if query else "")


def _link(href: str, rel: str, media_type: str, title: str) -> dict[str, str]:
    return {"href": href, "rel": rel, "type": media_type, "title": title}


def _collection_path(site_id: str, layer: Layer) -> str:
    return f"/ogc/collections/{ogc.collection_id(site_id, layer.name)}"


def _item_path(site_id: str, layer: Layer, feature_id: str) -> str:
    return f"{_collection_path(site_id, layer)}/items/{quote(feature_id, safe='')}"


def _crs_header(cs: ogc.CoordinateSystem) -> str:
    return f"<{cs.uri}>"


# --- parameters --------------------------------------------------------------------------------


def _only(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """The query parameters, each at most once; an unknown one answers 400 (Part 1 says so)."""
    allowed = tuple(allowed)
    found: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        field = key or "query"
        if key not in allowed:
            shown = ", ".join(allowed) or "none"
            raise ogc.BadParameter(
                f"unknown parameter {key!r}",
                errors=[FieldError(field, f"not a parameter here; the parameters are: {shown}")],
            )
        if key in found:
            raise ogc.BadParameter(f"{key} given twice", errors=[FieldError(field, "give it once")])
        found[key] = value
    if found.get("f", "json") not in JSON_FORMATS:
        raise ogc.BadParameter(
            "only JSON is served here", errors=[FieldError("f", "json (GeoJSON for features)")]
        )
    return found


def _visible(principal: Principal, db: Database, collection_id: str) -> tuple[Site, Layer]:
    """The site and layer of a collection the caller may read; 404 for any other (a site the
    caller holds no role on is not told apart from one that does not exist)."""
    parsed = ogc.parse_collection_id(collection_id)
    if parsed is None or not principal.sees(parsed[0]):
        raise NotFound(
            f"no collection {collection_id!r}",
            errors=[FieldError("collection", "see /ogc/collections; ids are {site}.{layer}")],
        )
    site_id, layer = parsed
    return get_site(db, site_id), layer


def _editable(principal: Principal, db: Database, collection_id: str) -> tuple[Site, Layer]:
    """As :func:`_visible`, and the caller must be a planner at the site (else 403)."""
    site, layer = _visible(principal, db, collection_id)
    check_roles(principal, frozenset({Role.PLANNER}), site.id)
    return site, layer


def _encode_cursor(direction: str, feature_id: str) -> str:
    raw = (direction + feature_id).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(text: str) -> tuple[str | None, str | None]:
    """(after, before) from a cursor of a next or prev link."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if len(raw) < 2 or raw[0] not in "ab" or not raw.isprintable():
        raise ogc.BadParameter(
            "bad cursor", errors=[FieldError("cursor", "take it from a next or prev link")]
        )
    return (raw[1:], None) if raw[0] == "a" else (None, raw[1:])


# --- the landing page, conformance, collections -------------------------------------------------


@router.get(
    "",
    summary="OGC API - Features: the landing page",
    responses=BAD_PARAMETER,
    response_class=Response,
)
def landing_page(reader: AnyReaderDep, request: Request) -> Response:
    _only(request, ["f"])
    return _json(
        {
            "title": "Rallypoint",
            "description": "The site model of every site you hold a role on: zones, resources, "
            "sensors, people, the network, the basemap and receptors, one collection per site "
            "and layer ({site}.{layer}). Planners edit through Part 4.",
            "links": [
                _link(_url(request, "/ogc"), "self", JSON, "This document"),
                _link(
                    _url(request, "/openapi.json"),
                    "service-desc",
                    OPENAPI_31,
                    "The API definition (OpenAPI 3.1)",
                ),
                _link(_url(request, "/docs"), "service-doc", "text/html", "The API documentation"),
                _link(_url(request, "/ogc/conformance"), "conformance", JSON, "Conformance"),
                _link(
                    _url(request, "/ogc/collections"),
                    "data",
                    JSON,
                    "The collections: one per site and layer",
                ),
            ],
        }
    )


@router.get(
    "/conformance",
    summary="The conformance classes this API implements",
    responses=BAD_PARAMETER,
    response_class=Response,
)
def conformance(reader: AnyReaderDep, request: Request) -> Response:
    _only(request, ["f"])
    return _json({"conformsTo": CONFORMANCE})


def _collection(request: Request, site: Site, layer: Layer, extent: ogc.Extent) -> dict[str, Any]:
    path = _collection_path(site.id, layer)
    spatial: dict[str, Any] = {"bbox": [list(extent.bbox)], "crs": ogc.CRS84}
    described: dict[str, Any] = {"spatial": spatial}
    if extent.interval is not None:
        ends = [t.astimezone(UTC).isoformat() if t else None for t in extent.interval]
        described["temporal"] = {"interval": [ends], "trs": ogc.GREGORIAN}
    geometry = layer.geometry_type.lower() if layer.geometry_type != "Geometry" else "feature"
    return {
        "id": ogc.collection_id(site.id, layer.name),
        "title": f"{site.name}: {layer.name}",
        "description": f"The {layer.name} of site {site.id}, each a {geometry} with "
        f"{', '.join(layer.fields)}; every feature has a version (its ETag).",
        "itemType": "feature",
        "extent": described,
        "crs": [cs.uri for cs in ogc.coordinate_systems(site)],
        "storageCrs": ogc.CRS84,
        "links": [
            _link(_url(request, path), "self", JSON, "This collection"),
            _link(_url(request, f"{path}/items"), "items", GEOJSON, "Its features"),
            _link(
                _url(request, f"{path}/queryables"),
                QUERYABLES_REL,
                SCHEMA_JSON,
                "What ?name=value filters on",
            ),
        ],
    }


@router.get(
    "/collections",
    summary="Every layer of every site you hold a role on",
    responses=BAD_PARAMETER,
    response_class=Response,
)
def collections(reader: AnyReaderDep, db: DatabaseDep, request: Request) -> Response:
    _only(request, ["f"])
    listed = []
    sites = [site for site, _ in list_sites(db) if reader.sees(site.id)]
    with db.read() as session:
        for site in sites:
            for layer in LAYERS.values():
                extent = ogc.layer_extent(db, session, site, layer)
                listed.append(_collection(request, site, layer, extent))
    return _json(
        {
            "links": [_link(_url(request, "/ogc/collections"), "self", JSON, "The collections")],
            "collections": listed,
        }
    )


@router.get(
    "/collections/{collection_id}",
    summary="A collection: one layer of one site",
    responses=BAD_PARAMETER,
    response_class=Response,
)
def collection(
    reader: AnyReaderDep, db: DatabaseDep, request: Request, collection_id: str
) -> Response:
    site, layer = _visible(reader, db, collection_id)
    _only(request, ["f"])
    with db.read() as session:
        extent = ogc.layer_extent(db, session, site, layer)
    return _json(_collection(request, site, layer, extent))


@router.get(
    "/collections/{collection_id}/queryables",
    summary="The attributes that ?name=value filters the items on (JSON Schema)",
    responses=BAD_PARAMETER,
    response_class=Response,
)
def queryables(
    reader: AnyReaderDep, db: DatabaseDep, request: Request, collection_id: str
) -> Response:
    site, layer = _visible(reader, db, collection_id)
    _only(request, ["f"])
    path = f"{_collection_path(site.id, layer)}/queryables"
    return _json(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": _url(request, path),
            "type": "object",
            "title": f"{site.name}: {layer.name}",
            "properties": ogc.queryables(layer),
            "additionalProperties": False,
        },
        media_type=SCHEMA_JSON,
    )


# --- items -------------------------------------------------------------------------------------


@router.get(
    "/collections/{collection_id}/items",
    summary="A page of a collection's features (GeoJSON), with next and prev links",
    description="Filter by `bbox`, `datetime` and attribute equality on the queryables, e.g. "
    "`?kind=hydrant,extinguisher&status=available`. Pages are cut by id: follow the `next` "
    "link. Any other parameter answers 400.",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}, **BAD_PARAMETER},
    openapi_extra=ITEMS_OPENAPI,
)
def items(
    reader: AnyReaderDep,
    db: DatabaseDep,
    request: Request,
    collection_id: str,
) -> Response:
    site, layer = _visible(reader, db, collection_id)
    params: dict[str, str] = {}
    filters: dict[str, str] = {}
    for key, value in request.query_params.multi_items():  # ?kind=a&kind=b means a or b
        if key in layer.fields:
            filters[key] = f"{filters[key]},{value}" if key in filters else value
        else:
            params.update(_only_one(key, value, params, layer))
    cs = ogc.resolve_crs(site, params.get("crs"), field="crs")
    bbox_cs = ogc.resolve_crs(site, params.get("bbox-crs"), field="bbox-crs")
    window = ogc.parse_window(params["bbox"], bbox_cs) if "bbox" in params else None
    interval = ogc.parse_datetime(params["datetime"]) if "datetime" in params else None
    limit = ogc.parse_limit(params.get("limit", str(ogc.DEFAULT_LIMIT)))
    after, before = _decode_cursor(params["cursor"]) if "cursor" in params else (None, None)
    try:
        page = ogc.items_page(
            db,
            site.id,
            layer.name,
            window=window,
            filters=filters,
            interval=interval,
            limit=limit,
            after=after,
            before=before,
            cs=cs,
        )
    except InvalidInput as exc:  # a bad filter value: 400 here, as OGC API Features says
        raise ogc.bad_parameter(exc) from None
    path = f"{_collection_path(site.id, layer)}/items"
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    links = [
        _link(str(request.url), "self", GEOJSON, "This page"),
        _link(_url(request, _collection_path(site.id, layer)), "collection", JSON, "Collection"),
    ]
    if page.next_after is not None:
        cursor = _encode_cursor("a", page.next_after)
        links.append(
            _link(_url(request, path, [*kept, ("cursor", cursor)]), "next", GEOJSON, "Next page")
        )
    if page.prev_before is not None:
        cursor = _encode_cursor("b", page.prev_before)
        links.append(
            _link(
                _url(request, path, [*kept, ("cursor", cursor)]), "prev", GEOJSON, "Previous page"
            )
        )
    now = request.app.state.post.clock.now().astimezone(UTC)
    body = {
        "type": "FeatureCollection",
        "features": page.features,
        "numberMatched": page.matched,
        "numberReturned": len(page.features),
        "timeStamp": now.isoformat().replace("+00:00", "Z"),
        "links": links,
    }
    queryables_url = _url(request, f"{_collection_path(site.id, layer)}/queryables")
    headers = {
        "Content-Crs": _crs_header(cs),
        "Link": f'<{queryables_url}>; rel="{QUERYABLES_REL}"; type="{SCHEMA_JSON}"',
    }
    return _json(body, media_type=GEOJSON, headers=headers)


def _only_one(key: str, value: str, seen: dict[str, str], layer: Layer) -> dict[str, str]:
    """``key=value`` as an items parameter that is not a queryable: known, and given once."""
    field = key or "query"
    if key not in ITEMS_PARAMETERS:
        raise ogc.BadParameter(
            f"unknown parameter {key!r}",
            errors=[
                FieldError(
                    field,
                    "not a parameter of items: " + ", ".join([*ITEMS_PARAMETERS, *layer.fields]),
                )
            ],
        )
    if key in seen:
        raise ogc.BadParameter(f"{key} given twice", errors=[FieldError(field, "give it once")])
    if key == "f" and value not in JSON_FORMATS:
        raise ogc.BadParameter(
            "only JSON is served here", errors=[FieldError("f", "json (GeoJSON for features)")]
        )
    return {key: value}


def _feature_answer(
    request: Request,
    site: Site,
    layer: Layer,
    feature: Feature,
    cs: ogc.CoordinateSystem,
) -> dict[str, Any]:
    body = ogc.feature_geojson(feature, cs)
    body["links"] = [
        _link(
            _url(request, _item_path(site.id, layer, feature.id)), "self", GEOJSON, "This feature"
        ),
        _link(_url(request, _collection_path(site.id, layer)), "collection", JSON, "Collection"),
    ]
    return body


def _feature_response(
    body: dict[str, Any], version: int, cs: ogc.CoordinateSystem, *, status: int = 200
) -> Response:
    headers = {"ETag": f'"{version}"', "Content-Crs": _crs_header(cs)}
    return _json(body, media_type=GEOJSON, status=status, headers=headers)


@router.get(
    "/collections/{collection_id}/items/{feature_id}",
    summary="A feature (its version is its ETag)",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}, **BAD_PARAMETER},
)
def item(
    reader: AnyReaderDep,
    db: DatabaseDep,
    request: Request,
    collection_id: str,
    feature_id: str,
) -> Response:
    site, layer = _visible(reader, db, collection_id)
    params = _only(request, ["f", "crs"])
    cs = ogc.resolve_crs(site, params.get("crs"), field="crs")
    feature = layers.get_feature(db, site.id, layer.name, feature_id)
    body = _feature_answer(request, site, layer, feature, cs)
    return _feature_response(body, feature.version, cs)


# --- changes (Part 4) ---------------------------------------------------------------------------


def _reported(
    request: Request, site: Site, report: layers.EditReport, response: Response
) -> Response:
    """What the write reported besides the feature, as the layers API gives it: topology
    warnings (members ``warnings`` and ``violations``, header ``Rallypoint-Warning``), a stale
    edit merged (member ``merged``, header ``Rallypoint-Merged``); then the site model and the
    active incidents follow the change (``_replanned``, which adds to the warning header)."""
    _warned(None, response, report.violations)
    if report.merged is not None:
        response.headers[MERGED_HEADER] = merged_header(report.merged)
    return _replanned(request, site.id, response)


def _answered(answer: dict[str, Any], report: layers.EditReport) -> dict[str, Any]:
    """The feature's GeoJSON with the write's report as foreign members."""
    if report.merged is not None:  # a stale edit, merged: the client learns with what
        answer["merged"] = report.merged
    _warned(answer, None, report.violations)
    return answer


def _written(
    request: Request,
    site: Site,
    layer: Layer,
    body: dict[str, Any],
    content_crs: str | None,
    write: Callable[[Mapping[str, Any], layers.EditReport], Feature],
    *,
    created: bool = False,
) -> Response:
    """A create, replace or update (Part 4): the body's geometry from its ``Content-Crs`` to
    CRS84, then ``write`` it; the answer is the feature as written (CRS84) with its ETag and
    the write's report, and for a ``created`` one 201 and its Location."""
    data = ogc.geometry_to_crs84(body, ogc.resolve_crs(site, content_crs, field="Content-Crs"))
    report = layers.EditReport()
    feature = write(data, report)
    answer = _answered(_feature_answer(request, site, layer, feature, ogc.DEFAULT_CRS), report)
    status = 201 if created else 200
    response = _feature_response(answer, feature.version, ogc.DEFAULT_CRS, status=status)
    if created:
        response.headers["Location"] = _url(request, _item_path(site.id, layer, feature.id))
    return _reported(request, site, report, response)


@router.post(
    "/collections/{collection_id}/items",
    status_code=201,
    summary="Create a feature (planners); the answer's Location and ETag name it",
    response_class=Response,
    responses={201: {"content": {GEOJSON: {}}}, **BAD_PARAMETER},
)
def create_item(
    planner: PlannerAnywhereDep,
    db: DatabaseDep,
    request: Request,
    collection_id: str,
    body: Annotated[dict[str, Any], Body()],
    content_crs: ContentCrsHeader = None,
) -> Response:
    site, layer = _editable(planner, db, collection_id)
    _only(request, [])

    def create(data: Mapping[str, Any], report: layers.EditReport) -> Feature:
        return layers.create_feature(
            db, site.id, layer.name, data, actor=planner.username, report=report
        )

    return _written(request, site, layer, body, content_crs, create, created=True)


@router.put(
    "/collections/{collection_id}/items/{feature_id}",
    operation_id="ogc_replace_item",
    summary="Replace a feature (planners; If-Match with its ETag, or properties.version)",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}, **BAD_PARAMETER},
)
@router.patch(
    "/collections/{collection_id}/items/{feature_id}",
    operation_id="ogc_update_item",
    summary="Update a feature with a JSON merge patch (planners; If-Match with its ETag)",
    description="Attributes left out keep their values; `null` restores the default; a "
    "`geometry` replaces the geometry.",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}, **BAD_PARAMETER},
)
def change_item(
    planner: PlannerAnywhereDep,
    db: DatabaseDep,
    if_match: IfMatchDep,
    request: Request,
    collection_id: str,
    feature_id: str,
    body: Annotated[dict[str, Any], Body()],
    content_crs: ContentCrsHeader = None,
) -> Response:
    site, layer = _editable(planner, db, collection_id)
    _only(request, [])

    def change(data: Mapping[str, Any], report: layers.EditReport) -> Feature:
        return layers.replace_feature(
            db,
            site.id,
            layer.name,
            feature_id,
            data,
            actor=planner.username,
            if_match=if_match,
            partial=request.method == "PATCH",
            report=report,
        )

    return _written(request, site, layer, body, content_crs, change)


@router.delete(
    "/collections/{collection_id}/items/{feature_id}",
    status_code=204,
    summary="Delete a feature (planners; If-Match with its ETag)",
    description="Answers 204, or 200 with `warnings` and `violations` when the deletion cuts "
    "a door or muster point off the foot network (the topology rules).",
    response_class=Response,
    responses={200: {"content": {JSON: {}}}, **BAD_PARAMETER},
)
def delete_item(
    planner: PlannerAnywhereDep,
    db: DatabaseDep,
    if_match: IfMatchDep,
    request: Request,
    collection_id: str,
    feature_id: str,
) -> Response:
    site, layer = _editable(planner, db, collection_id)
    _only(request, [])
    if if_match is None:
        current = layers.get_feature(db, site.id, layer.name, feature_id)
        raise VersionRequired(
            f"say which version of {layer.name} feature {feature_id!r} you are deleting: "
            f'send If-Match: "{current.version}" (its ETag) if that is the version you saw',
            errors=[FieldError("If-Match", "required: the feature's ETag")],
        )
    report = layers.EditReport()
    layers.delete_feature(
        db,
        site.id,
        layer.name,
        feature_id,
        actor=planner.username,
        version=if_match,
        source="header",
        report=report,
    )
    if not report.violations:
        return _reported(request, site, report, Response(status_code=204))
    # A body to carry the topology warnings in words (204 has none), as the layers API does.
    answer = _answered({}, report)
    return _reported(request, site, report, _json(answer))


# QGIS asks OPTIONS which methods the items take, and offers only the edits Allow lists. PATCH
# and DELETE are served but not listed: QGIS sends them without a version (no If-Match, no
# properties.version), so each would be refused (428) at the end of an editing session. With PUT
# it sends the whole feature, with the version it read; deleting is left to the wall's editor
# and to clients that send If-Match (OWSLib, curl).


@router.options(
    "/collections/{collection_id}/items",
    summary="The methods the items take from you (Allow)",
    status_code=204,
)
def items_options(reader: AnyReaderDep, db: DatabaseDep, collection_id: str) -> Response:
    site, _ = _visible(reader, db, collection_id)
    methods = ["GET", "OPTIONS"] + (["POST"] if Role.PLANNER in reader.roles_at(site.id) else [])
    return Response(status_code=204, headers={"Allow": ", ".join(methods)})


@router.options(
    "/collections/{collection_id}/items/{feature_id}",
    summary="The methods a feature takes from you (Allow)",
    status_code=204,
)
def item_options(
    reader: AnyReaderDep, db: DatabaseDep, collection_id: str, feature_id: str
) -> Response:
    site, _ = _visible(reader, db, collection_id)
    editable = Role.PLANNER in reader.roles_at(site.id)
    methods = ["GET", "OPTIONS"] + (["PUT"] if editable else [])
    return Response(status_code=204, headers={"Allow": ", ".join(methods)})
