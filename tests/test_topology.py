"""Topology rules on both backends: each rule refused and allowed, a site tightening them,
loosening only with an allowance, doors and muster points cut off (warned, parts named),
imports refused whole, the rules' API, and the demo and synthetic sites passing the defaults.

Expected parts and areas are read independently of gis.topology: the foot network's parts
with networkx, overlap areas on the WGS84 ellipsoid with pyproj.Geod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Geod
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select

from command.auth import Role
from gis import layers, topology
from gis.crs import SiteCRS
from gis.errors import InvalidInput, NotFound, PreconditionFailed
from gis.layer_io import ImportMode, RawRow, import_rows
from gis.layers import EditReport
from gis.reachability import (
    Edge,
    FootNetwork,
    Muster,
    read_musters,
    read_network,
    unreachable,
)
from gis.site_bundle import load_bundle, write_bundle
from gis.sitegen import generate_site
from gis.sites import create_site, get_site
from gis.storage.db import Database
from gis.storage.tables import ChangeRow
from tests.conftest import DEMO_ID, sign_in
from tests.problems import assert_problem

N1, W1, GATE, OFFICE, PARKING, TANKS = "Z-004", "Z-033", "Z-005", "Z-006", "Z-008", "Z-009"
N1_NAME = "Muster point N1 (north gate lawn)"
#: The contractor office's two walkways (south, north) and the part they join to the roads.
SOUTH_WALK, NORTH_WALK = "E-00029", "E-00032"
OFFICE_PART = ["E-00030", "E-00031", "E-00033", "E-00034"]
OFFICE_DOORS = ["E-00030", "E-00033"]
RULES = f"/api/sites/{DEMO_ID}/topology-rules"
GEOD = Geod(ellps="WGS84")


def geometry(db: Database, layer: str, fid: str) -> BaseGeometry:
    found = layers.get_feature(db, DEMO_ID, layer, fid).geometry
    assert found is not None
    return found


def zone(fid: str | None, kind: str, name: str, geom: BaseGeometry, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": fid,
        "geometry": mapping(geom),
        "properties": {"name": name, "kind": kind, "capacity": 100, **props},
    }


def refusal(db: Database, layer: str, data: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as exc:
        layers.create_feature(db, DEMO_ID, layer, data, actor="planner:li")
    return exc.value


def delete(db: Database, layer: str, fid: str) -> EditReport:
    report = EditReport()
    version = layers.get_feature(db, DEMO_ID, layer, fid).version
    layers.delete_feature(
        db, DEMO_ID, layer, fid, actor="planner:li", version=version, report=report
    )
    return report


def set_rules(db: Database, data: dict[str, Any]) -> topology.SiteRuleSet:
    with db.write() as session:
        version = topology.load_rules(session, DEMO_ID).version
        return topology.save_rules(session, DEMO_ID, data, actor="planner:li", if_match=version)


def foot_parts(db: Database) -> list[set[str]]:
    """The foot network's parts, as sets of edge ids (networkx, from the stored features)."""
    graph = nx.MultiGraph()
    for f in layers.list_features(db, DEMO_ID, "network"):
        if f.properties["foot"] and f.geometry is not None:
            coords = list(f.geometry.coords)
            a, b = (tuple(round(c, 7) for c in coords[i]) for i in (0, -1))
            graph.add_edge(a, b, key=f.id)
    return [
        {k for *_, k in graph.subgraph(c).edges(keys=True)} for c in nx.connected_components(graph)
    ]


# --- overlaps ---------------------------------------------------------------------------------


