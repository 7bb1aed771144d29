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
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from gis.hazards.zones import ThreatAssessment, ThreatZone
from plans.clock import Clock
from plans.engine import Actor, PlanEvent, PlanRun
from plans.model import Level, PlanTemplate
from plans.store import StoredPlan, approved_plan, get_plan
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
    #: The same plan already runs for this place: activate a second incident all the same.
    second_incident: bool = False


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
    #: Per person (the site model's rows), the highest threat level at their latest position.
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    #: The site model (its ``build``) the picture was computed on.
    model_build: int = 0
    #: Where the plan says to go when no muster point is usable (the plan's text), if anywhere.
    shelter_in_place: str | None = None
    #: The routes are of the people before a layer change the incident could not be planned
    #: on: moved people are no longer routed along them (``incident.network_changed`` said so).
    routes_stale: bool = False
    #: Nearest-resource kinds short of reachable units: kind -> [{id, reason}].
    resources_unreachable: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: The drill this incident is the exercise of (``command.drills``); None: a real incident.
    exercise: str | None = None
    #: Network edges (feature ids) closed for this incident, and resources out of service for
    #: it: its routes and nearest resources avoid them; the site model is not changed.
    closed_edges: tuple[str, ...] = ()
    resources_out: frozenset[str] = frozenset()
    #: Everyone who must move stands at a muster point (``incident.mustered`` was logged when
    #: it last became so); people who must move and are not there make it False again.
    mustered: bool = False
    #: Everyone who has had to move since the activation (person ids): full muster is when
    #: they all stand at a muster point.
    to_account: set[str] = field(default_factory=set)

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


def people_levels(zones: Sequence[ThreatZone], lonlat: np.ndarray) -> np.ndarray:
    """Per position, the highest threat level it lies in (0: outside every zone)."""
    level = np.zeros(len(lonlat), dtype=np.int8)
    if not len(lonlat):
        return level
    for zone in sorted(zones, key=lambda z: z.level):
        hit = np.asarray(shapely.intersects_xy(zone.geometry, lonlat[:, 0], lonlat[:, 1]), bool)
        level[hit] = zone.level  # ascending levels: the last one is the highest
    return level


def must_move(level: Level, levels: np.ndarray) -> np.ndarray:
    """The rows of the people who must move at response ``level``: everyone on site from L3
    (plant) up; below it, everyone inside a threat zone."""
    if level.rank >= Level.L3.rank:
        return np.arange(len(levels), dtype=np.int64)
    return np.flatnonzero(levels > 0).astype(np.int64)


def with_people(found: Exposure, person_ids: Sequence[str], levels: np.ndarray) -> Exposure:
    """``found`` with its people taken from their latest positions (``levels``) rather than
    the people layer the site index was built from."""
    people = {person_ids[int(i)]: int(levels[i]) for i in np.flatnonzero(levels)}
    highest = {**found.highest, "people": people}
    ranked = sorted(people.items())
    inside = {
        level: {**layers, "people": tuple(p for p, at in ranked if at >= level)}
        for level, layers in found.inside.items()
    }
    return Exposure(inside, highest)


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
    plan_version: int | None = None,
) -> tuple[Incident, list[event_log.LoggedEvent]]:
    """Run the pipeline and log its events in ``session``'s transaction (``dry_run``: log
    nothing; restart recovery recomputes the picture of an incident already logged). A
    ``plan`` hazard is resolved first, under ``wind`` when it gives none. The plan is its
    approved version, or ``plan_version`` (the one an incident already logged ran on)."""
    if plan_version is None:
        stored = approved_plan(session, model.site.id, request.plan_id)
    else:
        stored = get_plan(session, model.site.id, request.plan_id, version=plan_version)
    incident, drafts = prepare(
        stored,
        model,
        request,
        actor=actor,
        clock=clock,
        incident_id=incident_id,
        wind=wind,
    )
    if dry_run:
        return incident, []
    return incident, log_activation(session, incident, drafts)


def log_activation(
    session: Session,
    incident: Incident,
    drafts: Sequence[event_log.Draft],
    *,
    expect: int | None = None,
) -> list[event_log.LoggedEvent]:
    """Log a prepared activation's events in ``session``'s transaction (``expect``: where the
    deciding process's picture of the site ends, see ``event_log.append_many``)."""
    exercises = {incident.id: incident.exercise} if incident.exercise else None
    with _stage(incident.timings_ms, "log"):
        logged = event_log.append_many(
            session, incident.site_id, drafts, exercises=exercises, expect=expect
        )
    incident.seq = logged[-1].seq
    log.info("incident %s activated at %s: %s", incident.id, incident.site_id, incident.timings_ms)
    return logged


