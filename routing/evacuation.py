"""Evacuation routes for everyone on site: one search, not one per person.

A single Dijkstra over the reversed graph, from a super-source joined to every usable muster
point, gives every node its cheapest way to a muster point; each person then needs only the leg
from where they stand to the ends of their edge. Edges that reach into the innermost threat zone
are closed to the search, so no route crosses it; the parts of them outside the zone stay usable
to whoever stands there. People inside the zone get a second search that allows only the zone's
own edges, seeded with the first search's costs where those edges meet the outside: the fastest
way out, then the safe way on. Anyone with no safe route is listed as trapped, with what blocks.

Muster points are judged by their areas: one reaching into threat level 2 (by default) is not
used; one reaching into a lower level is used with a warning.

Everything that does not depend on where people stand is computed once per incident
(:func:`evacuation_search`). A person who moved is routed again by reading its forests
(:meth:`EvacuationRoutes.with_people`): no search, and the same answer as a whole new run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import shapely
from scipy.sparse.csgraph import connected_components
from shapely.geometry.base import BaseGeometry

from gis.errors import FieldError, InvalidInput
from gis.hazards.zones import ThreatZone
from routing.forest import WALK_BUDGET, Forest, reverse_search
from routing.graph import BoolArray, FloatArray, IntArray, NetworkGraph
from routing.hazard import (
    HazardPolicy,
    ZoneCuts,
    blocked_edges,
    edge_levels,
    hazard_costs,
    inside,
    muster_area_reasons,
    zone_cuts,
)
from routing.snapping import (
    DEFAULT_MAX_SNAP_M,
    Snapped,
    arrival_legs,
    leg_costs,
    snap,
    snap_clear,
)

#: Weight of a zero-cost super-source edge; scipy treats an explicit 0 as an edge, but a tiny
#: positive weight keeps ties stable and visible.
EPSILON = 1e-9
#: Lengths and times summed along the forests are rounded to multiples of this (2**-32, about
#: 2e-10 m or s). Sums of such numbers are exact in floating point (up to 2**21 m or s), so they
#: do not depend on the order of the additions: a route read from a whole-forest table (a person
#: who moved) equals, to the last bit, the same route summed along its path in a whole run.
SUM_UNIT = 2.0**-32

Cell = TypeVar("Cell", bound=np.generic)
TrappedCause = Literal["off_network", "no_muster", "cut_off", "zone", "closed"]
NO_USABLE_MUSTER = "no usable muster point"
CUT_OFF = "on a part of the network cut off from every muster point"
ZONE_BLOCKS = "the threat zone blocks every way to a muster point"


@dataclass(frozen=True)
class MusterPoints:
    """Muster points: ids, the point each joins the network from (lon/lat, e.g. the muster
    zone's representative point), capacities and, optionally, the muster zones' areas (WGS84),
    which are judged against the threat zones. Without an area, the point is the area."""

    ids: Sequence[str]
    lonlat: FloatArray
    capacity: Sequence[int]
    areas: Sequence[BaseGeometry | None] | None = None

    def area(self, m: int) -> BaseGeometry:
        area = self.areas[m] if self.areas is not None else None
        if area is None or area.is_empty:
            return shapely.Point(self.lonlat[m])
        return area


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
    """Someone with no safe route: where they are, and what blocks them (``cause``: one of
    off_network, no_muster, cut_off, zone, closed; ``reason`` says it in words)."""

    id: str
    lon: float
    lat: float
    reason: str
    cause: TrappedCause


@dataclass
class EvacuationRoutes:
    """Each person's muster point, cost and route; routes are kept as two shared forests.

    Never changed once made: :meth:`with_people` returns new routes, so a reader of these (a
    snapshot being built) is never disturbed by a position update."""

    person_ids: list[str]
    muster_ids: list[str]
    muster: IntArray  # per person, index into muster_ids; -1 if trapped
    cost_s: FloatArray  # hazard-weighted cost that was minimised
    length_m: FloatArray
    walk_time_s: FloatArray  # plain walking time along the route
    trapped: list[Trapped]  # in the order of person_ids
    unusable_musters: dict[str, str]  # muster id -> why no one is sent there
    muster_warnings: dict[str, str]  # muster id -> what to know of it (part in an outer zone)
    inside_inner_zone: BoolArray
    _escaping: BoolArray = field(repr=False)  # routes that start in the escape forest
    _direct: BoolArray = field(repr=False)  # straight along the muster point's edge
    _first_node: IntArray = field(repr=False)  # node where the route joins the network
    _join_node: IntArray = field(repr=False)  # node where it joins the outer forest
    _release_s: FloatArray = field(repr=False)  # walking time until then
    _snapped: Snapped = field(repr=False)  # where each person attaches (clear of the zone)
    _trapped_rows: IntArray = field(repr=False)  # per entry of ``trapped``, the person
    _search: EvacuationSearch = field(repr=False)

    @property
    def trapped_rows(self) -> IntArray:
        """Per entry of ``trapped``, the person's index."""
        return self._trapped_rows

    @property
    def search(self) -> EvacuationSearch:
        """The incident's search these routes were read from."""
        return self._search

    @property
    def _graph(self) -> NetworkGraph:
        return self._search.graph

    @property
    def _outer(self) -> Forest:
        return self._search.outer

    @property
    def _escape(self) -> Forest | None:
        """The escape forest, when some route starts in it."""
        return self._search.escape if self._escaping.any() else None

    @property
    def _muster_snap(self) -> Snapped:
        """Where the usable muster points attach (feature -1 for the others)."""
        return self._search.muster_snap

    def route_nodes(self, person: int) -> list[int]:
        """Nodes of a person's route, from the first node reached to the muster point's node
        (none for someone who walks straight along the muster point's own edge)."""
        if self.muster[person] < 0 or self._direct[person]:
            return []
        node = int(self._first_node[person])
        nodes: list[int] = []
        escape = self._search.escape
        if escape is not None and self._escaping[person]:
            nodes = escape.path(node)
            node = nodes.pop()
        return nodes + self._search.outer.path(node)

    def route_line(self, person: int) -> shapely.LineString | None:
        """The route as a WGS84 line through the network nodes (None if trapped)."""
        nodes = self.route_nodes(person)
        if not nodes:
            return None
        coords = self._graph.node_lonlat[nodes]
        return shapely.LineString(coords) if len(coords) > 1 else None

    def with_people(
        self,
        people: Sequence[int] | IntArray,
        lonlat: FloatArray,
        snapped: Snapped | None = None,
    ) -> EvacuationRoutes:
        """New routes in which the people at indices ``people`` stand at ``lonlat`` (attached
        at ``snapped``, when the caller keeps positions attached); everyone else's route is
        kept. The same as a whole new run with those positions, for the cost of reading the
        kept forests. These routes are not changed."""
        rows = np.asarray(people, dtype=np.int64).reshape(-1)
        lonlat = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
        if len(rows) != len(lonlat) or (snapped is not None and len(snapped.t) != len(rows)):
            raise InvalidInput("one position per person", errors=[FieldError("people", "")])
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self.person_ids)):
            raise InvalidInput("no such person", errors=[FieldError("people", "index")])
        if len(rows) > 1 and len(np.unique(rows)) != len(rows):
            raise InvalidInput(
                "each person may be moved once per update", errors=[FieldError("people", "")]
            )
        new = self._search._place(lonlat, snapped, tables=True)

        def put(old: npt.NDArray[Cell], values: npt.NDArray[Cell]) -> npt.NDArray[Cell]:
            out = old.copy()
            out[rows] = values
            return out

        keep = ~_member(self._trapped_rows, rows)
        trapped_rows = np.concatenate(
            [self._trapped_rows[keep], rows[[r for r, _, _ in new.trapped]]]
        ).astype(np.int64)
        trapped = [t for t, k in zip(self.trapped, keep.tolist(), strict=True) if k] + [
            _trapped(self.person_ids[int(rows[r])], lonlat[r], reason, cause)
            for r, reason, cause in new.trapped
        ]
        order = np.argsort(trapped_rows, kind="stable")
        old_snap = self._snapped
        return EvacuationRoutes(
            person_ids=self.person_ids,
            muster_ids=self.muster_ids,
            muster=put(self.muster, new.muster),
            cost_s=put(self.cost_s, new.cost),
            length_m=put(self.length_m, new.length),
            walk_time_s=put(self.walk_time_s, new.time),
            trapped=[trapped[int(i)] for i in order],
            unusable_musters=self.unusable_musters,
            muster_warnings=self.muster_warnings,
            inside_inner_zone=put(self.inside_inner_zone, new.inner),
            _escaping=put(self._escaping, new.escaping),
            _direct=put(self._direct, new.direct),
            _first_node=put(self._first_node, new.first),
            _join_node=put(self._join_node, new.join),
            _release_s=put(self._release_s, new.release),
            _snapped=Snapped(
                put(old_snap.feature, new.snapped.feature),
                put(old_snap.t, new.snapped.t),
                put(old_snap.distance_m, new.snapped.distance_m),
            ),
            _trapped_rows=trapped_rows[order],
            _search=self._search,
        )


