"""Hazard-aware edge costs, and where the zones cut the network and the muster areas.

Threat zones come in three levels of concern, as ALOHA draws them: level 3 is the innermost
(most severe, e.g. AEGL-3), level 1 the outermost. Edges inside the innermost zone are impassable
(except to leave it: see :mod:`routing.evacuation`); edges in outer zones cost more by
configurable factors; closed edges (a closed road or door) are impassable. An edge that only
reaches into the innermost zone stays usable up to the zone's boundary from either end
(:func:`zone_cuts`): the search never uses it, but someone standing on its clear part walks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from gis.crs import SiteCRS
from gis.errors import FieldError, InvalidInput
from gis.hazards.zones import ThreatZone
from routing.graph import BoolArray, FloatArray, NetworkGraph


@dataclass(frozen=True)
class HazardPolicy:
    """How threat zones weigh on travel: multipliers by level, and which level is closed."""

    factors: Mapping[int, float] = field(default_factory=lambda: {1: 2.0, 2: 5.0})
    impassable_level: int = 3

    def __post_init__(self) -> None:
        for level, factor in self.factors.items():
            if not (factor >= 1 and np.isfinite(factor)):
                raise InvalidInput(
                    f"cost factor for level {level} must be at least 1",
                    errors=[FieldError(f"factors.{level}", "a finite number >= 1")],
                )


def edge_levels(graph: NetworkGraph, zones: Sequence[ThreatZone]) -> npt.NDArray[np.int8]:
    """The highest threat level each directed edge touches (0 where none)."""
    feature_level = np.zeros(len(graph.feature_lines), dtype=np.int8)
    for zone in sorted(zones, key=lambda z: z.level):
        area = graph.crs.to_metric(zone.geometry)
        hits = graph.tree.query(area, predicate="intersects")
        feature_level[hits] = np.maximum(feature_level[hits], zone.level)
    return feature_level[graph.edge_feature]


def blocked_edges(graph: NetworkGraph, feature_ids: Iterable[str]) -> npt.NDArray[np.bool_]:
    """Directed edges whose network feature is closed."""
    closed = set(feature_ids)
    if not closed:
        return np.zeros(graph.edge_count, dtype=bool)
    feature_closed = np.array([fid in closed for fid in graph.feature_ids], dtype=bool)
    return feature_closed[graph.edge_feature]


def hazard_costs(
    graph: NetworkGraph,
    levels: npt.NDArray[np.int8],
    blocked: npt.NDArray[np.bool_],
    *,
    policy: HazardPolicy,
) -> FloatArray:
    """Travel-time costs with the hazard applied (a new array; the graph's stays as it is)."""
    costs = graph.edge_time_s.copy()
    for level, factor in policy.factors.items():
        costs[levels == level] *= factor
    costs[levels >= policy.impassable_level] = np.inf
    costs[blocked] = np.inf
    return costs


def inside(zones: Sequence[ThreatZone], lonlat: FloatArray, level: int) -> npt.NDArray[np.bool_]:
    """Which points lie inside (or on the edge of) a zone of at least ``level``."""
    # Tested on coordinates: making thousands of point objects costs more than the test.
    xy = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
    result: npt.NDArray[np.bool_] = np.zeros(xy.shape[0], dtype=np.bool_)
    for zone in zones:
        if zone.level >= level:
            hit = shapely.intersects_xy(zone.geometry, xy[:, 0], xy[:, 1])
            result = result | np.asarray(hit, dtype=np.bool_)
    return result


@dataclass(frozen=True)
class ZoneCuts:
    """Where the impassable zone cuts the network's features: per feature, the fraction of its
    line clear of the zone from its start (t = 0) and from its end (t = 1). Both are 1 for a
    feature the zone does not touch; both 0 for one that lies wholly inside it. A point at
    ``t <= clear_start`` walks to the start node without entering the zone, one at
    ``t >= 1 - clear_end`` to the end node (where that fraction is not 0)."""

    area: BaseGeometry | None  # the zone, in the metric CRS (None: no impassable zone)
    touched: BoolArray
    clear_start: FloatArray
    clear_end: FloatArray

    def to_start(self, feature: npt.NDArray[np.int64], t: FloatArray) -> BoolArray:
        """Whether the way from points (feature, t) to their feature's start is clear (an end
        in the zone, or on its boundary, never is)."""
        return np.asarray((t <= self.clear_start[feature]) & (self.clear_start[feature] > 0))

    def to_end(self, feature: npt.NDArray[np.int64], t: FloatArray) -> BoolArray:
        """Whether the way from points (feature, t) to their feature's end is clear."""
        return np.asarray((t >= 1 - self.clear_end[feature]) & (self.clear_end[feature] > 0))

    def clear(self, feature: npt.NDArray[np.int64], t: FloatArray) -> BoolArray:
        """Whether points lie on a part of their feature joined to a node by a clear way."""
        return self.to_start(feature, t) | self.to_end(feature, t)


def zone_cuts(
    graph: NetworkGraph, zones: Sequence[ThreatZone], levels: npt.NDArray[np.int8], *, level: int
) -> ZoneCuts:
    """The cuts of the zones of at least ``level`` (``levels`` from :func:`edge_levels`)."""
    count = len(graph.feature_lines)
    clear_start, clear_end = np.ones(count), np.ones(count)
    touched = levels[graph.feature_edges[:, 0]] >= level
    inner = [graph.crs.to_metric(z.geometry) for z in zones if z.level >= level]
    if not inner:
        return ZoneCuts(None, touched, clear_start, clear_end)
    area = shapely.union_all(inner)
    shapely.prepare(area)
    features = np.flatnonzero(touched)
    lines = graph.feature_lines[features]
    # A line wholly inside has nothing clear; for the others, the first and last positions
    # (0..1) of their part inside: the zone begins after the first and ends before the last.
    within = shapely.contains(area, lines)
    clear_start[features[within]] = clear_end[features[within]] = 0.0
    crossing, lines = features[~within], lines[~within]
    first, last = inside_span(lines, area)
    clear_start[crossing] = first
    clear_end[crossing] = 1 - last
    for array in (touched, clear_start, clear_end):
        array.flags.writeable = False
    return ZoneCuts(area, touched, clear_start, clear_end)


def inside_span(
    lines: npt.NDArray[np.object_], area: BaseGeometry
) -> tuple[FloatArray, FloatArray]:
    """Per line, the first and last position (0..1 of its length) where it meets ``area``
    (1 and 0 where it does not), in time linear in the lines' vertices.

    Locating every vertex of the part inside on the whole line is quadratic: a planner's
    walkway of 100,000 vertices took 30 s per activation that way (issue 12). Here each line is
    cut into its segments, a prepared ``intersects`` finds the first and last segment that
    meets the area, and only those two are intersected and located on.
    """
    first = np.ones(len(lines))
    last = np.zeros(len(lines))
    if not len(lines):
        return first, last
    coords, owner = shapely.get_coordinates(lines, return_index=True)
    # A segment joins vertex i to i + 1 of the same line; a repeated vertex makes none.
    starts = np.flatnonzero(owner[:-1] == owner[1:])
    starts = starts[np.any(coords[starts] != coords[starts + 1], axis=1)]
    if not len(starts):
        return first, last
    seg_owner = owner[starts]
    a, b = coords[starts], coords[starts + 1]
    segments: npt.NDArray[np.object_] = np.asarray(
        shapely.linestrings(np.stack([a, b], axis=1)), dtype=object
    )
    seg_length = np.hypot(*(b - a).T)
    # Each segment's offset from its line's start: a running sum restarted at each line.
    running = np.cumsum(seg_length) - seg_length
    line_start = np.zeros(len(lines))
    line_total = np.zeros(len(lines))
    np.add.at(line_total, seg_owner, seg_length)
    firsts = np.r_[0, np.flatnonzero(seg_owner[1:] != seg_owner[:-1]) + 1]
    line_start[seg_owner[firsts]] = running[firsts]
    offset = running - line_start[seg_owner]
    shapely.prepare(area)
    hit = np.flatnonzero(shapely.intersects(area, segments))
    if not len(hit):
        return first, last
    lo = np.full(len(lines), len(segments))
    hi = np.full(len(lines), -1)
    np.minimum.at(lo, seg_owner[hit], hit)
    np.maximum.at(hi, seg_owner[hit], hit)
    met = np.flatnonzero(hi >= 0)
    ends = np.unique(np.r_[lo[met], hi[met]])
    parts = shapely.intersection(segments[ends], area)
    points, part = shapely.get_coordinates(parts, return_index=True)
    # A segment's own ends where the area covers them too: GEOS may give no intersection for
    # a segment of almost no length.
    start_in = shapely.covers(area, shapely.points(a[ends]))
    end_in = shapely.covers(area, shapely.points(b[ends]))
    seg = np.r_[ends[part], ends[start_in], ends[end_in]]
    along = (
        offset[seg]
        + np.r_[
            shapely.line_locate_point(segments[ends[part]], shapely.points(points)),
            np.zeros(start_in.sum()),
            seg_length[ends[end_in]],
        ]
    )
    total = line_total[seg_owner[seg]]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(total > 0, along / total, 0.0), 0.0, 1.0)
    # Only the first segment's points bound the start, only the last's the end.
    at_first = seg == lo[seg_owner[seg]]
    at_last = seg == hi[seg_owner[seg]]
    np.minimum.at(first, seg_owner[seg][at_first], t[at_first])
    np.maximum.at(last, seg_owner[seg][at_last], t[at_last])
    return first, last