def prepare(
    stored: StoredPlan,
    model: SiteModel,
    request: ActivationRequest,
    *,
    actor: str,
    clock: Clock,
    incident_id: str | None = None,
    wind: WindReading | None = None,
) -> tuple[Incident, list[event_log.Draft]]:
    """The whole picture of an activation of the plan ``stored`` and the events that will log
    it, computed without the database: the command post computes outside its lock and takes
    the lock only to log and publish."""
    timings: dict[str, float] = {}
    site_id = model.site.id
    incident_id = incident_id or f"inc-{uuid.uuid4().hex[:12]}"
    hazard_source: dict[str, Any] | None = None
    with _stage(timings, "load"):
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
        levels = people_levels(assessment.zones, lonlat)
        found = with_people(found, model.person_ids, levels)
        routes = _routes(model, assessment, request.hazard, lonlat, snapped, stored.template)
        moving = must_move(request.level, levels)
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
        nearest, unreachable = nearest_resources(model, source)
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
        levels=levels,
        model_build=model.build,
        shelter_in_place=stored.template.scenario.shelter_in_place,
        resources_unreachable=unreachable,
    )
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
    return incident, drafts


@dataclass
class Reassessment:
    """An incident under a new wind or a new site model, computed but not yet applied: the
    caller applies it once the change is logged, so memory never runs ahead of the log."""

    request: ActivationRequest
    assessment: ThreatAssessment
    exposure: Exposure
    routes: EvacuationRoutes
    moving: np.ndarray
    levels: np.ndarray
    positions_version: int
    model_build: int
    resources: dict[str, list[ResourceRoute]]
    resources_unreachable: dict[str, list[dict[str, Any]]]
    change: ExposureChange  # who entered or left the zones
    rerouted: list[str]  # the people who must move whose route changed
    closed_edges: tuple[str, ...] = ()
    resources_out: frozenset[str] = frozenset()

    def apply(self, incident: Incident) -> None:
        incident.request = self.request
        incident.closed_edges, incident.resources_out = self.closed_edges, self.resources_out
        incident.assessment, incident.exposure = self.assessment, self.exposure
        # Computed outside the post's lock: a command may have changed the level meanwhile.
        incident.routes = self.routes
        incident.moving = must_move(incident.run.state.level, self.levels)
        incident.levels = self.levels
        incident.positions_version = self.positions_version
        incident.model_build = self.model_build
        incident.resources = self.resources
        incident.resources_unreachable = self.resources_unreachable
        incident.routes_stale = False


def _routes(
    model: SiteModel,
    zones: ThreatAssessment,
    hazard: Any,
    lonlat: np.ndarray,
    snapped: Snapped | None,
    template: PlanTemplate,
    closed: Sequence[str] = (),
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
        unusable_from_level=template.scenario.musters_unusable_from_level,
        closed=closed,
    )


def nearest_resources(
    model: SiteModel,
    source: tuple[float, float],
    *,
    closed: Sequence[str] = (),
    out: frozenset[str] = frozenset(),
) -> tuple[dict[str, list[ResourceRoute]], dict[str, list[dict[str, Any]]]]:
    """The 5 nearest reachable available units of each kind (none of ``out``, over no edge
    of ``closed``), and the units of the kinds short of 5 that cannot be reached, with the
    reason."""
    found = model.resources.nearest_resources(source, k=5 + len(out), closed=closed)
    routes = {
        kind: [r for r in found_routes if r.id not in out][:5]
        for kind, found_routes in found.routes.items()
    }
    return routes, {
        kind: [
            {
                "id": u.id,
                "mode": u.mode,
                "lon": round(u.lon, 7),
                "lat": round(u.lat, 7),
                "reason": u.reason,
            }
            for u in units
        ]
        for kind, units in found.unreachable.items()
    }


def reassess(
    model: SiteModel,
    incident: Incident,
    hazard: Any | None = None,
    *,
    closed_edges: tuple[str, ...] | None = None,
    resources_out: frozenset[str] | None = None,
) -> Reassessment:
    """The incident again, under a new wind (``hazard``), on a rebuilt site model, or with
    other edges closed or resources out of service for it: zones, exposure, routes,
    resources, who must move, and what changed."""
    hazard = incident.request.hazard if hazard is None else hazard
    source = incident.assessment.source_lonlat
    template = incident.run.state.template
    assessment = check_spec(lambda: assess(model, source, hazard))
    with model.lock:  # one consistent set of positions for both route sets
        lonlat, snapped = model.person_lonlat, model.people_snapped
        version = model.positions_version
    levels = people_levels(assessment.zones, lonlat)
    found = with_people(exposure(assessment, model.index), model.person_ids, levels)
    closed = closed_edges if closed_edges is not None else incident.closed_edges
    routes = _routes(model, assessment, hazard, lonlat, snapped, template, closed)
    # "Rerouted" compares routes from the same positions: people who only walked on (everyone,
    # during an evacuation) are not news; a route that the new wind changed is.
    before = incident.routes
    if incident.positions_version != version and incident.model_build == model.build:
        before = _routes(
            model,
            incident.assessment,
            incident.request.hazard,
            lonlat,
            snapped,
            template,
            incident.closed_edges,
        )
    moving = must_move(incident.run.state.level, levels)
    nearest, unreachable = nearest_resources(
        model,
        (source[0], source[1]),
        closed=closed,
        out=resources_out if resources_out is not None else incident.resources_out,
    )
    return Reassessment(
        request=incident.request.model_copy(update={"hazard": hazard}),
        assessment=assessment,
        exposure=found,
        routes=routes,
        moving=moving,
        levels=levels,
        positions_version=version,
        model_build=model.build,
        resources=nearest,
        resources_unreachable=unreachable,
        change=exposure_change(incident.exposure, found),
        rerouted=rerouted(before, routes, [routes.person_ids[int(i)] for i in moving]),
        closed_edges=closed,
        resources_out=resources_out if resources_out is not None else incident.resources_out,
    )


