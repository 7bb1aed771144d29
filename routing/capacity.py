"""Capacity-aware evacuation plans: routes and departure times that respect capacities over time.

Shortest routes can still make a bad plan: send 2,000 people down one stairway and everyone is
late. This is the second stage after :mod:`routing.evacuation`. It implements CCRP (Capacity
Constrained Route Planner; Lu, George and Shekhar, SSTD 2005): repeatedly find, over all groups
still waiting, the route that reaches a muster point earliest given what earlier groups reserved
(people may wait at a node for room on the next edge), send as many people along it as the
tightest edge and the muster point allow, and reserve that room.

Time runs in whole steps (``step_s`` seconds). An edge admits at most ``capacity`` people per step
(its flow capacity, people per minute, from corridor or door width); a muster point holds at most
its capacity in all. :func:`optimal_egress_steps` solves the same model exactly on a
time-expanded network (max-flow), for small graphs: the yardstick in the tests.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from gis.errors import FieldError, InvalidInput
from gis.hazards.zones import ThreatZone
from routing.evacuation import EvacuationRoutes
from routing.graph import NetworkGraph
from routing.hazard import HazardPolicy, blocked_edges, edge_levels
from routing.snapping import arrival_legs


@dataclass(frozen=True)
class FlowNetwork:
    """A directed network in time steps: per edge, travel steps (>= 1) and people per step."""

    node_count: int
    src: Sequence[int]
    dst: Sequence[int]
    steps: Sequence[int]
    capacity: Sequence[float]
    sinks: dict[int, int]  # node -> people it can hold
    step_s: float = 1.0

    def __post_init__(self) -> None:
        if not (len(self.src) == len(self.dst) == len(self.steps) == len(self.capacity)):
            raise InvalidInput("edge arrays differ in length", errors=[FieldError("edges", "")])
        if any(s < 1 for s in self.steps):
            raise InvalidInput("travel steps must be >= 1", errors=[FieldError("steps", ">= 1")])
        if any(not c > 0 for c in self.capacity):
            raise InvalidInput("capacities must be > 0", errors=[FieldError("capacity", "> 0")])


@dataclass(frozen=True)
class Group:
    """People waiting at ``node`` from step ``release`` on."""

    node: int
    people: int
    release: int = 0


@dataclass(frozen=True)
class Movement:
    """``people`` leave ``source`` along ``edges``, departing each edge at the given steps."""

    source: int
    sink: int
    people: int
    edges: tuple[int, ...]
    departures: tuple[int, ...]
    arrival: int


@dataclass
class CapacityPlan:
    network: FlowNetwork
    movements: list[Movement]
    unplaced: int  # people for whom no muster point had room, or no route existed
    lower_bound_steps: int  # egress with capacities ignored
    iterations: int
    load: dict[tuple[int, int], int] = field(repr=False)  # (edge, step) -> people entering
    searches: int = 0  # iterations that needed a search (the others took the shortest way)

    @property
    def egress_steps(self) -> int:
        return max((m.arrival for m in self.movements), default=0)

    @property
    def egress_s(self) -> float:
        return self.egress_steps * self.network.step_s

    @property
    def lower_bound_s(self) -> float:
        return self.lower_bound_steps * self.network.step_s

    def arrival_curve(self, sink: int) -> list[tuple[float, int]]:
        """Cumulative people arrived at ``sink`` by time (seconds), one point per arrival step."""
        arrivals: dict[int, int] = {}
        for m in self.movements:
            if m.sink == sink:
                arrivals[m.arrival] = arrivals.get(m.arrival, 0) + m.people
        total, curve = 0, []
        for step in sorted(arrivals):
            total += arrivals[step]
            curve.append((step * self.network.step_s, total))
        return curve


def step_capacity(per_step: float, step: int) -> int:
    """Whole people an edge admits in ``step``: a fractional capacity is met on average
    (1.5 a step admits 1, 2, 1, 2, ...; 0.5 admits 0, 1, 0, 1, ...)."""
    return math.floor(per_step * (step + 1) + 1e-9) - math.floor(per_step * step + 1e-9)


def ccrp(network: FlowNetwork, groups: Sequence[Group]) -> CapacityPlan:
    """Plan every group's routes and departures with CCRP."""
    out_edges: list[list[int]] = [[] for _ in range(network.node_count)]
    for e, u in enumerate(network.src):
        out_edges[u].append(e)
    steps, dst, capacity = list(network.steps), list(network.dst), list(network.capacity)
    waiting: dict[tuple[int, int], int] = {}
    for g in groups:
        if g.people > 0:
            key = (g.node, g.release)
            waiting[key] = waiting.get(key, 0) + g.people
    room = dict(network.sinks)
    load: dict[tuple[int, int], int] = {}
    movements: list[Movement] = []
    to_sink, next_edge = _steps_to_sinks(network, [s for s, r in room.items() if r > 0])
    lower = int(max((r + to_sink[n] for n, r in waiting if math.isfinite(to_sink[n])), default=0))
    iterations = searches = 0

    def ordered_sources() -> list[tuple[float, int, int]]:
        return sorted(
            (release + to_sink[node], release, node)
            for node, release in waiting
            if math.isfinite(to_sink[node])
        )

    sources = ordered_sources()
    head = 0

    def free(e: int, step: int) -> int:
        return step_capacity(capacity[e], step) - load.get((e, step), 0)

    def shortest_way(node: int, release: int) -> tuple[list[int], list[int], int] | None:
        """The capacity-free shortest way from ``node``, if every edge of it has room when it
        is reached: then nothing can arrive sooner, and no search is needed."""
        edges: list[int] = []
        departures: list[int] = []
        t = release
        while room.get(node, 0) <= 0:
            e = next_edge[node]
            if e < 0 or free(e, t) < 1:
                return None
            edges.append(e)
            departures.append(t)
            t += steps[e]
            node = dst[e]
        return edges, departures, node

    def record(
        key: tuple[int, int], edges: list[int], departures: list[int], sink: int, arrives: int
    ) -> None:
        nonlocal to_sink, next_edge, sources, head
        people = min(waiting[key], room[sink])
        for e, depart in zip(edges, departures, strict=True):
            people = min(people, int(free(e, depart)))
        for e, depart in zip(edges, departures, strict=True):
            load[(e, depart)] = load.get((e, depart), 0) + people
        room[sink] -= people
        if room[sink] == 0:  # a full muster point: aim the heuristic at the others
            to_sink, next_edge = _steps_to_sinks(network, [s for s, r in room.items() if r > 0])
            sources, head = ordered_sources(), 0
        waiting[key] -= people
        if waiting[key] == 0:
            del waiting[key]
        movements.append(Movement(key[0], sink, people, tuple(edges), tuple(departures), arrives))

    while waiting and any(r > 0 for r in room.values()):
        iterations += 1
        while head < len(sources) and (sources[head][2], sources[head][1]) not in waiting:
            head += 1
        if head < len(sources):
            # The group with the least capacity-free arrival goes first; if its shortest way
            # is free, that is the earliest arrival of all, as the search would find.
            bound, release, node = sources[head]
            way = shortest_way(node, release)
            if way is not None:
                record((node, release), way[0], way[1], way[2], int(bound))
                continue
        searches += 1
        arrival: dict[int, int] = {}
        via: dict[int, tuple[int, int]] = {}  # node -> (edge, departure step)
        origin: dict[int, tuple[int, int]] = {}
        # A*: the capacity-free steps to a muster point never overestimate (reservations only
        # delay), so the first muster point with room taken off the heap is the earliest.
        # Waiting groups enter the heap in order of that bound, only once the search reaches it.
        # Entries: (bound, -time, time, node); among equal bounds the deepest first, so a grid's
        # many equally short ways are not all expanded.
        heap: list[tuple[float, int, int, int]] = []
        while head < len(sources) and (sources[head][2], sources[head][1]) not in waiting:
            head += 1
        fed = head
        reached = -1
        while True:
            while fed < len(sources) and (not heap or sources[fed][0] <= heap[0][0]):
                bound, release, node = sources[fed]
                fed += 1
                if (node, release) in waiting and release < arrival.get(node, math.inf):
                    arrival[node] = release
                    origin[node] = (node, release)
                    via.pop(node, None)  # people start here: no way in to follow back
                    heapq.heappush(heap, (bound, -release, release, node))
            if not heap:
                break
            _, _, t, u = heapq.heappop(heap)
            if t > arrival[u]:
                continue
            if room.get(u, 0) > 0:
                reached = u
                break
            for e in out_edges[u]:
                depart = t
                while free(e, depart) < 1:
                    depart += 1
                a = depart + steps[e]
                v = dst[e]
                if a < arrival.get(v, math.inf) and math.isfinite(to_sink[v]):
                    arrival[v] = a
                    via[v] = (e, depart)
                    origin[v] = origin[u]
                    heapq.heappush(heap, (a + to_sink[v], -a, a, v))
        if reached < 0:
            break  # nobody waiting can reach a muster point with room
        edges: list[int] = []
        departures: list[int] = []
        node = reached
        while node in via:
            e, depart = via[node]
            edges.append(e)
            departures.append(depart)
            node = network.src[e]
        edges.reverse()
        departures.reverse()
        record(origin[reached], edges, departures, reached, arrival[reached])
    return CapacityPlan(
        network, movements, sum(waiting.values()), lower, iterations, load, searches
    )


