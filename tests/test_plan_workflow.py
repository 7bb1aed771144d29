"""The plan workflow (issue 15, item 8): draft, submitted, approved; four eyes; the approved
version in force for activations and drills while a new draft is worked on; change notes; the
diff between versions; every transition logged in the site's event log. On both backends."""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient
from shapely.geometry import box
from sqlalchemy import insert, select

from command import events as event_log
from command.auth import Role
from command.cli import main
from command.post import CommandPost
from gis.storage.db import Database, downgrade, make_engine, upgrade
from gis.storage.tables import PlanTemplateRow
from gis.storage.types import Geometry, UTCDateTime
from plans.diff import diff_text, plan_diff
from plans.model import template_from_data
from plans.workflow import body_digest
from tests.conftest import DEMO_ID, POSTGIS_URL_ENV, sign_in, site_database
from tests.problems import assert_problem
from tests.test_drills import SCENARIO
from tests.test_incidents import chlorine
from tests.test_plans import plan_data, step

SITE = f"/api/sites/{DEMO_ID}"
BASE = f"{SITE}/plans"
FIXTURE_PLANS = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
YAML = {"Content-Type": "application/yaml"}


def etag_of(answer: Any) -> str:
    tag: str = answer.headers["ETag"]
    return tag


def approve_latest(client: TestClient, db: Database, plan_id: str) -> dict[str, Any]:
    """Submit the plan's draft (as ``wf-submitter``, a planner) and approve it (as
    ``wf-approver``): for tests whose subject is what comes after an approval."""
    submitter = sign_in(db, "wf-submitter", [Role.PLANNER])
    approver = sign_in(db, "wf-approver", [Role.APPROVER])
    latest = client.get(f"{BASE}/{plan_id}", headers=submitter)
    submitted = client.post(
        f"{BASE}/{plan_id}/submit",
        json={"change_note": "ready for review"},
        headers={**submitter, "If-Match": etag_of(latest)},
    )
    assert submitted.status_code == 200, submitted.text
    approved = client.post(
        f"{BASE}/{plan_id}/approve",
        json={},
        headers={**approver, "If-Match": etag_of(submitted)},
    )
    assert approved.status_code == 200, approved.text
    body: dict[str, Any] = approved.json()
    return body


@pytest.fixture
def users(db: Database) -> dict[str, dict[str, str]]:
    """Headers of a user per role. A client's own requests (no headers given) are a viewer's."""
    return {
        "planner": sign_in(db, "pl-wang", [Role.PLANNER]),
        "planner2": sign_in(db, "pl-li", [Role.PLANNER]),
        "approver": sign_in(db, "ap-chen", [Role.APPROVER]),
        "commander": sign_in(db, "cmd-sun", [Role.COMMANDER]),
        "both": sign_in(db, "pa-zhao", [Role.PLANNER, Role.APPROVER]),
        "viewer": sign_in(db, "vw-liu", [Role.VIEWER]),
        "responder": sign_in(db, "rs-ma", [Role.RESPONDER]),
        "controller": sign_in(db, "dc-hu", [Role.DRILL_CONTROLLER]),
    }


def state(client: TestClient, plan_id: str = "chlorine-leak") -> dict[str, Any]:
    plans: list[dict[str, Any]] = client.get(BASE).json()["plans"]
    [found] = [p for p in plans if p["id"] == plan_id]
    return found


# -- transitions and roles ---------------------------------------------------------------------


