"""The demo site is realistic, complete, connected and deterministic."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import networkx as nx
import pytest
from shapely.geometry import Point, shape

from gis.crs import SiteCRS
from gis.site_bundle import read_bundle
from gis.sitegen import generate_site
from tests.conftest import DEMO_SITE

SITE, LAYERS = read_bundle(DEMO_SITE)


def features(layer: str) -> list[dict[str, Any]]:
    features_: list[dict[str, Any]] = LAYERS[layer]["features"]
    return features_


def test_the_committed_fixture_is_what_the_generator_makes() -> None:
    """fixtures/demo-site is generated, seeded and deterministic: `make demo-fixture`."""
    site, layers = generate_site()
    assert json.loads(json.dumps(site)) == SITE
    assert json.loads(json.dumps(layers)) == LAYERS


def test_site_is_in_an_east_china_chemical_park() -> None:
    centre = shape(SITE["boundary"]).centroid
    assert centre.x == pytest.approx(121.35, abs=0.005)
    assert centre.y == pytest.approx(30.72, abs=0.005)
    assert SITE["timezone"] == "Asia/Shanghai"


def test_zones_cover_a_chemical_works() -> None:
    zones = features("zones")
    assert len(zones) >= 25
    kinds = Counter(z["properties"]["kind"] for z in zones)
    for kind in (
        "tank_farm",
        "process_unit",
        "warehouse",
        "control_room",
        "office",
        "canteen",
        "gate",
        "loading_bay",
        "rail_siding",
        "wastewater",
    ):
        assert kinds[kind] >= 1, kind
    names = " ".join(z["properties"]["name"] for z in zones)
    assert "Chlorine" in names and "Ammonia" in names and "Reactor" in names
    assert {z["properties"]["risk_grade"] for z in zones} == {"red", "orange", "yellow", "blue"}


def test_muster_points_lie_on_different_sides() -> None:
    crs = SiteCRS.for_site(121.35, 30.72)
    centre = crs.to_metric(shape(SITE["boundary"]).centroid)
    musters = [z for z in features("zones") if z["properties"]["kind"] == "muster_point"]
    assert len(musters) >= 3
    sides = set()
    for m in musters:
        assert m["properties"]["capacity"] > 0
        c = crs.to_metric(shape(m["geometry"]).centroid)
        dx, dy = c.x - centre.x, c.y - centre.y
        sides.add(("E" if dx > 0 else "W") if abs(dx) > abs(dy) else ("N" if dy > 0 else "S"))
    assert len(sides) >= 3


def test_network_is_connected_and_reaches_every_door_and_muster_point() -> None:
    edges = features("network")
    assert len(edges) >= 1500
    graph = nx.Graph()
    for e in edges:
        coords = e["geometry"]["coordinates"]
        graph.add_edge(tuple(coords[0]), tuple(coords[-1]))
    assert nx.is_connected(graph)
    doors = [e for e in edges if e["properties"].get("door")]
    assert len(doors) >= 2 * sum(
        1 for z in features("zones") if z["properties"]["kind"] != "muster_point"
    )
    assert any(e["properties"].get("stairs") for e in edges)
    assert any(e["properties"].get("oneway") for e in edges)
    nodes = [Point(n) for n in graph.nodes]
    for zone in features("zones"):
        polygon = shape(zone["geometry"])
        assert any(polygon.buffer(1e-7).contains(n) for n in nodes), zone["properties"]["name"]


def test_resources_sensors_and_people() -> None:
    resources = Counter(r["properties"]["kind"] for r in features("resources"))
    assert sum(resources.values()) >= 150 and len(resources) >= 8
    for kind in (
        "hydrant",
        "extinguisher",
        "scba",
        "first_aid",
        "eyewash",
        "spill_kit",
        "fire_truck",
        "ambulance",
    ):
        assert resources[kind] >= 1, kind
    sensors = features("sensors")
    assert len(sensors) >= 60
    substances = Counter(s["properties"].get("substance") for s in sensors)
    for substance in ("Cl2", "NH3", "H2S", "LEL"):
        assert substances[substance] >= 4, substance
    assert sum(s["properties"]["kind"] == "wind" for s in sensors) >= 2

    people = features("people")
    assert len(people) >= 400
    assert {p["properties"]["employment"] for p in people} == {"staff", "contractor"}
    assert len({p["properties"]["team"] for p in people}) >= 10
    assert len({p["properties"]["shift"] for p in people}) >= 4
    buildings = [shape(z["geometry"]) for z in features("zones")]
    for person in people:
        point = shape(person["geometry"])
        assert any(b.contains(point) for b in buildings), person["id"]


def test_synthetic_sites_scale() -> None:
    site, layers = generate_site(seed=7, people=1000, edges=6000, site_id="synthetic-6000")
    assert len(layers["people"]["features"]) == 1000
    assert 5000 <= len(layers["network"]["features"]) <= 7500
    graph = nx.Graph()
    for e in layers["network"]["features"]:
        coords = e["geometry"]["coordinates"]
        graph.add_edge(tuple(coords[0]), tuple(coords[-1]))
    assert nx.is_connected(graph)
    again = generate_site(seed=7, people=1000, edges=6000, site_id="synthetic-6000")
    assert again == (site, layers)
