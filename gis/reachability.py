"""Whether every door and muster point can be reached on the foot network.

The network is seen as routing sees it (:mod:`routing.graph`, :mod:`routing.snapping`): edges
open to people on foot, joined where their ends meet (to 1e-7 degrees), and a muster point
attached to the foot edge nearest its zone's representative point, within 50 m. A **door**
(an edge with ``door``) is reachable when its part of the network holds a muster point; a
**muster point** when it attaches to a part that holds a door or is the largest part.

Parts are scipy's connected components over the edges' end nodes. Reading a network of 100,000
edges takes about a second, so a read is kept per site while the network's revision token holds
(:class:`FootNetworkCache`); an edit derives the network after it from the one before without
reading it again (:meth:`FootNetwork.changed`), and the cache takes that one over when the edit
commits.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import connected_components
from shapely.geometry.base import BaseGeometry
from sqlalchemy import LargeBinary, event, func, select, type_coerce
from sqlalchemy.orm import Session

from gis.crs import SiteCRS
from gis.spatial_index import revision_token
from gis.storage.tables import NetworkEdgeRow, ZoneRow
from routing.graph import NODE_PRECISION
from routing.snapping import DEFAULT_MAX_SNAP_M

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: How far a muster point may lie from the foot network and still attach (as routing has it).
SNAP_M = DEFAULT_MAX_SNAP_M
#: Edge ids named per part cut off; the count says how many there are in all.
PART_IDS_SHOWN = 8
#: The site's metric CRS, asked for only when a muster point is attached anew (working it out
#: can take a good part of a second).
CRSOf = Callable[[], SiteCRS]
#: Edits a derived network carries before it is rebuilt without its dead rows.
COMPACT_AFTER = 2000
#: Degrees of latitude per metre, a little generous (a search box, refined in metres).
_DEG_PER_M = 1.01 / 110_574.0


@dataclass(frozen=True)
class Edge:
    """One network edge as reachability needs it."""

    id: str
    name: str | None
    foot: bool
    door: bool
    line: shapely.LineString

    @classmethod
    def of(cls, fid: str, geometry: BaseGeometry | None, properties: dict[str, Any]) -> Edge:
        assert isinstance(geometry, shapely.LineString)
        return cls(
            fid,
            properties.get("name"),
            bool(properties.get("foot", True)),
            bool(properties.get("door", False)),
            geometry,
        )


@dataclass(frozen=True)
class Muster:
    """A muster point: its zone's id, name, and the point it joins the network from."""

    id: str
    name: str | None
    point: tuple[float, float]

    @classmethod
    def of(cls, fid: str, name: str | None, area: BaseGeometry) -> Muster:
        x, y = area.representative_point().coords[0]
        return cls(fid, name, (float(x), float(y)))


@dataclass(frozen=True)
class CutOff:
    """A door or muster point that cannot be reached, and its part of the network."""

    layer: Literal["network", "zones"]
    id: str
    name: str | None
    text: str
    parts: tuple[str, ...] = ()
    part_edges: int = 0


