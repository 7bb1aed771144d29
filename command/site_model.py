"""What incident command keeps in memory per site: graphs, indexes, people and muster points.

Building them costs from tens of milliseconds (demo site) to a few seconds (100k edges), so they
are built once and kept while the site's layers stay as they are. Every write to a layer stores
a fresh revision token, and a model whose tokens no longer match is rebuilt on next use. People's
positions also change through live updates (issue 6, live inputs), which patch the model in place.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from command.sensors import Sensor
from gis.errors import FieldError, InvalidInput
from gis.hazards.exposure import SiteIndex
from gis.layers import list_features
from gis.model import LAYERS
from gis.sites import Site, load_site
from gis.spatial_index import revision_token
from gis.storage.db import Database
from routing.evacuation import MusterPoints
from routing.graph import Mode, NetworkGraph, graph_from_features
from routing.resources import ResourceIndex, Resources
from routing.snapping import Snapped, snap

log = logging.getLogger(__name__)


@dataclass
class SiteModel:
    site: Site
    tokens: dict[str, str | None]
    layers: dict[str, list[dict[str, Any]]]
    graphs: dict[Mode, NetworkGraph]
    index: SiteIndex
    resources: ResourceIndex
    musters: MusterPoints
    person_ids: list[str]
    person_lonlat: np.ndarray
    people_snapped: Snapped | None
    sensors: dict[str, Sensor]
    muster_areas: dict[str, BaseGeometry]
    build_ms: float = 0.0
    positions_version: int = 0  # counts live position updates (snapshots depend on them)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def foot(self) -> NetworkGraph:
        try:
            return self.graphs["foot"]
        except KeyError:
            raise InvalidInput(
                f"site {self.site.id} has no walkable network",
                errors=[FieldError("network", "no foot edges: evacuation cannot be routed")],
            ) from None


def _tokens(db: Database, site_id: str) -> dict[str, str | None]:
    with db.read() as session:
        load_site(session, site_id)
        return {layer: revision_token(session, site_id, layer) for layer in LAYERS}


def build_site_model(db: Database, site_id: str) -> SiteModel:
    """Read the site's layers and build everything routing and hazard models need."""
    start = time.perf_counter()
    tokens = _tokens(db, site_id)
    with db.read() as session:
        site = load_site(session, site_id)
    layers = {name: [f.to_geojson() for f in list_features(db, site_id, name)] for name in LAYERS}
    graphs: dict[Mode, NetworkGraph] = {}
    for mode in ("foot", "vehicle"):
        try:
            graphs[mode] = graph_from_features(layers["network"], crs=site.crs, mode=mode)
        except Exception as exc:
            log.warning("site %s has no %s graph: %s", site_id, mode, exc)
    resources = Resources(
        [f["id"] for f in layers["resources"]],
        [f["properties"]["kind"] for f in layers["resources"]],
        np.array([f["geometry"]["coordinates"] for f in layers["resources"]]).reshape(-1, 2),
        [f["properties"]["status"] for f in layers["resources"]],
    )
    muster_features = [f for f in layers["zones"] if f["properties"]["kind"] == "muster_point"]
    musters = MusterPoints(
        [f["id"] for f in muster_features],
        np.array(
            [shape(f["geometry"]).representative_point().coords[0] for f in muster_features]
        ).reshape(-1, 2),
        [int(f["properties"].get("capacity") or 0) for f in muster_features],
    )
    placed = [f for f in layers["people"] if f["geometry"] is not None]
    person_lonlat = np.array([f["geometry"]["coordinates"] for f in placed]).reshape(-1, 2)
    foot = graphs.get("foot")
    model = SiteModel(
        site=site,
        tokens=tokens,
        layers=layers,
        graphs=graphs,
        index=SiteIndex(layers),
        resources=ResourceIndex(graphs, resources),
        musters=musters,
        person_ids=[f["id"] for f in placed],
        person_lonlat=person_lonlat,
        people_snapped=snap(foot, person_lonlat) if foot is not None else None,
        sensors={str(f["id"]): Sensor.from_feature(f) for f in layers["sensors"]},
        muster_areas={f["id"]: shape(f["geometry"]) for f in muster_features},
    )
    model.build_ms = (time.perf_counter() - start) * 1000
    # Long-lived: keep the collector from walking these objects on every full pass.
    gc.freeze()
    log.info("site model %s built in %.0f ms", site_id, model.build_ms)
    return model


def move_people(model: SiteModel, moves: Mapping[str, tuple[float, float]]) -> list[str]:
    """Apply live positions (person id -> lon/lat); returns the ids not known on the site."""
    index = {pid: i for i, pid in enumerate(model.person_ids)}
    unknown = [pid for pid in moves if pid not in index]
    rows = np.array([index[pid] for pid in moves if pid in index], dtype=np.int64)
    if not len(rows):
        return unknown
    xy = np.array([moves[pid] for pid in moves if pid in index], dtype=np.float64)
    with model.lock:
        lonlat = model.person_lonlat.copy()
        lonlat[rows] = xy
        model.person_lonlat = lonlat
        model.positions_version += 1
        if model.people_snapped is not None and "foot" in model.graphs:
            moved = snap(model.graphs["foot"], xy)
            old = model.people_snapped
            feature, t, distance = old.feature.copy(), old.t.copy(), old.distance_m.copy()
            feature[rows], t[rows], distance[rows] = moved.feature, moved.t, moved.distance_m
            model.people_snapped = Snapped(feature, t, distance)
    return unknown


def headcount(model: SiteModel, moving: np.ndarray | None = None) -> dict[str, Any]:
    """Who is at which muster point now, from the people's last known positions; with
    ``moving`` (indices of the people who must move), who of them is still missing, and
    where they were last seen."""
    xy = model.person_lonlat
    counts: dict[str, int] = {}
    accounted = np.zeros(len(model.person_ids), dtype=bool)
    for muster, area in model.muster_areas.items():
        inside = np.asarray(shapely.intersects_xy(area, xy[:, 0], xy[:, 1]), dtype=bool)
        counts[muster] = int((inside & ~accounted).sum())
        accounted |= inside
    out: dict[str, Any] = {
        "at": counts,
        "accounted": int(accounted.sum()),
        "on_site": len(model.person_ids),
    }
    if moving is not None:
        out["missing"] = [
            {"id": model.person_ids[int(i)], "last_seen": [float(xy[i, 0]), float(xy[i, 1])]}
            for i in moving
            if not accounted[i]
        ]
    return out


class SiteModels:
    """One model per site, rebuilt when a layer changed since it was built."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._models: dict[str, SiteModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, site_id: str) -> SiteModel:
        tokens = _tokens(self.db, site_id)
        with self._lock:  # only to find the site's own lock: one site's build blocks no other
            lock = self._locks.setdefault(site_id, threading.Lock())
        with lock:
            model = self._models.get(site_id)
            if model is None or model.tokens != tokens:
                model = build_site_model(self.db, site_id)
                self._models[site_id] = model
            return model
