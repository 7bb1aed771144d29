"""One-action plan activation: from a plan, a level, a place and a hazard to the full picture.

The pipeline's stages, each timed:
1. **threat**: the threat zones (:mod:`gis.hazards.threat`);
2. **exposure**: who and what lies inside them;
3. **evacuation**: routes for everyone who must move. That is everyone on site from L3 (plant)
   up, and below L3 everyone inside a zone. The routes never cross the innermost zone. With
   ``capacity_aware``, departure times follow from corridor and muster-point capacities;
4. **resources**: the nearest available resources of each kind, by travel time;
5. **plan**: the plan run, from the plan's current version, pinned;
6. **log**: the events: the activation, the plan's events, a notification request for each
   call-tree contact.

The answer is one snapshot, the same that subscribers receive. The event log keeps the request,
not the computed zones: zones, exposure and routes follow deterministically from it and the site
model, and are rebuilt on restart.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import shapely.geometry
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from command import events as event_log
from command.site_model import SiteModel, headcount
from gis.errors import FieldError, InvalidInput
from gis.geometry import validate_geometry
from gis.hazards import threat as threats
from gis.hazards.exposure import Exposure, ExposureChange, exposure, exposure_change
from gis.hazards.zones import ThreatAssessment
from plans.clock import Clock
from plans.engine import Actor, PlanEvent, PlanRun
from plans.model import Level, PlanTemplate
from plans.store import get_plan
from routing.capacity import site_capacity_plan
from routing.evacuation import EvacuationRoutes, Wind, evacuation_routes
from routing.resources import ResourceRoute
from routing.snapping import Snapped

log = logging.getLogger(__name__)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ToxicReleaseSpec(_Spec):
    model: Literal["toxic_release"]
    substance: str
    rate_g_s: float
    release_height_m: float = 0.0
    sigma_set: str = "briggs-rural"
    wind_speed_m_s: float
    wind_from_deg: float
    daytime: bool = True
    insolation: Literal["strong", "moderate", "slight"] | None = "moderate"
    cloud_cover_octas: float | None = None
    stability: str | None = None
    levels_ppm: tuple[float, ...] | None = None


class PoolFireSpec(_Spec):
    model: Literal["pool_fire"]
    fuel: str
    diameter_m: float


class ExplosionSpec(_Spec):
    model: Literal["explosion"]
    tnt_kg: float | None = None
    mass_kg: float | None = None
    substance: str | None = None
    yield_factor: float = 0.03


class RadiusSpec(_Spec):
    model: Literal["radius"]
    radii_m: tuple[float, ...]


class ErgSpec(_Spec):
    model: Literal["erg"]
    substance: str
    spill: Literal["small", "large"]
    daytime: bool
    wind_from_deg: float
    container: str | None = None
    wind: Literal["low", "moderate", "high"] | None = None


class PlanDesignSpec(_Spec):
    """The plan's design release (the credible worst case it was written for), under the wind
    given here or, when left out, the last reading of a wind station of the site. The logged
    request holds the figures it resolved to, and where each came from."""

    model: Literal["plan"]
    wind_speed_m_s: float | None = None
    wind_from_deg: float | None = None
    daytime: bool | None = None  # by default, 06:00 to 18:00 at the site
    cloud_cover_octas: float | None = None  # at night, by default a clear sky


HazardSpec = Annotated[
    ToxicReleaseSpec | PoolFireSpec | ExplosionSpec | RadiusSpec | ErgSpec | PlanDesignSpec,
    Field(discriminator="model"),
]


@dataclass(frozen=True)
class WindReading:
    """A wind station's last reading: what a plan's design release is evaluated under."""

    sensor_id: str
    speed_m_s: float
    from_deg: float
    at: str


#: A wind reading older than this (seconds) is not used for a design release: the station may
#: have failed, and a plume drawn on an old wind points the wrong way.
MAX_WIND_AGE_S = 600


def resolve_design(
    request: ActivationRequest,
    template: PlanTemplate,
    *,
    wind: WindReading | None,
    now: datetime,
    local_hour: int,
) -> tuple[ActivationRequest, dict[str, Any]]:
    """The request with its ``plan`` hazard replaced by the figures it stands for, and a record
    of where they came from. Refusals name the ``hazard.`` field to give instead."""
    spec = request.hazard
    assert isinstance(spec, PlanDesignSpec)
    scenario = template.scenario
    design = scenario.design_release
    if design is None:
        raise InvalidInput(
            f"plan '{template.id}' has no design release to start from",
            errors=[
                FieldError("hazard.model", "this plan gives no design release: send the figures")
            ],
        )
    source: dict[str, Any] = {"design_release": design.basis, "plan_id": template.id}
    kind = scenario.hazard.value
    hazard: Any
    if kind == "toxic_release":
        if not scenario.substances:
            raise InvalidInput(
                f"plan '{template.id}' names no substance",
                errors=[
                    FieldError("hazard.model", "the plan names no substance: send the figures")
                ],
            )
        speed, from_deg = spec.wind_speed_m_s, spec.wind_from_deg
        if speed is None or from_deg is None:
            if wind is None:
                raise InvalidInput(
                    "no wind station of the site has reported a wind yet",
                    errors=[
                        FieldError(
                            "hazard.wind_from_deg",
                            "no wind station reading: give wind_speed_m_s and wind_from_deg",
                        )
                    ],
                )
            age_s = (now - datetime.fromisoformat(wind.at)).total_seconds()
            if age_s > MAX_WIND_AGE_S:
                raise InvalidInput(
                    f"the last wind reading ({wind.sensor_id}) is {age_s / 60:.0f} minutes old",
                    errors=[
                        FieldError(
                            "hazard.wind_from_deg",
                            f"the last wind station reading is older than "
                            f"{MAX_WIND_AGE_S // 60} minutes: give wind_speed_m_s and "
                            "wind_from_deg",
                        )
                    ],
                )
            speed = wind.speed_m_s if speed is None else speed
            from_deg = wind.from_deg if from_deg is None else from_deg
            source["wind"] = {"sensor_id": wind.sensor_id, "at": wind.at}
        daytime = spec.daytime
        if daytime is None:
            daytime = 6 <= local_hour < 18
            source["daytime"] = f"not given: {'day' if daytime else 'night'} by the site's clock"
        cloud = spec.cloud_cover_octas
        if not daytime and cloud is None:
            cloud = 0.0
            source["cloud_cover"] = "not given: a clear night assumed (the longest footprint)"
        hazard = ToxicReleaseSpec(
            model="toxic_release",
            substance=scenario.substances[0],
            rate_g_s=design.rate_g_s or 0.0,
            release_height_m=design.release_height_m or 0.0,
            wind_speed_m_s=speed,
            wind_from_deg=from_deg,
            daytime=daytime,
            cloud_cover_octas=cloud,
        )
    elif kind == "fire":
        hazard = PoolFireSpec(
            model="pool_fire", fuel=design.fuel or "", diameter_m=design.diameter_m or 0.0
        )
    elif kind == "explosion":
        hazard = ExplosionSpec(
            model="explosion",
            mass_kg=design.mass_kg,
            substance=scenario.substances[0] if scenario.substances else None,
        )
    else:
        hazard = RadiusSpec(model="radius", radii_m=design.radii_m or ())
    return request.model_copy(update={"hazard": hazard}), source


class ActivationRequest(_Spec):
    plan_id: str
    level: Level
    location: dict[str, Any]  # a GeoJSON Point or Polygon (WGS84)
    hazard: HazardSpec
    capacity_aware: bool = False
    note: str | None = Field(default=None, max_length=2000)


@dataclass
class Incident:
    id: str
    site_id: str
    request: ActivationRequest
    activated_at: datetime
    activated_by: str
    run: PlanRun
    assessment: ThreatAssessment
    exposure: Exposure
    routes: EvacuationRoutes
    moving: np.ndarray  # indices of the people who must move
    resources: dict[str, list[ResourceRoute]]
    capacity: dict[str, Any] | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    seq: int = 0  # the last event of the site log this incident's picture includes
    #: Duty assignments: plan role -> the usernames who hold it in this incident.
    duties: dict[str, set[str]] = field(default_factory=dict)
    #: The site model's positions version the routes were computed from.
    positions_version: int = 0

    def apply_duty(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Follow a ``duty.assigned`` or ``duty.released`` event."""
        holders = self.duties.setdefault(str(data["role"]), set())
        if event_type == "duty.assigned":
            holders.add(str(data["username"]))
        else:
            holders.discard(str(data["username"]))
            if not holders:
                del self.duties[str(data["role"])]


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round((time.perf_counter() - start) * 1000, 3)


