"""Evacuation under a live incident: muster areas judged against the zones, zone edges usable up
to the zone's boundary, trapped reasons that name the real cause, and cheap per-person updates."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring

from gis.errors import InvalidInput
from gis.hazards import threat as threats
from gis.hazards.zones import ThreatZone
from routing.evacuation import (
    EvacuationRoutes,
    EvacuationSearch,
    MusterPoints,
    Wind,
    evacuation_routes,
    evacuation_search,
)
from routing.graph import NetworkGraph, graph_from_features
from routing.snapping import snap
from tests.conftest import zone_centroid
from tests.test_routing import (
    CRS,
    LAYERS,
    NETWORK,
    circle,
    demo_people,
    local_graph,
    lonlat,
    scenarios,
)

MUSTER_FEATURES = [
    z for z in LAYERS["zones"]["features"] if z["properties"]["kind"] == "muster_point"
]
MUSTER_NAMES = {f["id"]: f["properties"]["name"].split()[2] for f in MUSTER_FEATURES}  # N1, E1, W1


def demo_muster_areas() -> MusterPoints:
    """The demo site's muster zones as the command server holds them: a point and the area."""
    return MusterPoints(
        [f["id"] for f in MUSTER_FEATURES],
        np.array([shape(f["geometry"]).representative_point().coords[0] for f in MUSTER_FEATURES]),
        [f["properties"]["capacity"] for f in MUSTER_FEATURES],
        areas=[shape(f["geometry"]) for f in MUSTER_FEATURES],
    )


@cache
def foot() -> NetworkGraph:
    return graph_from_features(NETWORK, crs=CRS, mode="foot")


@cache
def chlorine(wind_from_deg: float) -> tuple[tuple[ThreatZone, ...], Wind]:
    """The chlorine release of the incident tests (2 kg/s, 3 m/s) at the chlorine store."""
    source = tuple(zone_centroid("Z-027"))
    assessment = threats.toxic_release(
        CRS,
        (source[0], source[1]),
        threats.ToxicRelease("chlorine", 2000),
        threats.Weather(3, wind_from_deg),
    )
    return assessment.zones, Wind(wind_from_deg, assessment.source_lonlat)


def muster_id(name: str) -> str:
    return str(next(m for m, n in MUSTER_NAMES.items() if n == name))


# --- 1. muster points judged by their areas --------------------------------------------------


@pytest.mark.parametrize(("wind_from_deg", "endangered"), [(270.0, "E1"), (45.0, "W1")])
def test_a_muster_area_reaching_into_level_2_is_not_used(
    wind_from_deg: float, endangered: str
) -> None:
    """Reproduced on the server: at L3, wind from 270 sent 9 people to E1 (inside level 2),
    wind from 45 sent 20 to W1 (partly inside level 2); ``unusable_musters`` was empty."""
    zones, wind = chlorine(wind_from_deg)
    ids, xy = demo_people()
    musters = demo_muster_areas()
    routes = evacuation_routes(foot(), ids, xy, musters, zones=zones, wind=wind)
    bad = muster_id(endangered)
    assert bad in routes.unusable_musters
    assert "threat level 2" in routes.unusable_musters[bad]
    assert "% of its area inside threat level" in routes.unusable_musters[bad]
    assert not (routes.muster == routes.muster_ids.index(bad)).any()
    # Points only (an old caller): the point is the area, judged the same way.
    points = MusterPoints(musters.ids, musters.lonlat, musters.capacity)
    by_point = evacuation_routes(foot(), ids, xy, points, zones=zones, wind=wind)
    level = (
        2
        if shapely.intersects_xy(zone(zones, 2), *musters.lonlat[list(musters.ids).index(bad)])
        else 0
    )
    assert (bad in by_point.unusable_musters) == (level == 2)


def zone(zones: tuple[ThreatZone, ...], level: int) -> Any:
    return shapely.union_all([z.geometry for z in zones if z.level >= level])


def test_level_1_warns_and_a_stricter_plan_refuses_it() -> None:
    graph = local_graph([[(0.0, 0.0), (300.0, 0.0)]])
    area = CRS.to_wgs84(
        shapely.box(*CRS.to_metric(Point(lonlat([(250.0, 0.0)])[0])).buffer(20).bounds)
    )
    musters = MusterPoints(["M"], lonlat([(250.0, 0.0)]), [10], areas=[area])
    # A level-1 zone covering the west quarter of the muster area.
    cut = CRS.to_metric(area).bounds
    west = shapely.box(cut[0] - 500, cut[1] - 500, cut[0] + (cut[2] - cut[0]) / 4, cut[3] + 500)
    zones = [ThreatZone(1, CRS.to_wgs84(west))]
    routes = evacuation_routes(graph, ["P"], lonlat([(10.0, 0.0)]), musters, zones=zones)
    assert routes.unusable_musters == {}
    assert routes.muster[0] == 0
    assert routes.muster_warnings == {"M": "25 % of its area inside threat level 1"}
    strict = evacuation_routes(
        graph, ["P"], lonlat([(10.0, 0.0)]), musters, zones=zones, unusable_from_level=1
    )
    assert strict.unusable_musters == {"M": "25 % of its area inside threat level 1"}
    assert strict.muster_warnings == {}
    assert [(t.id, t.reason, t.cause) for t in strict.trapped] == [
        ("P", "no usable muster point", "no_muster")
    ]


