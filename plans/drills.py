"""Drill scenarios, their windows and drill time: the parts of a double-blind drill that need no
server.

A **scenario** is what a drill controller writes (HSEEP's master scenario events list): the plan
and response level under test, the incident's place and hazard, the **injects** that play the
incident out (a rising detector, a wind shift, a group stuck in a building, a message from the
field...) at times relative to the start, the **player actions expected** with their target
times, and **contingency injects** that fire only when an expected action is missed by its
deadline. Players never see it: only drill controllers read scenarios.

A **window** is when a blind drill may start ("Mon 08:00 to Fri 18:00, not 07:30-08:30 or
19:30-20:30", in the site's time zone). :func:`draw_start` draws the start inside it with the
operating system's secure random source, uniformly over the allowed time; the server seals it
and tells nobody, the controller included.

**Drill time** runs from the start and stops while the drill is held or suspended by a real
incident: injects and targets count in drill time, so a hold of ten minutes does not make every
later action ten minutes late.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from gis.errors import FieldError, InvalidInput
from plans.model import Level
from plans.validation import schema_problems

#: Longest a drill may run, in drill time (a day: longer exercises are several drills).
MAX_DRILL_S = 24 * 3600
#: The furthest ahead a window may end, and its longest span.
MAX_WINDOW_AHEAD = timedelta(days=366)
MAX_WINDOW_SPAN = timedelta(days=92)
#: The shortest time a window must leave open for the start, once exclusions are taken out.
MIN_OPEN = timedelta(minutes=1)

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Title = Annotated[str, Field(min_length=1, max_length=300)]
Seconds = Annotated[int, Field(ge=0, le=MAX_DRILL_S)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InjectKind(StrEnum):
    READING = "reading"  # detector readings, through the devices' reading path
    WIND = "wind"  # a wind station's reading: the plume follows
    POSITIONS = "positions"  # people's positions, through the devices' position path
    MESSAGE = "message"  # a message from the field, as a note on the incident
    CASUALTY = "casualty"  # casualties reported at a place
    RESOURCE_OUT = "resource_out"  # a resource out of service for the incident
    ROAD_CLOSED = "road_closed"  # a network edge blocked for the incident


class ReadingInject(_Strict):
    sensor_id: Annotated[str, Field(min_length=1, max_length=64)]
    value: float
    direction_deg: float | None = Field(default=None, ge=0, lt=360)


class PositionInject(_Strict):
    person_id: Annotated[str, Field(min_length=1, max_length=64)]
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


#: What each kind of inject must carry (and nothing else of the kind-specific fields).
NEEDS: dict[InjectKind, tuple[str, ...]] = {
    InjectKind.READING: ("readings",),
    InjectKind.WIND: ("readings",),
    InjectKind.POSITIONS: ("positions",),
    InjectKind.MESSAGE: ("text",),
    InjectKind.CASUALTY: ("text", "count", "location"),
    InjectKind.RESOURCE_OUT: ("resource_id",),
    InjectKind.ROAD_CLOSED: ("edge_id",),
}
_SPECIFIC = ("readings", "positions", "text", "count", "location", "resource_id", "edge_id")


class Inject(_Strict):
    id: Id
    title: Title
    kind: InjectKind
    #: Drill time it fires at; none: a contingency, fired when an expected action is missed.
    at_s: Seconds | None = None
    readings: list[ReadingInject] = Field(default_factory=list, max_length=500)
    positions: list[PositionInject] = Field(default_factory=list, max_length=5000)
    text: Text | None = None
    count: int | None = Field(default=None, ge=1, le=10_000)
    location: tuple[float, float] | None = None  # lon, lat
    resource_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    edge_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _carries_what_its_kind_needs(self) -> Inject:
        needs = NEEDS[self.kind]
        missing = [n for n in needs if not getattr(self, n)]
        if missing:
            raise ValueError(f"a {self.kind.value} inject needs {', '.join(missing)}")
        extra = [n for n in _SPECIFIC if n not in needs and getattr(self, n)]
        if extra:
            raise ValueError(f"a {self.kind.value} inject takes no {', '.join(extra)}")
        return self

    @property
    def contingency(self) -> bool:
        return self.at_s is None


class Match(_Strict):
    """The logged event that shows an expected action was taken: its type, and data fields that
    must hold these values (``{"type": "plan.step.done", "data": {"step_id": "muster"}}``)."""

    type: Annotated[str, Field(pattern=r"^[a-z_]+(\.[a-z_]+)+$", max_length=64)]
    data: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=10)


class Expected(_Strict):
    id: Id
    title: Title
    target_s: Seconds
    #: When it counts as missed (contingencies fire); none: at its target.
    deadline_s: Seconds | None = None
    when: Match
    on_miss: list[Id] = Field(default_factory=list, max_length=20)

    @property
    def due_s(self) -> int:
        return self.deadline_s if self.deadline_s is not None else self.target_s

    @model_validator(mode="after")
    def _deadline_after_target(self) -> Expected:
        if self.deadline_s is not None and self.deadline_s < self.target_s:
            raise ValueError("deadline_s comes before target_s")
        return self


class Scenario(_Strict):
    id: Id
    title: Title
    title_zh: Title | None = None
    description: Text | None = None
    plan_id: Id
    level: Level
    #: The incident's place: a GeoJSON Point or Polygon (WGS84), as an activation takes it.
    location: dict[str, Any]
    #: The hazard, as an activation takes it; ``{"model": "plan"}``: the plan's design release
    #: under the wind of the moment.
    hazard: dict[str, Any] = Field(default_factory=lambda: {"model": "plan"})
    injects: list[Inject] = Field(default_factory=list, max_length=500)
    expected: list[Expected] = Field(default_factory=list, max_length=200)

    def inject(self, inject_id: str) -> Inject:
        return next(i for i in self.injects if i.id == inject_id)

    def timeline(self) -> list[Inject]:
        """The timed injects in firing order."""
        timed = [i for i in self.injects if i.at_s is not None]
        return sorted(timed, key=lambda i: (i.at_s or 0, self.injects.index(i)))


def parse_scenario(data: Any) -> Scenario:
    """A scenario from its JSON (or YAML-loaded) document, or :class:`InvalidInput` naming every
    problem with its field's path."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("the scenario is not valid", errors=schema_problems(exc)) from exc
    problems = reference_problems(scenario)
    if problems:
        raise InvalidInput("the scenario is not valid", errors=problems)
    return scenario