@dataclass(frozen=True)
class _Placed:
    """Routes of some people, as arrays (one entry per person) and (row, reason, cause) of the
    trapped."""

    muster: IntArray
    cost: FloatArray
    length: FloatArray
    time: FloatArray
    release: FloatArray
    inner: BoolArray
    escaping: BoolArray
    direct: BoolArray
    first: IntArray
    join: IntArray
    snapped: Snapped
    trapped: list[tuple[int, str, TrappedCause]]


@dataclass(frozen=True, eq=False)
class EvacuationSearch:
    """An incident's routing, everything but the people: costs, the muster points judged and
    attached, where the zone cuts the network, and the outer forest (the escape forest and the
    whole-forest tables follow on first need). Build with :func:`evacuation_search`."""

    graph: NetworkGraph
    musters: MusterPoints
    zones: tuple[ThreatZone, ...]
    closed: tuple[str, ...]
    policy: HazardPolicy
    wind: Wind | None
    max_snap_m: float
    unusable_from_level: int
    unusable_musters: dict[str, str]
    muster_warnings: dict[str, str]
    costs: FloatArray = field(repr=False)
    blocked: BoolArray = field(repr=False)
    cuts: ZoneCuts = field(repr=False)
    muster_snap: Snapped = field(repr=False)  # usable muster points only
    penalty: FloatArray = field(repr=False)
    outer: Forest = field(repr=False)
    muster_at_root: IntArray = field(repr=False)
    per_edge: tuple[FloatArray, FloatArray] = field(repr=False)  # length, time in SUM_UNITs

    @property
    def muster_ids(self) -> list[str]:
        return [str(m) for m in self.musters.ids]

    def routes(
        self, person_ids: Sequence[str], lonlat: FloatArray, *, snapped: Snapped | None = None
    ) -> EvacuationRoutes:
        """Everyone's routes; ``snapped`` when the caller keeps positions attached."""
        lonlat = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
        if len(person_ids) != len(lonlat):
            raise InvalidInput("one position per person", errors=[FieldError("people", "")])
        if snapped is not None and snapped.feature.shape[0] != len(person_ids):
            raise InvalidInput("one snapped position per person", errors=[FieldError("people", "")])
        placed = self._place(lonlat, snapped, tables=False)
        return EvacuationRoutes(
            person_ids=[str(p) for p in person_ids],
            muster_ids=self.muster_ids,
            muster=placed.muster,
            cost_s=placed.cost,
            length_m=placed.length,
            walk_time_s=placed.time,
            trapped=[
                _trapped(str(person_ids[r]), lonlat[r], reason, cause)
                for r, reason, cause in placed.trapped
            ],
            unusable_musters=self.unusable_musters,
            muster_warnings=self.muster_warnings,
            inside_inner_zone=placed.inner,
            _escaping=placed.escaping,
            _direct=placed.direct,
            _first_node=placed.first,
            _join_node=placed.join,
            _release_s=placed.release,
            _snapped=placed.snapped,
            _trapped_rows=np.array([r for r, _, _ in placed.trapped], dtype=np.int64),
            _search=self,
        )

    # --- the parts built on first need -------------------------------------------------------

    @cached_property
    def escape(self) -> Forest | None:
        """Inside the innermost zone, only the zone's own edges (closures kept), seeded with
        the outer search's cost at every node of the zone where it can be left."""
        graph = self.graph
        closed_inner = self.cuts.touched[graph.edge_feature]
        if not closed_inner.any():
            return None
        open_inner = closed_inner & ~self.blocked
        zone_nodes = np.unique(
            np.concatenate([graph.edge_src[closed_inner], graph.edge_dst[closed_inner]])
        )
        exits = zone_nodes[np.isfinite(self.outer.distance[zone_nodes])]
        # An exit is where the way leaves the zone, never a place to walk back in from.
        is_exit = np.zeros(graph.node_count, dtype=bool)
        is_exit[exits] = True
        zone_edges = np.flatnonzero(open_inner)
        return reverse_search(
            graph,
            graph.edge_time_s,
            [(int(x), float(self.outer.distance[x])) for x in exits],
            within=zone_edges[~is_exit[graph.edge_src[zone_edges]]],
        )

    @cached_property
    def _escape_costs(self) -> FloatArray:
        """Plain walking time on the zone's open edges: how someone inside walks their edge."""
        open_inner = self.cuts.touched[self.graph.edge_feature] & ~self.blocked
        return np.where(open_inner, self.graph.edge_time_s, np.inf)

    @cached_property
    def _outer_table(self) -> tuple[IntArray, FloatArray]:
        """Every node's root and sums in the outer forest: a moved person's route is read."""
        return self._table(self.outer, budget=0.0)  # paths over the whole site: jump at once

    @cached_property
    def _escape_table(self) -> tuple[IntArray, FloatArray]:
        assert self.escape is not None  # asked for only when someone escapes
        return self._table(self.escape, budget=WALK_BUDGET)  # short paths out of the zone

    def _table(self, forest: Forest, *, budget: float) -> tuple[IntArray, FloatArray]:
        n = self.graph.node_count
        roots, sums = np.arange(n), np.zeros((len(self.per_edge), n))
        reached = np.flatnonzero(np.isfinite(forest.distance[:n]))
        if len(reached):
            roots[reached], sums[:, reached] = forest.sums(reached, self.per_edge, budget=budget)
        for array in (roots, sums):
            array.flags.writeable = False
        return roots, sums

    def prepare_updates(self) -> None:
        """Build now what :meth:`EvacuationRoutes.with_people` reads (whole-forest tables and
        the network's parts: about 15 ms at 100k edges), rather than on the first update. With
        closures, the first trapped person also costs the search that tells what blocks them."""
        _ = self._outer_table
        if self.escape is not None:
            _ = self._escape_table
        if self.muster_snap.attached.any():
            _ = self._components

    @cached_property
    def _muster_features(self) -> IntArray:
        """The features the usable muster points lie on."""
        return np.unique(self.muster_snap.feature[self.muster_snap.attached])

    @cached_property
    def _components(self) -> tuple[IntArray, BoolArray]:
        """Per node, its part of the network (ignoring zones and closures), and per part
        whether a usable muster point lies on it."""
        graph = self.graph
        matrix, _ = graph.reversed_matrix(graph.edge_time_s)
        count, labels = connected_components(matrix, directed=True, connection="weak")
        usable = np.flatnonzero(self.muster_snap.attached)
        served = np.zeros(count, dtype=bool)
        nodes = graph.edge_src[graph.feature_edges[self.muster_snap.feature[usable], 0]]
        served[labels[nodes]] = True
        return labels.astype(np.int64), served

    @cached_property
    def _unclosed(self) -> EvacuationSearch:
        """The same incident with every closure open: who it routes, closures block."""
        return evacuation_search(
            self.graph,
            self.musters,
            zones=self.zones,
            policy=self.policy,
            wind=self.wind,
            max_snap_m=self.max_snap_m,
            unusable_from_level=self.unusable_from_level,
        )

    # --- routing people ----------------------------------------------------------------------

    def _sums(
        self, forest: Forest, nodes: IntArray, *, tables: bool
    ) -> tuple[IntArray, FloatArray]:
        """Root, length and walking time of each node's path in ``forest``: walked along the
        paths (a whole run), or read from the whole-forest table (a few people)."""
        if not tables:
            return forest.sums(nodes, self.per_edge)
        roots, sums = self._outer_table if forest is self.outer else self._escape_table
        return roots[nodes], sums[:, nodes]

    def _place(self, lonlat: FloatArray, snapped: Snapped | None, *, tables: bool) -> _Placed:
        """Routes for people at ``lonlat``: the same, person by person, however many."""
        graph = self.graph
        count = lonlat.shape[0]
        if snapped is None:
            snapped = snap(graph, lonlat, max_distance_m=self.max_snap_m)
        inner = (
            inside(self.zones, lonlat, self.policy.impassable_level)
            if self.cuts.area is not None
            else np.zeros(count, dtype=bool)
        )
        snapped = _attach(graph, self.cuts, lonlat, snapped, inner, self.max_snap_m)
        start, end, to_start, to_end = leg_costs(graph, snapped, self.costs)
        to_start, to_end = _clear_legs(
            graph, self.cuts, self.blocked, snapped, to_start, to_end, leaving=True
        )
        distance = self.outer.distance
        normal_start = to_start + distance[start]
        normal_end = to_end + distance[end]
        first = np.where(normal_start <= normal_end, start, end)
        cost = np.minimum(normal_start, normal_end)
        use_escape = np.zeros(count, dtype=bool)
        escape = self.escape if inner.any() else None
        if escape is not None:
            # A person on a closed inner edge may still walk it: that is how they leave.
            _, _, e_to_start, e_to_end = leg_costs(graph, snapped, self._escape_costs)
            escape_start = e_to_start + escape.distance[start]
            escape_end = e_to_end + escape.distance[end]
            escape_cost = np.minimum(escape_start, escape_end)
            use_escape = inner & (escape_cost < cost)
            first = np.where(use_escape, np.where(escape_start <= escape_end, start, end), first)
            cost = np.where(use_escape, escape_cost, cost)
        reachable = np.isfinite(cost) & snapped.attached

        # Where each route leaves the escape forest, and the muster point it ends at.
        join = first.copy()
        length = np.zeros(count)
        time = np.zeros(count)
        escaping = np.flatnonzero(use_escape)
        if escape is not None and len(escaping):
            escape_roots, (escape_length, escape_time) = self._sums(
                escape, first[escaping], tables=tables
            )
            join[escaping] = escape_roots
            length[escaping] = escape_length
            time[escaping] = escape_time
        last, (length_outer, time_outer) = self._sums(self.outer, join, tables=tables)
        length = length + length_outer
        time = time + time_outer
        muster = np.where(reachable, self.muster_at_root[last], -1)

        # The legs at both ends: from the person to the first node, from the last node to the
        # muster point.
        f = np.where(snapped.attached, snapped.feature, 0)
        forward = graph.feature_edges[f, 0]
        leg_t = np.where(first == start, snapped.t, 1 - snapped.t)
        length = length + leg_t * graph.edge_length_m[forward]
        time = time + leg_t * graph.edge_time_s[forward]
        # Plain walking time until the route joins the outer forest (the capacity plan's
        # release): the first leg, and the escape from the zone if there is one.
        release = time - time_outer
        muster_leg_len, muster_leg_time = _muster_legs(graph, self.muster_snap, muster, last)
        length = length + muster_leg_len
        time = time + muster_leg_time

        direct = self._direct(snapped, inner, cost, muster, length, time, release)
        reachable = reachable | direct
        trapped = np.flatnonzero(~reachable)
        return _Placed(
            muster=muster.astype(np.int64),
            cost=np.where(reachable, cost, np.inf),
            length=np.where(reachable, length, np.nan),
            time=np.where(reachable, time, np.nan),
            release=np.where(reachable, release, np.inf),
            inner=inner,
            escaping=use_escape & ~direct,
            direct=direct,
            first=first,
            join=join,
            snapped=snapped,
            trapped=self._why(lonlat, snapped, trapped, tables=tables) if len(trapped) else [],
        )

    def _direct(
        self,
        snapped: Snapped,
        inner: BoolArray,
        cost: FloatArray,
        muster: IntArray,
        length: FloatArray,
        time: FloatArray,
        release: FloatArray,
    ) -> BoolArray:
        """Someone on the same edge as a muster point may walk straight along it: updates the
        arrays in place where that is better, and says for whom."""
        graph, musters = self.graph, self.muster_snap
        direct = np.zeros(len(cost), dtype=bool)
        on_muster_edge = _member(snapped.feature, self._muster_features)
        if not on_muster_edge.any():
            return direct
        for m in np.flatnonzero(musters.attached):
            same = on_muster_edge & (snapped.feature == musters.feature[m])
            if not same.any():
                continue
            fm = int(musters.feature[m])
            forward, backward = graph.feature_edges[fm]
            t = snapped.t[same]
            delta = musters.t[m] - t
            edge_cost = np.where(
                delta >= 0, self.costs[forward], self.costs[backward] if backward >= 0 else np.inf
            )
            if self.cuts.touched[fm] and not self.blocked[forward]:
                # Along the part clear of the zone (or, from inside it, along one's own edge).
                both = np.full(len(t), fm)
                low, high = np.minimum(t, musters.t[m]), np.maximum(t, musters.t[m])
                clear = self.cuts.to_start(both, high) | self.cuts.to_end(both, low)
                edge_cost = np.where(clear | inner[same], graph.edge_time_s[forward], edge_cost)
            penalty = self.penalty[m]
            with np.errstate(invalid="ignore"):  # 0 x inf: standing on the muster point itself
                straight = np.abs(delta) * edge_cost + penalty
                straight = np.where(delta == 0, penalty, straight)
            better = straight < np.where(np.isfinite(cost[same]), cost[same], np.inf)
            who = np.flatnonzero(same)[better]
            cost[who] = straight[better]
            muster[who] = m
            length[who] = np.abs(delta[better]) * graph.edge_length_m[forward]
            time[who] = np.abs(delta[better]) * graph.edge_time_s[forward]
            release[who] = time[who]
            direct[who] = True
        return direct

    def _why(
        self, lonlat: FloatArray, snapped: Snapped, rows: IntArray, *, tables: bool
    ) -> list[tuple[int, str, TrappedCause]]:
        """What keeps each of ``rows`` (people with no route) from every muster point."""
        if not self.muster_snap.attached.any():
            return [(int(r), NO_USABLE_MUSTER, "no_muster") for r in rows]
        out: dict[int, tuple[str, TrappedCause]] = {}
        blocked: list[int] = []
        labels, served = self._components if snapped.attached[rows].any() else (None, None)
        for r in rows.tolist():
            if not snapped.attached[r]:
                out[r] = (f"more than {self.max_snap_m:.0f} m from the network", "off_network")
                continue
            assert labels is not None and served is not None
            node = self.graph.edge_src[self.graph.feature_edges[snapped.feature[r], 0]]
            if not served[labels[node]]:
                out[r] = (CUT_OFF, "cut_off")
            else:
                blocked.append(r)
        if blocked:
            closures = self._closures(lonlat, snapped, np.array(blocked), tables=tables)
            for r, names in zip(blocked, closures, strict=True):
                if names:
                    edges = ", ".join(names)
                    out[r] = (
                        f"a closed edge blocks the way to a muster point: {edges}"
                        if len(names) == 1
                        else f"closed edges block the way to a muster point: {edges}",
                        "closed",
                    )
                elif self.cuts.area is not None:
                    out[r] = (ZONE_BLOCKS, "zone")
                else:  # pragma: no cover - with neither zone nor closures, only a cut blocks
                    out[r] = (CUT_OFF, "cut_off")
        return [(r, *out[r]) for r in sorted(out)]

    def _closures(
        self, lonlat: FloatArray, snapped: Snapped, rows: IntArray, *, tables: bool
    ) -> list[list[str]]:
        """Per row, the closed edges on the route it would have with every closure open (none
        where even that has no route: the zone alone blocks)."""
        if not self.closed:
            return [[] for _ in rows]
        unclosed = self._unclosed
        sub = Snapped(snapped.feature[rows], snapped.t[rows], snapped.distance_m[rows])
        placed = unclosed._place(lonlat[rows], sub, tables=tables)
        graph = self.graph
        out: list[list[str]] = []
        for k in range(len(rows)):
            m = int(placed.muster[k])
            if m < 0:
                out.append([])
                continue
            features = [int(sub.feature[k])]
            if not placed.direct[k]:
                node = int(placed.first[k])
                forests: list[Forest] = [unclosed.outer]
                if placed.escaping[k] and unclosed.escape is not None:
                    forests.insert(0, unclosed.escape)
                for forest in forests:
                    path = forest.path(node)
                    features += [int(graph.edge_feature[forest.edges[a]]) for a in path[:-1]]
                    node = path[-1]
            features.append(int(unclosed.muster_snap.feature[m]))
            closed = [f for f in dict.fromkeys(features) if self.blocked[graph.feature_edges[f, 0]]]
            out.append([str(graph.feature_ids[f]) for f in closed])
        return out