def area_shares(
    crs: SiteCRS, areas: Sequence[BaseGeometry], zones: Sequence[ThreatZone]
) -> FloatArray:
    """Per area (WGS84), the share of it inside zones of at least level 1, 2 and 3: shape
    ``(len(areas), 4)``, column ``level``. An area without extent (a point) is wholly inside
    a zone it touches, or not at all."""
    shares = np.zeros((len(areas), 4))
    if not areas:
        return shares
    metric = np.array([crs.to_metric(a) for a in areas], dtype=object)
    extent = shapely.area(metric)
    for level in (1, 2, 3):
        reach = [crs.to_metric(z.geometry) for z in zones if z.level >= level]
        if not reach:
            continue
        zone = shapely.union_all(reach)
        inside_area = shapely.area(shapely.intersection(metric, zone))
        touching = shapely.intersects(metric, zone)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(extent > 0, inside_area / extent, touching.astype(float))
        shares[:, level] = np.clip(share, 0.0, 1.0)
    return shares


def muster_area_reasons(
    crs: SiteCRS,
    areas: Sequence[BaseGeometry],
    zones: Sequence[ThreatZone],
    *,
    unusable_from_level: int,
) -> tuple[dict[int, str], dict[int, str]]:
    """Muster areas (WGS84) no one may be sent to, because they reach into a zone of
    ``unusable_from_level`` or above, and warnings for those that reach only into lower ones:
    per area index, the share of it inside each level reached ("12 % of its area inside threat
    level 2")."""
    if not zones:
        return {}, {}
    shares = area_shares(crs, areas, zones)
    unusable: dict[int, str] = {}
    warnings: dict[int, str] = {}
    for m, area in enumerate(areas):
        reached = [level for level in (3, 2, 1) if shares[m, level] > 0]
        severe = [level for level in reached if level >= unusable_from_level]
        mild = [level for level in reached if level < unusable_from_level]
        if severe:
            unusable[m] = _shares_text(shares[m], severe, extent=area.area > 0)
        elif mild:
            warnings[m] = _shares_text(shares[m], mild, extent=area.area > 0)
    return unusable, warnings


def _shares_text(shares: FloatArray, levels: list[int], *, extent: bool) -> str:
    """ "12 % of its area inside threat level 2, 40 % inside threat level 1"; for an area
    without extent (a point), "inside threat level 2"."""
    if not extent:
        return f"inside threat level {levels[0]}"
    parts = [f"{_percent(shares[level])} inside threat level {level}" for level in levels]
    parts[0] = parts[0].replace(" inside", " of its area inside", 1)
    return ", ".join(parts)


def _percent(share: float) -> str:
    if share < 0.005:
        return "under 1 %"
    if 0.995 <= share < 1:
        return "over 99 %"
    return f"{share * 100:.0f} %"
