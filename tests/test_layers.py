"""The layer service on both backends: versions, who/when, filters, spatial queries."""

from __future__ import annotations

from typing import Any

import pytest
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from shapely.geometry import box
from sqlalchemy import select

from gis import layers
from gis.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    VersionConflict,
    VersionRequired,
)
from gis.storage.db import Database
from gis.storage.tables import ChangeRow
from tests.conftest import DEMO_ID

HYDRANT: dict[str, Any] = {
    "type": "Feature",
    "id": "R-test-1",
    "geometry": {"type": "Point", "coordinates": [121.35, 30.72]},
    "properties": {"kind": "hydrant", "status": "available"},
}


def test_create_records_who_and_when(db: Database) -> None:
    feature = layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="planner:li")
    assert feature.version == 1
    assert feature.created_by == feature.updated_by == "planner:li"
    again = layers.get_feature(db, DEMO_ID, "resources", "R-test-1")
    assert again.properties["kind"] == "hydrant"
    assert again.properties["quantity"] == 1  # the default
    assert again.geometry is not None and again.geometry.equals(shapely.Point(121.35, 30.72))
    with db.read() as session:
        log = session.scalars(select(ChangeRow).where(ChangeRow.feature_id == "R-test-1")).all()
    assert [(c.action, c.version, c.actor) for c in log] == [("create", 1, "planner:li")]


def test_ids_are_unique_and_generated_when_missing(db: Database) -> None:
    layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="a")
    with pytest.raises(AlreadyExists):
        layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="a")
    anonymous = layers.create_feature(db, DEMO_ID, "resources", {**HYDRANT, "id": None}, actor="a")
    assert anonymous.id.startswith("reso-")


def test_update_needs_the_current_version(db: Database) -> None:
    layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="a")
    change = {**HYDRANT, "properties": {"kind": "hydrant", "status": "out_of_service"}}
    with pytest.raises(VersionRequired):
        layers.replace_feature(db, DEMO_ID, "resources", "R-test-1", change, actor="b")
    updated = layers.replace_feature(
        db, DEMO_ID, "resources", "R-test-1", change, actor="b", if_match=1
    )
    assert (updated.version, updated.updated_by, updated.created_by) == (2, "b", "a")
    # A second planner still holding version 1 is refused, by header (412) or body (409).
    with pytest.raises(PreconditionFailed):
        layers.replace_feature(db, DEMO_ID, "resources", "R-test-1", change, actor="c", if_match=1)
    # (By body version, an edit of another attribute would be merged: tests/test_conflicts.py.)
    stale_body = {**change, "properties": {**change["properties"], "status": "assigned"}}
    stale_body["properties"]["version"] = 1
    with pytest.raises(VersionConflict):
        layers.replace_feature(db, DEMO_ID, "resources", "R-test-1", stale_body, actor="c")
    assert layers.get_feature(db, DEMO_ID, "resources", "R-test-1").updated_by == "b"


def test_an_unchanged_replace_keeps_the_version(db: Database) -> None:
    layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="a")
    same = layers.replace_feature(
        db, DEMO_ID, "resources", "R-test-1", HYDRANT, actor="b", if_match=1
    )
    assert same.version == 1 and same.updated_by == "a"


def test_patch_merges_and_null_restores_the_default(db: Database) -> None:
    layers.create_feature(
        db,
        DEMO_ID,
        "resources",
        {**HYDRANT, "properties": {"kind": "scba", "quantity": 4}},
        actor="a",
    )
    patched = layers.replace_feature(
        db,
        DEMO_ID,
        "resources",
        "R-test-1",
        {"properties": {"quantity": 6}},
        actor="b",
        if_match=1,
        partial=True,
    )
    assert patched.properties["kind"] == "scba" and patched.properties["quantity"] == 6
    reset = layers.replace_feature(
        db,
        DEMO_ID,
        "resources",
        "R-test-1",
        {"properties": {"quantity": None, "version": 2}},
        actor="b",
        partial=True,
    )
    assert reset.properties["quantity"] == 1 and reset.version == 3


def test_a_refused_change_changes_nothing(db: Database) -> None:
    layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="a")
    bad = {**HYDRANT, "properties": {"kind": "unicorn"}}
    with pytest.raises(InvalidInput) as exc:
        layers.replace_feature(db, DEMO_ID, "resources", "R-test-1", bad, actor="b", if_match=1)
    assert exc.value.errors[0].field == "properties.kind"
    current = layers.get_feature(db, DEMO_ID, "resources", "R-test-1")
    assert current.version == 1 and current.properties["kind"] == "hydrant"