def test_with_no_usable_muster_point_everyone_is_trapped() -> None:
    zones, wind = chlorine(270.0)
    ids, xy = demo_people()
    musters = demo_muster_areas()
    # A level-1 zone over the whole site, and a plan that refuses level 1.
    site = circle(Point(np.mean(xy, axis=0)), 2000.0)
    everywhere = (*zones, ThreatZone(1, site))
    # Everyone, even someone far off the network: they shelter in place.
    xy = np.vstack([xy, [[121.0, 30.0]]])
    routes = evacuation_routes(
        foot(), [*ids, "far"], xy, musters, zones=everywhere, wind=wind, unusable_from_level=1
    )
    assert set(routes.unusable_musters) == set(musters.ids)
    assert (routes.muster == -1).all()
    assert {(t.reason, t.cause) for t in routes.trapped} == {
        ("no usable muster point", "no_muster")
    }
    assert len(routes.trapped) == len(ids) + 1


# --- 2. zone edges split at the boundary, true trapped reasons -------------------------------

SLOPE = np.tan(np.radians(5.0))


def crossing_site() -> tuple[NetworkGraph, ThreatZone, MusterPoints]:
    """One edge from A (0, 0) into the zone, which begins at x = 200 and whose north edge
    rises at 5 degrees from there; a branch from A to the muster point."""
    graph = local_graph(
        [
            [(0.0, 0.0), (300.0, 0.0)],  # A into the zone
            [(0.0, 0.0), (-200.0, 0.0)],  # A to the muster point's edge
            [(300.0, 0.0), (600.0, 0.0)],  # on through the zone
        ]
    )
    corners = [(200.0, 0.0), (700.0, 500.0 * SLOPE), (700.0, -100.0), (200.0, -100.0)]
    inner = ThreatZone(3, shapely.Polygon(lonlat(corners)))
    musters = MusterPoints(["M"], lonlat([(-150.0, 0.0)]), [100])
    return graph, inner, musters


def leg_and_route(graph: NetworkGraph, routes: EvacuationRoutes, i: int) -> BaseGeometry:
    """The whole walk in the metric CRS: along the person's edge to the first node, then on."""
    f, t = int(routes._snapped.feature[i]), float(routes._snapped.t[i])
    line = graph.feature_lines[f]
    start = graph.edge_src[graph.feature_edges[f, 0]]
    towards = 0.0 if routes._first_node[i] == start else 1.0
    leg = substring(line, min(t, towards), max(t, towards), normalized=True)
    nodes = routes.route_nodes(i)
    if len(nodes) < 2:
        return leg
    return shapely.union(leg, CRS.to_metric(shapely.LineString(graph.node_lonlat[nodes])))


@pytest.mark.parametrize("outside_m", [5.0, 40.0])
def test_someone_outside_the_zone_on_an_edge_into_it_gets_out(outside_m: float) -> None:
    """Reproduced on the server: people 5-47 m outside the zone had no route, while someone
    just inside was routed out along the same edge."""
    graph, inner, musters = crossing_site()
    ids = ["on the edge", "beside it", "inside"]
    # Beside the edge: its nearest point of the network lies 10 m into the zone.
    beside = (210.0, 10.0 * SLOPE + outside_m / np.cos(np.arctan(SLOPE)))
    people = lonlat([(200.0 - outside_m, 0.0), beside, (205.0, 0.0)])
    near = snap(graph, people)
    assert shapely.intersects_xy(
        inner.geometry,
        *graph.crs.to_wgs84(
            graph.feature_lines[near.feature[1]].interpolate(near.t[1], normalized=True)
        ).coords[0],
    )
    routes = evacuation_routes(graph, ids, people, musters, zones=[inner])
    assert routes.trapped == []
    assert routes.inside_inner_zone.tolist() == [False, False, True]
    zone_metric = CRS.to_metric(inner.geometry)
    for i in range(2):
        assert routes.muster[i] == 0
        walk = leg_and_route(graph, routes, i)
        assert walk.intersection(zone_metric).length < 0.01, ids[i]  # touches at most
    # Along the edge: back to A and on to the muster point.
    assert routes.length_m[0] == pytest.approx(200.0 - outside_m + 150.0, abs=0.1)
    # Beside it: to where the edge leaves the zone, then the same way.
    assert routes.length_m[1] == pytest.approx(200.0 + 150.0, abs=0.1)
    assert routes.length_m[2] == pytest.approx(205.0 + 150.0, abs=0.1)