def _steps_to_sinks(network: FlowNetwork, sinks: Sequence[int]) -> tuple[list[float], list[int]]:
    """Per node, the fewest steps to any of ``sinks`` with capacities ignored, and the first
    edge of such a way (-1 if none): one compiled multi-source Dijkstra, reversed."""
    n = network.node_count
    if not sinks:
        return [math.inf] * n, [-1] * n
    heads = np.asarray(network.dst, dtype=np.int64)
    tails = np.asarray(network.src, dtype=np.int64)
    weights = np.asarray(network.steps, dtype=np.float64)
    # Parallel edges: keep the quickest (a CSR built from duplicates would add them up).
    order = np.lexsort((weights, tails, heads))
    keys = heads[order] * n + tails[order]
    keep = order[np.concatenate([[True], keys[1:] != keys[:-1]])]
    kept_keys = heads[keep] * n + tails[keep]  # ascending, as ``order`` sorted by head, tail
    matrix = sp.csr_matrix((weights[keep], (heads[keep], tails[keep])), shape=(n, n))
    distance, predecessors, _ = dijkstra(
        matrix, directed=True, indices=list(sinks), min_only=True, return_predecessors=True
    )
    nodes = np.flatnonzero(predecessors >= 0)
    after = predecessors[nodes].astype(np.int64)  # the next node on the way to a sink
    next_edge = np.full(n, -1, dtype=np.int64)
    next_edge[nodes] = keep[np.searchsorted(kept_keys, after * n + nodes)]
    return [float(d) for d in distance], [int(e) for e in next_edge]


