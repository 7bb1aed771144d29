"""What incident command keeps in memory per site: graphs, indexes, people and muster points.

Building them from scratch costs from tens of milliseconds (demo site) to a few seconds (100k
edges), so they are built once and kept while the site's layers stay as they are. Every write to
a layer stores a fresh revision token; a model whose tokens no longer match is rebuilt on next
use, incrementally: only the changed features are read again, and only the parts that depend on
the changed layers are rebuilt (a zone edit rebuilds the muster points and the zone index in a
few tens of milliseconds; a network edit the graphs, in well under a second at 100k edges).

People's positions change through live updates, which patch the model in place, each with the
time it was observed (an older one than held is ignored). They are stored by
:mod:`command.positions`; the command post lays the live ones over a rebuilt model.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import event, select
from sqlalchemy.orm import Mapper, Session, object_session

from command.sensors import Sensor
from gis.errors import FieldError, InvalidInput
from gis.hazards.exposure import SiteIndex
from gis.layers import Feature, feature_stamps, geojson_features, read_features
from gis.model import LAYERS as ALL_LAYERS
from gis.sites import Site, load_site
from gis.spatial_index import revision_token
from gis.storage.bulk import collector_paused
from gis.storage.db import Database
from gis.storage.tables import LayerRevision
from routing.evacuation import MusterPoints
from routing.graph import (
    Mode,
    NetworkColumns,
    NetworkGraph,
    concat_columns,
    graph_from_columns,
    network_columns,
)
from routing.resources import ResourceIndex, Resources
from routing.snapping import Snapped, snap

log = logging.getLogger(__name__)

#: The layers command keeps in memory: all but the basemap, which is drawn, never computed on
#: (an extract's basemap can hold a hundred thousand buildings). Receptors are indexed, so the
#: exposure of each threat zone lists them as it lists people.
LAYERS = tuple(name for name in ALL_LAYERS if name != "basemap")


_BUILDS = itertools.count(1)


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
    #: Per person, when their position was observed (seconds since the epoch; -inf: unknown).
    #: A position older than the one held is ignored.
    person_seen_at: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: Person id -> row of ``person_ids``.
    person_row: dict[str, int] = field(init=False, repr=False)
    #: Which build of the site's model this is: incidents re-plan on a new one.
    build: int = field(default_factory=lambda: next(_BUILDS))

    #: Per person, the muster point (its index in ``muster_areas``) whose area their latest
    #: position lies in, or -1: the headcount, kept up to date for the people who move.
    person_muster: np.ndarray = field(init=False, repr=False)
    _muster_tree: shapely.STRtree = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.person_row = {pid: i for i, pid in enumerate(self.person_ids)}
        if len(self.person_seen_at) != len(self.person_ids):
            self.person_seen_at = np.full(len(self.person_ids), -np.inf)
        self._muster_tree = shapely.STRtree(list(self.muster_areas.values()))
        self.person_muster = self.muster_at(self.person_lonlat)

    def muster_at(self, lonlat: np.ndarray) -> np.ndarray:
        """Per position, the first muster point (in ``muster_areas`` order) whose area holds
        it, or -1."""
        out = np.full(len(lonlat), -1, dtype=np.int64)
        if not len(lonlat) or not self.muster_areas:
            return out
        points = shapely.points(np.asarray(lonlat, dtype=np.float64).reshape(-1, 2))
        at, area = self._muster_tree.query(points, predicate="intersects")
        first = np.full(len(lonlat), len(self.muster_areas), dtype=np.int64)
        np.minimum.at(first, at, area)
        return np.where(first < len(self.muster_areas), first, -1)

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
    """Each layer's revision token, in one query (asked on every use of the model)."""
    with db.read() as session:
        load_site(session, site_id)
        rows = session.execute(
            select(LayerRevision.layer, LayerRevision.token).where(LayerRevision.site_id == site_id)
        )
        found = {str(layer): token for layer, token in rows}
    return {layer: found.get(layer) for layer in LAYERS}


