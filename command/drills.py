"""The drill desk: scenarios, double-blind scheduling and running drills on the command post.

A drill controller writes a scenario (``plans.drills``), checked against the site and the plan
as plans are, and schedules it: **blind** inside a window (the start drawn with a secure random
source and sealed in ``drills.sealed_start``, told to nobody, the controller included, who
sees the window only), or **announced**, starting at once. Until a drill starts nothing of it
reaches the site's event log, the websockets or any route a player can call.

At the start the desk activates the scenario's plan as the drill's **exercise incident**
(``CommandPost.activate`` with ``exercise``): every record of it is marked, its call-outs carry
"EXERCISE / 演练" and go to an exercise-safe channel only. Injects then fire in drill time
through the command post's own inputs, the same code the device routes call: readings and wind
through :meth:`CommandPost.readings` (on the drill's own detector tiers), positions through
:meth:`CommandPost.positions`, messages as notes on the incident. The desk follows the log for
the **expected player actions**, logs each as met (with its deviation from target) or missed,
and a missed one fires its contingency injects.

A **real** activation or alarm at the site suspends its running drills at once (drill time
stops, every participant sees ``drill.suspended``); the controller resumes or ends them. When
a drill ends its incident is stood down, people moved by injects are put back where they were
really last seen, and the after-action review is generated.

Several server processes may share the database (issue 17): a drill lives in its row, not in a
process's memory. Any process takes any order, and only the leading one ticks; each order and
each tick holds the row (``SELECT ... FOR UPDATE``), reads the drill from it and saves it back
(:meth:`DrillDesk._claim`), so each change is applied once, on the newest state.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import shapely
from pydantic import ValidationError
from sqlalchemy import func, select

from command import events as event_log
from command.incidents import ActivationRequest
from command.post import CommandPost, event_message
from command.sensors import Reading
from gis.errors import (
    AlreadyExists,
    FieldError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from gis.geometry import validate_geometry
from gis.storage.tables import DrillRow, DrillScenarioRow, EventRow
from plans.drills import (
    DrillTime,
    Inject,
    InjectKind,
    Scenario,
    draw_start,
    parse_scenario,
    parse_window,
)
from plans.engine import Actor
from plans.store import approved_plan
from plans.validation import schema_problems
from plans.workflow import PlanNotApproved

log = logging.getLogger(__name__)

#: States of a drill that has started and not ended.
LIVE = ("running", "held", "suspended")
#: What a drill's holder may change in its row.
SAVED = ("state", "incident_id", "detail", "started_at", "ended_at")
#: The longest the leader's tick waits for the desk (an order of its own process holding it).
BUSY_WAIT_S = 0.2
#: Events read per tick when following the log for expected actions.
FOLLOW_BATCH = 2000


def drill_actor(drill_id: str) -> str:
    return f"drill:{drill_id}"


@dataclass
class RunningDrill:
    id: str
    site_id: str
    scenario: Scenario
    scenario_version: int
    incident_id: str
    mode: str
    time: DrillTime
    state: str = "running"
    fired: list[str] = field(default_factory=list)
    met: dict[str, int] = field(default_factory=dict)  # expected id -> seq that met it
    missed: list[str] = field(default_factory=list)
    #: person -> [lon, lat, observed at (epoch s)] before an inject first moved them.
    displaced: dict[str, list[float | None]] = field(default_factory=dict)
    #: The last site event followed for expected actions.
    followed: int = 0
    suspended_by: str | None = None
    #: Controller and evaluator material (injects fired, actions met and missed, notes),
    #: kept from the players while the drill runs and written to the log when it ends.
    record: list[dict[str, Any]] = field(default_factory=list)

    def detail(self) -> dict[str, Any]:
        return {
            "time": self.time.as_dict(),
            "incident_id": self.incident_id,
            "fired": self.fired,
            "met": self.met,
            "missed": self.missed,
            "displaced": self.displaced,
            "followed": self.followed,
            "suspended_by": self.suspended_by,
            "record": self.record,
        }


#: A drill's own events that are controller and evaluator material: kept in the drill's
#: record while it runs (the console reads them there), logged when it ends.
PRIVATE = ("drill.inject", "drill.action_met", "drill.action_missed", "drill.note")


@dataclass(frozen=True)
class PrivateEvent:
    """One entry of a running drill's record: an event not yet in the site's log."""

    type: str
    at: datetime
    actor: str
    incident_id: str | None
    data: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": None,  # logged, with its time, when the drill ends
            "at": self.at.isoformat(),
            "type": self.type,
            "actor": self.actor,
            "incident_id": self.incident_id,
            "data": dict(self.data),
            "private": True,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivateEvent:
        return cls(
            str(data["type"]),
            datetime.fromisoformat(str(data["at"])),
            str(data["actor"]),
            data.get("incident_id"),
            dict(data["data"]),
        )


class DrillDesk:
    """Scenarios, schedules and running drills of every site, on one command post."""

    def __init__(self, post: CommandPost) -> None:
        self.post = post
        self.db = post.db
        self.clock = post.clock
        #: The database is the truth of every drill (several processes may serve one): each
        #: order and each tick reads the drill's row, changes it and saves it, holding it
        #: (:meth:`_claim`). The rows and runs this process holds now, by drill id.
        self._held_rows: dict[str, DrillRow] = {}
        self._held_runs: dict[str, RunningDrill] = {}
        #: Scenarios read, by (site, scenario, version): a version never changes.
        self._scenarios: dict[tuple[str, str, int], Scenario] = {}
        #: PostgreSQL: the row is locked (``SELECT ... FOR UPDATE``) while held. SQLite (one
        #: process) or a test's single connection: the desk's lock alone orders the threads.
        self._row_locks = self.db.is_postgis and self.db.connection is None
        self._lock = threading.RLock()
        #: Called with (site id, incident id, drill id or None) when an incident closes: the
        #: after-action review (set by the app).
        self.on_closed: Callable[[str, str, str | None], None] | None = None
        post.drills = self

    # -- scenarios ------------------------------------------------------------------------------

    def check_scenario(self, site_id: str, data: Any) -> Scenario:
        """The scenario, checked against the site's model and the plan: every problem at once,
        each with its field's path."""
        scenario = parse_scenario(data)
        model = self.post.model(site_id)
        problems: list[FieldError] = []
        with self.db.read() as session:
            try:  # a drill runs the plan in force, as a real activation would
                stored = approved_plan(session, site_id, scenario.plan_id)
            except NotFound:
                stored = None
                problems.append(FieldError("plan_id", f"no plan '{scenario.plan_id}' at the site"))
            except PlanNotApproved:
                stored = None
                problems.append(
                    FieldError("plan_id", f"plan '{scenario.plan_id}' has no approved version")
                )
        if stored is not None and scenario.level.value not in {
            lv.value for lv in stored.template.levels
        }:
            problems.append(FieldError("level", f"plan '{scenario.plan_id}' has no such level"))
        try:
            ActivationRequest.model_validate(
                {
                    "plan_id": scenario.plan_id,
                    "level": scenario.level.value,
                    "location": scenario.location,
                    "hazard": scenario.hazard,
                }
            )
        except ValidationError as exc:
            problems += [
                FieldError(p.field, p.reason)
                for p in schema_problems(exc)
                if p.field.startswith(("location", "hazard"))
            ]
        try:
            kind = scenario.location.get("type")
            validate_geometry(
                scenario.location,
                expected_type=kind if kind in ("Point", "Polygon") else "Point",
                extent=model.site.extent,
                field_name="location",
            )
        except InvalidInput as exc:
            problems += exc.errors or [FieldError("location", str(exc))]
        resources = {str(f["id"]) for f in model.layers.get("resources", [])}
        edges = {str(f["id"]) for f in model.layers.get("network", [])}
        for i, inject in enumerate(scenario.injects):
            where = f"injects[{i}]"
            for j, reading in enumerate(inject.readings):
                sensor = model.sensors.get(reading.sensor_id)
                wants_wind = inject.kind == InjectKind.WIND
                if sensor is None:
                    problems.append(
                        FieldError(f"{where}.readings[{j}].sensor_id", "unknown sensor")
                    )
                elif (sensor.kind == "wind") != wants_wind:
                    problems.append(
                        FieldError(
                            f"{where}.readings[{j}].sensor_id",
                            "a wind station" if wants_wind else "a detector, not a wind station",
                        )
                    )
                elif wants_wind and reading.direction_deg is None:
                    problems.append(
                        FieldError(f"{where}.readings[{j}].direction_deg", "a wind needs one")
                    )
            for j, position in enumerate(inject.positions):
                if position.person_id not in model.person_row:
                    problems.append(FieldError(f"{where}.positions[{j}].person_id", "unknown"))
                elif not _inside(model.site.extent, position.lon, position.lat):
                    problems.append(FieldError(f"{where}.positions[{j}]", "outside the site"))
            if inject.location is not None and not _inside(model.site.extent, *inject.location):
                problems.append(FieldError(f"{where}.location", "outside the site"))
            if inject.resource_id is not None and inject.resource_id not in resources:
                problems.append(FieldError(f"{where}.resource_id", "unknown resource"))
            if inject.edge_id is not None and inject.edge_id not in edges:
                problems.append(FieldError(f"{where}.edge_id", "unknown network edge"))
        if problems:
            raise InvalidInput(
                f"the scenario does not fit site '{site_id}': {len(problems)} problem(s)",
                errors=problems,
            )
        return scenario

    def save_scenario(
        self, site_id: str, data: Any, *, actor: str, version: int | None = None
    ) -> dict[str, Any]:
        """A new scenario (``version`` None), or the next version of one (``version``: the one
        the edit started from; a stale one is refused)."""
        scenario = self.check_scenario(site_id, data)
        now = self.clock.now()
        with self.db.write() as session:
            latest = session.scalar(
                select(func.max(DrillScenarioRow.version)).where(
                    DrillScenarioRow.site_id == site_id,
                    DrillScenarioRow.scenario_id == scenario.id,
                )
            )
            if version is None and latest is not None:
                raise AlreadyExists(
                    f"scenario '{scenario.id}' exists (version {latest}): edit it with PUT",
                    errors=[FieldError("id", "taken")],
                )
            if version is not None and latest is None:
                raise NotFound(
                    f"no scenario '{scenario.id}' at site '{site_id}'",
                    errors=[FieldError("scenario", "unknown")],
                )
            if version is not None and version != latest:
                raise VersionConflict(
                    f"scenario '{scenario.id}' is at version {latest}, the edit started from "
                    f"{version}: load it again",
                    errors=[FieldError("version", f"stale: the scenario is at {latest}")],
                )
            row = DrillScenarioRow(
                site_id=site_id,
                scenario_id=scenario.id,
                version=(latest or 0) + 1,
                title=scenario.title,
                body=scenario.model_dump(mode="json", by_alias=True),
                created_at=now,
                created_by=actor,
            )
            session.add(row)
            session.flush()
            return _scenario_json(row)

    def scenario(
        self, site_id: str, scenario_id: str, version: int | None = None
    ) -> dict[str, Any]:
        with self.db.read() as session:
            return _scenario_json(_scenario_row(session, site_id, scenario_id, version))

    def scenarios(self, site_id: str) -> list[dict[str, Any]]:
        with self.db.read() as session:
            rows = session.scalars(
                select(DrillScenarioRow)
                .where(DrillScenarioRow.site_id == site_id)
                .order_by(DrillScenarioRow.scenario_id, DrillScenarioRow.version.desc())
            )
            latest: dict[str, DrillScenarioRow] = {}
            for row in rows:
                latest.setdefault(row.scenario_id, row)
            return [
                {
                    "id": r.scenario_id,
                    "version": r.version,
                    "title": r.title,
                    "plan_id": r.body["plan_id"],
                    "level": r.body["level"],
                    "created_at": r.created_at.isoformat(),
                    "created_by": r.created_by,
                }
                for r in latest.values()
            ]

    # -- scheduling -----------------------------------------------------------------------------

    def schedule(
        self,
        site_id: str,
        scenario_id: str,
        *,
        mode: str,
        window: Any,
        actor: str,
    ) -> dict[str, Any]:
        """Schedule the scenario's latest version. Blind: the start is drawn in ``window`` and
        sealed; the answer shows the window only. Announced: it starts now."""
        model = self.post.model(site_id)
        now = self.clock.now()
        with self.db.read() as session:
            row = _scenario_row(session, site_id, scenario_id, None)
        scenario = self.check_scenario(site_id, row.body)  # the site may have changed since
        parsed = None
        sealed = None
        if mode == "blind":
            if window is None:
                raise InvalidInput(
                    "a blind drill needs a window", errors=[FieldError("window", "required")]
                )
            parsed = parse_window(window, now=now, timezone=model.site.timezone)
            sealed = draw_start(parsed, model.site.timezone, after=now)
        elif mode == "announced":
            if window is not None:
                raise InvalidInput(
                    "an announced drill starts now: it takes no window",
                    errors=[FieldError("window", "only for a blind drill")],
                )
        else:
            raise InvalidInput(
                f"unknown mode {mode!r}", errors=[FieldError("mode", "blind or announced")]
            )
        drill_id = f"drill-{uuid.uuid4().hex[:12]}"
        with self.db.write() as session:
            session.add(
                DrillRow(
                    id=drill_id,
                    site_id=site_id,
                    scenario_id=scenario.id,
                    scenario_version=row.version,
                    mode=mode,
                    window=parsed.as_dict() if parsed else None,
                    sealed_start=sealed,
                    state="scheduled",
                    created_at=now,
                    created_by=actor,
                    detail={},
                )
            )
        if mode == "announced":
            self._start(drill_id)
        return self.drill(site_id, drill_id)

    def cancel(self, site_id: str, drill_id: str, *, actor: str) -> dict[str, Any]:
        """Call off a drill that has not started; nothing of it ever reached the log."""
        with self._claim(drill_id) as row:
            if row.site_id != site_id:
                raise _unknown(site_id, drill_id)
            if row.state != "scheduled":
                raise IllegalTransition(
                    f"drill '{drill_id}' is {row.state}: only a scheduled drill is cancelled; "
                    "end or abort a running one",
                    errors=[FieldError("state", row.state)],
                )
            row.state = "cancelled"
            row.ended_at = self.clock.now()
            row.detail = {**row.detail, "cancelled_by": actor}
        return self.drill(site_id, drill_id)

    def drills(self, site_id: str) -> list[dict[str, Any]]:
        self.post.model(site_id)  # 404 for an unknown site
        with self.db.read() as session:
            rows = list(
                session.scalars(
                    select(DrillRow)
                    .where(DrillRow.site_id == site_id)
                    .order_by(DrillRow.created_at.desc())
                )
            )
        return [self._json(row) for row in rows]

    def drill(self, site_id: str, drill_id: str) -> dict[str, Any]:
        with self.db.read() as session:
            row = _drill_row(session, site_id, drill_id)
        return self._json(row)

    def _json(self, row: DrillRow) -> dict[str, Any]:
        """What a controller sees: never the sealed start, only the window, until it starts."""
        out: dict[str, Any] = {
            "id": row.id,
            "site_id": row.site_id,
            "scenario_id": row.scenario_id,
            "scenario_version": row.scenario_version,
            "mode": row.mode,
            "window": row.window,
            "state": row.state,
            "incident_id": row.incident_id,
            "created_at": row.created_at.isoformat(),
            "created_by": row.created_by,
            "started_at": row.started_at.isoformat() if row.started_at else None,
            "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        }
        run = self._run_of(row) if row.state in LIVE and row.detail.get("time") else None
        if run is not None:
            now = self.clock.now()
            drill_s = run.time.at(now)
            out["drill_s"] = round(drill_s, 1)
            out["suspended_by"] = run.suspended_by
            out["injects"] = [
                {
                    "id": i.id,
                    "title": i.title,
                    "kind": i.kind.value,
                    "at_s": i.at_s,
                    "fired": i.id in run.fired,
                }
                for i in run.scenario.injects
            ]
            out["expected"] = [
                {
                    "id": e.id,
                    "title": e.title,
                    "target_s": e.target_s,
                    "deadline_s": e.due_s,
                    "met_seq": run.met.get(e.id),
                    "missed": e.id in run.missed,
                }
                for e in run.scenario.expected
            ]
        return out

    # -- running --------------------------------------------------------------------------------

    def tick(self) -> list[event_log.LoggedEvent]:
        """Start drills whose sealed time has come, fire injects due, follow the log for the
        expected actions and fire the contingencies of those missed (the leading process).
        Every live drill is read from its row, whichever process started or last ordered it."""
        now = self.clock.now()
        out: list[event_log.LoggedEvent] = []
        with self.db.read() as session:
            due = list(
                session.scalars(
                    select(DrillRow.id).where(
                        DrillRow.state == "scheduled", DrillRow.sealed_start <= now
                    )
                )
            )
            live = list(
                session.execute(
                    select(DrillRow.id, DrillRow.site_id)
                    .where(DrillRow.state.in_(LIVE))
                    .order_by(DrillRow.created_at)
                )
            )
        for drill_id in due:
            try:
                out += self._start(drill_id, busy=True)
            except Busy:
                continue  # another process holds it: the next tick looks again
            except Exception:  # one drill's failure stops no other, nor the tick
                log.exception("drill %s could not start", drill_id)
        for drill_id, site_id in live:
            try:
                with self._held(site_id, drill_id, busy=True) as run:
                    self._pause_as_saved(run)
                    if run.state != "running" or not self._known(run):
                        continue
                    out += [e for e in self._advance(run) if isinstance(e, event_log.LoggedEvent)]
            except (IllegalTransition, Busy):
                continue  # ended meanwhile, or held by another process: the next tick
            except Exception:  # one drill's failure stops no other, nor the tick
                log.exception("drill %s could not advance", drill_id)
        return out

    def _known(self, run: RunningDrill) -> bool:
        """Whether this process holds the drill's incident: not while it is rebuilt after a
        restart, nor (another process started it) before the log brought it here."""
        if run.incident_id in self.post._pending:
            return False
        return self.post.follower is None or run.incident_id in self.post.incidents

    def _pause_as_saved(self, run: RunningDrill) -> None:
        """The drill's incident waits (its deadlines, its call-outs' fallbacks) exactly while
        the drill's row says held or suspended, whichever process ordered it."""
        paused = run.incident_id in self.post.paused
        if run.state == "running" and paused:
            self.post.resume_incident(run.incident_id)
        elif run.state != "running" and not paused:
            self.post.pause_incident(run.incident_id)

    def _start(self, drill_id: str, *, busy: bool = False) -> list[event_log.LoggedEvent]:
        """Start a scheduled drill, its row held throughout: one process starts it, once. A
        start cut short (the process died after ``drill.started`` was logged, before the row
        said so) is found by the next attempt, and the drill aborted."""
        with self._claim(drill_id, busy=busy) as row:
            if row.state != "scheduled":
                return []
            now = self.clock.now()
            if self._started_before(row):
                log.error("drill %s was starting when its process stopped: aborted", drill_id)
                row.state, row.ended_at = "aborted", now
                row.detail = {**row.detail, "aborted": "the server stopped while it started"}
                return []
            with self.db.read() as session:
                scenario_row = _scenario_row(
                    session, row.site_id, row.scenario_id, row.scenario_version
                )
            site_id = row.site_id
            scenario = parse_scenario(scenario_row.body)
            incident_id = f"inc-{uuid.uuid4().hex[:12]}"
            self.post.exercises[incident_id] = drill_id  # its every event is marked
            # What every participant learns at the start: that a drill of this plan runs.
            # The scenario (its name, injects, expected actions, window) is controller
            # material until the drill ends (drill.ended carries it for the review).
            try:
                started = self._log(
                    site_id,
                    "drill.started",
                    drill_id,
                    {
                        "mode": row.mode,
                        "plan_id": scenario.plan_id,
                        "level": scenario.level.value,
                        # Named here, not as the event's incident: an incident's events begin
                        # with its activation (restart recovery and the review rely on it).
                        "incident_id": incident_id,
                    },
                )
            except Exception:  # the drill is not left to start again and again
                log.exception("drill %s could not start", drill_id)
                row.state, row.ended_at = "aborted", now
                row.detail = {"aborted": "the start could not be logged"}
                return []
            request = ActivationRequest.model_validate(
                {
                    "plan_id": scenario.plan_id,
                    "level": scenario.level.value,
                    "location": scenario.location,
                    "hazard": scenario.hazard,
                    "note": event_log.EXERCISE_LABEL,
                    "second_incident": True,
                }
            )
            run = RunningDrill(
                id=drill_id,
                site_id=site_id,
                scenario=scenario,
                scenario_version=row.scenario_version,
                incident_id=incident_id,
                mode=row.mode,
                time=DrillTime(started_at=now),
                followed=started[-1].seq,
            )
            self._held_runs[drill_id] = run
            try:
                self.post.activate(
                    site_id,
                    request,
                    actor=drill_actor(drill_id),
                    exercise={"drill_id": drill_id},
                    incident_id=incident_id,
                )
            except Exception as exc:
                log.exception("drill %s could not activate its plan", drill_id)
                ended = self._log(
                    site_id,
                    "drill.ended",
                    drill_id,
                    {"aborted": True, "reason": f"the plan could not be activated: {exc}"},
                )
                self._save(run, state="aborted", ended=True)
                return [*started, *ended]
            self._save(run, state="running", started_at=now)
            real = [
                i.id
                for i in list(self.post.incidents.values())
                if i.site_id == site_id and i.exercise is None
            ]
            alarmed = [
                sensor
                for sensor, tier in self.post.sensor_tiers.get(site_id, {}).items()
                if tier in ("alarm", "high_alarm")
            ]
            if real:  # a real incident comes first: the drill starts suspended
                self._suspend_run(run, f"a real incident: {real[0]}", {"by_incident": real[0]})
                return list(started)
            if alarmed:
                self._suspend_run(run, f"a real alarm on {alarmed[0]}", {"by_sensor": alarmed[0]})
                return list(started)
            return [*started, *self._advance(run)]

    def _started_before(self, row: DrillRow) -> bool:
        """Whether the site's log holds the drill's start (the row still says scheduled)."""
        with self.db.read() as session:
            logged = session.scalars(
                select(EventRow.data).where(
                    EventRow.site_id == row.site_id, EventRow.type == "drill.started"
                )
            )
            return any(data.get("drill_id") == row.id for data in logged)

    def _advance(self, run: RunningDrill) -> list[Any]:
        """Under the lock, a running drill: injects due, expected actions met or missed (the
        events logged, and the record's new entries)."""
        out: list[Any] = self._follow(run)
        now_s = run.time.at(self.clock.now())
        for inject in run.scenario.timeline():
            if inject.id in run.fired or (inject.at_s or 0) > now_s:
                continue
            out += self._fire(run, inject, planned_s=inject.at_s)
        for expected in run.scenario.expected:
            if expected.id in run.met or expected.id in run.missed or expected.due_s > now_s:
                continue
            run.missed.append(expected.id)
            out += self._keep(
                run,
                "drill.action_missed",
                {
                    "expected_id": expected.id,
                    "title": expected.title,
                    "target_s": expected.target_s,
                    "deadline_s": expected.due_s,
                    "contingencies": list(expected.on_miss),
                    "drill_s": round(now_s, 1),
                },
            )
            for inject_id in expected.on_miss:
                if inject_id not in run.fired:
                    out += self._fire(
                        run, run.scenario.inject(inject_id), planned_s=None, because=expected.id
                    )
        self._save(run)
        return out

    def _follow(self, run: RunningDrill) -> list[PrivateEvent]:
        """Read the log past what was followed: the drill's events that meet an expected
        action are recorded as met, with the deviation from target."""
        open_ = [e for e in run.scenario.expected if e.id not in run.met]
        out: list[PrivateEvent] = []
        while True:
            with self.db.read() as session:
                rows = list(
                    session.scalars(
                        select(EventRow)
                        .where(EventRow.site_id == run.site_id, EventRow.seq > run.followed)
                        .order_by(EventRow.seq)
                        .limit(FOLLOW_BATCH)
                    )
                )
            for row in rows:
                run.followed = row.seq
                if not open_ or not _of_drill(row, run):
                    continue
                for expected in list(open_):
                    if row.type != expected.when.type or any(
                        row.data.get(k) != v for k, v in expected.when.data.items()
                    ):
                        continue
                    open_.remove(expected)
                    run.met[expected.id] = row.seq
                    actual = run.time.at(row.at)
                    out += self._keep(
                        run,
                        "drill.action_met",
                        {
                            "expected_id": expected.id,
                            "title": expected.title,
                            "target_s": expected.target_s,
                            "actual_s": round(actual, 1),
                            "deviation_s": round(actual - expected.target_s, 1),
                            "seq": row.seq,
                            "by": row.actor,
                        },
                    )
            if len(rows) < FOLLOW_BATCH:
                break
        return out

    def _fire(
        self,
        run: RunningDrill,
        inject: Inject,
        *,
        planned_s: int | None,
        because: str | None = None,
        early: bool = False,
    ) -> list[Any]:
        """An inject, through the command post's own inputs; then ``drill.inject`` in the
        drill's record, naming the events it caused."""
        run.fired.append(inject.id)
        actor = drill_actor(run.id)
        caused: list[event_log.LoggedEvent] = []
        try:
            caused = self._inject(run, inject, actor)
            problem = None
        except Exception as exc:  # the site changed since the scenario was checked
            log.warning("drill %s: inject %s refused: %s", run.id, inject.id, exc)
            problem = str(exc)
        data: dict[str, Any] = {
            "inject_id": inject.id,
            "kind": inject.kind.value,
            "title": inject.title,
            "at_s": round(run.time.at(self.clock.now()), 1),
            "planned_s": planned_s,
            "contingency_for": because,
            "early": early,
            "seqs": [e.seq for e in caused],
        }
        if inject.kind == InjectKind.POSITIONS:
            data["positions"] = {p.person_id: [p.lon, p.lat] for p in inject.positions}
        if problem is not None:
            data["refused"] = problem
        return [*caused, *self._keep(run, "drill.inject", data)]

    def _inject(self, run: RunningDrill, inject: Inject, actor: str) -> list[event_log.LoggedEvent]:
        post, site_id = self.post, run.site_id
        kind = inject.kind
        if kind in (InjectKind.READING, InjectKind.WIND):
            readings = [Reading(r.sensor_id, r.value, r.direction_deg) for r in inject.readings]
            return post.readings(site_id, readings, actor=actor, exercise=run.id)
        if kind == InjectKind.POSITIONS:
            moves = {p.person_id: (p.lon, p.lat, None) for p in inject.positions}
            answer = self._positions(run, moves)
            return [_logged(site_id, e) for e in answer["events"]]
        if kind == InjectKind.MESSAGE:
            text = str(inject.text)
            return post.command(
                site_id,
                run.incident_id,
                lambda plan_run: plan_run.note(Actor(actor, frozenset()), text),
            )
        if kind == InjectKind.CASUALTY:
            data = {"count": inject.count, "location": inject.location, "text": inject.text}
            return self._log(site_id, "incident.casualty", None, data, run.incident_id, actor=actor)
        # A resource out of service or a road blocked: for the drill's incident only.
        return post.restrict(  # the inject's title is the controller's: the players get facts
            site_id,
            run.incident_id,
            actor=actor,
            reason="blocked" if inject.edge_id else "out of service",
            edge_id=inject.edge_id,
            resource_id=inject.resource_id,
        )

    def _positions(
        self, run: RunningDrill, moves: Mapping[str, tuple[float, float, datetime | None]]
    ) -> dict[str, Any]:
        """Positions through the devices' path, remembering where each person moved was
        really last seen (put back when the drill ends)."""
        model = self.post.model(run.site_id)
        with model.lock:
            for person in moves:
                row = model.person_row.get(person)
                if row is not None and person not in run.displaced:
                    x, y = model.person_lonlat[row]
                    seen = float(model.person_seen_at[row])  # -inf: never seen (not JSON)
                    run.displaced[person] = [
                        float(x),
                        float(y),
                        seen if math.isfinite(seen) else None,
                    ]
        answer = self.post.positions(run.site_id, moves, exercise=run.id)
        injected = self.clock.now().timestamp()
        for person in moves:
            if person in run.displaced:  # [lon, lat, seen before, the latest inject's time]
                run.displaced[person] = [*run.displaced[person][:3], injected]
        return answer

    @staticmethod
    def _manual(run: RunningDrill, drill_id: str) -> RunningDrill:
        if run.state != "running":
            raise IllegalTransition(
                f"drill '{drill_id}' is {run.state}: resume it first",
                errors=[FieldError("state", run.state)],
            )
        return run

    def inject_readings(
        self, site_id: str, drill_id: str, readings: Sequence[Reading], *, actor: str
    ) -> list[Any]:
        """A controller's own readings into a running drill (``POST /readings`` with
        ``"drill"``): the devices' path, on the drill's tiers, logged as an inject."""
        with self._held(site_id, drill_id) as held:
            run = self._manual(held, drill_id)
            caused = self.post.readings(site_id, readings, actor=actor, exercise=run.id)
            data = {
                "inject_id": None,
                "kind": "reading",
                "title": "readings sent by the controller",
                "at_s": round(run.time.at(self.clock.now()), 1),
                "planned_s": None,
                "contingency_for": None,
                "early": False,
                "seqs": [e.seq for e in caused],
                "readings": [
                    {"sensor_id": r.sensor_id, "value": r.value, "direction_deg": r.direction_deg}
                    for r in readings
                ],
            }
            kept = self._keep(run, "drill.inject", data, actor=actor)
            self._save(run)
            return [*caused, *kept]

    def inject_positions(
        self,
        site_id: str,
        drill_id: str,
        moves: Mapping[str, tuple[float, float, datetime | None]],
        *,
        actor: str,
    ) -> dict[str, Any]:
        """A controller's own positions into a running drill (``POST /positions`` with
        ``"drill"``): the devices' path, logged as an inject, put back when it ends."""
        with self._held(site_id, drill_id) as held:
            run = self._manual(held, drill_id)
            answer = self._positions(run, moves)
            data = {
                "inject_id": None,
                "kind": "positions",
                "title": "positions sent by the controller",
                "at_s": round(run.time.at(self.clock.now()), 1),
                "planned_s": None,
                "contingency_for": None,
                "early": False,
                "seqs": [e["seq"] for e in answer["events"]],
                "positions": {p: [x, y] for p, (x, y, _) in moves.items()},
            }
            kept = self._keep(run, "drill.inject", data, actor=actor)
            self._save(run)
            return {**answer, "events": [*answer["events"], *(e.as_dict() for e in kept)]}

    def _keep(
        self,
        run: RunningDrill,
        kind: str,
        data: Mapping[str, Any],
        *,
        actor: str | None = None,
    ) -> list[PrivateEvent]:
        """Record controller material in the drill's record (saved with the drill's row),
        not in the site's log: the players see none of it until the drill ends."""
        event = PrivateEvent(
            kind,
            self.clock.now(),
            actor or drill_actor(run.id),
            run.incident_id,
            {"drill_id": run.id, "exercise": run.id, **data},
        )
        run.record.append(event.as_dict())
        return [event]

    def record(self, site_id: str, drill_id: str) -> list[dict[str, Any]]:
        """A drill's controller material so far: from its record while it runs, from the log
        (where it went when it ended) after."""
        with self.db.read() as session:
            row = session.get(DrillRow, drill_id)
        if row is not None and row.site_id == site_id and row.state in LIVE:
            return list(row.detail.get("record", []))
        return []

    def _log(
        self,
        site_id: str,
        kind: str,
        drill_id: str | None,
        data: Mapping[str, Any],
        incident_id: str | None = None,
        *,
        actor: str | None = None,
    ) -> list[event_log.LoggedEvent]:
        """Log and publish one event (``drill_id`` goes into its data)."""
        body = {**({"drill_id": drill_id, "exercise": drill_id} if drill_id else {}), **data}
        draft = event_log.Draft(
            kind,
            actor or (drill_actor(drill_id) if drill_id else "system"),
            body,
            incident_id,
            self.clock.now(),
        )
        with self.db.write() as session:
            logged = event_log.append_many(
                session, site_id, [draft], exercises=self.post.exercises, now=self.clock.now()
            )
        self.post.hub.publish(site_id, [event_message(e) for e in logged])
        return logged

    def _save(
        self,
        run: RunningDrill,
        *,
        state: str | None = None,
        started_at: datetime | None = None,
        ended: bool = False,
    ) -> None:
        """Into the drill's row, held by this thread (saved when the hold ends)."""
        if state is not None:
            run.state = state
        row = self._held_rows.get(run.id)
        if row is None:  # pragma: no cover (every change is made holding the row)
            with self._claim(run.id) as row:
                self._save(run, started_at=started_at, ended=ended)
            return
        _store(row, run)
        if started_at is not None:
            row.started_at = started_at
        if ended:
            row.ended_at = self.clock.now()

    # -- the drill's row: the truth, whichever process holds it -------------------------------

    @contextmanager
    def _claim(self, drill_id: str, *, busy: bool = False) -> Iterator[DrillRow]:
        """The drill's row, for this thread alone until the body ends, then saved (what the
        body changed is saved even if it raises: injects fired do not fire again).

        On PostgreSQL the row is read ``FOR UPDATE``: every process's orders and the leader's
        tick queue on it, and each applies its change once, to the newest state. On SQLite
        (one process) the desk's lock orders the threads, and the row is written back. A
        nested claim of the same drill (the desk calling itself) is the outer one's. ``busy``:
        a row another process holds now raises :class:`Busy` at once (the leader's tick goes
        on to the next drill, and to the rest of its timers, rather than wait)."""
        if not self._lock.acquire(timeout=BUSY_WAIT_S if busy else -1):
            raise Busy(drill_id)  # an order of this process is waiting for a row
        try:
            held = self._held_rows.get(drill_id)
            if held is not None:
                yield held
                return
            error: Exception | None = None
            if self._row_locks:
                with self.db.write() as session:
                    row = session.get(
                        DrillRow, drill_id, with_for_update={"skip_locked": True} if busy else True
                    )
                    if row is None and busy:
                        raise Busy(drill_id)
                    if row is None:
                        raise NotFound(
                            f"no drill '{drill_id}'", errors=[FieldError("drill", "unknown")]
                        )
                    self._held_rows[drill_id] = row
                    try:
                        yield row
                    except Exception as exc:
                        error = exc
                    finally:
                        self._held_rows.pop(drill_id, None)
                        self._held_runs.pop(drill_id, None)
            else:
                with self.db.read() as session:
                    found = session.get(DrillRow, drill_id)
                if found is None:
                    raise NotFound(
                        f"no drill '{drill_id}'", errors=[FieldError("drill", "unknown")]
                    )
                row = found
                before = {name: getattr(row, name) for name in SAVED}
                self._held_rows[drill_id] = row
                try:
                    yield row
                except Exception as exc:
                    error = exc
                finally:
                    self._held_rows.pop(drill_id, None)
                    self._held_runs.pop(drill_id, None)
                changed = [name for name in SAVED if getattr(row, name) != before[name]]
                if changed:  # an idle tick writes nothing
                    with self.db.write() as session:
                        stored = session.get(DrillRow, drill_id)
                        for name in changed:
                            if stored is not None:
                                setattr(stored, name, getattr(row, name))
            if error is not None:
                raise error
        finally:
            self._lock.release()

    @contextmanager
    def _held(self, site_id: str, drill_id: str, *, busy: bool = False) -> Iterator[RunningDrill]:
        """A live drill read from its row, held (:meth:`_claim`) and saved back after the body:
        a drill that is not live is refused."""
        with self._claim(drill_id, busy=busy) as row:
            if row.site_id != site_id:
                raise _unknown(site_id, drill_id)
            run = self._held_runs.get(drill_id)
            if run is None:
                if row.state not in LIVE or not row.detail.get("time"):
                    raise IllegalTransition(
                        f"drill '{drill_id}' is {row.state}, not running",
                        errors=[FieldError("state", row.state)],
                    )
                run = self._held_runs[drill_id] = self._run_of(row)
            try:
                yield run
            finally:
                _store(row, run)

    def _run_of(self, row: DrillRow) -> RunningDrill:
        """A live drill as its row says."""
        key = (row.site_id, row.scenario_id, row.scenario_version)
        scenario = self._scenarios.get(key)
        if scenario is None:
            with self.db.read() as session:
                body = _scenario_row(session, *key).body
            scenario = self._scenarios[key] = parse_scenario(body)
        detail = row.detail
        return RunningDrill(
            id=row.id,
            site_id=row.site_id,
            scenario=scenario,
            scenario_version=row.scenario_version,
            incident_id=str(row.incident_id),
            mode=row.mode,
            time=DrillTime.from_dict(detail["time"]),
            state=row.state,
            fired=list(detail.get("fired", [])),
            met=dict(detail.get("met", {})),
            missed=list(detail.get("missed", [])),
            displaced={k: list(v) for k, v in detail.get("displaced", {}).items()},
            followed=int(detail.get("followed", 0)),
            suspended_by=detail.get("suspended_by"),
            record=list(detail.get("record", [])),
        )

    # -- the controller's orders ----------------------------------------------------------------

    def hold(self, site_id: str, drill_id: str, *, actor: str, reason: str) -> list[Any]:
        with self._held(site_id, drill_id) as run:
            if run.state != "running":
                raise IllegalTransition(
                    f"drill '{drill_id}' is {run.state}", errors=[FieldError("state", run.state)]
                )
            now = self.clock.now()
            out = self._log(
                site_id,
                "drill.held",
                drill_id,
                {"reason": reason, "drill_s": round(run.time.at(now), 1)},
                run.incident_id,
                actor=actor,
            )
            run.time.pause(now)
            self.post.pause_incident(run.incident_id)
            self._save(run, state="held")
            return out

    def resume(self, site_id: str, drill_id: str, *, actor: str, reason: str | None) -> list[Any]:
        with self._held(site_id, drill_id) as run:
            if run.state == "running":
                raise IllegalTransition(
                    f"drill '{drill_id}' is running already",
                    errors=[FieldError("state", "running")],
                )
            now = self.clock.now()
            run.time.resume(now)
            self.post.resume_incident(run.incident_id)
            run.suspended_by = None
            out = self._log(
                site_id,
                "drill.resumed",
                drill_id,
                {"reason": reason, "drill_s": round(run.time.at(now), 1)},
                run.incident_id,
                actor=actor,
            )
            self._save(run, state="running")
            return [*out, *self._advance(run)]

    def fire_next(
        self, site_id: str, drill_id: str, *, actor: str, inject_id: str | None = None
    ) -> list[Any]:
        """Fire the next timed inject now (or the one named, a contingency too)."""
        with self._held(site_id, drill_id) as run:
            if run.state != "running":
                raise IllegalTransition(
                    f"drill '{drill_id}' is {run.state}: resume it first",
                    errors=[FieldError("state", run.state)],
                )
            if inject_id is None:
                left = [i for i in run.scenario.timeline() if i.id not in run.fired]
                if not left:
                    raise IllegalTransition(
                        "every timed inject has fired", errors=[FieldError("inject", "none left")]
                    )
                inject = left[0]
            else:
                found = [i for i in run.scenario.injects if i.id == inject_id]
                if not found:
                    raise NotFound(
                        f"the scenario has no inject '{inject_id}'",
                        errors=[FieldError("inject_id", "unknown")],
                    )
                inject = found[0]
                if inject.id in run.fired:
                    raise IllegalTransition(
                        f"inject '{inject_id}' has fired", errors=[FieldError("inject_id", "fired")]
                    )
            out = self._fire(run, inject, planned_s=inject.at_s, early=True)
            self._save(run)
            return out

    def note(self, site_id: str, drill_id: str, *, actor: str, text: str) -> list[Any]:
        """An evaluator's note, stamped with drill time (while the drill runs or is held)."""
        with self._held(site_id, drill_id) as run:
            kept = self._keep(
                run,
                "drill.note",
                {"text": text, "drill_s": round(run.time.at(self.clock.now()), 1)},
                actor=actor,
            )
            self._save(run)
            return list(kept)

    def end(
        self, site_id: str, drill_id: str, *, actor: str, reason: str, aborted: bool = False
    ) -> list[Any]:
        """End (or abort) the drill: logged, its incident stood down, injected positions put
        back, the review generated."""
        with self._held(site_id, drill_id) as run:
            return self._end(run, actor=actor, reason=reason, aborted=aborted)

    def _end(self, run: RunningDrill, *, actor: str, reason: str, aborted: bool) -> list[Any]:
        """Under the lock: the drill's record goes into the log (each entry at its own time),
        then ``drill.ended`` with the scenario the players were not told: the review reads
        both from the log."""
        self._follow(run)  # the players' last actions before the end still count
        now = self.clock.now()
        scenario = run.scenario
        drafts = [
            event_log.Draft(e.type, e.actor, e.data, e.incident_id, e.at)
            for e in map(PrivateEvent.from_dict, run.record)
        ]
        drafts.append(
            event_log.Draft(
                "drill.ended",
                actor,
                {
                    "drill_id": run.id,
                    "exercise": run.id,
                    "aborted": aborted,
                    "reason": reason,
                    "drill_s": round(run.time.at(now), 1),
                    "scenario_id": scenario.id,
                    "scenario_version": run.scenario_version,
                    "title": scenario.title,
                    "title_zh": scenario.title_zh,
                    "window": self._window(run.id),
                    "expected": [
                        {
                            "id": e.id,
                            "title": e.title,
                            "target_s": e.target_s,
                            "deadline_s": e.due_s,
                            "on_miss": list(e.on_miss),
                        }
                        for e in scenario.expected
                    ],
                    "injects": [
                        {"id": i.id, "kind": i.kind.value, "at_s": i.at_s, "title": i.title}
                        for i in scenario.injects
                    ],
                },
                run.incident_id,
                now,
            )
        )
        with self.db.write() as session:
            out: list[Any] = event_log.append_many(
                session, run.site_id, drafts, exercises=self.post.exercises, now=now
            )
        self.post.hub.publish(run.site_id, [event_message(e) for e in out])
        run.record = []
        run.time.pause(now)
        self._save(run, state="aborted" if aborted else "ended", ended=True)
        self.post.paused.discard(run.incident_id)
        if self.post.follower is not None:  # the incident as the log has it now
            self.post.follower.catch_up(run.site_id)
        incident = self.post.incidents.get(run.incident_id)
        if incident is not None:
            # The drill's incident closes with it (forced: its steps may be open), in the
            # plan's command role: the controller directs the exercise.
            command_role = incident.run.state.template.command_role
            out += self.post.stand_down(
                run.site_id,
                run.incident_id,
                Actor(actor, frozenset({command_role})),
                force=True,
                reason=f"{event_log.EXERCISE_LABEL}: drill {'aborted' if aborted else 'ended'}"
                f": {reason}",
            )
        self._put_back(run)
        if self.on_closed is not None:
            try:
                self.on_closed(run.site_id, run.incident_id, run.id)
            except Exception:
                log.exception("no review for drill %s", run.id)
        return out

    def _window(self, drill_id: str) -> dict[str, Any] | None:
        with self.db.read() as session:
            row = session.get(DrillRow, drill_id)
            return row.window if row is not None else None

    def _put_back(self, run: RunningDrill) -> None:
        """People an inject moved go back to where they were really last seen, unless a real
        position of theirs came in since."""
        if not run.displaced:
            return
        model = self.post.model(run.site_id)
        moves: dict[str, tuple[float, float, datetime | None]] = {}
        with model.lock:
            for person, kept in run.displaced.items():
                lon, lat, seen = float(kept[0] or 0), float(kept[1] or 0), kept[2]
                injected = kept[3] if len(kept) > 3 and kept[3] is not None else math.inf
                row = model.person_row.get(person)
                live = self.post.live.get(run.site_id, {}).get(person)
                if row is None or live is None or live[2] > injected:
                    continue  # a real position came in after the inject: it stands
                moves[person] = (lon, lat, datetime.fromtimestamp(seen, UTC) if seen else None)
        if moves:  # where and when they were really last seen, not "seen now"
            self.post.positions(run.site_id, moves, exercise=run.id, restore=True)

    # -- what the command post tells the desk ---------------------------------------------------

    def real_incident(self, site_id: str, incident_id: str) -> None:
        self._suspend(site_id, f"a real incident: {incident_id}", {"by_incident": incident_id})

    def real_alarm(self, site_id: str, sensor_id: str, tier: str) -> None:
        self._suspend(
            site_id, f"a real {tier} on {sensor_id}", {"by_sensor": sensor_id, "tier": tier}
        )

    def _suspend(self, site_id: str, reason: str, cause: dict[str, Any]) -> None:
        """A real incident comes first: the site's running drills stop at once (drill time
        too) and every participant is told (whichever process runs them)."""
        with self.db.read() as session:
            drills = list(
                session.scalars(
                    select(DrillRow.id).where(
                        DrillRow.site_id == site_id, DrillRow.state.in_(("running", "held"))
                    )
                )
            )
        for drill_id in drills:
            try:
                with self._held(site_id, drill_id) as run:
                    if run.state in ("running", "held"):
                        self._suspend_run(run, reason, cause)
            except IllegalTransition:
                continue  # ended meanwhile

    def _suspend_run(self, run: RunningDrill, reason: str, cause: dict[str, Any]) -> None:
        """Holding the drill: suspended, logged, its incident waits."""
        now = self.clock.now()
        self._log(
            run.site_id,
            "drill.suspended",
            run.id,
            {"reason": reason, **cause, "drill_s": round(run.time.at(now), 1)},
            run.incident_id,
            actor="system",
        )
        run.time.pause(now)
        self.post.pause_incident(run.incident_id)
        run.suspended_by = reason
        self._save(run, state="suspended")

    def incident_closed(self, site_id: str, incident_id: str) -> None:
        """An incident stood down: a drill's ends with it; any other gets its review."""
        with self._lock:
            held = [r.id for r in self._held_runs.values() if r.incident_id == incident_id]
            with self.db.read() as session:
                found = session.scalar(
                    select(DrillRow.id).where(
                        DrillRow.incident_id == incident_id, DrillRow.state.in_(LIVE)
                    )
                )
            drill_id = held[0] if held else found
            if drill_id is not None:
                try:
                    with self._held(site_id, drill_id) as run:
                        if run.state in LIVE:  # not being ended already (by this thread)
                            self._end(
                                run,
                                actor="system",
                                reason="the players stood the incident down",
                                aborted=False,
                            )
                except IllegalTransition:
                    pass  # ended meanwhile
                return
        if self.on_closed is not None and self.post.exercises.get(incident_id) is None:
            try:
                self.on_closed(site_id, incident_id, None)
            except Exception:
                log.exception("no review for incident %s", incident_id)

    # -- restart --------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """At a process's start: its memory of the live drills' incidents (marked as exercises,
        waiting while held or suspended); the rows stay the truth. A drill caught starting
        when a server stopped is aborted, saying so (its incident, if it was opened, is
        rebuilt with the others and stood down by the players or a commander)."""
        with self.db.write() as session:
            for stuck in session.scalars(select(DrillRow).where(DrillRow.state == "starting")):
                log.error("drill %s was starting when the server stopped: aborted", stuck.id)
                stuck.state, stuck.ended_at = "aborted", self.clock.now()
                stuck.detail = {**stuck.detail, "aborted": "the server stopped while it started"}
        with self.db.read() as session:
            scheduled = list(
                session.scalars(select(DrillRow.id).where(DrillRow.state == "scheduled"))
            )
        for drill_id in scheduled:  # a start cut short: the log has it, the row does not
            with self._claim(drill_id) as row:
                if row.state == "scheduled" and self._started_before(row):
                    log.error("drill %s was starting when the server stopped: aborted", row.id)
                    row.state, row.ended_at = "aborted", self.clock.now()
                    row.detail = {**row.detail, "aborted": "the server stopped while it started"}
        with self.db.read() as session:
            rows = list(session.scalars(select(DrillRow).where(DrillRow.state.in_(LIVE))))
        live = []
        for row in rows:
            if not row.detail.get("time"):
                continue
            live.append(row.id)
            self.post.exercises[str(row.incident_id)] = row.id
            if row.state != "running":  # held or suspended: its incident waits too
                self.post.pause_incident(str(row.incident_id))
        return sorted(live)


class Busy(Exception):
    """A drill's row is held by another process now (the leader's tick does not wait)."""


def _inside(extent: Any, lon: float, lat: float) -> bool:
    """Whether the point lies in the site's extent (with the same tolerance as its layers)."""
    return extent is None or bool(extent.covers(shapely.Point(lon, lat)))