def assess(model: SiteModel, source: tuple[float, float], spec: Any) -> ThreatAssessment:
    """The threat zones of ``spec`` at ``source``."""
    crs = model.site.crs
    if isinstance(spec, ToxicReleaseSpec):
        return threats.toxic_release(
            crs,
            source,
            threats.ToxicRelease(
                spec.substance,
                spec.rate_g_s,
                release_height_m=spec.release_height_m,
                sigma_set=spec.sigma_set,
                levels_ppm=spec.levels_ppm,
            ),
            threats.Weather(
                spec.wind_speed_m_s,
                spec.wind_from_deg,
                daytime=spec.daytime,
                insolation=spec.insolation,
                cloud_cover_octas=spec.cloud_cover_octas,
                stability=spec.stability,
            ),
        )
    if isinstance(spec, PoolFireSpec):
        return threats.pool_fire(crs, source, fuel=spec.fuel, diameter_m=spec.diameter_m)
    if isinstance(spec, ExplosionSpec):
        return threats.explosion(
            crs,
            source,
            tnt_kg=spec.tnt_kg,
            mass_kg=spec.mass_kg,
            substance=spec.substance,
            yield_factor=spec.yield_factor,
        )
    if isinstance(spec, RadiusSpec):
        return threats.radius_zones(crs, source, spec.radii_m)
    assert isinstance(spec, ErgSpec)  # the discriminated union has no other member
    return threats.erg_zones(
        crs,
        source,
        substance=spec.substance,
        spill=spec.spill,
        daytime=spec.daytime,
        wind_from_deg=spec.wind_from_deg,
        container=spec.container,
        wind=spec.wind,
    )


