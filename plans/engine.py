"""Running a plan: steps move on time, every move is an event, and events alone rebuild a run.

A run is event-sourced. Each command (acknowledge, start, complete, escalate...) is first checked
against the run's state and the actor's roles. It then becomes one or more immutable
:class:`PlanEvent`, and the state changes only by applying events (:meth:`PlanRun._apply`).
Replaying a run's events into a fresh run gives the same state: restart recovery and the
after-action review both work this way.

The step life cycle:

    waiting -> ready -> acknowledged -> in_progress -> done
                  \\-------------\\-------------\\-> skipped / failed

- **waiting → ready.** A step waits until its dependencies are done (or skipped).
- **Due times.** "Within N s of activation" counts from the plan's activation, the incident,
  whatever the level: a legal one-hour report stays due an hour after the incident even if L3
  comes later. "Within N s of its level" counts from when the step's level became active (the
  escalation, for a level added later). "Within N s of step X" counts from X's completion.
- **Overdue.** When a due time passes on a step that has not finished, a ``step.overdue`` event
  is stamped with the due time itself. Several due times passed in one jump of the clock fire in
  order.
- **Escalation and de-escalation.** Escalating adds the next level's steps and call tree;
  de-escalating withdraws the unfinished steps of the level left, and escalating again brings
  them back as they were. Stand-down ends the run.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gis.errors import FieldError, IllegalTransition, InvalidInput, NotPermitted
from plans.clock import Clock
from plans.model import Level, PlanTemplate, Step, template_from_data


class Status(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


FINISHED = frozenset({Status.DONE, Status.SKIPPED, Status.FAILED})
#: A dependency in one of these states lets the steps after it go ahead.
CLEARED = frozenset({Status.DONE, Status.SKIPPED})


@dataclass(frozen=True)
class Actor:
    """Who acts, and the plan roles they hold."""

    id: str
    roles: frozenset[str]


@dataclass(frozen=True)
class PlanEvent:
    """One immutable fact about a run. ``seq`` counts from 1 within the run."""

    run_id: str
    seq: int
    type: str
    at: datetime
    actor: str | None
    step_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "type": self.type,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "step_id": self.step_id,
            "data": dict(self.data),
        }


@dataclass
class StepState:
    id: str
    level: Level
    role: str
    status: Status = Status.WAITING
    due_at: datetime | None = None
    overdue: bool = False
    withdrawn: bool = False
    times: dict[str, datetime] = field(default_factory=dict)  # status -> when
    actors: dict[str, str] = field(default_factory=dict)  # status -> who
    value: Any = None
    reason: str | None = None
    notes: list[tuple[datetime, str, str]] = field(default_factory=list)


@dataclass
class RunState:
    run_id: str
    template: PlanTemplate
    template_version: int
    level: Level
    activated_at: datetime
    incident: dict[str, Any]
    steps: dict[str, StepState] = field(default_factory=dict)
    level_since: dict[Level, datetime] = field(default_factory=dict)
    highest_level: Level = Level.L1
    stood_down_at: datetime | None = None
    notes: list[tuple[datetime, str, str]] = field(default_factory=list)


class PlanRun:
    """One activation of a pinned template version, on a clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: list[PlanEvent] = []
        self._state: RunState | None = None
        self._deadlines: list[tuple[datetime, str]] = []  # heap of (due, step)

    # -- creation and replay --------------------------------------------------------------

    @classmethod
    def activate(
        cls,
        clock: Clock,
        *,
        run_id: str,
        template: PlanTemplate,
        template_version: int,
        level: Level,
        actor: Actor,
        incident: Mapping[str, Any] | None = None,
    ) -> PlanRun:
        """Start a run at ``level``: every step up to it, the call trees up to it."""
        if template.command_role not in actor.roles:
            raise NotPermitted(
                f"activating needs the role '{template.command_role}'",
                errors=[FieldError("actor", f"needs role '{template.command_role}'")],
            )
        run = cls(clock)
        now = clock.now()
        run._emit(
            "run.activated",
            now,
            actor.id,
            data={
                "template": template.model_dump(mode="json"),
                "template_version": template_version,
                "level": level.value,
                "incident": dict(incident or {}),
            },
            run_id=run_id,
        )
        for lv in level.up_to():
            run._emit_call_tree(lv, now, actor.id)
        run._emit_readiness(now)
        return run

    @classmethod
    def replay(cls, events: Sequence[PlanEvent], clock: Clock) -> PlanRun:
        """The run as its events left it."""
        run = cls(clock)
        for event in events:
            run._apply(event)
            run.events.append(event)
        return run

    # -- reading ----------------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        if self._state is None:  # pragma: no cover - a run always starts with its activation
            raise RuntimeError("run not activated")
        return self._state

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def active(self) -> bool:
        return self.state.stood_down_at is None

    def step(self, step_id: str) -> StepState:
        try:
            return self.state.steps[step_id]
        except KeyError:
            raise InvalidInput(
                f"no step '{step_id}' in this run",
                errors=[FieldError("step", f"unknown step '{step_id}'")],
            ) from None

    def next_due(self) -> datetime | None:
        """The earliest due time still to watch (stale heap entries are dropped here)."""
        while self._deadlines:
            due, step_id = self._deadlines[0]
            step = self.state.steps[step_id]
            if step.due_at == due and self._watching(step):
                return due
            heapq.heappop(self._deadlines)
        return None

    # -- commands -----------------------------------------------------------------------------

    def advance(self) -> list[PlanEvent]:
        """Mark every step whose due time has passed as overdue, in due order."""
        start = len(self.events)
        now = self.clock.now()
        while (due := self.next_due()) is not None and due <= now:
            _, step_id = heapq.heappop(self._deadlines)
            self._emit("step.overdue", due, None, step_id)  # stamped with its due time
        return self.events[start:]

    def acknowledge(self, step_id: str, actor: Actor) -> list[PlanEvent]:
        return self._move(step_id, actor, "step.acknowledged", {Status.READY})

    def start(self, step_id: str, actor: Actor) -> list[PlanEvent]:
        return self._move(step_id, actor, "step.started", {Status.ACKNOWLEDGED})

    def complete(
        self, step_id: str, actor: Actor, *, value: Any = None, reference: str | None = None
    ) -> list[PlanEvent]:
        """Done. A step done by a value (a headcount) needs the value; by an action, its
        reference."""
        step = self._template_step(step_id)
        self._check_actor(self.step(step_id), actor)  # before asking for a value
        done = step.done_when
        if done.kind == "value" and not (
            isinstance(value, int | float) and not isinstance(value, bool)
        ):
            raise InvalidInput(
                f"step '{step_id}' is done with a value: {done.name or 'a number'}",
                errors=[FieldError("value", f"a number ({done.name or 'value'})")],
            )
        if done.kind == "action" and not reference:
            raise InvalidInput(
                f"step '{step_id}' is done by an action: name it",
                errors=[FieldError("reference", f"the {done.name or 'action'} reference")],
            )
        data: dict[str, Any] = {}
        if value is not None:
            data["value"] = value
        if reference:
            data["reference"] = reference
        return self._move(step_id, actor, "step.done", {Status.IN_PROGRESS}, data)

    def skip(self, step_id: str, actor: Actor, *, reason: str) -> list[PlanEvent]:
        """Skip a step: its own role may skip an optional one; the commander any."""
        step = self._template_step(step_id)
        commander = self.state.template.command_role in actor.roles
        if not step.optional and not commander:
            raise NotPermitted(
                f"step '{step_id}' is not optional: only the commander may skip it",
                errors=[FieldError("actor", f"needs role '{self.state.template.command_role}'")],
            )
        movable = {Status.WAITING, Status.READY, Status.ACKNOWLEDGED, Status.IN_PROGRESS}
        return self._move(
            step_id, actor, "step.skipped", movable, {"reason": _reason(reason)}, commander
        )

    def fail(self, step_id: str, actor: Actor, *, reason: str) -> list[PlanEvent]:
        return self._move(
            step_id,
            actor,
            "step.failed",
            {Status.ACKNOWLEDGED, Status.IN_PROGRESS},
            {"reason": _reason(reason)},
        )

    def note(self, actor: Actor, text: str, *, step_id: str | None = None) -> list[PlanEvent]:
        """A note on the run or on one step, from anyone taking part."""
        self._check_active()
        if step_id is not None:
            self.step(step_id)
        start = len(self.events)
        self.advance()
        self._emit("note", self.clock.now(), actor.id, step_id, {"text": _reason(text, "text")})
        return self.events[start:]

    def escalate(self, actor: Actor, *, reason: str | None = None) -> list[PlanEvent]:
        """L(n) -> L(n+1): the next level's steps and call tree join the run. A ``reason``
        given is logged with the order."""
        self._check_commander(actor)
        why = _reason(reason) if reason is not None else None
        level = self.state.level
        if level == Level.L4:
            raise IllegalTransition(
                "the run is at L4, the highest level",
                errors=[FieldError("level", "already L4")],
            )
        new = Level(f"L{level.rank + 1}")
        start = len(self.events)
        self.advance()
        now = self.clock.now()
        restored = [s.id for s in self.state.steps.values() if s.level == new and s.withdrawn]
        self._emit(
            "run.escalated",
            now,
            actor.id,
            data={
                "from": level.value,
                "to": new.value,
                "restored": restored,
                **({"reason": why} if why is not None else {}),
            },
        )
        self._emit_call_tree(new, now, actor.id)
        self._emit_readiness(now)
        return self.events[start:]

    def deescalate(self, actor: Actor, *, reason: str | None = None) -> list[PlanEvent]:
        """L(n) -> L(n-1): the unfinished steps of L(n) are withdrawn (kept, not lost). A
        ``reason`` given is logged with the order."""
        self._check_commander(actor)
        why = _reason(reason) if reason is not None else None
        level = self.state.level
        if level == Level.L1:
            raise IllegalTransition(
                "the run is at L1, the lowest level", errors=[FieldError("level", "already L1")]
            )
        new = Level(f"L{level.rank - 1}")
        start = len(self.events)
        self.advance()
        withdrawn = [
            s.id
            for s in self.state.steps.values()
            if s.level == level and s.status not in FINISHED and not s.withdrawn
        ]
        self._emit(
            "run.deescalated",
            self.clock.now(),
            actor.id,
            data={
                "from": level.value,
                "to": new.value,
                "withdrawn": withdrawn,
                **({"reason": why} if why is not None else {}),
            },
        )
        return self.events[start:]

    def stand_down(self, actor: Actor, *, reason: str = "incident closed") -> list[PlanEvent]:
        self._check_commander(actor)
        start = len(self.events)
        self.advance()
        self._emit("run.stood_down", self.clock.now(), actor.id, data={"reason": reason})
        return self.events[start:]

    # -- internals ----------------------------------------------------------------------------

    def _template_step(self, step_id: str) -> Step:
        self.step(step_id)
        return next(s for _, s in self.state.template.steps() if s.id == step_id)

    def _check_active(self) -> None:
        if not self.active:
            raise IllegalTransition(
                "the run has stood down", errors=[FieldError("run", "stood down")]
            )

    def _check_commander(self, actor: Actor) -> None:
        self._check_active()
        role = self.state.template.command_role
        if role not in actor.roles:
            raise NotPermitted(
                f"only the role '{role}' commands the run",
                errors=[FieldError("actor", f"needs role '{role}'")],
            )

    def _move(
        self,
        step_id: str,
        actor: Actor,
        event: str,
        allowed_from: set[Status],
        data: Mapping[str, Any] | None = None,
        role_checked: bool = False,
    ) -> list[PlanEvent]:
        self._check_active()
        step = self.step(step_id)
        if not role_checked:
            self._check_actor(step, actor)
        if step.withdrawn:
            raise IllegalTransition(
                f"step '{step_id}' was withdrawn when the run went below {step.level}",
                errors=[FieldError("step", "withdrawn")],
            )
        if step.status not in allowed_from:
            why = f"step '{step_id}' is {step.status.value}"
            # Who moved it there, and when (the server's time): a queued action from a phone
            # that was offline learns who came first (docs/offline.md).
            by, at = step.actors.get(step.status.value), step.times.get(step.status.value)
            extra: dict[str, Any] = {"step": step_id, "step_status": step.status.value}
            if by is not None and at is not None:
                done = _DONE_AS.get(step.status, step.status.value)
                at = at.astimezone(UTC)
                why = f"step '{step_id}' was already {done} by {by} at {at:%H:%M:%S} UTC"
                extra |= {"by": by, "at": at.isoformat()}
            if step.status == Status.WAITING:
                waiting = self._unfinished_dependencies(step_id)
                why += f": waiting for {', '.join(waiting)}"
            expected = ", ".join(sorted(s.value for s in allowed_from))
            raise IllegalTransition(
                f"{why}; it must be {expected} for that",
                errors=[FieldError("step", f"must be {expected}")],
                extra=extra,
            )
        start = len(self.events)
        self.advance()
        now = self.clock.now()
        self._emit(event, now, actor.id, step_id, data or {})
        self._emit_readiness(now)
        return self.events[start:]

    @staticmethod
    def _check_actor(step: StepState, actor: Actor) -> None:
        if step.role not in actor.roles:
            raise NotPermitted(
                f"step '{step.id}' belongs to the role '{step.role}'",
                errors=[FieldError("actor", f"needs role '{step.role}'")],
            )

    def _unfinished_dependencies(self, step_id: str) -> list[str]:
        step = self._template_step(step_id)
        return [d for d in step.depends_on if self.state.steps[d].status not in CLEARED]

    def _emit_call_tree(self, level: Level, at: datetime, actor: str) -> None:
        pack = self.state.template.levels.get(level)
        if pack is None or not pack.call_tree:
            return
        entries = [e.model_dump(mode="json") for e in sorted(pack.call_tree, key=lambda e: e.order)]
        self._emit("calltree.activated", at, actor, data={"level": level.value, "entries": entries})

    def _emit_readiness(self, at: datetime) -> None:
        """Steps whose dependencies are now all cleared become ready; steps counting from a
        step just finished get their due time."""
        state = self.state
        for _, step in state.template.steps():
            current = state.steps.get(step.id)
            if current is None or current.withdrawn:
                continue
            if current.status == Status.WAITING and all(
                state.steps[d].status in CLEARED for d in step.depends_on
            ):
                self._emit("step.ready", at, None, step.id)

    def _emit(
        self,
        kind: str,
        at: datetime,
        actor: str | None,
        step_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
    ) -> None:
        event = PlanEvent(
            run_id or self.state.run_id,
            len(self.events) + 1,
            kind,
            at,
            actor,
            step_id,
            dict(data) if data else {},
        )
        self._apply(event)
        self.events.append(event)

    def _watching(self, step: StepState) -> bool:
        return step.status not in FINISHED and not step.withdrawn and not step.overdue

    def _set_due(self, step: StepState, due: datetime) -> None:
        step.due_at = due
        heapq.heappush(self._deadlines, (due, step.id))

    def _apply(self, event: PlanEvent) -> None:
        """The only place the state changes: the same for live events and replayed ones."""
        kind, at, data = event.type, event.at, event.data
        if kind == "run.activated":
            template = template_from_data(data["template"])
            level = Level(data["level"])
            self._state = RunState(
                run_id=event.run_id,
                template=template,
                template_version=int(data["template_version"]),
                level=level,
                activated_at=at,
                incident=dict(data["incident"]),
                highest_level=level,
            )
            for lv in level.up_to():
                self._add_level(lv, at)
            return
        state = self.state
        step = state.steps[event.step_id] if event.step_id else None
        if kind == "step.ready" and step is not None:
            self._record(step, Status.READY, event)
        elif kind in _STATUS_OF and step is not None:
            self._record(step, _STATUS_OF[kind], event)
            if kind == "step.done":
                step.value = data.get("value", data.get("reference"))
            if kind in ("step.skipped", "step.failed"):
                step.reason = data.get("reason")
            if step.status in CLEARED:
                self._start_followers(step.id, at)
        elif kind == "step.overdue" and step is not None:
            step.overdue = True
        elif kind == "note":
            entry = (at, event.actor or "", str(data["text"]))
            (step.notes if step is not None else state.notes).append(entry)
        elif kind == "run.escalated":
            new = Level(data["to"])
            state.level = new
            for step_id in data["restored"]:
                restored = state.steps[step_id]
                restored.withdrawn = False
                if restored.due_at is not None:
                    heapq.heappush(self._deadlines, (restored.due_at, step_id))
            if new.rank > state.highest_level.rank:
                state.highest_level = new
                self._add_level(new, at)
        elif kind == "run.deescalated":
            state.level = Level(data["to"])
            for step_id in data["withdrawn"]:
                state.steps[step_id].withdrawn = True
        elif kind == "run.stood_down":
            state.stood_down_at = at
        # calltree.activated changes no state: the command server notifies from it.

    def _add_level(self, level: Level, at: datetime) -> None:
        state = self.state
        state.level_since[level] = at
        pack = state.template.levels.get(level)
        for step in pack.steps if pack else ():
            current = StepState(step.id, level, step.role)
            state.steps[step.id] = current
            if step.target.after == "activation":
                self._set_due(current, state.activated_at + timedelta(seconds=step.target.within_s))
            elif step.target.after == "level":
                self._set_due(current, at + timedelta(seconds=step.target.within_s))

    def _start_followers(self, step_id: str, at: datetime) -> None:
        for _, step in self.state.template.steps():
            follower = self.state.steps.get(step.id)
            if follower is not None and step.target.after == step_id and follower.due_at is None:
                self._set_due(follower, at + timedelta(seconds=step.target.within_s))

    @staticmethod
    def _record(step: StepState, status: Status, event: PlanEvent) -> None:
        step.status = status
        step.times[status.value] = event.at
        if event.actor:
            step.actors[status.value] = event.actor


