"""Surroundings: the OSM basemap and sensitive receptors, the demo's neighbours, and the
receptors an incident's threat zones reach.

The extracts are (c) OpenStreetMap contributors, ODbL 1.0: West Oakland (shared/data/osm) and
Kirchberg an der Iller (tests/data/osm, see the README there). Each is read here with xml.etree,
not with the project's reader, and the rule documented in gis/osm.py ("Surroundings") is applied
to it again, written afresh, so that a mistake in the importer cannot hide itself. Areas are
measured here on the ellipsoid (pyproj's Geod), not in the importer's projected CRS.
"""

from __future__ import annotations

import bz2
import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyproj import Geod

from gis import layers
from gis.errors import InvalidInput
from gis.osm import import_osm, population_estimate, read_osm_surroundings
from gis.storage.db import Database
from tests.conftest import DEMO_ID, OSM_EXTRACT
from tests.problems import assert_problem
from tests.test_incidents import activate

KIRCHBERG = Path(__file__).resolve().parent / "data" / "osm" / "Kirchberg-an-der-Iller.osm.bz2"
EXTRACTS = [OSM_EXTRACT, KIRCHBERG]
GEOD = Geod(ellps="WGS84")
BASE = f"/api/sites/{DEMO_ID}/layers"
# Around the demo's school (700 m south-west of the chlorine store), and its up-wind clinic.
SCHOOL_BOX = "121.3422,30.7146,121.3432,30.7152"
CLINIC_BOX = "121.3595,30.7260,121.3599,30.7263"


def expected_surroundings(path: Path) -> tuple[dict[str, tuple[Any, ...]], dict[str, Any]]:
    """Per id, what the documented rule makes of each way and tagged node: basemap (kind,
    subtype, name) and receptors (kind, name, population)."""
    with bz2.open(path, "rb") as stream:
        root = ET.parse(stream).getroot()
    where = {
        n.attrib["id"]: (float(n.attrib["lon"]), float(n.attrib["lat"])) for n in root.iter("node")
    }
    basemap: dict[str, tuple[Any, ...]] = {}
    receptors: dict[str, Any] = {}
    for element in [*root.iter("way"), *root.iter("node")]:
        tags = {t.attrib["k"]: t.attrib["v"] for t in element.iter("tag")}
        if not tags:
            continue
        refs = [nd.attrib["ref"] for nd in element.iter("nd")]
        is_way = element.tag == "way"
        closed = is_way and len(refs) >= 4 and refs[0] == refs[-1]
        fid = f"osm-{'w' if is_way else 'n'}{element.attrib['id']}"
        name = tags.get("name", "").strip() or None
        drawn = _documented_basemap(tags, closed)
        if drawn is not None and (drawn[0] == "place") == (not is_way):
            basemap[fid] = (*drawn, name)
        kind = _documented_receptor(tags, closed)
        if kind is not None:
            ring = [where[r] for r in refs]
            lons, lats = zip(*ring, strict=True) if ring else ((), ())
            area = abs(GEOD.polygon_area_perimeter(lons, lats)[0]) if closed else 0.0
            receptors[fid] = (kind, name, _documented_population(tags, kind, area))
    return basemap, receptors


def _documented_basemap(tags: dict[str, str], closed: bool) -> tuple[str, str] | None:
    if "highway" in tags:
        return "road", tags["highway"]
    if tags.get("railway") in ("rail", "light_rail", "tram", "subway", "narrow_gauge"):
        return "railway", tags["railway"]
    if closed and "building" in tags:
        return "building", tags["building"]
    waterway = tags.get("waterway")
    if waterway and (closed or waterway not in ("riverbank", "dock", "basin")):
        return "water", waterway
    if closed and tags.get("natural") == "water":
        return "water", "water"
    if closed and tags.get("landuse") in ("reservoir", "basin"):
        return "water", tags["landuse"]
    if closed and "landuse" in tags:
        return "landuse", tags["landuse"]
    if closed and tags.get("leisure") in ("park", "garden", "pitch"):
        return "landuse", tags["leisure"]
    if closed and tags.get("natural") in ("wood", "scrub", "grassland", "heath", "wetland"):
        return "landuse", tags["natural"]
    if tags.get("place") and tags.get("name"):
        return "place", tags["place"]
    return None


def _documented_receptor(tags: dict[str, str], closed: bool) -> str | None:
    amenity = tags.get("amenity")
    kinds = {
        "school": "school",
        "kindergarten": "kindergarten",
        "childcare": "kindergarten",
        "hospital": "hospital",
        "clinic": "clinic",
        "nursing_home": "care_home",
    }
    if amenity in kinds:
        return kinds[amenity]
    if amenity == "social_facility" and tags.get("social_facility") in (
        "nursing_home",
        "assisted_living",
    ):
        return "care_home"
    homes: tuple[str, ...] = ("residential", "apartments", "dormitory", "house", "detached")
    homes += ("semidetached_house", "terrace", "bungalow")
    if closed and (tags.get("landuse") == "residential" or tags.get("building") in homes):
        return "residential"
    return None