def evacuation_search(
    graph: NetworkGraph,
    musters: MusterPoints,
    *,
    zones: Sequence[ThreatZone] = (),
    closed: Sequence[str] = (),
    policy: HazardPolicy | None = None,
    wind: Wind | None = None,
    max_snap_m: float = DEFAULT_MAX_SNAP_M,
    unusable_from_level: int = 2,
) -> EvacuationSearch:
    """The part of an incident's routing that does not depend on where people stand.

    ``closed`` names network features that are closed; ``wind``, when the plan prefers upwind
    muster points, adds up to ``downwind_penalty_s`` to muster points downwind of the incident.
    A muster point whose area reaches into a zone of ``unusable_from_level`` or above is not
    used; one reaching into a lower level is used, with a warning.
    """
    if graph.mode != "foot":
        raise InvalidInput("evacuation routes are walked", errors=[FieldError("mode", "foot")])
    if len(musters.ids) == 0:
        raise InvalidInput("no muster points", errors=[FieldError("musters", "none given")])
    if musters.areas is not None and len(musters.areas) != len(musters.ids):
        raise InvalidInput("one area per muster point", errors=[FieldError("musters", "areas")])
    if unusable_from_level not in (1, 2, 3):
        raise InvalidInput(
            f"unusable_from_level {unusable_from_level} is not 1, 2 or 3",
            errors=[FieldError("unusable_from_level", "a threat level: 1, 2 or 3")],
        )
    policy = policy or HazardPolicy()
    levels = edge_levels(graph, zones)
    blocked = blocked_edges(graph, closed)
    costs = (
        hazard_costs(graph, levels, blocked, policy=policy)
        if zones or closed
        else graph.edge_time_s  # plain times: the graph's cached weights serve
    )
    cuts = zone_cuts(graph, zones, levels, level=policy.impassable_level)

    muster_xy = np.asarray(musters.lonlat, dtype=np.float64).reshape(-1, 2)
    muster_inner = (
        inside(zones, muster_xy, policy.impassable_level)
        if cuts.area is not None
        else np.zeros(len(muster_xy), dtype=bool)
    )
    muster_snap = snap(graph, muster_xy, max_distance_m=max_snap_m)
    muster_snap = _attach(graph, cuts, muster_xy, muster_snap, muster_inner, max_snap_m)
    severe, mild = muster_area_reasons(
        graph.crs,
        [musters.area(m) for m in range(len(musters.ids))],
        zones,
        unusable_from_level=unusable_from_level,
    )
    unusable: dict[str, str] = {}
    warnings: dict[str, str] = {}
    for m, muster_id in enumerate(str(m) for m in musters.ids):
        if m in severe:
            unusable[muster_id] = severe[m]
        elif not muster_snap.attached[m]:
            unusable[muster_id] = f"more than {max_snap_m:.0f} m from the network"
        elif m in mild:
            warnings[muster_id] = mild[m]
    muster_snap = _without(musters, muster_snap, unusable)
    legs = arrival_legs(graph, muster_snap, costs)
    legs = (
        legs[0],
        legs[1],
        *_clear_legs(graph, cuts, blocked, muster_snap, *legs[2:], leaving=False),
    )
    for m in np.flatnonzero(muster_snap.attached).tolist():
        if not (np.isfinite(legs[2][m]) or np.isfinite(legs[3][m])):
            f = int(muster_snap.feature[m])
            unusable[str(musters.ids[m])] = (
                f"on a closed edge ({graph.feature_ids[f]})"
                if blocked[graph.feature_edges[f, 0]]
                else "its way in crosses the innermost threat zone"
            )
    muster_snap = _without(musters, muster_snap, unusable)
    penalty = _downwind_penalty(musters, wind)
    sources, source_muster = _muster_sources(muster_snap, legs, penalty)
    # Only the edges the hazard or a closure touches differ from plain travel times.
    outer = reverse_search(graph, costs, sources, changed=np.flatnonzero((levels > 0) | blocked))
    return EvacuationSearch(
        graph=graph,
        musters=musters,
        zones=tuple(zones),
        closed=tuple(closed),
        policy=policy,
        wind=wind,
        max_snap_m=max_snap_m,
        unusable_from_level=unusable_from_level,
        unusable_musters=unusable,
        muster_warnings={m: w for m, w in warnings.items() if m not in unusable},
        costs=costs,
        blocked=blocked,
        cuts=cuts,
        muster_snap=muster_snap,
        penalty=penalty,
        outer=outer,
        muster_at_root=_label_roots(graph, outer, sources, source_muster),
        per_edge=(_fixed(graph.edge_length_m), _fixed(graph.edge_time_s)),
    )


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
    unusable_from_level: int = 2,
) -> EvacuationRoutes:
    """Route every person to the best reachable muster point, never through the inner zone.

    The options are those of :func:`evacuation_search`; ``snapped_people``, when the caller
    keeps positions attached as they arrive, saves attaching them again.
    """
    person_lonlat = np.asarray(person_lonlat, dtype=np.float64).reshape(-1, 2)
    if len(person_ids) != len(person_lonlat):
        raise InvalidInput("one position per person", errors=[FieldError("people", "mismatch")])
    search = evacuation_search(
        graph,
        musters,
        zones=zones,
        closed=closed,
        policy=policy,
        wind=wind,
        max_snap_m=max_snap_m,
        unusable_from_level=unusable_from_level,
    )
    return search.routes(person_ids, person_lonlat, snapped=snapped_people)


