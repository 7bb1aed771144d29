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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import shape

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
    build_ms: float = 0.0
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
    )
    model.build_ms = (time.perf_counter() - start) * 1000
    # Long-lived: keep the collector from walking these objects on every full pass.
    gc.freeze()
    log.info("site model %s built in %.0f ms", site_id, model.build_ms)
    return model


class SiteModels:
    """One model per site, rebuilt when a layer changed since it was built."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._models: dict[str, SiteModel] = {}
        self._lock = threading.Lock()

    def get(self, site_id: str) -> SiteModel:
        tokens = _tokens(self.db, site_id)
        with self._lock:
            model = self._models.get(site_id)
            if model is None or model.tokens != tokens:
                model = build_site_model(self.db, site_id)
                self._models[site_id] = model
            return model