def _documented_population(tags: dict[str, str], kind: str, area_m2: float) -> int | None:
    if tags.get("capacity", "").isdigit():
        return int(tags["capacity"])
    if kind == "hospital" and tags.get("beds", "").isdigit():
        return int(tags["beds"])
    if kind != "residential":
        return None
    building, flats = tags.get("building"), tags.get("building:flats", "")
    if building in ("house", "detached", "semidetached_house", "terrace", "bungalow"):
        return math.ceil((int(flats) if flats.isdigit() else 1) * 2.5)
    if building in ("residential", "apartments", "dormitory"):
        if flats.isdigit():
            return math.ceil(int(flats) * 2.5)
        levels = tags.get("building:levels", "")
        return math.ceil(area_m2 * (int(levels) if levels.isdigit() else 3) / 40)
    return math.ceil(area_m2 * 4000 / 1e6) if tags.get("landuse") == "residential" else None


@pytest.mark.parametrize("path", EXTRACTS, ids=lambda p: p.name.split(".")[0])
def test_basemap_and_receptors_match_an_independent_reading(path: Path) -> None:
    basemap, receptors = expected_surroundings(path)
    found = read_osm_surroundings(path)
    assert found.skipped == {}  # neither extract clips a mapped way
    assert {
        f["id"]: (f["properties"]["kind"], f["properties"]["subtype"], f["properties"].get("name"))
        for f in found.basemap
    } == basemap
    got = {f["id"]: (f["properties"]["kind"], f["properties"].get("name")) for f in found.receptors}
    assert got == {fid: (kind, name) for fid, (kind, name, _) in receptors.items()}
    for feature in found.receptors:
        want = receptors[feature["id"]][2]
        population = feature["properties"].get("population")
        # The ellipsoid and the projected CRS agree on an area to far better than 1 %.
        assert (population is None) == (want is None)
        assert population is None or abs(population - want) <= max(1, 0.01 * want)


def test_the_extracts_hold_what_the_wall_draws() -> None:
    """The figures, so that a rule that matched nothing in either file cannot pass."""
    oakland = read_osm_surroundings(OSM_EXTRACT)
    kinds = Counter(f["properties"]["kind"] for f in oakland.basemap)
    assert kinds == {"road": 31, "building": 23, "landuse": 7, "railway": 2}
    named = {f["properties"].get("name"): f["properties"] for f in oakland.receptors}
    assert named["Prescott School"]["kind"] == "school"
    assert named["Campbell Village"]["estimate"] == "area density"
    kirchberg = read_osm_surroundings(KIRCHBERG)
    assert Counter(f["properties"]["kind"] for f in kirchberg.basemap) == {
        "building": 32,
        "road": 19,
    }
    [house] = kirchberg.receptors
    assert house["properties"] == {
        "kind": "residential",
        "population": 3,
        "estimate": "2.5 per dwelling",
    }


@pytest.mark.parametrize(
    ("tags", "kind", "area", "want"),
    [
        ({"amenity": "school", "capacity": "640"}, "school", 0.0, (640, "capacity tag")),
        ({"amenity": "hospital", "beds": "300"}, "hospital", 0.0, (300, "beds tag")),
        ({"amenity": "school"}, "school", 5000.0, (None, None)),
        ({"building": "house"}, "residential", 120.0, (3, "2.5 per dwelling")),
        (
            {"building": "apartments", "building:flats": "24"},
            "residential",
            0.0,
            (60, "2.5 per dwelling"),
        ),
        (
            {"building": "apartments", "building:levels": "6"},
            "residential",
            400.0,
            (60, "floor area"),
        ),
        ({"building": "apartments"}, "residential", 400.0, (30, "floor area")),
        ({"landuse": "residential"}, "residential", 250_000.0, (1000, "area density")),
        ({"landuse": "residential", "capacity": "-5"}, "residential", 0.0, (0, "area density")),
    ],
)
def test_population_rule(
    tags: dict[str, str], kind: str, area: float, want: tuple[int | None, str | None]
) -> None:
    assert population_estimate(tags, kind, area) == want


def test_import_loads_the_surroundings_beside_the_network(db: Database) -> None:
    basemap, receptors = expected_surroundings(OSM_EXTRACT)
    result = import_osm(
        db, OSM_EXTRACT, site_id="west-oakland", create_site_name="West Oakland", actor="test"
    )
    assert result.basemap is not None and result.receptors is not None
    assert (result.basemap.created, result.receptors.created) == (len(basemap), len(receptors))
    stored = layers.list_features(db, "west-oakland", "basemap")
    assert {f.id for f in stored} == set(basemap)
    assert {f.id for f in layers.list_features(db, "west-oakland", "receptors")} == set(receptors)
    # Roads are drawn and routed; buildings and landuse only drawn, never network.
    network = layers.list_features(db, "west-oakland", "network")
    assert {f.id.split("-")[1] for f in network} <= {
        fid.removeprefix("osm-w") for fid, (kind, *_) in basemap.items() if kind == "road"
    }
    again = import_osm(db, OSM_EXTRACT, site_id="west-oakland", actor="test")
    assert again.basemap is not None and again.receptors is not None
    assert (again.basemap.created, again.basemap.updated, again.basemap.deleted) == (0, 0, 0)
    assert (again.receptors.created, again.receptors.deleted) == (0, 0)