def _trapped(person: str, lonlat: FloatArray, reason: str, cause: TrappedCause) -> Trapped:
    return Trapped(person, float(lonlat[0]), float(lonlat[1]), reason, cause)


def _member(values: IntArray, of: IntArray) -> BoolArray:
    """``np.isin``, without its fixed cost when one side is short (one person, few muster
    points): a position update is a few hundred small operations."""
    if len(of) <= 32 or len(values) <= 32:
        return np.asarray((values[:, None] == of[None, :]).any(axis=1))
    return np.isin(values, of)


def _fixed(values: FloatArray) -> FloatArray:
    """``values`` rounded to multiples of :data:`SUM_UNIT` (see there)."""
    fixed = np.round(values / SUM_UNIT) * SUM_UNIT
    fixed.flags.writeable = False
    return fixed


def _attach(
    graph: NetworkGraph,
    cuts: ZoneCuts,
    lonlat: FloatArray,
    snapped: Snapped,
    inner: BoolArray,
    max_snap_m: float,
) -> Snapped:
    """Points outside the innermost zone whose nearest network lies in it attach instead to
    the nearest network clear of it (if any is within ``max_snap_m``): they walk there, not
    through the zone."""
    if cuts.area is None:
        return snapped
    f = np.where(snapped.attached, snapped.feature, 0)
    stray = snapped.attached & ~inner & cuts.touched[f]
    if not stray.any():
        return snapped
    stray &= ~cuts.clear(f, snapped.t)
    if not stray.any():
        return snapped
    rows = np.flatnonzero(stray)
    again = snap_clear(
        graph, lonlat[rows], cuts.clear_start, cuts.clear_end, max_distance_m=max_snap_m
    )
    found = again.attached
    feature, t, distance = snapped.feature.copy(), snapped.t.copy(), snapped.distance_m.copy()
    feature[rows[found]] = again.feature[found]
    t[rows[found]] = again.t[found]
    distance[rows[found]] = again.distance_m[found]
    return Snapped(feature, t, distance)


