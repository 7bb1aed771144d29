"""Duty assignments: a commander gives responders plan roles in an incident, and they then
move that role's steps themselves; every assignment is logged and survives a restart."""

from __future__ import annotations

from fastapi.testclient import TestClient

from command.auth import Role
from command.hub import Hub
from command.post import CommandPost
from command.site_model import SiteModels
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in
from tests.problems import assert_problem
from tests.test_incidents import BASE, activate, post_of

LEADER = "leader-zhao"  # the shift leader on duty
STEP = "l1-detect-report"  # a shift_leader step of the chlorine plan
REPORTED = {"reference": "radio call 08:12"}  # the step is done by an action: it is named


def test_a_responder_acts_only_on_the_steps_of_their_duty(
    command: TestClient, db: Database
) -> None:
    incident = activate(command)["incident"]["id"]
    leader = sign_in(db, LEADER, [Role.RESPONDER])
    steps = f"{BASE}/{incident}/steps"
    # No duty yet: the plan engine refuses, naming the plan role the step needs.
    refused = assert_problem(
        command.post(f"{steps}/{STEP}/acknowledge", headers=leader), 403, field="actor"
    )
    assert "shift_leader" in refused["errors"][0]["reason"]

    given = command.post(
        f"{BASE}/{incident}/duties", json={"role": "shift_leader", "username": LEADER}
    )
    assert given.status_code == 200, given.text
    [event] = given.json()["events"]
    assert event["type"] == "duty.assigned" and event["incident_id"] == incident
    assert event["data"] == {"role": "shift_leader", "username": LEADER}
    # Giving it again changes nothing and logs nothing.
    again = command.post(
        f"{BASE}/{incident}/duties", json={"role": "shift_leader", "username": LEADER}
    )
    assert again.json()["events"] == []

    for action in ("acknowledge", "start", "complete"):
        moved = command.post(f"{steps}/{STEP}/{action}", headers=leader, json=REPORTED)
        assert moved.status_code == 200, moved.text
        assert moved.json()["events"][0]["actor"] == LEADER
    # Other roles' steps stay out of reach.
    assert_problem(command.post(f"{steps}/l1-dispatch/acknowledge", headers=leader), 403)

    picture = command.get(f"{BASE}/{incident}").json()
    assert picture["plan"]["duties"] == {"shift_leader": [LEADER]}
    assert picture["plan"]["command_role"] == "incident_commander"
    assert "shift_leader" in {r["id"] for r in picture["plan"]["roles"]}
    done = next(s for s in picture["plan"]["steps"] if s["id"] == STEP)
    assert done["status"] == "done"

    released = command.delete(f"{BASE}/{incident}/duties/shift_leader/{LEADER}")
    assert released.json()["events"][0]["type"] == "duty.released"
    assert_problem(
        command.post(f"{steps}/l1-don-scba/acknowledge", headers=leader), 403, field="actor"
    )
    assert command.get(f"{BASE}/{incident}").json()["plan"]["duties"] == {}


def test_tasks_list_the_callers_open_steps(command: TestClient, db: Database) -> None:
    incident = activate(command)["incident"]["id"]
    leader = sign_in(db, LEADER, [Role.RESPONDER])
    tasks = f"/api/sites/{DEMO_ID}/tasks"
    assert command.get(tasks, headers=leader).json() == {"username": LEADER, "tasks": []}
    command.post(f"{BASE}/{incident}/duties", json={"role": "shift_leader", "username": LEADER})
    mine = command.get(tasks, headers=leader).json()["tasks"]
    assert mine and {t["role"] for t in mine} == {"shift_leader"}
    assert STEP in {t["step_id"] for t in mine}
    due = [t["due_at"] for t in mine if t["due_at"]]
    assert due == sorted(due)
    for action in ("acknowledge", "start", "complete"):
        command.post(f"{BASE}/{incident}/steps/{STEP}/{action}", headers=leader, json=REPORTED)
    assert STEP not in {t["step_id"] for t in command.get(tasks, headers=leader).json()["tasks"]}
    assert_problem(command.get("/api/sites/nowhere/tasks", headers=leader), 404)


def test_bad_duties_are_refused_and_change_nothing(command: TestClient, db: Database) -> None:
    incident = activate(command)["incident"]["id"]
    sign_in(db, "viewer-qian", [Role.VIEWER])
    sign_in(db, LEADER, [Role.RESPONDER])
    duties = f"{BASE}/{incident}/duties"
    before = command.get(f"/api/sites/{DEMO_ID}/events").json()["last_seq"]
    assert_problem(
        command.post(duties, json={"role": "astronaut", "username": LEADER}), 422, field="role"
    )
    assert_problem(
        command.post(duties, json={"role": "shift_leader", "username": "nobody"}),
        422,
        field="username",
    )
    # A viewer can never act on a step, so a duty would be a promise the server then breaks.
    assert_problem(
        command.post(duties, json={"role": "shift_leader", "username": "viewer-qian"}),
        422,
        field="username",
    )
    assert_problem(command.delete(f"{duties}/shift_leader/{LEADER}"), 404, field="username")
    assert_problem(command.delete(f"{duties}/astronaut/{LEADER}"), 422, field="role")
    # The plan's command role skips any step and stands the incident down: commanders only.
    assert_problem(
        command.post(duties, json={"role": "incident_commander", "username": LEADER}),
        422,
        field="role",
    )
    assert_problem(
        command.post(f"{BASE}/inc-none/duties", json={"role": "shift_leader", "username": LEADER}),
        404,
        field="incident",
    )
    # Only a commander hands out duties.
    responder = sign_in(db, "responder-sun", [Role.RESPONDER])
    assert_problem(
        command.post(duties, json={"role": "shift_leader", "username": LEADER}, headers=responder),
        403,
        field="role",
    )
    assert command.get(f"/api/sites/{DEMO_ID}/events").json()["last_seq"] == before


def test_duties_survive_a_restart(command: TestClient, db: Database, clock: ManualClock) -> None:
    incident = activate(command)["incident"]["id"]
    sign_in(db, LEADER, [Role.RESPONDER])
    sign_in(db, "medic-li", [Role.RESPONDER])
    duties = f"{BASE}/{incident}/duties"
    command.post(duties, json={"role": "shift_leader", "username": LEADER})
    command.post(duties, json={"role": "medic", "username": "medic-li"})
    command.post(duties, json={"role": "shift_leader", "username": "medic-li"})
    command.delete(f"{duties}/shift_leader/medic-li")
    live = post_of(command).incidents[incident].duties
    fresh = CommandPost(db, Hub(), clock, SiteModels(db))
    assert fresh.recover() == [incident]
    assert (
        fresh.incidents[incident].duties
        == live
        == {
            "shift_leader": {LEADER},
            "medic": {"medic-li"},
        }
    )
