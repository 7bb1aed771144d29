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

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from command import events as event_log
from command.auth import find_user
from command.cap import ALERTING as CAP_ALERTING
from command.cap import CapAlert
from command.cap import alerts_for_events as cap_alerts
from command.client_actions import ClientAction, purge_expired
from command.hub import ENCODED, Hub, encode, encode_bytes
from command.incidents import (
    ActivationRequest,
    Incident,
    Reassessment,
    ToxicReleaseSpec,
    WindReading,
    follow_positions,
    log_activation,
    must_move,
    people_levels,
    plan_drafts,
    prepare,
    reassess,
    route_from,
    snapshot,
)
from command.layer_feed import LayerFeed
from command.log_follower import LogFollower
from command.monitoring import wristbands as bands
from command.monitoring.alarms import AlarmBoard
from command.monitoring.devices import DeviceEvent
from command.monitoring.fences import FenceWatch
from command.monitoring.health import DetectorHealth
from command.monitoring.history import AlarmHistory
from command.monitoring.wristband_desk import WristbandDesk
from command.notifications import CallTree, Notice, answered_by_token, issue_answer_tokens
from command.positions import refuse_far_positions, store_positions
from command.sensors import (
    Reading,
    Sensor,
    SensorAlarms,
    nothing_to_acknowledge,
    refuse_impossible,
)
from command.site_model import (
    SiteModel,
    SiteModels,
    current_positions,
    headcount,
    move_people,
)
from command.stored_readings import MAX_WIND_M_S, store_readings, stored_readings
from gis.errors import (
    FieldError,
    IllegalTransition,
    IncidentConflict,
    IncidentQuarantined,
    InvalidInput,
    NotFound,
    NotPermitted,
    OwnedElsewhere,
    RallypointError,
    Recovering,
)
from gis.storage.db import Database
from gis.storage.tables import EventRow, LayerRevision, NoticeTokenRow, SiteRow
from plans.clock import Clock
from plans.engine import FINISHED, Actor, PlanEvent, PlanRun, Scheduler
from plans.model import PlanTemplate
from plans.store import approved_plan, approved_plans, get_plan

log = logging.getLogger(__name__)

#: A position observed this many seconds after the server's clock is refused (a device clock
#: far ahead would otherwise hold everyone's later positions back).
MAX_CLOCK_AHEAD_S = 60.0
#: A picture owed because people walked into a zone is sent at most this often per incident
#: (seconds): at 5,000 positions a second, people enter every batch, and a picture of an L3
#: incident is a megabyte. The rest go with a later batch or the next second's tick.
PICTURE_EVERY_S = 0.5
#: An activation computed on a site model that was replaced meanwhile is computed again, this
#: many times at most (the last holding the site's planning lock, so no new model can come).
ACTIVATION_TRIES = 3
#: Other processes' events that change a site's alarm setup (thresholds, delays, voting,
#: shelving, out of service, test): this process reads the setup from the database again.
ALARM_SETUP_EVENTS = frozenset(
    {
        "sensor.alarm_settings",
        "zone.alarm_voting",
        "sensor.shelved",
        "sensor.unshelved",
        "sensor.out_of_service",
        "sensor.in_service",
        "sensor.test_started",
        "sensor.test_ended",
    }
)
#: How many of an incident's last ``incident.network_changed`` events are looked through for
#: one that said the same layer revisions already (another process sharing the database).
TOLD_LOOKBACK = 20
#: Another process's drill events that hold or free the drill's incident (``paused``).
DRILL_PAUSING = frozenset({"drill.held", "drill.suspended", "drill.resumed", "drill.ended"})
#: A command decided again at most this often when other processes keep logging first.
STALE_TRIES = 5
#: How often the leader purges the expired keys of queued actions (``command.client_actions``).
FORGET_KEYS_EVERY = timedelta(minutes=10)
#: Sensor tiers that are alarms (a warning asks for a check; these suspend a drill).
ALARMING = ("alarm", "high_alarm")
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


@dataclass
class Recovery:
    """How far restart recovery is: incidents rebuilt (or quarantined) of those to rebuild."""

    total: int = 0
    done: int = 0
    finished: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "done": self.done, "finished": self.finished}


class DrillHooks(Protocol):
    """What the command post tells the drill desk (``command.drills.DrillDesk``)."""

    def real_incident(self, site_id: str, incident_id: str) -> None: ...

    def real_alarm(self, site_id: str, sensor_id: str, tier: str) -> None: ...

    def incident_closed(self, site_id: str, incident_id: str) -> None: ...

    def tick(self) -> list[event_log.LoggedEvent]: ...

    def inject_readings(
        self, site_id: str, drill_id: str, readings: Sequence[Reading], *, actor: str
    ) -> list[Any]: ...

    def inject_positions(
        self,
        site_id: str,
        drill_id: str,
        moves: Mapping[str, tuple[float, float, datetime | None]],
        *,
        actor: str,
    ) -> dict[str, Any]: ...