def test_each_transition_and_who_may_make_it(
    anonymous_client: TestClient, users: dict[str, dict[str, str]]
) -> None:
    anonymous_client.headers.update(users["viewer"])
    client = anonymous_client
    u = users
    made = client.post(BASE, json=plan_data(), headers=u["planner"])
    assert made.status_code == 201, made.text
    assert (made.json()["status"], etag_of(made)) == ("draft", '"1"')
    for who in ("viewer", "responder", "approver", "commander", "controller"):
        assert_problem(client.post(BASE, json=plan_data(), headers=u[who]), 403, field="role")
    listed = state(client)
    assert (listed["approved_version"], listed["latest_version"], listed["latest_status"]) == (
        None,
        1,
        "draft",
    )
    assert_problem(
        client.get(f"{BASE}/chlorine-leak", params={"approved": True}, headers=u["viewer"]),
        409,
        field="plan_id",
    )

    # A draft is edited in place: same version, the next revision, a new ETag.
    changed = plan_data()
    changed["levels"]["L1"]["steps"][1]["target"]["within_s"] = 240
    url = f"{BASE}/chlorine-leak"
    saved = client.put(url, json=changed, headers={**u["planner2"], "If-Match": '"1"'})
    assert saved.status_code == 200, saved.text
    assert (saved.json()["version"], saved.json()["revision"], etag_of(saved)) == (1, 2, '"1.2"')
    assert_problem(
        client.put(url, json=changed, headers={**u["planner"], "If-Match": '"1"'}),
        412,
        field="version",
    )
    assert_problem(client.put(url, json=changed, headers=u["planner"]), 428, field="If-Match")
    assert_problem(
        client.put(url, json=changed, headers={**u["commander"], "If-Match": '"1.2"'}),
        403,
        field="role",
    )

    # Submitting needs a planner, the current ETag and a change note.
    submit = f"{url}/submit"
    assert_problem(client.post(submit, json={}, headers=u["planner"]), 428, field="If-Match")
    assert_problem(
        client.post(submit, json={}, headers={**u["planner"], "If-Match": '"1"'}),
        412,
        field="version",
    )
    for who in ("approver", "commander", "viewer"):
        assert_problem(client.post(submit, json={}, headers={**u[who], "If-Match": '"1.2"'}), 403)
    assert_problem(
        client.post(
            submit, json={"change_note": "  "}, headers={**u["planner"], "If-Match": '"1.2"'}
        ),
        422,
        field="change_note",
    )
    assert client.get(url).json()["status"] == "draft"  # nothing half done
    sent = client.post(
        submit,
        json={"change_note": "isolation in 4 minutes, after the 2026 drill"},
        headers={**u["planner"], "If-Match": '"1.2"'},
    )
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert (body["status"], body["submitted_by"], etag_of(sent)) == (
        "submitted",
        "pl-wang",
        '"1.2"',
    )

    # Under review: no edits, no second submission, no withdrawal.
    for answer in (
        client.put(url, json=changed, headers={**u["planner"], "If-Match": '"1.2"'}),
        client.post(submit, json={}, headers={**u["planner"], "If-Match": '"1.2"'}),
        client.post(f"{url}/withdraw", json={}, headers={**u["planner"], "If-Match": '"1.2"'}),
    ):
        problem = assert_problem(answer, 409, field="status")
        assert "submitted" in problem["detail"] and problem["state"] == "submitted"

    # Approving needs a commander or an approver; returning needs a reason.
    approve = f"{url}/approve"
    for who in ("planner2", "viewer", "responder", "controller"):
        assert_problem(client.post(approve, json={}, headers={**u[who], "If-Match": '"1.2"'}), 403)
    ret = f"{url}/return"
    assert_problem(
        client.post(ret, json={}, headers={**u["approver"], "If-Match": '"1.2"'}),
        422,
        field="reason",
    )
    assert_problem(client.post(ret, json={"reason": "x"}, headers=u["viewer"]), 403)
    back = client.post(
        ret,
        json={"reason": "say which valves"},
        headers={**u["approver"], "If-Match": '"1.2"'},
    )
    assert back.status_code == 200, back.text
    assert (back.json()["status"], back.json()["submitted_by"]) == ("draft", None)
    assert back.json()["history"][-1]["reason"] == "say which valves"

    # Edited again, submitted again (the change note it had is kept), approved.
    changed["levels"]["L1"]["steps"][1]["title"] = "Close valves V-101 and V-102"
    again = client.put(url, json=changed, headers={**u["planner"], "If-Match": '"1.2"'})
    assert etag_of(again) == '"1.3"'
    resent = client.post(submit, headers={**u["planner"], "If-Match": '"1.3"'})
    assert resent.status_code == 200, resent.text
    assert resent.json()["change_note"] == "isolation in 4 minutes, after the 2026 drill"
    assert_problem(
        client.post(approve, json={}, headers={**u["approver"], "If-Match": '"1.2"'}),
        412,
        field="version",
    )
    done = client.post(
        approve, json={"comment": "checked on site"}, headers={**u["approver"], "If-Match": '"1.3"'}
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["approved_by"], body["version"]) == ("approved", "ap-chen", 1)
    assert_problem(
        client.post(approve, json={}, headers={**u["commander"], "If-Match": '"1.3"'}),
        409,
        field="status",
    )
    history = [(h["action"], h["by"]) for h in body["history"]]
    assert history == [
        ("saved", "pl-wang"),
        ("saved", "pl-li"),
        ("submitted", "pl-wang"),
        ("returned", "ap-chen"),
        ("saved", "pl-wang"),
        ("submitted", "pl-wang"),
        ("approved", "ap-chen"),
    ]

    # The next draft, withdrawn: version 1 stays in force throughout.
    draft = client.put(url, json=plan_data(), headers={**u["planner"], "If-Match": '"1.3"'})
    assert (draft.json()["version"], draft.json()["status"]) == (2, "draft")
    assert_problem(
        client.post(f"{url}/withdraw", json={}, headers={**u["approver"], "If-Match": '"2"'}),
        403,
    )
    gone = client.post(
        f"{url}/withdraw",
        json={"reason": "not needed after all"},
        headers={**u["planner2"], "If-Match": '"2"'},
    )
    assert gone.status_code == 200 and gone.json()["status"] == "withdrawn"
    listed = state(client)
    assert (listed["version"], listed["approved_version"], listed["latest_status"]) == (
        1,
        1,
        "withdrawn",
    )
    third = client.put(url, json=plan_data(), headers={**u["planner"], "If-Match": '"2"'})
    assert (third.json()["version"], third.json()["status"]) == (3, "draft")
    versions = client.get(f"{url}/versions").json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [
        (1, "approved"),
        (2, "withdrawn"),
        (3, "draft"),
    ]


