"""Sites: list, read, create."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from command.deps import AnyReaderDep, DatabaseDep, PlannerDep, ReaderDep
from gis import sites
from gis.layers import feature_counts
from gis.model import LAYERS

router = APIRouter(prefix="/api/sites", tags=["sites"])

SITE_EXAMPLE = {
    "id": "north-works",
    "name": "North works",
    "timezone": "Asia/Shanghai",
    "crs": "EPSG:4549",
    "boundary": {
        "type": "Polygon",
        "coordinates": [[[121.3, 30.7], [121.31, 30.7], [121.31, 30.71], [121.3, 30.7]]],
    },
}


@router.get("", summary="The sites you hold a role on, with the feature count of each layer")
def list_sites(reader: AnyReaderDep, db: DatabaseDep) -> dict[str, Any]:
    listed = [(s, c) for s, c in sites.list_sites(db) if reader.sees(s.id)]
    return {"sites": [site.to_json(counts=counts) for site, counts in listed]}


@router.post("", status_code=201, summary="Create a site")
def create_site(
    planner: PlannerDep,
    db: DatabaseDep,
    response: Response,
    body: Annotated[dict[str, Any], Body(openapi_examples={"site": {"value": SITE_EXAMPLE}})],
) -> dict[str, Any]:
    with db.write() as session:
        site = sites.create_site(session, body, actor=planner.username)
    response.headers["Location"] = f"/api/sites/{site.id}"
    return site.to_json(counts=dict.fromkeys(LAYERS, 0))


@router.get("/{site_id}", summary="A site, with the feature count of each layer")
def get_site(reader: ReaderDep, db: DatabaseDep, site_id: str) -> dict[str, Any]:
    with db.read() as session:
        site = sites.load_site(session, site_id)
        return site.to_json(counts=feature_counts(session, site_id))
