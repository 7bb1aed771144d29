"""Bulk loading: a site bundle goes in through arrays and COPY, with every check kept.

What is stored is compared with the bundle's files as read here with ``json`` (ids, properties,
geometries), through direct queries of the tables, on both backends. The bulk validator is
compared with the one-feature validator on a set of faulty features, and a bundle with one bad
feature is refused whole, naming the file, the row and the reason.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gis.crs import SiteCRS
from gis.errors import InvalidInput
from gis.geometry import SiteExtent
from gis.layers import (
    ParsedFeature,
    geojson_features,
    insert_features,
    parse_feature,
    parse_features,
    read_features,
)
from gis.model import LAYERS
from gis.site_bundle import load_bundle
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS, ChangeRow, LayerRevision, SiteRow
from tests.conftest import DEMO_ID, DEMO_SITE

COPY_ID = "bulk-copy"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The demo site's folder under another site id (the demo itself is loaded already)."""
    folder = tmp_path / "site"
    shutil.copytree(DEMO_SITE, folder)
    site = json.loads((folder / "site.json").read_text())
    site["id"] = COPY_ID
    (folder / "site.json").write_text(json.dumps(site))
    return folder


def file_features(folder: Path, layer: str) -> list[dict[str, Any]]:
    path = folder / f"{layer}.geojson"
    if not path.is_file():
        return []
    features: list[dict[str, Any]] = json.loads(path.read_text())["features"]
    return features


def stored_rows(db: Database, site_id: str, layer: str) -> dict[str, dict[str, Any]]:
    """The layer's rows as the table holds them, by a plain query of the table."""
    table = LAYER_ROWS[layer].__table__
    with db.read() as session:
        rows = session.execute(select(table).where(table.c.site_id == site_id)).mappings()
        return {row["id"]: dict(row) for row in rows}


def as_stored(value: Any) -> Any:
    """A property value from a file as the table holds it (times as aware datetimes)."""
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            return value
    return value


def test_a_bulk_load_stores_exactly_what_the_files_hold(db: Database, bundle: Path) -> None:
    site, reports = load_bundle(db, bundle, actor="loader")
    assert site.id == COPY_ID and reports is not None
    counted = 0
    for layer in LAYERS:
        expected = file_features(bundle, layer)
        rows = stored_rows(db, COPY_ID, layer)
        assert sorted(rows) == sorted(f["id"] for f in expected), layer
        assert reports[layer].created == len(expected)
        fields = LAYERS[layer].fields
        for feature in expected:
            row = rows[feature["id"]]
            for key, value in feature["properties"].items():
                assert row[key] == as_stored(value), (layer, feature["id"], key)
            # Every column is one of the layer's attributes, the key, the geometry or the stamp.
            assert set(row) == {"site_id", "id", "geom", *fields, *META_COLUMNS}
            if feature["geometry"] is None:
                assert row["geom"] is None
            else:
                # Exactly the coordinates of the file, not merely close to them.
                assert shapely.equals_identical(row["geom"], shape(feature["geometry"]))
            assert (row["version"], row["created_by"], row["updated_by"]) == (1, "loader", "loader")
            counted += 1
    assert counted > 2000  # the demo site's features, all of them checked


META_COLUMNS = ("version", "created_at", "created_by", "updated_at", "updated_by")


def test_a_bulk_load_logs_every_creation_and_renews_every_token(db: Database, bundle: Path) -> None:
    before = revision_tokens(db, DEMO_ID)
    load_bundle(db, bundle, actor="loader")
    with db.read() as session:
        logged = session.execute(select(ChangeRow).where(ChangeRow.site_id == COPY_ID)).scalars()
        changes = {(c.layer, c.feature_id): c for c in logged}
    for layer in LAYERS:
        for feature in file_features(bundle, layer):
            change = changes.pop((layer, feature["id"]))
            assert (change.action, change.version, change.actor) == ("create", 1, "loader")
            assert change.data is not None
            assert change.data["id"] == feature["id"]
            # The log holds the feature as the API shows it: the file's geometry and values.
            assert change.data["geometry"] == json.loads(json.dumps(feature["geometry"]))
            props = change.data["properties"]
            assert {k: props[k] for k in feature["properties"]} == feature["properties"]
            assert props["version"] == 1 and props["created_by"] == "loader"
    assert changes.pop(("site", COPY_ID)).action == "create"  # the site itself
    assert changes == {}  # nothing logged that is not in the files
    tokens = revision_tokens(db, COPY_ID)
    assert set(tokens) == set(LAYERS) and all(tokens.values())
    assert revision_tokens(db, DEMO_ID) == before  # another site's caches stay valid