@dataclass
class Followed:
    """An incident after people moved, computed but not yet applied (as :class:`Reassessment`)."""

    levels: np.ndarray
    exposure: Exposure
    routes: EvacuationRoutes
    moving: np.ndarray
    positions_version: int
    #: Who walked into a zone (new level), out of one, or from one level to another.
    change: dict[str, Any]
    #: The people who must move now and did not before: each has a route from where they are.
    must_move: list[str]

    def apply(self, incident: Incident) -> None:
        incident.levels, incident.exposure = self.levels, self.exposure
        incident.routes, incident.moving = self.routes, self.moving
        incident.positions_version = self.positions_version


def follow_positions(model: SiteModel, incident: Incident, rows: np.ndarray) -> Followed:
    """The incident after the people at ``rows`` moved to their latest positions: their zone
    levels, who must move, and their routes from where they are now. Only the moved people are
    routed again, along the incident's kept search (a pointer walk each)."""
    with model.lock:
        lonlat, snapped = model.person_lonlat, model.people_snapped
        version = model.positions_version
    rows = np.unique(rows)
    now = people_levels(incident.assessment.zones, lonlat[rows])
    before = incident.levels[rows]
    ids = model.person_ids
    pairs = list(zip(rows.tolist(), before.tolist(), now.tolist(), strict=True))
    entered = {ids[r]: n for r, b, n in pairs if n and not b}
    left = [ids[r] for r, b, n in pairs if b and not n]
    changed = {ids[r]: [b, n] for r, b, n in pairs if b and n and b != n}
    levels = incident.levels
    found = incident.exposure
    if entered or left or changed:
        levels = levels.copy()
        levels[rows] = now
        found = with_people(found, ids, levels)
    moving = must_move(incident.run.state.level, levels)
    newly = np.setdiff1d(moving, incident.moving, assume_unique=True)
    part = (
        Snapped(snapped.feature[rows], snapped.t[rows], snapped.distance_m[rows])
        if snapped is not None
        else None
    )
    routes = (
        incident.routes
        if incident.routes_stale
        else incident.routes.with_people(rows, lonlat[rows], snapped=part)
    )
    change: dict[str, Any] = {}
    if entered or left or changed:
        # With the counts per zone now (zones nest, as the picture's exposure counts): a wall
        # sets its figures from them, as it cannot tell from `left` which zone someone left.
        counts = {str(k): v for k, v in found.counts().items()}
        change = {"entered": entered, "left": left, "changed": changed, "counts": counts}
    return Followed(
        levels=levels,
        exposure=found,
        routes=routes,
        moving=moving,
        positions_version=version,
        change=change,
        must_move=[ids[int(i)] for i in newly],
    )


#: A walk this much longer or shorter (seconds) is a new route, worth telling the person.
REROUTE_S = 1.0


def rerouted(before: EvacuationRoutes, after: EvacuationRoutes, people: Sequence[str]) -> list[str]:
    """The ids of ``people`` whose route changed: another muster point, a walk time that differs
    by more than :data:`REROUTE_S`, or a route found or lost. People are matched by id, so
    routes on two versions of the site model compare."""
    old_row = {pid: i for i, pid in enumerate(before.person_ids)}
    new_row = {pid: i for i, pid in enumerate(after.person_ids)}
    out = []
    for pid in people:
        i, j = old_row.get(pid), new_row.get(pid)
        if i is None or j is None:
            out.append(pid)
            continue
        old_m, new_m = int(before.muster[i]), int(after.muster[j])
        old_at = before.muster_ids[old_m] if old_m >= 0 else None
        new_at = after.muster_ids[new_m] if new_m >= 0 else None
        old_t, new_t = float(before.walk_time_s[i]), float(after.walk_time_s[j])
        if (
            old_at != new_at
            or np.isfinite(old_t) != np.isfinite(new_t)
            or (np.isfinite(old_t) and abs(old_t - new_t) > REROUTE_S)
        ):
            out.append(pid)
    return out


