"""What lies inside each threat zone: people, zones, resources, sensors and network edges.

The site's features are indexed once in memory (an STRtree per layer; people, being points
that move, as plain coordinate arrays tested without making geometries). A feature counts for a
zone when it lies inside it or crosses it. Each feature also gets its highest level, which is
what a commander reads first ("who is in the red zone"), and what a wind change compares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from gis.hazards.zones import ThreatAssessment

LAYERS = ("people", "zones", "resources", "sensors", "network")


@dataclass(frozen=True)
class _Layer:
    ids: npt.NDArray[np.object_]
    tree: shapely.STRtree | None  # None for a point layer tested on coordinates
    xy: npt.NDArray[np.float64] | None


class SiteIndex:
    """The site's features for quick "what is inside" questions, built once per layer state."""

    def __init__(self, layers: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> None:
        self._layers: dict[str, _Layer] = {}
        for name, features in (layers or {}).items():
            ids = np.array([str(f["id"]) for f in features], dtype=object)
            geoms = [f.get("geometry") for f in features]
            if features and all(g is not None and g.get("type") == "Point" for g in geoms):
                xy = np.array([g["coordinates"][:2] for g in geoms if g], dtype=np.float64)
                self._layers[name] = _Layer(ids, None, xy.reshape(-1, 2))
            else:
                keep = [i for i, g in enumerate(geoms) if g is not None]
                shapes = [shape(g) for g in geoms if g is not None]
                self._layers[name] = _Layer(ids[keep], shapely.STRtree(shapes), None)

    def with_layers(
        self, layers: Mapping[str, tuple[Sequence[str], Sequence[BaseGeometry | None]]]
    ) -> SiteIndex:
        """A new index with ``layers`` (name -> ids and shapely geometries in WGS84, ``None``
        where a feature has none) indexed anew and the other layers shared with this one:
        after an edit, only the edited layer is indexed again. Indexes as the constructor
        does from the same features as GeoJSON, without making geometries from GeoJSON."""
        out = SiteIndex()
        out._layers = dict(self._layers)
        for name, (ids, geometries) in layers.items():
            out._layers[name] = _geometry_layer(ids, geometries)
        return out

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self._layers)

    def inside(self, layer: str, area: shapely.Geometry) -> npt.NDArray[np.object_]:
        """Ids of the layer's features inside or crossing ``area`` (WGS84)."""
        data = self._layers[layer]
        if data.xy is not None:
            hit = shapely.intersects_xy(area, data.xy[:, 0], data.xy[:, 1])
            return np.asarray(data.ids[np.asarray(hit, dtype=bool)], dtype=object)
        assert data.tree is not None  # one of the two is always set
        return np.asarray(data.ids[data.tree.query(area, predicate="intersects")], dtype=object)


def _geometry_layer(ids: Sequence[str], geometries: Sequence[BaseGeometry | None]) -> _Layer:
    id_array = np.empty(len(ids), dtype=object)
    id_array[:] = ids
    geoms = np.empty(len(geometries), dtype=object)
    geoms[:] = geometries
    kinds = shapely.get_type_id(geoms)  # -1 for a missing geometry
    if len(geoms) and bool(np.all(kinds == shapely.GeometryType.POINT)):
        return _Layer(id_array, None, shapely.get_coordinates(geoms).reshape(-1, 2))
    keep = np.flatnonzero(kinds >= 0)
    return _Layer(id_array[keep], shapely.STRtree(geoms[keep]), None)


@dataclass(frozen=True)
class Exposure:
    """Per level, per layer, the ids inside or crossing that level's zone; and per feature,
    the highest level it is in. Zones nest, so level 1's ids include level 3's."""

    inside: Mapping[int, Mapping[str, tuple[str, ...]]]
    highest: Mapping[str, Mapping[str, int]]

    def counts(self) -> dict[int, dict[str, int]]:
        return {
            level: {layer: len(ids) for layer, ids in layers.items()}
            for level, layers in self.inside.items()
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": {str(k): v for k, v in self.counts().items()},
            "inside": {
                str(level): {layer: list(ids) for layer, ids in layers.items()}
                for level, layers in self.inside.items()
            },
        }


def exposure(assessment: ThreatAssessment, index: SiteIndex) -> Exposure:
    """What lies inside each of the assessment's zones."""
    inside: dict[int, dict[str, tuple[str, ...]]] = {}
    highest: dict[str, dict[str, int]] = {layer: {} for layer in index.layers}
    for zone in sorted(assessment.zones, key=lambda z: z.level):  # outermost first
        shapely.prepare(zone.geometry)
        inside[zone.level] = {}
        for layer in index.layers:
            ids = index.inside(layer, zone.geometry)
            inside[zone.level][layer] = tuple(str(i) for i in ids)
            marks = highest[layer]
            for i in ids:
                marks[str(i)] = zone.level  # ascending levels: the last one is the highest
    return Exposure(inside, highest)


@dataclass(frozen=True)
class ExposureChange:
    """Per layer: who entered the zones (new level), left them (old level), or changed level."""

    entered: Mapping[str, Mapping[str, int]]
    left: Mapping[str, Mapping[str, int]]
    changed: Mapping[str, Mapping[str, tuple[int, int]]]

    @property
    def empty(self) -> bool:
        return not any([*self.entered.values(), *self.left.values(), *self.changed.values()])


def exposure_change(before: Exposure, after: Exposure) -> ExposureChange:
    """What a new footprint changed, e.g. after the wind turned."""
    entered: dict[str, dict[str, int]] = {}
    left: dict[str, dict[str, int]] = {}
    changed: dict[str, dict[str, tuple[int, int]]] = {}
    for layer in sorted({*before.highest, *after.highest}):
        old, new = before.highest.get(layer, {}), after.highest.get(layer, {})
        entered[layer] = {i: new[i] for i in sorted(new.keys() - old.keys())}
        left[layer] = {i: old[i] for i in sorted(old.keys() - new.keys())}
        changed[layer] = {
            i: (old[i], new[i]) for i in sorted(old.keys() & new.keys()) if old[i] != new[i]
        }
    return ExposureChange(entered, left, changed)