def test_four_eyes_whoever_saved_or_submitted_a_version_may_not_approve_it(
    anonymous_client: TestClient, db: Database, users: dict[str, dict[str, str]]
) -> None:
    anonymous_client.headers.update(users["viewer"])
    client, u = anonymous_client, users
    url = f"{BASE}/chlorine-leak"
    # pa-zhao (planner and approver) writes it, pl-wang submits it.
    assert client.post(BASE, json=plan_data(), headers=u["both"]).status_code == 201
    sent = client.post(
        f"{url}/submit",
        json={"change_note": "first issue"},
        headers={**u["planner"], "If-Match": '"1"'},
    )
    assert sent.status_code == 200, sent.text
    refused = assert_problem(
        client.post(f"{url}/approve", json={}, headers={**u["both"], "If-Match": '"1"'}),
        403,
        field="approver",
    )
    assert "four eyes" in refused["detail"] and "pa-zhao" in refused["detail"]
    # Someone who only submitted it may not either.
    both2 = sign_in(db, "pa-qian", [Role.PLANNER, Role.APPROVER])
    assert client.get(url).json()["status"] == "submitted"
    back = client.post(
        f"{url}/return", json={"reason": "again"}, headers={**u["approver"], "If-Match": '"1"'}
    )
    assert back.status_code == 200
    resent = client.post(f"{url}/submit", json={}, headers={**both2, "If-Match": '"1"'})
    assert resent.status_code == 200, resent.text
    assert_problem(
        client.post(f"{url}/approve", json={}, headers={**both2, "If-Match": '"1"'}),
        403,
        field="approver",
    )
    # A commander who had no hand in it approves.
    done = client.post(f"{url}/approve", json={}, headers={**u["commander"], "If-Match": '"1"'})
    assert done.status_code == 200 and done.json()["approved_by"] == "cmd-sun"


# -- in force: activations and drills ----------------------------------------------------------


def demo_plan_with_step(command: TestClient, step_id: str) -> dict[str, Any]:
    """The demo chlorine plan's template with one more L1 step."""
    body: dict[str, Any] = command.get(f"{BASE}/chlorine-leak").json()["template"]
    body["levels"]["L1"]["steps"].append(step(step_id, "shift_leader", 600))
    return body


def test_the_approved_version_stays_in_force_while_a_draft_is_worked_on(
    command: TestClient, db: Database, users: dict[str, dict[str, str]], clock: Any
) -> None:
    u = users
    url = f"{BASE}/chlorine-leak"
    assert command.get(url).json()["status"] == "approved"  # loaded by the operator
    draft = command.put(
        url,
        json=demo_plan_with_step(command, "l1-extra-check"),
        headers={**u["planner"], "If-Match": '"1"'},
        params={"change_note": "an extra check at L1"},
    )
    assert draft.status_code == 200, draft.text
    assert draft.json()["change_note"] == "an extra check at L1"
    # The activation runs version 1: without the draft's step.
    first = command.post(f"{SITE}/incidents", json=chlorine())
    assert first.status_code == 201, first.text
    picture = first.json()
    assert picture["incident"]["plan_version"] == 1
    assert "l1-extra-check" not in {s["id"] for s in picture["plan"]["steps"]}
    assert command.get(url, params={"approved": True}).json()["version"] == 1
    incident = picture["incident"]["id"]
    closed = command.post(
        f"{SITE}/incidents/{incident}/stand-down", json={"force": True, "reason": "test"}
    )
    assert closed.status_code == 200, closed.text
    # Approved, version 2 is what the next activation runs; version 1 is superseded.
    approve_latest(command, db, "chlorine-leak")
    second = command.post(f"{SITE}/incidents", json=chlorine())
    assert second.status_code == 201, second.text
    assert second.json()["incident"]["plan_version"] == 2
    assert "l1-extra-check" in {s["id"] for s in second.json()["plan"]["steps"]}
    first_version = command.get(url, params={"version": 1}).json()
    assert first_version["status"] == "superseded" and first_version["superseded_at"]
    assert first_version["history"][-1]["by_version"] == 2


