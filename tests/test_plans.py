"""Plan templates, their validation, and runs on a test clock."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gis.errors import IllegalTransition, InvalidInput, NotPermitted
from plans.clock import ManualClock
from plans.engine import Actor, PlanRun, Scheduler, Status
from plans.model import Level, PlanTemplate, template_from_data
from plans.validation import check_plan, due_offsets, plan_problems

COMMANDER = Actor("cmd-1", frozenset({"incident_commander"}))
SHIFT = Actor("shift-1", frozenset({"shift_leader"}))
WARDEN = Actor("warden-1", frozenset({"muster_warden"}))
FIRE = Actor("fire-1", frozenset({"fire_team"}))


def step(
    sid: str,
    role: str,
    within: int,
    *,
    after: str = "activation",
    deps: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": sid,
        "title": sid.replace("-", " "),
        "role": role,
        "target": {"after": after, "within_s": within},
        "depends_on": list(deps),
        **extra,
    }


def plan_data() -> dict[str, Any]:
    """A small chlorine-leak plan: two steps a level, a value step, a step-relative target."""
    return {
        "id": "chlorine-leak",
        "title": "Chlorine leak",
        "title_zh": "氯气泄漏",
        "scenario": {
            "key": "chlorine-leak",
            "hazard": "toxic_release",
            "substances": ["chlorine"],
            "triggers": [{"sensor_kind": "gas", "substance": "chlorine", "tier": "alarm"}],
        },
        "lead_departments": ["Production Safety Department"],
        "command_role": "incident_commander",
        "roles": [
            {"id": "incident_commander", "name": "Incident commander"},
            {"id": "shift_leader", "name": "Shift leader", "name_zh": "班长"},
            {"id": "muster_warden", "name": "Muster warden"},
            {"id": "fire_team", "name": "Fire team"},
        ],
        "levels": {
            "L1": {
                "call_tree": [
                    {
                        "role": "shift_leader",
                        "order": 1,
                        "contacts": [{"name": "Wang Lei", "phone": "13800000001"}],
                    }
                ],
                "materials": [{"kind": "scba", "quantity": 2}],
                "steps": [
                    step("l1-report", "shift_leader", 120),
                    step("l1-isolate", "shift_leader", 300, deps=("l1-report",)),
                ],
            },
            "L2": {
                "scripts": [
                    {
                        "id": "l2-neighbours-zh",
                        "audience": "neighbours",
                        "language": "zh",
                        "text": "{site}发生{substance}泄漏，位置{location}，请关闭门窗。",
                    }
                ],
                "steps": [
                    step(
                        "l2-headcount",
                        "muster_warden",
                        600,
                        done_when={"kind": "value", "name": "headcount", "unit": "persons"},
                    ),
                    step(
                        "l2-curtain",
                        "fire_team",
                        300,
                        after="l1-isolate",
                        deps=("l1-isolate",),
                        optional=True,
                    ),
                ],
            },
            "L3": {"steps": [step("l3-report-bureau", "incident_commander", 3600, after="level")]},
            "L4": {"steps": [step("l4-group", "incident_commander", 1800)]},
        },
    }


def template() -> PlanTemplate:
    return check_plan(plan_data())


def run_at(level: Level = Level.L2) -> tuple[ManualClock, PlanRun]:
    clock = ManualClock()
    run = PlanRun.activate(
        clock,
        run_id="run-1",
        template=template(),
        template_version=3,
        level=level,
        actor=COMMANDER,
        incident={"substance": "chlorine"},
    )
    return clock, run


# -- validation -------------------------------------------------------------------------------


def test_the_sample_plan_validates_and_knows_its_due_times() -> None:
    assert plan_problems(template(), site_inventory={"scba": 5}) == []
    # l2-curtain counts from l1-isolate, due at 300 s: 300 + 300.
    assert due_offsets(template())["l2-curtain"] == 600


def broken(change: Any) -> list[tuple[str, str]]:
    data = copy.deepcopy(plan_data())
    change(data)
    with pytest.raises(InvalidInput) as caught:
        check_plan(data, site_inventory={"scba": 5})
    return [(e.field, e.reason) for e in caught.value.errors]


def test_a_dependency_cycle_is_named_with_its_path() -> None:
    def cycle(d: dict[str, Any]) -> None:
        d["levels"]["L1"]["steps"][0]["depends_on"] = ["l1-isolate"]

    [(field, reason)] = broken(cycle)
    assert field.startswith("levels.L1.steps[")
    assert "cycle" in reason and "l1-report" in reason and "l1-isolate" in reason


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            lambda d: d["levels"]["L1"]["steps"][1].update(role="astronaut"),
            "levels.L1.steps[1].role",
            "unknown role 'astronaut'",
        ),
        (
            lambda d: d["levels"]["L1"]["materials"].append({"kind": "unicorn", "quantity": 1}),
            "levels.L1.materials[1].kind",
            "unknown resource kind",
        ),
        (
            lambda d: d["levels"]["L1"]["materials"].append({"kind": "scba", "quantity": 4}),
            "levels.L1.materials[1].quantity",
            "the site has 5",
        ),
        (
            lambda d: d["levels"]["L2"]["steps"].append(step("l1-report", "fire_team", 900)),
            "levels.L2.steps[2].id",
            "duplicate step id 'l1-report'",
        ),
        (
            lambda d: d["levels"]["L1"]["steps"][1]["target"].update(within_s=60),
            "levels.L1.steps[1].target",
            "before its dependency",
        ),
        (
            lambda d: d.update(lead_departments=[]),
            "lead_departments",
            "exactly one lead department, not 0",
        ),
        (
            lambda d: d.update(lead_departments=["Safety", "Production"]),
            "lead_departments",
            "not 2",
        ),
        (
            lambda d: d["levels"]["L1"]["steps"][1].update(depends_on=["l3-report-bureau"]),
            "levels.L1.steps[1].depends_on[0]",
            "introduced at L3",
        ),
        (
            lambda d: d["levels"]["L1"]["steps"][1].update(depends_on=["l9-nothing"]),
            "levels.L1.steps[1].depends_on[0]",
            "unknown step 'l9-nothing'",
        ),
        (
            lambda d: d["levels"]["L2"]["scripts"][0].update(text="{substance} at {weather}"),
            "levels.L2.scripts[0].text",
            "unknown variables ['weather']",
        ),
        (
            lambda d: d["levels"]["L2"]["steps"][1].update(depends_on=[]),
            "levels.L2.steps[1].target.after",
            "must also depend on it",
        ),
        (lambda d: d.pop("levels").pop("L4") and None, "levels", "Field required"),
        (
            lambda d: d["levels"].pop("L4"),
            "levels.L4",
            "every level L1-L4",
        ),
        (
            lambda d: d["roles"].append({"id": "fire_team", "name": "Fire team again"}),
            "roles[4].id",
            "duplicate role id 'fire_team'",
        ),
        (
            lambda d: d["levels"]["L3"].update(scripts=d["levels"]["L2"]["scripts"]),
            "levels.L3.scripts[0].id",
            "duplicate script id 'l2-neighbours-zh'",
        ),
        (
            lambda d: d["levels"]["L2"]["scripts"][0].update(text="{substance"),
            "levels.L2.scripts[0].text",
            "not a valid template",
        ),
        (
            lambda d: d["levels"]["L1"]["call_tree"][0].update(role="mayor"),
            "levels.L1.call_tree[0].role",
            "unknown role 'mayor'",
        ),
        (
            lambda d: d["levels"]["L4"]["steps"].append(step("level", "fire_team", 4000)),
            "levels.L4.steps[1].id",
            "reserved",
        ),
        (
            lambda d: d.update(command_role="king"),
            "command_role",
            "unknown role 'king'",
        ),
        (
            lambda d: d["levels"]["L1"]["steps"][0]["target"].update(within_s=-5),
            "levels.L1.steps[0].target.within_s",
            "greater than or equal to 0",
        ),
        (
            lambda d: d["scenario"].update(design_release={"basis": "risk study", "mass_kg": 9}),
            "scenario.design_release.rate_g_s",
            "a toxic_release design release needs it",
        ),
        (
            lambda d: d["scenario"].update(
                hazard="fire", design_release={"basis": "bund", "fuel": "lava", "diameter_m": 9}
            ),
            "scenario.design_release.fuel",
            "unknown fuel 'lava'",
        ),
        (
            lambda d: d["scenario"].update(
                substances=[], design_release={"basis": "risk study", "rate_g_s": 500}
            ),
            "scenario.substances",
            "a toxic_release design release needs one",
        ),
        (
            lambda d: d["scenario"].update(
                substances=["unobtainium"], design_release={"basis": "x", "rate_g_s": 500}
            ),
            "scenario.substances[0]",
            "unknown substance 'unobtainium'",
        ),
        (
            lambda d: d["scenario"].update(design_release={"rate_g_s": 500}),
            "scenario.design_release.basis",
            "Field required",
        ),
        (
            lambda d: d["scenario"].update(design_release={"basis": "x", "rate_g_s": -1}),
            "scenario.design_release.rate_g_s",
            "greater than 0",
        ),
    ],
)
def test_every_rule_has_a_failing_example(change: Any, field: str, words: str) -> None:
    problems = broken(change)
    assert any(f == field and words in reason for f, reason in problems), problems


def test_one_owner_per_scenario() -> None:
    other = template_from_data({**plan_data(), "id": "chlorine-leak-2"})
    with pytest.raises(InvalidInput) as caught:
        check_plan(plan_data(), others=[other])
    [error] = caught.value.errors
    assert error.field == "scenario.key"
    assert "chlorine-leak-2" in error.reason


# -- runs -------------------------------------------------------------------------------------


def test_a_full_run_with_an_escalation_in_the_middle() -> None:
    clock, run = run_at(Level.L2)
    state = run.state
    assert state.template_version == 3
    assert {s.id for s in state.steps.values()} == {
        "l1-report",
        "l1-isolate",
        "l2-headcount",
        "l2-curtain",
    }
    assert run.step("l1-report").status == Status.READY
    assert run.step("l1-isolate").status == Status.WAITING
    call_trees = [e for e in run.events if e.type == "calltree.activated"]
    assert [e.data["level"] for e in call_trees] == ["L1"]  # L2 has no call tree here

    clock.advance(30)
    run.acknowledge("l1-report", SHIFT)
    run.start("l1-report", SHIFT)
    clock.advance(30)
    run.complete("l1-report", SHIFT)
    assert run.step("l1-isolate").status == Status.READY

    clock.advance(60)
    run.escalate(COMMANDER)
    assert run.state.level == Level.L3
    # Counting from its level: an hour from the escalation.
    assert run.step("l3-report-bureau").due_at == clock.now() + timedelta(seconds=3600)
    assert run.step("l1-report").status == Status.DONE  # progress kept
    run.escalate(COMMANDER)
    # Counting from activation, the incident: due 30 min after it, whenever L4 came.
    assert run.step("l4-group").due_at == run.state.activated_at + timedelta(seconds=1800)
    run.deescalate(COMMANDER)

    for actor, sid in ((SHIFT, "l1-isolate"), (WARDEN, "l2-headcount")):
        run.acknowledge(sid, actor)
        run.start(sid, actor)
    run.complete("l1-isolate", SHIFT)
    run.complete("l2-headcount", WARDEN, value=412)
    assert run.step("l2-headcount").value == 412
    run.skip("l2-curtain", FIRE, reason="leak stopped at the valve")
    run.note(COMMANDER, "wind turning north", step_id="l3-report-bureau")
    for sid in ("l3-report-bureau",):
        run.acknowledge(sid, COMMANDER)
        run.start(sid, COMMANDER)
        run.complete(sid, COMMANDER)
    run.stand_down(COMMANDER)
    assert not run.active
    with pytest.raises(IllegalTransition, match="stood down"):
        run.escalate(COMMANDER)
    assert [e.seq for e in run.events] == list(range(1, len(run.events) + 1))

    rebuilt = PlanRun.replay(run.events, clock)
    assert rebuilt.state == run.state


def test_overdue_events_fire_at_exactly_their_due_times_in_order_when_the_clock_jumps() -> None:
    clock, run = run_at(Level.L2)
    start = clock.now()
    clock.advance(119)
    assert run.advance() == []
    clock.advance(1)
    [first] = run.advance()
    assert (first.type, first.step_id, first.at) == (
        "step.overdue",
        "l1-report",
        start + timedelta(seconds=120),
    )
    clock.advance(3600)  # one jump past every other due time
    fired = run.advance()
    assert [(e.step_id, (e.at - start).total_seconds()) for e in fired] == [
        ("l1-isolate", 300.0),
        ("l2-headcount", 600.0),
    ]
    assert run.advance() == []  # each fires once


def test_a_step_counting_from_another_is_due_from_its_completion() -> None:
    clock, run = run_at(Level.L2)
    assert run.step("l2-curtain").due_at is None
    run.acknowledge("l1-report", SHIFT)
    run.start("l1-report", SHIFT)
    run.complete("l1-report", SHIFT)
    clock.advance(200)
    run.acknowledge("l1-isolate", SHIFT)
    run.start("l1-isolate", SHIFT)
    run.complete("l1-isolate", SHIFT)
    assert run.step("l2-curtain").due_at == clock.now() + timedelta(seconds=300)


def test_illegal_transitions_are_refused_with_the_reason() -> None:
    _, run = run_at(Level.L2)
    with pytest.raises(IllegalTransition, match="waiting for l1-report"):
        run.acknowledge("l1-isolate", SHIFT)
    with pytest.raises(IllegalTransition, match="must be in_progress"):
        run.complete("l1-report", SHIFT)
    with pytest.raises(NotPermitted, match="belongs to the role 'shift_leader'"):
        run.acknowledge("l1-report", WARDEN)
    with pytest.raises(NotPermitted, match="only the commander may skip"):
        run.skip("l1-report", SHIFT, reason="busy")
    with pytest.raises(NotPermitted):
        run.escalate(SHIFT)
    run.acknowledge("l2-headcount", WARDEN)
    run.start("l2-headcount", WARDEN)
    with pytest.raises(InvalidInput, match="headcount"):
        run.complete("l2-headcount", WARDEN)
    with pytest.raises(NotPermitted):  # the role is checked before the value is asked for
        run.complete("l2-headcount", SHIFT)
    with pytest.raises(InvalidInput):
        run.acknowledge("l9-nothing", SHIFT)
    # Nothing refused left a trace.
    assert [e.type for e in run.events].count("step.done") == 0


def test_deescalation_withdraws_and_escalation_restores_without_losing_progress() -> None:
    clock, run = run_at(Level.L3)
    run.acknowledge("l3-report-bureau", COMMANDER)
    run.deescalate(COMMANDER)
    withdrawn = run.step("l3-report-bureau")
    assert withdrawn.withdrawn and withdrawn.status == Status.ACKNOWLEDGED
    clock.advance(4000)
    assert all(e.step_id != "l3-report-bureau" for e in run.advance())  # no deadline watched
    with pytest.raises(IllegalTransition, match="withdrawn"):
        run.start("l3-report-bureau", COMMANDER)
    run.escalate(COMMANDER)
    restored = run.step("l3-report-bureau")
    assert not restored.withdrawn and restored.status == Status.ACKNOWLEDGED
    # Its due time passed while it was withdrawn: it fires now.
    assert [e.step_id for e in run.advance()] == ["l3-report-bureau"]
    assert PlanRun.replay(run.events, clock).state == run.state


def test_editing_the_template_never_changes_a_running_plan() -> None:
    clock, run = run_at(Level.L1)
    data = plan_data()
    data["levels"]["L1"]["steps"][0]["target"]["within_s"] = 10
    check_plan(data)  # a new version of the template
    assert run.step("l1-report").due_at == clock.now() + timedelta(seconds=120)
    assert run.events[0].data["template"]["levels"]["L1"]["steps"][0]["target"]["within_s"] == 120


def test_only_the_commander_activates() -> None:
    with pytest.raises(NotPermitted):
        PlanRun.activate(
            ManualClock(),
            run_id="r",
            template=template(),
            template_version=1,
            level=Level.L1,
            actor=SHIFT,
        )


def test_the_scheduler_fires_across_runs_in_time_order() -> None:
    clock = ManualClock()
    scheduler = Scheduler(clock)
    for i, level in enumerate((Level.L1, Level.L2)):
        run = PlanRun.activate(
            clock,
            run_id=f"run-{i}",
            template=template(),
            template_version=1,
            level=level,
            actor=COMMANDER,
        )
        scheduler.add(run)
        clock.advance(10)
    assert scheduler.tick() == []
    clock.advance(1000)
    fired = scheduler.tick()
    times = [e.at for e in fired]
    assert times == sorted(times)
    assert {(e.run_id, e.step_id) for e in fired} == {
        ("run-0", "l1-report"),
        ("run-0", "l1-isolate"),
        ("run-1", "l1-report"),
        ("run-1", "l1-isolate"),
        ("run-1", "l2-headcount"),
    }
    assert scheduler.tick() == []


@settings(max_examples=50, deadline=None)
@given(jumps=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=12))
def test_however_the_clock_jumps_each_due_time_fires_once_in_order(jumps: list[int]) -> None:
    clock, run = run_at(Level.L4)
    start = clock.now()
    fired = []
    for jump in jumps:
        clock.advance(jump)
        fired += run.advance()
    times = [e.at for e in fired]
    assert times == sorted(times)
    assert all(e.at <= clock.now() for e in fired)
    assert len({e.step_id for e in fired}) == len(fired)
    due = {s.id: s.due_at for s in run.state.steps.values() if s.due_at is not None}
    expected = {sid for sid, at in due.items() if at <= clock.now()}
    assert {e.step_id for e in fired} == expected
    assert all(e.step_id is not None and e.at == due[e.step_id] for e in fired)
    assert all(e.at >= start for e in fired)