def test_a_gate_laid_exactly_over_a_muster_point_is_refused(db: Database) -> None:
    """The issue's case: a gate is no hazard and not of the muster point's kind, so only
    'muster-area-clear' catches it (everyone inside the area counts as mustered)."""
    n1 = geometry(db, "zones", N1)
    error = refusal(db, "zones", zone("G-new", "gate", "新北门", n1))
    assert [(e.field, e.reason) for e in error.errors] == [
        ("geometry", f"rule 'muster-area-clear': overlaps muster_point zone '{N1}' ({N1_NAME})")
    ]
    assert error.extra["rule"] == "muster-area-clear"
    assert error.extra["other"] == {
        "layer": "zones",
        "id": N1,
        "kind": "muster_point",
        "name": N1_NAME,
    }
    with pytest.raises(Exception, match="no zones feature"):
        layers.get_feature(db, DEMO_ID, "zones", "G-new")
    # A gate beside the muster point, sharing its edge, only touches it: allowed.
    x0, y0, x1, y1 = n1.bounds
    beside = box(x1, y0, x1 + (x1 - x0) / 10, y1)  # on the road between N1 and the gate
    assert shapely.touches(beside, n1)
    report = EditReport()
    layers.create_feature(
        db, DEMO_ID, "zones", zone("G-beside", "gate", "Gate", beside), actor="a", report=report
    )
    assert report.warnings == []
    # Parking is allowed under a muster point by default (people muster on car parks).
    layers.create_feature(db, DEMO_ID, "zones", zone("P-new", "parking", "停车场", n1), actor="a")


def test_muster_points_stay_clear_of_hazards(db: Database) -> None:
    tanks, n1 = geometry(db, "zones", TANKS), geometry(db, "zones", N1)
    current = layers.get_feature(db, DEMO_ID, "zones", N1)
    moved = {**zone(N1, "muster_point", N1_NAME, tanks), "properties": current.properties}
    with pytest.raises(InvalidInput) as exc:
        layers.replace_feature(db, DEMO_ID, "zones", N1, moved, actor="a", if_match=current.version)
    assert exc.value.errors[0].reason == (
        f"rule 'muster-clear-of-hazards': overlaps tank_farm zone '{TANKS}' "
        "(Tank farm T1 (methanol))"
    )
    assert layers.get_feature(db, DEMO_ID, "zones", N1).geometry == n1  # nothing changed
    # The other way round: a tank farm laid over the muster point names the muster point.
    error = refusal(db, "zones", zone("T-new", "tank_farm", "罐区", n1))
    assert error.errors[0].reason.startswith("rule 'muster-clear-of-hazards': overlaps muster_")
    assert error.extra["other"]["id"] == N1


def test_overlap_means_more_than_a_square_metre_in_common(db: Database) -> None:
    """Touching is fine, a digitising sliver (under 1 m²) too; more is refused, and the
    area reported agrees with the ellipsoid's."""
    tanks = geometry(db, "zones", TANKS)
    crs = get_site(db, DEMO_ID).crs
    metric = crs.to_metric(tanks)
    assert isinstance(metric, shapely.Polygon)
    sw, nw, ne = (shapely.Point(c) for c in list(metric.exterior.coords)[:3])
    side = sw.distance(nw)
    ux, uy = (nw.x - sw.x) / side, (nw.y - sw.y) / side  # the tank farm's own "north"
    for depth_m, refused in ((0.0, False), (0.005, False), (0.05, True)):
        # A strip 10 m deep on the tank farm's north side (on the road), reaching ``depth_m``
        # into it along its whole width.
        corners = [
            (p.x + ux * d, p.y + uy * d)
            for p, d in ((nw, -depth_m), (ne, -depth_m), (ne, 10), (nw, 10))
        ]
        muster = crs.to_wgs84(shapely.Polygon(corners))
        data = zone(f"M-{depth_m}", "muster_point", "集合点", muster)
        common = abs(GEOD.geometry_area_perimeter(muster.intersection(tanks))[0])
        if not refused:
            assert common < 1.0
            layers.create_feature(db, DEMO_ID, "zones", data, actor="a")
            layers.delete_feature(db, DEMO_ID, "zones", f"M-{depth_m}", actor="a", version=1)
            continue
        error = refusal(db, "zones", data)
        (violation,) = error.extra["violations"]
        assert common > 1.0
        assert violation["overlap_m2"] == pytest.approx(common, rel=0.02, abs=0.1)