@dataclass(frozen=True)
class _LayerState:
    """A layer as last read: its token, each feature's stamp (see
    :func:`gis.layers.feature_stamps`), and its features by id: as GeoJSON for the model, as
    shapely geometries for the indexes and graphs."""

    token: str | None
    stamps: set[str]
    features: dict[str, dict[str, Any]]
    geometries: dict[str, BaseGeometry | None]
    ids: list[str]  # ascending
    listed: list[dict[str, Any]]  # the GeoJSON features in id order
    shapes: list[BaseGeometry | None]  # their geometries in id order

    @classmethod
    def of(
        cls,
        token: str | None,
        stamps: set[str],
        features: dict[str, dict[str, Any]],
        geometries: dict[str, BaseGeometry | None],
    ) -> _LayerState:
        ids = sorted(features)
        listed, shapes = [features[i] for i in ids], [geometries[i] for i in ids]
        return cls(token, stamps, features, geometries, ids, listed, shapes)

    def replaced(self, token: str | None, stamps: set[str], found: list[Feature]) -> _LayerState:
        """This state with some of its features changed (none created or deleted)."""
        features, geometries = dict(self.features), dict(self.geometries)
        listed, shapes = [*self.listed], [*self.shapes]
        for feature in found:
            at = bisect_left(self.ids, feature.id)
            features[feature.id] = listed[at] = feature.to_geojson()
            geometries[feature.id] = shapes[at] = feature.geometry
        return _LayerState(token, stamps, features, geometries, self.ids, listed, shapes)


@dataclass(frozen=True)
class _LayerRead:
    """A layer read anew, and how it differs from the state before."""

    state: _LayerState
    touched: set[str] | None  # features created or changed; None: all, read from scratch
    same_ids: bool  # no feature created or deleted
    reshaped: bool  # a feature created, deleted or moved: the layer's spatial index changes

    @property
    def changed(self) -> bool:
        return self.touched is None or bool(self.touched) or not self.same_ids


@dataclass(frozen=True)
class _Parts:
    """What a site model is made of, as built from the layers (live position updates change
    the models handed out, never these): kept per site, so that the next build redoes only
    what the changed layers feed."""

    site: Site
    layers: dict[str, _LayerState]
    network: NetworkColumns | None
    graphs: dict[Mode, NetworkGraph]
    index: SiteIndex
    resources: ResourceIndex
    musters: MusterPoints
    muster_areas: dict[str, BaseGeometry]
    person_ids: list[str]
    person_lonlat: np.ndarray
    person_seen_at: np.ndarray
    people_snapped: Snapped | None
    sensors: dict[str, Sensor]


def build_site_model(db: Database, site_id: str) -> SiteModel:
    """Read the site's layers and build everything routing and hazard models need."""
    return _build(db, site_id, None)[0]


def _build(db: Database, site_id: str, before: _Parts | None) -> tuple[SiteModel, _Parts]:
    """The site's model; with ``before`` (the parts of an earlier build), only the features
    changed since are read, and only what the changed layers feed is rebuilt."""
    with collector_paused():  # a build makes a million small objects, none of them cyclic
        return _build_parts(db, site_id, before)


def _build_parts(db: Database, site_id: str, before: _Parts | None) -> tuple[SiteModel, _Parts]:
    start = time.perf_counter()
    with db.read() as session:  # one snapshot on SQLite: tokens, stamps and rows agree
        site = load_site(session, site_id)
        if before is not None and _same_site(before.site, site):
            site = before.site  # the same, with its CRS worked out already
        elif before is not None:
            before = None  # the site itself changed (its CRS may have): start afresh
        reads = {
            name: _read_layer(
                session, site_id, name, None if before is None else before.layers[name]
            )
            for name in LAYERS
        }
    parts = _derive(site, reads, before)
    # The model gets its own containers (cheap), its parts are shared with earlier and later
    # models: the GeoJSON features, graphs, indexes and snaps are never changed in place.
    model = SiteModel(
        site=site,
        tokens={name: state.token for name, state in parts.layers.items()},
        layers={name: [*state.listed] for name, state in parts.layers.items()},
        graphs=dict(parts.graphs),
        index=parts.index,
        resources=parts.resources,
        musters=parts.musters,
        person_ids=[*parts.person_ids],
        person_lonlat=parts.person_lonlat.copy(),
        person_seen_at=parts.person_seen_at.copy(),
        people_snapped=parts.people_snapped,
        sensors=dict(parts.sensors),
        muster_areas=dict(parts.muster_areas),
    )
    model.build_ms = (time.perf_counter() - start) * 1000
    # Long-lived: keep the collector from walking these objects on every full pass.
    gc.freeze()
    changed = ", ".join(name for name, read in reads.items() if read.changed) or "none"
    log.info(
        "site model %s built in %.0f ms (%s)",
        site_id,
        model.build_ms,
        "from scratch" if before is None else f"changed layers: {changed}",
    )
    return model, parts