def test_demo_plume_lists_the_school_and_the_village_by_name(command: TestClient) -> None:
    picture = activate(command)  # chlorine, 2 kg/s, wind from 45 degrees at 3 m/s
    listed = picture["receptors"]
    names = {level: {r["name"] for r in found} for level, found in listed.items()}
    assert "Dongwan primary school (东湾小学)" in names["1"]
    assert "Dongwan village (东湾村)" in names["1"]
    assert not any("Chemical park clinic" in found for found in names.values())  # up-wind
    school = next(r for r in listed["1"] if r["kind"] == "school")
    assert school == {
        "id": "RC-01",
        "name": "Dongwan primary school (东湾小学)",
        "kind": "school",
        "population": 420,
    }
    # Listed as the exposure counts them, level by level; zones nest.
    for level, found in listed.items():
        ids = [r["id"] for r in found]
        assert ids == picture["exposure"]["inside"][level]["receptors"]
        assert len(ids) == picture["exposure"]["counts"][level]["receptors"]
    assert set(names["3"]) <= set(names["2"]) <= set(names["1"])
    again = command.get(f"/api/sites/{DEMO_ID}/incidents/{picture['incident']['id']}").json()
    assert again["receptors"] == listed


def test_layers_are_served_and_bbox_filtered(client: TestClient) -> None:
    everything = client.get(f"{BASE}/basemap")
    assert everything.status_code == 200
    kinds = Counter(f["properties"]["kind"] for f in everything.json()["features"])
    assert kinds == {"road": 2, "water": 1, "landuse": 1, "place": 1, "building": 46}
    near_school = client.get(f"{BASE}/basemap", params={"bbox": SCHOOL_BOX}).json()
    assert {f["properties"].get("name") for f in near_school["features"]} == {
        "Dongwan primary school"
    }
    receptors = client.get(f"{BASE}/receptors").json()["features"]
    assert [f["properties"]["kind"] for f in receptors] == ["school", "residential", "clinic"]
    clinic = client.get(f"{BASE}/receptors", params={"bbox": CLINIC_BOX}).json()["features"]
    assert [f["properties"]["name"] for f in clinic] == ["Chemical park clinic"]
    assert (
        client.get(f"{BASE}/receptors", params={"kind": "school"}).json()["features"][0]["id"]
        == "RC-01"
    )
    listing = {layer["name"]: layer for layer in client.get(BASE).json()["layers"]}
    assert listing["basemap"]["count"] == len(everything.json()["features"])
    assert listing["receptors"]["geometry_type"] == "Geometry"


def test_surroundings_lie_outside_the_fence_but_zones_may_not(db: Database) -> None:
    far = {"type": "Point", "coordinates": [121.30, 30.70]}  # some 5 km from the works
    home = {"type": "Feature", "geometry": far, "properties": {"kind": "residential"}}
    created = layers.create_feature(db, DEMO_ID, "receptors", home, actor="planner:li")
    assert created.properties["kind"] == "residential"
    square = {
        "type": "Polygon",
        "coordinates": [[[121.30, 30.70], [121.301, 30.70], [121.301, 30.701], [121.30, 30.70]]],
    }
    zone = {"type": "Feature", "geometry": square, "properties": {"name": "x", "kind": "office"}}
    with pytest.raises(InvalidInput) as exc:
        layers.create_feature(db, DEMO_ID, "zones", zone, actor="planner:li")
    assert [e.reason for e in exc.value.errors] == [
        "rule 'inside-site': geometry lies outside the site boundary"
    ]
    with pytest.raises(InvalidInput):  # a receptor is still a receptor: its kind is checked
        layers.create_feature(
            db, DEMO_ID, "receptors", {**home, "properties": {"kind": "mall"}}, actor="x"
        )


def test_mixed_layers_export_to_geopackage_and_refuse_shapefiles(client: TestClient) -> None:
    gpkg = client.get(f"{BASE}/basemap/export", params={"format": "gpkg"})
    assert gpkg.status_code == 200, gpkg.text
    assert gpkg.content.startswith(b"SQLite format 3")
    refused = client.get(f"{BASE}/basemap/export", params={"format": "shp"})
    assert_problem(refused, 422, field="format")
    receptors = client.get(f"{BASE}/receptors/export", params={"format": "shp"})
    assert_problem(receptors, 422, field="format")  # polygons and the clinic's point
    assert client.get(f"{BASE}/network/export", params={"format": "shp"}).status_code == 200