def activate(
    session: Session,
    model: SiteModel,
    request: ActivationRequest,
    *,
    actor: str,
    clock: Clock,
    incident_id: str | None = None,
    dry_run: bool = False,
    wind: WindReading | None = None,
) -> tuple[Incident, list[event_log.LoggedEvent]]:
    """Run the pipeline and log its events in ``session``'s transaction (``dry_run``: log
    nothing; restart recovery recomputes the picture of an incident already logged). A
    ``plan`` hazard is resolved first, under ``wind`` when it gives none."""
    timings: dict[str, float] = {}
    site_id = model.site.id
    incident_id = incident_id or f"inc-{uuid.uuid4().hex[:12]}"
    hazard_source: dict[str, Any] | None = None
    with _stage(timings, "load"):
        stored = get_plan(session, site_id, request.plan_id)
        if isinstance(request.hazard, PlanDesignSpec):
            now = clock.now()
            local = now.astimezone(ZoneInfo(model.site.timezone))
            request, hazard_source = resolve_design(
                request, stored.template, wind=wind, now=now, local_hour=local.hour
            )
        kind = request.location.get("type")
        place = validate_geometry(
            request.location,
            expected_type=kind if kind in ("Point", "Polygon") else "Point",
            extent=model.site.extent,
            field_name="location",
        )
        assert place is not None  # required
        point = place.representative_point()
        source = (float(point.x), float(point.y))
    with _stage(timings, "threat"):
        assessment = check_spec(lambda: assess(model, source, request.hazard))
    with _stage(timings, "exposure"):
        found = exposure(assessment, model.index)
    with _stage(timings, "evacuation"):
        with model.lock:  # positions and their snaps from the same moment
            lonlat, snapped = model.person_lonlat, model.people_snapped
            positions_version = model.positions_version
        routes = _routes(model, assessment, request.hazard, lonlat, snapped)
        if request.level.rank >= Level.L3.rank:
            moving = np.arange(len(model.person_ids))
        else:
            inside = set(found.highest.get("people", {}))
            moving = np.array(
                [i for i, pid in enumerate(model.person_ids) if pid in inside], dtype=np.int64
            )
    capacity = None
    if request.capacity_aware:
        with _stage(timings, "capacity"):
            plan = site_capacity_plan(
                model.foot, routes, model.musters.capacity, zones=assessment.zones
            )
            capacity = {
                "egress_s": plan.egress_s,
                "lower_bound_s": plan.lower_bound_s,
                "arrivals": {
                    m: [[float(t), int(n)] for t, n in curve]
                    for m, curve in plan.arrival_curves().items()
                },
            }
    with _stage(timings, "resources"):
        nearest = model.resources.nearest(source, k=5)
    with _stage(timings, "plan"):
        run = PlanRun.activate(
            clock,
            run_id=incident_id,
            template=stored.template,
            template_version=stored.version,
            level=request.level,
            actor=Actor(actor, frozenset({stored.template.command_role})),
            incident={"site_id": site_id, "location": list(source)},
        )
    incident = Incident(
        id=incident_id,
        site_id=site_id,
        request=request,
        activated_at=run.state.activated_at,
        activated_by=actor,
        run=run,
        assessment=assessment,
        exposure=found,
        routes=routes,
        moving=moving,
        resources=nearest,
        capacity=capacity,
        timings_ms=timings,
        positions_version=positions_version,
    )
    if dry_run:
        return incident, []
    with _stage(timings, "log"):
        drafts = [
            event_log.Draft(
                "incident.activated",
                actor,
                {
                    "request": request.model_dump(mode="json"),
                    **({"hazard_source": hazard_source} if hazard_source else {}),
                    "plan_version": stored.version,
                    "counts": {str(k): v for k, v in found.counts().items()},
                    "notes": list(assessment.notes),
                },
                incident_id,
                incident.activated_at,
            ),
            *plan_drafts(incident, run.events),
        ]
        logged = event_log.append_many(session, site_id, drafts)
    incident.seq = logged[-1].seq
    log.info("incident %s activated at %s: %s", incident_id, site_id, timings)
    return incident, logged