def test_zones_of_one_kind_do_not_overlap_unless_allowed(db: Database) -> None:
    office = geometry(db, "zones", OFFICE)
    half = shapely.affinity.translate(office, xoff=(office.bounds[2] - office.bounds[0]) / 2)
    error = refusal(db, "zones", zone("O-new", "office", "办公楼", half))
    assert error.errors[0].reason == (
        f"rule 'same-kind-overlap': overlaps office zone '{OFFICE}' (Contractor office)"
    )
    # Roads meet at junctions, restricted areas nest: allowed by default.
    road = box(121.3500, 30.7200, 121.3510, 30.7202)
    crossing = box(121.3504, 30.7196, 121.3506, 30.7206)
    layers.create_feature(db, DEMO_ID, "zones", zone("RD-1", "road", "Road", road), actor="a")
    layers.create_feature(db, DEMO_ID, "zones", zone("RD-2", "road", "Road", crossing), actor="a")
    incinerator = geometry(db, "zones", "Z-003")
    inner = incinerator.buffer(-0.0001)
    layers.create_feature(
        db, DEMO_ID, "zones", zone("RA-1", "restricted_area", "动火区", inner), actor="a"
    )


def test_a_breach_already_there_does_not_block_other_edits(db: Database) -> None:
    """A rule tightened over data that breaks it: the rules' answer lists the breach; edits
    that leave it as it was pass, new breaches do not."""
    n1 = geometry(db, "zones", N1)
    layers.create_feature(db, DEMO_ID, "zones", zone("P-1", "parking", "Car park", n1), actor="a")
    set_rules(db, {"rules": {"muster-area-clear": {"allowed": []}}})
    with db.read() as session:
        found = topology.check_site(db, session, get_site(db, DEMO_ID))
    assert [(v.rule, {v.id, (v.other or {}).get("id")}) for v in found] == [
        ("muster-area-clear", {"P-1", N1})
    ]
    changed = layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        "P-1",
        {"properties": {"capacity": 40}},
        actor="a",
        if_match=1,
        partial=True,
    )
    assert changed.version == 2
    refusal(db, "zones", zone("P-2", "parking", "Car park", geometry(db, "zones", W1)))


# --- rules as data ----------------------------------------------------------------------------


def test_a_site_tightens_its_rules(db: Database) -> None:
    parking = geometry(db, "zones", PARKING)
    over_parking = zone("O-1", "office", "Site office", parking.buffer(-0.00005))
    layers.create_feature(db, DEMO_ID, "zones", over_parking, actor="a")  # allowed by default
    layers.delete_feature(db, DEMO_ID, "zones", "O-1", actor="a", version=1)
    stored = set_rules(db, {"rules": {"forbidden-overlap": {"pairs": [["parking", "office"]]}}})
    assert stored.version == 2 and stored.rules.loosened() == []
    error = refusal(db, "zones", over_parking)
    assert error.errors[0].reason == (
        f"rule 'forbidden-overlap': overlaps parking zone '{PARKING}' (Truck parking)"
    )
    # Reachability as a refusal: the deletion that cuts the office's doors off is refused.
    delete(db, "network", SOUTH_WALK)
    set_rules(db, {"rules": {"foot-reachable": {"severity": "refuse"}}})
    version = layers.get_feature(db, DEMO_ID, "network", NORTH_WALK).version
    with pytest.raises(InvalidInput) as exc:
        layers.delete_feature(db, DEMO_ID, "network", NORTH_WALK, actor="a", version=version)
    assert {v["id"] for v in exc.value.extra["violations"]} == set(OFFICE_DOORS)
    assert layers.get_feature(db, DEMO_ID, "network", NORTH_WALK).version == version


