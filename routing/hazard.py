"""Hazard-aware edge costs.

Threat zones come in three levels of concern, as ALOHA draws them: level 3 is the innermost
(most severe, e.g. AEGL-3), level 1 the outermost. Edges inside the innermost zone are impassable
(except to leave it: see :mod:`routing.evacuation`); edges in outer zones cost more by
configurable factors; closed edges (a closed road or door) are impassable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import shapely

from gis.errors import FieldError, InvalidInput
from gis.hazards.zones import ThreatZone
from routing.graph import FloatArray, NetworkGraph


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