def test_a_plan_never_approved_is_not_activated_drilled_or_proposed(
    command: TestClient, db: Database, users: dict[str, dict[str, str]]
) -> None:
    u = users
    new = plan_data()
    new.update(id="chlorine-leak-2")
    new["scenario"]["key"] = "chlorine-leak-west"
    new["scenario"]["triggers"] = [{"sensor_kind": "gas", "substance": "Cl2", "tier": "alarm"}]
    made = command.post(BASE, json=new, headers=u["planner"])
    assert made.status_code == 201, made.text
    refused = assert_problem(
        command.post(f"{SITE}/incidents", json={**chlorine(), "plan_id": "chlorine-leak-2"}),
        409,
        field="plan_id",
    )
    assert "no approved version" in refused["detail"] and "draft" in refused["detail"]
    assert refused["type"].endswith("/plan-not-approved")
    scenario = {**copy.deepcopy(SCENARIO), "plan_id": "chlorine-leak-2"}
    answer = command.post(f"{SITE}/drills/scenarios", json=scenario, headers=u["controller"])
    problem = assert_problem(answer, 422, field="plan_id")
    assert any("no approved version" in e["reason"] for e in problem["errors"])
    # A chlorine alarm proposes the plans in force only; approved, the new one too.
    assert proposed(command, "S-061") == ["chlorine-leak"]
    approve_latest(command, db, "chlorine-leak-2")
    assert proposed(command, "S-057") == ["chlorine-leak", "chlorine-leak-2"]


def proposed(command: TestClient, sensor_id: str) -> list[str]:
    """The plans a chlorine detector's alarm proposes (S-061, S-057: the chlorine store's)."""
    body = {"readings": [{"sensor_id": sensor_id, "value": 5.0}]}
    events = command.post(f"{SITE}/readings", json=body).json()["events"]
    [proposal] = [e for e in events if e["type"] == "plan.proposed"]
    plans: list[str] = sorted(proposal["data"]["plans"])
    return plans


def test_a_drill_runs_the_approved_version_not_the_draft(
    command: TestClient, db: Database, users: dict[str, dict[str, str]]
) -> None:
    u = users
    saved = command.put(
        f"{BASE}/chlorine-leak",
        json=demo_plan_with_step(command, "l1-drill-extra"),
        headers={**u["planner"], "If-Match": '"1"'},
    )
    assert saved.status_code == 200, saved.text
    written = command.post(f"{SITE}/drills/scenarios", json=SCENARIO, headers=u["controller"])
    assert written.status_code == 201, written.text
    drill = command.post(
        f"{SITE}/drills",
        json={"scenario_id": SCENARIO["id"], "mode": "announced"},
        headers=u["controller"],
    )
    assert drill.status_code == 201, drill.text
    incident_id = drill.json()["incident_id"]
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    running = post.incident(DEMO_ID, incident_id)
    assert running.run.state.template_version == 1
    assert "l1-drill-extra" not in running.run.state.steps


# -- change notes, YAML, the log ---------------------------------------------------------------


def test_a_change_note_is_optional_on_save_and_required_on_submit(
    anonymous_client: TestClient, users: dict[str, dict[str, str]]
) -> None:
    anonymous_client.headers.update(users["viewer"])
    client, u = anonymous_client, users
    url = f"{BASE}/chlorine-leak"
    assert client.post(BASE, json=plan_data(), headers=u["planner"]).json()["change_note"] is None
    bare = client.post(f"{url}/submit", headers={**u["planner"], "If-Match": '"1"'})
    assert_problem(bare, 422, field="change_note")
    noted = client.put(
        url,
        json=plan_data(),
        params={"change_note": "first issue of the chlorine plan"},
        headers={**u["planner"], "If-Match": '"1"'},
    )
    assert noted.json()["change_note"] == "first issue of the chlorine plan"
    # A save without a note keeps the one the draft has.
    kept = client.put(url, json=plan_data(), headers={**u["planner"], "If-Match": '"1.2"'})
    assert kept.json()["change_note"] == "first issue of the chlorine plan"
    sent = client.post(f"{url}/submit", headers={**u["planner"], "If-Match": '"1.3"'})
    assert sent.status_code == 200, sent.text
    assert sent.json()["history"][-1]["change_note"] == "first issue of the chlorine plan"
    too_long = client.put(
        url, json=plan_data(), params={"change_note": "x" * 2001}, headers=u["planner"]
    )
    assert_problem(too_long, 422)


