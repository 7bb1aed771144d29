"""The command post: active incidents, their plan runs, the log and the hub, kept in step.

Every change goes the same way:
1. it is computed in memory;
2. it is written to the event log in one transaction;
3. only once that commits is it published to subscribers.

If the write fails, the in-memory run is rebuilt from the events that did commit, so memory never
runs ahead of the log.

On start, :meth:`CommandPost.recover` rebuilds every incident that has not stood down. Its plan
run is replayed from the logged plan events, so the remaining deadlines are the logged ones. Its
zones, exposure and routes are recomputed from the logged request and the current site model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from command import events as event_log
from command.auth import find_user
from command.hub import ENCODED, Hub, encode, encode_bytes
from command.incidents import (
    ActivationRequest,
    Incident,
    Reassessment,
    ToxicReleaseSpec,
    WindReading,
    activate,
    plan_drafts,
    reassess,
    route_from,
    snapshot,
)
from command.notifications import CallTree, Notice
from command.sensors import TIERS, Reading, proposed_plans, tier_after
from command.site_model import SiteModel, SiteModels, headcount, move_people
from gis.errors import FieldError, IllegalTransition, InvalidInput, NotFound
from gis.hazards.exposure import Exposure
from gis.storage.db import Database
from gis.storage.tables import EventRow
from plans.clock import Clock
from plans.engine import FINISHED, Actor, PlanEvent, PlanRun, Scheduler
from plans.model import PlanTemplate
from plans.store import list_plans

log = logging.getLogger(__name__)

#: The fastest wind a station may report (m/s): faster than any typhoon's gusts on record.
MAX_WIND_M_S = 120.0
#: A wind station's reading re-evaluates active gas releases when the direction turns by this
#: much (degrees) or the speed changes by 1 m/s or more.
WIND_CHANGE_DEG = 10.0


def event_message(event: event_log.LoggedEvent) -> dict[str, Any]:
    return {
        "type": "event",
        "seq": event.seq,
        "incident_id": event.incident_id,
        "event": event.as_dict(),
    }


class CommandPost:
    def __init__(self, db: Database, hub: Hub, clock: Clock, models: SiteModels) -> None:
        self.db = db
        self.hub = hub
        self.clock = clock
        self.models = models
        self.scheduler = Scheduler(clock)
        self.incidents: dict[str, Incident] = {}
        self.sensor_tiers: dict[str, dict[str, str | None]] = {}  # site -> sensor -> tier
        #: site -> sensor -> its last reading, since this server started (readings that change
        #: nothing are not logged, so they are not recovered on restart).
        self.last_readings: dict[str, dict[str, dict[str, Any]]] = {}
        self.calltree = CallTree()
        self.stood_down: dict[str, str] = {}  # incident -> site, for a clear answer later
        self._snapshots: dict[tuple[str, str | None], tuple[Any, dict[str, Any]]] = {}
        #: Where new notices go for outbound delivery (the app's webhook sender), if anywhere.
        self.outbox: Callable[[list[Notice]], None] | None = None
        self._lock = threading.RLock()

    # -- reading --------------------------------------------------------------------------------

    def incident(self, site_id: str, incident_id: str) -> Incident:
        found = self.incidents.get(incident_id)
        if found is None and self.stood_down.get(incident_id) == site_id:
            raise IllegalTransition(
                f"incident '{incident_id}' has stood down; its record is in the event log",
                errors=[FieldError("incident", "stood down")],
            )
        if found is None or found.site_id != site_id:
            raise NotFound(
                f"no incident '{incident_id}' at site '{site_id}'",
                errors=[FieldError("incident", "unknown")],
            )
        return found

    def site_snapshot(self, site_id: str, incident_id: str | None = None) -> dict[str, Any]:
        """The picture of a site: every active incident (or one), as of the log's last event."""
        with self._lock:
            with self.db.read() as session:
                seq = event_log.last_seq(session, site_id)
            model = self.models.get(site_id)
            # Nothing changes the picture without a new event or a moved person: a crowd of
            # clients subscribing at once shares one snapshot, encoded once.
            key = (seq, model.positions_version, id(model))
            cached = self._snapshots.get((site_id, incident_id))
            if cached is not None and cached[0] == key:
                return cached[1]
            chosen = [
                i
                for i in self.incidents.values()
                if i.site_id == site_id and (incident_id is None or i.id == incident_id)
            ]
            message: dict[str, Any] = {
                "type": "snapshot",
                "seq": seq,
                "site_id": site_id,
                "incidents": [snapshot(model, i, seq=seq) for i in chosen],
            }
            message[ENCODED] = encode(message)
            self._snapshots[(site_id, incident_id)] = (key, message)
            return message

    # -- changing -------------------------------------------------------------------------------

    def activate(
        self, site_id: str, request: ActivationRequest, *, actor: str
    ) -> tuple[str, bytes]:
        """One action: the plan runs, the picture is computed, logged and broadcast. Returns the
        incident's id and its picture as JSON, encoded once for the answer and every
        subscriber."""
        model = self.models.get(site_id)
        wind = self.last_wind(model)
        with self._lock:
            with self.db.write() as session:
                incident, logged = activate(
                    session,
                    model,
                    request,
                    actor=actor,
                    clock=self.clock,
                    wind=wind,
                )
            self.incidents[incident.id] = incident
            self.scheduler.add(incident.run)
            self._track(logged)
            seq = logged[-1].seq
            picture = snapshot(model, incident, seq=seq)
            body = encode_bytes(picture)
            message = {"type": "incident", "seq": seq, "incident_id": incident.id}
            head = encode(message)[:-1]  # the same object, still open for its snapshot
            message["snapshot"] = picture
            message[ENCODED] = f'{head},"snapshot":{body.decode()}}}'
            self.hub.publish(site_id, [*map(event_message, logged), message])
            return incident.id, body

    def command(
        self,
        site_id: str,
        incident_id: str,
        act: Callable[[PlanRun], Any],
    ) -> list[event_log.LoggedEvent]:
        """Apply a command to an incident's plan run, log its events, then publish them."""
        with self._lock:
            incident = self.incident(site_id, incident_id)
            run = incident.run
            before = len(run.events)
            act(run)
            new = run.events[before:]
            try:
                with self.db.write() as session:
                    logged = event_log.append_many(session, site_id, plan_drafts(incident, new))
            except Exception:
                # The log is the truth: memory goes back to what it holds.
                incident.run = PlanRun.replay(run.events[:before], self.clock)
                self.scheduler.add(incident.run)
                raise
            self.scheduler.watch(run)
            self._track(logged)
            incident.seq = logged[-1].seq if logged else incident.seq
            if not run.active:
                # Stood down: the log keeps the record; memory and new snapshots let it go.
                self.scheduler.runs.pop(run.run_id, None)
                self.incidents.pop(incident_id, None)
                self.stood_down[incident_id] = site_id
            self.hub.publish(site_id, [event_message(e) for e in logged])
            return logged

    def tick(self) -> list[event_log.LoggedEvent]:
        """Fire passed due times (call every second): log and publish the overdue events."""
        with self._lock:
            fired = self.scheduler.tick()
            by_incident: dict[str, list[PlanEvent]] = {}
            for event in fired:
                by_incident.setdefault(event.run_id, []).append(event)
            out: list[event_log.LoggedEvent] = []
            for incident_id, plan_events in by_incident.items():
                incident = self.incidents[incident_id]
                with self.db.write() as session:
                    logged = event_log.append_many(
                        session, incident.site_id, plan_drafts(incident, plan_events)
                    )
                self.hub.publish(incident.site_id, [event_message(e) for e in logged])
                out += logged
            # Call-tree contacts who did not answer in time: the next one is called. After a
            # long gap a fallback may be overdue already: go on until no call is.
            while overdue := self.calltree.overdue(self.clock.now()):
                by_site: dict[str, list[event_log.Draft]] = {}
                for site_id, draft in overdue:
                    by_site.setdefault(site_id, []).append(draft)
                for site_id, drafts in by_site.items():
                    with self.db.write() as session:
                        logged = event_log.append_many(session, site_id, drafts)
                    self._track(logged)
                    self.hub.publish(site_id, [event_message(e) for e in logged])
                    out += logged
            return out

    def acknowledge(self, site_id: str, seq: int, *, actor: str) -> event_log.LoggedEvent:
        """The person called answers: no fallback will be called."""
        with self._lock:
            notice = self.calltree.open.get((site_id, seq))
            if notice is None:
                raise NotFound(
                    f"no notification {seq} waiting for an answer at site {site_id}",
                    errors=[FieldError("notification", "unknown, answered or passed on")],
                )
            with self.db.write() as session:
                event = event_log.append(
                    session,
                    site_id,
                    "notification.acknowledged",
                    actor=actor,
                    incident_id=notice.incident_id,
                    data={"notification": seq, "contact": notice.contact},
                )
            self.calltree.acknowledge(site_id, seq)
            self.hub.publish(site_id, [event_message(event)])
            return event

    def duty(
        self,
        site_id: str,
        incident_id: str,
        role: str,
        username: str,
        *,
        actor: str,
        assign: bool = True,
    ) -> list[event_log.LoggedEvent]:
        """Give ``username`` the plan role ``role`` in this incident (``assign=False``: take it
        back). Assigning a duty already held changes nothing and logs nothing."""
        with self._lock:
            incident = self.incident(site_id, incident_id)
            template = incident.run.state.template
            known = {template.command_role, *(r.id for r in template.roles)}
            if role not in known:
                raise InvalidInput(
                    f"plan '{template.id}' has no role '{role}'",
                    errors=[FieldError("role", f"not a role of the plan; known: {sorted(known)}")],
                )
            held = username in incident.duties.get(role, set())
            if not assign and not held:
                raise NotFound(
                    f"'{username}' does not hold the duty '{role}' in incident '{incident_id}'",
                    errors=[FieldError("username", "does not hold this duty")],
                )
            if assign and held:
                return []
            if assign:
                with self.db.read() as session:
                    check_duty_holder(session, username, commands=role == template.command_role)
            data = {"role": role, "username": username}
            kind = "duty.assigned" if assign else "duty.released"
            with self.db.write() as session:
                event = event_log.append(
                    session, site_id, kind, actor=actor, incident_id=incident_id, data=data
                )
            incident.apply_duty(kind, data)
            incident.seq = event.seq
            self.hub.publish(site_id, [event_message(event)])
            return [event]

    def delivered(self, notice: Notice, ok: bool, attempts: int, detail: str) -> None:
        """Log the outcome of a webhook delivery (called by the sender)."""
        with self._lock, self.db.write() as session:
            event = event_log.append(
                session,
                notice.site_id,
                "notification.delivered" if ok else "notification.failed",
                actor="system",
                incident_id=notice.incident_id,
                data={
                    "notification": notice.seq,
                    "contact": notice.contact,
                    "attempts": attempts,
                    "detail": detail,
                },
            )
        self.hub.publish(notice.site_id, [event_message(event)])

    def _track(self, logged: Sequence[event_log.LoggedEvent]) -> None:
        notices = self.calltree.track(logged)
        if notices and self.outbox is not None:
            self.outbox(notices)

    def readings(
        self, site_id: str, readings: Sequence[Reading], *, actor: str
    ) -> list[event_log.LoggedEvent]:
        """Take sensor readings: tier changes, proposed plans and wind changes are logged and
        sent; readings that change nothing are not events. A batch is taken whole or not at
        all: nothing is kept in memory (tiers, last readings, re-evaluated plumes) until the
        batch's events are logged."""
        model = self.models.get(site_id)
        unknown = sorted({r.sensor_id for r in readings} - set(model.sensors))
        if unknown:
            raise InvalidInput(
                f"unknown sensors {unknown[:10]}; none of the readings was taken",
                errors=[FieldError("readings.sensor_id", f"unknown: {', '.join(unknown[:10])}")],
            )
        impossible = [
            FieldError(f"readings[{i}].value", f"a wind speed from 0 to {MAX_WIND_M_S:g} m/s")
            for i, r in enumerate(readings)
            if model.sensors[r.sensor_id].kind == "wind" and not 0 <= r.value <= MAX_WIND_M_S
        ]
        if impossible:
            raise InvalidInput(
                f"{len(impossible)} impossible wind reading(s); none of the readings was taken",
                errors=impossible,
            )
        with self._lock:
            tiers = dict(self.sensor_tiers.get(site_id, {}))
            now = self.clock.now().isoformat()
            latest = {
                r.sensor_id: {
                    "value": r.value,
                    "direction_deg": r.direction_deg,
                    "at": now,
                    "by": actor,
                }
                for r in readings
            }
            drafts: list[event_log.Draft] = []
            with self.db.read() as session:
                plans = [p.template for p in list_plans(session, site_id)]
            winds = [r for r in readings if model.sensors[r.sensor_id].kind == "wind"]
            # The plume follows the newest wind of the batch: one re-evaluation, not one each.
            pictures = self._wind(model, winds[-1]) if winds else []
            for reading in readings:
                sensor = model.sensors[reading.sensor_id]
                if sensor.kind == "wind":
                    continue
                before = tiers.get(sensor.id)
                after = tier_after(sensor, reading.value, before)
                if after == before:
                    continue
                tiers[sensor.id] = after
                drafts.append(
                    event_log.Draft(
                        "sensor.state",
                        actor,
                        {
                            "sensor_id": sensor.id,
                            "substance": sensor.substance,
                            "from": before,
                            "to": after,
                            "value": reading.value,
                        },
                    )
                )
                rising = after is not None and (
                    before is None or TIERS.index(after) > TIERS.index(before)
                )
                proposed = proposed_plans(sensor, after, plans) if rising and after else []
                if proposed:
                    drafts.append(
                        event_log.Draft(
                            "plan.proposed",
                            "system",
                            {"sensor_id": sensor.id, "tier": after, "plans": proposed},
                        )
                    )
            for incident, again in pictures:
                change = again.change
                drafts.append(
                    event_log.Draft(
                        "incident.wind_changed",
                        actor,
                        {
                            "hazard": again.request.hazard.model_dump(mode="json"),
                            "entered": {k: dict(v) for k, v in change.entered.items() if v},
                            "left": {k: dict(v) for k, v in change.left.items() if v},
                            "rerouted": again.rerouted,
                        },
                        incident.id,
                    )
                )
            logged = []
            if drafts:
                with self.db.write() as session:
                    logged = event_log.append_many(session, site_id, drafts)
            # Logged (or nothing to log): now memory follows.
            self.sensor_tiers[site_id] = tiers
            self.last_readings.setdefault(site_id, {}).update(latest)
            if not logged:
                return []
            messages = [event_message(e) for e in logged]
            for incident, again in pictures:
                again.apply(incident)
                incident.seq = logged[-1].seq
                messages.append(
                    {
                        "type": "incident",
                        "seq": logged[-1].seq,
                        "incident_id": incident.id,
                        "snapshot": snapshot(model, incident, seq=logged[-1].seq),
                    }
                )
            self.hub.publish(site_id, messages)
            return logged

    def route(
        self, model: SiteModel, incident_id: str, lonlat: tuple[float, float]
    ) -> dict[str, Any]:
        """One route from ``lonlat`` under the incident's current zones and wind."""
        with self._lock:  # the zones and the wind they were drawn for, together
            incident = self.incident(model.site.id, incident_id)
            hazard, assessment, seq = incident.request.hazard, incident.assessment, incident.seq
        return {**route_from(model, hazard, assessment, lonlat), "seq": seq}

    def tasks(self, site_id: str, username: str, *, commander: bool) -> list[dict[str, Any]]:
        """The open steps of the plan roles ``username`` holds by duty in the site's active
        incidents (a commander: also each plan's command role), soonest due first."""
        self.models.get(site_id)  # NotFound for an unknown site
        out = []
        with self._lock:
            for incident in self.incidents.values():
                if incident.site_id != site_id:
                    continue
                state = incident.run.state
                mine = {r for r, users in incident.duties.items() if username in users}
                if commander:
                    mine.add(state.template.command_role)
                for step in state.steps.values():
                    if step.role in mine and not step.withdrawn and step.status not in FINISHED:
                        out.append(
                            {
                                "incident_id": incident.id,
                                "step_id": step.id,
                                "role": step.role,
                                "status": step.status.value,
                                "due_at": step.due_at.isoformat() if step.due_at else None,
                                "overdue": step.overdue,
                            }
                        )
        out.sort(key=lambda t: (t["due_at"] is None, t["due_at"] or "", t["step_id"]))
        return out

    def last_wind(self, model: SiteModel) -> WindReading | None:
        """The latest reading of any wind station of the site, if one has reported."""
        with self._lock:
            latest = self.last_readings.get(model.site.id, {})
            winds = [
                WindReading(sensor_id, r["value"], r["direction_deg"], r["at"])
                for sensor_id, r in latest.items()
                if r["direction_deg"] is not None
                and sensor_id in model.sensors
                and model.sensors[sensor_id].kind == "wind"
            ]
        return max(winds, key=lambda w: w.at, default=None)

    def sensor_state(self, site_id: str) -> list[dict[str, Any]]:
        """Each sensor of the site that has a tier or a reading: its tier and last reading."""
        model = self.models.get(site_id)
        with self._lock:
            tiers = dict(self.sensor_tiers.get(site_id, {}))
            latest = dict(self.last_readings.get(site_id, {}))
        return [
            {
                "id": sensor.id,
                "kind": sensor.kind,
                "substance": sensor.substance,
                "tier": tiers.get(sensor.id),
                "last_reading": latest.get(sensor.id),
            }
            for sensor in model.sensors.values()
            if sensor.id in tiers or sensor.id in latest
        ]

    def _wind(self, model: SiteModel, reading: Reading) -> list[tuple[Incident, Reassessment]]:
        """Re-evaluate the site's active gas releases under a wind station's new reading."""
        if reading.direction_deg is None:
            return []
        out = []
        for incident in self.incidents.values():
            hazard = incident.request.hazard
            if incident.site_id != model.site.id or not incident.run.active:
                continue
            if not isinstance(hazard, ToxicReleaseSpec):
                continue
            turned = abs((reading.direction_deg - hazard.wind_from_deg + 180) % 360 - 180)
            if turned < WIND_CHANGE_DEG and abs(reading.value - hazard.wind_speed_m_s) < 1.0:
                continue
            new = hazard.model_copy(
                update={"wind_from_deg": reading.direction_deg, "wind_speed_m_s": reading.value}
            )
            out.append((incident, reassess(model, incident, new)))
        return out

    def positions(self, site_id: str, moves: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
        """Live positions: the site model moves the people; subscribers get the latest position
        of each (coalesced per client) and the headcount at the muster points."""
        model = self.models.get(site_id)
        unknown = move_people(model, moves)
        if unknown:
            log.info("positions of %d unknown people ignored at %s", len(unknown), site_id)
        strangers = set(unknown)
        known = {p: xy for p, xy in moves.items() if p not in strangers}
        count = headcount(model)
        with self._lock:
            # Who walked into or out of a threat zone: logged, as the commander must know.
            drafts = [
                event_log.Draft("incident.people_moved", "system", change, incident.id)
                for incident in self.incidents.values()
                if incident.site_id == site_id and (change := zone_moves(incident, known))
            ]
            with self.db.write() if drafts else self.db.read() as session:
                logged = event_log.append_many(session, site_id, drafts) if drafts else []
                seq = event_log.last_seq(session, site_id)
        self.hub.publish(
            site_id,
            [
                *map(event_message, logged),
                {
                    "type": "positions",
                    "seq": seq,
                    "positions": {p: list(xy) for p, xy in known.items()},
                    "headcount": count,
                },
            ],
        )
        return {
            "accepted": len(known),
            "unknown": unknown,
            "headcount": count,
            "events": [e.as_dict() for e in logged],
        }

    # -- restart --------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Rebuild the incidents that have not stood down from the event log."""
        with self._lock, self.db.read() as session:
            rows = session.scalars(
                select(EventRow)
                .where(EventRow.incident_id.is_not(None))
                .order_by(EventRow.site_id, EventRow.seq)
            ).all()
            grouped: dict[str, list[EventRow]] = {}
            for row in rows:
                grouped.setdefault(str(row.incident_id), []).append(row)
        with self.db.read() as session:
            for row in session.scalars(
                select(EventRow).where(EventRow.type == "sensor.state").order_by(EventRow.seq)
            ):
                self.sensor_tiers.setdefault(row.site_id, {})[row.data["sensor_id"]] = row.data[
                    "to"
                ]
        with self.db.read() as session:
            for row in session.scalars(
                select(EventRow)
                .where(EventRow.type.startswith("notification."))
                .order_by(EventRow.site_id, EventRow.seq)
            ):
                event = event_log.logged_event(row)
                if row.type == "notification.requested":
                    self.calltree.track([event])
                    if "after" in row.data:
                        self.calltree.open.pop((row.site_id, int(row.data["after"])), None)
                elif row.type in ("notification.acknowledged", "notification.unanswered"):
                    key = int(row.data.get("notification", row.data.get("after", -1)))
                    self.calltree.open.pop((row.site_id, key), None)
        recovered = []
        for incident_id, rows in grouped.items():
            if any(r.type == "plan.run.stood_down" for r in rows):
                continue
            first = rows[0]
            if first.type != "incident.activated":
                continue
            try:
                self._rebuild(incident_id, first, rows)
                recovered.append(incident_id)
            except Exception:
                log.exception("could not recover incident %s", incident_id)
        return recovered

    def _rebuild(self, incident_id: str, first: EventRow, rows: list[EventRow]) -> None:
        site_id = first.site_id
        model = self.models.get(site_id)
        request = ActivationRequest.model_validate(first.data["request"])
        winds = [r for r in rows if r.type == "incident.wind_changed"]
        if winds:  # the picture follows the last wind the log knows
            request = request.model_copy(
                update={"hazard": ToxicReleaseSpec.model_validate(winds[-1].data["hazard"])}
            )
        plan_events = [
            PlanEvent(
                run_id=incident_id,
                seq=int(r.data["seq"]),
                type=r.type.removeprefix("plan."),
                at=datetime.fromisoformat(r.data["at"]),
                actor=r.data["actor"],
                step_id=r.data["step_id"],
                data=r.data["data"],
            )
            for r in rows
            if r.type.startswith("plan.")
        ]
        run = PlanRun.replay(plan_events, self.clock)
        # Zones, exposure and routes follow from the request; the run comes from its events.
        with self.db.read() as session:
            incident, _ = activate(
                session,
                model,
                request,
                actor=first.actor,
                clock=self.clock,
                incident_id=incident_id,
                dry_run=True,
            )
        incident.run = run
        incident.activated_at = first.at
        for r in rows:
            if r.type in ("duty.assigned", "duty.released"):
                incident.apply_duty(r.type, r.data)
        incident.seq = rows[-1].seq
        self.incidents[incident_id] = incident
        self.scheduler.add(run)


def zone_moves(incident: Incident, moves: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """The threat-zone level of each moved person now, against before: who entered, who left
    and who changed level (empty when nobody did). The incident's exposure follows."""
    if not moves:
        return {}
    ids = list(moves)
    xy = np.array([moves[p] for p in ids], dtype=np.float64)
    level = np.zeros(len(ids), dtype=np.int64)
    for zone in incident.assessment.zones:
        hit = np.asarray(shapely.intersects_xy(zone.geometry, xy[:, 0], xy[:, 1]), dtype=bool)
        level = np.where(hit, np.maximum(level, zone.level), level)
    people: dict[str, int] = dict(incident.exposure.highest.get("people", {}))
    entered, left, changed = {}, [], {}
    for pid, now in zip(ids, level.tolist(), strict=True):
        before = people.get(pid)
        if now and before is None:
            entered[pid] = now
        elif not now and before is not None:
            left.append(pid)
        elif now and before is not None and now != before:
            changed[pid] = [before, now]
        if now:
            people[pid] = now
        else:
            people.pop(pid, None)
    if not (entered or left or changed):
        return {}
    highest = dict(incident.exposure.highest)
    highest["people"] = people
    # The zones nest: a person at level 3 is inside levels 2 and 1 as well.
    inside = {
        level: {
            **layers,
            "people": tuple(sorted(p for p, at in people.items() if at >= level)),
        }
        for level, layers in incident.exposure.inside.items()
    }
    incident.exposure = Exposure(inside, highest)
    return {"entered": entered, "left": left, "changed": changed}


def actor_for(
    username: str,
    roles: frozenset[str],
    template: PlanTemplate | None,
    duties: Mapping[str, set[str]] | None = None,
) -> Actor:
    """A user as the plan engine sees them: the plan roles their duties in the incident give
    them. A commander holds every role of the plan: in command, they may record any step for
    whoever did it (the log says who recorded it)."""
    plan_roles = {role for role, holders in (duties or {}).items() if username in holders}
    if "commander" in roles and template is not None:
        plan_roles |= {template.command_role, *(r.id for r in template.roles)}
    return Actor(username, frozenset(plan_roles))


#: Only these users can act on plan steps, so only they may be given a duty.
DUTY_HOLDERS = frozenset({"commander", "responder"})


def check_duty_holder(session: Session, username: str, *, commands: bool = False) -> None:
    """Refuse a duty for an unknown or disabled user, or one who cannot act on steps. The plan's
    command role (which skips any step, escalates, stands down) goes only to a commander."""
    try:
        user = find_user(session, username)
    except NotFound:
        raise InvalidInput(
            f"no user '{username}'", errors=[FieldError("username", "unknown user")]
        ) from None
    if user.disabled:
        raise InvalidInput(
            f"user '{username}' is disabled", errors=[FieldError("username", "disabled")]
        )
    if not DUTY_HOLDERS & {str(r) for r in user.roles}:
        raise InvalidInput(
            f"user '{username}' can not act on plan steps",
            errors=[FieldError("username", "needs the role responder or commander")],
        )
    if commands and "commander" not in {str(r) for r in user.roles}:
        raise InvalidInput(
            f"the plan's command role goes to a commander; '{username}' is not one",
            errors=[FieldError("role", "the command role needs a user with the role commander")],
        )