@dataclass
class Reassessment:
    """An incident under a new wind, computed but not yet applied: the caller applies it once
    the change is logged, so memory never runs ahead of the log."""

    request: ActivationRequest
    assessment: ThreatAssessment
    exposure: Exposure
    routes: EvacuationRoutes
    moving: np.ndarray
    positions_version: int
    change: ExposureChange  # who entered or left the zones
    rerouted: list[str]  # the people who must move whose route changed

    def apply(self, incident: Incident) -> None:
        incident.request = self.request
        incident.assessment, incident.exposure = self.assessment, self.exposure
        incident.routes, incident.moving = self.routes, self.moving
        incident.positions_version = self.positions_version


def _routes(
    model: SiteModel,
    zones: ThreatAssessment,
    hazard: Any,
    lonlat: np.ndarray,
    snapped: Snapped | None,
) -> EvacuationRoutes:
    upwind = None
    if isinstance(hazard, ToxicReleaseSpec | ErgSpec):
        upwind = Wind(hazard.wind_from_deg, zones.source_lonlat)
    return evacuation_routes(
        model.foot,
        model.person_ids,
        lonlat,
        model.musters,
        zones=zones.zones,
        wind=upwind,
        snapped_people=snapped,
    )


def reassess(model: SiteModel, incident: Incident, hazard: ToxicReleaseSpec) -> Reassessment:
    """The incident under a new wind: zones, exposure and routes again, and what changed."""
    source = incident.assessment.source_lonlat
    assessment = check_spec(lambda: assess(model, source, hazard))
    found = exposure(assessment, model.index)
    with model.lock:  # one consistent set of positions for both route sets
        lonlat, snapped = model.person_lonlat, model.people_snapped
        version = model.positions_version
    routes = _routes(model, assessment, hazard, lonlat, snapped)
    # "Rerouted" compares routes from the same positions: people who only walked on (everyone,
    # during an evacuation) are not news; a route that the new wind changed is.
    before = incident.routes
    if incident.positions_version != version:
        before = _routes(model, incident.assessment, incident.request.hazard, lonlat, snapped)
    moving = incident.moving
    if incident.run.state.level.rank < Level.L3.rank:
        inside = set(found.highest.get("people", {}))
        moving = np.array(
            [i for i, pid in enumerate(model.person_ids) if pid in inside], dtype=np.int64
        )
    return Reassessment(
        request=incident.request.model_copy(update={"hazard": hazard}),
        assessment=assessment,
        exposure=found,
        routes=routes,
        moving=moving,
        positions_version=version,
        change=exposure_change(incident.exposure, found),
        rerouted=rerouted(before, routes, moving),
    )


#: A walk this much longer or shorter (seconds) is a new route, worth telling the person.
REROUTE_S = 1.0


def rerouted(before: EvacuationRoutes, after: EvacuationRoutes, people: np.ndarray) -> list[str]:
    """The ids of ``people`` whose route changed: another muster point, a walk time that differs
    by more than :data:`REROUTE_S`, or a route found or lost."""
    if len(before.person_ids) != len(after.person_ids) or not len(people):
        return [after.person_ids[int(i)] for i in people]
    old_t, new_t = before.walk_time_s[people], after.walk_time_s[people]
    finite = np.isfinite(old_t) & np.isfinite(new_t)
    changed = (
        (before.muster[people] != after.muster[people])
        | (np.isfinite(old_t) != np.isfinite(new_t))
        | (finite & (np.abs(np.where(finite, old_t - new_t, 0.0)) > REROUTE_S))
    )
    return [after.person_ids[int(i)] for i in people[changed]]