def revision_tokens(db: Database, site_id: str) -> dict[str, str]:
    with db.read() as session:
        rows = session.execute(
            select(LayerRevision.layer, LayerRevision.token).where(LayerRevision.site_id == site_id)
        )
        return {str(layer): str(token) for layer, token in rows}


def test_one_bad_feature_refuses_the_whole_load(db: Database, bundle: Path) -> None:
    path = bundle / "network.geojson"
    collection = json.loads(path.read_text())
    row = len(collection["features"]) // 2 + 1  # 1-based, as the error gives it
    bad = collection["features"][row - 1]
    bad["geometry"]["coordinates"] = [[y, x] for x, y in bad["geometry"]["coordinates"]]
    path.write_text(json.dumps(collection))

    with pytest.raises(InvalidInput) as refused:
        load_bundle(db, bundle, actor="loader")
    assert str(path) in refused.value.detail
    assert "nothing changed" in refused.value.detail
    assert [(e.row, e.field) for e in refused.value.errors] == [(row, "geometry")]
    assert "latitude must lie within [-90, 90]" in refused.value.errors[0].reason
    assert "swapped" in refused.value.errors[0].reason

    with db.read() as session:  # nothing of it stored: no site, feature, change or token
        assert session.get(SiteRow, COPY_ID) is None
        models: list[Any] = [*LAYER_ROWS.values(), ChangeRow, LayerRevision]
        for model in models:
            count = select(func.count()).select_from(model).where(model.site_id == COPY_ID)
            assert session.scalar(count) == 0, model


def test_a_duplicate_id_in_a_bulk_insert_fails_whole(db: Database) -> None:
    """The bulk insert (COPY on PostgreSQL) fails as an INSERT does, an IntegrityError, and
    leaves nothing behind."""
    layer = LAYERS["resources"]
    with db.read() as session:
        taken = read_features(session, DEMO_ID, "resources")[0]
    fresh = [
        ParsedFeature(f"bulk-{i}", taken.geometry, dict(taken.properties), None) for i in range(50)
    ]
    duplicate = ParsedFeature(taken.id, taken.geometry, dict(taken.properties), None)
    with pytest.raises(IntegrityError), db.write() as session:
        insert_features(session, DEMO_ID, layer, [*fresh, duplicate], actor="loader")
    ids = {f"bulk-{i}" for i in range(50)}
    with db.read() as session:
        assert not {f.id for f in read_features(session, DEMO_ID, "resources", ids=ids)}


def test_bulk_geojson_is_each_features_own(db: Database) -> None:
    """``geojson_features`` maps points, lines, polygons, mixed layers, missing geometries and
    times exactly as each feature's ``to_geojson`` does."""
    with db.read() as session:
        for layer in LAYERS:
            features = read_features(session, DEMO_ID, layer)
            assert features, layer
            assert geojson_features(features) == [f.to_geojson() for f in features], layer


# --- the bulk validator gives the one-feature validator's answers ----------------------------

DEMO = json.loads((DEMO_SITE / "site.json").read_text())
BOUNDARY = shape(DEMO["boundary"])
assert isinstance(BOUNDARY, shapely.Polygon)
EXTENT = SiteExtent(SiteCRS.for_site(BOUNDARY.centroid.x, BOUNDARY.centroid.y), BOUNDARY)
X, Y = BOUNDARY.centroid.x, BOUNDARY.centroid.y


def line(*coords: Any, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": list(coords)},
        "properties": props,
    }


def point(*coords: Any, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": list(coords)},
        "properties": {"kind": "hydrant", "quantity": 1, "status": "available", **props},
    }