def _same_site(a: Site, b: Site) -> bool:
    # The time tells apart a site deleted and created again (at version 1 again).
    return (a.version, a.updated_at) == (b.version, b.updated_at)


def _read_layer(
    session: Session, site_id: str, name: str, before: _LayerState | None
) -> _LayerRead:
    """The layer as it is now, reading only the features whose stamps differ from
    ``before``'s."""
    token = revision_token(session, site_id, name)
    # People's positions are written without a new token (command/positions.py): their
    # stamps are compared whatever the token says.
    if before is not None and before.token == token and name != "people":
        return _LayerRead(before, set(), True, False)
    stamps = feature_stamps(session, site_id, name)
    if before is None:
        return _LayerRead(_fresh_state(session, site_id, name, token, stamps), None, False, True)
    new, old = stamps - before.stamps, before.stamps - stamps
    touched = {s.split(" ", 1)[0] for s in new}
    removed = {s.split(" ", 1)[0] for s in old} - touched
    if not touched and not removed:
        state = before if before.token == token else replace(before, token=token)
        return _LayerRead(state, set(), True, False)
    if len(touched) > len(stamps) // 2:  # most of the layer: read it whole
        state = _fresh_state(session, site_id, name, token, stamps)
        return _LayerRead(state, None, False, True)
    found = read_features(session, site_id, name, ids=touched)
    # (A touched feature not found was deleted after its stamp was read: PostgreSQL reads
    # each statement at its own moment.)
    same_ids = not removed and len(found) == len(touched)
    same_ids = same_ids and all(f.id in before.features for f in found)
    if same_ids:
        state = before.replaced(token, stamps, found)
        moved = not all(_same_geometry(before.geometries[f.id], f.geometry) for f in found)
        return _LayerRead(state, touched, True, moved)
    features, geometries = dict(before.features), dict(before.geometries)
    for fid in removed | touched:
        features.pop(fid, None)
        geometries.pop(fid, None)
    for feature in found:
        features[feature.id] = feature.to_geojson()
        geometries[feature.id] = feature.geometry
    return _LayerRead(_LayerState.of(token, stamps, features, geometries), touched, False, True)


def _fresh_state(
    session: Session, site_id: str, name: str, token: str | None, stamps: set[str]
) -> _LayerState:
    rows = read_features(session, site_id, name)
    listed = geojson_features(rows)  # as each one's to_geojson(), mapped in bulk
    return _LayerState.of(
        token,
        stamps,
        {f.id: d for f, d in zip(rows, listed, strict=True)},
        {f.id: f.geometry for f in rows},
    )