def route_from(
    model: SiteModel,
    hazard: Any,
    assessment: ThreatAssessment,
    lonlat: tuple[float, float],
) -> dict[str, Any]:
    """One evacuation route from a point (where a person is now) under an incident's zones
    and wind: what a responder's phone shows after its holder has moved. The picture's routes
    start where people were at activation or at the last wind change."""
    upwind = None
    if isinstance(hazard, ToxicReleaseSpec | ErgSpec):
        upwind = Wind(hazard.wind_from_deg, assessment.source_lonlat)
    routes = evacuation_routes(
        model.foot,
        ["here"],
        np.array([lonlat], dtype=np.float64),
        model.musters,
        zones=assessment.zones,
        wind=upwind,
    )
    line = routes.route_line(0)
    found = routes.muster[0] >= 0
    return {
        "from": [round(lonlat[0], 7), round(lonlat[1], 7)],
        "muster": routes.muster_ids[routes.muster[0]] if found else None,
        "walk_time_s": round(float(routes.walk_time_s[0]), 1) if found else None,
        "length_m": round(float(routes.length_m[0]), 1) if found else None,
        "inside_innermost_zone": bool(routes.inside_inner_zone[0]),
        "route": shapely.geometry.mapping(line) if line is not None else None,
        "trapped": routes.trapped[0].reason if routes.trapped else None,
    }


def plan_drafts(incident: Incident, plan_events: list[PlanEvent]) -> list[event_log.Draft]:
    """The plan run's events for the site log; each call tree also asks for notifications."""
    out = []
    for event in plan_events:
        data = event.as_dict()
        data.pop("run_id")
        out.append(
            event_log.Draft(
                f"plan.{event.type}", event.actor or "system", data, incident.id, event.at
            )
        )
        if event.type == "calltree.activated":
            for entry in event.data["entries"]:
                notice = {
                    "level": event.data["level"],
                    "role": entry["role"],
                    "order": entry["order"],
                    "contact": entry["contacts"][0],
                    "fallbacks": entry["contacts"][1:],
                    "acknowledge_within_s": entry["acknowledge_within_s"],
                }
                out.append(
                    event_log.Draft(
                        "notification.requested", "system", notice, incident.id, event.at
                    )
                )
    return out


#: Forest node coordinates travel as integer steps of this many degrees from an origin
#: (about 0.1 m): half the size of decimal lon/lat, for pictures that hold every route.
FOREST_UNIT_DEG = 1e-6


def route_forest(routes: EvacuationRoutes, people: np.ndarray) -> dict[str, Any]:
    """The routes of ``people`` as one compact forest: the nodes they pass, each node's next
    node towards its muster point, and where each person starts.

    Node ``i`` lies at ``origin + unit_deg * (xy[2i], xy[2i+1])`` (lon, lat). A person inside
    the innermost zone starts in the escape forest: ``escape`` lists ``[node, next]`` pairs that
    lead out to the node where the safe part of the route begins; from there ``next`` leads on.
    -1 ends a chain. A client draws any person's route by following the pointers.
    """
    graph = routes._graph
    n = graph.node_count
    reachable = routes.muster[people] >= 0
    direct = routes._direct[people]
    walking = people[reachable & ~direct]
    escaping = walking[routes._escaping[walking]] if routes._escape is not None else walking[:0]
    outer_pred = routes._outer.predecessors[:n]
    marked = np.zeros(n, dtype=bool)

    def mark(pred: np.ndarray, starts: np.ndarray, marks: np.ndarray) -> None:
        at = np.unique(starts)
        while len(at):
            marks[at] = True
            nxt = pred[at]
            at = nxt[(nxt >= 0) & (nxt < n)]
            at = at[~marks[at]]

    mark(outer_pred, routes._join_node[walking], marked)
    escape_marked = np.zeros(n, dtype=bool)
    escape_pred = None
    if routes._escape is not None and len(escaping):
        escape_pred = routes._escape.predecessors[:n]
        mark(escape_pred, routes._first_node[escaping], escape_marked)
    used = np.flatnonzero(marked | escape_marked)
    local = np.full(n, -1, dtype=np.int64)
    local[used] = np.arange(len(used))

    def pointers(pred: np.ndarray | None, marks: np.ndarray) -> list[int]:
        if pred is None:
            return [-1] * len(used)
        nxt = pred[used]
        ok = marks[used] & (nxt >= 0) & (nxt < n)
        result: list[int] = np.where(ok, local[np.where(ok, nxt, 0)], -1).tolist()
        return result

    first = np.where(routes._escaping, routes._first_node, routes._join_node)
    lonlat = graph.node_lonlat[used]
    corner = lonlat.min(axis=0) if len(used) else np.zeros(2)
    origin = np.round(np.floor(corner / FOREST_UNIT_DEG) * FOREST_UNIT_DEG, 6)
    steps = np.rint((lonlat - origin) / FOREST_UNIT_DEG).astype(np.int64)
    escape = np.array(pointers(escape_pred, escape_marked), dtype=np.int64)
    leads = np.flatnonzero(escape >= 0)
    return {
        "origin": origin.tolist(),
        "unit_deg": FOREST_UNIT_DEG,
        "xy": steps.ravel().tolist(),
        "next": pointers(outer_pred, marked),
        "escape": np.column_stack([leads, escape[leads]]).tolist(),
        "start": {
            routes.person_ids[int(i)]: int(local[first[i]]) for i in walking if local[first[i]] >= 0
        },
    }


