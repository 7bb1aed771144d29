"""Bad input gets a clear 4xx and changes nothing: the cases a review found, on both backends."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from command.deps import parse_if_match
from gis import layers
from gis.errors import InvalidInput, PreconditionFailed, UnsupportedFormat, VersionConflict
from gis.layer_io import FileFormat, ImportMode, export_layer, format_from_path, import_file
from gis.sites import create_site, delete_site
from gis.storage.db import Database
from tests.conftest import DEMO_ID, sign_in
from tests.problems import assert_problem

BASE = f"/api/sites/{DEMO_ID}/layers"
POINT = {"type": "Point", "coordinates": [121.35, 30.72]}


def resource(**props: Any) -> dict[str, Any]:
    return {"type": "Feature", "id": "R-bad", "geometry": POINT, "properties": props}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (resource(kind="scba", quantity=10**20), "properties.quantity"),
        (resource(kind="scba", quantity=True), "properties.quantity"),
        (resource(kind="scba", name="a\x00b"), "properties.name"),
        (
            {**resource(kind="scba"), "geometry": {"type": "Point", "coordinates": [True, False]}},
            "geometry",
        ),
        (
            {**resource(kind="scba"), "geometry": {"type": "Point", "coordinates": ["121", "30"]}},
            "geometry",
        ),
    ],
)
def test_values_that_would_be_coerced_or_overflow(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    assert_problem(client.post(f"{BASE}/resources", json=body), 422, field=field)


def test_nan_and_infinity_are_refused(client: TestClient) -> None:
    sensor = {
        "type": "Feature",
        "geometry": POINT,
        "properties": {"kind": "gas", "substance": "Cl2", "unit": "ppm", "alarm": "NaN"},
    }
    raw = json.dumps(sensor).replace('"NaN"', "NaN").encode()
    response = client.post(
        f"{BASE}/sensors", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, field="properties.alarm")
    edge = json.dumps(
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[121.35, 30.72], [121.351, 30.72]]},
            "properties": {"capacity": 1e999},
        }
    ).replace("inf", "1e999")
    assert "Infinity" in edge or "1e999" in edge
    response = client.post(
        f"{BASE}/network", content=edge.encode(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, field="properties.capacity")


def test_versions_that_are_not_whole_numbers(client: TestClient) -> None:
    url = f"{BASE}/zones/features/Z-001"
    for version in ("1e400", "true", "1.5", "-1"):
        raw = b'{"properties": {"capacity": 3, "version": ' + version.encode() + b"}}"
        response = client.patch(url, content=raw, headers={"content-type": "application/json"})
        assert_problem(response, 422, field="properties.version")
    for header in ("\u00b3", "99999999999999999999", "0"):
        with pytest.raises(InvalidInput):
            parse_if_match(header)


def test_times_at_the_edge_of_the_calendar(client: TestClient) -> None:
    person: dict[str, Any] = {
        "type": "Feature",
        "geometry": POINT,
        "properties": {
            "name": "A",
            "role": "operator",
            "employer": "X",
            "seen_at": "0001-01-01T00:30:00+01:00",
        },
    }
    assert_problem(client.post(f"{BASE}/people", json=person), 422, field="properties.seen_at")
    person["properties"]["seen_at"] = "2026-01-15T10:00:00+08:00"
    created = client.post(f"{BASE}/people", json=person).json()
    assert created["properties"]["seen_at"] == "2026-01-15T02:00:00+00:00"  # stored in UTC
    assert_problem(
        client.get(f"{BASE}/people", params={"seen_at": "0001-01-01T00:30:00+01:00"}),
        422,
        field="seen_at",
    )


def test_ids_with_nul_or_odd_characters_are_unknown(client: TestClient) -> None:
    assert_problem(client.get("/api/sites/x%00y"), 404)
    assert_problem(client.get(f"{BASE}/zones/features/a%00b"), 404)
    assert_problem(client.get(f"{BASE}/zones", params={"name": "a\x00b"}), 422, field="name")


def test_sites_that_cannot_be_served_are_not_stored(client: TestClient) -> None:
    polar = {
        "id": "polar",
        "name": "Polar",
        "boundary": {
            "type": "Polygon",
            "coordinates": [[[10.0, 85.0], [10.1, 85.0], [10.1, 85.1], [10.0, 85.0]]],
        },
    }
    assert_problem(client.post("/api/sites", json=polar), 422, field="crs")
    assert client.get("/api/sites").status_code == 200
    assert_problem(client.get("/api/sites/polar"), 404)
    extra = {
        **polar,
        "id": "extra",
        "boundary": {
            "type": "Polygon",
            "coordinates": [[[121.0, 30.0], [121.1, 30.0], [121.1, 30.1], [121.0, 30.0]]],
        },
        "colour": "red",
    }
    assert_problem(client.post("/api/sites", json=extra), 422, field="colour")
    assert_problem(client.post("/api/sites", json={**extra, "colour": None, "crs": 4549}), 422)


def test_repeated_filters_mean_either(client: TestClient) -> None:
    response = client.get(
        f"{BASE}/resources", params=[("kind", "fire_truck"), ("kind", "ambulance")]
    )
    kinds = {f["properties"]["kind"] for f in response.json()["features"]}
    assert kinds == {"fire_truck", "ambulance"}


def test_a_streamed_json_body_over_the_limit_is_413(db: Database) -> None:
    from command.app import create_app
    from command.settings import Settings

    app = create_app(Settings(max_request_bytes=2048), database=db)
    with TestClient(app, headers=sign_in(db, "tester")) as small:

        def chunks() -> Any:
            yield b'{"type": "Feature", "properties": {"name": "'
            for _ in range(10):
                yield b"x" * 1024
            yield b'"}}'

        response = small.post(
            f"{BASE}/zones", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_problem(response, 413, field="body")
        bad_utf8 = small.post(
            f"{BASE}/zones", content=b'{"a": "\xff"}', headers={"content-type": "application/json"}
        )
        assert_problem(bad_utf8, 400)  # not even text: FastAPI's 400, in our shape


# --- imports ------------------------------------------------------------------------------


def test_a_deleted_feature_does_not_come_back_from_an_old_file(db: Database) -> None:
    old = export_layer(db, DEMO_ID, "zones", FileFormat.GEOJSON)
    layers.delete_feature(db, DEMO_ID, "zones", "Z-001", actor="a", version=1)
    with pytest.raises(InvalidInput) as exc:
        import_file(db, DEMO_ID, "zones", old, FileFormat.GEOJSON, actor="b")
    assert exc.value.errors[0].field == "version"
    assert "deleted" in exc.value.errors[0].reason


def test_replace_mode_refuses_stale_versions(db: Database) -> None:
    old = export_layer(db, DEMO_ID, "zones", FileFormat.GEOJSON)
    layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        "Z-001",
        {"properties": {"capacity": 7}},
        actor="a",
        if_match=1,
        partial=True,
    )
    with pytest.raises(VersionConflict) as exc:
        import_file(
            db, DEMO_ID, "zones", old, FileFormat.GEOJSON, actor="b", mode=ImportMode.REPLACE
        )
    assert "stale" in exc.value.errors[0].reason
    assert layers.get_feature(db, DEMO_ID, "zones", "Z-001").properties["capacity"] == 7


def test_whole_feature_rules_name_the_properties(db: Database) -> None:
    detector = {"type": "Feature", "geometry": POINT, "properties": {"kind": "gas"}}
    body = json.dumps({"type": "FeatureCollection", "features": [detector]}).encode()
    with pytest.raises(InvalidInput) as exc:
        import_file(db, DEMO_ID, "sensors", body, FileFormat.GEOJSON, actor="x")
    assert {e.field for e in exc.value.errors} == {"properties"}


def test_unreadable_archives_and_files(db: Database, tmp_path: Path) -> None:
    deep = b"[" * 100_000
    cases: list[tuple[bytes, FileFormat]] = [(deep, FileFormat.GEOJSON)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/..", b"x")
        archive.writestr(".", b"x")
    cases.append((buffer.getvalue(), FileFormat.SHAPEFILE))
    table = tmp_path / "table.gpkg"
    pyogrio.write_dataframe(pd.DataFrame({"name": ["a"]}), table, driver="GPKG")
    cases.append((table.read_bytes(), FileFormat.GPKG))
    for data, fmt in cases:
        with pytest.raises(InvalidInput):
            import_file(db, DEMO_ID, "zones", data, fmt, actor="x")


def test_shapefiles_travel_zipped_and_never_cut_text(db: Database, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat):
        format_from_path(Path("zones.shp"))
    assert format_from_path(Path("ZONES.ZIP")) is FileFormat.SHAPEFILE
    long_name = "\u6c2f" * 150  # 450 bytes in UTF-8, allowed by the model (200 characters)
    layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        "Z-001",
        {"properties": {"name": long_name}},
        actor="a",
        if_match=1,
        partial=True,
    )
    with pytest.raises(InvalidInput) as exc:
        export_layer(db, DEMO_ID, "zones", FileFormat.SHAPEFILE)
    assert "GeoPackage" in exc.value.detail
    gpkg = tmp_path / "zones.gpkg"
    gpkg.write_bytes(export_layer(db, DEMO_ID, "zones", FileFormat.GPKG))
    frame = gpd.read_file(gpkg)
    assert long_name in set(frame["name"])


def test_deleting_a_site_logs_every_feature(db: Database) -> None:
    with db.write() as session:
        delete_site(session, DEMO_ID, actor="a")
    with db.read() as session:
        deleted = session.execute(
            text("SELECT count(*) FROM changes WHERE site_id = :s AND action = 'delete'"),
            {"s": DEMO_ID},
        ).scalar_one()
    assert deleted == 48 + 321 + 77 + 430 + 1716 + 51 + 3 + 1


# --- concurrency -------------------------------------------------------------------------


def test_two_planners_on_one_version_cannot_both_win(engine: Engine) -> None:
    # PostgreSQL: B waits on A's row lock (checked below). SQLite: writers are serialised
    # (one lock per database object, BEGIN IMMEDIATE between processes), so B runs after A.
    db = Database(engine)
    site = {
        "id": "race-site",
        "name": "Race",
        "boundary": {
            "type": "Polygon",
            "coordinates": [[[121.0, 30.0], [121.1, 30.0], [121.1, 30.1], [121.0, 30.0]]],
        },
    }
    with db.write() as session:
        create_site(session, site, actor="t")
    hydrant = {
        "type": "Feature",
        "id": "H1",
        "geometry": {"type": "Point", "coordinates": [121.05, 30.05]},
        "properties": {"kind": "hydrant"},
    }
    layers.create_feature(db, "race-site", "resources", hydrant, actor="t")
    outcome: dict[str, Any] = {}
    try:
        with db.write() as session:  # planner A holds version 1, row locked
            row = layers._load_row(
                session, layers.get_layer("resources"), "race-site", "H1", for_update=True
            )

            def planner_b() -> None:
                try:
                    layers.replace_feature(
                        db,
                        "race-site",
                        "resources",
                        "H1",
                        {"properties": {"quantity": 9}},
                        actor="b",
                        if_match=1,
                        partial=True,
                    )
                    outcome["b"] = "ok"
                except PreconditionFailed:
                    outcome["b"] = "refused"

            thread = threading.Thread(target=planner_b)
            thread.start()
            with engine.connect() as watcher:  # wait until B is blocked on A's row lock
                for _ in range(10_000 if engine.dialect.name == "postgresql" else 0):
                    waiting = watcher.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                    ).scalar_one()
                    if waiting:
                        break
            setattr(row, "quantity", 5)  # noqa: B010 - a resources row; FeatureRow is generic
            row.version += 1
        thread.join(timeout=30)
        assert outcome == {"b": "refused"}
        final = layers.get_feature(db, "race-site", "resources", "H1")
        assert (final.version, final.properties["quantity"]) == (2, 5)
    finally:
        with db.write() as session:
            delete_site(session, "race-site", actor="t")


def test_a_line_of_a_hundred_thousand_vertices_is_refused_and_nothing_is_stored(
    client: TestClient,
) -> None:
    """Issue 12's hostile edit: one walkway of many vertices passed validation and made every
    activation quadratic. Now it is refused with the reason, whole, and stored nowhere."""
    n = 100_000
    coords = [[121.345 + 0.01 * i / n, 30.719 + 0.00001 * (i % 2)] for i in range(n)]
    feature = {
        "type": "Feature",
        "id": "E-HOSTILE",
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": {"name": "walkway"},
    }
    answer = client.post(f"/api/sites/{DEMO_ID}/layers/network", json=feature)
    assert answer.status_code == 422, answer.text[:300]
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    [error] = problem["errors"]
    assert error["field"] == "geometry" and "100000 vertices" in error["reason"]
    assert client.get(f"/api/sites/{DEMO_ID}/layers/network/features/E-HOSTILE").status_code == 404
    ring = [[121.345 + 0.001 * (i / 6000), 30.719 + 0.001 * ((i % 2) / 6000)] for i in range(6000)]
    zone = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[*ring, [121.346, 30.72], ring[0]]]},
        "properties": {"name": "outline", "kind": "warehouse", "risk_grade": "blue"},
    }
    answer = client.post(f"/api/sites/{DEMO_ID}/layers/zones", json=zone)
    assert answer.status_code == 422, answer.text[:300]
    assert "at most 5000" in answer.json()["errors"][0]["reason"]
