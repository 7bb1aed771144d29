"""Routable graphs of a site's network, one per mode.

networkx holds the model (``NetworkGraph.graph``, a ``MultiDiGraph`` whose edges carry the
network feature's id, length, travel time, width, capacity and door/stairs flags). The hot paths
run on arrays compiled from it once: per directed edge, its end nodes, length, time and capacity;
and the CSR structure of the reversed graph, whose weights are recomputed from a cost array
without rebuilding anything when a hazard or a closure changes the costs.

Foot graphs hold every edge that allows people on foot, in both directions. Vehicle graphs hold
the edges that allow vehicles, in one direction where the edge is one-way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import connected_components
from shapely.geometry import shape

from gis.crs import SiteCRS
from gis.errors import FieldError, InvalidInput

Mode = Literal["foot", "vehicle"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Nodes closer than this (in degrees, about 1 cm) are the same node.
NODE_PRECISION = 7


@dataclass(frozen=True, slots=True)
class TravelSpeeds:
    """Speeds used to turn lengths into travel times.

    Walking 1.2 m/s is the unimpeded walking speed of the SFPE Handbook (Nelson and Mowrer,
    "Emergency movement"); stairs are taken at half that along their plan length. 20 km/h is a
    common on-site speed limit for vehicles in chemical parks.
    """

    walk_mps: float = 1.2
    stairs_factor: float = 0.5
    drive_mps: float = 20 / 3.6

    def __post_init__(self) -> None:
        for name in ("walk_mps", "stairs_factor", "drive_mps"):
            value = getattr(self, name)
            if not (value > 0 and np.isfinite(value)):
                raise InvalidInput(
                    f"{name} must be a positive number", errors=[FieldError(name, "must be > 0")]
                )


@dataclass(frozen=True)
class Component:
    """A part of the network not connected to the largest part."""

    nodes: int
    lon: float
    lat: float


@dataclass
class NetworkGraph:
    """One mode's graph: the networkx model and the arrays compiled from it."""

    mode: Mode
    crs: SiteCRS
    node_lonlat: FloatArray  # (n, 2)
    # Per directed edge:
    edge_src: IntArray
    edge_dst: IntArray
    edge_feature: IntArray  # index into feature_ids / feature_lines
    edge_forward: BoolArray  # True if the edge runs from the feature's start to its end
    edge_length_m: FloatArray
    edge_time_s: FloatArray
    edge_capacity_pm: FloatArray  # people per minute; inf where unknown
    # Per feature (undirected network line):
    feature_ids: npt.NDArray[np.object_]
    feature_lines: npt.NDArray[np.object_]  # metric LineStrings
    feature_edges: IntArray  # (f, 2): directed edge index start->end, end->start; -1 if none
    feature_width_m: FloatArray  # NaN where unknown
    feature_door: BoolArray
    feature_stairs: BoolArray
    # Reversed-graph CSR structure (row = edge head, column = edge tail), built once.
    _rev_indptr: npt.NDArray[np.int32] = field(repr=False)
    _rev_indices: npt.NDArray[np.int32] = field(repr=False)
    _rev_order: IntArray = field(repr=False)  # directed edges sorted by (dst, src)
    _rev_starts: IntArray = field(repr=False)  # first position of each (dst, src) pair
    _pair_of_edge: IntArray = field(repr=False)  # per directed edge, its (dst, src) pair
    _pair_edge: IntArray = field(repr=False)  # per pair, its first (lowest-numbered) edge
    _parallel: IntArray = field(repr=False)  # edges that share their pair with another, ascending
    _tree: shapely.STRtree | None = field(default=None, repr=False)
    _graph: nx.MultiDiGraph | None = field(default=None, repr=False)
    _plain_pairs: tuple[FloatArray, IntArray] | None = field(default=None, repr=False)

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The networkx model: nodes with ``x``/``y`` (lon/lat), one edge per directed edge,
        keyed by its feature index, with ``id``, ``length``, ``time``, ``capacity``, ``width``,
        ``door`` and ``stairs``. Built on first use (about 20 us an edge); the routing itself
        runs on the arrays."""
        if self._graph is None:
            graph = nx.MultiDiGraph(mode=self.mode, crs=self.crs.metric.to_string())
            graph.add_nodes_from(
                (i, {"x": float(x), "y": float(y)}) for i, (x, y) in enumerate(self.node_lonlat)
            )
            graph.add_edges_from(
                (
                    int(s),
                    int(d),
                    int(f),  # the feature as key: unique, and networkx need not search for one
                    {
                        "id": self.feature_ids[f],
                        "length": float(length),
                        "time": float(time),
                        "capacity": float(capacity),
                        "width": None
                        if np.isnan(self.feature_width_m[f])
                        else float(self.feature_width_m[f]),
                        "door": bool(self.feature_door[f]),
                        "stairs": bool(self.feature_stairs[f]),
                    },
                )
                for s, d, f, length, time, capacity in zip(
                    self.edge_src,
                    self.edge_dst,
                    self.edge_feature,
                    self.edge_length_m,
                    self.edge_time_s,
                    self.edge_capacity_pm,
                    strict=True,
                )
            )
            self._graph = graph
        return self._graph

    @property
    def node_count(self) -> int:
        return int(self.node_lonlat.shape[0])

    @property
    def edge_count(self) -> int:
        return int(self.edge_src.shape[0])

    @property
    def tree(self) -> shapely.STRtree:
        """STRtree over the features' metric lines, for snapping."""
        if self._tree is None:
            self._tree = shapely.STRtree(self.feature_lines)
        return self._tree

    def reversed_matrix(
        self,
        costs: FloatArray,
        *,
        extra_sources: Sequence[tuple[int, float]] | None = None,
        changed: IntArray | None = None,
        within: IntArray | None = None,
    ) -> tuple[sp.csr_matrix, IntArray]:
        """The reversed graph weighted by ``costs`` (per directed edge; inf = impassable).

        Parallel edges keep their cheapest. With ``extra_sources``, one more node (index
        ``node_count``) is appended with edges to the given nodes at the given weights: the
        super-source of a multi-source search. ``changed``, when given, says that ``costs``
        differ from the plain travel times only at those edges (a hazard touches a few): only
        their pairs are recomputed. ``within``, when given, lists the only directed edges the
        matrix holds (a search confined to a zone): its cost then grows with those edges, not
        with the graph. Returns the matrix and, per stored pair, the directed edge chosen.
        """
        indptr, indices = self._rev_indptr, self._rev_indices
        if within is not None:
            pairs, data, best = self._pairs_within(costs, within)
            indices = self._rev_indices[pairs]
            rows = np.bincount(self.edge_dst[best], minlength=self.node_count)
            indptr = np.concatenate([[0], np.cumsum(rows)]).astype(np.int32)
        elif costs is self.edge_time_s or changed is not None:
            if self._plain_pairs is None:  # plain travel times: computed once per graph
                data, best = self._pair_weights(self.edge_time_s)
                data.flags.writeable = False
                best.flags.writeable = False
                self._plain_pairs = (data, best)
            data, best = self._plain_pairs
            if changed is not None and len(changed):
                data = data.copy()
                # A pair of one edge takes that edge's cost; pairs of parallel edges are redone.
                data[self._pair_of_edge[changed]] = costs[changed]
                shared = changed[np.isin(changed, self._parallel)]
                if len(shared):
                    best = best.copy()
                    self._repair_pairs(data, best, costs, shared)
        else:
            data, best = self._pair_weights(costs)
        size = self.node_count
        if extra_sources is not None:
            targets = np.array([t for t, _ in extra_sources], dtype=np.int32).reshape(-1)
            weights = np.array([w for _, w in extra_sources], dtype=np.float64).reshape(-1)
            order = np.argsort(targets, kind="stable")
            indptr = np.append(indptr, indptr[-1] + len(targets)).astype(np.int32)
            indices = np.concatenate([indices, targets[order]])
            data = np.concatenate([data, weights[order]])
            size += 1
        matrix = sp.csr_matrix((data, indices, indptr), shape=(size, size))
        return matrix, best

    def _pair_weights(self, costs: FloatArray) -> tuple[FloatArray, IntArray]:
        """Per (head, tail) pair, the cheapest parallel edge's cost, and that edge."""
        data = costs[self._pair_edge]
        best = self._pair_edge.copy()
        if len(self._parallel):
            self._repair_pairs(data, best, costs, self._parallel)
        return data, best

    def _repair_pairs(
        self, data: FloatArray, best: IntArray, costs: FloatArray, changed: IntArray
    ) -> None:
        """Recompute, in place, the pair weights and chosen edges of the pairs of ``changed``.

        Of equally cheap parallel edges, the lowest-numbered is chosen."""
        pairs = np.unique(self._pair_of_edge[changed])
        counts = np.diff(np.append(self._rev_starts, self._rev_order.shape[0]))[pairs]
        first = self._rev_starts[pairs]
        offsets = np.repeat(first - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        positions = offsets + np.arange(int(counts.sum()))
        owner = np.repeat(pairs, counts)
        edges = self._rev_order[positions]
        data[pairs] = np.inf
        np.minimum.at(data, owner, costs[edges])
        chosen = np.full(data.shape[0], self._rev_order.shape[0], dtype=np.int64)
        cheapest = costs[edges] == data[owner]
        np.minimum.at(chosen, owner[cheapest], positions[cheapest])
        best[pairs] = self._rev_order[chosen[pairs]]

    def _pairs_within(
        self, costs: FloatArray, edges: IntArray
    ) -> tuple[IntArray, FloatArray, IntArray]:
        """The pairs of ``edges`` (ascending), each with its cheapest edge among ``edges`` only
        (the lowest-numbered of equally cheap ones): pair, cost and edge."""
        edges = np.asarray(edges, dtype=np.int64)
        pair = self._pair_of_edge[edges]
        order = np.lexsort((edges, costs[edges], pair))
        pair = pair[order]
        first = np.flatnonzero(np.diff(pair, prepend=-1))
        chosen = edges[order[first]]
        return pair[first], costs[chosen], chosen

    def components(self) -> list[Component]:
        """Parts of the network not connected (ignoring direction) to the largest part."""
        matrix, _ = self.reversed_matrix(self.edge_time_s)
        count, labels = connected_components(matrix, directed=True, connection="weak")
        parts = [np.flatnonzero(labels == c) for c in range(count)]
        parts.sort(key=len, reverse=True)
        out = []
        for part in parts[1:]:
            node = next(iter(part))
            lon, lat = self.node_lonlat[node]
            out.append(Component(len(part), float(lon), float(lat)))
        return out

    def edge_line(self, edge: int) -> shapely.LineString:
        """The WGS84 line of a directed edge, oriented from its source to its destination."""
        line: shapely.LineString = self.crs.to_wgs84(self.feature_lines[self.edge_feature[edge]])
        return line if self.edge_forward[edge] else line.reverse()


@dataclass(frozen=True, eq=False)
class NetworkColumns:
    """Network features as columns, in the features' order: what the graphs of both modes are
    compiled from. The per-feature work (reading properties, projecting lines) is done here
    once; a few changed features are patched in with :meth:`take` and :func:`concat_columns`
    without redoing it for the others."""

    crs: SiteCRS  # the lines' metric CRS
    ids: npt.NDArray[np.object_]
    lonlat: FloatArray  # (n, 2): the features' coordinates, one feature after the other
    offsets: IntArray  # (f + 1,): feature i's coordinates are lonlat[offsets[i]:offsets[i + 1]]
    lines: npt.NDArray[np.object_]  # metric LineStrings
    length_m: FloatArray
    foot: BoolArray
    vehicle: BoolArray
    oneway: BoolArray
    stairs: BoolArray
    door: BoolArray
    width_m: FloatArray  # NaN where unknown
    capacity_pm: FloatArray  # inf where unknown

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: IntArray) -> NetworkColumns:
        """The features at ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        counts = np.diff(self.offsets)[rows]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        shift = np.repeat(self.offsets[rows] - offsets[:-1], counts)
        return NetworkColumns(
            crs=self.crs,
            lonlat=self.lonlat[shift + np.arange(offsets[-1])].reshape(-1, 2),
            offsets=offsets,
            **{name: getattr(self, name)[rows] for name in _FEATURE_COLUMNS},
        )


_FEATURE_COLUMNS = (
    "ids",
    "lines",
    "length_m",
    "foot",
    "vehicle",
    "oneway",
    "stairs",
    "door",
    "width_m",
    "capacity_pm",
)


def concat_columns(parts: Sequence[NetworkColumns]) -> NetworkColumns:
    """The features of ``parts`` (read in one CRS), one part after the other."""
    sizes = np.array([len(p.lonlat) for p in parts], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    offsets = [p.offsets[:-1] + s for p, s in zip(parts, starts, strict=True)]
    return NetworkColumns(
        crs=parts[0].crs,
        lonlat=np.concatenate([p.lonlat for p in parts]).reshape(-1, 2),
        offsets=np.concatenate([*offsets, [int(sizes.sum())]]).astype(np.int64),
        **{name: np.concatenate([getattr(p, name) for p in parts]) for name in _FEATURE_COLUMNS},
    )


def network_columns(features: Sequence[Mapping[str, Any]], *, crs: SiteCRS) -> NetworkColumns:
    """Read network features (GeoJSON-like mappings in WGS84; a geometry may also be a shapely
    LineString) into columns.

    Each feature needs ``id``, a LineString ``geometry`` and the network layer's properties
    (``foot``, ``vehicle``, ``oneway``, ``width_m``, ``capacity``, ``door``, ``stairs``).
    """
    props = [f.get("properties") or {} for f in features]
    lonlat, offsets = _coordinates(features)
    lines = _to_metric(crs, lonlat, offsets)
    return NetworkColumns(
        crs=crs,
        ids=np.array([str(f.get("id")) for f in features], dtype=object).reshape(-1),
        lonlat=lonlat,
        offsets=offsets,
        lines=lines,
        length_m=np.asarray(shapely.length(lines), dtype=np.float64).reshape(-1),
        foot=_flags(props, "foot", default=True),
        vehicle=_flags(props, "vehicle", default=False),
        oneway=_flags(props, "oneway", default=False),
        stairs=_flags(props, "stairs", default=False),
        door=_flags(props, "door", default=False),
        width_m=np.array(
            [float(p["width_m"]) if p.get("width_m") else np.nan for p in props], dtype=np.float64
        ),
        capacity_pm=np.array(
            [float(p["capacity"]) if p.get("capacity") else np.inf for p in props],
            dtype=np.float64,
        ),
    )


def _flags(props: Sequence[Mapping[str, Any]], name: str, *, default: bool) -> BoolArray:
    return np.array([bool(p.get(name, default)) for p in props], dtype=bool)


def graph_from_features(
    features: Sequence[Mapping[str, Any]],
    *,
    crs: SiteCRS,
    mode: Mode,
    speeds: TravelSpeeds | None = None,
) -> NetworkGraph:
    """Build one mode's graph from network features (GeoJSON-like mappings in WGS84; see
    :func:`network_columns`). Features the mode may not use are left out unread."""
    _check_mode(mode)
    allowed = [bool((f.get("properties") or {}).get(mode, mode == "foot")) for f in features]
    chosen = [f for f, keep in zip(features, allowed, strict=True) if keep]
    return graph_from_columns(network_columns(chosen, crs=crs), mode=mode, speeds=speeds)


def graph_from_columns(
    columns: NetworkColumns,
    *,
    mode: Mode,
    speeds: TravelSpeeds | None = None,
    reuse: NetworkGraph | None = None,
) -> NetworkGraph:
    """Build one mode's graph from the network's columns: the features the mode may use, in
    their order, become the graph's features.

    ``reuse`` is an earlier graph whose spatial index (:attr:`NetworkGraph.tree`) the new one
    takes if it has the same features with the same lines (after an edit of attributes only).
    """
    _check_mode(mode)
    speeds = speeds or TravelSpeeds()
    rows = np.flatnonzero(columns.foot if mode == "foot" else columns.vehicle)
    if not len(rows):
        raise InvalidInput(
            f"the network has no edge for mode {mode!r}",
            errors=[FieldError("network", f"no {mode} edges")],
        )
    f_count = len(rows)
    starts = columns.lonlat[columns.offsets[rows]]
    ends = columns.lonlat[columns.offsets[rows + 1] - 1]
    ends_all = np.asarray(np.round(np.vstack([starts, ends]), NODE_PRECISION), dtype=np.float64)
    nodes, inverse = _unique_rows(ends_all)
    u, v = inverse[:f_count], inverse[f_count:]

    metric = columns.lines[rows]
    length = columns.length_m[rows]
    stairs = columns.stairs[rows]
    if mode == "foot":
        time = length / (speeds.walk_mps * np.where(stairs, speeds.stairs_factor, 1.0))
        backward = np.ones(f_count, dtype=bool)
    else:
        time = length / speeds.drive_mps
        backward = ~columns.oneway[rows]
    capacity = columns.capacity_pm[rows]

    fwd_index = np.arange(f_count)
    back_features = fwd_index[backward]
    edge_feature = np.concatenate([fwd_index, back_features])
    edge_forward = np.concatenate([np.ones(f_count, bool), np.zeros(len(back_features), bool)])
    edge_src = np.concatenate([u, v[backward]])
    edge_dst = np.concatenate([v, u[backward]])
    feature_edges = np.full((f_count, 2), -1, dtype=np.int64)
    feature_edges[:, 0] = fwd_index
    feature_edges[back_features, 1] = f_count + np.arange(len(back_features))

    width = columns.width_m[rows]
    door = columns.door[rows]
    edge_length = length[edge_feature]
    edge_time = time[edge_feature]
    edge_capacity = capacity[edge_feature]

    n = len(nodes)
    keys = edge_dst * n + edge_src
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    first = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
    pair_starts = np.flatnonzero(first)
    pair_keys = sorted_keys[pair_starts]
    pair_sizes = np.diff(np.append(pair_starts, len(keys)))
    row_counts = np.bincount(pair_keys // n, minlength=n)
    indptr = np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int32)
    graph = NetworkGraph(
        mode=mode,
        feature_width_m=width,
        feature_door=door,
        feature_stairs=stairs,
        crs=columns.crs,
        node_lonlat=nodes.astype(np.float64),
        edge_src=edge_src,
        edge_dst=edge_dst,
        edge_feature=edge_feature,
        edge_forward=edge_forward,
        edge_length_m=edge_length,
        edge_time_s=edge_time,
        edge_capacity_pm=edge_capacity,
        feature_ids=columns.ids[rows],
        feature_lines=metric,
        feature_edges=feature_edges,
        _rev_indptr=indptr,
        _rev_indices=(pair_keys % n).astype(np.int32),
        _rev_order=order,
        _rev_starts=pair_starts,
        _pair_of_edge=_pairs_of_edges(order, first),
        _pair_edge=order[pair_starts],
        _parallel=np.sort(order[np.repeat(pair_sizes > 1, pair_sizes)]),
    )
    # Compiled once, shared by every search: read-only, so no caller can corrupt them.
    for array in (
        graph.node_lonlat,
        graph.edge_src,
        graph.edge_dst,
        graph.edge_feature,
        graph.edge_forward,
        graph.edge_length_m,
        graph.edge_time_s,
        graph.edge_capacity_pm,
        graph.feature_edges,
        graph.feature_width_m,
        graph.feature_door,
        graph.feature_stairs,
    ):
        array.flags.writeable = False
    if reuse is not None and reuse._tree is not None and _same_lines(reuse, graph):
        graph._tree = reuse._tree
    return graph


def _same_lines(a: NetworkGraph, b: NetworkGraph) -> bool:
    """Whether two graphs have the same features with identical lines, in the same order."""
    return (
        (a.crs is b.crs or a.crs == b.crs)
        and a.feature_ids.shape == b.feature_ids.shape
        and bool(np.all(a.feature_ids == b.feature_ids))
        and bool(np.all(shapely.equals_identical(a.feature_lines, b.feature_lines)))
    )


def _check_mode(mode: str) -> None:
    if mode not in ("foot", "vehicle"):
        raise InvalidInput(f"unknown mode {mode!r}", errors=[FieldError("mode", "foot or vehicle")])


def _unique_rows(points: FloatArray) -> tuple[FloatArray, IntArray]:
    """The distinct rows of an ``(n, 2)`` array in ascending (x, y) order, and per row the index
    of its distinct row: what ``np.unique(points, axis=0, return_inverse=True)`` gives, without
    the structured-array sort that makes that several times slower."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    ordered = points[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(len(points), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def _pairs_of_edges(order: IntArray, first: BoolArray) -> IntArray:
    """Per directed edge, the index of its (head, tail) pair in the reversed CSR."""
    pair_of_edge = np.empty(order.shape[0], dtype=np.int64)
    pair_of_edge[order] = np.cumsum(first) - 1
    return pair_of_edge


