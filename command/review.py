"""The after-action review of an ended incident or drill, from its logged events alone.

Everything here is read from the events: the plan run is replayed from its ``plan.*`` events
(:meth:`plans.engine.PlanRun.replay`), so a step's target is the due time the engine itself
kept, the same that fired its ``step.overdue`` event. Nothing is read from memory, the site model
or the clock, so a review generated again from the same events is the same review.

The review covers, after HSEEP's after-action report and improvement plan:

- the **timeline**: every event of the incident and of its drill, with the drill time (seconds
  since ``drill.started``, less the time held or suspended) when it is a drill;
- each **plan step** (target: its due time; actual: when it was done, skipped or failed) and each
  **expected drill action** (target and actual in drill time, from ``drill.action_met``);
- **muster**: when everyone who had to move was accounted for (see :func:`muster`);
- the **call-out**: each role called, when delivered, when acknowledged and by whom;
- the **injects** fired (the contingency ones marked), **evaluator notes**, **holds and
  suspensions**;
- the **deviations**, largest first: each is an item of the improvement plan, whose cause and
  corrective action (owner, due date) reviewers fill in (:mod:`command.reviews`);
- the **situation maps'** moments: activation, first full muster, each wind change. Their threat
  zones are recomputed from the logged hazard by :mod:`command.review_maps`.

Times are ISO 8601 (UTC); durations and deviations are seconds (positive: late).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from command.events import LoggedEvent
from command.notifications import fold_notices
from gis.errors import CorruptEvent, FieldError, IllegalTransition, NotFound
from plans.clock import ManualClock
from plans.engine import FINISHED, PlanEvent, PlanRun, Status
from plans.model import PlanTemplate

#: The review's shape; a reader of stored reviews checks it.
REVIEW_FORMAT = 1
#: Summaries of events in the timeline are cut to this many characters.
SUMMARY_CHARS = 300


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _seconds(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds(), 3)


@dataclass
class DrillClock:
    """Drill time: seconds since ``drill.started``, less the time the drill was held or
    suspended. ``pauses`` are (from, to) with ``to`` None for a pause the drill ended in."""

    started_at: datetime
    pauses: list[tuple[datetime, datetime | None]] = field(default_factory=list)

    def at(self, when: datetime) -> float | None:
        if when < self.started_at:
            return None
        paused = 0.0
        for start, end in self.pauses:
            if start >= when:
                break
            paused += ((when if end is None or end > when else end) - start).total_seconds()
        return round((when - self.started_at).total_seconds() - paused, 3)


def drill_clock(events: Sequence[LoggedEvent]) -> DrillClock | None:
    """The drill's clock, from its ``drill.started``, ``drill.held``, ``drill.suspended`` and
    ``drill.resumed`` events (None when the events hold no drill)."""
    started = next((e for e in events if e.type == "drill.started"), None)
    if started is None:
        return None
    clock = DrillClock(started.at)
    paused_at: datetime | None = None
    for event in events:
        if event.type in ("drill.held", "drill.suspended") and paused_at is None:
            paused_at = event.at
        elif event.type == "drill.resumed" and paused_at is not None:
            clock.pauses.append((paused_at, event.at))
            paused_at = None
    if paused_at is not None:
        clock.pauses.append((paused_at, None))
    return clock


def replay_plan(incident_id: str, events: Iterable[LoggedEvent]) -> PlanRun | None:
    """The incident's plan run, replayed from its logged ``plan.*`` events (None: none)."""
    plan_events = [
        PlanEvent(
            run_id=incident_id,
            seq=int(e.data["seq"]),
            type=e.type.removeprefix("plan."),
            at=datetime.fromisoformat(str(e.data["at"])),
            actor=e.data.get("actor"),
            step_id=e.data.get("step_id"),
            data=e.data.get("data") or {},
        )
        for e in events
        if e.type.startswith("plan.") and e.incident_id == incident_id and "seq" in e.data
    ]
    if not plan_events:
        return None
    if plan_events[0].type != "run.activated":
        raise ValueError("the plan run's events do not start with its activation")
    return PlanRun.replay(plan_events, ManualClock(plan_events[-1].at))


#: A drill's controller material, logged together when the drill ends (command.drills).
DRILL_RECORD = ("drill.inject", "drill.action_met", "drill.action_missed", "drill.note")


#: What each logged step event moves the step to (``plans.engine``'s statuses).
_STEP_STATUS = {
    "plan.step.acknowledged": Status.ACKNOWLEDGED.value,
    "plan.step.started": Status.IN_PROGRESS.value,
    "plan.step.done": Status.DONE.value,
    "plan.step.skipped": Status.SKIPPED.value,
    "plan.step.failed": Status.FAILED.value,
}


