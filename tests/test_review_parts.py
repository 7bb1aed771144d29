"""The review's parts on events made by hand: drill time, muster, the ranking of deviations,
and a log that cannot be read as logged."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from command.events import LoggedEvent
from command.review import DrillClock, build_review, describe, drill_clock, muster
from gis.errors import CorruptEvent, IllegalTransition, NotFound
from plans.model import data_from_yaml, template_from_data
from tests.conftest import CHLORINE_ACTIVATION, DEMO_PLANS, TEST_START

INCIDENT = "inc-hand"


class Log:
    """Events in order, numbered, at seconds after :data:`TEST_START`."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []

    def add(
        self, kind: str, at_s: float, data: Mapping[str, Any] | None = None, *, own: bool = True
    ) -> LoggedEvent:
        seq = len(self.events) + 1
        event = LoggedEvent(
            "demo-works",
            seq,
            TEST_START + timedelta(seconds=at_s),
            kind,
            "tester",
            INCIDENT if own else None,
            dict(data or {}),
            f"{seq - 1:064d}",
            f"{seq:064d}",
        )
        self.events.append(event)
        return event

    def plan(self, kind: str, at_s: float, step_id: str | None = None, **data: Any) -> None:
        """A plan event as the command post logs it (the engine's event in ``data``)."""
        at = (TEST_START + timedelta(seconds=at_s)).isoformat()
        self.add(
            f"plan.{kind}",
            at_s,
            {
                "seq": len(self.events) + 1,
                "type": kind,
                "at": at,
                "actor": "tester",
                "step_id": step_id,
                "data": data,
            },
        )


def at(seconds: float) -> datetime:
    return TEST_START + timedelta(seconds=seconds)


def test_drill_time_stops_while_held_or_suspended() -> None:
    log = Log()
    log.add("drill.started", 0, {"drill_id": "d"})
    log.add("drill.held", 100, {"drill_id": "d"})
    log.add("drill.suspended", 130, {"drill_id": "d"})  # still paused: no second pause
    log.add("drill.resumed", 160, {"drill_id": "d"})
    log.add("drill.suspended", 400, {"drill_id": "d"})
    clock = drill_clock(log.events)
    assert clock == DrillClock(at(0), [(at(100), at(160)), (at(400), None)])
    assert [clock.at(at(s)) for s in (0, 50, 100, 130, 160, 300, 400, 500)] == [
        0,
        50,
        100,
        100,
        100,
        240,
        340,
        340,
    ]
    assert clock.at(at(-5)) is None
    assert drill_clock(log.events[1:]) is None


def muster_log(*, to_move: int | None, reports: list[tuple[float, float]]) -> Log:
    log = Log()
    log.add("incident.activated", 0, {"counts": {"1": {"people": 3}, "2": {"people": 1}}})
    for when, value in reports:
        log.plan("step.done", when, "l2-headcount", value=value)
    log.add("incident.people_moved", 200, {"counts": {"1": {"people": 1}}})
    log.add("incident.people_moved", 250, {"counts": {"1": {"people": 0}}})
    log.add("incident.people_moved", 260, {"entered": {}, "left": []})  # no counts: no news
    if to_move is not None:
        log.add("incident.closed", 900, {"to_move": to_move, "missing": [], "headcount": {}})
    return log


def test_full_muster_is_the_first_headcount_that_counts_everyone() -> None:
    template = template_from_data(
        data_from_yaml((DEMO_PLANS / "chlorine-leak.yaml").read_text(encoding="utf-8"))
    )
    log = muster_log(to_move=12, reports=[(300, 9), (420, 12), (500, 12)])
    found = muster(log.events, INCIDENT, template, at(0))
    assert found["complete_at"] == at(420).isoformat() and found["complete_s"] == 420
    assert [r["value"] for r in found["reports"]] == [9, 12, 12]
    assert found["zones_clear_at"] == at(250).isoformat() and found["zones_clear_s"] == 250
    assert found["verdict"] == "complete"

    short = muster(muster_log(to_move=12, reports=[(300, 9)]).events, INCIDENT, template, at(0))
    assert short["complete_at"] is None
    assert short["verdict"].startswith("accounted for by the stand-down")
    unknown = muster(muster_log(to_move=None, reports=[]).events, INCIDENT, template, at(0))
    assert unknown["verdict"].startswith("not known") and unknown["to_move"] is None
    nobody = muster(muster_log(to_move=0, reports=[]).events, INCIDENT, template, at(0))
    assert nobody["verdict"] == "nobody had to move" and nobody["complete_at"] is None
    # A value step that is not a headcount is no muster report.
    other = muster_log(to_move=1, reports=[])
    other.plan("step.done", 300, "l1-assess", value=5)
    assert muster(other.events, INCIDENT, template, at(0))["reports"] == []


def test_a_review_needs_an_activation_and_an_end() -> None:
    log = Log()
    log.add("incident.activated", 0, {"request": CHLORINE_ACTIVATION, "plan_version": 1})
    with pytest.raises(IllegalTransition):
        build_review("demo-works", INCIDENT, log.events)
    with pytest.raises(NotFound):
        build_review("demo-works", "inc-other", log.events)
    # Events that do not read as logged: named, never a fault of the server.
    log.plan("run.stood_down", 60, reason="over")  # a stand-down of a run never activated
    with pytest.raises(CorruptEvent, match="activation"):
        build_review("demo-works", INCIDENT, log.events)
    broken = Log()
    broken.add("incident.activated", 0, {"request": {"plan_id": "x"}})
    broken.add("drill.started", 0, {"drill_id": "d"})
    broken.add("drill.ended", 60, {"drill_id": "d"})
    with pytest.raises(CorruptEvent, match="KeyError"):
        build_review("demo-works", INCIDENT, broken.events)


def test_every_event_has_a_line_in_the_timeline() -> None:
    log = Log()
    odd = log.add("something.new", 0, {"x": 1})
    assert describe(odd, {}) == "something.new"
    bad = log.add("incident.wind_changed", 0, {"hazard": "not a hazard"})
    assert describe(bad, {}) == "incident.wind_changed"
    note = log.add("drill.note", 0, {"text": "通讯混乱"})
    assert describe(note, {}) == "Evaluator: 通讯混乱"
    held = log.add("drill.held", 0, {"reason": None})
    assert describe(held, {}) == "Drill held"