def test_delete_needs_the_version_and_keeps_the_record(db: Database) -> None:
    layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="a")
    with pytest.raises(VersionRequired):
        layers.delete_feature(db, DEMO_ID, "resources", "R-test-1", actor="b", version=None)
    layers.delete_feature(db, DEMO_ID, "resources", "R-test-1", actor="b", version=1)
    with pytest.raises(NotFound):
        layers.get_feature(db, DEMO_ID, "resources", "R-test-1")
    with db.read() as session:
        deleted = session.scalars(
            select(ChangeRow).where(
                ChangeRow.feature_id == "R-test-1", ChangeRow.action == "delete"
            )
        ).one()
    assert deleted.actor == "b"
    assert deleted.data is not None and deleted.data["properties"]["kind"] == "hydrant"


def test_unknown_site_layer_and_feature(db: Database) -> None:
    with pytest.raises(NotFound, match="no site"):
        layers.list_features(db, "atlantis", "zones")
    with pytest.raises(NotFound, match="no layer"):
        layers.list_features(db, DEMO_ID, "dragons")
    with pytest.raises(NotFound, match="no resources feature"):
        layers.get_feature(db, DEMO_ID, "resources", "R-nope")


def test_attribute_filters(db: Database) -> None:
    vehicles = layers.list_features(
        db, DEMO_ID, "resources", filters={"kind": "fire_truck,ambulance,foam_tender"}
    )
    assert {f.properties["kind"] for f in vehicles} == {"fire_truck", "ambulance", "foam_tender"}
    doors = layers.list_features(db, DEMO_ID, "network", filters={"door": "true"})
    assert doors and all(f.properties["door"] for f in doors)
    with pytest.raises(InvalidInput) as exc:
        layers.list_features(db, DEMO_ID, "resources", filters={"colour": "red"})
    assert exc.value.errors[0].field == "colour"
    with pytest.raises(InvalidInput) as exc:
        layers.list_features(db, DEMO_ID, "network", filters={"door": "perhaps"})
    assert exc.value.errors[0].field == "door"


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "2,2,1,1", "0,95,1,96", "nan,0,1,1"])
def test_bad_bbox(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        layers.parse_bbox(text)
    assert exc.value.errors[0].field == "bbox"


def test_bbox_sees_writes_of_the_same_transaction(db: Database) -> None:
    """The in-memory index (SQLite) is rebuilt when the layer's revision changes."""
    area = (121.3499, 30.7199, 121.3501, 30.7201)
    before = {f.id for f in layers.list_features(db, DEMO_ID, "resources", bbox=area)}
    layers.create_feature(db, DEMO_ID, "resources", HYDRANT, actor="a")
    after = {f.id for f in layers.list_features(db, DEMO_ID, "resources", bbox=area)}
    assert after == before | {"R-test-1"}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    layer=st.sampled_from(["zones", "people", "network", "sensors"]),
    x=st.floats(0, 1),
    y=st.floats(0, 1),
    w=st.floats(0, 0.6),
    h=st.floats(0, 0.6),
)
# Boxes without height or without any size: PostGIS finds nothing in a polygon without area.
@example(layer="zones", x=0.0, y=0.625, w=0.5, h=0.0)
@example(layer="zones", x=0.2995, y=0.6185, w=0.0, h=0.0)
def test_bbox_matches_a_brute_force_scan(
    db: Database, layer: str, x: float, y: float, w: float, h: float
) -> None:
    site_box = (121.337, 30.714, 121.363, 30.726)
    sx, sy = site_box[2] - site_box[0], site_box[3] - site_box[1]
    bbox = (
        site_box[0] + x * sx,
        site_box[1] + y * sy,
        site_box[0] + min(1.0, x + w) * sx,
        site_box[1] + min(1.0, y + h) * sy,
    )
    everything = layers.list_features(db, DEMO_ID, layer)
    expected = {
        f.id for f in everything if f.geometry is not None and f.geometry.intersects(box(*bbox))
    }
    got = {f.id for f in layers.list_features(db, DEMO_ID, layer, bbox=bbox)}
    assert got == expected