def test_loosening_needs_a_recorded_allowance(db: Database) -> None:
    looser = {
        "rules": {
            "same-kind-overlap": {"allowed": ["road", "restricted_area", "office"]},
            "muster-clear-of-hazards": {"kinds": ["process_unit", "tank_farm"]},
            "foot-reachable": {"severity": "off"},
        }
    }
    with pytest.raises(InvalidInput) as exc:
        set_rules(db, looser)
    assert {e.field for e in exc.value.errors} == {
        "rules.same-kind-overlap.allowed",
        "rules.muster-clear-of-hazards.kinds",
        "rules.foot-reachable.severity",
        "allowance",
    }
    reason = "办公楼 A 与 B 为同一建筑的两部分 (one building, two wings)"
    stored = set_rules(db, {**looser, "allowance": reason})
    shown = stored.to_json()
    assert shown["allowance"] == reason
    assert {e["field"] for e in shown["loosened"]} == {
        "rules.same-kind-overlap.allowed",
        "rules.muster-clear-of-hazards.kinds",
        "rules.foot-reachable.severity",
    }
    office = geometry(db, "zones", OFFICE)
    layers.create_feature(db, DEMO_ID, "zones", zone("O-2", "office", "B 翼", office), actor="a")
    with db.read() as session:
        logged = session.scalars(select(ChangeRow).where(ChangeRow.layer == "topology_rules")).all()
    assert [(c.action, c.version, c.note) for c in logged] == [("update", 2, reason)]
    with pytest.raises(InvalidInput) as bad:
        set_rules(db, {"rules": {"inside-site": {}, "same-kind-overlap": {"allowed": ["x"]}}})
    assert {e.field for e in bad.value.errors} == {
        "rules.inside-site",
        "rules.same-kind-overlap.allowed.0",
    }


def test_a_stale_rule_set_is_refused(db: Database) -> None:
    set_rules(db, {"overlap_tolerance_m2": 0.5})
    with db.write() as session, pytest.raises(PreconditionFailed):
        topology.save_rules(session, DEMO_ID, {}, actor="b", if_match=1)


# --- reachability -----------------------------------------------------------------------------


def test_deleting_an_edge_warns_of_the_doors_it_cuts_off(db: Database) -> None:
    north = layers.get_feature(db, DEMO_ID, "network", NORTH_WALK)
    assert delete(db, "network", SOUTH_WALK).warnings == []  # the north way still leads out
    report = delete(db, "network", NORTH_WALK)  # the last way out: a warning, not a refusal
    with pytest.raises(Exception, match="no network feature"):
        layers.get_feature(db, DEMO_ID, "network", NORTH_WALK)
    island = next(p for p in foot_parts(db) if OFFICE_DOORS[0] in p)
    assert sorted(island) == OFFICE_PART
    assert [(v["rule"], v["layer"], v["id"]) for v in report.violations] == [
        ("foot-reachable", "network", door) for door in OFFICE_DOORS
    ]
    for violation, text in zip(report.violations, report.warnings, strict=True):
        assert violation["parts"] == sorted(island) and violation["part_edges"] == len(island)
        assert text == violation["reason"]
        assert "Contractor office door" in text and "cut off from every muster point" in text
        assert ", ".join(OFFICE_PART) in text
    # Put back, the doors are reachable again: no warning.
    again = EditReport()
    layers.create_feature(db, DEMO_ID, "network", north.to_geojson(), actor="a", report=again)
    assert again.warnings == []


def test_a_muster_point_cut_off_is_warned(db: Database) -> None:
    delete(db, "network", "E-00019")
    report = delete(db, "network", "E-00021")
    ((violation, text),) = zip(report.violations, report.warnings, strict=True)
    assert (violation["layer"], violation["id"]) == ("zones", N1)
    island = next(p for p in foot_parts(db) if "E-00020" in p)
    assert violation["parts"] == sorted(island) == ["E-00020", "E-00022"]
    assert f"muster point {N1} ({N1_NAME}) is cut off" in text and "holds no door" in text


