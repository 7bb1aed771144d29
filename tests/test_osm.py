"""OpenStreetMap import, checked against an independent reading of real extracts.

The extracts are (c) OpenStreetMap contributors, ODbL 1.0: West Oakland (shared/data/osm) and
Kirchberg an der Iller (tests/data/osm, see the README there). Each test file is read here with
xml.etree, not with OSMnx or the project's reader, and the filter documented in gis/osm.py is
applied to it again, written afresh, so that a mistake in the importer cannot hide itself.
"""

from __future__ import annotations

import bz2
import gzip
import math
import random
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from pyproj import Geod
from shapely.geometry import box

from gis import layers
from gis.errors import InvalidInput
from gis.osm import import_osm, read_osm_edges, read_osm_network
from gis.sites import get_site
from gis.storage.db import Database
from routing.forest import reverse_search
from routing.graph import Mode, graph_from_osm
from routing.snapping import snap
from tests.conftest import OSM_EXTRACT

KIRCHBERG = Path(__file__).resolve().parent / "data" / "osm" / "Kirchberg-an-der-Iller.osm.bz2"
EXTRACTS = [OSM_EXTRACT, KIRCHBERG]
# The extract's bounds, from shared/data/osm/README.md.
BOUNDS = box(-122.30258, 37.80615, -122.29825, 37.80914)
GEOD = Geod(ellps="WGS84")
NEVER_NETWORK = {"building", "landuse", "natural", "waterway", "railway", "barrier"}


@dataclass
class Reading:
    """An OSM file as xml.etree sees it: node positions, and each way's node ids and tags."""

    nodes: dict[int, tuple[float, float]]
    refs: dict[int, list[int]]
    tags: dict[int, dict[str, str]]


def read_independently(path: Path) -> Reading:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as stream:
        root = ET.parse(stream).getroot()
    nodes = {
        int(n.attrib["id"]): (float(n.attrib["lon"]), float(n.attrib["lat"]))
        for n in root.iter("node")
    }
    refs, tags = {}, {}
    for way in root.iter("way"):
        way_id = int(way.attrib["id"])
        refs[way_id] = [int(nd.attrib["ref"]) for nd in way.iter("nd")]
        tags[way_id] = {t.attrib["k"]: t.attrib["v"] for t in way.iter("tag")}
    return Reading(nodes, refs, tags)


def documented_filter(tags: dict[str, str]) -> str | tuple[bool, bool, int]:
    """The module docstring's filter: a skip reason, or (foot, vehicle, vehicle direction)."""
    highway = tags.get("highway")
    if highway is None:
        return "not a highway"
    if highway in ("proposed", "planned", "construction", "abandoned", "disused", "razed", "no"):
        return "not in use"
    if tags.get("area") == "yes" or highway in ("platform", "rest_area", "services"):
        return "area"
    if highway in ("raceway", "bus_guideway", "elevator"):
        return "not for travel"

    def allowed(*keys: str) -> bool:
        tagged = [tags[k] for k in keys if k in tags]
        return not tagged or tagged[0] not in ("no", "private")

    foot = highway not in ("motorway", "motorway_link") and allowed("foot", "access")
    no_vehicles = ("footway", "path", "steps", "pedestrian", "corridor", "bridleway", "cycleway")
    vehicle = highway not in (*no_vehicles, "escalator") and allowed(
        "motor_vehicle", "vehicle", "access"
    )
    if not (foot or vehicle):
        return "no access"
    oneway = tags.get("oneway")
    if oneway is None and tags.get("junction") in ("roundabout", "circular"):
        oneway = "yes"
    direction = {"yes": 1, "true": 1, "1": 1, "-1": -1}.get(oneway or "", 0)
    return foot, vehicle, direction if vehicle else 0


@dataclass
class Network:
    """Per mode, the OSM segments it holds: foot (way, {a, b}); vehicle (way, from, to)."""

    foot: set[tuple[int, frozenset[int]]]
    vehicle: set[tuple[int, int, int]]
    segments: set[tuple[int, frozenset[int]]]
    ways: int
    skipped: Counter[str]


def expected_network(reading: Reading) -> Network:
    network = Network(set(), set(), set(), 0, Counter())
    for way, tags in reading.tags.items():
        verdict = documented_filter(tags)
        pairs = [
            (a, b)
            for a, b in zip(reading.refs[way], reading.refs[way][1:], strict=False)
            if a in reading.nodes and b in reading.nodes and reading.nodes[a] != reading.nodes[b]
        ]
        if isinstance(verdict, str) or not pairs:
            network.skipped[verdict if isinstance(verdict, str) else "outside the extract"] += 1
            continue
        foot, vehicle, direction = verdict
        network.ways += 1
        for a, b in pairs:
            network.segments.add((way, frozenset((a, b))))
            if foot:
                network.foot.add((way, frozenset((a, b))))
            if vehicle and direction >= 0:
                network.vehicle.add((way, a, b))
            if vehicle and direction <= 0:
                network.vehicle.add((way, b, a))
    return network


