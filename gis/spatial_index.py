"""In-memory spatial indexes (shapely STRtree) over a site's layers.

PostGIS answers spatial queries with its GiST indexes. SQLite has no spatial extension on a fresh
machine, so there the index lives in memory, rebuilt only when the layer's revision token changes
(every write stores a fresh token in the same transaction, so a rolled-back write leaves the
old, still-correct index in place).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from gis.storage.tables import LAYER_ROWS, LayerRevision


@dataclass(frozen=True)
class LayerIndex:
    token: str | None
    ids: npt.NDArray[np.object_]
    geoms: npt.NDArray[np.object_]
    tree: shapely.STRtree

    def intersecting(self, geom: BaseGeometry) -> list[str]:
        """Ids of the features whose geometry intersects ``geom``."""
        hits = self.tree.query(geom, predicate="intersects")
        return [str(i) for i in self.ids[np.sort(hits)]]

    @cached_property
    def id_order(self) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.intp]]:
        """The ids sorted, and each feature's rank among them: a query's hits are put in id
        order by sorting integers, not strings (paging by id, ``gis/ogc.py``). Made once per
        index (a frozen dataclass still takes a cached property: it writes to ``__dict__``)."""
        order = np.argsort(self.ids, kind="stable")
        rank = np.empty(len(order), dtype=np.intp)
        rank[order] = np.arange(len(order))
        return self.ids[order], rank

    @cached_property
    def envelopes(self) -> npt.NDArray[np.float64]:
        """Each feature's bounding box (minx, miny, maxx, maxy): a feature whose box lies inside
        a query rectangle intersects it, with no exact test (``gis/ogc.py``)."""
        bounds: npt.NDArray[np.float64] = shapely.bounds(self.geoms)
        return bounds


def revision_token(session: Session, site_id: str, layer: str) -> str | None:
    return session.scalar(
        select(LayerRevision.token).where(
            LayerRevision.site_id == site_id, LayerRevision.layer == layer
        )
    )


class SpatialIndexCache:
    """One :class:`LayerIndex` per (site, layer), kept while its revision token holds."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], LayerIndex] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, site_id: str, layer: str) -> LayerIndex:
        token = revision_token(session, site_id, layer)
        key = (site_id, layer)
        entry = self._entries.get(key)
        if entry is not None and entry.token == token:
            return entry
        row = LAYER_ROWS[layer]
        pairs = session.execute(
            select(row.id, row.geom).where(row.site_id == site_id, row.geom.is_not(None))
        ).all()
        ids = np.array([p[0] for p in pairs], dtype=object)
        geoms = np.array([p[1] for p in pairs], dtype=object)
        entry = LayerIndex(token, ids, geoms, shapely.STRtree(geoms))
        with self._lock:
            self._entries[key] = entry
        return entry