def test_yaml_comments_are_kept_through_the_workflow(
    anonymous_client: TestClient, db: Database, users: dict[str, dict[str, str]]
) -> None:
    anonymous_client.headers.update(users["viewer"])
    client, u = anonymous_client, users
    text = (FIXTURE_PLANS / "chlorine-leak.yaml").read_text(encoding="utf-8")
    assert "# Chlorine leak" in text
    made = client.post(BASE, content=text.encode(), headers={**YAML, **u["planner"]})
    assert made.status_code == 201, made.text
    approve_latest(client, db, "chlorine-leak")
    wanted = {"Accept": "application/yaml", **u["viewer"]}
    url = f"{BASE}/chlorine-leak"
    assert client.get(url, params={"approved": True}, headers=wanted).text == text
    edited = text.replace("acknowledge_within_s: 60", "acknowledge_within_s: 45  # 2026 drill", 1)
    assert edited != text
    saved = client.put(
        url, content=edited.encode(), headers={**YAML, **u["planner"], "If-Match": '"1"'}
    )
    assert saved.status_code == 200, saved.text
    # The draft has its text, the version in force still its own.
    assert client.get(url, headers=wanted).text == edited
    assert client.get(url, params={"approved": True}, headers=wanted).text == text
    approve_latest(client, db, "chlorine-leak")
    assert client.get(url, params={"approved": True}, headers=wanted).text == edited
    assert client.get(url, params={"version": 1}, headers=wanted).text == text


def test_every_transition_is_logged_chained_and_named_in_the_history(
    command: TestClient, db: Database, users: dict[str, dict[str, str]]
) -> None:
    u = users
    url = f"{BASE}/chlorine-leak"
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    with post.hub.subscribe(DEMO_ID) as wall:
        saved = command.put(
            url,
            json=demo_plan_with_step(command, "l1-logged"),
            headers={**u["planner"], "If-Match": '"1"'},
        )
        assert saved.status_code == 200, saved.text
        approve_latest(command, db, "chlorine-leak")
        command.get("/healthz")  # the app's loop has run what was handed to it
        sent = []
        while not wall.queue.empty():
            sent.append(wall.queue.get_nowait())
    logged = [
        e
        for e in command.get(f"{SITE}/events", params={"limit": 1000}).json()["events"]
        if e["type"].startswith("plan_version.")
    ]
    assert [(e["type"], e["actor"], e["data"]["version"]) for e in logged] == [
        ("plan_version.saved", "pl-wang", 2),
        ("plan_version.submitted", "wf-submitter", 2),
        ("plan_version.approved", "wf-approver", 2),
    ]
    assert [m["event"]["seq"] for m in sent if m["type"] == "event"] == [e["seq"] for e in logged]
    approved = logged[-1]["data"]
    assert (approved["supersedes"], approved["from"], approved["status"]) == (
        1,
        "submitted",
        "approved",
    )
    version_2 = command.get(url, params={"version": 2}).json()
    # The event holds the digest of exactly the plan that was approved.
    assert approved["body_sha256"] == body_digest(version_2["template"])
    assert [h.get("seq") for h in version_2["history"]] == [e["seq"] for e in logged]
    version_1 = command.get(url, params={"version": 1}).json()
    assert version_1["history"][-1] == {
        "action": "superseded",
        "by": "wf-approver",
        "at": logged[-1]["at"],
        "by_version": 2,
        "seq": logged[-1]["seq"],
    }
    with db.read() as session:  # the log is still one unbroken chain
        checked, breaks = event_log.verify(session, DEMO_ID)
    assert breaks == [] and checked >= len(logged)


# -- the diff ----------------------------------------------------------------------------------


def next_version() -> dict[str, Any]:
    """The sample plan with one change of each kind a reviewer must see."""
    new = plan_data()
    new["scenario"]["shelter_in_place"] = "Stay in the control room"
    l1 = new["levels"]["L1"]
    l1["steps"][1]["title"] = "Close the isolation valves"
    l1["steps"][1]["target"]["within_s"] = 240
    tree = l1["call_tree"][0]
    tree["acknowledge_within_s"] = 60
    tree["contacts"][0]["phone"] = "13800000009"
    tree["contacts"].append({"name": "Zhao Min", "phone": "13800000002", "channel": "radio"})
    l1["materials"][0]["quantity"] = 3
    l2 = new["levels"]["L2"]
    l2["steps"].pop()  # l2-curtain
    l2["steps"].append(step("l2-roadblock", "fire_team", 900))
    l2["scripts"][0]["text"] = "{site}发生{substance}泄漏，请关闭门窗，远离{location}。"
    moved = new["levels"]["L3"]["steps"].pop()  # l3-report-bureau goes up to L4
    new["levels"]["L4"]["steps"].append(moved)
    new["levels"]["L4"]["materials"] = [{"kind": "spill_kit", "quantity": 1}]
    return new