def acted_at(event: LoggedEvent) -> datetime | None:
    """When the responder acted, for an action queued on a phone (``command.client_actions``):
    the event's own time is when the server received it."""
    value = event.data.get("acted_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def bounded(acted: datetime, earliest: datetime, received: datetime) -> tuple[datetime, bool]:
    """A phone's acted-at as the review takes it: not before ``earliest`` (when the action
    became possible: a step's readiness, the incident's activation) nor after ``received``
    (the server's receipt). Outside them the phone's clock was wrong: the bound is used for
    timing, and flagged (True), so no duration is negative and no deviation absurd."""
    if acted < earliest:
        return min(earliest, received), True
    if acted > received:
        return received, True
    return acted, False


def _acted(event: LoggedEvent, earliest: datetime) -> dict[str, Any]:
    acted = acted_at(event)
    clamped = False
    if acted is not None:
        acted, clamped = bounded(acted, earliest, event.at)
    return {
        "acted_at": _iso(acted),
        "offline_s": _seconds(event.at, acted) if acted is not None else None,
        **({"acted_at_clamped": True} if clamped else {}),
    }


def acted_times(incident_id: str, events: Iterable[LoggedEvent]) -> dict[tuple[str, str], datetime]:
    """(step, status) -> when the responder acted, for the step events that say so."""
    out = {}
    for e in events:
        status = _STEP_STATUS.get(e.type)
        acted = acted_at(e) if status is not None and e.incident_id == incident_id else None
        if acted is not None and status is not None:
            out[(str(e.data.get("step_id")), status)] = acted
    return out


def in_log_order(events: Iterable[LoggedEvent]) -> list[LoggedEvent]:
    """The events in the log's order, with a drill's record (logged together when it ended,
    each entry with the time it happened) put back among them by that time."""
    ordered = sorted(events, key=lambda e: e.seq)
    public = [e for e in ordered if e.type not in DRILL_RECORD]
    kept = sorted((e for e in ordered if e.type in DRILL_RECORD), key=lambda e: (e.at, e.seq))
    out: list[LoggedEvent] = []
    i = 0
    for event in public:
        while i < len(kept) and kept[i].at < event.at:
            out.append(kept[i])
            i += 1
        out.append(event)
    return [*out, *kept[i:]]


def build_review(site_id: str, incident_id: str, events: Sequence[LoggedEvent]) -> dict[str, Any]:
    """The review of ``incident_id`` from ``events``: the incident's own events and those of its
    drill (``drill.*`` and injected ones), in any order. Refuses an incident the events do not
    show activated (:class:`NotFound`) or ended (:class:`IllegalTransition`)."""
    events = in_log_order(events)
    activated = next(
        (e for e in events if e.type == "incident.activated" and e.incident_id == incident_id),
        None,
    )
    if activated is None:
        raise NotFound(
            f"no incident '{incident_id}' at site '{site_id}'",
            errors=[FieldError("incident", "unknown")],
        )
    try:
        return _Review(site_id, incident_id, events, activated).build()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptEvent(
            f"incident '{incident_id}' cannot be reviewed from its logged events "
            f"({type(exc).__name__}: {exc}); see 'rallypoint audit verify'",
            errors=[FieldError("incident", "its logged events are not as logged")],
        ) from exc


class _Review:
    """One review being built: the events, read once into what each section needs."""

    def __init__(
        self,
        site_id: str,
        incident_id: str,
        events: Sequence[LoggedEvent],
        activated: LoggedEvent,
    ) -> None:
        self.site_id, self.incident_id = site_id, incident_id
        self.events, self.activated = events, activated
        self.start = activated.at
        self.clock = drill_clock(events)
        self.drill_started = next((e for e in events if e.type == "drill.started"), None)
        self.drill_ended = next((e for e in events if e.type == "drill.ended"), None)
        self.drill_id = self._drill_id()
        self.run = replay_plan(incident_id, events)
        self.template: PlanTemplate | None = self.run.state.template if self.run else None
        self.titles = {s.id: s.title for _, s in self.template.steps()} if self.template else {}
        self.stood_down = next(
            (e for e in events if e.type == "plan.run.stood_down" and e.incident_id == incident_id),
            None,
        )
        self.closed = next(
            (e for e in events if e.type == "incident.closed" and e.incident_id == incident_id),
            None,
        )
        self.acted = acted_times(incident_id, events)
        #: (step, status) -> when the step's action was logged (the receipt).
        self.received = {
            (str(e.data.get("step_id")), _STEP_STATUS[e.type]): e.at
            for e in events
            if e.type in _STEP_STATUS and e.incident_id == incident_id
        }
        self._possible: dict[str, datetime] = {}

    # -- the parts ---------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        ended = self.ended_at()
        steps = self.steps(ended)
        actions = self.actions()
        callout = self.callout(ended)
        muster = self.muster()
        deviations = ranked_deviations(steps, actions, callout["roles"])
        return {
            "format": REVIEW_FORMAT,
            "kind": "drill" if self.drill_id else "incident",
            "site_id": self.site_id,
            "incident_id": self.incident_id,
            "drill_id": self.drill_id,
            "incident": self.incident(),
            "drill": self.drill(),
            "ended_at": ended.isoformat(),
            "duration_s": _seconds(ended, self.start),
            "source": {
                "events": len(self.events),
                "first_seq": self.events[0].seq,
                "last_seq": self.events[-1].seq,
                # The review names the log it was read from: the chain's hash at its last event.
                "last_hash": self.events[-1].hash,
            },
            "timeline": self.timeline(),
            "steps": steps,
            "actions": actions,
            "muster": muster,
            "callout": callout,
            "injects": self.injects(),
            "notes": self.notes(),
            "interruptions": self.interruptions(ended),
            "deviations": deviations,
            "maps": self.moments(muster),
        }

    def _drill_id(self) -> str | None:
        """The drill this incident is the exercise of (its activation says so), if any."""
        exercise = self.activated.data.get("exercise")
        if isinstance(exercise, Mapping) and exercise.get("drill_id"):
            return str(exercise["drill_id"])
        if self.drill_started is not None:
            return str(self.drill_started.data["drill_id"])
        return None

    def ended_at(self) -> datetime:
        """A drill ends with ``drill.ended``; an incident with its stand-down."""
        if self.drill_id is not None and self.drill_ended is not None:
            return self.drill_ended.at
        if self.stood_down is not None:
            return self.stood_down.at
        raise IllegalTransition(
            f"incident '{self.incident_id}' has not ended: its review comes when it stands "
            "down (a drill's, when the drill ends)",
            errors=[FieldError("incident", "not ended")],
        )

    def t(self, at: datetime) -> float:
        """Seconds since activation."""
        return _seconds(at, self.start)

    def drill_s(self, at: datetime | None) -> float | None:
        return self.clock.at(at) if self.clock is not None and at is not None else None

    def incident(self) -> dict[str, Any]:
        request = self.activated.data["request"]
        state = self.run.state if self.run else None
        closed = self.closed.data if self.closed else {}
        return {
            "plan_id": request["plan_id"],
            "plan_title": self.template.title if self.template else None,
            "plan_title_zh": self.template.title_zh if self.template else None,
            "plan_version": self.activated.data.get("plan_version"),
            "level": request["level"],
            "highest_level": state.highest_level.value if state else request["level"],
            "activated_at": self.start.isoformat(),
            "activated_by": self.activated.actor,
            "location": request["location"],
            "hazard": request["hazard"],
            "note": request.get("note"),
            "stood_down_at": _iso(self.stood_down.at) if self.stood_down else None,
            "stood_down_by": self.stood_down.actor if self.stood_down else None,
            "reason": (self.stood_down.data.get("data") or {}).get("reason")
            if self.stood_down
            else None,
            "forced": bool(closed.get("forced")),
            "missing_at_close": list(closed.get("missing", [])),
            "open_steps_at_close": list(closed.get("open_steps", [])),
        }

    def drill(self) -> dict[str, Any] | None:
        if self.drill_id is None:
            return None
        # The scenario comes with drill.ended (players were not told it while it ran).
        started = self.scenario()
        ended = self.drill_ended.data if self.drill_ended else {}
        exercise = self.activated.data.get("exercise")
        info = exercise if isinstance(exercise, Mapping) else {}
        held = sum(
            ((end or self.ended_at()) - start).total_seconds()
            for start, end in (self.clock.pauses if self.clock else [])
        )
        return {
            "drill_id": self.drill_id,
            "scenario_id": started.get("scenario_id", info.get("scenario_id")),
            "scenario_version": started.get("scenario_version", info.get("scenario_version")),
            "title": started.get("title"),
            "title_zh": started.get("title_zh"),
            "mode": started.get("mode"),
            "window": started.get("window"),
            "started_at": _iso(self.drill_started.at) if self.drill_started else None,
            "ended_at": _iso(self.drill_ended.at) if self.drill_ended else None,
            "aborted": bool(ended.get("aborted")),
            "end_reason": ended.get("reason"),
            "drill_s": ended.get("drill_s"),
            "paused_s": round(held, 3),
        }

    def scenario(self) -> dict[str, Any]:
        """The drill's scenario as the log gives it: ``drill.ended`` carries it (and an older
        ``drill.started`` may)."""
        started = dict(self.drill_started.data) if self.drill_started else {}
        ended = dict(self.drill_ended.data) if self.drill_ended else {}
        return {**started, **{k: v for k, v in ended.items() if v is not None}}

    def timeline(self) -> list[dict[str, Any]]:
        return [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "t_s": self.t(e.at),
                "drill_s": e.data.get("drill_s", self.drill_s(e.at))
                if e.type.startswith("drill.")
                else self.drill_s(e.at),
                "type": e.type,
                "actor": e.actor,
                "what": describe(e, self.titles)[:SUMMARY_CHARS],
                **_acted(e, self.earliest(e)),
            }
            for e in self.events
        ]

    def possible_from(self, step_id: str) -> datetime:
        """When acting on the step became possible, as the responders' own times have it: the
        latest finish of the steps it depends on (their acted-at, bounded), else when its level
        came (the activation, or the escalation); never before the activation."""
        if step_id in self._possible:
            return self._possible[step_id]
        self._possible[step_id] = self.start  # a cycle (none in a valid plan) ends here
        earliest = self.start
        if self.run is not None and self.template is not None:
            state = self.run.state.steps.get(step_id)
            step = next((s for _, s in self.template.steps() if s.id == step_id), None)
            if state is not None:
                came = self.run.state.level_since.get(state.level)
                if came is not None and not (step and step.depends_on):
                    earliest = max(earliest, came)
            for dep in step.depends_on if step is not None else ():
                dep_state = self.run.state.steps.get(dep)
                if dep_state is None or dep_state.status not in FINISHED:
                    continue
                finish, _ = self.step_acted(dep, dep_state.status.value)
                finish = finish or dep_state.times.get(dep_state.status.value)
                if finish is not None:
                    earliest = max(earliest, finish)
        self._possible[step_id] = earliest
        return earliest

    def step_acted(self, step_id: str, status: str) -> tuple[datetime | None, bool]:
        """When the responder moved the step to ``status``, bounded (:func:`bounded`), and
        whether the bound was used; None when the phone did not say."""
        acted = self.acted.get((step_id, status))
        received = self.received.get((step_id, status))
        if acted is None or received is None:
            return None, False
        return bounded(acted, self.possible_from(step_id), received)

    def earliest(self, event: LoggedEvent) -> datetime:
        """When the event's action became possible (for :func:`bounded`)."""
        if event.type in _STEP_STATUS and event.incident_id == self.incident_id:
            return self.possible_from(str(event.data.get("step_id")))
        return self.start

    def steps(self, ended: datetime) -> list[dict[str, Any]]:
        """Each step of the run: target (its due time), actual (done, skipped or failed),
        deviation, who acknowledged and who finished it."""
        if self.run is None or self.template is None:
            return []
        out = []
        states = self.run.state.steps
        for level, step in self.template.steps():
            state = states.get(step.id)
            if state is None:  # its level never came
                continue
            finished = state.status in FINISHED
            # Timed by when the responder acted (a phone that was offline sends it later); the
            # server's receipt beside it.
            received = state.times.get(state.status.value) if finished else None
            acted, clamped = (
                self.step_acted(step.id, state.status.value) if finished else (None, False)
            )
            actual = acted or received
            ack_received = state.times.get(Status.ACKNOWLEDGED.value)
            ack_acted, ack_clamped = self.step_acted(step.id, Status.ACKNOWLEDGED.value)
            target = state.due_at
            out.append(
                {
                    "id": f"step:{step.id}",
                    "step_id": step.id,
                    "title": step.title,
                    "title_zh": step.title_zh,
                    "level": level.value,
                    "role": step.role,
                    "optional": step.optional,
                    "status": "withdrawn"
                    if state.withdrawn and not finished
                    else state.status.value,
                    "target_at": _iso(target),
                    "target_s": self.t(target) if target else None,
                    "actual_at": _iso(actual),
                    "actual_s": self.t(actual) if actual else None,
                    "deviation_s": _seconds(actual, target) if actual and target else None,
                    # Not finished when the incident ended: how far past due it was by then.
                    "open_past_due_s": _seconds(ended, target)
                    if target and not finished and not state.withdrawn and ended > target
                    else None,
                    "target_drill_s": self.drill_s(target),
                    "actual_drill_s": self.drill_s(actual),
                    "overdue": state.overdue,
                    "actual_received_at": _iso(received),
                    "actual_offline_s": _seconds(received, acted) if acted and received else None,
                    "acknowledged_at": _iso(ack_acted or ack_received),
                    "acknowledged_received_at": _iso(ack_received),
                    "acknowledged_offline_s": _seconds(ack_received, ack_acted)
                    if ack_acted and ack_received
                    else None,
                    # The phone's acted-at was impossible (before the step could be done, or
                    # after its receipt): its bound is used above.
                    "acted_at_clamped": clamped or ack_clamped,
                    "acknowledged_by": state.actors.get(Status.ACKNOWLEDGED.value),
                    "by": state.actors.get(state.status.value) if finished else None,
                    "value": state.value,
                    "reason": state.reason,
                }
            )
        return out

    def actions(self) -> list[dict[str, Any]]:
        """Each expected player action of the drill: target and actual in drill time."""
        if self.drill_started is None:
            return []
        end_s = self.drill_s(self.ended_at())
        if self.drill_ended is not None and self.drill_ended.data.get("drill_s") is not None:
            end_s = float(self.drill_ended.data["drill_s"])
        met = {str(e.data["expected_id"]): e for e in self.events if e.type == "drill.action_met"}
        missed = {
            str(e.data["expected_id"]): e for e in self.events if e.type == "drill.action_missed"
        }
        out = []
        for expected in self.scenario().get("expected", []):
            key = str(expected["id"])
            hit, miss = met.get(key), missed.get(key)
            target = expected.get("target_s")
            actual = hit.data.get("actual_s") if hit else None
            deviation = None
            if hit is not None:
                deviation = hit.data.get("deviation_s")
                if deviation is None and actual is not None and target is not None:
                    deviation = round(float(actual) - float(target), 3)
            out.append(
                {
                    "id": f"action:{key}",
                    "expected_id": key,
                    "title": expected.get("title"),
                    "target_s": target,
                    "deadline_s": expected.get("deadline_s"),
                    "actual_s": actual,
                    "actual_at": _iso(hit.at) if hit else None,
                    "deviation_s": deviation,
                    # Never met: how far past its target the drill ended.
                    "open_past_due_s": round(end_s - float(target), 3)
                    if hit is None and end_s is not None and target is not None
                    else None,
                    "status": ("met_late" if miss else "met") if hit else "missed",
                    "by": hit.data.get("by") if hit else None,
                    "met_by_seq": hit.data.get("seq") if hit else None,
                    "missed_at_s": miss.data.get("deadline_s") if miss else None,
                    "contingencies": list(miss.data.get("contingencies", [])) if miss else [],
                }
            )
        return out

    def callout(self, ended: datetime) -> dict[str, Any]:
        """Every notice (delivery and acknowledgement times) and, per role called, the whole
        chain of contacts: from the first call to the answer."""
        notices = fold_notices(e for e in self.events if e.incident_id == self.incident_id)
        requested = {n["seq"]: n for n in notices}
        for notice in notices:
            asked = datetime.fromisoformat(notice["requested_at"])
            delivered = notice["delivered_at"]
            answer = notice["acknowledged"]
            notice["requested_s"] = self.t(asked)
            notice["delivery_s"] = (
                _seconds(datetime.fromisoformat(delivered), asked) if delivered else None
            )
            notice["acknowledged_s"] = (
                _seconds(datetime.fromisoformat(answer["at"]), asked) if answer else None
            )
        roles = []
        for notice in notices:
            if notice["after"] is not None and notice["after"] in requested:
                continue  # a fallback: part of the chain of its first call
            chain = [notice]
            while True:
                following = next(
                    (n for n in notices if n["after"] == chain[-1]["seq"] and n["fallback"]),
                    None,
                )
                if following is None:
                    break
                chain.append(following)
            first, last = chain[0], chain[-1]
            asked = datetime.fromisoformat(first["requested_at"])
            target = datetime.fromisoformat(first["due_at"])
            answer = next((n for n in chain if n["acknowledged"]), None)
            answered = datetime.fromisoformat(answer["acknowledged"]["at"]) if answer else None
            status = "acknowledged" if answer else last["status"]
            roles.append(
                {
                    "id": f"callout:{first['seq']}",
                    "role": first["role"],
                    "role_name": first.get("role_name"),
                    "role_name_zh": first.get("role_name_zh"),
                    "level": first.get("level"),
                    "requested_at": first["requested_at"],
                    "requested_s": first["requested_s"],
                    "target_at": first["due_at"],
                    "acknowledged_at": _iso(answered),
                    "acknowledged_s": _seconds(answered, asked) if answered else None,
                    "deviation_s": _seconds(answered, target) if answered else None,
                    "open_past_due_s": _seconds(ended, target)
                    if answered is None and ended > target
                    else None,
                    "status": status,
                    "contacts_called": len(chain),
                    "acknowledged_by": answer["acknowledged"]["by"] if answer else None,
                    "answered_contact": answer["contact"].get("name") if answer else None,
                    "first_delivery_s": first["delivery_s"],
                    "notices": [n["seq"] for n in chain],
                }
            )
        return {"notices": notices, "roles": roles}

    def muster(self) -> dict[str, Any]:
        return muster(self.events, self.incident_id, self.template, self.start)

    def injects(self) -> list[dict[str, Any]]:
        return [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "inject_id": e.data.get("inject_id"),
                "kind": e.data.get("kind"),
                "title": e.data.get("title"),
                "at_s": e.data.get("at_s"),
                "planned_s": e.data.get("planned_s"),
                "contingency_for": e.data.get("contingency_for"),
                "early": bool(e.data.get("early")),
                "caused": list(e.data.get("seqs", [])),
                "by": e.actor,
            }
            for e in self.events
            if e.type == "drill.inject"
        ]

    def notes(self) -> list[dict[str, Any]]:
        """Evaluator notes (``drill.note``) and the notes taken in the incident (``plan.note``)."""
        out = []
        for e in self.events:
            if e.type == "drill.note":
                kind, text, step = "evaluator", e.data.get("text"), None
            elif e.type == "plan.note" and e.incident_id == self.incident_id:
                kind = "incident"
                text = (e.data.get("data") or {}).get("text")
                step = e.data.get("step_id")
            else:
                continue
            out.append(
                {
                    "seq": e.seq,
                    "at": e.at.isoformat(),
                    "t_s": self.t(e.at),
                    "drill_s": e.data.get("drill_s", self.drill_s(e.at)),
                    "kind": kind,
                    "by": e.actor,
                    "step_id": step,
                    "text": text,
                    "photo": e.data.get("photo"),
                    **_acted(e, self.earliest(e)),
                }
            )
        return out

    def interruptions(self, ended: datetime) -> list[dict[str, Any]]:
        """Each time the drill was held or suspended (by a real incident or alarm), and for how
        long."""
        out: list[dict[str, Any]] = []
        for e in self.events:
            if e.type in ("drill.held", "drill.suspended"):
                out.append(
                    {
                        "kind": e.type.removeprefix("drill."),
                        "seq": e.seq,
                        "from_at": e.at.isoformat(),
                        "from_drill_s": e.data.get("drill_s"),
                        "reason": e.data.get("reason"),
                        "by_incident": e.data.get("by_incident"),
                        "by_sensor": e.data.get("by_sensor"),
                        "to_at": None,
                        "resumed_by": None,
                        "duration_s": None,
                    }
                )
            elif e.type == "drill.resumed" and out and out[-1]["to_at"] is None:
                out[-1].update(to_at=e.at.isoformat(), resumed_by=e.actor)
        for entry in out:
            until = datetime.fromisoformat(entry["to_at"]) if entry["to_at"] else ended
            entry["duration_s"] = _seconds(until, datetime.fromisoformat(entry["from_at"]))
        return out

    def moments(self, found: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The situation maps' moments: activation, first full muster, each wind change; each
        with the hazard in force then (its zones are drawn by :mod:`command.review_maps`)."""
        request = self.activated.data["request"]
        hazards: list[tuple[LoggedEvent, dict[str, Any]]] = [(self.activated, request["hazard"])]
        hazards += [
            (e, dict(e.data["hazard"]))
            for e in self.events
            if e.type == "incident.wind_changed" and e.incident_id == self.incident_id
        ]

        def moment(
            kind: str, key: str, title: str, at: datetime, seq: int, hazard: Mapping[str, Any]
        ) -> dict[str, Any]:
            return {
                "id": key,
                "moment": kind,
                "title": title,
                "at": at.isoformat(),
                "seq": seq,
                "t_s": self.t(at),
                "drill_s": self.drill_s(at),
                "location": request["location"],
                "hazard": dict(hazard),
            }

        out = [
            moment(
                "activation",
                "activation",
                f"Activation at {request['level']}",
                self.start,
                self.activated.seq,
                request["hazard"],
            )
        ]
        for n, (event, hazard) in enumerate(hazards[1:], start=1):
            wind = f"from {hazard.get('wind_from_deg')}° at {hazard.get('wind_speed_m_s')} m/s"
            out.append(
                moment(
                    "wind_change",
                    f"wind-{n}",
                    f"Wind change {n}: {wind}",
                    event.at,
                    event.seq,
                    hazard,
                )
            )
        complete = found.get("complete_at")
        if complete is not None:
            at = datetime.fromisoformat(complete)
            in_force = [h for e, h in hazards if e.at <= at][-1]
            out.append(
                moment(
                    "muster",
                    "muster",
                    "First full muster",
                    at,
                    int(found["complete_seq"]),
                    in_force,
                )
            )
        out.sort(key=lambda m: (m["seq"], m["id"]))
        return out


def muster(
    events: Sequence[LoggedEvent],
    incident_id: str,
    template: PlanTemplate | None,
    start: datetime,
) -> dict[str, Any]:
    """Time to full muster, as far as the log says it.

    When positions show everyone who had to move at a muster point, ``incident.mustered``
    says when. Beside it the log records (1) the headcounts
    reported by completing a plan step done with a value named ``headcount`` (the muster
    wardens' count), (2) who entered and left the threat zones (``incident.people_moved``
    counts), and (3) at the stand-down, how many had to move and who of them was still missing
    (``incident.closed``). Full muster is the first headcount report that counts at least
    everyone who had to move; the zones' clearing is given beside it."""
    closed = next(
        (e for e in events if e.type == "incident.closed" and e.incident_id == incident_id), None
    )
    to_move = closed.data.get("to_move") if closed else None
    missing = list(closed.data.get("missing", [])) if closed else None
    headcount_steps = (
        {
            s.id
            for _, s in template.steps()
            if s.done_when.kind == "value" and s.done_when.name == "headcount"
        }
        if template
        else set()
    )
    reports = []
    for e in events:
        if e.type != "plan.step.done" or e.incident_id != incident_id:
            continue
        step = e.data.get("step_id")
        value = (e.data.get("data") or {}).get("value")
        if step in headcount_steps and isinstance(value, int | float):
            at = datetime.fromisoformat(str(e.data["at"]))
            reports.append(
                {
                    "seq": e.seq,
                    "step_id": step,
                    "at": at.isoformat(),
                    "t_s": _seconds(at, start),
                    "value": value,
                    "by": e.data.get("actor"),
                }
            )
    complete = (
        next((r for r in reports if to_move is not None and r["value"] >= to_move), None)
        if to_move
        else None
    )
    # The positions say it first: ``incident.mustered`` is logged the moment everyone who had
    # to move stands at a muster point (their wristbands, not a warden's count).
    arrived = next(
        (e for e in events if e.type == "incident.mustered" and e.incident_id == incident_id),
        None,
    )
    if arrived is not None and (
        complete is None or arrived.at <= datetime.fromisoformat(str(complete["at"]))
    ):
        complete = {
            "seq": arrived.seq,
            "at": arrived.at.isoformat(),
            "t_s": _seconds(arrived.at, start),
            "by": "positions",
            "value": arrived.data.get("to_account"),
        }
    activated = next(e for e in events if e.type == "incident.activated")
    inside = _people_inside(activated.data.get("counts", {}))
    clear_at: datetime | None = start if inside == 0 else None
    for e in events:
        if e.type == "incident.people_moved" and e.incident_id == incident_id:
            now_inside = _people_inside(e.data.get("counts"))
            if now_inside is None:
                continue
            if now_inside == 0 and clear_at is None:
                clear_at = e.at
            elif now_inside > 0:
                clear_at = None
    if to_move == 0 and arrived is None:
        verdict = "nobody had to move"
    elif complete is not None:
        verdict = "complete"
    elif missing == []:
        verdict = "accounted for by the stand-down; no headcount reported it earlier"
    elif missing:
        verdict = f"{len(missing)} still missing at the stand-down"
    else:
        verdict = "not known: the incident did not close with a headcount"
    return {
        "to_move": to_move,
        "missing_at_close": missing,
        "headcount_at_close": closed.data.get("headcount") if closed else None,
        "reports": reports,
        "complete_at": complete["at"] if complete else None,
        "complete_seq": complete["seq"] if complete else None,
        "complete_s": complete["t_s"] if complete else None,
        "complete_by": complete["by"] if complete else None,
        "zones_clear_at": _iso(clear_at),
        "zones_clear_s": _seconds(clear_at, start) if clear_at else None,
        "verdict": verdict,
    }


def _people_inside(counts: Any) -> int | None:
    """People inside the outermost threat zone (zones nest: level 1 holds them all)."""
    if not isinstance(counts, Mapping):
        return None
    levels = [v for v in counts.values() if isinstance(v, Mapping)]
    if not levels:
        return 0
    return max(int(v.get("people", 0)) for v in levels)


def ranked_deviations(
    steps: Sequence[Mapping[str, Any]],
    actions: Sequence[Mapping[str, Any]],
    roles: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The items of the improvement plan, largest deviation first: steps and call-outs done
    late or not at all, steps skipped or failed, drill actions late or missed. An unfinished
    item ranks by how far past due it was when the incident ended."""
    found: list[dict[str, Any]] = []

    def add(item: Mapping[str, Any], kind: str, lateness: float | None, **extra: Any) -> None:
        found.append(
            {
                "id": item["id"],
                "kind": kind,
                "title": item.get("title") or item.get("role"),
                "status": item["status"],
                "deviation_s": item.get("deviation_s"),
                "lateness_s": lateness,
                "by": item.get("by", item.get("acknowledged_by")),
                **extra,
            }
        )

    for step in steps:
        late = step["deviation_s"] if step["deviation_s"] is not None else step["open_past_due_s"]
        odd = step["status"] in (Status.SKIPPED.value, Status.FAILED.value)
        if (late is not None and late > 0) or odd:
            add(step, "step", late, target_at=step["target_at"], actual_at=step["actual_at"])
    for action in actions:
        late = (
            action["deviation_s"]
            if action["deviation_s"] is not None
            else action["open_past_due_s"]
        )
        if action["status"] == "missed" or (late is not None and late > 0):
            add(action, "action", late, target_s=action["target_s"], actual_s=action["actual_s"])
    for role in roles:
        late = role["deviation_s"] if role["deviation_s"] is not None else role["open_past_due_s"]
        if role["status"] != "acknowledged" or (late is not None and late > 0):
            add(
                role,
                "callout",
                late,
                target_at=role["target_at"],
                actual_at=role["acknowledged_at"],
            )
    found.sort(key=lambda d: (-(d["lateness_s"] if d["lateness_s"] is not None else 0), d["id"]))
    for rank, item in enumerate(found, start=1):
        item["rank"] = rank
    return found


def describe(event: LoggedEvent, titles: Mapping[str, str]) -> str:
    """One line saying what ``event`` was, for the timeline."""
    d, kind = event.data, event.type
    if kind.startswith("plan.") and "data" in d:
        inner = d.get("data") or {}
        step = str(d.get("step_id"))
        name = f"{step} ({titles[step]})" if step in titles else step
        verbs = {
            "plan.step.ready": "ready",
            "plan.step.acknowledged": "acknowledged",
            "plan.step.started": "started",
            "plan.step.done": "done",
            "plan.step.skipped": "skipped",
            "plan.step.failed": "failed",
        }
        if kind in verbs:
            text = f"Step {name} {verbs[kind]}"
            if "value" in inner:
                text += f": {inner['value']}"
            elif inner.get("reference"):
                text += f": {inner['reference']}"
            elif inner.get("reason"):
                text += f": {inner['reason']}"
            return text
        if kind == "plan.step.overdue":  # stamped with its due time
            return f"Step {name} overdue"
        if kind == "plan.run.activated":
            return f"Plan run started at {inner.get('level')}"
        if kind == "plan.calltree.activated":
            return f"Call tree of {inner.get('level')}: {len(inner.get('entries', []))} roles"
        if kind in ("plan.run.escalated", "plan.run.deescalated"):
            why = f" ({inner['reason']})" if inner.get("reason") else ""
            verb = (
                "Escalated" if kind.endswith("escalated") and "de" not in kind else "De-escalated"
            )
            return f"{verb} {inner.get('from')} to {inner.get('to')}{why}"
        if kind == "plan.run.stood_down":
            return f"Stood down: {inner.get('reason')}"
        if kind == "plan.note":
            where = f" on {step}" if d.get("step_id") else ""
            return f"Note{where}: {inner.get('text')}"
    contact = d.get("contact")
    who = contact.get("name") if isinstance(contact, Mapping) else None
    simple = {
        "incident.activated": lambda: (
            f"Plan {d['request']['plan_id']} (v{d.get('plan_version')}) activated at "
            f"{d['request']['level']}"
        ),
        "notification.requested": lambda: (
            f"Call-out to {d.get('role')}: {who}{' (fallback)' if d.get('fallback') else ''}"
        ),
        "notification.delivered": lambda: f"Call-out {d.get('notification')} delivered to {who}",
        "notification.failed": lambda: (
            f"Call-out {d.get('notification')} to {who} not delivered: {d.get('detail')}"
        ),
        "notification.acknowledged": lambda: (
            f"Call-out {d.get('notification')} acknowledged by {who} ({d.get('channel')})"
        ),
        "notification.unanswered": lambda: f"Nobody answered for {d.get('role')}",
        "incident.people_moved": lambda: (
            f"{len(d.get('entered', {}))} entered, {len(d.get('left', []))} left the zones"
            + (f"; {len(d['must_move'])} must move" if d.get("must_move") else "")
        ),
        "incident.wind_changed": lambda: (
            f"Wind now from {d['hazard'].get('wind_from_deg')}° at "
            f"{d['hazard'].get('wind_speed_m_s')} m/s; {len(d.get('rerouted', []))} rerouted"
        ),
        "incident.closed": lambda: (
            f"Closed{' (forced)' if d.get('forced') else ''}: {len(d.get('missing', []))} "
            f"missing, {len(d.get('open_steps', []))} steps open"
        ),
        "incident.casualty": lambda: f"{d.get('count')} casualties: {d.get('text') or ''}",
        "incident.resource_out": lambda: (
            f"Resource {d.get('resource_id')} out of service: {d.get('reason')}"
        ),
        "incident.road_closed": lambda: f"Road {d.get('edge_id')} closed: {d.get('reason')}",
        "duty.assigned": lambda: f"{d.get('username')} takes the duty {d.get('role')}",
        "duty.released": lambda: f"{d.get('username')} released from {d.get('role')}",
        "sensor.state": lambda: (
            f"Sensor {d.get('sensor_id')}: {d.get('from')} to {d.get('to')} ({d.get('value')})"
        ),
        "drill.started": lambda: f"Drill started: {d.get('title')} ({d.get('mode')})",
        "drill.inject": lambda: (
            f"Inject {d.get('inject_id')}: {d.get('title')}"
            + (f" (contingency for {d['contingency_for']})" if d.get("contingency_for") else "")
            + (" (fired early)" if d.get("early") else "")
        ),
        "drill.action_met": lambda: (
            f"Expected action met: {d.get('title')} ({_signed(d.get('deviation_s'))})"
        ),
        "drill.action_missed": lambda: f"Expected action missed: {d.get('title')}",
        "drill.note": lambda: f"Evaluator: {d.get('text')}",
        "drill.held": lambda: f"Drill held{_because(d)}",
        "drill.resumed": lambda: f"Drill resumed{_because(d)}",
        "drill.suspended": lambda: f"Drill suspended{_because(d)}",
        "drill.ended": lambda: (
            f"Drill {'aborted' if d.get('aborted') else 'ended'}: {d.get('reason')}"
        ),
        "review.signed_off": lambda: f"Review signed off by {d.get('by')}",
    }
    maker = simple.get(kind)
    if maker is None:
        return kind
    try:
        return maker()
    except (KeyError, TypeError, AttributeError):
        return kind


def _because(data: Mapping[str, Any]) -> str:
    return f": {data['reason']}" if data.get("reason") else ""


def _signed(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    return f"{seconds:+.0f} s"