def _of_drill(row: EventRow, run: RunningDrill) -> bool:
    return row.incident_id == run.incident_id or row.data.get("exercise") == run.id


def _logged(site_id: str, data: Mapping[str, Any]) -> event_log.LoggedEvent:
    """A logged event back from its ``as_dict`` form (what the positions path answers)."""
    return event_log.LoggedEvent(
        site_id,
        int(data["seq"]),
        datetime.fromisoformat(data["at"]),
        str(data["type"]),
        str(data["actor"]),
        data.get("incident_id"),
        dict(data["data"]),
        "",
        str(data["hash"]),
    )


def _scenario_row(
    session: Any, site_id: str, scenario_id: str, version: int | None
) -> DrillScenarioRow:
    query = select(DrillScenarioRow).where(
        DrillScenarioRow.site_id == site_id, DrillScenarioRow.scenario_id == scenario_id
    )
    if version is not None:
        query = query.where(DrillScenarioRow.version == version)
    row = session.scalar(query.order_by(DrillScenarioRow.version.desc()).limit(1))
    if row is None:
        raise NotFound(
            f"no scenario '{scenario_id}'"
            + (f" version {version}" if version is not None else "")
            + f" at site '{site_id}'",
            errors=[FieldError("scenario", "unknown")],
        )
    result: DrillScenarioRow = row
    return result