#: Read off next_version() by hand: what changed, in the plan's order.
EXPECTED_CHANGES = [
    (
        "scenario",
        "changed",
        None,
        "chlorine-leak",
        [("shelter_in_place", None, "Stay in the control room")],
    ),
    (
        "step",
        "changed",
        "L1",
        "l1-isolate",
        [("title", "l1 isolate", "Close the isolation valves"), ("target.within_s", 300, 240)],
    ),
    (
        "call_tree",
        "changed",
        "L1",
        "shift_leader",
        [
            ("acknowledge_within_s", 120, 60),
            ("contacts", ["Wang Lei"], ["Wang Lei", "Zhao Min"]),
            ("contacts[Wang Lei].phone", "13800000001", "13800000009"),
            ("contacts[Zhao Min]", None, {"phone": "13800000002", "channel": "radio"}),
        ],
    ),
    ("material", "changed", "L1", "scba", [("quantity", 2, 3)]),
    ("step", "added", "L2", "l2-roadblock", []),
    ("step", "removed", "L2", "l2-curtain", []),
    (
        "script",
        "changed",
        "L2",
        "l2-neighbours-zh",
        [
            (
                "text",
                "{site}发生{substance}泄漏，位置{location}，请关闭门窗。",
                "{site}发生{substance}泄漏，请关闭门窗，远离{location}。",
            )
        ],
    ),
    ("step", "changed", "L4", "l3-report-bureau", [("level", "L3", "L4")]),
    ("material", "added", "L4", "spill_kit", []),
]
EXPECTED_TEXT = """\
plan chlorine-leak: version 1 (approved) -> version 2 (draft), 9 changes
scenario chlorine-leak changed: shelter_in_place (none) -> "Stay in the control room"
L1 step l1-isolate (Close the isolation valves) changed: title "l1 isolate" -> "Close the \
isolation valves"; target.within_s 300 -> 240
L1 call tree shift_leader changed: acknowledge_within_s 120 -> 60; contacts ["Wang Lei"] -> \
["Wang Lei", "Zhao Min"]; contacts[Wang Lei].phone 13800000001 -> 13800000009; contacts[Zhao Min] \
(none) -> {"channel": "radio", "phone": "13800000002"}
L1 materials scba changed: quantity 2 -> 3
L2 step l2-roadblock (l2 roadblock) added: role fire_team, due 900 s after activation
L2 step l2-curtain (l2 curtain) removed
L2 script l2-neighbours-zh changed: text \
{site}发生{substance}泄漏，位置{location}，请关闭门窗。 -> \
{site}发生{substance}泄漏，请关闭门窗，远离{location}。
L4 step l3-report-bureau (l3 report bureau) changed: level L3 -> L4
L4 materials spill_kit added: 1
"""


def test_the_diff_of_steps_levels_contacts_materials_and_scripts(
    anonymous_client: TestClient, db: Database, users: dict[str, dict[str, str]]
) -> None:
    anonymous_client.headers.update(users["viewer"])
    client, u = anonymous_client, users
    url = f"{BASE}/chlorine-leak"
    assert client.post(BASE, json=plan_data(), headers=u["planner"]).status_code == 201
    approve_latest(client, db, "chlorine-leak")
    saved = client.put(url, json=next_version(), headers={**u["planner"], "If-Match": '"1"'})
    assert saved.status_code == 200, saved.text
    answer = client.get(f"{url}/diff", params={"from": 1, "to": 2}, headers=u["viewer"])
    assert answer.status_code == 200, answer.text
    found = answer.json()
    got = [
        (
            c["kind"],
            c["change"],
            c["level"],
            c["id"],
            [(f["field"], f["from"], f["to"]) for f in c["fields"]],
        )
        for c in found["changes"]
    ]
    assert got == EXPECTED_CHANGES
    assert (found["from"]["status"], found["to"]["etag"]) == ("approved", "2")
    assert found["text"] == EXPECTED_TEXT
    # By default: from the version in force to the latest; as text on request.
    text = client.get(f"{url}/diff", headers={"Accept": "text/plain", **u["viewer"]})
    assert text.headers["content-type"].startswith("text/plain") and text.text == EXPECTED_TEXT
    same = client.get(f"{url}/diff", params={"from": 2, "to": 2}).json()
    assert same["changes"] == [] and same["text"].endswith("0 changes\n")
    assert_problem(client.get(f"{url}/diff", params={"from": 9}, headers=u["viewer"]), 404)
    assert_problem(client.get(f"{url}/diff", params={"from": 0}, headers=u["viewer"]), 422)


