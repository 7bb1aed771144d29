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
                "fields": layer.properties.model_json_schema()["properties"],
            }
            for layer in LAYERS.values()
        ]
    }


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
        response.headers[WARNING_HEADER] = (
            f"{warning['warning']}: {', '.join(warning['incidents'])}"
        )
    return response


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
    feature = layers.create_feature(db, site_id, layer, body, actor=planner.username)
    response = _geojson(feature.to_geojson(), version=feature.version, status=201)
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
    "refuses the import; the problem lists every bad row with its field and reason.",
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
        import_file, db, site_id, layer, data, fmt, actor=planner.username, mode=mode, limits=limits
    )
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


@router.put(
    "/{layer}/features/{feature_id}",
    operation_id="replace_feature",
    summary="Replace a feature (needs If-Match or properties.version)",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
@router.patch(
    "/{layer}/features/{feature_id}",
    operation_id="patch_feature",
    summary="Change some attributes or the geometry (JSON merge patch; needs a version)",
    description="Attributes left out keep their values; `null` restores the default.",
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
    feature = layers.replace_feature(
        db,
        site_id,
        layer,
        feature_id,
        body,
        actor=planner.username,
        if_match=if_match,
        partial=partial,
    )
    return _replanned(request, site_id, _geojson(feature.to_geojson(), version=feature.version))


@router.delete(
    "/{layer}/features/{feature_id}",
    status_code=204,
    summary="Delete a feature (needs If-Match or ?version=)",
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
    layers.delete_feature(
        db,
        site_id,
        layer,
        feature_id,
        actor=planner.username,
        version=if_match if if_match is not None else version,
        source="header" if if_match is not None else "body",
    )
    return _replanned(request, site_id, Response(status_code=204))