def _coordinates(features: Sequence[Mapping[str, Any]]) -> tuple[FloatArray, IntArray]:
    """All the features' line coordinates, and the offsets of each feature's first one."""
    geometries = [f.get("geometry") for f in features]
    if all(isinstance(g, shapely.LineString) and not g.is_empty for g in geometries):
        # Shapely lines (read from the database): all at once.
        lines = np.empty(len(geometries), dtype=object)
        lines[:] = geometries
        counts: Any = shapely.get_num_coordinates(lines)
        xy = shapely.get_coordinates(lines)
    else:
        coords: list[Any] = []
        counts = []
        for feature, geometry in zip(features, geometries, strict=True):
            line_coords: Any = []
            if isinstance(geometry, shapely.LineString):
                line_coords = shapely.get_coordinates(geometry).tolist()
            elif isinstance(geometry, Mapping) and geometry.get("type") == "LineString":
                line_coords = geometry.get("coordinates") or []
            if len(line_coords) < 2:
                _line(feature)  # raises with the reason
            coords.extend(line_coords)
            counts.append(len(line_coords))
        xy = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)[:, :2]
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2), offsets


def _line(feature: Mapping[str, Any]) -> shapely.LineString:
    geometry = feature.get("geometry")
    line = geometry if isinstance(geometry, shapely.LineString) else shape(geometry)  # type: ignore[arg-type]
    if not isinstance(line, shapely.LineString) or line.is_empty:
        raise InvalidInput(
            f"network feature {feature.get('id')!r} is not a LineString",
            errors=[FieldError("geometry", "a network edge is a LineString")],
        )
    return line


def _to_metric(crs: SiteCRS, xy: FloatArray, offsets: IntArray) -> npt.NDArray[np.object_]:
    lines = np.empty(len(offsets) - 1, dtype=object)
    if len(lines):
        index = np.repeat(np.arange(len(lines)), np.diff(offsets))
        lines[:] = shapely.linestrings(crs.transform_xy(xy), indices=index)
    return lines


def graph_from_osm(path: Path, *, mode: Mode, speeds: TravelSpeeds | None = None) -> NetworkGraph:
    """A graph straight from an OpenStreetMap XML file, filtered as the importer filters it
    (:mod:`gis.osm`: only the ways people or vehicles travel)."""
    from gis.osm import read_osm_edges

    features, osm = read_osm_edges(path)
    xs = [d["x"] for _, d in osm.nodes(data=True)]
    ys = [d["y"] for _, d in osm.nodes(data=True)]
    crs = SiteCRS.for_site(float(np.mean(xs)), float(np.mean(ys)))
    return graph_from_features(features, crs=crs, mode=mode, speeds=speeds)
