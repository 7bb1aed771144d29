"""A site's layers as GeoJSON: list, read, create, replace, patch, delete, import, export."""

from __future__ import annotations

import json
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from shapely.geometry import shape

from command.deps import DatabaseDep, IfMatchDep, PlannerDep, ReaderDep
from gis import layers
from gis.errors import FieldError, InvalidInput
from gis.layer_io import (
    ArchiveLimits,
    FileFormat,
    ImportMode,
    export_layer,
    features_to_geojson,
    import_file,
    parse_format,
)
from gis.model import LAYERS
from gis.sites import load_site

router = APIRouter(prefix="/api/sites/{site_id}/layers", tags=["layers"])

GEOJSON = "application/geo+json"
RESERVED_QUERY = {"bbox"}

FEATURE_EXAMPLE = {
    "type": "Feature",
    "id": "R-hydrant-77",
    "geometry": {"type": "Point", "coordinates": [121.3502, 30.7199]},
    "properties": {"kind": "hydrant", "quantity": 1, "status": "available"},
}


def _geojson(body: dict[str, Any], *, version: int | None = None, status: int = 200) -> Response:
    headers = {"ETag": f'"{version}"'} if version is not None else None
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        media_type=GEOJSON,
        headers=headers,
    )


@router.get("", summary="The site's layers, their geometry types, attributes and counts")
def describe_layers(reader: ReaderDep, db: DatabaseDep, site_id: str) -> dict[str, Any]:
    with db.read() as session:
        load_site(session, site_id)
        counts = layers.feature_counts(session, site_id)
    return {
        "layers": [
            {
                "name": layer.name,
                "geometry_type": layer.geometry_type,
                "geometry_required": layer.geometry_required,
                "count": counts[layer.name],
                **_fields(layer.properties.model_json_schema()),
            }
            for layer in LAYERS.values()
        ]
    }


def _fields(schema: dict[str, Any]) -> dict[str, Any]:
    """A layer's attributes as JSON Schema ``fields`` (each ``$ref`` written out in place, so an
    enumeration's values are on its field, which is all a client needs to build a form) and the
    names ``required``."""
    defs = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: inline(value) for key, value in node.items() if key != "$ref"}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out = {**inline(defs[ref.removeprefix("#/$defs/")]), **out}
        return out

    return {"fields": inline(schema["properties"]), "required": schema.get("required", [])}