def test_the_trapped_reason_says_what_blocks() -> None:
    graph = local_graph(
        [
            [(0.0, 0.0), (100.0, 0.0)],  # main network, with the muster point
            [(100.0, 0.0), (200.0, 0.0)],  # a corridor, closable
            [(200.0, 0.0), (300.0, 0.0)],  # beyond the corridor
            [(0.0, 500.0), (100.0, 500.0)],  # an island, far from everything
        ]
    )
    musters = MusterPoints(["M"], lonlat([(10.0, 0.0)]), [100])
    people = lonlat([(250.0, 0.0), (50.0, 500.0), (50.0, 300.0)])
    ids = ["beyond", "island", "lost"]
    plain = evacuation_routes(graph, ids, people, musters)
    reasons = {t.id: (t.cause, t.reason) for t in plain.trapped}
    assert reasons == {
        "island": ("cut_off", "on a part of the network cut off from every muster point"),
        "lost": ("off_network", "more than 50 m from the network"),
    }
    for _, reason in reasons.values():
        assert "zone" not in reason and "closed" not in reason
    closed = evacuation_routes(graph, ids, people, musters, closed=["E1"])
    assert {t.id: t.cause for t in closed.trapped}["beyond"] == "closed"
    assert "E1" in next(t.reason for t in closed.trapped if t.id == "beyond")
    zone = ThreatZone(3, circle(Point(lonlat([(150.0, 0.0)])[0]), 20.0))
    zoned = evacuation_routes(graph, ids, people, musters, zones=[zone])
    beyond = next(t for t in zoned.trapped if t.id == "beyond")
    assert beyond.cause == "zone" and "threat zone" in beyond.reason
    # Both: the zone alone blocks, whatever the closures.
    both = evacuation_routes(graph, ids, people, musters, zones=[zone], closed=["E1", "E2"])
    assert next(t for t in both.trapped if t.id == "beyond").cause == "zone"
    # Standing on a closed edge: that edge is named.
    on_closed = evacuation_routes(graph, ["P"], lonlat([(150.0, 0.0)]), musters, closed=["E1"])
    assert on_closed.trapped[0].cause == "closed" and "E1" in on_closed.trapped[0].reason


def test_a_muster_point_on_the_clear_part_of_a_zone_edge_is_used() -> None:
    graph = local_graph([[(0.0, 0.0), (300.0, 0.0)]])
    inner = ThreatZone(3, circle(Point(lonlat([(300.0, 0.0)])[0]), 100.0))
    musters = MusterPoints(["M"], lonlat([(150.0, 0.0)]), [100])
    routes = evacuation_routes(graph, ["P"], lonlat([(20.0, 0.0)]), musters, zones=[inner])
    assert routes.unusable_musters == {}
    assert routes.muster[0] == 0
    assert routes.length_m[0] == pytest.approx(130.0, abs=0.1)  # straight along the edge


def test_demo_people_beside_the_zone_are_routed() -> None:
    """Reproduced on the demo site: six people standing 1-23 m outside the level-3 zone,
    whose nearest network lies inside it, had no route ("the threat zone and closures", with
    no closures). The nearest network clear of the zone is within reach of each."""
    zones, wind = chlorine(45.0)
    ids, xy = demo_people()
    routes = evacuation_routes(foot(), ids, xy, demo_muster_areas(), zones=zones, wind=wind)
    assert routes.trapped == []
    outside = ~routes.inside_inner_zone
    area = CRS.to_metric(zone(zones, 3))
    for i in np.flatnonzero(outside & (routes.muster >= 0))[::5]:
        walk = leg_and_route(foot(), routes, int(i))
        assert walk.intersection(area).length < 0.01, ids[i]


# --- 3. per-person updates -------------------------------------------------------------------


@cache
def demo_search(case: str) -> tuple[EvacuationSearch, EvacuationRoutes]:
    zones, wind = chlorine(45.0)
    closed: list[str] = []
    if case == "closures":
        closed = [str(f) for f in foot().feature_ids[::40]]
    if case == "plain":
        zones = ()
    search = evacuation_search(foot(), demo_muster_areas(), zones=zones, wind=wind, closed=closed)
    ids, xy = demo_people()
    return search, search.routes(ids, xy)