def imported_network(path: Path, reading: Reading) -> Network:
    """The importer's features, mapped back to OSM ways and nodes through their ids."""
    result = read_osm_network(path)
    network = Network(set(), set(), set(), result.ways, Counter(result.skipped))
    for feature in result.features:
        way, start, end = (int(part) for part in feature["id"].removeprefix("osm-").split("-"))
        coords = [tuple(c) for c in feature["geometry"]["coordinates"]]
        assert coords == [reading.nodes[start], reading.nodes[end]]
        props = feature["properties"]
        network.segments.add((way, frozenset((start, end))))
        if props["foot"]:
            network.foot.add((way, frozenset((start, end))))
        if props["vehicle"]:
            network.vehicle.add((way, start, end))
            if not props["oneway"]:
                network.vehicle.add((way, end, start))
    assert len({f["id"] for f in result.features}) == len(result.features)
    return network


def length_m(reading: Reading, a: int, b: int) -> float:
    (lon1, lat1), (lon2, lat2) = reading.nodes[a], reading.nodes[b]
    return float(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def expected_graph(reading: Reading, network: Network, mode: str) -> nx.Graph:
    graph: nx.Graph = nx.Graph() if mode == "foot" else nx.DiGraph()
    if mode == "foot":
        pairs = [tuple(pair) for _, pair in network.foot]
    else:
        pairs = [(a, b) for _, a, b in network.vehicle]
    for a, b in pairs:
        graph.add_edge(a, b, length=length_m(reading, a, b))
    return graph


@pytest.mark.parametrize("path", EXTRACTS, ids=lambda p: p.name.split(".")[0])
def test_edges_per_mode_equal_an_independent_reading(path: Path) -> None:
    reading = read_independently(path)
    expected = expected_network(reading)
    got = imported_network(path, reading)
    assert got.foot == expected.foot
    assert got.vehicle == expected.vehicle
    assert got.segments == expected.segments
    assert (got.ways, got.skipped) == (expected.ways, expected.skipped)
    assert got.ways + got.skipped.total() == len(reading.tags)


def test_figures_of_the_two_extracts() -> None:
    """What the filter does to real data, in numbers (before it, West Oakland gave 463
    features: 238 from ways without a highway tag, 18 from an access=private service road)."""
    oakland, kirchberg = read_osm_network(OSM_EXTRACT), read_osm_network(KIRCHBERG)
    assert (len(oakland.features), oakland.ways) == (207, 30)
    assert {k: n for k, n in oakland.skipped.items() if n} == {"not a highway": 35, "no access": 1}
    assert (len(kirchberg.features), kirchberg.ways) == (25, 6)
    assert {k: n for k, n in kirchberg.skipped.items() if n} == {
        "not a highway": 37,
        "no access": 11,  # access=private driveways
        "outside the extract": 2,  # clipped to one node
    }


@pytest.mark.parametrize("mode", ["foot", "vehicle"])
@pytest.mark.parametrize("path", EXTRACTS, ids=lambda p: p.name.split(".")[0])
def test_route_lengths_equal_networkx_on_an_independent_reading(path: Path, mode: Mode) -> None:
    """20 seeded node pairs with a route: the project's search over the imported graph against
    networkx's shortest path over the independent reading, lengths on the WGS84 ellipsoid (the
    project measures in the site's UTM zone: within 0.1%)."""
    reading = read_independently(path)
    expected = expected_graph(reading, expected_network(reading), mode)
    graph = graph_from_osm(path, mode=mode)
    index = {(round(x, 7), round(y, 7)): i for i, (x, y) in enumerate(graph.node_lonlat)}
    assert set(index) == {reading.nodes[n] for n in expected}
    rng = random.Random(42)
    nodes = sorted(expected)
    routes, pairs = 0, 0
    while routes < 20:  # pairs without a route are compared too, but do not count
        source, target = rng.sample(nodes, 2)
        forest = reverse_search(graph, graph.edge_length_m, [(index[reading.nodes[target]], 0.0)])
        got = float(forest.distance[index[reading.nodes[source]]])
        try:
            want = float(nx.shortest_path_length(expected, source, target, weight="length"))
        except nx.NetworkXNoPath:
            want = math.inf
        assert got == pytest.approx(want, rel=1e-3), (source, target)
        routes += math.isfinite(want)
        pairs += 1
        assert pairs < 100, "too few pairs have a route"


def test_no_edge_comes_from_buildings_landuse_railways_or_private_roads() -> None:
    """The original bug: 238 of the 463 West Oakland features ran along buildings, landuse,
    parks, a school, a car park and the elevated BART line, walkable and drivable; the
    access=private service road was imported too."""
    reading = read_independently(OSM_EXTRACT)
    features, graph = read_osm_edges(OSM_EXTRACT)
    ways = {int(f["id"].split("-")[1]) for f in features}
    assert all("highway" in reading.tags[way] for way in ways)
    assert not any(NEVER_NETWORK & reading.tags[way].keys() for way in ways)
    private = {w for w, t in reading.tags.items() if t.get("access") == "private"}
    assert private and not private & ways
    # Only nodes on imported edges are in the graph (no building corners, no lone points).
    on_edges = {n for e in graph.edges for n in e[:2]}
    assert set(graph.nodes) == on_edges


def test_people_attach_to_streets_not_to_outlines() -> None:
    """The original bug as people saw it: of these 400 seeded positions, 221 attached to the
    outline of a building, landuse, park, school, car park or railway, which no street joins,
    and had no route; 177 had one. Now everyone attached is on a highway way, and 375 have a
    route (the rest are over 50 m from any way, or on one of the two small detached parts)."""
    reading = read_independently(OSM_EXTRACT)
    graph = graph_from_osm(OSM_EXTRACT, mode="foot")
    rng = random.Random(42)
    west, south, east, north = BOUNDS.bounds
    points = np.array([[rng.uniform(west, east), rng.uniform(south, north)] for _ in range(400)])
    snapped = snap(graph, points)
    ways = {int(graph.feature_ids[f].split("-")[1]) for f in snapped.feature[snapped.attached]}
    assert all("highway" in reading.tags[way] for way in ways)
    target = int(np.argmin(np.hypot(*(graph.node_lonlat - (-122.300488, 37.8077097)).T)))
    distance = reverse_search(graph, graph.edge_length_m, [(target, 0.0)]).distance
    edges = graph.feature_edges[snapped.feature[snapped.attached], 0]
    reachable = np.isfinite(distance[graph.edge_src[edges]]).sum()
    assert reachable >= 360


def _write_osm(path: Path, ways: list[dict[str, str]], *, missing_node: int | None = None) -> None:
    """A synthetic file: way i runs from node 2i+1 to node 2i+2 (one west-east segment)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6">']
    for i in range(len(ways)):
        for j, lon in ((2 * i + 1, 8.0), (2 * i + 2, 8.001)):
            if j != missing_node:
                lines.append(f'<node id="{j}" lat="{50 + i / 1000}" lon="{lon}"/>')
    for i, tags in enumerate(ways):
        lines.append(f'<way id="{100 + i}"><nd ref="{2 * i + 1}"/><nd ref="{2 * i + 2}"/>')
        lines += [f'<tag k="{k}" v="{v}"/>' for k, v in tags.items()]
        lines.append("</way>")
    lines.append("</osm>")
    path.write_text("\n".join(lines), encoding="utf-8")


# tags -> skip reason, or (foot, vehicle, one-way: "" both ways, ">" along, "<" reversed)
RULES: list[tuple[dict[str, str], str | tuple[bool, bool, str]]] = [
    ({"highway": "residential"}, (True, True, "")),
    ({"highway": "footway"}, (True, False, "")),
    ({"highway": "footway", "foot": "no"}, "no access"),
    ({"highway": "residential", "foot": "no"}, (False, True, "")),
    ({"highway": "service", "access": "private"}, "no access"),
    ({"highway": "service", "access": "no"}, "no access"),
    ({"highway": "service", "access": "private", "foot": "yes"}, (True, False, "")),
    ({"highway": "service", "access": "no", "motor_vehicle": "yes"}, (False, True, "")),
    ({"highway": "residential", "motor_vehicle": "no"}, (True, False, "")),
    ({"highway": "residential", "vehicle": "no"}, (True, False, "")),
    ({"highway": "residential", "oneway": "yes"}, (True, True, ">")),
    ({"highway": "residential", "oneway": "true"}, (True, True, ">")),
    ({"highway": "residential", "oneway": "1"}, (True, True, ">")),
    ({"highway": "residential", "oneway": "-1"}, (True, True, "<")),
    ({"highway": "residential", "oneway": "no"}, (True, True, "")),
    ({"highway": "primary", "junction": "roundabout"}, (True, True, ">")),
    ({"highway": "footway", "oneway": "yes"}, (True, False, "")),  # walking ignores oneway
    ({"highway": "motorway"}, (False, True, "")),
    ({"highway": "track"}, (True, True, "")),
    ({"highway": "cycleway"}, (True, False, "")),
    ({"highway": "construction"}, "not in use"),
    ({"highway": "proposed"}, "not in use"),
    ({"highway": "abandoned"}, "not in use"),
    ({"highway": "pedestrian", "area": "yes"}, "area"),
    ({"highway": "platform"}, "area"),
    ({"highway": "raceway"}, "not for travel"),
    ({"barrier": "wall"}, "not a highway"),
    ({"waterway": "stream"}, "not a highway"),
    ({"natural": "grassland"}, "not a highway"),
    ({"landuse": "meadow"}, "not a highway"),
    ({"building": "yes"}, "not a highway"),
    ({"railway": "rail"}, "not a highway"),
]


def test_tag_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.osm"
    _write_osm(path, [tags for tags, _ in RULES])
    network = read_osm_network(path)
    by_way = {int(f["id"].split("-")[1]): f for f in network.features}
    for i, (tags, want) in enumerate(RULES):
        feature = by_way.get(100 + i)
        if isinstance(want, str):
            assert feature is None, tags
            continue
        assert feature is not None, tags
        props = feature["properties"]
        start = feature["geometry"]["coordinates"][0]
        direction = "" if not props["oneway"] else ">" if start[0] == 8.0 else "<"
        assert (props["foot"], props["vehicle"], direction) == want, tags
    reasons = Counter(want for _, want in RULES if isinstance(want, str))
    assert {k: n for k, n in network.skipped.items() if n} == reasons
    assert network.ways == len(RULES) - reasons.total()


def test_segments_with_a_node_outside_the_file_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "clipped.osm"
    _write_osm(path, [{"highway": "residential"}, {"highway": "residential"}], missing_node=4)
    network = read_osm_network(path)
    assert [f["id"] for f in network.features] == ["osm-100-1-2"]
    assert network.skipped["outside the extract"] == 1


@pytest.mark.parametrize("path", EXTRACTS, ids=lambda p: p.name.split(".")[0])
def test_import_creates_the_site_and_counts_parts_of_the_network_only(
    db: Database, path: Path
) -> None:
    reading = read_independently(path)
    expected = expected_network(reading)
    parts = nx.Graph(tuple(pair) for _, pair in expected.segments)
    result = import_osm(
        db, path, site_id="osm-site", create_site_name="OSM site", actor="test", timezone="UTC"
    )
    assert result.report.created == len(expected.segments)
    assert (result.ways, Counter(result.skipped)) == (expected.ways, expected.skipped)
    # West Oakland: 3 parts (41 when every node of the file counted, buildings included).
    assert result.components == nx.number_connected_components(parts)
    assert result.components == len(result.detached) + 1
    network = layers.list_features(db, "osm-site", "network")
    assert len(network) == result.report.created


def test_import_creates_the_site_and_reports_detached_parts(db: Database) -> None:
    result = import_osm(
        db,
        OSM_EXTRACT,
        site_id="west-oakland",
        create_site_name="West Oakland",
        actor="test",
        timezone="America/Los_Angeles",
    )
    assert result.report.created > 100
    assert result.components == len(result.detached) + 1 == 3
    site = get_site(db, "west-oakland")
    assert site.crs.metric.to_epsg() == 32610
    network = layers.list_features(db, "west-oakland", "network")
    assert len(network) == result.report.created
    assert site.boundary.covers(BOUNDS)
    # Importing the same extract again changes nothing.
    again = import_osm(db, OSM_EXTRACT, site_id="west-oakland", actor="test")
    assert (again.report.created, again.report.updated, again.report.deleted) == (0, 0, 0)


def test_not_an_osm_file(db: Database, tmp_path: Path) -> None:
    bogus = tmp_path / "roads.osm"
    bogus.write_text("<html>nope</html>")
    with pytest.raises(InvalidInput) as exc:
        import_osm(db, bogus, site_id="x", create_site_name="X", actor="test")
    assert exc.value.errors[0].field == "file"


def test_gzip_and_bzip2_files_read_like_plain_ones(tmp_path: Path) -> None:
    plain = tmp_path / "rules.osm"
    _write_osm(plain, [tags for tags, _ in RULES])
    packed = [tmp_path / "rules.osm.gz", tmp_path / "rules.osm.bz2"]
    packed[0].write_bytes(gzip.compress(plain.read_bytes()))
    packed[1].write_bytes(bz2.compress(plain.read_bytes()))
    want = read_osm_network(plain).features
    assert want and all(read_osm_network(path).features == want for path in packed)


def test_a_file_without_roads(tmp_path: Path) -> None:
    path = tmp_path / "buildings.osm"
    _write_osm(path, [{"building": "yes"}, {"highway": "construction"}])
    with pytest.raises(InvalidInput) as exc:
        read_osm_network(path)
    assert exc.value.errors[0].field == "file"