def test_the_foot_network_kept_after_edits_matches_a_fresh_read(db: Database) -> None:
    for fid in (SOUTH_WALK, "E-00019", "E-00021"):
        delete(db, "network", fid)
    layers.replace_feature(
        db,
        DEMO_ID,
        "network",
        NORTH_WALK,
        {"properties": {"foot": False, "vehicle": True}},
        actor="a",
        if_match=1,
        partial=True,
    )
    # A name changes no shape, yet the warnings name the door by it.
    renamed = {"properties": {"name": "南门"}}
    layers.replace_feature(
        db, DEMO_ID, "network", OFFICE_DOORS[0], renamed, actor="a", if_match=1, partial=True
    )
    site = get_site(db, DEMO_ID)
    with db.read() as session:
        kept = db.foot_networks.get(session, DEMO_ID)
        fresh = read_network(session, DEMO_ID)
        musters = read_musters(session, DEMO_ID)
    assert len(kept) == len(fresh) and len(kept.ids) > len(kept)  # kept: derived, not read

    def crs() -> SiteCRS:
        return site.crs

    assert unreachable(kept, musters, crs) == unreachable(fresh, musters, crs)
    assert unreachable(kept, musters, crs)[f"network/{OFFICE_DOORS[0]}"][2] == "南门"
    assert set(unreachable(fresh, musters, crs)) == {
        *(f"network/{d}" for d in OFFICE_DOORS),
        f"zones/{N1}",
    }


def test_a_muster_point_far_from_the_foot_network(db: Database) -> None:
    with db.write() as session:
        create_site(
            session,
            {
                "id": "tiny",
                "name": "小厂",
                "boundary": mapping(box(121.30, 30.70, 121.302, 30.702)),
            },
            actor="a",
        )
    line = shapely.LineString([(121.3, 30.7001), (121.302, 30.7001)])
    road = {
        "type": "Feature",
        "id": "E-1",
        "geometry": mapping(line),
        "properties": {"name": "南路"},
    }
    layers.create_feature(db, "tiny", "network", road, actor="a")
    far = zone("M-far", "muster_point", "北集合点", box(121.3008, 30.7015, 121.3012, 30.7018))
    report = EditReport()
    layers.create_feature(db, "tiny", "zones", far, actor="a", report=report)
    assert report.warnings == [
        "rule 'foot-reachable': muster point M-far (北集合点) is more than 50 m from the foot "
        "network"
    ]
    near = zone("M-near", "muster_point", "南集合点", box(121.3008, 30.7003, 121.3012, 30.7006))
    report = EditReport()
    layers.create_feature(db, "tiny", "zones", near, actor="a", report=report)
    assert report.warnings == []


# --- imports ----------------------------------------------------------------------------------


def test_an_import_is_refused_listing_every_breach(db: Database) -> None:
    office = layers.get_feature(db, DEMO_ID, "zones", OFFICE)
    assert office.geometry is not None
    rows = [
        RawRow(1, zone("G-1", "gate", "Gate", geometry(db, "zones", N1))),
        RawRow(2, zone("O-3", "office", "Office", office.geometry.buffer(-0.00002))),
        RawRow(
            3,
            {
                **zone(OFFICE, "office", "Contractor office", office.geometry),
                "properties": {**office.properties, "capacity": 99, "version": 1},
            },
        ),
        RawRow(4, zone("T-1", "tank_farm", "Tanks", geometry(db, "zones", W1))),
    ]
    before = len(layers.list_features(db, DEMO_ID, "zones"))
    with pytest.raises(InvalidInput) as exc:
        import_rows(db, DEMO_ID, "zones", rows, actor="a", mode=ImportMode.MERGE)
    assert [(e.row, e.reason.split("'")[1]) for e in exc.value.errors] == [
        (1, "muster-area-clear"),
        (2, "same-kind-overlap"),
        (4, "muster-clear-of-hazards"),
    ]
    assert [v["other"]["id"] for v in exc.value.extra["violations"]] == [N1, OFFICE, W1]
    assert len(layers.list_features(db, DEMO_ID, "zones")) == before
    assert layers.get_feature(db, DEMO_ID, "zones", OFFICE).properties["capacity"] == 60