def snapshot(model: SiteModel, incident: Incident, *, seq: int) -> dict[str, Any]:
    """Everything a map wall shows about one incident, as of event ``seq``."""
    routes = incident.routes
    people = incident.moving
    muster_ids = routes.muster_ids

    def number(value: float) -> float | None:
        return round(float(value), 1) if np.isfinite(value) else None

    state = incident.run.state
    return {
        "seq": seq,
        "incident": {
            "id": incident.id,
            "site_id": incident.site_id,
            "status": "active" if incident.run.active else "stood_down",
            "plan_id": incident.request.plan_id,
            "plan_version": state.template_version,
            "level": state.level.value,
            "activated_at": incident.activated_at.isoformat(),
            "activated_by": incident.activated_by,
            "location": incident.request.location,
            "hazard": incident.request.hazard.model_dump(mode="json"),
        },
        "threat": incident.assessment.as_geojson(),
        "exposure": incident.exposure.as_dict(),
        "evacuation": {
            "people": [
                {
                    "id": routes.person_ids[int(i)],
                    "muster": muster_ids[routes.muster[i]] if routes.muster[i] >= 0 else None,
                    "walk_time_s": number(routes.walk_time_s[i]),
                    "length_m": number(routes.length_m[i]),
                    "inside_innermost_zone": bool(routes.inside_inner_zone[i]),
                }
                for i in people
            ],
            "trapped": [t.__dict__ for t in routes.trapped],
            "unusable_musters": routes.unusable_musters,
            "routes": route_forest(routes, people),
            "capacity_plan": incident.capacity,
        },
        "resources": {
            kind: [
                {
                    "id": r.id,
                    "mode": r.mode,
                    "travel_time_s": round(r.travel_time_s, 1),
                    "route": [[round(x, 7), round(y, 7)] for x, y in r.route],
                }
                for r in found
            ]
            for kind, found in incident.resources.items()
        },
        "plan": {
            "level": state.level.value,
            "command_role": state.template.command_role,
            "roles": [{"id": r.id, "name": r.name} for r in state.template.roles],
            "duties": {role: sorted(users) for role, users in sorted(incident.duties.items())},
            "steps": [
                {
                    "id": s.id,
                    "level": s.level.value,
                    "role": s.role,
                    "status": s.status.value,
                    "due_at": s.due_at.isoformat() if s.due_at else None,
                    "overdue": s.overdue,
                    "withdrawn": s.withdrawn,
                }
                for s in state.steps.values()
            ],
        },
        "headcount": headcount(model, incident.moving),
        "timings_ms": incident.timings_ms,
    }


def check_spec(make: Callable[[], ThreatAssessment]) -> ThreatAssessment:
    """The hazard model's answer; its refusals name fields under ``hazard.``."""
    try:
        return make()
    except InvalidInput as exc:
        raise InvalidInput(
            exc.detail,
            errors=[FieldError(f"hazard.{e.field}", e.reason, e.row) for e in exc.errors],
        ) from exc