def _same_geometry(a: BaseGeometry | None, b: BaseGeometry | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(shapely.equals_identical(a, b))


def _derive(site: Site, reads: Mapping[str, _LayerRead], before: _Parts | None) -> _Parts:
    """The parts of a model, reusing those of ``before`` that no changed layer feeds."""
    layers = {name: read.state for name, read in reads.items()}

    def stale(*names: str) -> bool:
        return any(reads[name].changed for name in names)

    if before is None or stale("network"):
        network, graphs = _graphs(site, reads["network"], before)
    else:
        network, graphs = before.network, before.graphs
    # A spatial index holds ids and geometries only: an edit of attributes keeps it.
    index = (SiteIndex() if before is None else before.index).with_layers(
        {
            name: (state.ids, state.shapes)
            for name, state in layers.items()
            if before is None or reads[name].reshaped
        }
    )
    if before is None or stale("resources", "network"):
        resources = _resource_index(graphs, layers["resources"].listed)
    else:
        resources = before.resources
    if before is None or stale("zones"):
        musters, muster_areas = _musters(layers["zones"].listed)
    else:
        musters, muster_areas = before.musters, before.muster_areas
    if before is None or stale("people"):
        placed = [f for f in layers["people"].listed if f["geometry"] is not None]
        person_ids = [f["id"] for f in placed]
        person_lonlat = np.array([f["geometry"]["coordinates"] for f in placed]).reshape(-1, 2)
        person_seen_at = seen_times(placed)
    else:
        person_ids, person_lonlat = before.person_ids, before.person_lonlat
        person_seen_at = before.person_seen_at
    foot = graphs.get("foot")
    if before is not None and not stale("people") and _same_lines(foot, before.graphs.get("foot")):
        people_snapped = before.people_snapped
    else:
        people_snapped = snap(foot, person_lonlat) if foot is not None else None
    if before is None or stale("sensors"):
        sensors = {str(f["id"]): Sensor.from_feature(f) for f in layers["sensors"].listed}
    else:
        sensors = before.sensors
    return _Parts(
        site=site,
        layers=layers,
        network=network,
        graphs=graphs,
        index=index,
        resources=resources,
        musters=musters,
        muster_areas=muster_areas,
        person_ids=person_ids,
        person_lonlat=person_lonlat,
        person_seen_at=person_seen_at,
        people_snapped=people_snapped,
        sensors=sensors,
    )


def _graphs(
    site: Site, read: _LayerRead, before: _Parts | None
) -> tuple[NetworkColumns | None, dict[Mode, NetworkGraph]]:
    try:
        network = _network_columns(site, read, None if before is None else before.network)
    except Exception as exc:
        log.warning("site %s has no graphs: %s", site.id, exc)
        return None, {}
    graphs: dict[Mode, NetworkGraph] = {}
    modes: tuple[Mode, ...] = ("foot", "vehicle")
    for mode in modes:
        # Lines unmoved: the graph before may lend its spatial index (it checks).
        reuse = None if before is None or read.reshaped else before.graphs.get(mode)
        try:
            graphs[mode] = graph_from_columns(network, mode=mode, reuse=reuse)
        except Exception as exc:
            log.warning("site %s has no %s graph: %s", site.id, mode, exc)
    return network, graphs


def _network_columns(site: Site, read: _LayerRead, before: NetworkColumns | None) -> NetworkColumns:
    """The network's columns in id order: read from every feature, or, given the columns
    before a few features changed, those kept and the changed ones read anew."""
    state = read.state

    def line(fid: str) -> dict[str, Any]:
        return {
            "id": fid,
            "geometry": state.geometries[fid],
            "properties": state.features[fid]["properties"],
        }

    if before is None or read.touched is None:
        return network_columns([line(fid) for fid in state.ids], crs=site.crs)
    fresh_ids = sorted(fid for fid in read.touched if fid in state.features)
    fresh = network_columns([line(fid) for fid in fresh_ids], crs=site.crs)
    if read.same_ids:  # the same features in the same order: the changed ones swapped in
        rows = np.arange(len(before))
        rows[[bisect_left(state.ids, fid) for fid in fresh_ids]] = len(before) + np.arange(
            len(fresh)
        )
    else:
        row_of = {str(fid): row for row, fid in enumerate(before.ids)}
        row_of.update((fid, len(before) + row) for row, fid in enumerate(fresh_ids))
        rows = np.fromiter((row_of[f] for f in state.ids), dtype=np.int64, count=len(state.ids))
    return concat_columns([before, fresh]).take(rows)


def _same_lines(a: NetworkGraph | None, b: NetworkGraph | None) -> bool:
    """Whether points snap to ``a`` as to ``b``: the same graph, or one that shares the
    other's spatial index (lent because the features and lines are the same)."""
    return a is b or (a is not None and b is not None and a.tree is b.tree)


def _resource_index(
    graphs: Mapping[Mode, NetworkGraph], features: list[dict[str, Any]]
) -> ResourceIndex:
    return ResourceIndex(
        graphs,
        Resources(
            [f["id"] for f in features],
            [f["properties"]["kind"] for f in features],
            np.array([f["geometry"]["coordinates"] for f in features]).reshape(-1, 2),
            [f["properties"]["status"] for f in features],
        ),
    )


def _musters(zones: list[dict[str, Any]]) -> tuple[MusterPoints, dict[str, BaseGeometry]]:
    muster_features = [f for f in zones if f["properties"]["kind"] == "muster_point"]
    musters = MusterPoints(
        [f["id"] for f in muster_features],
        np.array(
            [shape(f["geometry"]).representative_point().coords[0] for f in muster_features]
        ).reshape(-1, 2),
        [int(f["properties"].get("capacity") or 0) for f in muster_features],
        # Judged against the threat zones: any part inside level 2 or 3 makes it unusable.
        areas=[shape(f["geometry"]) for f in muster_features],
    )
    return musters, {f["id"]: shape(f["geometry"]) for f in muster_features}


@dataclass(frozen=True)
class Moved:
    """What a batch of positions did: the rows moved, and the ids it could not use."""

    rows: np.ndarray  # rows of ``person_ids`` that moved, in the batch's order
    unknown: list[str]  # not a person with a position on the site
    stale: list[str]  # observed before the position already held: ignored


def seen_times(people: list[dict[str, Any]]) -> np.ndarray:
    """Per person feature, when its position was observed (``seen_at``), in seconds since the
    epoch; -inf where it is not known."""
    out = np.full(len(people), -np.inf)
    for i, f in enumerate(people):
        seen = f["properties"].get("seen_at")
        if seen:
            out[i] = datetime.fromisoformat(str(seen).replace("Z", "+00:00")).timestamp()
    return out


def move_people(model: SiteModel, moves: Mapping[str, tuple[float, float, float]]) -> Moved:
    """Apply live positions (person id -> lon, lat, observed at in seconds since the epoch).
    A position observed before the one held is ignored and counted: a gateway that replays an
    old batch never moves anyone back."""
    index = model.person_row
    unknown = [pid for pid in moves if pid not in index]
    with model.lock:
        seen = model.person_seen_at
        known = [pid for pid in moves if pid in index]
        newer = [pid for pid in known if moves[pid][2] >= seen[index[pid]]]
        stale = [pid for pid in known if moves[pid][2] < seen[index[pid]]]
        rows = np.array([index[pid] for pid in newer], dtype=np.int64)
        if not len(rows):
            return Moved(rows, unknown, stale)
        data = np.array([moves[pid] for pid in newer], dtype=np.float64)
        xy = data[:, :2]
        lonlat = model.person_lonlat.copy()
        lonlat[rows] = xy
        model.person_lonlat = lonlat
        times = seen.copy()
        times[rows] = data[:, 2]
        model.person_seen_at = times
        at_muster = model.person_muster.copy()
        at_muster[rows] = model.muster_at(xy)
        model.person_muster = at_muster
        model.positions_version += 1
        if model.people_snapped is not None and "foot" in model.graphs:
            moved = snap(model.graphs["foot"], xy)
            old = model.people_snapped
            feature, t, distance = old.feature.copy(), old.t.copy(), old.distance_m.copy()
            feature[rows], t[rows], distance[rows] = moved.feature, moved.t, moved.distance_m
            model.people_snapped = Snapped(feature, t, distance)
    return Moved(rows, unknown, stale)


def current_positions(model: SiteModel) -> dict[str, list[Any]]:
    """Everyone's latest position: person id -> [lon, lat, observed at (ISO 8601) or None]."""
    with model.lock:
        xy, seen = model.person_lonlat, model.person_seen_at
    return {
        pid: [
            float(xy[i, 0]),
            float(xy[i, 1]),
            datetime.fromtimestamp(seen[i], UTC).isoformat() if np.isfinite(seen[i]) else None,
        ]
        for i, pid in enumerate(model.person_ids)
    }


def headcount(model: SiteModel, moving: np.ndarray | None = None) -> dict[str, Any]:
    """Who is at which muster point now, from the people's last known positions; with
    ``moving`` (indices of the people who must move), who of them is still missing, and
    where they were last seen."""
    with model.lock:
        xy, at_muster = model.person_lonlat, model.person_muster
    musters = list(model.muster_areas)
    counts = np.bincount(at_muster[at_muster >= 0], minlength=len(musters))
    accounted = at_muster >= 0
    out: dict[str, Any] = {
        "at": {m: int(n) for m, n in zip(musters, counts.tolist(), strict=True)},
        "accounted": int(accounted.sum()),
        "on_site": len(model.person_ids),
        "by_employer": _by_employer(model, accounted),
    }
    if moving is not None:
        out["missing"] = [
            {"id": model.person_ids[int(i)], "last_seen": [float(xy[i, 0]), float(xy[i, 1])]}
            for i in moving
            if not accounted[i]
        ]
    return out


#: Per model build: the employers, and each person's (a row of ``person_ids``) among them.
_EMPLOYERS: dict[int, tuple[list[str], np.ndarray]] = {}


def _by_employer(model: SiteModel, accounted: np.ndarray) -> dict[str, dict[str, int]]:
    """Employer -> people on site and accounted for at a muster point (a contractor's
    headcount is their firm's as much as the site's)."""
    found = _EMPLOYERS.get(model.build)
    if found is None or len(found[1]) != len(model.person_ids):
        employer = {
            str(f["id"]): str(f["properties"].get("employer") or "?")
            for f in model.layers.get("people", [])
        }
        names = sorted({employer.get(p, "?") for p in model.person_ids})
        code = {n: i for i, n in enumerate(names)}
        found = (names, np.array([code[employer.get(p, "?")] for p in model.person_ids], np.int64))
        if len(_EMPLOYERS) > 32:
            _EMPLOYERS.clear()
        _EMPLOYERS[model.build] = found
    names, codes = found
    total = np.bincount(codes, minlength=len(names))
    at = np.bincount(codes[accounted], minlength=len(names))
    return {
        n: {"on_site": int(t), "accounted": int(a)}
        for n, t, a in zip(names, total.tolist(), at.tolist(), strict=True)
    }


#: How long a site's layer tokens, once read, are taken as current (seconds): the bound on how
#: late this process sees a layer write by another process (an import on SQLite, another server
#: process on PostGIS: no trigger announces the servers' own writes). Its own writes are seen at
#: once (:class:`_LayerWrites`), and so are edits in the PostGIS tables (their wake-up,
#: ``command.layer_listener``, calls :meth:`SiteModels.forget`). Without it, a reconnect storm
#: read the tokens twice per subscription.
TOKENS_FRESH_S = 0.5


class _LayerWrites:
    """Counts this process's writes of each site's layer tokens, at flush and again at commit
    (ORM events on :class:`LayerRevision`, the one place tokens are written: ``touch_layer``).

    Tokens read while the count stood still are current but for other processes' writes: one
    read before a write's commit is stale, hence the count at commit too. The events are the
    mapper's and every session's, so this count is the process's, shared by all its models."""

    KEY = "rallypoint_layer_writes"

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, site_id: str) -> int:
        return self._counts.get(site_id, 0)

    def bump(self, site_ids: Iterable[str]) -> None:
        with self._lock:
            for site_id in site_ids:
                self._counts[site_id] = self._counts.get(site_id, 0) + 1

    def written(self, _mapper: Mapper[Any], _connection: Any, target: LayerRevision) -> None:
        self.bump([target.site_id])
        session = object_session(target)
        if session is not None:
            session.info.setdefault(self.KEY, set()).add(target.site_id)

    def committed(self, session: Session) -> None:
        self.bump(session.info.pop(self.KEY, ()))

    def rolled_back(self, session: Session) -> None:
        session.info.pop(self.KEY, None)