def same_person(a: EvacuationRoutes, i: int, b: EvacuationRoutes, j: int) -> None:
    assert a.muster[i] == b.muster[j]
    for name in ("cost_s", "length_m", "walk_time_s", "_release_s"):
        x, y = getattr(a, name)[i], getattr(b, name)[j]
        assert (x == y) or (np.isnan(x) and np.isnan(y)), (name, x, y)
    assert a.inside_inner_zone[i] == b.inside_inner_zone[j]
    assert a.route_nodes(i) == b.route_nodes(j)
    for name in ("_first_node", "_join_node", "_escaping", "_direct"):
        assert getattr(a, name)[i] == getattr(b, name)[j], name
    trapped_a = [(t.reason, t.cause) for t in a.trapped if t.id == a.person_ids[i]]
    trapped_b = [(t.reason, t.cause) for t in b.trapped if t.id == b.person_ids[j]]
    assert trapped_a == trapped_b


SITE_BOUNDS = shape(
    {
        "type": "Polygon",
        "coordinates": [[[121.3438, 30.7166], [121.3438, 30.7234], [121.3563, 30.7234]]],
    }
).bounds


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(["zones", "closures", "plain"]),
    st.integers(0, 429),
    st.floats(SITE_BOUNDS[0] - 0.0005, SITE_BOUNDS[2] + 0.0005),
    st.floats(SITE_BOUNDS[1] - 0.0005, SITE_BOUNDS[3] + 0.0005),
)
def test_a_moved_person_gets_the_route_of_a_fresh_search(
    case: str, person: int, lon: float, lat: float
) -> None:
    _, routes = demo_search(case)
    zones, wind = chlorine(45.0)
    here = np.array([[lon, lat]])
    moved = routes.with_people([person], here)
    closed = [str(f) for f in foot().feature_ids[::40]] if case == "closures" else []
    fresh = evacuation_routes(
        foot(),
        [routes.person_ids[person]],
        here,
        demo_muster_areas(),
        zones=() if case == "plain" else zones,
        wind=wind,
        closed=closed,
    )
    same_person(moved, person, fresh, 0)
    assert moved.unusable_musters == fresh.unusable_musters
    # Pre-snapped positions give the same answer; the old routes did not change.
    again = routes.with_people([person], here, snapped=snap(foot(), here))
    same_person(again, person, fresh, 0)
    line = moved.route_line(person)
    assert (line is None) == (len(moved.route_nodes(person)) < 2)


def test_updates_equal_a_whole_run_and_leave_the_old_routes_alone() -> None:
    search, routes = demo_search("zones")
    ids, xy = demo_people()
    rng = np.random.default_rng(42)
    who = rng.choice(len(ids), size=60, replace=False)
    new_xy = xy.copy()
    new_xy[who] = xy[rng.choice(len(ids), size=60)] + rng.normal(0, 2e-4, size=(60, 2))
    before = {name: getattr(routes, name).copy() for name in ("muster", "length_m", "cost_s")}
    trapped_before = list(routes.trapped)
    updated = routes.with_people(who, new_xy[who])
    whole = search.routes(ids, new_xy)
    for i in range(len(ids)):
        same_person(updated, i, whole, i)
    assert updated.trapped == whole.trapped
    for name, values in before.items():
        assert np.array_equal(getattr(routes, name), values, equal_nan=True)
    assert routes.trapped == trapped_before
    # One at a time gives the same as all at once.
    stepwise = routes
    for i in who[:10]:
        stepwise = stepwise.with_people([int(i)], new_xy[[i]])
    partial = routes.with_people(who[:10], new_xy[who[:10]])
    for i in range(len(ids)):
        same_person(stepwise, i, partial, i)
    with pytest.raises(InvalidInput, match="once"):
        routes.with_people([1, 1], new_xy[[1, 1]])


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.integers(1, 5))
def test_on_random_sites_updates_equal_a_whole_run(case: dict[str, Any], shift: int) -> None:
    graph = local_graph(case["lines"])
    (cx, cy), radius = case["zone"]
    zones = [ThreatZone(3, circle(Point(lonlat([(cx, cy)])[0]), radius))]
    closed = [f"E{n}" for n in case["closed"]]
    muster_xy = lonlat(case["musters"])
    musters = MusterPoints([f"M{n}" for n in range(len(muster_xy))], muster_xy, [9] * 3)
    people = lonlat(case["people"])
    ids = [f"P{n}" for n in range(len(people))]
    options: dict[str, Any] = {"zones": zones, "closed": closed, "max_snap_m": 60}
    search = evacuation_search(graph, musters, **options)
    before = search.routes(ids, np.roll(people, shift, axis=0))  # everyone somewhere else
    moved = before.with_people(np.arange(len(ids)), people)
    whole = evacuation_routes(graph, ids, people, musters, **options)
    for i in range(len(ids)):
        same_person(moved, i, whole, i)
    assert moved.trapped == whole.trapped