def reference_problems(scenario: Scenario) -> list[FieldError]:
    """Ids given once; every ``on_miss`` names a contingency (an inject without ``at_s``); every
    contingency is named by some expected action (or it could never fire)."""
    problems: list[FieldError] = []
    for name, ids in (
        ("injects", [i.id for i in scenario.injects]),
        ("expected", [e.id for e in scenario.expected]),
    ):
        seen: set[str] = set()
        for i, item_id in enumerate(ids):
            if item_id in seen:
                problems.append(FieldError(f"{name}[{i}].id", f"'{item_id}' is given twice"))
            seen.add(item_id)
    injects = {i.id: i for i in scenario.injects}
    named: set[str] = set()
    for i, action in enumerate(scenario.expected):
        for j, inject_id in enumerate(action.on_miss):
            found = injects.get(inject_id)
            where = f"expected[{i}].on_miss[{j}]"
            if found is None:
                problems.append(FieldError(where, f"no inject '{inject_id}'"))
            elif not found.contingency:
                problems.append(
                    FieldError(where, f"'{inject_id}' has at_s; a contingency has none")
                )
            named.add(inject_id)
    for i, inject in enumerate(scenario.injects):
        if inject.contingency and inject.id not in named:
            problems.append(
                FieldError(
                    f"injects[{i}].at_s", "a time, or name it in an expected action's on_miss"
                )
            )
    return problems


_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Exclusion(_Strict):
    """A time of day, every day, when the drill must not start (local time of the site)."""

    start: Annotated[str, Field(alias="from", pattern=_CLOCK.pattern)]
    end: Annotated[str, Field(alias="to", pattern=_CLOCK.pattern)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def bounds(self) -> tuple[time, time]:
        return _clock(self.start), _clock(self.end)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class Window(_Strict):
    """When a blind drill may start: between ``start`` and ``end`` (ISO 8601 with an offset),
    outside the daily ``exclude`` ranges of the site's local time."""

    start: AwareDatetime
    end: AwareDatetime
    exclude: list[Exclusion] = Field(default_factory=list, max_length=20)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "exclude": [{"from": e.start, "to": e.end} for e in self.exclude],
        }


def parse_window(data: Any, *, now: datetime, timezone: str) -> Window:
    """A window that leaves time to start in, or :class:`InvalidInput` saying why not."""
    try:
        window = Window.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("the window is not valid", errors=schema_problems(exc)) from exc
    problems: list[FieldError] = []
    if window.end <= window.start:
        problems.append(FieldError("window.end", "after window.start"))
    elif window.end - window.start > MAX_WINDOW_SPAN:
        problems.append(
            FieldError("window.end", f"at most {MAX_WINDOW_SPAN.days} days after start")
        )
    if window.end <= now:
        problems.append(FieldError("window.end", "in the future"))
    elif window.end - now > MAX_WINDOW_AHEAD:
        problems.append(FieldError("window.end", f"within {MAX_WINDOW_AHEAD.days} days"))
    for i, exclusion in enumerate(window.exclude):
        begin, finish = exclusion.bounds()
        if begin == finish:
            problems.append(FieldError(f"window.exclude[{i}]", "a range of some length"))
    if problems:
        raise InvalidInput("the window cannot hold a drill", errors=problems)
    if total(open_intervals(window, timezone, after=now)) < MIN_OPEN:
        raise InvalidInput(
            "the window leaves no time to start in once the exclusions are taken out",
            errors=[FieldError("window", "at least a minute outside the exclusions, ahead")],
        )
    return window