def test_an_import_that_cuts_doors_off_warns_with_rows(db: Database) -> None:
    rows = []
    for n, fid in enumerate((SOUTH_WALK, NORTH_WALK), start=1):
        edge = layers.get_feature(db, DEMO_ID, "network", fid)
        props = {**edge.properties, "foot": False, "vehicle": True, "version": edge.version}
        assert edge.geometry is not None
        data = {
            "type": "Feature",
            "id": fid,
            "geometry": mapping(edge.geometry),
            "properties": props,
        }
        rows.append(RawRow(n, data))
    report = import_rows(db, DEMO_ID, "network", rows, actor="a", mode=ImportMode.MERGE)
    assert report.updated == 2
    assert [v["id"] for v in report.violations] == OFFICE_DOORS
    assert report.to_json()["warnings"] == report.warnings and len(report.warnings) == 2


# --- the API ----------------------------------------------------------------------------------


def test_the_rules_api_with_roles(client: TestClient, db: Database) -> None:
    viewer = sign_in(db, "viewer-wang", [Role.VIEWER])
    planner = sign_in(db, "planner-li", [Role.PLANNER])
    shown = client.get(RULES, headers=viewer)
    assert shown.status_code == 200 and shown.headers["etag"] == '"1"'
    body = shown.json()
    assert [r["id"] for r in body["rules"]] == [
        "inside-site",
        "muster-clear-of-hazards",
        "muster-area-clear",
        "same-kind-overlap",
        "forbidden-overlap",
        "foot-reachable",
    ]
    assert {r["source"] for r in body["rules"]} == {"default"}
    tighter = {"rules": {"forbidden-overlap": {"pairs": [["office", "parking"]]}}}
    assert_problem(client.put(RULES, json=tighter, headers={**viewer, "If-Match": '"1"'}), 403)
    assert_problem(client.put(RULES, json=tighter, headers=planner), 428, field="If-Match")
    assert_problem(client.put(RULES, json=tighter, headers={**planner, "If-Match": '"7"'}), 412)
    looser = {"rules": {"muster-area-clear": {"allowed": ["parking", "gate"]}}}
    assert_problem(
        client.put(RULES, json=looser, headers={**planner, "If-Match": '"1"'}),
        422,
        field="allowance",
    )
    put = client.put(RULES, json=tighter, headers={**planner, "If-Match": '"1"'})
    assert put.status_code == 200, put.text
    assert put.headers["etag"] == '"2"' and put.json()["violations"] == []
    forbidden = next(r for r in put.json()["rules"] if r["id"] == "forbidden-overlap")
    assert forbidden["pairs"] == [["office", "parking"]] and forbidden["source"] == "site"
    parking = geometry(db, "zones", PARKING).buffer(-0.00005)
    made = client.post(
        f"/api/sites/{DEMO_ID}/layers/zones",
        json=zone("O-9", "office", "Site office", parking),
        headers=planner,
    )
    problem = assert_problem(made, 422, field="geometry")
    assert problem["rule"] == "forbidden-overlap" and problem["other"]["id"] == PARKING
    assert problem["violations"][0]["id"] == "O-9"


def test_warnings_reach_the_client_in_the_body_and_an_ascii_header(client: TestClient) -> None:
    base = f"/api/sites/{DEMO_ID}/layers/network/features"
    first = {"If-Match": '"1"'}
    chinese = {"properties": {"name": "承包商办公楼南门"}}
    renamed = client.patch(f"{base}/{OFFICE_DOORS[0]}", json=chinese, headers=first)
    assert renamed.status_code == 200 and "warnings" not in renamed.json()
    quiet = client.delete(f"{base}/{SOUTH_WALK}", headers=first)
    assert quiet.status_code == 204 and "Rallypoint-Warning" not in quiet.headers
    cut = client.delete(f"{base}/{NORTH_WALK}", headers=first)
    assert cut.status_code == 200, cut.text
    header = cut.headers["Rallypoint-Warning"]
    assert header.isascii() and header == f"topology foot-reachable: {', '.join(OFFICE_DOORS)}"
    body = cut.json()
    assert any("承包商办公楼南门" in w for w in body["warnings"])
    assert [v["id"] for v in body["violations"]] == OFFICE_DOORS
    # A PATCH answers the feature, with the warnings as a foreign member of the GeoJSON.
    closed = {"properties": {"foot": False, "vehicle": True}}
    one = client.patch(f"{base}/E-00019", json=closed, headers=first)
    assert one.status_code == 200 and "warnings" not in one.json()
    other = client.patch(f"{base}/E-00021", json=closed, headers=first)
    assert other.status_code == 200, other.text
    feature = other.json()
    assert feature["type"] == "Feature" and feature["id"] == "E-00021"
    assert [v["id"] for v in feature["violations"]] == [N1]
    assert other.headers["Rallypoint-Warning"] == f"topology foot-reachable: {N1}"
    listed = client.get(f"{RULES}/violations").json()
    assert [v["id"] for v in listed["violations"]] == [*OFFICE_DOORS, N1]