@router.get(
    "/{layer}",
    summary="A layer as a GeoJSON FeatureCollection",
    description="Filter by `bbox=minLon,minLat,maxLon,maxLat` (features intersecting it) and by "
    "attribute equality, e.g. `?kind=hydrant,extinguisher&status=available`.",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
def list_layer(
    reader: ReaderDep,
    db: DatabaseDep,
    request: Request,
    site_id: str,
    layer: str,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
) -> Response:
    filters: dict[str, str] = {}
    for key, value in request.query_params.multi_items():  # ?kind=a&kind=b means a or b
        if key not in RESERVED_QUERY:
            filters[key] = f"{filters[key]},{value}" if key in filters else value
    box = layers.parse_bbox(bbox) if bbox is not None else None
    features = layers.list_features(db, site_id, layer, bbox=box, filters=filters)
    collection = features_to_geojson(features)
    if features:
        collection["bbox"] = _bbox(collection)
    return _geojson(collection)


WARNING_HEADER = "Rallypoint-Warning"


def _replanned(request: Request, site_id: str, response: Response) -> Response:
    """After a layer write: the site model is rebuilt and active incidents are planned again
    on it now (their walls get an ``incident.network_changed`` event); the editor is warned."""
    warning = request.app.state.post.layer_changed(site_id)
    if warning is not None:
        said = response.headers.get(WARNING_HEADER)
        replan = f"{warning['warning']}: {', '.join(warning['incidents'])}"
        response.headers[WARNING_HEADER] = f"{said}; {replan}" if said else replan
    return response


#: Ids named in the ``Rallypoint-Warning`` header at most (the body lists every warning).
WARNED_IDS = 20


def _warned(
    answer: dict[str, Any] | None, response: Response | None, violations: list[dict[str, Any]]
) -> None:
    """A write's topology warnings: in the body as foreign members ``warnings`` (words) and
    ``violations`` (data), and in the ``Rallypoint-Warning`` header by rule and feature id, which
    are ASCII (the names, often Chinese, are not, and stay in the body)."""
    if not violations:
        return
    if answer is not None:
        answer["warnings"] = [v["reason"] for v in violations]
        answer["violations"] = violations
    if response is not None:
        by_rule: dict[str, list[str]] = {}
        for v in violations:
            by_rule.setdefault(str(v["rule"]), []).append(str(v["id"] or "new"))
        text = "; ".join(
            f"topology {rule}: {', '.join(ids[:WARNED_IDS])}"
            + (f" and {len(ids) - WARNED_IDS} more" if len(ids) > WARNED_IDS else "")
            for rule, ids in by_rule.items()
        )
        response.headers[WARNING_HEADER] = text


def _bbox(collection: dict[str, Any]) -> list[float]:
    geoms = [shape(f["geometry"]) for f in collection["features"] if f["geometry"] is not None]
    return [float(v) for v in shapely.total_bounds(geoms)] if geoms else []


@router.post(
    "/{layer}",
    status_code=201,
    summary="Create a feature",
    response_class=Response,
    responses={201: {"content": {GEOJSON: {}}}},
)
def create_feature(
    planner: PlannerDep,
    db: DatabaseDep,
    request: Request,
    site_id: str,
    layer: str,
    body: Annotated[dict[str, Any], Body(openapi_examples={"hydrant": {"value": FEATURE_EXAMPLE}})],
) -> Response:
    report = layers.EditReport()
    feature = layers.create_feature(db, site_id, layer, body, actor=planner.username, report=report)
    answer = feature.to_geojson()
    _warned(answer, None, report.violations)
    response = _geojson(answer, version=feature.version, status=201)
    _warned(None, response, report.violations)
    response.headers["Location"] = f"/api/sites/{site_id}/layers/{layer}/features/{feature.id}"
    return _replanned(request, site_id, response)


@router.get(
    "/{layer}/export",
    summary="Export a layer as GeoJSON, GeoPackage or a zipped Shapefile (for QGIS)",
    response_class=Response,
)
def export(
    reader: ReaderDep,
    db: DatabaseDep,
    site_id: str,
    layer: str,
    format: Annotated[str, Query(description="geojson, gpkg or shp")] = "geojson",
) -> Response:
    fmt = parse_format(format)
    data = export_layer(db, site_id, layer, fmt)
    filename = f"{site_id}-{layer}{fmt.suffix}"
    return Response(
        data,
        media_type=fmt.media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/{layer}/import",
    summary="Import a layer file, all or nothing",
    description="The request body is the file itself (GeoJSON FeatureCollection, GeoPackage, or "
    "a zip of a Shapefile). `mode=merge` adds new features and updates existing ones, which must "
    "carry their current `version`; `mode=replace` makes the file the whole layer. Any bad row "
    "refuses the import; the problem lists every bad row with its field and reason. A row of a "
    "version others changed since refuses it too (409, each conflict listed in `conflicts`: "
    "who changed what, mergeable or not) unless `merge=true`.",
)
async def import_layer(
    planner: PlannerDep,
    db: DatabaseDep,
    request: Request,
    response: Response,
    site_id: str,
    layer: str,
    format: Annotated[str | None, Query(description="geojson, gpkg or shp")] = None,
    mode: ImportMode = ImportMode.MERGE,
    merge: Annotated[
        bool,
        Query(
            description="Rows others changed since the file was read: merge the ones whose "
            "edits touched other attributes, skip (and list) the rest, apply everything else."
        ),
    ] = False,
) -> dict[str, Any]:
    fmt = parse_format(format) if format else _format_from_content_type(request)
    data = await request.body()
    if not data:
        raise InvalidInput("the request body is empty", errors=[FieldError("body", "empty")])
    settings = request.app.state.settings
    limits = ArchiveLimits(
        max_bytes=settings.max_unzipped_bytes, max_ratio=settings.max_unzip_ratio
    )
    report = await run_in_threadpool(
        import_file,
        db,
        site_id,
        layer,
        data,
        fmt,
        actor=planner.username,
        mode=mode,
        limits=limits,
        merge=merge,
    )
    _warned(None, response, report.violations)
    await run_in_threadpool(_replanned, request, site_id, response)
    return report.to_json()


def _format_from_content_type(request: Request) -> FileFormat:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    for fmt in FileFormat:
        if content_type == fmt.media_type:
            return fmt
    if content_type == "application/json":
        return FileFormat.GEOJSON
    return parse_format(content_type or "(none)")


@router.get(
    "/{layer}/features/{feature_id}",
    summary="A feature (its version is also the ETag)",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
def get_feature(
    reader: ReaderDep, db: DatabaseDep, site_id: str, layer: str, feature_id: str
) -> Response:
    feature = layers.get_feature(db, site_id, layer, feature_id)
    return _geojson(feature.to_geojson(), version=feature.version)


STALE_EDITS = (
    "An edit of an older version is merged with what changed since when the two edits changed "
    "different attributes (the geometry counts as one): given as `properties.version`, the "
    "merge is applied and announced (header `Rallypoint-Merged`, member `merged`); given as "
    "`If-Match`, it answers 412 with the merge proposed in `conflict.merged`. Edits that changed "
    "the same attribute differently answer 409 (412 for If-Match) naming who changed what."
)


@router.put(
    "/{layer}/features/{feature_id}",
    operation_id="replace_feature",
    summary="Replace a feature (needs If-Match or properties.version)",
    description=STALE_EDITS,
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
@router.patch(
    "/{layer}/features/{feature_id}",
    operation_id="patch_feature",
    summary="Change some attributes or the geometry (JSON merge patch; needs a version)",
    description="Attributes left out keep their values; `null` restores the default. "
    + STALE_EDITS,
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
def change_feature(
    planner: PlannerDep,
    db: DatabaseDep,
    if_match: IfMatchDep,
    request: Request,
    site_id: str,
    layer: str,
    feature_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> Response:
    partial = request.method == "PATCH"
    report = layers.EditReport()
    feature = layers.replace_feature(
        db,
        site_id,
        layer,
        feature_id,
        body,
        actor=planner.username,
        if_match=if_match,
        partial=partial,
        report=report,
    )
    answer = feature.to_geojson()
    if report.merged is not None:  # a stale edit, merged: the client learns with what
        answer["merged"] = report.merged
    _warned(answer, None, report.violations)
    response = _geojson(answer, version=feature.version)
    _warned(None, response, report.violations)
    if report.merged is not None:
        response.headers[MERGED_HEADER] = merged_header(report.merged)
    return _replanned(request, site_id, response)


MERGED_HEADER = "Rallypoint-Merged"


def merged_header(merged: dict[str, Any]) -> str:
    """The ``Rallypoint-Merged`` header: versions and field names only, so always ASCII."""
    theirs = ",".join(str(t["version"]) for t in merged["theirs"])
    return (
        f"version {merged['base']} merged with {theirs or 'none'}"
        f" ({', '.join(merged['fields_theirs']) or 'no field'});"
        f" yours: {', '.join(merged['fields_mine']) or 'no field'};"
        f" now version {merged['version']}"
    )


@router.delete(
    "/{layer}/features/{feature_id}",
    status_code=204,
    summary="Delete a feature (needs If-Match or ?version=)",
    description="Answers 204, or 200 with `warnings` and `violations` when the deletion cuts "
    "a door or muster point off the foot network (the topology rules).",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def delete_feature(
    planner: PlannerDep,
    db: DatabaseDep,
    if_match: IfMatchDep,
    request: Request,
    site_id: str,
    layer: str,
    feature_id: str,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    report = layers.EditReport()
    layers.delete_feature(
        db,
        site_id,
        layer,
        feature_id,
        actor=planner.username,
        version=if_match if if_match is not None else version,
        source="header" if if_match is not None else "body",
        report=report,
    )
    response = Response(status_code=204)
    if report.violations:  # a body to carry the warnings in words (204 has none)
        answer: dict[str, Any] = {}
        _warned(answer, None, report.violations)
        response = Response(json.dumps(answer, ensure_ascii=False), media_type="application/json")
        _warned(None, response, report.violations)
    return _replanned(request, site_id, response)
