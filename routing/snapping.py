"""Attaching points (people, resources, incidents, muster points) to the network.

A point attaches to the nearest edge at its projected point, not merely to the nearest node: it
sits at a fraction ``t`` along a network feature, between the feature's start node (t = 0) and
end node (t = 1). Costs to or from it are then exact fractions of the edge's cost, which is what
splitting the edge would give, without changing the graph. Where a threat zone cuts the
network, :func:`snap_clear` attaches to the nearest point of its clear parts instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import shapely
from shapely.ops import substring

from routing.graph import FloatArray, IntArray, NetworkGraph

#: Points farther than this from every edge are reported as not attached.
DEFAULT_MAX_SNAP_M = 50.0
NODE_TOLERANCE_M = 1e-3


@dataclass(frozen=True)
class Snapped:
    """Where each point attaches; ``feature`` is -1 where it is too far from the network."""

    feature: IntArray
    t: FloatArray
    distance_m: FloatArray

    @cached_property
    def attached(self) -> npt.NDArray[np.bool_]:
        return self.feature >= 0


def snap(
    graph: NetworkGraph, lonlat: FloatArray, *, max_distance_m: float = DEFAULT_MAX_SNAP_M
) -> Snapped:
    """Attach points (an ``(n, 2)`` array of lon/lat) to the nearest edge of ``graph``."""
    lonlat = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
    n = lonlat.shape[0]
    feature = np.full(n, -1, dtype=np.int64)
    t = np.zeros(n)
    distance = np.full(n, np.inf)
    if n == 0:
        return Snapped(feature, t, distance)
    # A position that is not a pair of finite numbers attaches nowhere (it is reported).
    finite = np.flatnonzero(np.isfinite(lonlat).all(axis=1))
    if not len(finite):
        return Snapped(feature, t, distance)
    metric = graph.crs.transform_xy(lonlat[finite])
    points = np.full(n, None, dtype=object)
    points[finite] = shapely.points(metric)
    (which, hit), dist = graph.tree.query_nearest(
        points[finite], max_distance=max_distance_m, return_distance=True, all_matches=False
    )
    which = finite[which]
    feature[which] = hit
    distance[which] = dist
    lines = graph.feature_lines[hit]
    along = np.clip(shapely.line_locate_point(lines, points[which], normalized=True), 0.0, 1.0)
    # Within a millimetre of a node is at the node: a closed edge does not matter there.
    length = shapely.length(lines)
    along = np.where(along * length < NODE_TOLERANCE_M, 0.0, along)
    along = np.where((1 - along) * length < NODE_TOLERANCE_M, 1.0, along)
    t[which] = along
    return Snapped(feature, t, distance)


def snap_clear(
    graph: NetworkGraph,
    lonlat: FloatArray,
    clear_start: FloatArray,
    clear_end: FloatArray,
    *,
    max_distance_m: float = DEFAULT_MAX_SNAP_M,
) -> Snapped:
    """Attach points to the nearest point of the network from which a node can be reached
    without entering a zone: per feature, its parts ``t <= clear_start`` and
    ``t >= 1 - clear_end`` (both 1 where no zone cuts it; see :func:`routing.hazard.zone_cuts`).

    Meant for the few points whose nearest network lies inside a zone: it measures every
    feature within ``max_distance_m``, not just the nearest.
    """
    lonlat = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
    n = lonlat.shape[0]
    feature = np.full(n, -1, dtype=np.int64)
    t = np.zeros(n)
    distance = np.full(n, np.inf)
    finite = np.flatnonzero(np.isfinite(lonlat).all(axis=1))
    if not len(finite):
        return Snapped(feature, t, distance)
    points = np.asarray(shapely.points(graph.crs.transform_xy(lonlat[finite])), dtype=object)
    points = points.reshape(-1)
    which, hits = graph.tree.query(points, predicate="dwithin", distance=max_distance_m)
    order = np.lexsort((hits, which))  # each point's candidates by feature: ties go the same way
    pieces: dict[int, list[tuple[float, float, shapely.LineString]]] = {}
    for k, f in zip(which[order].tolist(), hits[order].tolist(), strict=True):
        if f not in pieces:
            pieces[f] = _clear_pieces(graph.feature_lines[f], clear_start[f], clear_end[f])
        i = finite[k]
        for lo, hi, piece in pieces[f]:
            gap = float(shapely.distance(piece, points[k]))
            if gap <= max_distance_m and gap < distance[i]:
                at = float(shapely.line_locate_point(piece, points[k], normalized=True))
                feature[i], t[i], distance[i] = f, lo + (hi - lo) * at, gap
    attached = feature >= 0
    length = shapely.length(graph.feature_lines[feature[attached]])
    along = t[attached]
    along = np.where(along * length < NODE_TOLERANCE_M, 0.0, along)
    t[attached] = np.where((1 - along) * length < NODE_TOLERANCE_M, 1.0, along)
    return Snapped(feature, t, distance)


def _clear_pieces(
    line: shapely.LineString, clear_start: float, clear_end: float
) -> list[tuple[float, float, shapely.LineString]]:
    """The parts of a line joined to one of its ends by a clear way: (from, to, part)."""
    if clear_start >= 1 or clear_end >= 1:
        return [(0.0, 1.0, line)]
    bounds = []
    if clear_start > 0:
        bounds.append((0.0, clear_start))
    if clear_end > 0:
        bounds.append((1 - clear_end, 1.0))
    parts = [(lo, hi, substring(line, lo, hi, normalized=True)) for lo, hi in bounds]
    # A part too short to be a line (a point) is left out: its node is reached from elsewhere.
    return [(lo, hi, p) for lo, hi, p in parts if isinstance(p, shapely.LineString)]


def leg_costs(
    graph: NetworkGraph, snapped: Snapped, costs: FloatArray
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """For each attached point: its feature's start and end nodes, and the cost of travelling
    from the point to the start node and to the end node (inf where that direction is closed).
    """
    return _legs(graph, snapped, costs, leaving=True)


def arrival_legs(
    graph: NetworkGraph, snapped: Snapped, costs: FloatArray
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """For each attached point: start and end nodes, and the cost of travelling from the start
    node to the point and from the end node to the point (inf where that direction is closed).
    """
    return _legs(graph, snapped, costs, leaving=False)


def _legs(
    graph: NetworkGraph, snapped: Snapped, costs: FloatArray, *, leaving: bool
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    f = np.where(snapped.attached, snapped.feature, 0)
    forward, backward = graph.feature_edges[f, 0], graph.feature_edges[f, 1]
    start, end = graph.edge_src[forward], graph.edge_dst[forward]
    has_back = backward >= 0
    back_cost = costs[np.where(has_back, backward, 0)]
    # Leaving towards the end, or arriving from the start, runs the forward edge; the other
    # two run the backward edge, which a one-way road lacks.
    t = snapped.t
    forward_part = _part(1 - t if leaving else t, costs[forward])
    backward_part = np.where(has_back, _part(t if leaving else 1 - t, back_cost), np.inf)
    at_start, at_end = (backward_part, forward_part) if leaving else (forward_part, backward_part)
    at_start = np.where(snapped.attached, at_start, np.inf)
    at_end = np.where(snapped.attached, at_end, np.inf)
    return start, end, at_start, at_end


def _part(fraction: FloatArray, cost: FloatArray) -> FloatArray:
    """``fraction`` of an edge's cost; standing at the node itself (0) costs 0, even when the
    edge is closed (0 x inf would be NaN)."""
    return fraction * np.where(fraction == 0, 0.0, cost)