# --- the demo and synthetic sites -------------------------------------------------------------


def test_the_demo_site_passes_the_default_rules(db: Database) -> None:
    with db.read() as session:
        assert topology.check_site(db, session, get_site(db, DEMO_ID)) == []


def test_a_synthetic_site_passes_the_default_rules() -> None:
    site, bundle = generate_site(edges=6000, people=0, site_id="synthetic-6000")
    zones = bundle["zones"]["features"]
    geoms = [shape(z["geometry"]) for z in zones]
    tree = shapely.STRtree(geoms)
    rules = topology.DEFAULTS
    for i, j in zip(*tree.query(geoms, predicate="intersects"), strict=True):
        a, b = zones[i]["properties"]["kind"], zones[j]["properties"]["kind"]
        if i < j and rules.pair_rule(a, b) is not None:
            assert geoms[i].intersection(geoms[j]).area == 0, (zones[i]["id"], zones[j]["id"])
    edges = [
        Edge.of(str(f["id"]), shape(f["geometry"]), {"foot": True, **f["properties"]})
        for f in bundle["network"]["features"]
    ]
    musters = [
        Muster.of(str(z["id"]), z["properties"]["name"], shape(z["geometry"]))
        for z in zones
        if z["properties"]["kind"] == "muster_point"
    ]
    centre = shape(site["boundary"]).centroid
    crs = SiteCRS.for_site(centre.x, centre.y)
    assert musters and unreachable(FootNetwork.from_edges(edges), musters, lambda: crs) == {}


def test_a_bundle_is_checked_whole_and_may_carry_its_rules(db: Database, tmp_path: Path) -> None:
    site = {
        "id": "bundle-works",
        "name": "样例厂",
        "boundary": mapping(box(121.30, 30.70, 121.31, 30.71)),
    }
    office = box(121.302, 30.702, 121.304, 30.704)
    wing = shapely.affinity.translate(office, xoff=0.001)  # overlaps half of it
    zones = [zone("A", "office", "A 楼", office), zone("B", "office", "B 楼", wing)]
    write_bundle(tmp_path, site, {"zones": {"type": "FeatureCollection", "features": zones}})
    with pytest.raises(InvalidInput) as exc:
        load_bundle(db, tmp_path, actor="a")
    assert [(e.field, e.row) for e in exc.value.errors] == [("zones.geojson", 1)]
    assert "rule 'same-kind-overlap'" in exc.value.errors[0].reason
    with pytest.raises(NotFound):
        get_site(db, "bundle-works")
    # The bundle's own rules: looser only with an allowance, which is kept.
    (tmp_path / "topology-rules.yaml").write_text(
        "# two wings of one building\n"
        "rules:\n  same-kind-overlap:\n    allowed: [road, restricted_area, office]\n"
        "allowance: A and B are wings of one building\n",
        encoding="utf-8",
    )
    loaded, reports = load_bundle(db, tmp_path, actor="a")
    assert reports is not None and reports["zones"].created == 2
    with db.read() as session:
        rules = topology.load_rules(session, loaded.id)
    assert rules.version == 2 and rules.document.allowance == "A and B are wings of one building"