NETWORK_CASES: list[dict[str, Any]] = [
    line([X, Y], [X + 0.001, Y]),
    line([X, Y], [X + 0.001, Y], [X + 0.001, Y + 0.001], name="a walkway", width_m=2.5),
    line([121, 30], [121, 31]),  # whole numbers, outside the site
    line([X, Y, 5.0], [X + 0.001, Y, 6.0]),  # heights are dropped
    line((X, Y), (X + 0.001, Y)),  # tuples
    line([X, Y], [Y, X]),  # swapped
    line([X, Y], [X + 200, Y]),  # longitude out of range
    line([X, Y], [math.nan, Y]),
    line([X, Y], [math.inf, Y]),
    line([X, Y], [True, Y]),
    line([X, Y], ["121.35", Y]),
    line([X, Y], [X, None]),
    line([X, Y]),  # one position
    line([X, Y], [X, Y]),  # no length
    line(*([X + i * 1e-6, Y] for i in range(1001))),  # too many vertices
    line([X, Y], [X + 0.001]),  # a short position
    line(),
    line([X, Y], [X + 0.001, Y], width_m="wide"),  # a bad attribute and a fine geometry
    line([X, Y], [Y, X], foot="yes please"),  # both bad
    {**line([X, Y], [X + 0.001, Y]), "id": "bad id!"},
    {**line([X, Y], [X + 0.001, Y]), "id": "edge-1", "properties": {"version": "3"}},
    {**line([X, Y], [X + 0.001, Y]), "type": "Point"},
    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [X, Y]}, "properties": {}},
    {"type": "Feature", "geometry": None, "properties": {}},
    {"type": "Feature", "geometry": "LINESTRING (0 0, 1 1)", "properties": {}},
    {"type": "Feature", "geometry": {"type": "LineString"}, "properties": {}},
    {"type": "Feature", "geometry": {"type": "Curve", "coordinates": []}, "properties": {}},
    {"type": "Feature", "geometry": shapely.LineString([(X, Y), (X + 1e-3, Y)]), "properties": {}},
    {"type": "Feature", "properties": []},
]

RESOURCE_CASES: list[dict[str, Any]] = [
    point(X, Y),
    point(int(X), int(Y)),  # outside
    point(X, Y, 3.0),
    point(Y, X),
    point(X, math.nan),
    point(X, False),
    point(X),
    point(),
    point(X, Y, kind="catapult"),
    point(200.0, Y, quantity=-1),
    {**point(X, Y), "geometry": None},
    {**point(X, Y), "geometry": {"type": "MultiPoint", "coordinates": [[X, Y]]}},
]

PEOPLE_CASES: list[dict[str, Any]] = [
    {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"name": "A. Person", "role": "operator", "employer": "Works"},
    }
    for geometry in (
        {"type": "Point", "coordinates": [X, Y]},
        None,  # people may be placed nowhere
        {"type": "Point", "coordinates": [X, 91.0]},
    )
]


@pytest.mark.parametrize(
    ("layer_name", "cases"),
    [("network", NETWORK_CASES), ("resources", RESOURCE_CASES), ("people", PEOPLE_CASES)],
)
@pytest.mark.parametrize("extent", [EXTENT, None], ids=["with-extent", "no-extent"])
# shapely warns when the one-feature validator builds a line with NaN in it (then refused).
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_the_bulk_validator_answers_as_the_single_one(
    layer_name: str, cases: list[dict[str, Any]], extent: SiteExtent | None
) -> None:
    layer = LAYERS[layer_name]
    rows = list(range(1, len(cases) + 1))
    bulk = parse_features(layer, cases, extent=extent, rows=rows, prefix="")
    verdicts = set()
    for row, data, got in zip(rows, cases, bulk, strict=True):
        try:
            expected: ParsedFeature | InvalidInput = parse_feature(
                layer, data, extent=extent, row=row, prefix=""
            )
        except InvalidInput as exc:
            expected = exc
        if isinstance(expected, InvalidInput):
            assert isinstance(got, InvalidInput), (row, data)
            assert (got.detail, got.errors) == (expected.detail, expected.errors), row
            verdicts.add("refused")
        else:
            assert isinstance(got, ParsedFeature), (row, got)
            assert (got.id, got.properties, got.version) == (
                expected.id,
                expected.properties,
                expected.version,
            )
            if expected.geometry is None:
                assert got.geometry is None
            else:
                assert got.geometry is not None and shapely.equals_identical(
                    got.geometry, expected.geometry
                ), row
                assert not shapely.has_z(got.geometry)
            verdicts.add("accepted")
    assert verdicts == {"accepted", "refused"}  # the cases try both ways
