"""The site model after an edit, rebuilt from the changed features only, equals a full build.

``SiteModels.get`` re-reads only the features whose stamps changed and rebuilds only what the
changed layers feed; every test here edits the demo site, takes the rebuilt model, and compares
it, part by part, with a model built from scratch from the same database state.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import shapely
from sqlalchemy import update

from command.site_model import SiteModel, SiteModels, build_site_model
from gis.crs import SiteCRS
from gis.hazards.exposure import SiteIndex
from gis.layers import (
    create_feature,
    delete_feature,
    feature_stamps,
    get_feature,
    list_features,
    read_features,
    replace_feature,
)
from gis.model import LAYERS
from gis.storage.db import Database
from gis.storage.tables import PersonRow
from routing.graph import (
    NetworkGraph,
    concat_columns,
    graph_from_columns,
    graph_from_features,
    network_columns,
)
from routing.resources import ResourceIndex
from tests.conftest import DEMO_ID, DEMO_SITE

# --- comparing models -------------------------------------------------------------------------


def assert_same_graph(a: NetworkGraph, b: NetworkGraph) -> None:
    assert a.mode == b.mode and a.crs == b.crs
    for f in dataclasses.fields(NetworkGraph):
        if f.name in ("mode", "crs", "_tree", "_graph", "_plain_pairs"):  # caches, built on use
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "feature_lines":
            assert len(x) == len(y) and bool(np.all(shapely.equals_identical(x, y)))
        else:
            assert x.dtype == y.dtype, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)


def index_contents(index: SiteIndex) -> dict[str, Any]:
    """What the index holds per layer (looked at inside: the index has no public view)."""
    out = {}
    for name, layer in index._layers.items():
        geoms = None if layer.tree is None else shapely.to_wkb(layer.tree.geometries).tolist()
        xy = None if layer.xy is None else layer.xy.tolist()
        out[name] = (layer.ids.tolist(), xy, geoms)
    return out


def resource_contents(index: ResourceIndex) -> dict[str, Any]:
    r = index.resources
    return {
        "resources": (list(r.ids), list(r.kinds), r.lonlat.tolist(), list(r.status)),
        "kinds": (index.kind_names.tolist(), index.kind_codes.tolist()),
        "snapped": {
            mode: (chosen.tolist(), s.feature.tolist(), s.t.tolist(), s.distance_m.tolist())
            for mode, (chosen, s) in index.by_mode.items()
        },
        "graphs": sorted(index.graphs),
    }


def assert_same_model(a: SiteModel, b: SiteModel) -> None:
    assert a.site.id == b.site.id and a.site.version == b.site.version
    assert a.tokens == b.tokens
    assert a.layers == b.layers
    assert a.graphs.keys() == b.graphs.keys()
    for mode in a.graphs:
        assert_same_graph(a.graphs[mode], b.graphs[mode])
    assert index_contents(a.index) == index_contents(b.index)
    assert resource_contents(a.resources) == resource_contents(b.resources)
    assert list(a.musters.ids) == list(b.musters.ids)
    np.testing.assert_array_equal(a.musters.lonlat, b.musters.lonlat)
    assert list(a.musters.capacity) == list(b.musters.capacity)
    assert a.muster_areas.keys() == b.muster_areas.keys()
    assert all(
        shapely.equals_identical(a.muster_areas[k], b.muster_areas[k]) for k in a.muster_areas
    )
    assert a.person_ids == b.person_ids
    np.testing.assert_array_equal(a.person_lonlat, b.person_lonlat)
    np.testing.assert_array_equal(a.person_seen_at, b.person_seen_at)
    assert (a.people_snapped is None) == (b.people_snapped is None)
    if a.people_snapped is not None and b.people_snapped is not None:
        for name in ("feature", "t", "distance_m"):
            np.testing.assert_array_equal(
                getattr(a.people_snapped, name), getattr(b.people_snapped, name)
            )
    assert a.sensors == b.sensors


def parts(model: SiteModel) -> dict[str, Any]:
    """One object of each part of a model, to tell a part rebuilt from one kept."""
    return {
        "graphs": model.graphs.get("foot"),
        "resources": model.resources,
        "musters": model.musters,
        "people_snapped": model.people_snapped,
        "sensors": next(iter(model.sensors.values())),
    }


# --- edits ------------------------------------------------------------------------------------


def patch(db: Database, layer: str, fid: str, data: dict[str, Any]) -> None:
    version = get_feature(db, DEMO_ID, layer, fid).version
    replace_feature(db, DEMO_ID, layer, fid, data, actor="test", if_match=version, partial=True)


def feature(model: SiteModel, layer: str, where: Callable[[dict[str, Any]], bool]) -> Any:
    return next(f for f in model.layers[layer] if where(f))


def nudged(line: dict[str, Any], dx: float) -> dict[str, Any]:
    coords = [list(c) for c in line["coordinates"]]
    coords[-1][0] += dx
    return {"type": "LineString", "coordinates": coords}


def zone_capacity(db: Database, model: SiteModel) -> None:
    muster = feature(model, "zones", lambda f: f["properties"]["kind"] == "muster_point")
    patch(db, "zones", muster["id"], {"properties": {"capacity": 777}})


def zone_deleted(db: Database, model: SiteModel) -> None:
    muster = feature(model, "zones", lambda f: f["properties"]["kind"] == "muster_point")
    version = get_feature(db, DEMO_ID, "zones", muster["id"]).version
    delete_feature(db, DEMO_ID, "zones", muster["id"], actor="test", version=version)


def resource_status(db: Database, model: SiteModel) -> None:
    resource = feature(model, "resources", lambda f: f["properties"]["status"] == "available")
    patch(db, "resources", resource["id"], {"properties": {"status": "out_of_service"}})


def sensor_threshold(db: Database, model: SiteModel) -> None:
    sensor = feature(model, "sensors", lambda f: f["properties"]["alarm"] is not None)
    patch(db, "sensors", sensor["id"], {"properties": {"alarm": 12.5}})


def person_role(db: Database, model: SiteModel) -> None:
    patch(db, "people", model.person_ids[3], {"properties": {"role": "visitor guide"}})


def person_moved(db: Database, model: SiteModel) -> None:
    lon, lat = model.person_lonlat[7]
    point = {"type": "Point", "coordinates": [float(lon) + 2e-4, float(lat)]}
    patch(db, "people", model.person_ids[7], {"geometry": point})


def network_width(db: Database, model: SiteModel) -> None:
    edge = model.layers["network"][100]
    patch(db, "network", edge["id"], {"properties": {"width_m": 7.5}})


def network_closed_to_vehicles(db: Database, model: SiteModel) -> None:
    edge = feature(model, "network", lambda f: f["properties"]["vehicle"])
    patch(db, "network", edge["id"], {"properties": {"vehicle": False, "stairs": True}})


def network_geometry(db: Database, model: SiteModel) -> None:
    edge = model.layers["network"][200]
    patch(db, "network", edge["id"], {"geometry": nudged(edge["geometry"], 1e-5)})


def network_created(db: Database, model: SiteModel) -> None:
    a, b = model.layers["network"][10], model.layers["network"][500]
    line = [a["geometry"]["coordinates"][0], b["geometry"]["coordinates"][-1]]
    create_feature(
        db,
        DEMO_ID,
        "network",
        {"id": "E-TEST-LINK", "geometry": {"type": "LineString", "coordinates": line}},
        actor="test",
    )


def network_deleted(db: Database, model: SiteModel) -> None:
    edge = model.layers["network"][300]
    version = get_feature(db, DEMO_ID, "network", edge["id"]).version
    delete_feature(db, DEMO_ID, "network", edge["id"], actor="test", version=version)


EDITS: dict[str, tuple[Callable[[Database, SiteModel], None], set[str]]] = {
    # edit -> the parts of the model that must be the very objects of the model before
    "zone capacity": (zone_capacity, {"graphs", "resources", "people_snapped", "sensors"}),
    "zone deleted": (zone_deleted, {"graphs", "resources", "people_snapped", "sensors"}),
    "resource status": (resource_status, {"graphs", "musters", "people_snapped", "sensors"}),
    "sensor threshold": (sensor_threshold, {"graphs", "resources", "musters", "people_snapped"}),
    "person role": (person_role, {"graphs", "resources", "musters", "sensors"}),
    "person moved": (person_moved, {"graphs", "resources", "musters", "sensors"}),
    # An edit of attributes keeps the lines: people stay attached where they were.
    "network width": (network_width, {"musters", "sensors", "people_snapped"}),
    "network closed to vehicles": (
        network_closed_to_vehicles,
        {"musters", "sensors", "people_snapped"},  # the foot graph's lines are the same
    ),
    "network geometry": (network_geometry, {"musters", "sensors"}),
    "network created": (network_created, {"musters", "sensors"}),
    "network deleted": (network_deleted, {"musters", "sensors"}),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_rebuild_after_an_edit_equals_a_full_build(db: Database, edit: str) -> None:
    models = SiteModels(db)
    before = models.get(DEMO_ID)
    change, kept = EDITS[edit]
    change(db, before)
    after = models.get(DEMO_ID)
    assert after is not before and after.build != before.build
    assert_same_model(after, build_site_model(db, DEMO_ID))
    for part, was in parts(before).items():
        assert (parts(after)[part] is was) == (part in kept), part


def test_edits_in_a_row_each_equal_a_full_build(db: Database) -> None:
    models = SiteModels(db)
    for change, _ in EDITS.values():
        change(db, models.get(DEMO_ID))
        assert_same_model(models.get(DEMO_ID), build_site_model(db, DEMO_ID))


def test_positions_stored_without_a_new_token_are_read_on_the_next_rebuild(db: Database) -> None:
    models = SiteModels(db)
    before = models.get(DEMO_ID)
    moved = before.person_ids[:5]
    seen = datetime(2026, 2, 1, 8, 30, tzinfo=UTC)
    with db.write() as session:  # as command/positions.py stores them: no version, no token
        session.execute(
            update(PersonRow),
            [
                {
                    "site_id": DEMO_ID,
                    "id": pid,
                    "geom": shapely.Point(lon + 1e-4, lat),
                    "seen_at": seen,
                }
                for pid, (lon, lat) in zip(moved, before.person_lonlat[:5].tolist(), strict=True)
            ],
        )
    assert models.get(DEMO_ID) is before  # no layer changed
    zone_capacity(db, before)
    after = models.get(DEMO_ID)
    assert_same_model(after, build_site_model(db, DEMO_ID))
    np.testing.assert_allclose(after.person_lonlat[:5, 0], before.person_lonlat[:5, 0] + 1e-4)


def test_an_unchanged_site_keeps_its_model(db: Database) -> None:
    models = SiteModels(db)
    model = models.get(DEMO_ID)
    assert models.get(DEMO_ID) is model


def test_the_index_built_from_geometries_equals_the_one_built_from_geojson(db: Database) -> None:
    model = build_site_model(db, DEMO_ID)
    assert model.index.layers == tuple(name for name in LAYERS if name != "basemap")
    assert index_contents(model.index) == index_contents(SiteIndex(model.layers))


# --- the pieces -------------------------------------------------------------------------------


def test_bulk_reads_equal_list_features(db: Database) -> None:
    for layer in LAYERS:
        listed = list_features(db, DEMO_ID, layer)
        with db.read() as session:
            bulk = read_features(session, DEMO_ID, layer)
            some = read_features(session, DEMO_ID, layer, ids=[f.id for f in listed[::7]])
        assert [f.to_geojson() for f in bulk] == [f.to_geojson() for f in listed]
        assert [f.updated_at for f in bulk] == [f.updated_at for f in listed]
        assert all(
            (a.geometry is None and b.geometry is None)
            or shapely.equals_identical(a.geometry, b.geometry)
            for a, b in zip(bulk, listed, strict=True)
        )
        assert sorted(f.id for f in some) == sorted(f.id for f in listed[::7])


def test_stamps_differ_in_exactly_the_changed_features(db: Database) -> None:
    def stamps(layer: str) -> set[str]:
        with db.read() as session:
            return feature_stamps(session, DEMO_ID, layer)

    before = stamps("zones")
    assert len(before) == len(list_features(db, DEMO_ID, "zones"))
    patch(db, "zones", "Z-001", {"properties": {"capacity": 21}})
    after = stamps("zones")
    assert {s.split()[0] for s in after ^ before} == {"Z-001"}
    version = get_feature(db, DEMO_ID, "zones", "Z-001").version
    delete_feature(db, DEMO_ID, "zones", "Z-001", actor="test", version=version)
    assert {s.split()[0] for s in after - stamps("zones")} == {"Z-001"}


def demo_network() -> tuple[list[dict[str, Any]], SiteCRS]:
    site = json.loads((DEMO_SITE / "site.json").read_text())
    centre = shapely.geometry.shape(site["boundary"]).centroid
    features = json.loads((DEMO_SITE / "network.geojson").read_text())["features"]
    return features, SiteCRS.for_site(centre.x, centre.y)


def test_graphs_from_columns_equal_graphs_from_features() -> None:
    features, crs = demo_network()
    # As the database gives them: shapely lines and every property set.
    defaults = {"foot": True, "vehicle": False, "oneway": False, "door": False, "stairs": False}
    stored = [
        {
            **f,
            "geometry": shapely.geometry.shape(f["geometry"]),
            "properties": {**defaults, **f["properties"]},
        }
        for f in features
    ]
    columns = network_columns(stored, crs=crs)
    for mode in ("foot", "vehicle"):
        expected = graph_from_features(features, crs=crs, mode=mode)
        assert_same_graph(graph_from_columns(columns, mode=mode), expected)
        assert_same_graph(graph_from_features(stored, crs=crs, mode=mode), expected)
    # Columns taken apart and put back together are the same columns.
    order = np.random.default_rng(42).permutation(len(columns))
    half = len(order) // 2
    back = concat_columns([columns.take(order[:half]), columns.take(order[half:])])
    back = back.take(np.argsort(order))
    for f in dataclasses.fields(columns):
        if f.name != "crs":
            np.testing.assert_array_equal(getattr(back, f.name), getattr(columns, f.name))


def test_a_graph_lends_its_tree_only_to_the_same_lines() -> None:
    features, crs = demo_network()
    columns = network_columns(features, crs=crs)
    first = graph_from_columns(columns, mode="foot")
    assert first.tree is not None  # built on first use; only a built tree is lent
    same = graph_from_columns(columns, mode="foot", reuse=first)
    assert same.tree is first.tree
    moved = [dict(f) for f in features]
    moved[5] = {**moved[5], "geometry": nudged(moved[5]["geometry"], 1e-5)}
    other = graph_from_columns(network_columns(moved, crs=crs), mode="foot", reuse=first)
    assert other.tree is not first.tree