def open_intervals(
    window: Window, timezone: str, *, after: datetime | None = None
) -> list[tuple[datetime, datetime]]:
    """The window's times (UTC) outside its daily exclusions, from ``after`` on. Exclusions are
    local wall-clock times of ``timezone``; a range past midnight (``23:00`` to ``01:00``) wraps."""
    try:
        zone = ZoneInfo(timezone)
    except ZoneInfoNotFoundError as exc:  # the site's zone is checked when the site is made
        raise InvalidInput(
            f"unknown time zone {timezone!r}", errors=[FieldError("timezone", "unknown")]
        ) from exc
    start = max(window.start, after) if after is not None else window.start
    start, end = start.astimezone(UTC), window.end.astimezone(UTC)
    if end <= start:
        return []
    cuts: list[tuple[datetime, datetime]] = []
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    day = first
    while day <= last:
        for exclusion in window.exclude:
            begin, finish = exclusion.bounds()
            cut_start = _local(day, begin, zone)
            cut_end = _local(day + timedelta(days=1) if finish <= begin else day, finish, zone)
            cuts.append((cut_start, cut_end))
        day += timedelta(days=1)
    cuts.sort()
    out: list[tuple[datetime, datetime]] = []
    cursor = start
    for cut_start, cut_end in cuts:
        if cut_end <= cursor or cut_start >= end:
            continue
        if cut_start > cursor:
            out.append((cursor, min(cut_start, end)))
        cursor = max(cursor, cut_end)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return out


def _local(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def total(intervals: Sequence[tuple[datetime, datetime]]) -> timedelta:
    return sum((b - a for a, b in intervals), timedelta(0))


def draw_start(
    window: Window,
    timezone: str,
    *,
    after: datetime,
    rng: secrets.SystemRandom | None = None,
) -> datetime:
    """A start drawn uniformly (to the second) over the window's open time after ``after``,
    from the operating system's secure random source."""
    intervals = open_intervals(window, timezone, after=after)
    seconds = int(total(intervals).total_seconds())
    if seconds < 1:
        raise InvalidInput(
            "the window has no time left to start in",
            errors=[FieldError("window", "no open time ahead")],
        )
    pick = (rng or secrets.SystemRandom()).randrange(seconds)
    for begin, end in intervals:
        span = int((end - begin).total_seconds())
        if pick < span:
            return begin + timedelta(seconds=pick)
        pick -= span
    return intervals[-1][1] - timedelta(seconds=1)  # pragma: no cover (rounding at the end)


@dataclass
class DrillTime:
    """Seconds of drill time: since the start, less the time held or suspended. Each pause is
    kept, so that an event's drill time is right whatever pauses came after it."""

    started_at: datetime
    #: [start, end] of each pause; the last one's end is None while it lasts.
    pauses: list[list[datetime | None]] = field(default_factory=list)

    def at(self, moment: datetime) -> float:
        """The drill time at ``moment`` (a pause lasting then: the time it began)."""
        elapsed = (moment - self.started_at).total_seconds()
        for begin, end in self.pauses:
            assert begin is not None
            if begin >= moment:
                continue
            until = moment if end is None or end > moment else end
            elapsed -= (until - begin).total_seconds()
        return max(0.0, elapsed)

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] is None

    def pause(self, now: datetime) -> None:
        if not self.paused:
            self.pauses.append([now, None])

    def resume(self, now: datetime) -> None:
        if self.paused:
            self.pauses[-1][1] = now

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "pauses": [
                [b.isoformat() if b else None, e.isoformat() if e else None] for b, e in self.pauses
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DrillTime:
        return cls(
            started_at=datetime.fromisoformat(data["started_at"]),
            pauses=[
                [datetime.fromisoformat(b) if b else None, datetime.fromisoformat(e) if e else None]
                for b, e in data.get("pauses", [])
            ],
        )


DrillMode = Literal["blind", "announced"]
DRILL_STATES = ("scheduled", "running", "held", "suspended", "ended", "aborted", "cancelled")