_LAYER_WRITES = _LayerWrites()
event.listen(LayerRevision, "after_insert", _LAYER_WRITES.written)
event.listen(LayerRevision, "after_update", _LAYER_WRITES.written)
event.listen(Session, "after_commit", _LAYER_WRITES.committed)
event.listen(Session, "after_rollback", _LAYER_WRITES.rolled_back)


@dataclass(frozen=True)
class _TokensRead:
    tokens: dict[str, str | None]
    at: float  # monotonic, taken before the read
    stamp: tuple[int, int]  # this process's writes and wake-ups for the site, before the read


class SiteModels:
    """One model per site, rebuilt when a layer changed since it was built: only the changed
    layers are read again, and only what depends on them is rebuilt (a zone's capacity does
    not rebuild the graphs; a network edit does not re-index the zones).

    Whether a layer changed is read from its revision token, kept for ``fresh_s`` seconds
    (:data:`TOKENS_FRESH_S`) unless this process writes the site's layers or :meth:`forget`
    is called (an edit in the PostGIS tables)."""

    def __init__(
        self,
        db: Database,
        *,
        fresh_s: float = TOKENS_FRESH_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.fresh_s = fresh_s
        self._monotonic = monotonic
        self._models: dict[str, SiteModel] = {}
        self._parts: dict[str, _Parts] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._read: dict[str, _TokensRead] = {}
        self._woken: dict[str, int] = {}

    def get(self, site_id: str) -> SiteModel:
        tokens = self.tokens(site_id)
        with self._lock:  # only to find the site's own lock: one site's build blocks no other
            lock = self._locks.setdefault(site_id, threading.Lock())
        with lock:
            model = self._models.get(site_id)
            if model is None or model.tokens != tokens:
                before = self._stamp(site_id), self._monotonic()
                model, parts = _build(self.db, site_id, self._parts.get(site_id))
                self._models[site_id] = model
                self._parts[site_id] = parts
                # As fresh as what the build read: tokens read earlier must not undo it.
                self._keep(site_id, _TokensRead(model.tokens, before[1], before[0]))
            return model

    def tokens(self, site_id: str) -> dict[str, str | None]:
        """Each layer's revision token: as read within ``fresh_s`` seconds, unless this
        process wrote the site's layers or was told of an edit since; else read now (NotFound
        for an unknown site)."""
        stamp, now = self._stamp(site_id), self._monotonic()
        held = self._read.get(site_id)
        if held is not None and held.stamp == stamp and now - held.at < self.fresh_s:
            return held.tokens
        tokens = _tokens(self.db, site_id)
        self._keep(site_id, _TokensRead(tokens, now, stamp))
        return tokens

    def current(self, site_id: str) -> bool:
        """Whether the site's model is built on tokens still taken as current: :meth:`get`
        would hand it out without a query (so a caller on the event loop may skip the
        worker thread)."""
        held, model = self._read.get(site_id), self._models.get(site_id)
        return (
            held is not None
            and model is not None
            and held.stamp == self._stamp(site_id)
            and self._monotonic() - held.at < self.fresh_s
            and model.tokens == held.tokens
        )

    def forget(self, site_id: str) -> None:
        """The site's layers changed behind this process (its tokens are read again)."""
        with self._lock:
            self._woken[site_id] = self._woken.get(site_id, 0) + 1

    def _stamp(self, site_id: str) -> tuple[int, int]:
        return _LAYER_WRITES.count(site_id), self._woken.get(site_id, 0)

    def _keep(self, site_id: str, read: _TokensRead) -> None:
        with self._lock:
            held = self._read.get(site_id)
            if held is None or (read.stamp, read.at) >= (held.stamp, held.at):
                self._read[site_id] = read