class CommandPost(WristbandDesk):
    def __init__(self, db: Database, hub: Hub, clock: Clock, models: SiteModels) -> None:
        self.db = db
        self.hub = hub
        self.clock = clock
        self.models = models
        self.scheduler = Scheduler(clock)
        self.incidents: dict[str, Incident] = {}
        self.sensor_tiers: dict[str, dict[str, str | None]] = {}  # site -> sensor -> tier
        #: Each sensor's alarm awaiting (or holding) an acknowledgement, from the log.
        self.alarms = SensorAlarms()
        #: Alarm tiers by the standard (``command.monitoring.alarms``): settings, modes and
        #: voting per site; per site (or drill) the delays running, confirmations and checks.
        self.alarm_board = AlarmBoard()
        #: Flags to put on a sensor's alarm event (detector health): (site, sensor) -> flags.
        self.alarm_flags: Callable[[str, str], Mapping[str, Any] | None] | None = None
        #: site -> sensor -> its last reading (readings that change nothing are not logged:
        #: the latest are stored in ``sensor_readings`` once a second and read back on start).
        self.last_readings: dict[str, dict[str, dict[str, Any]]] = {}
        #: site -> sensor -> its latest reading not yet stored.
        self._unsaved_readings: dict[str, dict[str, dict[str, Any]]] = {}
        self.calltree = CallTree()
        #: When the expired keys of queued actions were last purged (:meth:`forget_client_keys`).
        self._keys_forgotten_at: datetime | None = None
        self.stood_down: dict[str, str] = {}  # incident -> site, for a clear answer later
        self._snapshots: dict[tuple[str, str | None], tuple[Any, dict[str, Any]]] = {}
        #: Where new notices go for outbound delivery (the app's webhook sender), if anywhere.
        self.outbox: Callable[[list[Notice]], None] | None = None
        self._lock = threading.RLock()
        #: site -> person -> (lon, lat, observed at): the latest position of everyone who moved
        #: since the server started, laid over any rebuilt site model.
        self.live: dict[str, dict[str, tuple[float, float, float]]] = {}
        #: site -> people whose latest position is not yet stored (written once a second).
        self._unsaved: dict[str, set[str]] = {}
        #: site -> person -> their real latest position, not yet stored, while a drill's inject
        #: holds their live one (what is stored is the real one).
        self._real_live: dict[str, dict[str, tuple[float, float, float]]] = {}
        #: site -> the build of its site model the incidents are planned on.
        self._planned_on: dict[str, int] = {}
        self._planned_tokens: dict[str, dict[str, str | None]] = {}
        #: Incidents whose new picture (people who must move now) is owed to the walls, and
        #: when each incident's picture was last sent (time.monotonic()).
        self._picture_due: set[str] = set()
        self._picture_sent: dict[str, float] = {}
        #: Closed incidents' final pictures, rebuilt from the log once each.
        self._closed: dict[tuple[str, str], dict[str, Any]] = {}
        #: Positions ignored because the position held was observed later, per site.
        self.stale_positions: dict[str, int] = {}
        #: site -> the site model its incidents are planned on now. Code under the lock uses
        #: it (:meth:`_planned_model`): a newer model is planned on outside the lock and only
        #: then takes its place, so the lock is never held across a heavy computation.
        self._planned: dict[str, SiteModel] = {}
        #: site -> a lock that orders the heavy work of one site (planning on a new model, a
        #: wind change); taken before the post's lock, never while holding it.
        self._planning: dict[str, threading.Lock] = {}
        #: Restart recovery: its progress, the incidents still to rebuild (their events), and
        #: those left aside because their events are corrupt (incident -> site, reason).
        self.recovery = Recovery(finished=True)
        self._pending: dict[str, list[event_log.LoggedEvent]] = {}
        self.quarantined: dict[str, tuple[str, str]] = {}
        #: Drills (``command.drills``): incident id -> the drill it is the exercise of (every
        #: event of such an incident is marked), and each running drill's own detector tiers,
        #: which injected readings move instead of the real ones.
        self.exercises: dict[str, str] = {}
        self.exercise_tiers: dict[str, dict[str, str | None]] = {}
        #: Drills that injected a wind: their incidents follow it, not the real stations.
        self.exercise_wind: set[str] = set()
        #: Drills' incidents whose drill is held or suspended: their due times and call-tree
        #: fallbacks wait (a drill must not page anyone during a real emergency).
        self.paused: set[str] = set()
        #: The drill desk, told of real incidents and alarms (a drill yields to them), and
        #: where a drill's call-outs go: only a channel configured as exercise-safe, if any.
        self.drills: DrillHooks | None = None
        self.exercise_outbox: Callable[[list[Notice]], None] | None = None
        #: CAP 1.2 alerts (``command.cap``) owed for activations, level changes and closes:
        #: made on the next tick, off the activation's path, then logged (``cap.alert``) and
        #: handed to ``cap_outbox`` (the park's or authority's platform), if set; a drill's
        #: (status Exercise) only when that platform is exercise-safe.
        self._cap_due: list[tuple[Incident, list[event_log.LoggedEvent]]] = []
        self.cap_outbox: Callable[[list[CapAlert]], None] | None = None
        self.cap_exercise_safe = False
        #: Whether alerts are made at all: a platform is configured, or they are asked for.
        self.cap_enabled = False
        #: Layer changes to the walls (``layer.changed``), from the log's end at start.
        self.layer_feed = LayerFeed(db, hub, clock, lock=self._lock, warning=self.layer_warning)
        #: Geofences and tag reads (``command.monitoring.fences``).
        self.fences = FenceWatch(self)
        #: Wristbands (``command.monitoring.wristbands``): each tracked person's filter state
        #: and timers, their alarms (from the log), position samples not yet stored.
        self.wristbands = bands.Wristbands()
        #: Detector health: stale, stuck, out of range, drifting, overdue checks.
        self.health = DetectorHealth(self)
        self.alarm_flags = self.health.alarm_flags  # an alarm carries its detector's flags
        #: The alarm journal and 10-minute reading history (``command.monitoring.history``).
        self.alarm_history = AlarmHistory(db)
        #: Other processes' events on the same database (``command.log_follower``), once the
        #: app follows the log; None: this process is the only writer (tests, tools).
        self.follower: LogFollower | None = None
        #: Whether this process fires deadlines, call-tree fallbacks and monitoring timers
        #: (``command.leader``: one process of those sharing a database).
        self.leading = True
        #: Whether positions taken here are relayed to the other processes (PostgreSQL), and
        #: those not yet relayed: site -> person -> [lon, lat, observed at (epoch s)].
        self.relaying = False
        self._relay: dict[str, dict[str, list[float]]] = {}
        #: site -> sensor -> its latest reading not yet relayed, and the batches of readings
        #: not yet relayed ([taken at (epoch s), sensor ids, values, directions] each): the
        #: others feed their detector health and reading history with them.
        self._relay_readings: dict[str, dict[str, dict[str, Any]]] = {}
        self._relay_batches: dict[str, list[list[Any]]] = {}

    # -- the site model -------------------------------------------------------------------------

    def model(self, site_id: str, *, wait: bool = False) -> SiteModel:
        """The site's model, rebuilt if a layer changed. A rebuilt model takes the live
        positions over, and the site's active incidents are planned again on it (an
        ``incident.network_changed`` event each, and a new picture).

        Call it without the post's lock: the planning runs outside the lock, which it takes
        only to commit. Under the lock use :meth:`_planned_model`. A planning already under way
        in another thread is not waited for: the model the incidents are planned on now is
        returned, so positions, readings, snapshots and commands go on meanwhile; only the
        layer write that caused it waits (``wait``)."""
        model = self.models.get(site_id)
        if not self._replan_due(model):
            self._planned.setdefault(site_id, model)
            return model
        planning = self._planning_lock(site_id)
        if not planning.acquire(blocking=wait):
            return self._planned.get(site_id, model)
        try:
            model = self.models.get(site_id)  # the newest, once planning is ours
            if self._replan_due(model):
                self._plan_again(model)
        finally:
            planning.release()
        return model

    def _planning_lock(self, site_id: str) -> threading.Lock:
        with self._lock:
            return self._planning.setdefault(site_id, threading.Lock())

    def _planned_model(self, site_id: str) -> SiteModel:
        """Under the lock: the site model the site's incidents are planned on (never plans)."""
        planned = self._planned.get(site_id)
        return planned if planned is not None else self.models.get(site_id)

    def _plan_again(self, model: SiteModel) -> None:
        """Plan the site's incidents on ``model`` (the planning lock held, the post's not):
        computed outside the post's lock, committed under it. An incident activated on the
        old model while this ran is planned too before the commit; people who moved while it
        ran are followed at the commit."""
        site_id = model.site.id
        with self._lock:
            live = dict(self.live.get(site_id, {}))
            before_tokens = self._planned_tokens.get(site_id, {})
        if live:
            move_people(model, live)
        with model.lock:
            before = model.person_lonlat
        changed = sorted(k for k, v in model.tokens.items() if before_tokens.get(k) != v)
        done: dict[str, tuple[Incident, Reassessment | Exception]] = {}
        while True:
            with self._lock:
                pending = [
                    i
                    for i in self.incidents.values()
                    if i.site_id == site_id and i.model_build != model.build and i.id not in done
                ]
                if not pending:
                    moved = self._lay_live_over(model, before)
                    self._replan(model, changed, list(done.values()), moved)
                    self._planned_on[site_id] = model.build
                    self._planned_tokens[site_id] = dict(model.tokens)
                    self._planned[site_id] = model
                    return
            for incident in pending:
                try:
                    done[incident.id] = (incident, reassess(model, incident))
                except Exception as exc:  # said in the incident's event, at the commit
                    done[incident.id] = (incident, exc)

    def _lay_live_over(self, model: SiteModel, before: np.ndarray) -> np.ndarray:
        """Under the lock: positions taken since ``model`` got the live ones, laid over it too;
        the rows whose position differs from ``before`` (a person-position array of it)."""
        live = self.live.get(model.site.id, {})
        with model.lock:
            seen = model.person_seen_at
        newer = {
            pid: at
            for pid, at in live.items()
            if (row := model.person_row.get(pid)) is not None and at[2] > seen[row]
        }
        if newer:
            move_people(model, newer)
        with model.lock:
            now = model.person_lonlat
        if now is before or now.shape != before.shape:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.any(now != before, axis=1))

    def _replan_due(self, model: SiteModel) -> bool:
        """Whether the site's incidents are not all planned on ``model`` (a new build, or an
        incident activated on the one before while it was being replaced)."""
        site_id = model.site.id
        return self._planned_on.get(site_id) != model.build or any(
            i.site_id == site_id and i.model_build != model.build
            for i in list(self.incidents.values())
        )

    def _current(self, model: SiteModel) -> SiteModel:
        """``model``, or the site's newer one if the incidents were planned again on it since
        ``model`` was taken (call under the lock: incident rows follow the model's people)."""
        return self._planned.get(model.site.id, model)

    def _replan(
        self,
        model: SiteModel,
        layers: list[str],
        computed: Sequence[tuple[Incident, Reassessment | Exception]],
        moved: np.ndarray,
    ) -> None:
        """Under the lock: commit the incidents planned again on ``model`` (``moved``: rows of
        people who moved while they were computed)."""
        site_id = model.site.id
        pictures = []
        refused: list[event_log.Draft] = []
        for incident, outcome in computed:
            if self.incidents.get(incident.id) is not incident:
                continue  # stood down meanwhile
            if isinstance(outcome, Reassessment):
                pictures.append((incident, outcome))
            else:
                exc = outcome
                # The new layers cannot carry this incident (no walkable network left, no
                # muster point): the commander is told, and the last picture stays up.
                log.warning("incident %s could not be planned again: %s", incident.id, exc)
                detail = exc.detail if isinstance(exc, RallypointError) else "a server fault"
                refused.append(
                    event_log.Draft(
                        "incident.network_changed",
                        "system",
                        {
                            "layers": layers,
                            "error": detail,
                            "kept_last_picture": True,
                            "revisions": dict(model.tokens),
                        },
                        incident.id,
                    )
                )
                incident.model_build = model.build  # told once, not on every request
                if incident.routes.person_ids != model.person_ids:  # the people changed too
                    # Zones and who must move follow the new people; the kept routes are of
                    # the people before, and are no longer followed.
                    with model.lock:
                        lonlat = model.person_lonlat
                    incident.levels = people_levels(incident.assessment.zones, lonlat)
                    incident.moving = must_move(incident.run.state.level, incident.levels)
                    incident.routes_stale = True
        if not pictures and not refused:
            return
        drafts = refused + [
            event_log.Draft(
                "incident.network_changed",
                "system",
                {
                    "layers": layers,
                    "entered": dict(again.change.entered.get("people", {})),
                    "left": dict(again.change.left.get("people", {})),
                    "rerouted": again.rerouted,
                    "unusable_musters": again.routes.unusable_musters,
                    "trapped": [t.id for t in again.routes.trapped],
                    "revisions": dict(model.tokens),
                },
                incident.id,
            )
            for incident, again in pictures
        ]
        with self.db.write() as session:
            # Every process sharing the database plans its incidents again on a layer edit;
            # the first to log it says it for all (the same layers give the same plan).
            told = _told_already(session, site_id, drafts)
            logged = event_log.append_many(
                session,
                site_id,
                [d for d in drafts if d.incident_id not in told],
                exercises=self.exercises,
                now=self.clock.now(),
            )
        if not pictures:
            self.hub.publish(site_id, [event_message(e) for e in logged])
            return
        self._publish_pictures(model, pictures, logged, moved, told)

    def _publish_pictures(
        self,
        model: SiteModel,
        pictures: Sequence[tuple[Incident, Reassessment]],
        logged: Sequence[event_log.LoggedEvent],
        moved: np.ndarray | None = None,
        told: Mapping[str, int] | None = None,
    ) -> None:
        """Apply computed pictures once their events are logged, and send events and pictures.
        People at ``moved`` rows walked on while the pictures were computed: followed.
        ``told``: incidents whose event another process logged (at that sequence number)."""
        messages = [event_message(e) for e in logged]
        told = told or {}
        for incident, again in pictures:
            seq = logged[-1].seq if logged else 0
            seq = max(seq, told.get(incident.id, 0), self.hub.delivered.get(model.site.id, 0))
            again.apply(incident)
            if moved is not None and len(moved):
                follow_positions(model, incident, moved).apply(incident)
            incident.seq = max(incident.seq, seq)
            messages.append(self._picture_message(model, incident, seq))
        self.hub.publish(model.site.id, messages)

    def _picture_message(self, model: SiteModel, incident: Incident, seq: int) -> dict[str, Any]:
        self._picture_due.discard(incident.id)
        self._picture_sent[incident.id] = time.monotonic()
        return {
            "type": "incident",
            "seq": seq,
            "incident_id": incident.id,
            "snapshot": snapshot(model, incident, seq=seq),
        }

    def _due_pictures(self, model: SiteModel, seq: int, *, wait: bool) -> list[dict[str, Any]]:
        """The pictures owed to walls because people must move now, at most one per incident
        each :data:`PICTURE_EVERY_S` (``wait``), or all of them (the ticker's call)."""
        now = time.monotonic()
        out = []
        for incident_id in sorted(self._picture_due):
            incident = self.incidents.get(incident_id)
            if incident is None or incident.site_id != model.site.id:
                continue
            sent = self._picture_sent.get(incident_id, -math.inf)
            if not wait or now - sent >= PICTURE_EVERY_S:
                out.append(self._picture_message(model, incident, seq))
        return out

    def layer_changed(self, site_id: str) -> dict[str, Any] | None:
        """After a layer write (the layers API, or an edit in the database the listener heard
        of): the changes not yet sent go to the walls (``layer.changed``, command.layer_feed),
        then the site model is rebuilt and the active incidents are planned again on it (their
        ``incident.network_changed`` follows). Returns a warning for the editor when
        incidents are active."""
        try:
            self.layer_feed.follow()
        except Exception:  # the walls hear of it with the next change, or the next second
            log.exception("site %s: the layer changes could not be sent to the walls", site_id)
        try:
            self.model(site_id, wait=True)
        except Exception:  # the edit is stored: say so, never answer it with a fault
            log.exception("site %s: the incidents could not follow a layer change", site_id)
        return self.layer_warning(site_id)

    def layer_warning(self, site_id: str) -> dict[str, Any] | None:
        """The editor's warning when incidents are active on the site (None when none is)."""
        with self._lock:
            active = sorted(i.id for i in self.incidents.values() if i.site_id == site_id)
        if not active:
            return None
        return {
            "warning": "incidents are active on this site: each follows the changed layers, "
            "or says in incident.network_changed why it cannot",
            "incidents": active,
        }

    # -- reading --------------------------------------------------------------------------------

    def incident(self, site_id: str, incident_id: str) -> Incident:
        found = self.incidents.get(incident_id)
        if found is None:
            self.check_available(site_id, incident_id)
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

    def look_for(self, site_id: str, incident_id: str) -> None:
        """An incident this process does not hold (another process may have activated it a
        moment ago, before this one was woken): what the log holds is taken in first. Call
        with no lock held."""
        if incident_id not in self.incidents and self.follower is not None:
            self.follower.catch_up(site_id)

    def check_available(self, site_id: str, incident_id: str) -> None:
        """Raise :class:`Recovering` for an incident still being rebuilt after a restart, and
        :class:`IncidentQuarantined` for one whose logged events are corrupt."""
        with self._lock:
            pending = self._pending.get(incident_id)
            if pending and pending[0].site_id == site_id:
                raise Recovering(
                    f"incident '{incident_id}' is being rebuilt after a restart: "
                    f"{self.recovery.done} of {self.recovery.total} incidents so far",
                    errors=[FieldError("incident", "being rebuilt from the log")],
                    extra={"recovery": self.recovery.as_dict()},
                )
            quarantined = self.quarantined.get(incident_id)
            if quarantined and quarantined[0] == site_id:
                raise IncidentQuarantined(
                    f"incident '{incident_id}' is quarantined: {quarantined[1]} "
                    "(see 'rallypoint audit verify')",
                    errors=[FieldError("incident", "quarantined: its logged events are corrupt")],
                    extra={"reason": quarantined[1]},
                )

    def positions_now(self, site_id: str) -> dict[str, Any]:
        """A ``positions`` message of everyone as they are now, with who is at a muster point
        (null for the others): what a client resuming after a gap needs, as positions are not
        logged and those sent while it was away are not replayed."""
        self.model(site_id)  # planned on the newest layers first, outside the lock
        with self._lock:
            model = self._planned_model(site_id)
            with self.db.read() as session:
                seq = event_log.last_seq(session, site_id)
        now = current_positions(model)
        everyone = np.arange(len(model.person_ids))
        return {
            "type": "positions",
            "seq": seq,
            "positions": {pid: at[:2] for pid, at in now.items()},
            "seen_at": {pid: at[2] for pid, at in now.items()},
            "at_muster": _arrivals(model, everyone),
            "headcount": headcount(model),
        }

    def site_snapshot(self, site_id: str, incident_id: str | None = None) -> dict[str, Any]:
        """The picture of a site: every active incident (or one), as of the log's last event."""
        self.model(site_id)  # planned on the newest layers first, outside the lock
        for attempt in range(STALE_TRIES):
            with self._lock:
                with self.db.read() as session:
                    seq = event_log.last_seq(session, site_id)
                follower = self.follower
                held = follower.applied.get(site_id, 0) if follower is not None else seq
                if seq <= held or attempt == STALE_TRIES - 1:
                    # With other processes on the database, the snapshot is as of where this
                    # process's memory ends: later events then come live, none skipped.
                    return self._site_snapshot(site_id, incident_id, min(seq, held))
            assert follower is not None
            follower.catch_up(site_id)  # what others logged, into memory first (no lock held)
        raise AssertionError("unreachable: the last try returns")

    def _site_snapshot(self, site_id: str, incident_id: str | None, seq: int) -> dict[str, Any]:
        """The snapshot as of ``seq`` (under the lock)."""
        with self._lock:
            model = self._planned_model(site_id)
            # Nothing changes the picture without a new event or a moved person: a crowd of
            # clients subscribing at once shares one snapshot, encoded once.
            key = (
                seq,
                model.positions_version,
                id(model),
                self.recovery.done,
                len(self.quarantined),
            )
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
                # Where everyone is now (lon, lat, observed at): a wall opened mid-incident
                # draws people there, not where the people layer last had them.
                "positions": current_positions(model),
                # Who has arrived at a muster point (drawn apart from those still moving).
                "at_muster": _arrivals(model),
                # Alarms nobody has acknowledged yet: a wall that (re)connects shows them.
                "alarms": self.alarms.unacknowledged(site_id, model.sensors),
                # Checks asked for, alarms confirmed, sensors shelved, out of service or in test.
                "alarm_conditions": self.alarm_board.conditions(site_id),
            }
            if not self.recovery.finished:  # the wall shows how far a restart has come
                message["recovery"] = self.recovery.as_dict()
            quarantined = [
                {"id": i, "reason": reason}
                for i, (site, reason) in sorted(self.quarantined.items())
                if site == site_id
            ]
            if quarantined:
                message["quarantined"] = quarantined
            message[ENCODED] = encode(message)
            self._snapshots[(site_id, incident_id)] = (key, message)
            return message

    # -- changing -------------------------------------------------------------------------------

    def activate(
        self,
        site_id: str,
        request: ActivationRequest,
        *,
        actor: str,
        exercise: Mapping[str, Any] | None = None,
        incident_id: str | None = None,
    ) -> tuple[str, bytes]:
        """One action: the plan runs, the picture is computed, logged and broadcast. Returns the
        incident's id and its picture as JSON, encoded once for the answer and every
        subscriber. ``exercise`` (``drill_id``, ``scenario_id``, ``scenario_version``) makes it
        a drill's incident: marked in every record, and no real activation yields to it. A
        real activation suspends the site's running drills."""
        # The picture is computed outside the lock (ticks, call-tree fallbacks and other
        # commands go on meanwhile), then logged and published under it. Should the site's
        # incidents be planned on a new model in between, it is computed again on that one;
        # the last try holds the site's planning lock throughout.
        for attempt in range(ACTIVATION_TRIES):
            # The last try holds the site's planning lock: no new model can take the place
            # of the one it computes on, and the post's lock stays free meanwhile.
            planning = self._planning_lock(site_id) if attempt == ACTIVATION_TRIES - 1 else None
            # What other processes logged first (one may have activated this plan here): before
            # the planning lock, which taking their events in may need.
            expect = self.follower.view(site_id) if self.follower is not None else None
            if planning is not None:
                planning.acquire()
            try:
                model = self.model(site_id)
                wind = self.last_wind(model)
                with self._lock:
                    self._refuse_duplicate(site_id, request, exercise is not None)
                    model = self._current(model)
                with model.lock:
                    before = model.person_lonlat
                with self.db.read() as session:
                    stored = approved_plan(session, site_id, request.plan_id)  # in force
                incident, drafts = prepare(
                    stored,
                    model,
                    request,
                    actor=actor,
                    clock=self.clock,
                    wind=wind,
                    incident_id=incident_id,
                )
                if exercise is not None:
                    incident.exercise = str(exercise["drill_id"])
                    first = drafts[0]
                    drafts[0] = event_log.Draft(
                        first.type,
                        first.actor,
                        {**first.data, "exercise": dict(exercise)},
                        first.incident_id,
                        first.at,
                    )
                with self._lock:
                    if self._current(model) is not model:
                        continue
                    # one logged meanwhile
                    self._refuse_duplicate(site_id, request, exercise is not None)
                    try:
                        opened = self._open(model, incident, drafts, before, expect=expect)
                    except event_log.StaleView:
                        if attempt == ACTIVATION_TRIES - 1:
                            raise self._busy(site_id) from None
                        continue  # another process logged meanwhile: decided again
                break
            finally:
                if planning is not None:
                    planning.release()
        else:  # pragma: no cover
            raise AssertionError("unreachable: the last try holds the planning lock")
        # With no lock held (the desk takes its own, then the post's): a real incident comes
        # first, and the site's running drills are suspended.
        if exercise is None and self.drills is not None:
            self.drills.real_incident(site_id, opened[0])
        return opened

    def _refuse_duplicate(
        self, site_id: str, request: ActivationRequest, exercise: bool = False
    ) -> None:
        if request.second_incident:
            return
        for incident_id, rows in self._pending.items():
            first = rows[0]
            data = first.data if isinstance(first.data, dict) else {}
            logged = data.get("request")
            plan_id = logged.get("plan_id") if isinstance(logged, dict) else None
            if first.site_id == site_id and plan_id in (request.plan_id, None):
                raise Recovering(
                    f"incident '{incident_id}' of plan '{request.plan_id}' is being rebuilt "
                    'after a restart: ask again in a moment, or send "second_incident": true',
                    errors=[FieldError("plan_id", f"being rebuilt: {incident_id}")],
                    extra={"incident_id": incident_id, "recovery": self.recovery.as_dict()},
                )
        running = self.running_at(site_id, request.plan_id, request.location, exercise=exercise)
        if running is not None:
            raise IncidentConflict(
                f"plan '{request.plan_id}' already runs for this place as incident "
                f"'{running.id}'; send \"second_incident\": true to open another",
                errors=[FieldError("plan_id", f"already running: {running.id}")],
                extra={"incident_id": running.id},
            )

    def _open(
        self,
        model: SiteModel,
        incident: Incident,
        drafts: Sequence[event_log.Draft],
        before: np.ndarray,
        *,
        expect: int | None = None,
    ) -> tuple[str, bytes]:
        """Under the lock: log a computed activation, follow the people who moved while it
        was computed, and publish its picture (``StaleView``, and nothing changed, when
        another process logged after ``expect``)."""
        site_id = model.site.id
        moved = self._lay_live_over(model, before)
        if len(moved):
            follow_positions(model, incident, moved).apply(incident)
        with self.db.write() as session:
            logged = log_activation(session, incident, drafts, expect=expect)
            seq = logged[-1].seq
            picture = snapshot(model, incident, seq=seq)
            body = encode_bytes(picture)
            if self.follower is not None and self.relaying:
                # The other processes send this picture to their walls as it is, in place of
                # one rebuilt from the log (``_refreshed``): committed with the events.
                self.follower.relay_picture(session, logged[-1], body)
        if self.follower is not None and expect is not None:
            self.follower.wrote(site_id, expect, logged)
        if incident.exercise is not None:
            self.exercises[incident.id] = incident.exercise
        self.incidents[incident.id] = incident
        incident.to_account = {model.person_ids[int(i)] for i in incident.moving}
        self.scheduler.add(incident.run)
        self._track(logged)
        self._owe_cap(incident, logged)
        message = {"type": "incident", "seq": seq, "incident_id": incident.id}
        head = encode(message)[:-1]  # the same object, still open for its snapshot
        message["snapshot"] = picture
        message[ENCODED] = f'{head},"snapshot":{body.decode()}}}'
        self.hub.publish(site_id, [*map(event_message, logged), message])
        return incident.id, body

    def running_at(
        self, site_id: str, plan_id: str, place: Any, *, exercise: bool = False
    ) -> Incident | None:
        """The active incident of ``plan_id`` whose threat zones cover ``place`` (GeoJSON, or
        a shapely geometry), if any: among drills' incidents with ``exercise``, else among
        real ones (a drill never holds back a real activation, nor a real one a drill)."""
        try:
            point = place if isinstance(place, BaseGeometry) else shapely.geometry.shape(place)
            point = point.representative_point()
        except Exception:  # a malformed place: the activation refuses it with the reason
            return None
        for incident in self.incidents.values():
            if incident.site_id != site_id or incident.request.plan_id != plan_id:
                continue
            if (incident.exercise is not None) != exercise:
                continue
            source = shapely.Point(incident.assessment.source_lonlat)
            if source.equals(point) or any(
                z.geometry.covers(point) for z in incident.assessment.zones
            ):
                return incident
        return None

    def command(
        self,
        site_id: str,
        incident_id: str,
        act: Callable[[PlanRun], Any],
        *,
        closing: Callable[[Incident], event_log.Draft] | None = None,
        client: ClientAction | None = None,
    ) -> list[event_log.LoggedEvent]:
        """Apply a command to an incident's plan run, log its events, then publish them.

        Decided on this process's memory of the site, caught up with what other processes
        logged first; should one log in between, the append refuses (``StaleView``), nothing
        changes, and the command is decided again on the newer picture. ``client``: a queued
        action from a field terminal (``command.client_actions``), marked in the same
        transaction as its events."""
        for _ in range(STALE_TRIES):
            expect = self.follower.view(site_id) if self.follower is not None else None
            try:
                return self._command(
                    site_id, incident_id, act, closing=closing, expect=expect, client=client
                )
            except event_log.StaleView:
                continue
        raise self._busy(site_id)

    def _busy(self, site_id: str) -> IncidentConflict:
        return IncidentConflict(
            f"site {site_id} changed under this command {STALE_TRIES} times (other server "
            "processes logged meanwhile): nothing was done; send it again",
            errors=[FieldError("site", "busy: commands from other processes came first")],
        )

    def _command(
        self,
        site_id: str,
        incident_id: str,
        act: Callable[[PlanRun], Any],
        *,
        closing: Callable[[Incident], event_log.Draft] | None,
        expect: int | None,
        client: ClientAction | None = None,
    ) -> list[event_log.LoggedEvent]:
        with self._lock:
            incident = self.incident(site_id, incident_id)
            run = incident.run
            before = len(run.events)
            level = run.state.level
            act(run)
            new = run.events[before:]
            drafts = plan_drafts(incident, new)
            if closing is not None and not run.active:
                drafts.insert(0, closing(incident))
            if client is not None:
                drafts = client.stamp(drafts)
            try:
                with self.db.write() as session:
                    logged = event_log.append_many(
                        session,
                        site_id,
                        drafts,
                        exercises=self.exercises,
                        now=self.clock.now(),
                        expect=expect,
                    )
                    if client is not None:
                        client.logged(session, site_id, logged)
            except Exception:
                # The log is the truth: memory goes back to what it holds.
                incident.run = PlanRun.replay(run.events[:before], self.clock)
                if incident_id not in self.paused:
                    self.scheduler.add(incident.run)
                raise
            if self.follower is not None and expect is not None:
                self.follower.wrote(site_id, expect, logged)
            self.scheduler.watch(run)
            self._track(logged)
            self._owe_cap(incident, logged)
            incident.seq = logged[-1].seq if logged else incident.seq
            if not run.active:
                # Stood down: the log keeps the record; memory and new snapshots let it go.
                self.scheduler.remove(run.run_id)
                self.incidents.pop(incident_id, None)
                self.stood_down[incident_id] = site_id
            messages = [event_message(e) for e in logged]
            if run.active and run.state.level != level and logged:
                # The response level says who must move: the picture follows.
                model = self._planned_model(site_id)
                incident.moving = must_move(run.state.level, incident.levels)
                messages.append(self._picture_message(model, incident, logged[-1].seq))
            self.hub.publish(site_id, messages)
            return logged

    def stand_down(
        self,
        site_id: str,
        incident_id: str,
        actor: Actor,
        *,
        force: bool = False,
        reason: str | None = None,
    ) -> list[event_log.LoggedEvent]:
        """Close the incident. With people still missing or steps still open it needs
        ``force`` and a reason, and both are logged with what was open."""
        model = self.model(site_id)
        with self._lock:
            model = self._current(model)
            incident = self.incident(site_id, incident_id)
            count = headcount(model, incident.moving)
            missing = [m["id"] for m in count["missing"]]
            state = incident.run.state
            open_steps = [
                s.id for s in state.steps.values() if not s.withdrawn and s.status not in FINISHED
            ]
            if (missing or open_steps) and not force:
                raise IncidentConflict(
                    f"{len(missing)} people missing and {len(open_steps)} steps open: stand "
                    'down with "force": true and a reason, or finish them first',
                    errors=[FieldError("force", "people are missing or steps are open")],
                    extra={"missing": missing, "open_steps": open_steps},
                )
            if force and not (reason and reason.strip()):
                raise InvalidInput(
                    "a forced stand-down needs a reason",
                    errors=[FieldError("reason", "say why the incident closes with things open")],
                )

            def closing(closed: Incident) -> event_log.Draft:
                return event_log.Draft(
                    "incident.closed",
                    actor.id,
                    {
                        "forced": bool(missing or open_steps),
                        "reason": reason,
                        "missing": missing,
                        "open_steps": open_steps,
                        "headcount": {k: count[k] for k in ("at", "accounted", "on_site")},
                        # The final picture's live parts, which the log cannot rebuild.
                        "to_move": len(closed.moving),
                        "exposure_counts": closed.exposure.as_dict()["counts"],
                    },
                    closed.id,
                )

            text = reason.strip() if reason and reason.strip() else "incident closed"
            logged = self.command(
                site_id,
                incident_id,
                lambda run: run.stand_down(actor, reason=text),
                closing=closing,
            )
        if self.drills is not None:
            self.drills.incident_closed(site_id, incident_id)
        return logged

    def tick(self) -> list[event_log.LoggedEvent]:
        """Fire passed due times (call every second): log and publish the overdue events.

        Only the leading process fires deadlines, call-tree fallbacks, shelvings' and
        temporary fences' ends, detector health and drills' timers (``command.leader``).
        Every process fires the timers of what it took itself (alarm delays of its readings,
        fence stays, man-down and lost signals of its positions) and sends its own walls the
        pictures owed to them."""
        if not self.leading:
            with self._lock:
                self._send_owed_pictures()
            from command.monitoring.alarm_desk import alarm_clock

            own = alarm_clock(self, shelvings=False)
            own += self.fences.tick(expire=False)
            try:  # flags kept as the leader's (it logs them)
                self.health.tick()
            except Exception:  # the next second tries again; the rest goes on meanwhile
                log.exception("detector health not checked; the next tick retries")
            return own + self.watch_wristbands()
        if self.follower is not None:
            # A new leader fires nothing the log already holds: caught up first.
            self.follower.catch_up()
        with self._lock:
            fired = self.scheduler.tick()
            by_incident: dict[str, list[PlanEvent]] = {}
            for event in fired:
                by_incident.setdefault(event.run_id, []).append(event)
            out: list[event_log.LoggedEvent] = []
            stale: list[tuple[str, str]] = []
            for incident_id, plan_events in by_incident.items():
                incident = self.incidents[incident_id]
                site_id = incident.site_id
                # Should another process have logged meanwhile (two leaders for a moment,
                # after a partition), nothing fires on a stale picture: the incident is
                # rebuilt from the log, and what is still due fires at the next tick.
                expect = self.follower.applied.get(site_id) if self.follower else None
                try:
                    with self.db.write() as session:
                        logged = event_log.append_many(
                            session,
                            site_id,
                            plan_drafts(incident, plan_events),
                            exercises=self.exercises,
                            now=self.clock.now(),
                            expect=expect,
                        )
                except event_log.StaleView:
                    stale.append((site_id, incident_id))
                    continue
                except OwnedElsewhere:  # a site's log replicated here: its own server fires
                    continue
                if self.follower is not None and expect is not None:
                    self.follower.wrote(site_id, expect, logged)
                self.hub.publish(site_id, [event_message(e) for e in logged])
                out += logged
            # Call-tree contacts who did not answer in time: the next one is called. After a
            # long gap a fallback may be overdue already: go on until no call is.
            while overdue := self.calltree.overdue(self.clock.now(), skip=self.paused):
                by_site: dict[str, list[event_log.Draft]] = {}
                for site_id, draft in overdue:
                    by_site.setdefault(site_id, []).append(draft)
                for site_id, drafts in by_site.items():
                    try:
                        with self.db.write() as session:
                            logged = event_log.append_many(
                                session,
                                site_id,
                                drafts,
                                exercises=self.exercises,
                                now=self.clock.now(),
                            )
                    except OwnedElsewhere:  # replicated here: the site's server calls on
                        continue
                    self._track(logged)
                    self.hub.publish(site_id, [event_message(e) for e in logged])
                    out += logged
            self._send_owed_pictures()
        for site_id, incident_id in stale:
            self._refreshed(site_id, incident_id)

        def cap_alerts() -> list[Any]:
            self.send_cap()  # logged and published; not among the deadlines fired
            return []

        timers: list[tuple[str, Callable[[], list[Any]]]] = [
            ("alarm delays and shelvings", self._alarm_clock),
            ("CAP alerts", cap_alerts),
            ("fences", self.fences.tick),  # temporary fences expired, stays too long
            ("wristbands", self.watch_wristbands),  # man-down and signal lost
            ("detector health", self.health.tick),  # detectors gone silent, checks come due
            ("queued actions' keys", self.forget_client_keys),  # those kept a week
        ]
        if self.drills is not None:  # outside the lock: the desk calls in as any client does
            timers.append(("drills", self.drills.tick))
        for name, fire in timers:
            # One kind of timer that fails (a site replicated here from its own server, whose
            # log only that server writes, or a fault) stops neither the others nor the next
            # second's round.
            try:
                out += fire()
            except Exception:
                log.exception("the %s timers failed this second; the next second retries", name)
        if self.follower is not None and self.relaying:  # relayed positions of long ago
            self.follower.prune_positions()
        return out

    def forget_client_keys(self) -> list[Any]:
        """The leader's housekeeping: queued actions' keys older than their keep
        (``command.client_actions.KEEP``) are purged, at most every
        :data:`FORGET_KEYS_EVERY`. Their photos stay (evidence: the log holds their hashes)."""
        now = self.clock.now()
        last = self._keys_forgotten_at
        if last is not None and timedelta(0) <= now - last < FORGET_KEYS_EVERY:
            return []
        self._keys_forgotten_at = now
        purge_expired(self.db, now)
        return []

    def _send_owed_pictures(self) -> None:
        """Pictures owed to the walls since people walked into a zone: all of them now (under
        the lock)."""
        owed = {self.incidents[i].site_id for i in self._picture_due if i in self.incidents}
        for site_id in sorted(owed):
            model = self._planned_model(site_id)
            with self.db.read() as session:
                seq = event_log.last_seq(session, site_id)
            self.hub.publish(site_id, self._due_pictures(model, seq, wait=False))
        self._picture_due.clear()

    def cap_delivered(self, alert: CapAlert, ok: bool, attempts: int, detail: str) -> None:
        """Log the outcome of posting a CAP alert (called by the sender)."""
        site_id = (
            self.incidents[alert.incident_id].site_id
            if alert.incident_id in (self.incidents)
            else self.stood_down.get(alert.incident_id)
        )
        if site_id is None:  # pragma: no cover (an alert is made for a known incident)
            return
        with self._lock, self.db.write() as session:
            event = event_log.append(
                session,
                site_id,
                "cap.delivered" if ok else "cap.failed",
                actor="system",
                incident_id=alert.incident_id,
                data={"identifier": alert.identifier, "attempts": attempts, "detail": detail},
                at=self.clock.now(),
                exercises=self.exercises,
                now=self.clock.now(),
            )
            self.hub.publish(site_id, [event_message(event)])

    def pause_incident(self, incident_id: str) -> None:
        """A drill held or suspended: its incident's deadlines and call-tree fallbacks wait."""
        with self._lock:
            self.paused.add(incident_id)
            self.scheduler.remove(incident_id)

    def resume_incident(self, incident_id: str) -> None:
        """The drill goes on: what fell due meanwhile fires on the next tick."""
        with self._lock:
            self.paused.discard(incident_id)
            incident = self.incidents.get(incident_id)
            if incident is not None and incident.run.active:
                self.scheduler.add(incident.run)

    def _owe_cap(self, incident: Incident, logged: Sequence[event_log.LoggedEvent]) -> None:
        alerting = [e for e in logged if e.type in CAP_ALERTING]
        if alerting and self.cap_enabled:
            self._cap_due.append((incident, alerting))

    def send_cap(self) -> list[event_log.LoggedEvent]:
        """The CAP alerts owed: made, checked against the CAP 1.2 schema, logged as
        ``cap.alert`` events and handed to the platform's outbox."""
        with self._lock:
            due, self._cap_due = self._cap_due, []
        out: list[event_log.LoggedEvent] = []
        for incident, alerting in due:
            try:
                out += self._cap(incident, alerting)
            except Exception:  # an alert not made is logged as such; command goes on
                log.exception("no CAP alert for incident %s", incident.id)
        return out

    def _cap(
        self, incident: Incident, alerting: Sequence[event_log.LoggedEvent]
    ) -> list[event_log.LoggedEvent]:
        site_id = incident.site_id
        model = self._planned_model(site_id)
        with self.db.read() as session:
            first = session.scalar(
                select(EventRow)
                .where(
                    EventRow.site_id == site_id,
                    EventRow.incident_id == incident.id,
                    EventRow.type == "incident.activated",
                )
                .limit(1)
            )
        if first is None:  # pragma: no cover (logged in the same transaction as its picture)
            return []
        activation = event_log.LoggedEvent(
            first.site_id,
            first.seq,
            first.at,
            first.type,
            first.actor,
            first.incident_id,
            first.data,
            first.prev_hash,
            first.hash,
        )
        zones = [
            (z.label or f"threat zone {z.level}", z.geometry) for z in incident.assessment.zones
        ]
        alerts = cap_alerts(
            alerting,
            lambda _: zones,
            sender=f"rallypoint.{site_id}",
            site_name=model.site.name,
            site_tz=model.site.timezone,
            activations={incident.id: activation},
        )
        if not alerts:
            return []
        drafts = [
            event_log.Draft("cap.alert", "system", a.log_data(), incident.id, self.clock.now())
            for a in alerts
        ]
        with self._lock:
            with self.db.write() as session:
                logged = event_log.append_many(
                    session, site_id, drafts, exercises=self.exercises, now=self.clock.now()
                )
            self.hub.publish(site_id, [event_message(e) for e in logged])
        send = [a for a in alerts if a.status == "Actual" or self.cap_exercise_safe]
        if send and self.cap_outbox is not None:
            self.cap_outbox(send)
        return logged

    def acknowledge(
        self, site_id: str, seq: int, *, actor: str, channel: str, note: str | None = None
    ) -> event_log.LoggedEvent:
        """A commander answers for the person called, who reached them on ``channel`` (radio,
        phone, in person): no fallback will be called, and the log says who answered how."""
        with self._lock:
            notice = self._open_notice(site_id, seq)
            data = {
                "notification": seq,
                "contact": notice.contact,
                "by": "commander",
                "channel": channel,
                **({"note": note} if note else {}),
            }
            return self._answered(notice, actor, data)

    def answer(self, token: str) -> event_log.LoggedEvent:
        """The person called answers through their call-out's link (its token): that notice,
        and only it, is acknowledged."""
        # Looked up before the lock: an anonymous flood of made-up tokens never holds it.
        with self.db.read() as session:
            row = answered_by_token(session, token)
            found = (row.site_id, row.seq, row.used_at) if row is not None else None
        with self._lock:
            if found is None:
                raise NotFound(
                    "this answer link is unknown: use the link of the call-out you received",
                    errors=[FieldError("token", "unknown")],
                )
            site_id, seq, used_at = found
            if used_at is not None:
                raise IllegalTransition(
                    f"this call-out was answered already, at {used_at.isoformat()}",
                    errors=[FieldError("token", "already answered")],
                )
            notice = self._open_notice(site_id, seq)
            data = {
                "notification": seq,
                "contact": notice.contact,
                "by": "contact",
                "channel": "link",
            }
            return self._answered(notice, f"contact:{notice.contact.get('name', '?')}", data)

    def _open_notice(self, site_id: str, seq: int) -> Notice:
        notice = self.calltree.open.get((site_id, seq))
        if notice is None:
            raise NotFound(
                f"no notification {seq} waiting for an answer at site {site_id}: it is "
                "unknown, answered, or was passed on to the next contact",
                errors=[FieldError("notification", "unknown, answered or passed on")],
            )
        return notice

    def answer_own(
        self, site_id: str, seq: int, *, names: Collection[str], client: ClientAction
    ) -> event_log.LoggedEvent:
        """A signed-in person answers their own call-out (``names``: their username, and their
        display name when it is theirs alone; see :meth:`own_notices`), from the app."""
        with self._lock:
            waiting = (site_id, seq) in self.calltree.open
        if not waiting and self.follower is not None:
            # Another process may have called it out a moment ago: its events first (no lock
            # held), then look again.
            self.follower.catch_up(site_id)
        with self._lock:
            notice = self._open_notice(site_id, seq)
            if not self._owns(notice, names):
                raise NotPermitted(
                    f"notification {seq} calls {notice.contact.get('name', '?')} for the role "
                    f"'{notice.role}', not you: a commander may answer for them",
                    errors=[FieldError("notification", "not your call-out")],
                )
            data = {
                "notification": seq,
                "contact": notice.contact,
                "by": "contact",
                "channel": "app",
            }
            return self._answered(notice, client.actor, data, client)

    def own_notices(self, site_id: str, names: Collection[str]) -> list[Notice]:
        """The call-outs waiting for an answer at ``site_id`` that are the caller's: they hold
        the duty of the notice's plan role in its incident, or the contact called is named
        as them (``names``, compared case-blind)."""
        return sorted(
            (
                n
                for (s, _), n in list(self.calltree.open.items())
                if s == site_id and self._owns(n, names)
            ),
            key=lambda n: n.seq,
        )

    def _owns(self, notice: Notice, names: Collection[str]) -> bool:
        folded = {n.strip().casefold() for n in names if n.strip()}
        if str(notice.contact.get("name", "")).strip().casefold() in folded:
            return True
        incident = self.incidents.get(notice.incident_id or "")
        holders = incident.duties.get(notice.role, set()) if incident is not None else set()
        return any(h.casefold() in folded for h in holders)

    def _answered(
        self,
        notice: Notice,
        actor: str,
        data: dict[str, Any],
        client: ClientAction | None = None,
    ) -> event_log.LoggedEvent:
        """Under the lock: log the answer, spend the notice's token, stop its fallbacks."""
        drafts = [event_log.Draft("notification.acknowledged", actor, data, notice.incident_id)]
        with self.db.write() as session:
            [event] = event_log.append_many(
                session,
                notice.site_id,
                client.stamp(drafts) if client is not None else drafts,
                exercises=self.exercises,
                now=self.clock.now(),
            )
            if client is not None:
                client.logged(session, notice.site_id, [event])
            spent = session.execute(
                update(NoticeTokenRow)
                .where(
                    NoticeTokenRow.site_id == notice.site_id,
                    NoticeTokenRow.seq == notice.seq,
                    NoticeTokenRow.used_at.is_(None),
                )
                .values(used_at=event.at)
            )
            if getattr(spent, "rowcount", 1) == 0:
                # Answered already, by another process this one has not caught up with: the
                # answer just appended rolls back.
                conflict = _answered_already(session, notice)
                if conflict is not None:
                    raise conflict
        self.calltree.acknowledge(notice.site_id, notice.seq)
        self.hub.publish(notice.site_id, [event_message(event)])
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
                    check_duty_holder(
                        session, username, commands=role == template.command_role, site_id=site_id
                    )
            data = {"role": role, "username": username}
            kind = "duty.assigned" if assign else "duty.released"
            with self.db.write() as session:
                event = event_log.append(
                    session,
                    site_id,
                    kind,
                    actor=actor,
                    incident_id=incident_id,
                    data=data,
                    exercises=self.exercises,
                    now=self.clock.now(),
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
                exercises=self.exercises,
                now=self.clock.now(),
            )
        self.hub.publish(notice.site_id, [event_message(event)])

    def _track(self, logged: Sequence[event_log.LoggedEvent]) -> None:
        notices = self.calltree.track(logged)
        if not notices:
            return
        try:
            with self.db.write() as session:  # each notice's answer token, for its call-out
                issue_answer_tokens(session, notices, self.clock.now())
        except Exception:
            # The notices are logged already: they go out without an answer link rather than
            # not at all, and a commander can still answer for the person called.
            log.exception("no answer tokens for notices %s", [n.seq for n in notices])
            for notice in notices:
                notice.answer_token = None
        real = [n for n in notices if not n.data.get("exercise")]
        drill = [n for n in notices if n.data.get("exercise")]
        if real and self.outbox is not None:
            self.outbox(real)
        if drill:
            # A drill's call-outs reach no real outside channel: only one configured as
            # exercise-safe; otherwise the log says each was held back.
            if self.exercise_outbox is not None:
                self.exercise_outbox(drill)
            else:
                self._withheld(drill)

    def _withheld(self, notices: Sequence[Notice]) -> None:
        drafts = [
            event_log.Draft(
                "notification.withheld",
                "system",
                {
                    "notification": n.seq,
                    "contact": n.contact,
                    "reason": "a drill's call-out: no exercise-safe channel is configured",
                },
                n.incident_id,
                self.clock.now(),
            )
            for n in notices
        ]
        site_id = notices[0].site_id
        with self.db.write() as session:
            logged = event_log.append_many(
                session, site_id, drafts, exercises=self.exercises, now=self.clock.now()
            )
        self.hub.publish(site_id, [event_message(e) for e in logged])

    def readings(
        self,
        site_id: str,
        readings: Sequence[Reading],
        *,
        actor: str,
        exercise: str | None = None,
    ) -> list[event_log.LoggedEvent]:
        """Take sensor readings: tier changes, proposed plans and wind changes are logged and
        sent; readings that change nothing are not events. A batch is taken whole or not at
        all: nothing is kept in memory (tiers, last readings, re-evaluated plumes) until the
        batch's events are logged.

        ``exercise`` names the drill whose inject they are: the same checks and the same events,
        marked, but on the drill's own detector tiers and its incident's plume only; no real
        tier, last reading, alarm or plume moves. A real reading that raises an alarm suspends
        the site's running drills."""
        model = self.model(site_id)
        unknown = sorted({r.sensor_id for r in readings} - set(model.sensors))
        if unknown:
            raise InvalidInput(
                f"unknown sensors {unknown[:10]}; none of the readings was taken",
                errors=[FieldError("readings.sensor_id", f"unknown: {', '.join(unknown[:10])}")],
            )
        refuse_impossible(readings, model.sensors)
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
        winds = [r for r in readings if model.sensors[r.sensor_id].kind == "wind"]
        # A wind change re-evaluates the plumes outside the lock, in order per site.
        with self._planning_lock(site_id) if winds else contextlib.nullcontext():
            logged = self._readings(site_id, model, readings, winds, actor, exercise)
        logged += self.health.observe(site_id, readings, exercise=exercise)  # detector health
        if exercise is None and self.drills is not None:
            for event in logged:
                tier = event.data.get("to") if event.type == "sensor.state" else None
                if tier is not None and tier in ALARMING and not event.data.get("test"):
                    self.drills.real_alarm(site_id, str(event.data["sensor_id"]), str(tier))
        return logged

    def _readings(
        self,
        site_id: str,
        model: SiteModel,
        readings: Sequence[Reading],
        winds: Sequence[Reading],
        actor: str,
        exercise: str | None = None,
    ) -> list[event_log.LoggedEvent]:
        model = self._current(model)
        gone = sorted({r.sensor_id for r in readings} - set(model.sensors))
        if gone:  # deleted by a planner since the batch was checked
            raise InvalidInput(
                f"unknown sensors {gone[:10]}; none of the readings was taken",
                errors=[FieldError("readings.sensor_id", f"unknown: {', '.join(gone[:10])}")],
            )
        positions: np.ndarray | None = None
        pictures: list[tuple[Incident, Reassessment]] = []
        if winds:
            with model.lock:
                positions = model.person_lonlat
            # The plume follows the newest wind of the batch: one re-evaluation, not one each.
            pictures = self._wind(model, winds[-1], exercise)
        with self._lock:
            if self._current(model) is not model:  # planned on new layers meanwhile
                model, positions = self._current(model), None
                gone = sorted({r.sensor_id for r in readings} - set(model.sensors))
                if gone:
                    raise InvalidInput(
                        f"unknown sensors {gone[:10]}; none of the readings was taken",
                        errors=[FieldError("readings.sensor_id", f"unknown: {gone[0]}")],
                    )
                pictures = self._wind(model, winds[-1], exercise) if winds else []
            pictures = [(i, a) for i, a in pictures if self.incidents.get(i.id) is i]
            held = self.exercise_tiers if exercise is not None else self.sensor_tiers
            tiers = dict(held.get(exercise if exercise is not None else site_id, {}))
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
                plans = [p.template for p in approved_plans(session, site_id)]
                self.alarm_board.setup(site_id, session)
            # Tiers with deadband and delays, confirmation and proposals
            # (command.monitoring.alarms): the events, and the state memory takes once logged.
            scope = (site_id, exercise)
            outcome = self.alarm_board.evaluate(
                scope,
                build=model.build,
                sensors=model.sensors,
                zones=model.layers["zones"],
                tiers=tiers,
                values=[(r.sensor_id, r.value) for r in readings],
                now=self.clock.now(),
                actor=actor,
                plans=plans,
                running_at=self._running_at_sensor(site_id, exercise),
                flags=self._alarm_flags_of(site_id),
            )
            drafts += outcome.drafts
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
                    logged = event_log.append_many(
                        session, site_id, drafts, exercises=self.exercises, now=self.clock.now()
                    )
            # Logged (or nothing to log): now memory follows.
            self.alarm_board.apply(scope, outcome)
            if exercise is not None:  # the drill's own tiers; the real ones stay as they are
                self.exercise_tiers[exercise] = tiers
                if winds:
                    self.exercise_wind.add(exercise)
            else:
                self.sensor_tiers[site_id] = tiers
                self.alarms.follow(logged)
                taken_at = self.clock.now()
                # Journal and periods; the leader alone stores the periods (it has every
                # process's readings, relayed).
                self.alarm_history.follow(
                    site_id, logged, readings, taken_at, store=self.leading or not self.relaying
                )
                self.last_readings.setdefault(site_id, {}).update(latest)
                self._unsaved_readings.setdefault(site_id, {}).update(latest)
                if self.relaying:  # the other processes' sensor states, at the next relay
                    self._relay_readings.setdefault(site_id, {}).update(latest)
                    self._relay_batches.setdefault(site_id, []).append(
                        [
                            taken_at.timestamp(),
                            [r.sensor_id for r in readings],
                            [r.value for r in readings],
                            [r.direction_deg for r in readings],
                        ]
                    )
            if not logged:
                return []
            moved = self._lay_live_over(model, positions) if positions is not None else None
            self._publish_pictures(model, pictures, logged, moved)
            return logged

    def _running_at_sensor(
        self, site_id: str, exercise: str | None
    ) -> Callable[[str, Sensor], str | None]:
        """Plan id and sensor -> the incident of that plan already running at its place."""

        def running(plan_id: str, sensor: Sensor) -> str | None:
            if sensor.lonlat is None:
                return None
            found = self.running_at(
                site_id, plan_id, shapely.Point(sensor.lonlat), exercise=exercise is not None
            )
            return found.id if found else None

        return running

    def _alarm_flags_of(self, site_id: str) -> Callable[[str], Mapping[str, Any] | None] | None:
        flags = self.alarm_flags
        return (lambda sensor_id: flags(site_id, sensor_id)) if flags is not None else None

    def _alarm_clock(self) -> list[event_log.LoggedEvent]:
        """Under the lock, each second: delays that completed without a new reading move
        their tiers, and shelvings that expired end (``command.monitoring.alarm_desk``)."""
        from command.monitoring.alarm_desk import alarm_clock  # it uses the post's methods

        return alarm_clock(self)

    def restrict(
        self,
        site_id: str,
        incident_id: str,
        *,
        actor: str,
        reason: str,
        edge_id: str | None = None,
        resource_id: str | None = None,
    ) -> list[event_log.LoggedEvent]:
        """Close a network edge, or take a resource out of service, for one incident (a drill's
        inject): its routes and nearest resources are computed again without it, logged
        (``incident.road_closed`` or ``incident.resource_out``, with who is rerouted) and sent
        with the new picture. The site model itself is not changed."""
        model = self.model(site_id)
        if edge_id is not None and edge_id not in {
            str(f["id"]) for f in model.layers.get("network", [])
        }:
            raise InvalidInput(
                f"no network edge '{edge_id}' at site '{site_id}'",
                errors=[FieldError("edge_id", "unknown")],
            )
        if resource_id is not None and resource_id not in {
            str(f["id"]) for f in model.layers.get("resources", [])
        }:
            raise InvalidInput(
                f"no resource '{resource_id}' at site '{site_id}'",
                errors=[FieldError("resource_id", "unknown")],
            )
        with self._planning_lock(site_id):
            model = self._current(model)
            with model.lock:
                positions = model.person_lonlat
            incident = self.incident(site_id, incident_id)
            closed = incident.closed_edges
            if edge_id is not None and edge_id not in closed:
                closed = (*closed, edge_id)
            out = incident.resources_out | ({resource_id} if resource_id else set())
            again = reassess(model, incident, closed_edges=closed, resources_out=frozenset(out))
            with self._lock:
                if self.incidents.get(incident_id) is not incident:
                    raise NotFound(
                        f"incident '{incident_id}' closed meanwhile",
                        errors=[FieldError("incident", "closed")],
                    )
                kind = "incident.road_closed" if edge_id else "incident.resource_out"
                target = {"edge_id": edge_id} if edge_id else {"resource_id": resource_id}
                draft = event_log.Draft(
                    kind,
                    actor,
                    {**target, "reason": reason, "rerouted": again.rerouted},
                    incident_id,
                    self.clock.now(),
                )
                with self.db.write() as session:
                    logged = event_log.append_many(
                        session, site_id, [draft], exercises=self.exercises, now=self.clock.now()
                    )
                moved = self._lay_live_over(model, positions)
                self._publish_pictures(model, [(incident, again)], logged, moved)
                return logged

    def route(
        self, model: SiteModel, incident_id: str, lonlat: tuple[float, float]
    ) -> dict[str, Any]:
        """One route from ``lonlat`` under the incident's current zones and wind."""
        with self._lock:  # the routes and the picture they belong to, together
            incident = self.incident(model.site.id, incident_id)
            routes, seq = incident.routes, incident.seq
        return {**route_from(routes, lonlat), "seq": seq}

    def tasks(self, site_id: str, username: str, *, commander: bool) -> list[dict[str, Any]]:
        """The open steps of the plan roles ``username`` holds by duty in the site's active
        incidents (a commander: also each plan's command role), soonest due first."""
        self.model(site_id)  # NotFound for an unknown site
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
        """The latest reading of any wind station of the site, if one has reported: in memory,
        or stored (by another process too, such as ``rallypoint demo wind``)."""
        with self.db.read() as session:
            stored = stored_readings(session, model.site.id).get(model.site.id, {})
        with self._lock:
            latest = self.last_readings.get(model.site.id, {})
            winds = [
                WindReading(sensor_id, r["value"], r["direction_deg"], r["at"])
                for readings in (stored, latest)
                for sensor_id, r in readings.items()
                if r["direction_deg"] is not None
                and sensor_id in model.sensors
                and model.sensors[sensor_id].kind == "wind"
            ]
        return max(winds, key=lambda w: datetime.fromisoformat(w.at), default=None)

    def sensor_state(self, site_id: str) -> list[dict[str, Any]]:
        """Each sensor of the site that has a tier, a reading or an alarm: its tier, last
        reading and alarm (None, or awaiting or holding an acknowledgement)."""
        model = self.model(site_id)
        with self._lock:
            tiers = dict(self.sensor_tiers.get(site_id, {}))
            latest = dict(self.last_readings.get(site_id, {}))
            alarms = {k: a.as_dict() for k, a in self.alarms.sites.get(site_id, {}).items()}
            conditions = self.alarm_board.conditions(site_id)
        confirmed, checks, modes = (conditions[k] for k in ("confirmed", "checks", "modes"))
        return [
            {
                "id": sensor.id,
                "kind": sensor.kind,
                "substance": sensor.substance,
                "tier": tiers.get(sensor.id),
                "last_reading": latest.get(sensor.id),
                "alarm": alarms.get(sensor.id),
                # Alarm management (command.monitoring.alarms): how the alarm was confirmed
                # (None: not), whether the post was asked to check, the sensor's mode.
                "confirmed": confirmed.get(sensor.id),
                "check_requested": sensor.id in checks,
                "mode": modes.get(sensor.id),
            }
            for sensor in model.sensors.values()
            if sensor.id in tiers
            or sensor.id in latest
            or sensor.id in alarms
            or sensor.id in modes
        ]

    def acknowledge_alarm(
        self,
        site_id: str,
        sensor_id: str,
        *,
        actor: str,
        by_name: str | None = None,
        note: str | None = None,
    ) -> event_log.LoggedEvent:
        """Someone acknowledges a sensor's alarm: ``sensor.acknowledged``, naming who. An
        unknown sensor is :class:`NotFound`; one with no alarm awaiting an acknowledgement is
        :class:`IllegalTransition` (409), naming its state, and nothing is logged."""
        model = self.model(site_id)
        with self._lock:
            alarm = self.alarms.of(site_id, sensor_id)
            # A sensor deleted from the layer while its alarm waits is still acknowledged:
            # otherwise its alarm would sound on every wall for ever.
            if sensor_id not in model.sensors and alarm is None:
                raise NotFound(
                    f"no sensor '{sensor_id}' at site '{site_id}'",
                    errors=[FieldError("sensor", "unknown")],
                )
            if alarm is None or alarm.acknowledged is not None:
                tier = self.sensor_tiers.get(site_id, {}).get(sensor_id)
                raise IllegalTransition(
                    nothing_to_acknowledge(sensor_id, tier, alarm),
                    errors=[FieldError("sensor", "no alarm awaits an acknowledgement")],
                )
            data = {
                "sensor_id": sensor_id,
                "tier": alarm.tier,
                "value": alarm.value,
                "by": actor,
                "by_name": by_name,
                "note": note,
            }
            with self.db.write() as session:
                event = event_log.append(
                    session,
                    site_id,
                    "sensor.acknowledged",
                    actor=actor,
                    data=data,
                    now=self.clock.now(),
                )
            self.alarms.follow([event])
            self.hub.publish(site_id, [event_message(event)])
            return event

    def _wind(
        self, model: SiteModel, reading: Reading, exercise: str | None = None
    ) -> list[tuple[Incident, Reassessment]]:
        """Re-evaluate the site's active gas releases under a wind station's new reading (a
        drill's injected wind: its incident's only; the real wind: every incident's, drills'
        too, as they run under the real weather)."""
        if reading.direction_deg is None:
            return []
        out = []
        for incident in list(self.incidents.values()):
            hazard = incident.request.hazard
            if incident.site_id != model.site.id or not incident.run.active:
                continue
            if exercise is not None and incident.exercise != exercise:
                continue
            if exercise is None and incident.exercise in self.exercise_wind:
                continue  # its drill set its wind: the scenario's, not the station's
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

    def positions(
        self,
        site_id: str,
        moves: Mapping[str, tuple[float, float, datetime | None]],
        *,
        exercise: str | None = None,
        restore: bool = False,
        accuracy: Mapping[str, float] | None = None,
        relayed: bool = False,
    ) -> dict[str, Any]:
        """Live positions (person -> lon, lat, observed at; receipt time when not given). A
        position observed before the one held is ignored and counted. ``accuracy`` (person ->
        metres; else the ``accuracy`` of :class:`command.monitoring.wristbands.Moves`) filters
        jitter and drives the wristband timers (``command.monitoring.wristbands``). The site
        model moves the people; each active incident follows: who is in which zone, who must
        move, and the moved people's routes from where they are now. Subscribers get each
        latest position (coalesced per client) and the headcount.

        ``exercise`` names the drill whose inject they are: the walls see them as any others,
        but they are never stored as the people's positions (a restart forgets them, and the
        drill puts them back when it ends).

        ``relayed``: positions another process took (``command.log_follower``): filtered,
        stored and logged there (its events come through the log); here they move the people
        and this process's walls see them."""
        model = self.model(site_id)
        refuse_far_positions(model.site, moves)
        now = self.clock.now()
        ahead = [
            FieldError(f"positions.{pid}.observed_at", "more than a minute in the future")
            for pid, (_, _, at) in moves.items()
            if at is not None and (at - now).total_seconds() > MAX_CLOCK_AHEAD_S
        ]
        if ahead:
            raise InvalidInput(
                f"{len(ahead)} position(s) observed in the future; none was taken",
                errors=ahead[:100],
            )
        # A device clock a little ahead is taken as now: kept as given, it would hold back the
        # person's true later positions that carry no time of their own.
        timed = {pid: (x, y, min(at or now, now).timestamp()) for pid, (x, y, at) in moves.items()}
        if restore:  # back to where and when they were really seen (None: never)
            timed = {
                pid: (x, y, at.timestamp() if at is not None else -math.inf)
                for pid, (x, y, at) in moves.items()
            }
        with self._lock:
            model = self._current(model)
            if restore:  # what a drill's inject moved is no newer than the truth it hid
                with model.lock:
                    times = model.person_seen_at.copy()
                    times[[model.person_row[p] for p in timed if p in model.person_row]] = -math.inf
                    model.person_seen_at = times
            band: bands.Taken | None = None
            if exercise is None and not restore and not relayed:  # injects pass unfiltered
                zones = self.wristbands.zones(model.site, model.build, model.layers["zones"])
                band = self.wristbands.take(
                    model.site,
                    zones,
                    model.person_row,
                    timed,
                    bands.accuracy_of(moves) if accuracy is None else accuracy,
                )
                timed = band.timed
            moved = move_people(model, timed)
            if moved.unknown:
                log.info(
                    "positions of %d unknown people ignored at %s", len(moved.unknown), site_id
                )
            if moved.stale:
                self.stale_positions[site_id] = self.stale_positions.get(site_id, 0) + len(
                    moved.stale
                )
            ids = [model.person_ids[int(r)] for r in moved.rows]
            live = self.live.setdefault(site_id, {})
            truth = self._real_live.setdefault(site_id, {})
            unsaved = self._unsaved.setdefault(site_id, set())
            for pid in ids:
                if exercise is not None and pid in unsaved and pid not in truth:
                    truth[pid] = live[pid]  # a real position not yet stored: stored, not this
                elif exercise is None:
                    truth.pop(pid, None)
                live[pid] = timed[pid]
            if exercise is None and not relayed:
                unsaved.update(ids)
                if self.relaying:  # to the other processes' walls, at the next relay
                    relay = self._relay.setdefault(site_id, {})
                    for pid in ids:
                        relay[pid] = list(timed[pid])
            count = headcount(model)
            # A drill's positions move its own incident only: a real incident never counts a
            # person where an inject put them.
            followed = [
                (incident, follow_positions(model, incident, moved.rows))
                for incident in self.incidents.values()
                if incident.site_id == site_id
                and len(moved.rows)
                and (exercise is None or incident.exercise == exercise)
            ]
            # Who walked into or out of a threat zone, or must move now: logged, as the
            # commander must know.
            drafts = [
                event_log.Draft(
                    "incident.people_moved",
                    "system",
                    {**f.change, **({"must_move": f.must_move} if f.must_move else {})},
                    incident.id,
                )
                for incident, f in followed
                if f.change or f.must_move
            ]
            drafts += band.drafts if band is not None else []  # wristband alarms cleared
            # Full muster: everyone who has had to move since the activation stands at a
            # muster point now (the review's "time to full muster", when it happened).
            with model.lock:
                at_muster = model.person_muster >= 0
            mustered: dict[str, bool] = {}
            for incident, f in followed:
                accounted = incident.to_account | {model.person_ids[int(i)] for i in f.moving}
                rows = [model.person_row[p] for p in accounted if p in model.person_row]
                mustered[incident.id] = bool(rows) and bool(at_muster[rows].all())
                if mustered[incident.id] and not incident.mustered:
                    drafts.append(
                        event_log.Draft(
                            "incident.mustered",
                            "system",
                            {
                                "to_account": len(rows),
                                "headcount": {k: count[k] for k in ("at", "accounted")},
                            },
                            incident.id,
                        )
                    )
            if relayed:  # the process that took them logged what they changed
                drafts = []
            with self.db.write() if drafts else self.db.read() as session:
                logged = (
                    event_log.append_many(
                        session, site_id, drafts, exercises=self.exercises, now=self.clock.now()
                    )
                    if drafts
                    else []
                )
                seq = event_log.last_seq(session, site_id)
            self.wristbands.alarms.follow(logged)
            messages: list[dict[str, Any]] = [*map(event_message, logged)]
            for incident, f in followed:
                f.apply(incident)
                incident.to_account |= {model.person_ids[int(i)] for i in f.moving}
                incident.mustered = mustered[incident.id]
                if f.must_move:  # new people to route: the wall draws them from the picture
                    incident.seq = seq
                    self._picture_due.add(incident.id)
            messages += self._due_pictures(model, seq, wait=True)
            messages.append(
                {
                    "type": "positions",
                    "seq": seq,
                    "positions": {pid: list(timed[pid][:2]) for pid in ids},
                    "seen_at": {
                        pid: _iso(timed[pid][2]) if math.isfinite(timed[pid][2]) else None
                        for pid in ids
                    },
                    "at_muster": _arrivals(model, moved.rows),
                    "headcount": count,
                }
            )
            self.hub.publish(site_id, messages)
            if exercise is None and not restore and not relayed:  # fences: who entered, left
                self.fences.positions(site_id, model, moved.rows)
        return {
            "accepted": len(ids),
            "unknown": moved.unknown,
            "stale": moved.stale,
            "held": band.held if band is not None else {},
            "headcount": count,
            "events": [e.as_dict() for e in logged],
        }

    def take_relay(self) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, Any]]]:
        """The positions and readings not yet relayed to the other processes (and forget
        them): site -> person -> position, and site -> ``{"latest": sensor -> its latest
        reading, "batches": [[taken at (epoch s), sensor ids, values, directions], ...]}``."""
        with self._lock:
            taken, self._relay = self._relay, {}
            latest, self._relay_readings = self._relay_readings, {}
            batches, self._relay_batches = self._relay_batches, {}
        readings = {
            site: {"latest": latest.get(site, {}), "batches": batches.get(site, [])}
            for site in sorted(set(latest) | set(batches))
        }
        return taken, readings

    def retake_relay(
        self,
        taken: Mapping[str, Mapping[str, list[float]]],
        readings: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """What a relay failed to send: sent at the next one (newer ones meanwhile win)."""
        with self._lock:
            for site_id, moves in taken.items():
                self._relay[site_id] = {**moves, **self._relay.get(site_id, {})}
            for site_id, relayed in readings.items():
                held = self._relay_readings.get(site_id, {})
                self._relay_readings[site_id] = {**relayed["latest"], **held}
                later = self._relay_batches.get(site_id, [])
                self._relay_batches[site_id] = [*relayed["batches"], *later]

    def relayed_readings(self, site_id: str, relayed: Mapping[str, Any]) -> None:
        """Readings another process took (``take_relay``'s form): the sensors' latest are the
        sensor states this process shows (an older one than held is ignored); each batch
        feeds detector health and the reading history, as this process's own readings do
        (tiers and alarms come through the log)."""
        if "batches" in relayed:
            latest: Mapping[str, Mapping[str, Any]] = relayed.get("latest") or {}
            batches: Sequence[Sequence[Any]] = relayed.get("batches") or []
        else:  # a row of a process that relayed the latest readings only
            latest, batches = relayed, []
        with self._lock:
            held = self.last_readings.setdefault(site_id, {})
            for sensor_id, reading in latest.items():
                mine = held.get(sensor_id)
                at = datetime.fromisoformat(str(reading["at"]))
                if mine is None or datetime.fromisoformat(str(mine["at"])) <= at:
                    held[sensor_id] = dict(reading)
        for taken_s, ids, values, directions in batches:
            taken_at = datetime.fromtimestamp(float(taken_s), UTC)
            batch = [
                Reading(str(i), float(v), None if d is None else float(d))
                for i, v, d in zip(ids, values, directions, strict=True)
            ]
            self.health.observe(site_id, batch, at=taken_at)
            with self._lock:
                self.alarm_history.follow(site_id, [], batch, taken_at, store=self.leading)

    def relayed_positions(
        self, site_id: str, moves: Mapping[str, tuple[float, float, float]]
    ) -> None:
        """Positions another process took (lon, lat, observed at in epoch seconds)."""
        self.positions(
            site_id,
            {pid: (x, y, datetime.fromtimestamp(at, UTC)) for pid, (x, y, at) in moves.items()},
            relayed=True,
        )

    def tag_read(self, site_id: str, event: DeviceEvent, *, actor: str) -> event_log.LoggedEvent:
        """A gate's reader read a person's tag: ``access.granted`` or ``access.refused`` by
        the zone's rules (``command.monitoring.fences``)."""
        return self.fences.tag_read(site_id, event, actor=actor)

    def save_readings(self) -> int:
        """Store each sensor's latest reading taken since the last call: a restart keeps the
        wind. How many were stored."""
        with self._lock:
            pending, self._unsaved_readings = self._unsaved_readings, {}
        saved = 0
        for done, (site_id, latest) in enumerate(pending.items()):
            try:
                with self.db.write() as session:
                    saved += store_readings(session, site_id, latest)
            except Exception:
                with self._lock:  # not lost: newer readings taken meanwhile win
                    for later, readings in list(pending.items())[done:]:
                        newer = self._unsaved_readings.setdefault(later, {})
                        self._unsaved_readings[later] = {**readings, **newer}
                raise
        return saved

    def save_positions(self) -> int:
        """Store the latest position of each person moved since the last call (called once a
        second): a restart, a new wall and the people layer see where people are. The
        sensors' latest readings are stored first (:meth:`save_readings`), the wristbands'
        position samples next."""
        self.save_readings()
        self.save_samples()
        with self._lock:
            pending = {
                site_id: {
                    pid: self._real_live.get(site_id, {}).pop(pid, self.live[site_id][pid])
                    for pid in people
                }
                for site_id, people in self._unsaved.items()
                if people
            }
            self._unsaved = {}
        saved = 0
        for done, (site_id, rows) in enumerate(pending.items()):
            try:
                with self.db.write() as session:
                    saved += store_positions(session, site_id, rows)
            except Exception:
                with self._lock:  # not lost: this site and those after it go next time
                    for later, people in list(pending.items())[done:]:
                        self._unsaved.setdefault(later, set()).update(people)
                raise
        return saved

    # -- restart --------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Rebuild the incidents that have not stood down from the event log (both steps of
        :meth:`recover_state` and :meth:`recover_incidents`, one after the other)."""
        self.recover_state()
        return self.recover_incidents()

    def recover_state(self) -> None:
        """The quick part of a restart, before serving: sensor tiers, the call tree's open
        notices, and the list of incidents to rebuild (each a 503 with the progress until it
        is rebuilt)."""
        # Read raw and checked row by row: one corrupt row fails no query, and quarantines
        # only its own incident (the others, and the server, start).
        grouped: dict[str, list[event_log.LoggedEvent]] = {}
        unreadable: dict[str, tuple[str, str]] = {}
        tiers: dict[str, dict[str, str | None]] = {}
        alarms = SensorAlarms()
        calltree = CallTree()
        for event in self._raw_events(EventRow.incident_id.is_not(None), unreadable):
            grouped.setdefault(str(event.incident_id), []).append(event)
        sensor_types = (
            "sensor.state",
            "sensor.acknowledged",
            "sensor.confirmed",
            "sensor.check_requested",
        )
        board = AlarmBoard()
        drill_tiers: dict[str, dict[str, str | None]] = {}
        for event in self._raw_events(EventRow.type.in_(sensor_types), unreadable):
            try:
                drill = event.data.get("exercise") if event.type == "sensor.state" else None
                if drill is not None:  # a drill's own tiers; the real ones and alarms stay
                    drill_tiers.setdefault(str(drill), {})[event.data["sensor_id"]] = event.data[
                        "to"
                    ]
                    continue
                if event.type == "sensor.state":
                    tiers.setdefault(event.site_id, {})[event.data["sensor_id"]] = event.data["to"]
                alarms.follow([event])  # the alarms as they were: the same rules replayed
                board.follow([event])  # confirmations and checks
            except (KeyError, TypeError, ValueError):  # audit verify names it
                log.error("event %s/%s is unreadable; skipped", event.site_id, event.seq)
        people = bands.PersonAlarms()  # the wristbands' alarms, replayed
        for event in self._raw_events(EventRow.type.startswith("person."), unreadable):
            try:
                people.follow([event])
            except (KeyError, TypeError, ValueError, AttributeError):
                log.error("event %s/%s is unreadable; skipped", event.site_id, event.seq)
        for event in self._raw_events(EventRow.type.startswith("notification."), unreadable):
            _follow_calltree(calltree, event)
        pending: dict[str, list[event_log.LoggedEvent]] = {}
        with self.db.read() as session:
            readings = stored_readings(session)
        with self._lock:
            for site_id, latest in readings.items():  # newer ones taken meanwhile win
                self.last_readings[site_id] = {**latest, **self.last_readings.get(site_id, {})}
            self.sensor_tiers = tiers
            self.exercise_tiers = {**drill_tiers, **self.exercise_tiers}
            self.alarms = alarms
            self.alarm_board.confirmed = board.confirmed
            self.alarm_board.checks = board.checks
            self.wristbands.alarms = people
            self.calltree = calltree
            for incident_id, (site_id, reason) in unreadable.items():
                log.error("incident %s quarantined: %s", incident_id, reason)
                self.quarantined[incident_id] = (site_id, reason)
            for incident_id, events in grouped.items():
                if incident_id in unreadable:
                    continue
                first = events[0]
                if any(r.type == "plan.run.stood_down" for r in events):
                    self.stood_down[incident_id] = first.site_id
                    continue
                if first.type == "incident.activated":
                    pending[incident_id] = events
                else:  # events of an incident whose activation is gone from the log
                    reason = f"its activation is not in the log (its first event is {first.seq})"
                    log.error("incident %s quarantined: %s", incident_id, reason)
                    self.quarantined[incident_id] = (first.site_id, reason)
            self._pending = pending
            self.recovery = Recovery(total=len(pending), finished=not pending)

    def _raw_events(
        self, where: Any, unreadable: dict[str, tuple[str, str]]
    ) -> list[event_log.LoggedEvent]:
        """The events matching ``where``, in log order, read raw; an unreadable one is skipped,
        and its incident (if it has one) noted in ``unreadable`` with the reason."""
        with self.db.read() as session:
            raws = session.execute(
                select(*event_log.RAW_COLUMNS).where(where).order_by(EventRow.site_id, EventRow.seq)
            ).all()
        out = []
        for raw in raws:
            try:
                out.append(event_log.read_row(raw))
            except event_log.Unreadable as exc:
                reason = f"event {raw.seq} is unreadable: {exc}"
                log.error("site %s: %s", raw.site_id, reason)
                if raw.incident_id is not None:
                    unreadable.setdefault(str(raw.incident_id), (str(raw.site_id), reason))
        return out

    def recover_incidents(self) -> list[str]:
        """Rebuild the incidents :meth:`recover_state` found, one by one, each computed outside
        the lock; each joins the live ones (and the walls) as soon as it is rebuilt. One that
        cannot be rebuilt is quarantined with the reason; the others go on."""
        recovered = []
        # The chain is checked first (in the background: a walk over the whole log): an
        # incident with a corrupt or altered event is left aside, named, not rebuilt from it.
        with self.db.read() as session:
            walk = event_log.ChainWalk().run(session)
            gaps = event_log.head_breaks(walk, event_log.heads(session))
        broken = dict(walk.broken_incidents)
        # A log whose end does not meet its head lost events (a deleted tail may have held an
        # incident's stand-down): no incident of that site is rebuilt as if nothing was missing.
        for gap in gaps:
            for incident_id, rows in self._pending.items():
                if rows[0].site_id == gap.site_id:
                    broken.setdefault(
                        incident_id, f"the site's log is incomplete: {gap.subject}: {gap.reason}"
                    )
        for incident_id, rows in list(self._pending.items()):
            site_id = rows[0].site_id
            if incident_id in broken:
                log.error("incident %s quarantined: %s", incident_id, broken[incident_id])
                with self._lock:
                    self.quarantined[incident_id] = (site_id, broken[incident_id])
                    self._pending.pop(incident_id, None)
                    self.recovery.done += 1
                    self.hub.publish(site_id, [self._recovery_message(site_id)])
                continue
            try:
                self._rebuilt(incident_id, rows)
            except Exception as exc:
                reason = exc.detail if isinstance(exc, RallypointError) else repr(exc)[:300]
                log.exception("incident %s could not be recovered: quarantined", incident_id)
                with self._lock:
                    self.quarantined[incident_id] = (site_id, f"not rebuilt: {reason}")
                    self._pending.pop(incident_id, None)
                    self.recovery.done += 1
                    self.hub.publish(site_id, [self._recovery_message(site_id)])
                continue
            recovered.append(incident_id)
        with self._lock:
            self.recovery.finished = True
            sites = {i.site_id for i in self.incidents.values()}
            sites |= {site for site, _ in self.quarantined.values()}
            for site_id in sorted(sites):
                self.hub.publish(site_id, [self._recovery_message(site_id)])
        log.info("recovery finished: %d incidents rebuilt", len(recovered))
        return recovered

    def _rebuilt(self, incident_id: str, rows: list[event_log.LoggedEvent]) -> Incident:
        site_id = rows[0].site_id
        for attempt in range(ACTIVATION_TRIES):
            planning = self._planning_lock(site_id) if attempt == ACTIVATION_TRIES - 1 else None
            if planning is not None:
                planning.acquire()
            try:
                model = self.model(site_id)
                with model.lock:
                    before = model.person_lonlat
                incident = self.from_log(incident_id, rows, model=model)
                with self._lock:
                    if self._current(model) is not model:
                        continue
                    moved = self._lay_live_over(model, before)
                    if len(moved):
                        follow_positions(model, incident, moved).apply(incident)
                    self.incidents[incident_id] = incident
                    if incident_id not in self.paused:
                        self.scheduler.add(incident.run)
                    self._pending.pop(incident_id, None)
                    self.recovery.done += 1
                    seq = max(incident.seq, self._last_seq(site_id))
                    self.hub.publish(
                        site_id,
                        [
                            self._picture_message(model, incident, seq),
                            self._recovery_message(site_id),
                        ],
                    )
                    return incident
            finally:
                if planning is not None:
                    planning.release()
        raise AssertionError("unreachable: the last try holds the planning lock")

    # -- other processes' events (command.log_follower) ------------------------------------------

    def apply_foreign(self, site_id: str, events: Sequence[event_log.LoggedEvent]) -> None:
        """Take into memory the events another server process on the same database logged
        (in log order, each once): the same rules as a restart's replay. Sensor tiers, alarms,
        confirmations and checks, people's alarms and the call tree follow each event; an
        incident another process activated, or commanded, is rebuilt from its whole log (its
        run, duties, wind, closures and picture: :meth:`from_log`), one that stood down is let
        go. The events themselves reach this process's walls through the hub, not from here."""
        touched: dict[str, event_log.LoggedEvent] = {}  # incident -> its last event here
        with self._lock:
            for event in events:
                kind = event.type
                try:
                    # A drill's injected tier moves the drill's own tiers: never the real ones,
                    # nor the real alarms (as on the process that took the reading).
                    drill = event.data.get("exercise") if kind == "sensor.state" else None
                    if drill is not None:
                        tiers = self.exercise_tiers.setdefault(str(drill), {})
                        tiers[str(event.data["sensor_id"])] = event.data["to"]
                    elif kind == "sensor.state":
                        tiers = self.sensor_tiers.setdefault(site_id, {})
                        tiers[str(event.data["sensor_id"])] = event.data["to"]
                    if kind in ALARM_SETUP_EVENTS:  # settings, voting, modes: read again
                        self.alarm_board.setups.pop(site_id, None)
                    if drill is not None:
                        pass
                    elif kind.startswith("sensor."):
                        self.alarms.follow([event])
                        self.alarm_board.follow([event])
                        self.health.follow(site_id, event)
                    elif kind.startswith("person."):
                        self.wristbands.alarms.follow([event])
                    elif kind.startswith("notification."):
                        _follow_calltree(self.calltree, event)
                except (KeyError, TypeError, ValueError, AttributeError):
                    log.error("event %s/%s is unreadable; skipped", event.site_id, event.seq)
                light = kind in ("incident.people_moved", "incident.mustered")
                held = self.incidents.get(event.incident_id or "")
                if light and held is not None:
                    # What positions changed: this process moves the same people (relayed
                    # positions), so the incident takes the record, not a rebuild.
                    held.to_account |= {str(p) for p in event.data.get("must_move", [])}
                    held.mustered = held.mustered or kind == "incident.mustered"
                elif event.incident_id is not None:
                    touched[event.incident_id] = event
                if kind in DRILL_PAUSING and event.incident_id is not None:
                    # A drill held, suspended, resumed or ended by another process: its
                    # incident's deadlines and fallbacks wait exactly while the drill does.
                    if kind in ("drill.held", "drill.suspended"):
                        self.paused.add(event.incident_id)
                        self.scheduler.remove(event.incident_id)
                    else:  # rebuilt below, and watched again
                        self.paused.discard(event.incident_id)
                if kind == "plan.run.stood_down" and event.incident_id is not None:
                    self.scheduler.remove(event.incident_id)
                    self.incidents.pop(event.incident_id, None)
                    self.stood_down[event.incident_id] = site_id
                    self.paused.discard(event.incident_id)
                    touched.pop(event.incident_id, None)
        for incident_id, last in touched.items():
            if incident_id in self.stood_down or incident_id in self.quarantined:
                continue
            try:
                self._refreshed(site_id, incident_id, last)
            except Exception as exc:
                reason = exc.detail if isinstance(exc, RallypointError) else repr(exc)[:300]
                log.exception("incident %s could not be rebuilt from the log", incident_id)
                with self._lock:
                    self.quarantined[incident_id] = (site_id, f"not rebuilt: {reason}")
                    self.incidents.pop(incident_id, None)
                    self.scheduler.remove(incident_id)
                    self.hub.publish(site_id, [self._recovery_message(site_id)])

    def _refreshed(
        self, site_id: str, incident_id: str, last: event_log.LoggedEvent | None = None
    ) -> None:
        """An incident as its whole log says now, in place of the one in memory (if any), its
        run watched by the scheduler, and its picture to this process's walls. ``last``: the
        incident's last event another process logged, which may have come with its picture."""
        # The picture the process that logged ``last`` relayed with it (an activation): to the
        # walls now, before the rebuild, which then only updates this process's memory.
        relayed = (
            self.follower.relayed_picture(last)
            if last is not None and self.follower is not None and self.relaying
            else None
        )
        if relayed is not None:
            self.hub.publish(site_id, [relayed])
        rows = [event_log.logged_event(r) for r in self._incident_rows(site_id, incident_id)]
        if not rows or any(r.type == "plan.run.stood_down" for r in rows):
            return
        if relayed is not None:
            log.info("incident %s: the picture relayed by its writer sent", incident_id)
        else:
            log.info("incident %s: the picture rebuilt from the log", incident_id)
        planning = self._planning_lock(site_id)
        with planning:
            model = self.model(site_id)
            with model.lock:
                before = model.person_lonlat
            incident = self.from_log(incident_id, rows, model=model)
            with self._lock:
                moved = self._lay_live_over(model, before)
                if len(moved):
                    follow_positions(model, incident, moved).apply(incident)
                old = self.incidents.get(incident_id)
                if old is not None:
                    incident.exercise = incident.exercise or old.exercise
                self.incidents[incident_id] = incident
                self.scheduler.remove(incident_id)
                if incident_id not in self.paused:
                    self.scheduler.add(incident.run)
                self._snapshots.clear()
                seq = max(incident.seq, self.hub.delivered.get(site_id, 0))
                if relayed is None:
                    self.hub.publish(site_id, [self._picture_message(model, incident, seq)])
                else:
                    self._picture_due.discard(incident_id)
                    self._picture_sent[incident_id] = time.monotonic()

    def _recovery_message(self, site_id: str) -> dict[str, Any]:
        """For the walls: how far restart recovery is, and the site's quarantined incidents."""
        return {
            "type": "recovery",
            "recovery": self.recovery.as_dict(),
            "quarantined": [
                {"id": i, "reason": reason}
                for i, (site, reason) in sorted(self.quarantined.items())
                if site == site_id
            ],
        }

    def _last_seq(self, site_id: str) -> int:
        with self.db.read() as session:
            return event_log.last_seq(session, site_id)

    def from_log(
        self,
        incident_id: str,
        rows: Sequence[EventRow] | Sequence[event_log.LoggedEvent],
        *,
        model: SiteModel | None = None,
    ) -> Incident:
        """An incident rebuilt from its logged events and the latest positions: the plan run
        replayed, zones, exposure and routes recomputed from the logged request under the last
        logged wind. Restart recovery, closed incidents and the check that the live picture is
        right all use it."""
        first = rows[0]
        if first.type != "incident.activated":
            raise NotFound(
                f"incident '{incident_id}' has no activation in the log",
                errors=[FieldError("incident", "no activation logged")],
            )
        site_id = first.site_id
        model = model or self.model(site_id)
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
        with self.db.read() as session:  # the plan's version the incident ran on
            stored = get_plan(
                session, site_id, request.plan_id, version=first.data.get("plan_version")
            )
        incident, _ = prepare(
            stored, model, request, actor=first.actor, clock=self.clock, incident_id=incident_id
        )
        incident.run = run
        incident.moving = must_move(run.state.level, incident.levels)
        incident.activated_at = first.at
        drill = first.data.get("exercise")
        if isinstance(drill, Mapping) and drill.get("drill_id"):
            incident.exercise = str(drill["drill_id"])
            self.exercises[incident_id] = incident.exercise
            if any(
                r.type == "incident.wind_changed" and r.actor.startswith("drill:") for r in rows
            ):
                self.exercise_wind.add(incident.exercise)
        for r in rows:
            if r.type in ("duty.assigned", "duty.released"):
                incident.apply_duty(r.type, r.data)
        # Who had to move: those at activation and each who had to since (a restart forgets
        # who walked out of the zones; they are counted again from the log's must_move).
        incident.to_account = {model.person_ids[int(i)] for i in incident.moving} | {
            str(p)
            for r in rows
            if r.type == "incident.people_moved"
            for p in r.data.get("must_move", [])
        }
        incident.mustered = any(r.type == "incident.mustered" for r in rows)
        closed = tuple(
            dict.fromkeys(str(r.data["edge_id"]) for r in rows if r.type == "incident.road_closed")
        )
        out = frozenset(
            str(r.data["resource_id"]) for r in rows if r.type == "incident.resource_out"
        )
        if closed or out:  # closed for this incident: its picture avoids them again
            reassess(model, incident, closed_edges=closed, resources_out=out).apply(incident)
        incident.seq = rows[-1].seq
        return incident

    def _incident_rows(self, site_id: str, incident_id: str) -> list[EventRow]:
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(EventRow)
                    .where(EventRow.site_id == site_id, EventRow.incident_id == incident_id)
                    .order_by(EventRow.seq)
                )
            )

    def closed_picture(self, site_id: str, incident_id: str) -> dict[str, Any]:
        """A stood-down incident's final picture, rebuilt from the log and marked closed: its
        zones, plan steps and the headcount logged when it closed."""
        key = (site_id, incident_id)
        if key in self._closed:
            return self._closed[key]
        unreadable: dict[str, tuple[str, str]] = {}
        rows = self._raw_events(
            (EventRow.site_id == site_id) & (EventRow.incident_id == incident_id), unreadable
        )
        if unreadable:
            raise IncidentQuarantined(
                f"incident '{incident_id}' cannot be shown: {unreadable[incident_id][1]}",
                errors=[FieldError("incident", "its logged events are corrupt")],
                extra={"reason": unreadable[incident_id][1]},
            )
        closed = next((r for r in rows if r.type == "plan.run.stood_down"), None)
        if not rows or closed is None:
            raise NotFound(
                f"no closed incident '{incident_id}' at site '{site_id}'",
                errors=[FieldError("incident", "unknown")],
            )
        try:
            incident = self.from_log(incident_id, rows)
        except (KeyError, TypeError, ValueError) as exc:  # read, but not as logged
            raise IncidentQuarantined(
                f"incident '{incident_id}' cannot be rebuilt from its logged events "
                f"({type(exc).__name__}); see 'rallypoint audit verify'",
                errors=[FieldError("incident", "its logged events are not as logged")],
            ) from exc
        picture = snapshot(self.model(site_id), incident, seq=rows[-1].seq)
        closing = next((r.data for r in rows if r.type == "incident.closed"), {})
        picture["incident"]["status"] = "closed"
        picture["incident"]["closed"] = {
            "at": closed.at.isoformat(),
            "by": closed.actor,
            "reason": closed.data.get("data", {}).get("reason"),
            "forced": bool(closing.get("forced")),
            "missing": closing.get("missing", []),
            "open_steps": closing.get("open_steps", []),
        }
        # What moved with people (who must move, their routes, who is where) is the log's
        # record at stand-down, not a picture recomputed from where people are today.
        if "headcount" in closing:
            picture["headcount"] = {**closing["headcount"], "missing": closing.get("missing", [])}
        if "exposure_counts" in closing:
            picture["exposure"] = {"counts": closing["exposure_counts"], "inside": {}}
        evacuation = picture["evacuation"]
        picture["evacuation"] = {
            "to_move": closing.get("to_move"),
            "people": [],
            "trapped": [],
            "routes": None,
            "unusable_musters": evacuation["unusable_musters"],
            "muster_warnings": evacuation["muster_warnings"],
            "no_usable_muster": evacuation["no_usable_muster"],
            "capacity_plan": None,
        }
        self._closed[key] = picture
        return picture

    def past_incidents(
        self, site_id: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The site's incidents activated between ``start`` and ``end``, closed ones with when
        and by whom, newest first."""
        self.model(site_id)  # NotFound for an unknown site
        unreadable: dict[str, tuple[str, str]] = {}
        rows = self._raw_events(
            (EventRow.site_id == site_id)
            & EventRow.type.in_(("incident.activated", "plan.run.stood_down", "incident.closed")),
            unreadable,
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            key = str(row.incident_id)
            if row.type == "incident.activated":
                if (start and row.at < start) or (end and row.at > end):
                    continue
                request = row.data.get("request")
                if not isinstance(request, dict):  # altered: listed, and said so
                    unreadable.setdefault(key, (site_id, f"event {row.seq} has no request"))
                    request = {}
                out[key] = {
                    "id": key,
                    "plan_id": request.get("plan_id"),
                    "level": request.get("level"),
                    "activated_at": row.at.isoformat(),
                    "activated_by": row.actor,
                    "state": "active",
                    "closed_at": None,
                    "closed_by": None,
                    "forced": False,
                    # A drill's incident: real statistics and reports leave it out.
                    "exercise": _drill_of(row.data.get("exercise")),
                }
            elif key in out and row.type == "plan.run.stood_down":
                out[key].update(state="closed", closed_at=row.at.isoformat(), closed_by=row.actor)
            elif key in out:
                out[key]["forced"] = bool(row.data.get("forced"))
        # One damaged row spoils one incident's entry, never the list.
        for key, (_, reason) in unreadable.items():
            if key in out:
                out[key]["unreadable"] = reason
        return sorted(out.values(), key=lambda i: str(i["activated_at"]), reverse=True)


def _answered_already(session: Session, notice: Notice) -> IllegalTransition | None:
    """A call-out whose token another process spent: 409 naming who answered and when (None
    when the notice has no token row, as nothing then says it was answered)."""
    used_at = session.scalar(
        select(NoticeTokenRow.used_at).where(
            NoticeTokenRow.site_id == notice.site_id, NoticeTokenRow.seq == notice.seq
        )
    )
    if used_at is None:
        return None
    answers = session.scalars(
        select(EventRow)
        .where(
            EventRow.site_id == notice.site_id,
            EventRow.type == "notification.acknowledged",
            EventRow.incident_id == notice.incident_id,
            EventRow.seq > notice.seq,
        )
        .order_by(EventRow.seq)
    )
    first = next((e for e in answers if (e.data or {}).get("notification") == notice.seq), None)
    by, at = (first.actor, first.at) if first is not None else ("?", used_at)
    return IllegalTransition(
        f"call-out {notice.seq} was already acknowledged by {by} at {at:%H:%M:%S} UTC",
        errors=[FieldError("notification", "acknowledged already")],
        extra={"by": by, "at": at.isoformat()},
    )


def _told_already(
    session: Session, site_id: str, drafts: Sequence[event_log.Draft]
) -> dict[str, int]:
    """Of the ``incident.network_changed`` drafts, those not to log: every process sharing
    the database plans its incidents again on a layer edit, and one event says it for all.
    Takes the site's log lock first (the append that follows keeps it), then skips a draft
    planned on layers that are no longer the current ones (a newer edit came: the plan on it
    follows), and one whose layer revisions an event of the incident already names (another
    process logged it). Returns incident -> the sequence number the picture is as of."""
    wanted = {d.incident_id: d.data.get("revisions") for d in drafts if d.incident_id}
    if not wanted:
        return {}
    session.get(SiteRow, site_id, with_for_update={"key_share": True})
    current = dict(
        session.execute(
            select(LayerRevision.layer, LayerRevision.token).where(LayerRevision.site_id == site_id)
        ).all()
    )
    told = {}
    for incident_id, revisions in wanted.items():
        if not revisions:
            continue
        if any(current.get(layer) != token for layer, token in revisions.items() if token):
            told[incident_id] = 0  # planned on layers already replaced
            continue
        earlier = session.execute(
            select(EventRow.seq, EventRow.data)
            .where(
                EventRow.site_id == site_id,
                EventRow.incident_id == incident_id,
                EventRow.type == "incident.network_changed",
            )
            .order_by(EventRow.seq.desc())
            .limit(TOLD_LOOKBACK)
        ).all()
        for seq, data in earlier:
            if (data or {}).get("revisions") == revisions:
                told[incident_id] = int(seq)
                break
    return told


def _follow_calltree(calltree: CallTree, event: event_log.LoggedEvent) -> None:
    """The call tree's open notices after a logged ``notification.*`` event (a restart's replay,
    or another process's event): a request opens one (and closes the one it falls back from),
    an answer or the end of the tree closes it."""
    data = event.data
    try:
        if event.type == "notification.requested":
            calltree.track([event])
            if "after" in data:
                calltree.open.pop((event.site_id, int(data["after"])), None)
        elif event.type in ("notification.acknowledged", "notification.unanswered"):
            key = int(data.get("notification", data.get("after", -1)))
            calltree.open.pop((event.site_id, key), None)
    except (KeyError, TypeError, ValueError, AttributeError):
        log.error("event %s/%s is unreadable; skipped", event.site_id, event.seq)


def _drill_of(exercise: Any) -> str | None:
    """The drill id of an activation's ``exercise`` data, if any."""
    if isinstance(exercise, Mapping) and exercise.get("drill_id"):
        return str(exercise["drill_id"])
    return None


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def _arrivals(model: SiteModel, rows: np.ndarray | None = None) -> dict[str, str | None]:
    """Person -> the muster point whose area holds their latest position: for the people at
    ``rows`` (None for those not at one), or (no ``rows``) for everyone at one."""
    names = list(model.muster_areas)
    with model.lock:  # the array is replaced whole on each move, never changed in place
        at = model.person_muster
    ids = model.person_ids
    if rows is None:
        found = np.flatnonzero(at >= 0)
        return {ids[i]: names[m] for i, m in zip(found.tolist(), at[found].tolist(), strict=True)}
    return {
        ids[i]: names[m] if m >= 0 else None
        for i, m in zip(rows.tolist(), at[rows].tolist(), strict=True)
    }


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


def check_duty_holder(
    session: Session, username: str, *, commands: bool = False, site_id: str | None = None
) -> None:
    """Refuse a duty for an unknown or disabled user, or one who cannot act on steps (at
    ``site_id``: roles held everywhere or granted there). The plan's command role (which skips
    any step, escalates, stands down) goes only to a commander."""
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
    roles = {str(r) for r in user.roles_at(site_id)}
    if not DUTY_HOLDERS & roles:
        raise InvalidInput(
            f"user '{username}' can not act on plan steps",
            errors=[FieldError("username", "needs the role responder or commander")],
        )
    if commands and "commander" not in roles:
        raise InvalidInput(
            f"the plan's command role goes to a commander; '{username}' is not one",
            errors=[FieldError("role", "the command role needs a user with the role commander")],
        )