class FootNetwork:
    """The network's edges as arrays. Rows are never renumbered: an edit marks the old row
    dead and appends the new one, so what is kept about rows (the spatial index, muster
    attachments) stays valid for the rows that did not change."""

    def __init__(
        self,
        *,
        ids: npt.NDArray[np.object_],
        names: npt.NDArray[np.object_],
        foot: BoolArray,
        door: BoolArray,
        live: BoolArray,
        lines: npt.NDArray[np.object_],
        bounds: FloatArray,
        nodes: FloatArray,
        u: IntArray,
        v: IntArray,
        rows: dict[str, int],
        moved: dict[str, int | None] | None = None,
        tree: tuple[shapely.STRtree, int] | None = None,
        attached: dict[tuple[float, float], int] | None = None,
    ) -> None:
        self.ids, self.names, self.foot, self.door, self.live = ids, names, foot, door, live
        self.lines, self.bounds, self.nodes, self.u, self.v = lines, bounds, nodes, u, v
        # Rows by id: those read (shared by every network derived from them), and the edits
        # since (None: deleted).
        self._rows, self._moved = rows, moved or {}
        #: An index over the first rows (those after it are few, and searched one by one).
        self._tree = tree
        #: Muster point -> the row it attaches to (-1: none), as found so far.
        self._attached: dict[tuple[float, float], int] = attached or {}
        #: The last :func:`unreachable` answer, with the muster points it was for.
        self._cut: tuple[tuple[Muster, ...], dict[str, Cut]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_edges(cls, edges: Sequence[Edge]) -> FootNetwork:
        return cls._build(
            [e.id for e in edges],
            [e.name for e in edges],
            [e.foot for e in edges],
            [e.door for e in edges],
            _objects([e.line for e in edges]),
        )

    @classmethod
    def _build(
        cls,
        ids: Sequence[str],
        names: Sequence[str | None],
        foot: Sequence[bool],
        door: Sequence[bool],
        lines: npt.NDArray[np.object_],
    ) -> FootNetwork:
        n = len(ids)
        start, end = _ends(lines)
        nodes, inverse = _unique_rows(np.vstack([start, end]))
        return cls(
            ids=_objects(ids),
            names=_objects(names),
            foot=np.asarray(foot, dtype=bool).reshape(n),
            door=np.asarray(door, dtype=bool).reshape(n),
            live=np.ones(n, dtype=bool),
            lines=lines,
            bounds=np.asarray(shapely.bounds(lines), dtype=np.float64).reshape(n, 4),
            nodes=nodes,
            u=inverse[:n],
            v=inverse[n:],
            rows=dict(zip(ids, range(n), strict=True)),
        )

    def __len__(self) -> int:
        return int(self.live.sum())

    def row(self, fid: str) -> int | None:
        """The live row of edge ``fid``, or None."""
        return self._moved[fid] if fid in self._moved else self._rows.get(fid)

    def changed(self, fid: str, edge: Edge | None) -> FootNetwork:
        """The network after edge ``fid`` became ``edge`` (None: was deleted)."""
        if len(self._moved) > COMPACT_AFTER:
            return self._compacted().changed(fid, edge)
        old = self.row(fid)
        live = self.live.copy()
        if old is not None:
            live[old] = False
        moved: dict[str, int | None] = {**self._moved, fid: None}
        touched = [self.lines[old]] if old is not None else []
        if edge is None:
            ids, names, foot, door = self.ids, self.names, self.foot, self.door
            lines, bounds, nodes, u, v = self.lines, self.bounds, self.nodes, self.u, self.v
        else:
            touched.append(edge.line)
            row = len(self.ids)
            moved[fid] = row
            ids = np.append(self.ids, _objects([edge.id]))
            names = np.append(self.names, _objects([edge.name]))
            foot = np.append(self.foot, edge.foot)
            door = np.append(self.door, edge.door)
            live = np.append(live, True)
            lines = np.append(self.lines, _objects([edge.line]))
            bounds = np.vstack([self.bounds, np.asarray(edge.line.bounds).reshape(1, 4)])
            start, end = _ends(lines[row:])
            nodes, (a, b) = _add_nodes(self.nodes, [start[0], end[0]])
            u, v = np.append(self.u, a), np.append(self.v, b)
        kept = {}
        if touched:
            # Attachments away from the edit stand; those within reach of it are found again.
            x0, y0, x1, y1 = shapely.total_bounds(touched)
            dy = SNAP_M * _DEG_PER_M
            dx = dy / max(math.cos(math.radians(max(abs(y0), abs(y1)))), 1e-6)
            kept = {
                (x, y): row
                for (x, y), row in self._attached.items()
                if row != old and not (x0 - dx <= x <= x1 + dx and y0 - dy <= y <= y1 + dy)
            }
        return FootNetwork(
            ids=ids,
            names=names,
            foot=foot,
            door=door,
            live=live,
            lines=lines,
            bounds=bounds,
            nodes=nodes,
            u=u,
            v=v,
            rows=self._rows,
            moved=moved,
            tree=self._tree,
            attached=kept,
        )

    def _compacted(self) -> FootNetwork:
        """The same network without its dead rows (after many edits)."""
        keep = np.flatnonzero(self.live)
        return FootNetwork._build(
            list(self.ids[keep]),
            list(self.names[keep]),
            list(self.foot[keep]),
            list(self.door[keep]),
            self.lines[keep],
        )

    @cached_property
    def parts(self) -> tuple[IntArray, IntArray, int]:
        """Per row, its part (-1 for an edge closed to people on foot, or gone); per part, its
        number of nodes; and the largest part (-1 when there is none)."""
        walk = np.flatnonzero(self.live & self.foot)
        label = np.full(len(self.ids), -1, dtype=np.int64)
        if not len(walk):
            return label, np.zeros(0, dtype=np.int64), -1
        # Over every node: those of no foot edge are parts of one node, which matter nowhere.
        size = len(self.nodes)
        a, b = self.u[walk], self.v[walk]
        graph = sp.coo_matrix((np.ones(len(walk)), (a, b)), shape=(size, size))
        _, node_label = connected_components(graph, directed=False)
        label[walk] = node_label[a]
        counts = np.bincount(node_label)
        return label, counts, int(np.argmax(counts))

    def attach(self, musters: Sequence[Muster], crs: CRSOf) -> IntArray:
        """Per muster point, the live foot edge it attaches to (the nearest within
        ``SNAP_M``), or -1."""
        out = np.full(len(musters), -1, dtype=np.int64)
        for m, muster in enumerate(musters):
            with self._lock:
                row = self._attached.get(muster.point)
            if row is None:
                row = self._nearest(muster.point, crs)
                with self._lock:
                    self._attached[muster.point] = row
            out[m] = row
        return out

    def _nearest(self, point: tuple[float, float], crs_of: CRSOf) -> int:
        x, y = point
        dy = SNAP_M * _DEG_PER_M
        dx = dy / max(math.cos(math.radians(y)), 1e-6)
        with self._lock:
            if self._tree is None:
                self._tree = (shapely.STRtree(self.lines), len(self.lines))
            tree, indexed = self._tree
        found = tree.query(shapely.box(x - dx, y - dy, x + dx, y + dy))
        b = self.bounds[indexed:]
        later = indexed + np.flatnonzero(
            (b[:, 0] <= x + dx) & (b[:, 2] >= x - dx) & (b[:, 1] <= y + dy) & (b[:, 3] >= y - dy)
        )
        near = np.concatenate([np.asarray(found, dtype=np.int64), later])
        near = near[self.live[near] & self.foot[near]]
        if not len(near):
            return -1
        crs = crs_of()
        metric = [crs.to_metric(line) for line in self.lines[near]]
        distance = shapely.distance(metric, crs.to_metric(shapely.Point(x, y)))
        best = int(np.argmin(distance))
        return int(near[best]) if distance[best] <= SNAP_M else -1

    def part_members(self, labels: Iterable[int]) -> dict[int, IntArray]:
        """The rows of each of ``labels``' parts, in the order of their edges' ids."""
        label = self.parts[0]
        wanted = np.array(sorted(set(labels)), dtype=np.int64)
        rows = np.flatnonzero(np.isin(label, wanted))
        rows = rows[np.lexsort((self.ids[rows].astype(str), label[rows]))]
        split = np.flatnonzero(np.diff(label[rows])) + 1
        return {int(label[group[0]]): group for group in np.split(rows, split) if len(group)}


#: A door or muster point cut off: layer, id, name, why (closed, far, door, muster) and its
#: part of the network (-1: none).
Cut = tuple[str, str, str | None, str, int]


def unreachable(network: FootNetwork, musters: Sequence[Muster], crs: CRSOf) -> dict[str, Cut]:
    """Every door and muster point that cannot be reached, by ``layer/id``. Doors are not
    judged on a site without muster points: there is nothing for them to reach. Kept on the
    network for the last muster points asked (the next edit starts from it)."""
    key = tuple(musters)
    with network._lock:
        if network._cut is not None and network._cut[0] == key:
            return network._cut[1]
    label, _, main = network.parts
    attach = network.attach(musters, crs)
    muster_parts = np.array(sorted({int(label[row]) for row in attach if row >= 0}))
    doors = np.flatnonzero(network.live & network.door)
    found: list[Cut] = []
    if musters:
        closed = doors[~network.foot[doors]]
        apart = doors[network.foot[doors] & ~np.isin(label[doors], muster_parts)]
        found += [("network", str(network.ids[r]), network.names[r], "closed", -1) for r in closed]
        found += [
            ("network", str(network.ids[r]), network.names[r], "door", int(label[r])) for r in apart
        ]
    door_parts = set(label[doors].tolist())
    for muster, row in zip(musters, attach, strict=True):
        if row < 0:
            found.append(("zones", muster.id, muster.name, "far", -1))
        elif int(label[row]) != main and int(label[row]) not in door_parts:
            found.append(("zones", muster.id, muster.name, "muster", int(label[row])))
    out = {f"{c[0]}/{c[1]}": c for c in sorted(found, key=lambda c: (c[0], c[1]))}
    with network._lock:
        network._cut = (key, out)
    return out


def cut_off(network: FootNetwork, cuts: Sequence[Cut]) -> list[CutOff]:
    """``cuts`` described, each with its part of the network named."""
    members = network.part_members(c[4] for c in cuts if c[4] >= 0)
    out = []
    for layer, fid, name, why, part in cuts:
        rows = members.get(part, np.zeros(0, dtype=np.int64))
        shown = tuple(str(i) for i in network.ids[rows[:PART_IDS_SHOWN]])
        text = _describe(network, layer, fid, name, why, rows)
        out.append(CutOff(layer, fid, name, text, shown, len(rows)))  # type: ignore[arg-type]
    return out


def _describe(
    network: FootNetwork, layer: str, fid: str, name: str | None, why: str, rows: IntArray
) -> str:
    what = f"{'door' if layer == 'network' else 'muster point'} {fid}" + (
        f" ({name})" if name else ""
    )
    if why == "closed":
        return f"{what} is closed to people on foot (foot is false)"
    if why == "far":
        return f"{what} is more than {SNAP_M:.0f} m from the foot network"
    ids = [str(i) for i in network.ids[rows[:PART_IDS_SHOWN]]]
    more = f" and {len(rows) - len(ids)} more" if len(rows) > len(ids) else ""
    x, y = network.nodes[network.u[rows[0]]] if len(rows) else (math.nan, math.nan)
    part = (
        f"its part of the foot network ({len(rows)} edge{'s' if len(rows) != 1 else ''}: "
        f"{', '.join(ids)}{more}; near {x:.6f}, {y:.6f})"
    )
    if why == "door":
        return f"{what} is cut off from every muster point: {part} holds none"
    return f"{what} is cut off: {part} holds no door and is apart from the main network"


def read_network(session: Session, site_id: str) -> FootNetwork:
    """The site's network as the session sees it (its own writes included)."""
    table = NetworkEdgeRow.__table__
    postgis = session.get_bind().dialect.name == "postgresql"
    c = table.c
    geom = func.ST_AsBinary(c.geom) if postgis else type_coerce(c.geom, LargeBinary)
    stmt = select(c.id, c.name, c.foot, c.door, geom).where(c.site_id == site_id)
    session.flush()
    rows = session.connection().execute(stmt).all()  # plain rows: no ORM work per row
    blobs = np.empty(len(rows), dtype=object)
    blobs[:] = [bytes(r[4]) for r in rows]
    lines = np.asarray(shapely.from_wkb(blobs), dtype=object).reshape(len(rows))
    return FootNetwork._build(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [bool(r[2]) for r in rows],
        [bool(r[3]) for r in rows],
        lines,
    )


def read_musters(session: Session, site_id: str) -> list[Muster]:
    stmt = select(ZoneRow.id, ZoneRow.name, ZoneRow.geom).where(
        ZoneRow.site_id == site_id, ZoneRow.kind == "muster_point"
    )
    return [Muster.of(fid, name, geom) for fid, name, geom in session.execute(stmt)]


class FootNetworkCache:
    """One :class:`FootNetwork` per site, kept while the network's revision token holds."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, FootNetwork]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, site_id: str) -> FootNetwork:
        token = revision_token(session, site_id, "network")
        kept = self._kept(site_id, token)
        if kept is not None:
            return kept
        network = read_network(session, site_id)
        if token is not None:
            with self._lock:
                self._entries[site_id] = (token, network)
        return network

    def peek(self, session: Session, site_id: str) -> FootNetwork | None:
        """The site's network if one is kept for its current token (nothing is read)."""
        return self._kept(site_id, revision_token(session, site_id, "network"))

    def _kept(self, site_id: str, token: str | None) -> FootNetwork | None:
        with self._lock:
            entry = self._entries.get(site_id)
        if token is not None and entry is not None and entry[0] == token:
            return entry[1]
        return None

    def keep_on_commit(self, session: Session, site_id: str, network: FootNetwork) -> None:
        """Take ``network`` as the site's once ``session`` commits the edit it comes from:
        its revision token is read as the commit begins (the edit wrote it)."""

        def before_commit(committing: Session) -> None:
            token = revision_token(committing, site_id, "network")
            if token is not None:
                pending.append(token)

        def after_commit(_: Session) -> None:
            if pending:
                with self._lock:
                    self._entries[site_id] = (pending[-1], network)

        pending: list[str] = []
        event.listen(session, "before_commit", before_commit, once=True)
        event.listen(session, "after_commit", after_commit, once=True)


def _objects(values: Sequence[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _ends(lines: npt.NDArray[np.object_]) -> tuple[FloatArray, FloatArray]:
    """Each line's first and last position, rounded as routing rounds nodes."""
    if not len(lines):
        empty = np.zeros((0, 2), dtype=np.float64)
        return empty, empty
    counts = np.asarray(shapely.get_num_coordinates(lines), dtype=np.int64)
    xy = np.asarray(shapely.get_coordinates(lines), dtype=np.float64)
    last = np.cumsum(counts) - 1
    first = last - counts + 1
    return np.round(xy[first], NODE_PRECISION), np.round(xy[last], NODE_PRECISION)


def _unique_rows(points: FloatArray) -> tuple[FloatArray, IntArray]:
    """The distinct rows of an ``(n, 2)`` array, and per row the index of its distinct row."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    ordered = points[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(len(points), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new].reshape(-1, 2), inverse


def _add_nodes(nodes: FloatArray, points: Sequence[FloatArray]) -> tuple[FloatArray, list[int]]:
    """``nodes`` with ``points`` added where they are new, and each point's node."""
    out: list[int] = []
    for p in points:
        hit = np.flatnonzero((nodes[:, 0] == p[0]) & (nodes[:, 1] == p[1]))
        if len(hit):
            out.append(int(hit[0]))
        else:
            nodes = np.vstack([nodes, np.asarray(p, dtype=np.float64).reshape(1, 2)])
            out.append(len(nodes) - 1)
    return nodes, out