def optimal_egress_steps(network: FlowNetwork, groups: Sequence[Group], *, horizon: int) -> int:
    """The least number of steps in which everyone can reach a sink (exact; small graphs only).

    Quickest transshipment by binary search over a time-expanded network solved as max-flow.
    Raises if not everyone can be out within ``horizon`` steps.
    """
    total = sum(g.people for g in groups)

    def everyone_out(horizon_t: int) -> bool:
        g = nx.DiGraph()
        for group in groups:
            if group.release <= horizon_t:
                start = ("n", group.node, group.release)
                before = g.edges["S", start]["capacity"] if g.has_edge("S", start) else 0
                g.add_edge("S", start, capacity=before + group.people)
        for v in range(network.node_count):
            for t in range(horizon_t):
                g.add_edge(("n", v, t), ("n", v, t + 1))  # waiting: unlimited
        for e in range(len(network.src)):
            for t in range(horizon_t - network.steps[e] + 1):
                room_now = step_capacity(network.capacity[e], t)
                if room_now:
                    g.add_edge(
                        ("n", network.src[e], t),
                        ("n", network.dst[e], t + network.steps[e]),
                        capacity=room_now,
                    )
        for sink, room in network.sinks.items():
            for t in range(horizon_t + 1):
                g.add_edge(("n", sink, t), ("sink", sink))
            g.add_edge(("sink", sink), "T", capacity=room)
        if "S" not in g or "T" not in g:
            return total == 0
        value, _ = nx.maximum_flow(g, "S", "T")
        return bool(value >= total)

    if not everyone_out(horizon):
        raise InvalidInput(
            f"not everyone can be out within {horizon} steps",
            errors=[FieldError("horizon", "too short, or some people cannot be out at all")],
        )
    low, high = 0, horizon
    while low < high:
        mid = (low + high) // 2
        if everyone_out(mid):
            high = mid
        else:
            low = mid + 1
    return low