def test_a_reordered_plan_diffs_empty_and_plan_roles_and_levels_are_named() -> None:
    data = plan_data()
    reordered = {key: data[key] for key in reversed(list(data))}
    reordered["roles"] = list(reversed(data["roles"]))
    assert plan_diff(template_from_data(data), template_from_data(reordered)) == []
    # The schema alone (no validation) lets a level be missing: added, it is one entry and
    # its steps each another.
    old = copy.deepcopy(data)
    del old["levels"]["L4"]
    new = copy.deepcopy(data)
    new["title"] = "Chlorine leak (2026)"
    new["lead_departments"] = ["HSE Department"]
    new["roles"][1]["name_zh"] = "当班班长"
    new["roles"].append({"id": "medic", "name": "Site medic"})
    del new["roles"][2]  # muster_warden
    changes = plan_diff(template_from_data(old), template_from_data(new))
    assert [(c["kind"], c["change"], c["level"], c["id"], c["fields"]) for c in changes] == [
        (
            "plan",
            "changed",
            None,
            "chlorine-leak",
            [
                {"field": "title", "from": "Chlorine leak", "to": "Chlorine leak (2026)"},
                {
                    "field": "lead_departments",
                    "from": ["Production Safety Department"],
                    "to": ["HSE Department"],
                },
            ],
        ),
        (
            "role",
            "changed",
            None,
            "shift_leader",
            [{"field": "name_zh", "from": "班长", "to": "当班班长"}],
        ),
        ("role", "added", None, "medic", []),
        ("role", "removed", None, "muster_warden", []),
        ("level", "added", "L4", "L4", []),
        ("step", "added", "L4", "l4-group", []),
    ]
    assert diff_text(changes).splitlines()[-2:] == [
        "level L4 added",
        "L4 step l4-group (l4 group) added: role incident_commander, due 1800 s after activation",
    ]


# -- the command line and the migration --------------------------------------------------------


def test_the_operators_load_approves_and_the_cli_moves_a_draft_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = site_database(tmp_path / "cli.db")  # the demo site and plans, loaded approved
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", url)
    cli = CliRunner()
    listing = cli.invoke(main, ["plan", "list", "--site", DEMO_ID])
    assert listing.exit_code == 0, listing.output
    assert "chlorine-leak\tv1 approved\t" in listing.output
    edited = tmp_path / "chlorine-leak.yaml"
    text = (FIXTURE_PLANS / "chlorine-leak.yaml").read_text(encoding="utf-8")
    edited.write_text(text.replace("acknowledge_within_s: 60", "acknowledge_within_s: 45", 1))
    loaded = cli.invoke(
        main, ["plan", "load", str(edited), "--site", DEMO_ID, "--if-exists", "replace", "--draft"]
    )
    assert loaded.exit_code == 0, loaded.output
    assert loaded.output == "chlorine-leak: draft version 2\n"
    diff = cli.invoke(main, ["plan", "diff", "chlorine-leak", "--site", DEMO_ID])
    assert diff.output.splitlines()[1:] == [
        "L1 call tree shift_leader changed: acknowledge_within_s 60 -> 45"
    ]
    args = ["chlorine-leak", "--site", DEMO_ID, "--version"]
    stale = cli.invoke(main, ["plan", "submit", *args, "1", "--change-note", "faster"])
    assert stale.exit_code == 1 and '"1"' in stale.output
    sent = cli.invoke(main, ["plan", "submit", *args, "2", "--change-note", "faster"])
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("chlorine-leak version 2 (2): submitted (event ")
    # The operator who submitted it may not approve it.
    mine = cli.invoke(main, ["plan", "approve", *args, "2"])
    assert mine.exit_code == 1 and "four eyes" in mine.output
    back = cli.invoke(main, ["plan", "return", *args, "2"])
    assert back.exit_code == 1 and "reason" in back.output
    back = cli.invoke(main, ["plan", "return", *args, "2", "--reason", "check the radio"])
    assert back.exit_code == 0 and ": draft" in back.output
    # An approved load does not overtake an open draft.
    refused = cli.invoke(
        main, ["plan", "load", str(edited), "--site", DEMO_ID, "--if-exists", "replace"]
    )
    assert refused.exit_code == 1 and "version 2 is draft" in refused.output
    gone = cli.invoke(main, ["plan", "withdraw", *args, "2"])
    assert gone.exit_code == 0 and ": withdrawn" in gone.output
    versions = cli.invoke(main, ["plan", "versions", "chlorine-leak", "--site", DEMO_ID])
    lines = versions.output.splitlines()
    assert lines[0].startswith("v1\t1\tapproved\tloaded from chlorine-leak.yaml")
    assert [line.split("\t")[1] for line in lines if line.startswith("  ")] == [
        "saved",
        "approved",
        "saved",
        "submitted",
        "returned",
        "withdrawn",
    ]
    # The operator's load (no --draft) approves at once, and says so in the log.
    approved = cli.invoke(
        main, ["plan", "load", str(edited), "--site", DEMO_ID, "--if-exists", "replace"]
    )
    assert approved.output == "chlorine-leak: version 3\n"
    listing = cli.invoke(main, ["plan", "list", "--site", DEMO_ID])
    assert "chlorine-leak\tv3 approved\t" in listing.output
    engine = make_engine(url)
    try:
        with Database(engine).read() as session:
            kinds = [
                (e.type, e.data["version"], e.data.get("via"))
                for e in event_log.since(session, DEMO_ID, 0)
                if e.type.startswith("plan_version.")
            ]
    finally:
        engine.dispose()
    assert kinds[-2:] == [
        ("plan_version.saved", 3, "plan load"),
        ("plan_version.approved", 3, "plan load"),
    ]