def _clear_legs(
    graph: NetworkGraph,
    cuts: ZoneCuts,
    blocked: BoolArray,
    snapped: Snapped,
    to_start: FloatArray,
    to_end: FloatArray,
    *,
    leaving: bool,
) -> tuple[FloatArray, FloatArray]:
    """Open, at plain walking time, the legs of points on an edge the zone reaches into whose
    way to an end of the edge stays clear of it (the search itself keeps the edge closed)."""
    f = np.where(snapped.attached, snapped.feature, 0)
    forward = graph.feature_edges[f, 0]
    touched = snapped.attached & cuts.touched[f] & ~blocked[forward]
    if not touched.any():
        return to_start, to_end
    t = snapped.t
    time = graph.edge_time_s[forward]
    has_back = graph.feature_edges[f, 1] >= 0
    # Leaving towards the start, or arriving from the end, runs the backward edge, which a
    # one-way edge lacks; the other two run the forward edge.
    start_ok = touched & (has_back if leaving else True) & cuts.to_start(f, t)
    end_ok = touched & (True if leaving else has_back) & cuts.to_end(f, t)
    return np.where(start_ok, t * time, to_start), np.where(end_ok, (1 - t) * time, to_end)


def _without(musters: MusterPoints, snapped: Snapped, unusable: dict[str, str]) -> Snapped:
    """``snapped`` with the unusable muster points detached."""
    usable = np.array([str(m) not in unusable for m in musters.ids], dtype=bool)
    return Snapped(np.where(usable, snapped.feature, -1), snapped.t, snapped.distance_m)


def _muster_sources(
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
    forward = graph.feature_edges[f, 0]
    t = np.where(last == graph.edge_src[forward], snapped.t[m], 1 - snapped.t[m])
    ok = muster >= 0
    return (
        np.where(ok, t * graph.edge_length_m[forward], 0.0),
        np.where(ok, t * graph.edge_time_s[forward], 0.0),
    )


def _downwind_penalty(musters: MusterPoints, wind: Wind | None) -> FloatArray:
    """0 for a muster point straight upwind of the incident, the full penalty straight downwind."""
    count = len(musters.ids)
    if wind is None:
        return np.zeros(count)
    lon0, lat0 = wind.incident_lonlat
    lonlat = np.asarray(musters.lonlat, dtype=np.float64).reshape(-1, 2)
    dx = (lonlat[:, 0] - lon0) * np.cos(np.radians(lat0))
    dy = lonlat[:, 1] - lat0
    bearing = np.degrees(np.arctan2(dx, dy))  # clockwise from north
    # Upwind means towards where the wind comes from.
    cos = np.cos(np.radians(bearing - wind.from_deg))
    return np.asarray(wind.downwind_penalty_s * (1 - cos) / 2, dtype=np.float64)
