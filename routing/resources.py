"""Nearest resources to an incident, by travel time on the network.

Vehicles (fire trucks, foam tenders, ambulances) drive the vehicle graph; everything else is
carried on foot. One bounded search per mode runs backwards from the incident, so it gives every
node its travel time *to* the incident (one-way streets respected). The bound starts small and
widens only while a requested kind has fewer than ``k`` resources within it.

Only a unit that can reach the incident is among the nearest: fewer than ``k`` is an answer.
The available units of a kind left short that cannot reach it are listed apart, each with the
reason (too far from the network; on a part of it not connected to the incident's; cut off by
closures or one-way roads). Units not available are left out of both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import connected_components

from gis.errors import FieldError, InvalidInput
from gis.model import VEHICLE_RESOURCE_KINDS
from routing.forest import Forest, search_matrix
from routing.graph import BoolArray, FloatArray, IntArray, Mode, NetworkGraph
from routing.hazard import blocked_edges
from routing.snapping import DEFAULT_MAX_SNAP_M, Snapped, arrival_legs, leg_costs, snap

EPSILON = 1e-9

#: Per resource: its edge's start and end nodes, and the cost from it to each (see leg_costs).
Legs = tuple[IntArray, IntArray, FloatArray, FloatArray]


#: The first bound of a nearest search: the straight-line estimate times this, plus a minute.
DETOUR = 1.5
MIN_LIMIT_S = 60.0


@dataclass(frozen=True)
class Resources:
    """Resources of a site: ids, kinds, lon/lat and status, in parallel sequences."""

    ids: Sequence[str]
    kinds: Sequence[str]
    lonlat: FloatArray
    status: Sequence[str]


@dataclass(frozen=True)
class ResourceRoute:
    id: str
    kind: str
    mode: Mode
    travel_time_s: float
    route: list[tuple[float, float]]  # lon/lat from the resource's network node to the incident

    @property
    def route_line(self) -> shapely.LineString | None:
        return shapely.LineString(self.route) if len(self.route) > 1 else None


@dataclass(frozen=True)
class UnreachableResource:
    """An available unit that cannot reach the incident, where it is, and why."""

    id: str
    kind: str
    mode: Mode
    lon: float
    lat: float
    reason: str


@dataclass(frozen=True)
class NearestResources:
    """Per kind asked for, the units that reach the incident soonest (at most ``k``, maybe
    none), and, for each kind with fewer than ``k`` of them, the units that cannot reach it."""

    routes: dict[str, list[ResourceRoute]]
    unreachable: dict[str, list[UnreachableResource]]


class ResourceIndex:
    """Resources attached to each mode's graph once, ready for many incidents."""

    def __init__(
        self,
        graphs: Mapping[Mode, NetworkGraph],
        resources: Resources,
        *,
        max_snap_m: float = DEFAULT_MAX_SNAP_M,
    ) -> None:
        self.graphs = graphs
        self.resources = resources
        lonlat = np.asarray(resources.lonlat, dtype=np.float64).reshape(-1, 2)
        kinds = np.asarray(resources.kinds, dtype=object)
        # Kinds as small integers: comparing them is cheap at every incident.
        self.kind_names, codes = np.unique(kinds.astype(str), return_inverse=True)
        self.kind_codes = codes.reshape(-1).astype(np.int64)
        available = np.asarray(resources.status, dtype=object) == "available"
        vehicle = np.isin(kinds, [str(k) for k in VEHICLE_RESOURCE_KINDS])
        self._lonlat = lonlat
        self.by_mode: dict[Mode, tuple[np.ndarray, Snapped]] = {}
        #: Available units of a mode the site has no graph for: they can reach nothing.
        self.without_network: dict[Mode, np.ndarray] = {}
        modes: tuple[tuple[Mode, np.ndarray], ...] = (("vehicle", vehicle), ("foot", ~vehicle))
        for mode, members in modes:
            chosen = np.flatnonzero(members & available)
            if not len(chosen):
                continue
            if mode in graphs:
                self.by_mode[mode] = (
                    chosen,
                    snap(graphs[mode], lonlat[chosen], max_distance_m=max_snap_m),
                )
            else:
                self.without_network[mode] = chosen
        self.max_snap_m = max_snap_m
        self._plain_legs: dict[Mode, Legs] = {}  # legs at plain travel times, once per mode
        self._parts: dict[Mode, IntArray] = {}  # per node, its connected part, on first need
        # Metric positions and each graph's top speed: a lower bound on every travel time.
        self._xy = {
            mode: graphs[mode].crs.transform_xy(lonlat[chosen])
            for mode, (chosen, _) in self.by_mode.items()
        }
        self._top_speed = {
            mode: float(np.max(g.edge_length_m / np.maximum(g.edge_time_s, 1e-9)))
            for mode, g in graphs.items()
        }

    def nearest(
        self,
        incident_lonlat: tuple[float, float],
        *,
        k: int = 5,
        kinds: Sequence[str] | None = None,
        closed: Sequence[str] = (),
        initial_limit_s: float | None = None,
        incident_snap_m: float = 200.0,
    ) -> dict[str, list[ResourceRoute]]:
        """The ``k`` available resources of each kind that reach the incident soonest; a kind
        with fewer reachable units has fewer (see :meth:`nearest_resources` for the others)."""
        return self.nearest_resources(
            incident_lonlat,
            k=k,
            kinds=kinds,
            closed=closed,
            initial_limit_s=initial_limit_s,
            incident_snap_m=incident_snap_m,
        ).routes

    def nearest_resources(
        self,
        incident_lonlat: tuple[float, float],
        *,
        k: int = 5,
        kinds: Sequence[str] | None = None,
        closed: Sequence[str] = (),
        initial_limit_s: float | None = None,
        incident_snap_m: float = 200.0,
    ) -> NearestResources:
        """Per kind, the ``k`` available units that reach the incident soonest, and the units
        of a kind left short that cannot reach it at all, with the reason.

        Vehicles stop at the road point nearest the incident (within ``incident_snap_m``).
        The search is bounded: by ``initial_limit_s`` if given, else by an estimate (the k-th
        nearest of each kind as the crow flies, at the graph's top speed, times a detour
        factor), and it widens only while a kind is short.
        """
        if k < 1:
            raise InvalidInput("k must be at least 1", errors=[FieldError("k", ">= 1")])
        names = [str(n) for n in self.kind_names]
        wanted = sorted(set(kinds) if kinds is not None else set(names))
        routes: dict[str, list[ResourceRoute]] = {kind: [] for kind in wanted}
        apart: dict[str, list[UnreachableResource]] = {kind: [] for kind in wanted}
        code_of = {name: code for code, name in enumerate(names)}
        wanted_codes = np.array([code_of.get(kind, -1) for kind in wanted], dtype=np.int64)
        for mode, (all_members, all_snapped) in self.by_mode.items():
            keep = np.isin(self.kind_codes[all_members], wanted_codes)
            if not keep.any():
                continue
            # Only the wanted kinds take part from here on.
            members = all_members[keep]
            snapped = Snapped(
                all_snapped.feature[keep], all_snapped.t[keep], all_snapped.distance_m[keep]
            )
            member_codes = self.kind_codes[members]
            graph = self.graphs[mode]
            costs = graph.edge_time_s
            if closed:
                costs = costs.copy()
                costs[blocked_edges(graph, closed)] = np.inf
                legs = leg_costs(graph, snapped, costs)
            else:
                if mode not in self._plain_legs:
                    self._plain_legs[mode] = leg_costs(graph, all_snapped, costs)
                start, end, to_start, to_end = self._plain_legs[mode]
                legs = (start[keep], end[keep], to_start[keep], to_end[keep])
            target = snap(graph, np.array([incident_lonlat]), max_distance_m=incident_snap_m)
            if not target.attached[0]:
                raise InvalidInput(
                    f"the incident is more than {incident_snap_m:.0f} m from the {mode} network",
                    errors=[FieldError("incident", "too far from the network")],
                )
            start, end, from_start, from_end = arrival_legs(graph, target, costs)
            sources = [
                (int(node), float(leg) + EPSILON)
                for node, leg in ((start[0], from_start[0]), (end[0], from_end[0]))
                if np.isfinite(leg)
            ]
            slot = np.searchsorted(wanted_codes, member_codes, sorter=np.argsort(wanted_codes))
            slot = np.argsort(wanted_codes)[slot]
            # A unit off the network never comes within any bound: it does not widen the search.
            have = np.bincount(slot[snapped.attached], minlength=len(wanted))
            limit = initial_limit_s or self._estimate_limit(
                mode, keep, snapped.attached, slot, len(wanted), k, incident_lonlat
            )
            matrix, best = graph.reversed_matrix(costs, extra_sources=sources)
            while True:
                forest = search_matrix(graph, matrix, best, limit=limit)
                times, first, direct = self._times(graph, snapped, legs, costs, forest, target)
                # Within the bound only: a resource past it may be beaten by one not yet reached.
                # An infinite time is no route at all, even once the bound is gone.
                found = np.isfinite(times) & (times <= limit)
                counts = np.bincount(slot[found], minlength=len(wanted))
                short = (counts < np.minimum(k, have)).any()
                if not short or not np.isfinite(limit):
                    break
                limit = limit * 4 if limit < 3600 else np.inf
            for kind_slot, kind in enumerate(wanted):
                mine = slot == kind_slot
                candidates = np.flatnonzero(found & mine)
                top = candidates[np.argsort(times[candidates], kind="stable")[:k]]
                for i in top:
                    nodes = [] if direct[i] else forest.path(int(first[i]))
                    route = [(x, y) for x, y in graph.node_lonlat[nodes].tolist()]
                    routes[kind].append(
                        ResourceRoute(
                            id=str(self.resources.ids[members[i]]),
                            kind=kind,
                            mode=mode,
                            travel_time_s=float(times[i]),
                            route=[*route, (float(incident_lonlat[0]), float(incident_lonlat[1]))],
                        )
                    )
                if len(candidates) < k:
                    # The kind is short, so every unit it has that can reach the incident was
                    # found: those not found cannot (see the loop's condition).
                    lost = np.flatnonzero(mine & ~found)
                    reasons = self._why_unreachable(
                        mode, snapped, legs[0], int(start[0]), lost, closed=bool(closed)
                    )
                    apart[kind] += [
                        self._unreachable(int(members[i]), kind, mode, reason)
                        for i, reason in zip(lost, reasons, strict=True)
                    ]
        for mode, members in self.without_network.items():
            for i in members:
                kind = str(self.kind_names[self.kind_codes[i]])
                if kind in apart:
                    apart[kind].append(
                        self._unreachable(int(i), kind, mode, f"the site has no {mode} network")
                    )
        for kind in routes:
            routes[kind].sort(key=lambda r: r.travel_time_s)
            routes[kind] = routes[kind][:k]
        return NearestResources(
            routes=routes,
            unreachable={kind: units for kind, units in apart.items() if units},
        )

    def _unreachable(self, i: int, kind: str, mode: Mode, reason: str) -> UnreachableResource:
        lon, lat = self._lonlat[i]
        return UnreachableResource(
            str(self.resources.ids[i]), kind, mode, float(lon), float(lat), reason
        )

    def _why_unreachable(
        self,
        mode: Mode,
        snapped: Snapped,
        unit_nodes: IntArray,
        incident_node: int,
        which: IntArray,
        *,
        closed: bool,
    ) -> list[str]:
        """Why each unit in ``which`` (found by no search, however wide) cannot reach the
        incident: off the network, on a part not connected to the incident's, or cut off by
        closures or one-way roads within it."""
        if mode not in self._parts:
            graph = self.graphs[mode]
            ends = sp.csr_matrix(
                (np.ones(graph.edge_count), (graph.edge_src, graph.edge_dst)),
                shape=(graph.node_count, graph.node_count),
            )
            _, labels = connected_components(ends, directed=True, connection="weak")
            self._parts[mode] = labels.astype(np.int64)
        parts = self._parts[mode]
        reasons = []
        for i in which:
            if not snapped.attached[i]:
                reasons.append(f"more than {self.max_snap_m:.0f} m from the {mode} network")
            elif parts[unit_nodes[i]] != parts[incident_node]:
                reasons.append(f"on a part of the {mode} network not connected to the incident's")
            elif closed:
                reasons.append("no route to the incident avoids the closed edges")
            else:
                reasons.append("no route to the incident: one-way roads lead away from it")
        return reasons

    def _estimate_limit(
        self,
        mode: Mode,
        keep: BoolArray,
        attached: BoolArray,
        slot: IntArray,
        kinds: int,
        k: int,
        incident_lonlat: tuple[float, float],
    ) -> float:
        """A bound that usually holds k of every kind: travel time is at least the straight
        distance at top speed, and site networks rarely detour more than half as far again."""
        graph = self.graphs[mode]
        here = graph.crs.transform_xy(np.array([incident_lonlat], dtype=np.float64))[0]
        crow = np.hypot(*(self._xy[mode][keep] - here).T) / self._top_speed[mode]
        bound = 0.0
        for kind_slot in range(kinds):
            mine = crow[(slot == kind_slot) & attached]
            if len(mine):
                kth = min(k, len(mine)) - 1
                bound = max(bound, float(np.partition(mine, kth)[kth]))
        return max(MIN_LIMIT_S, DETOUR * bound + MIN_LIMIT_S)

    @staticmethod
    def _times(
        graph: NetworkGraph,
        snapped: Snapped,
        legs: Legs,
        costs: FloatArray,
        forest: Forest,
        target: Snapped,
    ) -> tuple[FloatArray, np.ndarray, np.ndarray]:
        start, end, to_start, to_end = legs
        via_start = to_start + forest.distance[start]
        via_end = to_end + forest.distance[end]
        first = np.where(via_start <= via_end, start, end)
        times = np.minimum(via_start, via_end)
        # A resource on the incident's own edge goes straight there.
        same = snapped.attached & (snapped.feature == target.feature[0])
        direct = np.zeros(len(times), dtype=bool)
        if same.any():
            f = int(target.feature[0])
            forward, backward = graph.feature_edges[f]
            delta = target.t[0] - snapped.t[same]
            with np.errstate(invalid="ignore"):  # 0 x inf: standing at the incident itself
                along = np.where(
                    delta >= 0,
                    delta * costs[forward],
                    (-delta * costs[backward]) if backward >= 0 else np.inf,
                )
            along = np.where(delta == 0, 0.0, along)
            direct[same] = along < times[same]
            times[same] = np.minimum(times[same], along)
        return times, first, direct
