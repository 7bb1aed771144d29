"""Import and export: GeoJSON, GeoPackage and Shapefile round trips; all-or-nothing imports."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pyogrio
import pytest

from gis import layers
from gis.errors import InvalidInput, RallypointError, UnsupportedFormat, VersionConflict
from gis.layer_io import (
    FileFormat,
    ImportMode,
    export_layer,
    import_file,
    parse_format,
)
from gis.model import ANY_GEOMETRY, LAYERS
from gis.storage.db import Database
from gis.storage.tables import ChangeRow
from tests.conftest import DEMO_ID


def snapshot(db: Database, layer: str) -> dict[str, tuple[Any, ...]]:
    return {
        f.id: (f.geometry.wkb if f.geometry is not None else None, f.properties, f.version)
        for f in layers.list_features(db, DEMO_ID, layer)
    }


def collection(*features: dict[str, Any]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


@pytest.mark.parametrize("fmt", list(FileFormat))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_round_trip_keeps_geometry_and_attributes(
    db: Database, fmt: FileFormat, layer: str
) -> None:
    """Export, re-import the file unchanged: every feature is recognised as unchanged."""
    before = snapshot(db, layer)
    if fmt is FileFormat.SHAPEFILE and LAYERS[layer].geometry_type == ANY_GEOMETRY:
        with pytest.raises(InvalidInput):  # points, lines and polygons: one type a Shapefile
            export_layer(db, DEMO_ID, layer, fmt)
        return
    data = export_layer(db, DEMO_ID, layer, fmt)
    report = import_file(db, DEMO_ID, layer, data, fmt, actor="qgis")
    assert (report.created, report.updated, report.deleted) == (0, 0, 0)
    assert report.unchanged == len(before)
    assert snapshot(db, layer) == before


def test_a_round_trip_edit_updates_only_what_changed(db: Database, tmp_path: Path) -> None:
    """As a planner in QGIS would: open the GeoPackage, change one value, save, import."""
    path = tmp_path / "zones.gpkg"
    path.write_bytes(export_layer(db, DEMO_ID, "zones", FileFormat.GPKG))
    frame = pyogrio.read_dataframe(path)
    frame.loc[frame["id"] == "Z-001", "capacity"] = 35
    pyogrio.write_dataframe(frame, path, driver="GPKG", layer="zones")
    report = import_file(db, DEMO_ID, "zones", path.read_bytes(), FileFormat.GPKG, actor="qgis")
    assert (report.updated, report.unchanged) == (1, len(frame) - 1)
    zone = layers.get_feature(db, DEMO_ID, "zones", "Z-001")
    assert zone.properties["capacity"] == 35 and zone.version == 2 and zone.updated_by == "qgis"


def test_shapefile_export_is_a_zip_with_projection(db: Database) -> None:
    data = export_layer(db, DEMO_ID, "sensors", FileFormat.SHAPEFILE)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {n.rsplit(".", 1)[1] for n in names} >= {"shp", "shx", "dbf", "prj"}


def test_one_bad_row_changes_nothing_and_is_named(db: Database) -> None:
    before = snapshot(db, "resources")
    point = {"type": "Point", "coordinates": [121.35, 30.72]}
    good = {"type": "Feature", "id": "R-new-1", "geometry": point, "properties": {"kind": "scba"}}
    bad = {"type": "Feature", "id": "R-new-2", "geometry": point, "properties": {"kind": "laser"}}
    far = {**good, "id": "R-new-3", "geometry": {"type": "Point", "coordinates": [0, 0]}}
    with pytest.raises(InvalidInput) as exc:
        import_file(
            db, DEMO_ID, "resources", collection(good, bad, far), FileFormat.GEOJSON, actor="x"
        )
    found = {(e.row, e.field) for e in exc.value.errors}
    assert found == {(2, "kind"), (3, "geometry")}
    assert "nothing changed" in exc.value.detail
    assert snapshot(db, "resources") == before


def test_merge_refuses_stale_or_unversioned_rows(db: Database) -> None:
    z1 = json.loads(export_layer(db, DEMO_ID, "zones", FileFormat.GEOJSON))["features"][0]
    unversioned = {
        **z1,
        "properties": {k: v for k, v in z1["properties"].items() if k != "version"},
    }
    stale = {**z1, "properties": {**z1["properties"], "version": 99}}
    refusals: tuple[tuple[dict[str, Any], str, type[RallypointError]], ...] = (
        (unversioned, "give its version", InvalidInput),
        (stale, "stale", VersionConflict),  # a version conflict, not bad data
    )
    for row, reason, refusal in refusals:
        with pytest.raises(refusal) as exc:
            import_file(db, DEMO_ID, "zones", collection(row), FileFormat.GEOJSON, actor="x")
        assert exc.value.errors[0].field == "version" and reason in exc.value.errors[0].reason


def test_duplicate_ids_in_a_file_are_refused(db: Database) -> None:
    point = {"type": "Point", "coordinates": [121.35, 30.72]}
    row = {"type": "Feature", "id": "R-dup", "geometry": point, "properties": {"kind": "scba"}}
    with pytest.raises(InvalidInput) as exc:
        import_file(db, DEMO_ID, "resources", collection(row, row), FileFormat.GEOJSON, actor="x")
    assert exc.value.errors[0].row == 2 and "also in row 1" in exc.value.errors[0].reason


def test_replace_makes_the_file_the_layer_and_logs_deletions(db: Database) -> None:
    point = {"type": "Point", "coordinates": [121.35, 30.72]}
    only = {
        "type": "Feature",
        "id": "S-only",
        "geometry": point,
        "properties": {"kind": "wind", "unit": "m/s"},
    }
    before = len(snapshot(db, "sensors"))
    report = import_file(
        db,
        DEMO_ID,
        "sensors",
        collection(only),
        FileFormat.GEOJSON,
        actor="x",
        mode=ImportMode.REPLACE,
    )
    assert (report.created, report.deleted) == (1, before)
    assert list(snapshot(db, "sensors")) == ["S-only"]
    with db.read() as session:
        deletions = session.query(ChangeRow).filter_by(layer="sensors", action="delete").count()
    assert deletions == before


@pytest.mark.parametrize(
    ("data", "fmt", "field"),
    [
        (b"{not json", FileFormat.GEOJSON, "file"),
        (b'{"type": "Feature"}', FileFormat.GEOJSON, "type"),
        (b"PK but not a zip", FileFormat.SHAPEFILE, "file"),
        (b"SQLite format 3 but no", FileFormat.GPKG, "file"),
    ],
)
def test_unreadable_files_are_refused(
    db: Database, data: bytes, fmt: FileFormat, field: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        import_file(db, DEMO_ID, "zones", data, fmt, actor="x")
    assert exc.value.errors[0].field == field


def test_unknown_format() -> None:
    with pytest.raises(UnsupportedFormat):
        parse_format("kml")
    assert parse_format("Shapefile") is FileFormat.SHAPEFILE