def _drill_row(session: Any, site_id: str, drill_id: str) -> DrillRow:
    row = session.get(DrillRow, drill_id)
    if row is None or row.site_id != site_id:
        raise NotFound(
            f"no drill '{drill_id}' at site '{site_id}'", errors=[FieldError("drill", "unknown")]
        )
    result: DrillRow = row
    return result


def _scenario_json(row: DrillScenarioRow) -> dict[str, Any]:
    return {
        "id": row.scenario_id,
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "scenario": row.body,
    }


def active_drills(desk: DrillDesk, site_id: str) -> Sequence[RunningDrill]:
    """The site's live drills, as their rows say now."""
    with desk.db.read() as session:
        rows = list(
            session.scalars(
                select(DrillRow).where(DrillRow.site_id == site_id, DrillRow.state.in_(LIVE))
            )
        )
    return [desk._run_of(r) for r in rows if r.detail.get("time")]


def _store(row: DrillRow, run: RunningDrill) -> None:
    """The run's state into its row (only what changed: an unchanged tick writes nothing)."""
    detail = run.detail()
    if row.detail != detail:
        row.detail = detail
    if row.state != run.state:
        row.state = run.state
    if row.incident_id != run.incident_id:
        row.incident_id = run.incident_id


def _unknown(site_id: str, drill_id: str) -> NotFound:
    return NotFound(
        f"no drill '{drill_id}' at site '{site_id}'", errors=[FieldError("drill", "unknown")]
    )
