"""Nearest resources: only units that can reach the incident are nearest; the others of a short
kind are listed apart with the reason."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Point, mapping

from gis.crs import SiteCRS
from routing.graph import NetworkGraph, graph_from_features
from routing.resources import ResourceIndex, Resources, UnreachableResource

CRS = SiteCRS.for_site(121.35, 30.72)


def lonlat(points: list[tuple[float, float]]) -> np.ndarray:
    """Local metres around the demo site's centre to lon/lat."""
    origin = CRS.to_metric(Point(121.35, 30.72))
    moved = shapely.MultiPoint([(origin.x + x, origin.y + y) for x, y in points])
    return np.asarray(shapely.get_coordinates(CRS.to_wgs84(moved)))


#: A road from the incident east (E0, E1, E2); a one-way spur south off it that leads only to a
#: dead end (E3); and a stretch of road 1 km away joined to nothing (E4).
ROADS: dict[str, tuple[list[tuple[float, float]], dict[str, Any]]] = {
    "E0": ([(0, 0), (100, 0)], {}),
    "E1": ([(100, 0), (200, 0)], {}),
    "E2": ([(200, 0), (300, 0)], {}),
    "E3": ([(100, 0), (100, -100)], {"oneway": True}),
    "E4": ([(1000, 0), (1100, 0)], {}),
}
INCIDENT = (10.0, 0.0)


def graphs() -> dict[str, NetworkGraph]:
    features = [
        {
            "id": fid,
            "geometry": mapping(LineString(np.round(lonlat(line), 7))),
            "properties": {"foot": True, "vehicle": True, **props},
        }
        for fid, (line, props) in ROADS.items()
    ]
    return {mode: graph_from_features(features, crs=CRS, mode=mode) for mode in ("foot", "vehicle")}


Unit = tuple[str, str, tuple[float, float], str]

#: id, kind, position (local metres), status.
UNITS: list[Unit] = [
    ("H1", "hydrant", (50, 1), "available"),
    ("H2", "hydrant", (150, 1), "available"),
    ("H3", "hydrant", (1050, 1), "available"),  # on the road joined to nothing
    ("T1", "fire_truck", (190, 0), "available"),
    ("T2", "fire_truck", (100, -90), "available"),  # on the one-way spur, facing the dead end
    ("T3", "fire_truck", (1050, -1), "available"),  # on the road joined to nothing
    ("T4", "fire_truck", (500, 300), "available"),  # 300 m from any road
    ("T5", "fire_truck", (20, 0), "out_of_service"),
    ("A1", "ambulance", (150, 400), "available"),  # 400 m from any road
]


def index(units: Sequence[Unit] = UNITS) -> ResourceIndex:
    resources = Resources(
        [u[0] for u in units],
        [u[1] for u in units],
        lonlat([u[2] for u in units]),
        [u[3] for u in units],
    )
    return ResourceIndex(graphs(), resources)  # type: ignore[arg-type]


def incident() -> tuple[float, float]:
    lon, lat = lonlat([INCIDENT])[0]
    return float(lon), float(lat)


def reasons(found: dict[str, list[UnreachableResource]], kind: str) -> dict[str, str]:
    return {u.id: u.reason for u in found.get(kind, [])}


def test_a_short_kind_returns_only_reachable_units_and_lists_the_others_apart() -> None:
    # Three hydrants, one on a stretch of road joined to nothing: asked for five, two come back,
    # both with a finite time and a route along the network; the third is listed apart.
    found = index().nearest_resources(incident(), k=5)
    hydrants = found.routes["hydrant"]
    assert [r.id for r in hydrants] == ["H1", "H2"]
    assert all(math.isfinite(r.travel_time_s) for r in hydrants)
    assert [r.travel_time_s for r in hydrants] == sorted(r.travel_time_s for r in hydrants)
    # H1 stands on the incident's own road and goes straight there; H2 joins the network at
    # the junction between its road and the incident's.
    assert all(r.route[-1] == pytest.approx(incident()) for r in hydrants)
    assert hydrants[1].route[0] == pytest.approx(tuple(lonlat([(100, 0)])[0]), abs=1e-7)
    assert reasons(found.unreachable, "hydrant") == {
        "H3": "on a part of the foot network not connected to the incident's"
    }
    # nearest() keeps its shape: the reachable units, by kind.
    assert {k: [r.id for r in v] for k, v in index().nearest(incident(), k=5).items()} == {
        k: [r.id for r in v] for k, v in found.routes.items()
    }


def test_each_unreachable_unit_says_why() -> None:
    found = index().nearest_resources(incident(), k=5)
    assert [r.id for r in found.routes["fire_truck"]] == ["T1"]
    assert reasons(found.unreachable, "fire_truck") == {
        "T2": "no route to the incident: one-way roads lead away from it",
        "T3": "on a part of the vehicle network not connected to the incident's",
        "T4": "more than 50 m from the vehicle network",
    }
    # A kind with no reachable unit at all is an empty list, its units listed apart.
    assert found.routes["ambulance"] == []
    assert reasons(found.unreachable, "ambulance") == {
        "A1": "more than 50 m from the vehicle network"
    }
    (t4,) = [u for u in found.unreachable["fire_truck"] if u.id == "T4"]
    assert (t4.kind, t4.mode) == ("fire_truck", "vehicle")
    assert (t4.lon, t4.lat) == pytest.approx(tuple(lonlat([(500, 300)])[0]))


def test_out_of_service_units_are_neither_nearest_nor_unreachable() -> None:
    found = index().nearest_resources(incident(), k=5)
    listed = {r.id for v in found.routes.values() for r in v}
    listed |= {u.id for v in found.unreachable.values() for u in v}
    assert "T5" not in listed


def test_a_kind_with_k_reachable_units_lists_nothing_apart() -> None:
    found = index().nearest_resources(incident(), k=2)
    assert [r.id for r in found.routes["hydrant"]] == ["H1", "H2"]
    assert "hydrant" not in found.unreachable
    assert "fire_truck" in found.unreachable  # one reachable truck of the two asked for


def test_a_unit_cut_off_by_closures_says_so() -> None:
    # Close the road the second hydrant stands on (E1): it cannot leave it either way.
    found = index().nearest_resources(incident(), k=5, kinds=["hydrant"], closed=["E1"])
    assert [r.id for r in found.routes["hydrant"]] == ["H1"]
    assert reasons(found.unreachable, "hydrant") == {
        "H2": "no route to the incident avoids the closed edges",
        "H3": "on a part of the foot network not connected to the incident's",
    }


def test_the_bounded_search_still_finds_every_reachable_unit() -> None:
    # A tiny first bound: the search widens until the reachable units are found, then stops.
    found = index().nearest_resources(incident(), k=5, initial_limit_s=1.0)
    assert [r.id for r in found.routes["hydrant"]] == ["H1", "H2"]
    assert [r.id for r in found.routes["fire_truck"]] == ["T1"]
    assert set(reasons(found.unreachable, "fire_truck")) == {"T2", "T3", "T4"}


def test_units_of_a_mode_the_site_has_no_network_for_are_listed_apart() -> None:
    resources = Resources(
        ["H1", "T1"], ["hydrant", "fire_truck"], lonlat([(50, 1), (190, 0)]), ["available"] * 2
    )
    foot_only = ResourceIndex({"foot": graphs()["foot"]}, resources)
    found = foot_only.nearest_resources(incident(), k=5)
    assert [r.id for r in found.routes["hydrant"]] == ["H1"]
    assert found.routes["fire_truck"] == []
    assert reasons(found.unreachable, "fire_truck") == {"T1": "the site has no vehicle network"}
