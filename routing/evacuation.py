"""Evacuation routes for everyone on site: one search, not one per person.

A single Dijkstra over the reversed graph, from a super-source joined to every muster point,
gives every node its cheapest way to a muster point; each person then needs only the leg from
where they stand to the ends of their edge. Edges inside the innermost threat zone are closed, so
no route crosses it. People inside it get a second search that allows only the zone's own edges,
seeded with the first search's costs where those edges meet the outside: the fastest way out,
then the safe way on. Anyone with no safe route is listed as trapped, with where they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import shapely

from gis.errors import FieldError, InvalidInput
from gis.hazards.zones import ThreatZone
from routing.forest import Forest, reverse_search
from routing.graph import FloatArray, IntArray, NetworkGraph
from routing.hazard import (
    HazardPolicy,
    blocked_edges,
    edge_levels,
    hazard_costs,
    inside,
)
from routing.snapping import DEFAULT_MAX_SNAP_M, Snapped, arrival_legs, leg_costs, snap

#: Weight of a zero-cost super-source edge; scipy treats an explicit 0 as an edge, but a tiny
#: positive weight keeps ties stable and visible.
EPSILON = 1e-9


@dataclass(frozen=True)
class MusterPoints:
    """Muster points: ids, a point each (lon/lat, e.g. the zone's centroid), capacities."""

    ids: Sequence[str]
    lonlat: FloatArray
    capacity: Sequence[int]


@dataclass(frozen=True)
class Wind:
    """Where the wind comes from (degrees clockwise from north) and the incident's position."""

    from_deg: float
    incident_lonlat: tuple[float, float]
    downwind_penalty_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.from_deg <= 360:
            raise InvalidInput(
                f"wind direction {self.from_deg} is outside 0-360",
                errors=[FieldError("wind.from_deg", "degrees from 0 to 360")],
            )


@dataclass(frozen=True)
class Trapped:
    id: str
    lon: float
    lat: float
    reason: str


@dataclass
class EvacuationRoutes:
    """Each person's muster point, cost and route; routes are kept as two shared forests."""

    person_ids: list[str]
    muster_ids: list[str]
    muster: IntArray  # per person, index into muster_ids; -1 if trapped
    cost_s: FloatArray  # hazard-weighted cost that was minimised
    length_m: FloatArray
    walk_time_s: FloatArray  # plain walking time along the route
    trapped: list[Trapped]
    unusable_musters: dict[str, str]  # muster id -> why no one is sent there
    inside_inner_zone: npt.NDArray[np.bool_]
    _escaping: npt.NDArray[np.bool_] = field(repr=False)  # routes that start in the escape forest
    _direct: npt.NDArray[np.bool_] = field(repr=False)  # straight along the muster point's edge
    _first_node: IntArray = field(repr=False)  # node where the route joins the network
    _join_node: IntArray = field(repr=False)  # node where it joins the outer forest
    _release_s: FloatArray = field(repr=False)  # walking time until then
    _muster_snap: Snapped = field(repr=False)  # where the usable muster points attach
    _snapped: Snapped = field(repr=False)
    _outer: Forest = field(repr=False)
    _escape: Forest | None = field(repr=False)
    _graph: NetworkGraph = field(repr=False)

    def route_nodes(self, person: int) -> list[int]:
        """Nodes of a person's route, from the first node reached to the muster point's node
        (none for someone who walks straight along the muster point's own edge)."""
        if self.muster[person] < 0 or self._direct[person]:
            return []
        node = int(self._first_node[person])
        nodes: list[int] = []
        if self._escape is not None and self._escaping[person]:
            nodes = self._escape.path(node)
            node = nodes.pop()
        return nodes + self._outer.path(node)

    def route_line(self, person: int) -> shapely.LineString | None:
        """The route as a WGS84 line through the network nodes (None if trapped)."""
        nodes = self.route_nodes(person)
        if not nodes:
            return None
        coords = self._graph.node_lonlat[nodes]
        return shapely.LineString(coords) if len(coords) > 1 else None


def evacuation_routes(
    graph: NetworkGraph,
    person_ids: Sequence[str],
    person_lonlat: FloatArray,
    musters: MusterPoints,
    *,
    zones: Sequence[ThreatZone] = (),
    closed: Sequence[str] = (),
    policy: HazardPolicy | None = None,
    wind: Wind | None = None,
    max_snap_m: float = DEFAULT_MAX_SNAP_M,
    snapped_people: Snapped | None = None,
) -> EvacuationRoutes:
    """Route every person to the best reachable muster point, never through the inner zone.

    ``closed`` names network features that are closed; ``wind``, when the plan prefers upwind
    muster points, adds up to ``downwind_penalty_s`` to muster points downwind of the incident.
    """
    if graph.mode != "foot":
        raise InvalidInput("evacuation routes are walked", errors=[FieldError("mode", "foot")])
    policy = policy or HazardPolicy()
    person_lonlat = np.asarray(person_lonlat, dtype=np.float64).reshape(-1, 2)
    if len(person_ids) != len(person_lonlat):
        raise InvalidInput("one position per person", errors=[FieldError("people", "mismatch")])
    if len(musters.ids) == 0:
        raise InvalidInput("no muster points", errors=[FieldError("musters", "none given")])

    levels = edge_levels(graph, zones)
    blocked = blocked_edges(graph, closed)
    costs = (
        hazard_costs(graph, levels, blocked, policy=policy)
        if zones or closed
        else graph.edge_time_s  # plain times: the graph's cached weights serve
    )

    # Search 1: everyone outside the innermost zone, over the graph with it closed.
    muster_snap = snap(graph, musters.lonlat, max_distance_m=max_snap_m)
    unusable = _unusable_musters(musters, muster_snap, zones, policy, max_snap_m)
    muster_snap = Snapped(
        np.where([m in unusable for m in musters.ids], -1, muster_snap.feature),
        muster_snap.t,
        muster_snap.distance_m,
    )
    penalty = _downwind_penalty(musters, wind)
    muster_legs = arrival_legs(graph, muster_snap, costs)
    if (levels >= policy.impassable_level).any():
        opened = _clear_own_legs(
            graph,
            muster_snap,
            zones,
            policy,
            levels,
            muster_snap.attached,
            muster_legs[2],
            muster_legs[3],
            leaving=False,
        )
        muster_legs = (muster_legs[0], muster_legs[1], *opened)
    for m in np.flatnonzero(muster_snap.attached):
        if not (np.isfinite(muster_legs[2][m]) or np.isfinite(muster_legs[3][m])):
            unusable[str(musters.ids[int(m)])] = "its way in crosses the innermost threat zone"
    sources, source_muster = _muster_sources(graph, muster_snap, muster_legs, penalty)
    # Only the edges the hazard or a closure touches differ from plain travel times.
    outer = reverse_search(graph, costs, sources, changed=np.flatnonzero((levels > 0) | blocked))
    muster_at_root = _label_roots(graph, outer, sources, source_muster)

    # Positions arrive one by one; a caller that keeps them attached passes ``snapped_people``.
    snapped = snapped_people or snap(graph, person_lonlat, max_distance_m=max_snap_m)
    if snapped.feature.shape[0] != len(person_ids):
        raise InvalidInput("one snapped position per person", errors=[FieldError("people", "")])
    start, end, to_start, to_end = leg_costs(graph, snapped, costs)
    inner = (
        inside(zones, person_lonlat, policy.impassable_level)
        if zones
        else np.zeros(len(person_ids), dtype=bool)
    )
    closed_inner = levels >= policy.impassable_level
    if closed_inner.any():
        # Someone outside the zone on an edge that touches it may walk their own edge away
        # from the zone (the edge as a whole is closed): the part to an end must stay clear.
        to_start, to_end = _clear_own_legs(
            graph, snapped, zones, policy, levels, ~inner, to_start, to_end, leaving=True
        )

    normal_start = to_start + outer.distance[start]
    normal_end = to_end + outer.distance[end]
    first = np.where(normal_start <= normal_end, start, end)
    cost = np.minimum(normal_start, normal_end)
    escape: Forest | None = None
    use_escape = np.zeros(len(person_ids), dtype=bool)
    if inner.any():
        # Search 2: inside the innermost zone, only the zone's own edges (closures kept),
        # seeded with search 1's cost at every node of the zone where it can be left.
        open_inner = closed_inner & ~blocked
        escape_costs = np.where(open_inner, graph.edge_time_s, np.inf)
        zone_nodes = np.unique(
            np.concatenate([graph.edge_src[closed_inner], graph.edge_dst[closed_inner]])
        )
        exits = zone_nodes[np.isfinite(outer.distance[zone_nodes])]
        # The person's own leg may run on any zone edge; the search may not: an exit is where
        # the way leaves the zone, never a place to walk back in from.
        _, _, e_to_start, e_to_end = leg_costs(graph, snapped, escape_costs)
        is_exit = np.zeros(graph.node_count, dtype=bool)
        is_exit[exits] = True
        zone_edges = np.flatnonzero(open_inner)
        escape = reverse_search(
            graph,
            graph.edge_time_s,
            [(int(x), float(outer.distance[x])) for x in exits],
            within=zone_edges[~is_exit[graph.edge_src[zone_edges]]],
        )
        # A person on a closed inner edge may still walk it: that is how they leave.
        escape_start = e_to_start + escape.distance[start]
        escape_end = e_to_end + escape.distance[end]
        escape_cost = np.minimum(escape_start, escape_end)
        use_escape = inner & (escape_cost < cost)
        first = np.where(use_escape, np.where(escape_start <= escape_end, start, end), first)
        cost = np.where(use_escape, escape_cost, cost)
    reachable = np.isfinite(cost) & snapped.attached

    # Where each route leaves the escape forest, and the muster point it ends at.
    per_edge = (graph.edge_length_m, graph.edge_time_s)
    join = first.copy()
    length = np.zeros(len(first))
    time = np.zeros(len(first))
    escaping = np.flatnonzero(use_escape)
    if escape is not None and len(escaping):
        escape_roots, (escape_length, escape_time) = escape.sums(first[escaping], per_edge)
        join[escaping] = escape_roots
        length[escaping] = escape_length
        time[escaping] = escape_time
    last, (length_outer, time_outer) = outer.sums(join, per_edge)
    length = length + length_outer
    time = time + time_outer
    muster = np.where(reachable, muster_at_root[last], -1)

    # The legs at both ends: from the person to the first node, from the last node to the muster.
    f = np.where(snapped.attached, snapped.feature, 0)
    feature_length = shapely.length(graph.feature_lines[f])
    leg_t = np.where(first == start, snapped.t, 1 - snapped.t)
    walk = graph.edge_time_s[graph.feature_edges[f, 0]]
    length = length + leg_t * feature_length
    time = time + leg_t * walk
    # Plain walking time until the route joins the outer forest (the capacity plan's release):
    # the first leg, and the escape from the zone if there is one.
    release = time - time_outer
    muster_leg_len, muster_leg_time = _muster_legs(graph, muster_snap, muster, last)
    length = length + muster_leg_len
    time = time + muster_leg_time

    # Someone on the same edge as a muster point may walk straight along it.
    direct = np.zeros(len(person_ids), dtype=bool)
    for m in np.flatnonzero(muster_snap.attached):
        same = snapped.attached & (snapped.feature == muster_snap.feature[m])
        if not same.any():
            continue
        fm = int(muster_snap.feature[m])
        forward, backward = graph.feature_edges[fm]
        delta = muster_snap.t[m] - snapped.t[same]
        edge_cost = np.where(
            delta >= 0, costs[forward], costs[backward] if backward >= 0 else np.inf
        )
        with np.errstate(invalid="ignore"):  # 0 x inf: standing on the muster point itself
            straight = np.abs(delta) * edge_cost + penalty[m]
            straight = np.where(delta == 0, penalty[m], straight)
        better = straight < np.where(np.isfinite(cost[same]), cost[same], np.inf)
        who = np.flatnonzero(same)[better]
        cost[who] = straight[better]
        muster[who] = m
        length[who] = np.abs(delta[better]) * shapely.length(graph.feature_lines[fm])
        time[who] = np.abs(delta[better]) * graph.edge_time_s[forward]
        release[who] = time[who]
        direct[who] = True
    reachable = reachable | direct

    trapped = []
    for i in np.flatnonzero(~reachable):
        lon, lat = person_lonlat[i]
        reason = (
            f"more than {max_snap_m:.0f} m from the network"
            if not snapped.attached[i]
            else "no route to a muster point avoids the threat zone and closures"
        )
        trapped.append(Trapped(str(person_ids[int(i)]), float(lon), float(lat), reason))
    return EvacuationRoutes(
        person_ids=[str(p) for p in person_ids],
        muster_ids=[str(m) for m in musters.ids],
        muster=muster.astype(np.int64),
        cost_s=np.where(reachable, cost, np.inf),
        length_m=np.where(reachable, length, np.nan),
        walk_time_s=np.where(reachable, time, np.nan),
        trapped=trapped,
        unusable_musters=unusable,
        _muster_snap=muster_snap,
        inside_inner_zone=inner,
        _escaping=use_escape & ~direct,
        _direct=direct,
        _first_node=first,
        _join_node=join,
        _release_s=np.where(reachable, release, np.inf),
        _snapped=snapped,
        _outer=outer,
        _escape=escape,
        _graph=graph,
    )


def _muster_sources(
    graph: NetworkGraph,
    snapped: Snapped,
    legs: tuple[IntArray, IntArray, FloatArray, FloatArray],
    penalty: FloatArray,
) -> tuple[list[tuple[int, float]], list[int]]:
    """Super-source edges to the nodes around each muster point: the cost of the last leg."""
    start, end, from_start, from_end = legs
    best: dict[int, tuple[float, int]] = {}
    for m in np.flatnonzero(snapped.attached):
        for node, leg in ((start[m], from_start[m]), (end[m], from_end[m])):
            weight = float(leg + penalty[m]) + EPSILON
            if np.isfinite(weight) and weight < best.get(int(node), (np.inf, -1))[0]:
                best[int(node)] = (weight, int(m))
    nodes = sorted(best)
    return [(n, best[n][0]) for n in nodes], [best[n][1] for n in nodes]


def _label_roots(
    graph: NetworkGraph,
    forest: Forest,
    sources: list[tuple[int, float]],
    source_muster: list[int],
) -> IntArray:
    label = np.full(graph.node_count, -1, dtype=np.int64)
    for (node, _), muster in zip(sources, source_muster, strict=True):
        if forest.predecessors[node] == forest.source:
            label[node] = muster
    return label


def _muster_legs(
    graph: NetworkGraph, snapped: Snapped, muster: IntArray, last: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Length and plain time of the last leg, from the last node to the muster point itself."""
    m = np.where(muster >= 0, muster, 0)
    f = np.where(snapped.attached[m], snapped.feature[m], 0)
    start = graph.edge_src[graph.feature_edges[f, 0]]
    t = np.where(last == start, snapped.t[m], 1 - snapped.t[m])
    feature_length = shapely.length(graph.feature_lines[f])
    walk = graph.edge_time_s[graph.feature_edges[f, 0]]
    ok = muster >= 0
    return np.where(ok, t * feature_length, 0.0), np.where(ok, t * walk, 0.0)


def _unusable_musters(
    musters: MusterPoints,
    snapped: Snapped,
    zones: Sequence[ThreatZone],
    policy: HazardPolicy,
    max_snap_m: float,
) -> dict[str, str]:
    """Muster points no one may be sent to: off the network, or inside the innermost zone."""
    out: dict[str, str] = {}
    endangered = inside(zones, musters.lonlat, policy.impassable_level) if zones else None
    for m, muster_id in enumerate(musters.ids):
        if not snapped.attached[m]:
            out[str(muster_id)] = f"more than {max_snap_m:.0f} m from the network"
        elif endangered is not None and endangered[m]:
            out[str(muster_id)] = "inside the innermost threat zone"
    return out


def _downwind_penalty(musters: MusterPoints, wind: Wind | None) -> FloatArray:
    """0 for a muster point straight upwind of the incident, the full penalty straight downwind."""
    count = len(musters.ids)
    if wind is None:
        return np.zeros(count)
    lon0, lat0 = wind.incident_lonlat
    dx = (musters.lonlat[:, 0] - lon0) * np.cos(np.radians(lat0))
    dy = musters.lonlat[:, 1] - lat0
    bearing = np.degrees(np.arctan2(dx, dy))  # clockwise from north
    # Upwind means towards where the wind comes from.
    cos = np.cos(np.radians(bearing - wind.from_deg))
    return np.asarray(wind.downwind_penalty_s * (1 - cos) / 2, dtype=np.float64)


def _clear_own_legs(
    graph: NetworkGraph,
    snapped: Snapped,
    zones: Sequence[ThreatZone],
    policy: HazardPolicy,
    levels: npt.NDArray[np.int8],
    who: npt.NDArray[np.bool_],
    to_start: FloatArray,
    to_end: FloatArray,
    *,
    leaving: bool,
) -> tuple[FloatArray, FloatArray]:
    """Open the legs of points (``who``) on a closed zone edge whose part to an end of the edge
    does not touch the innermost zone, at plain walking time."""
    f = np.where(snapped.attached, snapped.feature, 0)
    forward = graph.feature_edges[f, 0]
    touched = who & snapped.attached & (levels[forward] >= policy.impassable_level)
    if not touched.any():
        return to_start, to_end
    danger = shapely.union_all(
        [graph.crs.to_metric(z.geometry) for z in zones if z.level >= policy.impassable_level]
    )
    to_start, to_end = to_start.copy(), to_end.copy()
    who_idx = np.flatnonzero(touched)
    lines = graph.feature_lines[f[who_idx]]
    # Where along each line the zone lies: the first and last position (0..1) of its part
    # inside the zone. The way to the start is clear if the zone begins after the point, the
    # way to the end if it ends before it.
    inside_part = shapely.intersection(lines, danger)
    coords, owner = shapely.get_coordinates(inside_part, return_index=True)
    along = shapely.line_locate_point(lines[owner], shapely.points(coords), normalized=True)
    first = np.full(len(who_idx), np.inf)
    last = np.full(len(who_idx), -np.inf)
    np.minimum.at(first, owner, along)
    np.maximum.at(last, owner, along)
    t = snapped.t[who_idx]
    time = graph.edge_time_s[forward[who_idx]]
    has_back = graph.feature_edges[f[who_idx], 1] >= 0
    # Leaving towards the start, or arriving from the end, runs the backward edge, which a
    # one-way edge lacks; the other two run the forward edge.
    start_ok = (has_back if leaving else True) & (first > t)
    end_ok = (True if leaving else has_back) & (last < t)
    to_start[who_idx] = np.where(start_ok, t * time, to_start[who_idx])
    to_end[who_idx] = np.where(end_ok, (1 - t) * time, to_end[who_idx])
    return to_start, to_end