# --- from a site's graph and its evacuation routes -----------------------------------------


@dataclass
class SitePlan:
    """A capacity-aware plan for a site, with its muster points named."""

    plan: CapacityPlan
    muster_ids: list[str]
    sink_of_muster: dict[int, int]  # muster index -> sink node in the flow network
    egress_s: float
    lower_bound_s: float
    graph_edges: list[int]  # per flow-network edge, the graph's directed edge (-1: to a sink)

    def arrival_curves(self) -> dict[str, list[tuple[float, int]]]:
        return {
            self.muster_ids[m]: self.plan.arrival_curve(sink)
            for m, sink in self.sink_of_muster.items()
        }


def site_capacity_plan(
    graph: NetworkGraph,
    routes: EvacuationRoutes,
    muster_capacity: Sequence[int],
    *,
    zones: Sequence[ThreatZone] = (),
    closed: Sequence[str] = (),
    policy: HazardPolicy | None = None,
    step_s: float = 5.0,
) -> SitePlan:
    """Stage 2: plan departures for everyone who has a route, over the safe part of the graph.

    Groups are the people who join the network at the same node (people inside the innermost
    zone join where their escape leaves it, released when they get there). Edges in the
    innermost zone and closed edges are left out; an edge's capacity per step comes from its
    flow capacity (people per minute).
    """
    if step_s <= 0:
        raise InvalidInput("step_s must be > 0", errors=[FieldError("step_s", "> 0")])
    policy = policy or HazardPolicy()
    levels = edge_levels(graph, zones)
    usable = (levels < policy.impassable_level) & ~blocked_edges(graph, closed)
    edges = np.flatnonzero(usable)
    n = graph.node_count
    # One sink node per muster point, joined from the nodes its route forest ends at.
    sink_of_muster: dict[int, int] = {}
    src: list[int] = [int(x) for x in graph.edge_src[edges]]
    dst: list[int] = [int(x) for x in graph.edge_dst[edges]]
    steps = [max(1, math.ceil(t / step_s - 1e-9)) for t in graph.edge_time_s[edges]]
    per_step = graph.edge_capacity_pm[edges] * step_s / 60.0
    capacity = [float(c) if np.isfinite(c) else 1e9 for c in per_step]
    sinks: dict[int, int] = {}
    for m, _ in enumerate(routes.muster_ids):
        if routes.muster_ids[m] in routes.unusable_musters:
            continue
        sink = n + len(sink_of_muster)
        sink_of_muster[m] = sink
        sinks[sink] = int(muster_capacity[m])
    # Each muster point's sink is reached from both ends of its edge, after the last leg.
    m_start, m_end, from_start, from_end = arrival_legs(
        graph, routes._muster_snap, graph.edge_time_s
    )
    for m, sink in sink_of_muster.items():
        for node, leg in ((m_start[m], from_start[m]), (m_end[m], from_end[m])):
            if np.isfinite(leg):
                src.append(int(node))
                dst.append(sink)
                steps.append(max(1, math.ceil(leg / step_s - 1e-9)))
                capacity.append(1e9)
    network = FlowNetwork(n + len(sink_of_muster), src, dst, steps, capacity, sinks, step_s)

    groups: dict[tuple[int, int], int] = {}
    joined = routes._join_node
    release_s = routes._release_s
    for i in np.flatnonzero(routes.muster >= 0):
        key = (int(joined[i]), max(0, math.ceil(release_s[i] / step_s - 1e-9)))
        groups[key] = groups.get(key, 0) + 1
    plan = ccrp(
        network, [Group(node, people, release) for (node, release), people in groups.items()]
    )
    graph_edges = [int(e) for e in edges] + [-1] * (len(src) - len(edges))
    return SitePlan(
        plan, routes.muster_ids, sink_of_muster, plan.egress_s, plan.lower_bound_s, graph_edges
    )