#: A status as the past of what moved a step there ("was already completed by ...").
_DONE_AS = {
    Status.ACKNOWLEDGED: "acknowledged",
    Status.IN_PROGRESS: "started",
    Status.DONE: "completed",
    Status.SKIPPED: "skipped",
    Status.FAILED: "failed",
}

_STATUS_OF = {
    "step.acknowledged": Status.ACKNOWLEDGED,
    "step.started": Status.IN_PROGRESS,
    "step.done": Status.DONE,
    "step.skipped": Status.SKIPPED,
    "step.failed": Status.FAILED,
}


def _reason(text: str, field_name: str = "reason") -> str:
    if not isinstance(text, str) or not text.strip() or len(text) > 2000:
        raise InvalidInput(
            f"a {field_name} is required", errors=[FieldError(field_name, "1 to 2000 characters")]
        )
    return text.strip()


class Scheduler:
    """Many runs on one clock: each tick fires every passed due time of every run.

    A heap holds each run's next due time, so a tick that fires nothing costs one look at the
    heap's top, however many runs there are.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.runs: dict[str, PlanRun] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._queued: dict[str, datetime] = {}  # the entry that counts for each run

    def add(self, run: PlanRun) -> None:
        self.runs[run.run_id] = run
        self.watch(run)

    def remove(self, run_id: str) -> None:
        """Stop watching a run (stood down, or a drill's run while the drill is held): none of
        its due times fires until it is added again."""
        self.runs.pop(run_id, None)
        self._queued.pop(run_id, None)

    def watch(self, run: PlanRun) -> None:
        """Call after a command on ``run``: its next due time may have changed."""
        if run.run_id not in self.runs:
            return  # not watched (held): added again, it is watched again
        due = run.next_due() if run.active else None
        if due is None:
            self._queued.pop(run.run_id, None)
        elif self._queued.get(run.run_id) != due:
            self._queued[run.run_id] = due
            heapq.heappush(self._heap, (due, run.run_id))

    def tick(self) -> list[PlanEvent]:
        """Overdue events for every due time up to now, in time order across runs."""
        now = self.clock.now()
        fired: list[PlanEvent] = []
        while self._heap and self._heap[0][0] <= now:
            due, run_id = heapq.heappop(self._heap)
            if self._queued.get(run_id) != due:
                continue  # superseded by a later watch
            del self._queued[run_id]
            run = self.runs[run_id]
            fired.extend(run.advance())
            self.watch(run)
        fired.sort(key=lambda e: (e.at, e.run_id, e.seq))
        return fired


def events_of(runs: Iterable[PlanRun]) -> list[PlanEvent]:
    """Every event of the runs, in time order (then run and sequence)."""
    return sorted((e for run in runs for e in run.events), key=lambda e: (e.at, e.run_id, e.seq))
