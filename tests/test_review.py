"""The after-action review: generated from the log alone, checked against the log read
independently (``GET /events``); edited, signed off and frozen; flagged overdue after 72 hours;
its maps self-contained. Storage tests: they run on SQLite and PostGIS."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from command import events as event_log
from command.auth import Role
from command.post import CommandPost
from command.reviews import OVERDUE_AFTER, generate_review, review_hash
from gis.storage.db import Database
from gis.storage.tables import ReviewRow
from plans.clock import ManualClock
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, sign_in
from tests.problems import assert_problem

SITE = f"/api/sites/{DEMO_ID}"
REVIEWS = f"{SITE}/reviews"


def post_of(client: TestClient) -> CommandPost:
    post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
    return post


def step(client: TestClient, incident: str, step_id: str, **done: Any) -> None:
    """Acknowledge, start and complete a step, all at the clock's present time."""
    base = f"{SITE}/incidents/{incident}/steps/{step_id}"
    for action in ("acknowledge", "start"):
        assert client.post(f"{base}/{action}").status_code == 200, step_id
    answer = client.post(f"{base}/complete", json=done or None)
    assert answer.status_code == 200, answer.text


def all_events(client: TestClient) -> list[dict[str, Any]]:
    """The site's log through the API, page by page."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(f"{SITE}/events", params={"after": after}).json()
        out += page["events"]
        if "next" not in page:
            return out
        after = out[-1]["seq"]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def run_incident(command: TestClient, clock: ManualClock) -> str:
    """A chlorine release at L2 worked through the API: one step early, two late, the
    headcount reported, a call-out acknowledged for its contact, then a forced stand-down."""
    answer = command.post(f"{SITE}/incidents", json=CHLORINE_ACTIVATION)
    assert answer.status_code == 201, answer.text
    incident: str = answer.json()["incident"]["id"]
    requested = [
        e
        for e in all_events(command)
        if e["type"] == "notification.requested" and e["incident_id"] == incident
    ]
    ack = command.post(f"{SITE}/notifications/{requested[1]['seq']}/ack", json={"channel": "radio"})
    assert ack.status_code == 200, ack.text
    clock.advance(30)
    step(command, incident, "l1-remote-isolate")  # due +180 s: 150 s early
    clock.advance(170)
    step(command, incident, "l1-detect-report", reference="radio to the control room")  # +80 s
    clock.advance(200)
    step(command, incident, "l1-dispatch")  # due 60 s after l1-detect-report: +140 s
    post_of(command).tick()  # the passed due times are logged as overdue
    step(command, incident, "l1-warn-nearby")
    step(command, incident, "l2-workshop-alarm")
    clock.advance(95)
    step(command, incident, "l2-headcount", value=999)
    clock.advance(60)
    down = command.post(
        f"{SITE}/incidents/{incident}/stand-down", json={"force": True, "reason": "test over"}
    )
    assert down.status_code == 200, down.text
    return incident


def generate(command: TestClient, db: Database, clock: ManualClock, incident: str) -> None:
    """The review: made when the incident stood down (the app does it; checked the first time
    here), then made again from the log on each later call."""
    post = post_of(command)
    if incident not in _GENERATED:
        _GENERATED.add(incident)
        with db.read() as session:
            row = session.get(ReviewRow, (DEMO_ID, incident))
            assert row is not None and row.version == 1, "no review made at the stand-down"
        return
    generate_review(db, post.model(DEMO_ID), DEMO_ID, incident, now=clock.now())


#: Incidents whose review a test has seen made at the stand-down.
_GENERATED: set[str] = set()


def test_a_real_incidents_review_says_what_the_log_says(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = run_incident(command, clock)
    generate(command, db, clock, incident)
    answer = command.get(f"{REVIEWS}/{incident}")
    assert answer.status_code == 200, answer.text
    review = answer.json()
    assert answer.headers["etag"] == '"1"' and review["review"]["version"] == 1
    assert review["kind"] == "incident" and review["drill"] is None

    # The log, read independently: targets from the template and the events, as the plan
    # says them ("within N s of activation", or of another step's completion).
    events = [e for e in all_events(command) if e["incident_id"] == incident]
    assert [e["seq"] for e in review["timeline"]] == [e["seq"] for e in events]
    activated = when(events[0]["at"])
    template = next(e for e in events if e["type"] == "plan.run.activated")["data"]["data"][
        "template"
    ]
    plan_steps = {
        s["id"]: s for lv in ("L1", "L2") for s in template["levels"][lv].get("steps", [])
    }
    done = {e["data"]["step_id"]: e for e in events if e["type"] == "plan.step.done"}
    overdue = {e["data"]["step_id"]: e for e in events if e["type"] == "plan.step.overdue"}
    rows = {s["step_id"]: s for s in review["steps"]}
    assert set(rows) == set(plan_steps)
    for step_id, spec in plan_steps.items():
        after, within = spec["target"].get("after", "activation"), spec["target"]["within_s"]
        if after == "activation":
            target: datetime | None = activated + timedelta(seconds=within)
        elif after in done:
            target = when(done[after]["at"]) + timedelta(seconds=within)
        else:
            target = None
        row = rows[step_id]
        assert row["target_at"] == (target.isoformat() if target else None), step_id
        if step_id in overdue:  # the engine stamps a step's overdue event with its due time
            assert overdue[step_id]["data"]["at"] == row["target_at"], step_id
        if step_id in done:
            actual = when(done[step_id]["at"])
            assert row["actual_at"] == actual.isoformat()
            assert row["status"] == "done"
            assert row["by"] == done[step_id]["data"]["actor"] == "cmd-zhou"
            assert target is not None
            assert row["deviation_s"] == round((actual - target).total_seconds(), 3)
        else:
            assert row["actual_at"] is None and row["deviation_s"] is None
    assert rows["l1-remote-isolate"]["deviation_s"] == -150
    assert rows["l1-detect-report"]["deviation_s"] == 80
    assert rows["l1-dispatch"]["deviation_s"] == 140

    # The call-out: the acknowledged role as its events say.
    ack = next(e for e in events if e["type"] == "notification.acknowledged")
    asked = next(e for e in events if e["seq"] == ack["data"]["notification"])
    role = next(r for r in review["callout"]["roles"] if asked["seq"] in r["notices"])
    assert role["status"] == "acknowledged" and role["acknowledged_at"] == ack["at"]
    assert role["acknowledged_by"] == "cmd-zhou"
    assert role["acknowledged_s"] == round((when(ack["at"]) - when(asked["at"])).total_seconds(), 3)
    within = asked["data"]["acknowledge_within_s"]
    assert role["deviation_s"] == round(
        (when(ack["at"]) - when(asked["at"]) - timedelta(seconds=within)).total_seconds(), 3
    )
    notice = next(n for n in review["callout"]["notices"] if n["seq"] == asked["seq"])
    assert notice["delivered_at"] is None and notice["status"] == "acknowledged"

    # Muster: the warden's headcount counted everyone who had to move.
    closed = next(e for e in events if e["type"] == "incident.closed")
    muster = review["muster"]
    assert muster["to_move"] == closed["data"]["to_move"] > 0
    assert muster["complete_at"] == done["l2-headcount"]["at"]
    assert muster["complete_by"] == "cmd-zhou" and muster["verdict"] == "complete"

    # The improvement plan: the largest deviations first, open steps past due among them.
    plan = review["improvement_plan"]
    late = [i["lateness_s"] for i in plan]
    assert late == sorted(late, key=lambda v: -(v or 0))
    ids = [i["id"] for i in plan]
    assert ids.index("step:l1-dispatch") < ids.index("step:l1-detect-report")
    assert "step:l1-remote-isolate" not in ids  # early is no deviation
    assert all(
        i["cause"] is None and set(i["corrective_action"]) == {"action", "owner", "due"}
        for i in plan
    )
    open_step = next(i for i in plan if i["id"] == "step:l1-absorption")
    assert open_step["deviation_s"] is None and open_step["lateness_s"] > 0

    # The maps: activation and the first full muster (no wind changed).
    assert [m["moment"] for m in review["maps"]] == ["activation", "muster"]
    assert all(m["threat"]["features"] and m["error"] is None for m in review["maps"])
    assert review["source"]["last_hash"] == events[-1]["hash"]


def test_edits_need_the_version_and_stop_at_sign_off(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = run_incident(command, clock)
    generate(command, db, clock, incident)
    url = f"{REVIEWS}/{incident}"
    item = {"cause": "radio channel busy", "action": "a second channel", "owner": "Li Qiang"}
    edit = {"items": {"step:l1-dispatch": item}}
    assert_problem(command.patch(url, json=edit), 428, field="version")
    assert_problem(command.patch(url, json=edit, headers={"If-Match": '"7"'}), 412, field="version")
    assert_problem(command.patch(url, json={**edit, "version": 7}), 409, field="version")
    unknown = {"items": {"step:no-such": item}, "version": 1}
    assert_problem(command.patch(url, json=unknown), 422, field="items.step:no-such")
    assert_problem(command.patch(url, json={"items": {}, "version": 1}), 422, field="items")
    assert_problem(
        command.patch(url, json={"items": {"step:l1-dispatch": {"due": "soon"}}, "version": 1}),
        422,
    )

    answer = command.patch(url, json=edit, headers={"If-Match": '"1"'})
    assert answer.status_code == 200, answer.text
    assert answer.headers["etag"] == '"2"'
    planned = {i["id"]: i for i in answer.json()["improvement_plan"]}["step:l1-dispatch"]
    assert planned["cause"] == "radio channel busy"
    assert planned["corrective_action"] == {
        "action": "a second channel",
        "owner": "Li Qiang",
        "due": None,
    }
    # Only what is given changes; null clears; an item on time may be given a note too.
    again = {
        "version": 2,
        "items": {
            "step:l1-dispatch": {"owner": None, "due": "2026-07-01"},
            "step:l1-remote-isolate": {"cause": "well drilled"},
        },
    }
    review = command.patch(url, json=again).json()
    planned = {i["id"]: i for i in review["improvement_plan"]}
    assert planned["step:l1-dispatch"]["cause"] == "radio channel busy"
    assert planned["step:l1-dispatch"]["corrective_action"] == {
        "action": "a second channel",
        "owner": None,
        "due": "2026-07-01",
    }
    assert planned["step:l1-remote-isolate"]["rank"] is None
    assert review["edits"]["step:l1-dispatch"] == {
        "cause": "radio channel busy",
        "action": "a second channel",
        "due": "2026-07-01",
    }

    assert_problem(command.post(f"{url}/sign-off", headers={"If-Match": '"2"'}), 412)
    clock.advance(3600)
    signed = command.post(f"{url}/sign-off", headers={"If-Match": '"3"'})
    assert signed.status_code == 200, signed.text
    review = signed.json()
    meta = review["review"]
    assert meta["state"] == "signed_off" and meta["signed_off_by"] == "cmd-zhou"
    assert meta["signed_off_at"] == clock.now().isoformat()
    # Anyone can check the hash from the JSON: the body is the review less what serving adds.
    body = {k: v for k, v in review.items() if k not in ("edits", "improvement_plan", "review")}
    assert meta["hash"] == review_hash(body, review["edits"])
    logged = [e for e in all_events(command) if e["type"] == "review.signed_off"]
    assert len(logged) == 1 and logged[0]["incident_id"] == incident
    assert logged[0]["data"] == {
        "incident_id": incident,
        "drill_id": None,
        "hash": meta["hash"],
        "by": "cmd-zhou",
        "version": 3,
    }
    assert logged[0]["at"] == clock.now().isoformat()
    with db.read() as session:
        assert event_log.verify(session, DEMO_ID)[1] == []

    # Frozen: no edit, no second sign-off, and generating again changes nothing.
    frozen = {"items": {"step:l1-dispatch": {"cause": "changed"}}, "version": 3}
    assert_problem(command.patch(url, json=frozen), 409, field="review")
    assert_problem(command.post(f"{url}/sign-off", json={"version": 3}), 409, field="review")
    generate(command, db, clock, incident)
    assert command.get(url).json() == review


def test_generated_again_a_draft_keeps_its_edits(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = run_incident(command, clock)
    generate(command, db, clock, incident)
    url = f"{REVIEWS}/{incident}"
    edit = {"items": {"step:l1-dispatch": {"cause": "radio channel busy"}}, "version": 1}
    assert command.patch(url, json=edit).status_code == 200
    clock.advance(60)
    generate(command, db, clock, incident)
    review = command.get(url).json()
    assert review["review"]["version"] == 3  # an edit made on version 2 is now stale
    assert review["review"]["generated_at"] == clock.now().isoformat()
    assert review["edits"] == {"step:l1-dispatch": {"cause": "radio channel busy"}}
    assert_problem(command.patch(url, json={**edit, "version": 2}), 409, field="version")


def test_a_review_not_signed_off_in_72_hours_is_overdue(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = run_incident(command, clock)
    ended = clock.now()
    generate(command, db, clock, incident)

    def listed() -> dict[str, Any]:
        found = command.get(REVIEWS).json()["reviews"]
        assert [r["incident_id"] for r in found] == [incident]
        entry: dict[str, Any] = found[0]
        return entry

    assert listed()["overdue"] is False
    assert listed()["due_at"] == (ended + OVERDUE_AFTER).isoformat()
    clock.advance(OVERDUE_AFTER - timedelta(seconds=1))
    assert listed()["overdue"] is False
    clock.advance(2)
    assert listed()["overdue"] is True
    assert command.get(f"{REVIEWS}/{incident}").json()["review"]["overdue"] is True
    signed = command.post(f"{REVIEWS}/{incident}/sign-off", json={"version": 1})
    assert signed.status_code == 200, signed.text
    assert listed()["overdue"] is False and listed()["state"] == "signed_off"


def test_who_reads_a_real_incidents_review(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = run_incident(command, clock)
    generate(command, db, clock, incident)
    url = f"{REVIEWS}/{incident}"
    controller = sign_in(db, "dc-li", [Role.DRILL_CONTROLLER])
    assert command.get(url, headers=controller).status_code == 200
    assert len(command.get(REVIEWS, headers=controller).json()["reviews"]) == 1
    edit = {"items": {"step:l1-dispatch": {"cause": "x"}}, "version": 1}
    assert_problem(command.patch(url, json=edit, headers=controller), 403, field="role")
    assert_problem(command.post(f"{url}/sign-off", headers=controller), 403, field="role")
    for role in (Role.VIEWER, Role.RESPONDER, Role.PLANNER):
        headers = sign_in(db, f"other-{role.value}", [role])
        assert_problem(command.get(url, headers=headers), 403, field="role")
        assert_problem(command.get(f"{url}/review.html", headers=headers), 403, field="role")
        assert_problem(command.get(REVIEWS, headers=headers), 403, field="role")
    assert_problem(command.get(f"{REVIEWS}/inc-nothing"), 404)


# -- a drill's review: the drill's events appended as the drill desk logs them -------------------


def drill_events(
    command: TestClient, db: Database, clock: ManualClock
) -> tuple[str, dict[str, datetime]]:
    """A drill on an exercise incident: activated through the API, its drill events appended
    (with the injected clock's times) as the vocabulary says, a hold and a suspension, a wind
    change, then the end and the stand-down."""
    answer = command.post(f"{SITE}/incidents", json=CHLORINE_ACTIVATION)
    assert answer.status_code == 201, answer.text
    incident: str = answer.json()["incident"]["id"]
    drill, t0 = "drill-7", clock.now()
    times: dict[str, datetime] = {"start": t0}

    def log(kind: str, data: dict[str, Any], *, at_s: float, own: bool = True) -> None:
        at = t0 + timedelta(seconds=at_s)
        times[f"{kind}@{at_s}"] = at
        with db.write() as session:
            event_log.append(
                session,
                DEMO_ID,
                kind,
                actor="drill:drill-7" if kind.startswith("drill.") else "system",
                data=data,
                incident_id=incident if own else None,
                at=at,
            )

    log(
        "drill.started",
        {
            "drill_id": drill,
            "scenario_id": "night-chlorine",
            "scenario_version": 2,
            "title": "Chlorine at night",
            "mode": "blind",
            "window": {"from": "2026-06-01T00:00:00+08:00"},
            "plan_id": "chlorine-leak",
            "level": "L2",
            "expected": [
                {
                    "id": "isolate",
                    "title": "Isolate the leak",
                    "target_s": 180,
                    "deadline_s": 300,
                    "on_miss": [],
                },
                {
                    "id": "muster",
                    "title": "Muster reported",
                    "target_s": 600,
                    "deadline_s": 900,
                    "on_miss": ["missing-contractor"],
                },
            ],
            "injects": [
                {"id": "detector", "kind": "reading", "at_s": 0, "title": "Cl2 rising"},
                {
                    "id": "missing-contractor",
                    "kind": "positions",
                    "at_s": None,
                    "title": "A contractor stuck in the warehouse",
                },
            ],
        },
        at_s=0,
    )
    log(
        "drill.inject",
        {
            "drill_id": drill,
            "inject_id": "detector",
            "kind": "reading",
            "title": "Cl2 rising",
            "at_s": 0,
            "planned_s": 0,
            "contingency_for": None,
            "early": False,
            "seqs": [],
        },
        at_s=1,
    )
    # An injected reading: logged with the drill's mark but no incident; and another drill's.
    log(
        "sensor.state",
        {"sensor_id": "GD-001", "from": None, "to": "alarm", "value": 3, "exercise": drill},
        at_s=2,
        own=False,
    )
    log(
        "sensor.state",
        {"sensor_id": "GD-002", "from": None, "to": "alarm", "value": 3, "exercise": "drill-77"},
        at_s=2,
        own=False,
    )
    log("drill.held", {"drill_id": drill, "reason": "radio check", "drill_s": 100}, at_s=100)
    log("drill.resumed", {"drill_id": drill, "reason": None, "drill_s": 100}, at_s=160)
    log(
        "drill.action_met",
        {
            "drill_id": drill,
            "expected_id": "isolate",
            "title": "Isolate the leak",
            "target_s": 180,
            "actual_s": 240,
            "deviation_s": 60,
            "seq": 3,
            "by": "cmd-zhou",
        },
        at_s=300,
    )
    log(
        "drill.note",
        {"drill_id": drill, "text": "通讯混乱 radio discipline poor", "drill_s": 290},
        at_s=350,
    )
    log(
        "drill.suspended",
        {
            "drill_id": drill,
            "reason": "a real alarm on GD-009",
            "by_sensor": "GD-009",
            "drill_s": 340,
        },
        at_s=400,
    )
    log("drill.resumed", {"drill_id": drill, "reason": "false alarm", "drill_s": 340}, at_s=500)
    wind = {
        **CHLORINE_ACTIVATION["hazard"],
        "wind_from_deg": 180,
        "wind_speed_m_s": 4,
        "release_height_m": 0.0,
        "sigma_set": "briggs-rural",
        "daytime": True,
        "insolation": "moderate",
        "cloud_cover_octas": None,
        "stability": None,
        "levels_ppm": None,
    }
    log(
        "incident.wind_changed",
        {"hazard": wind, "entered": {}, "left": {}, "rerouted": [], "exercise": drill},
        at_s=600,
    )
    log(
        "drill.action_missed",
        {
            "drill_id": drill,
            "expected_id": "muster",
            "title": "Muster reported",
            "target_s": 600,
            "deadline_s": 900,
            "contingencies": ["missing-contractor"],
            "drill_s": 900,
        },
        at_s=1060,
    )
    log(
        "drill.inject",
        {
            "drill_id": drill,
            "inject_id": "missing-contractor",
            "kind": "positions",
            "title": "A contractor stuck in the warehouse",
            "at_s": 900,
            "planned_s": None,
            "contingency_for": "muster",
            "early": False,
            "seqs": [],
        },
        at_s=1060,
    )
    log(
        "drill.ended",
        {"drill_id": drill, "aborted": False, "reason": "objectives met", "drill_s": 1040},
        at_s=1200,
    )
    clock.advance(1210)
    down = command.post(
        f"{SITE}/incidents/{incident}/stand-down",
        json={"force": True, "reason": "EXERCISE / 演练: drill ended"},
    )
    assert down.status_code == 200, down.text
    return incident, times


def test_a_drills_review_from_its_events(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident, times = drill_events(command, db, clock)
    generate(command, db, clock, incident)
    controller = sign_in(db, "dc-li", [Role.DRILL_CONTROLLER])
    review = command.get(f"{REVIEWS}/{incident}", headers=controller).json()
    assert review["kind"] == "drill" and review["drill_id"] == "drill-7"
    drill = review["drill"]
    assert drill["title"] == "Chlorine at night" and drill["mode"] == "blind"
    assert drill["paused_s"] == 60 + 100 and drill["drill_s"] == 1040
    assert review["ended_at"] == times["drill.ended@1200"].isoformat()

    # The timeline holds the drill's own unattached event, not another drill's; drill time
    # stops while held or suspended.
    timeline = {e["type"] + "@" + e["at"]: e for e in review["timeline"]}
    injected = [e for e in review["timeline"] if e["type"] == "sensor.state"]
    assert len(injected) == 1 and "GD-001" in injected[0]["what"]
    wind = timeline["incident.wind_changed@" + times["incident.wind_changed@600"].isoformat()]
    assert wind["drill_s"] == 600 - 60 - 100
    note = review["notes"][0]
    assert note["kind"] == "evaluator" and note["text"].startswith("通讯混乱")
    assert note["drill_s"] == 290 and note["by"] == "drill:drill-7"

    actions = {a["expected_id"]: a for a in review["actions"]}
    assert actions["isolate"]["status"] == "met" and actions["isolate"]["deviation_s"] == 60
    assert actions["isolate"]["by"] == "cmd-zhou"
    assert actions["muster"]["status"] == "missed"
    assert actions["muster"]["contingencies"] == ["missing-contractor"]
    contingency = [i for i in review["injects"] if i["contingency_for"]]
    assert [i["inject_id"] for i in contingency] == ["missing-contractor"]
    held, suspended = review["interruptions"]
    assert (held["kind"], held["duration_s"]) == ("held", 60)
    assert (suspended["kind"], suspended["by_sensor"], suspended["duration_s"]) == (
        "suspended",
        "GD-009",
        100,
    )
    plan_ids = [i["id"] for i in review["improvement_plan"]]
    assert "action:isolate" in plan_ids and "action:muster" in plan_ids
    assert [m["moment"] for m in review["maps"]] == ["activation", "wind_change"]
    assert review["maps"][1]["hazard"]["wind_from_deg"] == 180
    # The wind turned: the zones drawn for it differ from the activation's.
    assert review["maps"][0]["threat"] != review["maps"][1]["threat"]


def test_a_drills_review_is_the_drill_controllers(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident, _ = drill_events(command, db, clock)
    generate(command, db, clock, incident)
    url = f"{REVIEWS}/{incident}"
    controller = sign_in(db, "dc-li", [Role.DRILL_CONTROLLER])
    viewer = sign_in(db, "viewer-wu", [Role.VIEWER])
    # Nobody else learns it exists: the same 404 as for no review at all.
    missing = assert_problem(command.get(f"{REVIEWS}/inc-nothing"), 404)
    for headers in ({}, viewer):  # {}: the commander, before sign-off
        body = assert_problem(command.get(url, headers=headers), 404)
        assert body["detail"].replace(incident, "X") == missing["detail"].replace(
            "inc-nothing", "X"
        )
        assert_problem(command.get(f"{url}/review.html", headers=headers), 404)
        assert_problem(command.get(f"{url}/maps/activation", headers=headers), 404)
    edit = {"items": {"action:isolate": {"cause": "x"}}, "version": 1}
    assert_problem(command.patch(url, json=edit), 404)
    assert_problem(command.post(f"{url}/sign-off", json={"version": 1}), 404)
    assert command.get(REVIEWS).json()["reviews"] == []

    assert command.patch(url, json=edit, headers=controller).status_code == 200
    signed = command.post(f"{url}/sign-off", json={"version": 2}, headers=controller)
    assert signed.status_code == 200, signed.text
    logged = next(e for e in all_events(command) if e["type"] == "review.signed_off")
    assert logged["data"]["drill_id"] == "drill-7" and logged["data"]["exercise"] == "drill-7"
    # Signed off: commanders read it (not change it); others still see nothing.
    assert command.get(url).status_code == 200
    assert [r["incident_id"] for r in command.get(REVIEWS).json()["reviews"]] == [incident]
    assert_problem(command.patch(url, json={**edit, "version": 3}), 403, field="role")
    assert_problem(command.get(url, headers=viewer), 404)
    assert_problem(
        command.patch(url, json={**edit, "version": 3}, headers=controller), 409, field="review"
    )


# -- the exports ---------------------------------------------------------------------------------


class Links(HTMLParser):
    """Every URL an element would load (script, stylesheet, image, frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and tag in ("script", "link", "img", "iframe"):
                self.loads.append(value or "")


def external(page: str) -> list[str]:
    parser = Links()
    parser.feed(page)
    return [u for u in parser.loads if u.startswith(("http:", "https:", "//"))]


def cdn_hosts(page: str) -> list[str]:
    """The CDNs folium links by default, named anywhere in the page."""
    hosts = ("cdn.jsdelivr.net", "code.jquery.com", "cdnjs.cloudflare.com", "bootstrapcdn.com")
    return [h for h in hosts if h in page]


def test_the_maps_are_self_contained(command: TestClient, db: Database, clock: ManualClock) -> None:
    incident, _ = drill_events(command, db, clock)
    generate(command, db, clock, incident)
    controller = sign_in(db, "dc-li", [Role.DRILL_CONTROLLER])
    url = f"{REVIEWS}/{incident}"
    page = command.get(f"{url}/maps/wind-1", headers=controller)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert external(text) == [] and not cdn_hosts(text)
    assert "Leaflet 1.9" in text and "L.map(" in text  # inlined, and used
    assert (
        "L.tileLayer(" not in text and "sourceMappingURL" not in text
    )  # no tiles: the site's own features instead
    assert "Muster point N1" in text and "AEGL" in text

    png = command.get(f"{url}/maps/wind-1", params={"format": "png"}, headers=controller)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    image.load()
    assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 300
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20  # drawn
    assert_problem(command.get(f"{url}/maps/nowhere", headers=controller), 404, field="map_id")


def test_the_printable_review_is_one_self_contained_document(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = run_incident(command, clock)
    generate(command, db, clock, incident)
    answer = command.get(f"{REVIEWS}/{incident}/review.html")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["content-disposition"].startswith("attachment;")
    page = answer.text
    assert external(page) == [] and not cdn_hosts(page)
    assert page.count('src="data:image/png;base64,') == 2  # activation, muster
    assert page.count("<iframe") == 2 and 'sandbox="allow-scripts"' in page
    assert "氯气泄漏专项应急预案" in page  # the plan's Chinese title, for a CJK font
    assert "Noto Sans CJK SC" in page and "fonts-noto-cjk" in page
    assert "l1-dispatch" in page and "Improvement plan" in page
    parser = Links()
    parser.feed(page)
    assert parser.tags.count("table") >= 5


@pytest.mark.parametrize("kind", ["not ended", "unknown"])
def test_a_review_needs_an_ended_incident(
    command: TestClient, db: Database, clock: ManualClock, kind: str
) -> None:
    post = post_of(command)
    incident = "inc-none"
    if kind == "not ended":
        answer = command.post(f"{SITE}/incidents", json=CHLORINE_ACTIVATION)
        incident = answer.json()["incident"]["id"]
    from gis.errors import IllegalTransition, NotFound

    error = IllegalTransition if kind == "not ended" else NotFound
    with pytest.raises(error):
        generate_review(db, post.model(DEMO_ID), DEMO_ID, incident, now=clock.now())