#: The tables as migration 0010 left them (the models have moved on).
OLD_SITES = sa.table(
    "sites",
    *(sa.column(c) for c in ("id", "name", "timezone", "crs", "version", "created_by")),
    *(sa.column(c) for c in ("updated_by",)),
    sa.column("boundary", Geometry("POLYGON")),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
OLD_SITE = {
    "id": "old-works",
    "name": "Old works",
    "timezone": "UTC",
    "crs": None,
    "boundary": box(121.0, 30.0, 121.01, 30.01),
}
OLD_PLANS = sa.table(
    "plan_templates",
    *(sa.column(c) for c in ("site_id", "plan_id", "version", "title", "scenario_key")),
    sa.column("body", sa.JSON()),
    sa.column("created_at", UTCDateTime()),
    sa.column("created_by"),
)


def _audited(at: datetime, who: str) -> dict[str, Any]:
    return {"version": 1, "created_at": at, "created_by": who, "updated_at": at, "updated_by": who}


def _old_row(plan_id: str, version: int, at: datetime, who: str) -> dict[str, Any]:
    return {
        "site_id": "old-works",
        "plan_id": plan_id,
        "version": version,
        "title": plan_id,
        "scenario_key": plan_id,
        "body": {**plan_data(), "id": plan_id},
        "created_at": at,
        "created_by": who,
    }


@pytest.fixture(params=["sqlite", "postgis"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'workflow-migration.db'}"
    url = os.environ.get(POSTGIS_URL_ENV)
    if not url:
        pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset)")
    name = f"rallypoint_plan_workflow_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    admin = make_engine(url.rsplit("/", 1)[0] + "/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def test_the_migration_approves_the_latest_version_and_supersedes_the_others(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0010")
        at = [datetime(2026, 5, day, tzinfo=UTC) for day in (1, 2, 3)]
        with engine.begin() as conn:
            conn.execute(OLD_SITES.insert().values({**_audited(at[0], "li"), **OLD_SITE}))
            for plan_id, version, when, who in [
                ("chlorine-leak", 1, at[0], "li"),
                ("chlorine-leak", 2, at[1], "wang"),
                ("fire", 1, at[2], "li"),
            ]:
                conn.execute(OLD_PLANS.insert().values(_old_row(plan_id, version, when, who)))
        upgrade(engine, "0011")
        with engine.connect() as conn:
            found = conn.execute(
                select(
                    PlanTemplateRow.plan_id,
                    PlanTemplateRow.version,
                    PlanTemplateRow.status,
                    PlanTemplateRow.approved_by,
                    PlanTemplateRow.superseded_at,
                    PlanTemplateRow.revision,
                ).order_by(PlanTemplateRow.plan_id, PlanTemplateRow.version)
            ).all()
        assert [tuple(r) for r in found] == [
            ("chlorine-leak", 1, "superseded", "li", at[1], 1),
            ("chlorine-leak", 2, "approved", "wang", None, 1),
            ("fire", 1, "approved", "li", None, 1),
        ]
        # Down again, a draft newer than the approved version goes: it would be live.
        with engine.begin() as conn:
            conn.execute(
                insert(PlanTemplateRow.__table__).values(  # type: ignore[arg-type]
                    **_old_row("chlorine-leak", 3, at[2], "zhao"),
                    status="draft",
                    revision=1,
                    updated_at=at[2],
                    updated_by="zhao",
                    history=[],
                )
            )
        downgrade(engine, "0010")
        with engine.connect() as conn:
            left = conn.exec_driver_sql(
                "SELECT plan_id, version FROM plan_templates ORDER BY plan_id, version"
            ).all()
        assert [tuple(r) for r in left] == [("chlorine-leak", 1), ("chlorine-leak", 2), ("fire", 1)]
    finally:
        engine.dispose()