def route_from(routes: EvacuationRoutes, lonlat: tuple[float, float]) -> dict[str, Any]:
    """One evacuation route from a point (where a person is now) along the incident's kept
    search: its zones, wind, closures and muster verdicts, as the picture's routes are. What a
    responder's phone shows after its holder has moved."""
    here = routes.search.routes(["here"], np.array([lonlat], dtype=np.float64))
    line = here.route_line(0)
    found = here.muster[0] >= 0
    return {
        "from": [round(lonlat[0], 7), round(lonlat[1], 7)],
        "muster": here.muster_ids[here.muster[0]] if found else None,
        "walk_time_s": round(float(here.walk_time_s[0]), 1) if found else None,
        "length_m": round(float(here.length_m[0]), 1) if found else None,
        "inside_innermost_zone": bool(here.inside_inner_zone[0]),
        "route": shapely.geometry.mapping(line) if line is not None else None,
        "trapped": here.trapped[0].reason if here.trapped else None,
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


def evacuees(routes: EvacuationRoutes, people: np.ndarray) -> list[dict[str, Any]]:
    """Per person who must move: their muster point, walk and whether they start inside the
    innermost zone (numbers to 0.1, None where there is no route)."""

    def column(values: np.ndarray) -> list[float | None]:
        picked = values[people]
        rounded: list[float] = np.round(np.where(np.isfinite(picked), picked, 0.0), 1).tolist()
        return [
            r if ok else None for r, ok in zip(rounded, np.isfinite(picked).tolist(), strict=True)
        ]

    ids = [routes.person_ids[i] for i in people.tolist()]
    names = [*routes.muster_ids, None]
    musters = [names[m] for m in routes.muster[people].tolist()]  # -1: the None at the end
    inside = routes.inside_inner_zone[people].tolist()
    return [
        {"id": i, "muster": m, "walk_time_s": w, "length_m": n, "inside_innermost_zone": z}
        for i, m, w, n, z in zip(
            ids, musters, column(routes.walk_time_s), column(routes.length_m), inside, strict=True
        )
    ]


def snapshot(model: SiteModel, incident: Incident, *, seq: int) -> dict[str, Any]:
    """Everything a map wall shows about one incident, as of event ``seq``."""
    routes = incident.routes
    # Rows of routes kept from a site model whose people have changed since (its re-plan
    # failed, and the event said so) are shown as far as they go.
    people = incident.moving[incident.moving < len(routes.person_ids)]
    muster_ids = routes.muster_ids
    state = incident.run.state
    must = np.zeros(len(routes.person_ids), dtype=bool)
    must[people] = True
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
            # A drill's incident: every wall shows the exercise banner while it runs.
            "exercise": incident.exercise,
        },
        "threat": incident.assessment.as_geojson(),
        "exposure": incident.exposure.as_dict(),
        "receptors": receptors_inside(model, incident.exposure),
        "evacuation": {
            "people": evacuees(routes, people),
            # Of those who must move: the others' routes are kept, not shown.
            "trapped": [
                t.__dict__
                for t, row in zip(routes.trapped, routes.trapped_rows.tolist(), strict=True)
                if must[row]
            ],
            "unusable_musters": routes.unusable_musters,
            "muster_warnings": routes.muster_warnings,
            "no_usable_muster": (
                {
                    "reason": "every muster point is unusable",
                    "shelter_in_place": incident.shelter_in_place,
                }
                if len(routes.unusable_musters) >= len(muster_ids)
                else None
            ),
            "routes": route_forest(routes, people),
            "capacity_plan": incident.capacity,
        },
        "resources": {
            kind: [
                {
                    "id": r.id,
                    "mode": r.mode,
                    "travel_time_s": round(r.travel_time_s, 1),
                    "route": np.round(np.asarray(r.route, dtype=np.float64), 7).tolist(),
                }
                for r in found
            ]
            for kind, found in incident.resources.items()
        },
        "resources_unreachable": incident.resources_unreachable,
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


def receptors_inside(model: SiteModel, found: Exposure) -> dict[str, list[dict[str, Any]]]:
    """Per threat level, the sensitive receptors inside or crossing its zone, by name: the
    exposure has their ids only, and a commander calls a school by its name."""
    props = {str(f["id"]): f["properties"] for f in model.layers.get("receptors", [])}
    return {
        str(level): [
            {
                "id": rid,
                "name": props[rid].get("name"),
                "kind": props[rid].get("kind"),
                "population": props[rid].get("population"),
            }
            for rid in layers.get("receptors", ())
            if rid in props
        ]
        for level, layers in found.inside.items()
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
