"""The HTTP API over a real app (in-process client), on both backends."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from command.auth import Role
from command.routes.sites import SITE_EXAMPLE
from gis.storage.db import Database
from tests.conftest import DEMO_ID, sign_in
from tests.problems import assert_problem

BASE = f"/api/sites/{DEMO_ID}/layers"
HYDRANT: dict[str, Any] = {
    "type": "Feature",
    "id": "R-api-1",
    "geometry": {"type": "Point", "coordinates": [121.3502, 30.7199]},
    "properties": {"kind": "hydrant"},
}
MINIMUM = {"zones": 25, "resources": 150, "sensors": 60, "people": 400, "network": 1500}
MINIMUM |= {"basemap": 40, "receptors": 3}  # the surroundings, outside the fence


def test_sites_lists_the_demo_site_with_counts(client: TestClient) -> None:
    response = client.get("/api/sites")
    assert response.status_code == 200
    (site,) = [s for s in response.json()["sites"] if s["id"] == DEMO_ID]
    assert site["timezone"] == "Asia/Shanghai"
    assert site["metric_crs"] == "EPSG:32651"
    for layer, least in MINIMUM.items():
        assert site["layers"][layer] >= least, layer
    assert client.get(f"/api/sites/{DEMO_ID}").json()["layers"] == site["layers"]


@pytest.mark.parametrize("layer", list(MINIMUM))
def test_each_layer_is_valid_geojson(client: TestClient, layer: str) -> None:
    response = client.get(f"{BASE}/{layer}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert len(body["features"]) >= MINIMUM[layer]
    lon0, lat0, lon1, lat1 = body["bbox"]
    assert 121.3 < lon0 < lon1 < 121.4 and 30.7 < lat0 < lat1 < 30.74
    for feature in body["features"]:
        assert feature["type"] == "Feature" and isinstance(feature["id"], str)
        assert feature["properties"]["version"] >= 1
        geometry = feature["geometry"]
        assert geometry["type"] in {"Point", "LineString", "Polygon"}
        if geometry["type"] == "Polygon":  # RFC 7946: closed rings, lon/lat order
            ring = geometry["coordinates"][0]
            assert ring[0] == ring[-1] and 121 < ring[0][0] < 122


def test_layer_catalogue(client: TestClient) -> None:
    catalogue = client.get(BASE).json()["layers"]
    assert [entry["name"] for entry in catalogue] == list(MINIMUM)
    zones = catalogue[0]
    assert zones["geometry_type"] == "Polygon" and "risk_grade" in zones["fields"]


def test_filters_and_bbox(client: TestClient) -> None:
    trucks = client.get(f"{BASE}/resources", params={"kind": "fire_truck"}).json()["features"]
    assert trucks and {f["properties"]["kind"] for f in trucks} == {"fire_truck"}
    boxed = client.get(f"{BASE}/people", params={"bbox": "121.345,30.715,121.35,30.72"}).json()
    every = client.get(f"{BASE}/people").json()
    assert 0 < len(boxed["features"]) < len(every["features"])
    assert_problem(client.get(f"{BASE}/people", params={"bbox": "1,2"}), 422, field="bbox")
    assert_problem(client.get(f"{BASE}/people", params={"hair": "red"}), 422, field="hair")


def test_create_read_update_delete_with_versions(client: TestClient, db: Database) -> None:
    client.headers.update(sign_in(db, "planner-li", [Role.PLANNER]))
    created = client.post(f"{BASE}/resources", json=HYDRANT)
    assert created.status_code == 201
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"{BASE}/features/R-api-1".replace(
        BASE, f"/api/sites/{DEMO_ID}/layers/resources"
    )
    url = f"{BASE}/resources/features/R-api-1"
    got = client.get(url)
    assert got.json()["properties"]["created_by"] == "planner-li" and got.headers["etag"] == '"1"'

    change = {**HYDRANT, "properties": {"kind": "hydrant", "status": "out_of_service"}}
    assert_problem(client.put(url, json=change), 428, field="version")
    put = client.put(url, json=change, headers={"If-Match": '"1"'})
    assert put.status_code == 200 and put.headers["etag"] == '"2"'
    # Another planner still on version 1: refused, nothing overwritten.
    other = {**HYDRANT, "properties": {"kind": "hydrant", "quantity": 3}}
    assert_problem(client.put(url, json=other, headers={"If-Match": '"1"'}), 412, field="version")
    # By body version, an edit of another attribute would be merged; this one changes the
    # status too, differently (tests/test_conflicts.py has the merges).
    stale_body = {**HYDRANT, "properties": {"kind": "hydrant", "status": "assigned", "version": 1}}
    assert_problem(client.put(url, json=stale_body), 409, field="version")
    assert client.get(url).json()["properties"]["status"] == "out_of_service"

    patched = client.patch(url, json={"properties": {"quantity": 2}}, headers={"If-Match": "2"})
    assert patched.status_code == 200 and patched.json()["properties"]["quantity"] == 2
    assert_problem(client.delete(url), 428, field="version")
    assert_problem(client.delete(url, params={"version": 1}), 409, field="version")
    assert client.delete(url, headers={"If-Match": '"3"'}).status_code == 204
    assert_problem(client.get(url), 404, field="id")


@pytest.mark.parametrize(
    ("feature", "field", "reason"),
    [
        ({**HYDRANT, "geometry": None}, "geometry", "required"),
        ({**HYDRANT, "geometry": {"type": "Point", "coordinates": [0, 0]}}, "geometry", "outside"),
        ({**HYDRANT, "geometry": {"type": "Polygon", "coordinates": []}}, "geometry", "empty"),
        ({**HYDRANT, "properties": {"kind": "x"}}, "properties.kind", "Input should be"),
        (
            {**HYDRANT, "properties": {"kind": "scba", "quantity": -1}},
            "properties.quantity",
            "greater than or equal",
        ),
        ({**HYDRANT, "id": "bad id!"}, "id", "letters"),
        ({**HYDRANT, "type": "Thing"}, "type", "Feature"),
    ],
)
def test_bad_features_are_refused_with_the_field(
    client: TestClient, feature: dict[str, Any], field: str, reason: str
) -> None:
    before = client.get(f"{BASE}/resources").json()["features"]
    body = assert_problem(client.post(f"{BASE}/resources", json=feature), 422, field=field)
    assert any(reason in e["reason"] for e in body["errors"] if e["field"] == field), body
    assert client.get(f"{BASE}/resources").json()["features"] == before


def test_error_paths_share_one_shape(client: TestClient) -> None:
    assert_problem(client.get("/api/sites/atlantis"), 404, field="site")
    assert_problem(client.get(f"/api/sites/{DEMO_ID}/layers/dragons"), 404, field="layer")
    assert_problem(client.get("/no/such/route"), 404)
    assert_problem(client.put("/api/sites"), 405)
    malformed = client.post(
        f"{BASE}/zones", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert_problem(malformed, 422)
    assert_problem(client.post(f"{BASE}/zones", json=[1, 2]), 422, field="body")
    assert_problem(
        client.put(f"{BASE}/zones/features/Z-001", json={}, headers={"If-Match": "soon"}),
        422,
        field="If-Match",
    )
    assert_problem(
        client.get(f"{BASE}/zones/export", params={"format": "kml"}), 415, field="format"
    )


def test_oversize_payloads_are_refused(db: Any) -> None:
    from command.app import create_app
    from command.settings import Settings

    app = create_app(Settings(max_request_bytes=2048), database=db)
    with TestClient(app, headers=sign_in(db, "tester")) as small:
        big = {**HYDRANT, "properties": {"kind": "hydrant", "name": "x" * 4000}}
        assert_problem(small.post(f"{BASE}/resources", json=big), 413, field="body")

        def chunks() -> Any:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 1024

        streamed = small.post(f"{BASE}/resources/import?format=geojson", content=chunks())
        assert_problem(streamed, 413)


def test_site_creation(client: TestClient) -> None:
    site = SITE_EXAMPLE  # the example the API docs show must work as shown
    created = client.post("/api/sites", json=site)
    assert created.status_code == 201 and created.json()["metric_crs"] == "EPSG:4549"
    assert_problem(client.post("/api/sites", json=site), 409, field="id")
    bad = {**site, "id": "Bad Id", "timezone": "Mars/Olympus", "crs": "EPSG:4326"}
    body = assert_problem(client.post("/api/sites", json=bad), 422)
    assert {e["field"] for e in body["errors"]} == {"id", "timezone", "crs"}


def test_import_and_export_over_http(client: TestClient) -> None:
    exported = client.get(f"{BASE}/zones/export", params={"format": "shp"})
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/zip"
    assert "demo-works-zones.shp.zip" in exported.headers["content-disposition"]
    assert zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    imported = client.post(
        f"{BASE}/zones/import", params={"format": "shp"}, content=exported.content
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["unchanged"] == 48

    gpkg = client.get(f"{BASE}/zones/export", params={"format": "gpkg"})
    assert gpkg.headers["content-type"] == "application/geopackage+sqlite3"
    by_type = client.post(
        f"{BASE}/zones/import",
        content=gpkg.content,
        headers={"content-type": "application/geopackage+sqlite3"},
    )
    assert by_type.json()["unchanged"] == 48

    bad = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]}
    body = assert_problem(
        client.post(f"{BASE}/zones/import", params={"format": "geojson"}, content=json.dumps(bad)),
        422,
        field="geometry",
        row=1,
    )
    assert {e["field"] for e in body["errors"]} >= {"name", "kind", "geometry"}
    assert_problem(
        client.post(f"{BASE}/zones/import?format=geojson", content=b""), 422, field="body"
    )
    assert_problem(
        client.post(f"{BASE}/zones/import", content=b"x", headers={"content-type": "text/plain"}),
        415,
    )


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/sites/{site_id}/layers/{layer}/features/{feature_id}" in paths


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/static/main.js", "/api/sites", "/healthz", "/api/sites/nowhere"):
        answer = client.get(path)
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "no-referrer", path
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy and "connect-src 'self'" in policy, path
    # The API documentation is served locally, under the same policy (tests/test_docs_assets.py).
    assert client.get("/docs").headers["content-security-policy"] == policy
