"""Double-blind drills end to end on the test clock (issue 14): a scenario written by a drill
controller, a start drawn inside a window and sealed, injects through the real inputs, players
acting late so a contingency fires, a real alarm suspending the drill, and the timings the log
holds, read back independently from ``GET /events``."""

from __future__ import annotations

import copy
import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
import shapely.geometry
import yaml
from fastapi.testclient import TestClient

from command.auth import Role
from command.notifications import Notice
from command.post import CommandPost
from gis.storage.db import Database
from gis.storage.tables import DrillRow
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in, zone_centroid

SITE = f"/api/sites/{DEMO_ID}"
DRILLS = f"{SITE}/drills"
CL2, WIND = "S-057", "S-005"
CONTRACTOR = "P-0010"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FIXTURES = Path(__file__).parent.parent / "fixtures"

#: The demo site's night chlorine drill (docs/drills.md): a release at the chlorine store, a
#: missing contractor, a wind shift at +12 min, and a contingency if the first report is late.
SCENARIO: dict[str, Any] = {
    "id": "night-chlorine",
    "title": "Chlorine release at night, a missing contractor",
    "title_zh": "夜间氯气泄漏，一名承包商失联",
    "plan_id": "chlorine-leak",
    "level": "L1",
    "location": {"type": "Point", "coordinates": zone_centroid("Z-027")},
    "hazard": {
        "model": "toxic_release",
        "substance": "chlorine",
        "rate_g_s": 500,
        "wind_speed_m_s": 2,
        "wind_from_deg": 45,
    },
    "injects": [
        {
            "id": "detector-rises",
            "title": "Cl2 detector at the store reads 1.4 ppm",
            "kind": "reading",
            "at_s": 0,
            "readings": [{"sensor_id": CL2, "value": 1.4}],
        },
        {
            "id": "contractor-missing",
            "title": "A contractor stays in the liquefaction building",
            "kind": "positions",
            "at_s": 60,
            "positions": [
                {
                    "person_id": CONTRACTOR,
                    "lon": zone_centroid("Z-027")[0],
                    "lat": zone_centroid("Z-027")[1],
                }
            ],
        },
        {
            "id": "wind-shift",
            "title": "The wind turns to the south-west",
            "kind": "wind",
            "at_s": 720,
            "readings": [{"sensor_id": WIND, "value": 3.0, "direction_deg": 225}],
        },
        {
            "id": "smell-at-gate",
            "title": "The gate reports a pungent smell",
            "kind": "message",
            "text": "Gate 2: strong pungent smell at the gatehouse, two guards coughing",
        },
    ],
    "expected": [
        {
            "id": "first-report",
            "title": "The shift leader acknowledges the detection report",
            "target_s": 60,
            "deadline_s": 120,
            "when": {"type": "plan.step.acknowledged", "data": {"step_id": "l1-detect-report"}},
            "on_miss": ["smell-at-gate"],
        },
        {
            "id": "isolate",
            "title": "Remote isolation started",
            "target_s": 180,
            "deadline_s": 1800,
            "when": {"type": "plan.step.acknowledged", "data": {"step_id": "l1-remote-isolate"}},
        },
    ],
}


@pytest.fixture
def controller(db: Database) -> dict[str, str]:
    return sign_in(db, "ctl-wang", [Role.DRILL_CONTROLLER])


def post_of(client: TestClient) -> CommandPost:
    post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
    return post


def events(client: TestClient, after: int = 0) -> list[dict[str, Any]]:
    answer = client.get(f"{SITE}/events", params={"after": after, "limit": 1000})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=SHANGHAI)


#: A drill's controller material (command.drills.PRIVATE): the players never see it while it runs.
PRIVATE = ("drill.inject", "drill.action_met", "drill.action_missed", "drill.note")


def record(client: TestClient, controller: dict[str, str], drill_id: str) -> list[dict[str, Any]]:
    """The drill's own events so far, as the controller's console reads them."""
    answer = client.get(f"{DRILLS}/{drill_id}/events", headers=controller)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def activate_real(client: TestClient, *, second: bool = False) -> Any:
    """A real activation of the drill's plan at the drill's place (the answer)."""
    return client.post(
        f"{SITE}/incidents",
        json={
            "plan_id": "chlorine-leak",
            "level": "L1",
            "location": SCENARIO["location"],
            "hazard": SCENARIO["hazard"],
            **({"second_incident": True} if second else {}),
        },
    )


def write_scenario(
    client: TestClient, controller: dict[str, str], scenario: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer = client.post(f"{DRILLS}/scenarios", json=scenario or SCENARIO, headers=controller)
    assert answer.status_code == 201, answer.text
    saved: dict[str, Any] = answer.json()
    return saved


def test_a_blind_drill_from_window_to_timings(
    command: TestClient, controller: dict[str, str], db: Database, clock: ManualClock
) -> None:
    post = post_of(command)
    real_calls: list[Notice] = []
    post.outbox = real_calls.extend  # the real gateway: a drill must never reach it
    write_scenario(command, controller)
    # 1. A window: Mon 1 June 16:00 to Tue 2 June 18:00 (Shanghai), not 19:30-20:30 nor at
    # night 23:00-07:00. The start is drawn inside it; the answer shows the window only.
    window = {
        "start": local(1, 16).isoformat(),
        "end": local(2, 18).isoformat(),
        "exclude": [{"from": "19:30", "to": "20:30"}, {"from": "23:00", "to": "07:00"}],
    }
    answer = command.post(
        DRILLS,
        json={"scenario_id": "night-chlorine", "mode": "blind", "window": window},
        headers=controller,
    )
    assert answer.status_code == 201, answer.text
    drill = answer.json()
    assert drill["state"] == "scheduled" and drill["window"]["exclude"][0] == {
        "from": "19:30",
        "to": "20:30",
    }
    assert "sealed_start" not in answer.text and drill["started_at"] is None
    with db.read() as session:
        row = session.get(DrillRow, drill["id"])
        assert row is not None and row.sealed_start is not None
        sealed = row.sealed_start
    at = sealed.astimezone(SHANGHAI)
    assert local(1, 16) <= at < local(2, 18)
    assert not (at.hour == 19 and at.minute >= 30) and not (at.hour == 20 and at.minute < 30)
    assert not (at.hour >= 23 or at.hour < 7)
    assert command.get(DRILLS, headers=controller).json()["drills"][0]["window"] == drill["window"]

    # Nothing of it reaches the log before it starts.
    before = events(command)
    clock.advance(sealed - clock.now() - timedelta(seconds=1))
    assert post.tick() == []
    assert events(command) == before
    # 2. The sealed moment: the drill starts, its incident is activated as an exercise.
    clock.advance(1)
    post.tick()
    log = events(command, after=before[-1]["seq"] if before else 0)
    started = next(e for e in log if e["type"] == "drill.started")
    activated = next(e for e in log if e["type"] == "incident.activated")
    incident_id = activated["incident_id"]
    assert started["data"]["incident_id"] == incident_id and started["data"]["mode"] == "blind"
    assert started["incident_id"] is None and started["data"]["exercise"] == drill["id"]
    assert activated["data"]["exercise"]["drill_id"] == drill["id"]
    assert all(
        e["data"].get("exercise") == drill["id"]
        for e in log
        if e["incident_id"] == incident_id and e["type"] != "incident.activated"
    )
    picture = command.get(f"{SITE}/incidents/{incident_id}").json()
    assert picture["incident"]["exercise"] == drill["id"]
    # The inject at 0 s went through the readings path, on the drill's own tiers.
    states = [e for e in log if e["type"] == "sensor.state"]
    assert states and states[0]["data"] == {
        "sensor_id": CL2,
        "substance": states[0]["data"]["substance"],
        "from": None,
        "to": "alarm",
        "value": 1.4,
        "exercise": drill["id"],
    }
    assert post.sensor_tiers.get(DEMO_ID, {}).get(CL2) is None  # the real detector: untouched
    assert post.last_readings.get(DEMO_ID, {}).get(CL2) is None
    # Isolation of the call tree: each call-out marked, none sent to the real gateway.
    requested = [e for e in log if e["type"] == "notification.requested"]
    assert requested and all(e["data"]["label"] == "EXERCISE / 演练" for e in requested)
    withheld = [e for e in log if e["type"] == "notification.withheld"]
    assert len(withheld) == len(requested) and real_calls == []

    # 3. The contractor goes missing at +60 s, through the positions path.
    clock.advance(60)
    post.tick()
    model = post.model(DEMO_ID)
    row_of = model.person_row[CONTRACTOR]
    assert list(model.person_lonlat[row_of]) == pytest.approx(zone_centroid("Z-027"))
    # The first report is late: its deadline (120 s) passes and the contingency fires.
    clock.advance(61)
    post.tick()
    log = events(command, after=started["seq"])
    # Controller material: in the drill's record for the console, never in the players' log.
    kept = record(command, controller, drill["id"])
    assert not any(e["type"] in PRIVATE for e in log)
    missed = next(e for e in kept if e["type"] == "drill.action_missed")
    assert missed["data"]["expected_id"] == "first-report"
    contingency = next(
        e for e in kept if e["type"] == "drill.inject" and e["data"]["inject_id"] == "smell-at-gate"
    )
    assert contingency["data"]["contingency_for"] == "first-report"
    note = next(e for e in log if e["type"] == "plan.note")
    assert "pungent smell" in note["data"]["data"]["text"]
    # The players act, late: acknowledged at +150 s.
    clock.advance(29)
    answer = command.post(
        f"{SITE}/incidents/{incident_id}/steps/l1-detect-report/acknowledge", json={}
    )
    assert answer.status_code == 200, answer.text
    post.tick()

    # 4. A real alarm suspends the drill at once; drill time stops.
    clock.advance(10)
    real = command.post(f"{SITE}/readings", json={"readings": [{"sensor_id": CL2, "value": 1.5}]})
    assert real.status_code == 200, real.text
    assert post.sensor_tiers[DEMO_ID][CL2] == "alarm"
    suspended = next(
        e for e in events(command, after=started["seq"]) if e["type"] == "drill.suspended"
    )
    assert suspended["data"]["by_sensor"] == CL2 and suspended["data"]["drill_s"] == 160
    clock.advance(900)  # past the wind shift's time in wall-clock time: nothing fires
    post.tick()
    assert not any(
        e["type"] == "drill.inject" and e["data"]["inject_id"] == "wind-shift"
        for e in record(command, controller, drill["id"])
    )
    resumed = command.post(
        f"{DRILLS}/{drill['id']}/resume", json={"reason": "false alarm checked"}, headers=controller
    )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["events"][0]["data"]["drill_s"] == 160
    # Remote isolation acknowledged at drill time 200 s (target 180: 20 s late).
    clock.advance(40)
    command.post(f"{SITE}/incidents/{incident_id}/steps/l1-remote-isolate/acknowledge", json={})
    post.tick()
    # The wind shift at +720 s of drill time re-evaluates the drill's plume only.
    clock.advance(520)
    post.tick()
    log = events(command, after=started["seq"])
    wind = next(e for e in log if e["type"] == "incident.wind_changed")
    assert wind["incident_id"] == incident_id and wind["data"]["exercise"] == drill["id"]
    # 5. The controller ends the drill: the incident stands down, the contractor goes back.
    ended = command.post(f"{DRILLS}/{drill['id']}/end", json={}, headers=controller)
    assert ended.status_code == 200, ended.text
    log = events(command, after=started["seq"])
    assert [e["type"] for e in log if e["type"] in ("drill.ended", "incident.closed")] == [
        "drill.ended",
        "incident.closed",
    ]
    assert list(model.person_lonlat[row_of]) != pytest.approx(zone_centroid("Z-027"))

    # The timings, read independently from the log: drill time = since the start, less the
    # suspension, against each expected action's target.
    start_at = datetime.fromisoformat(started["at"])
    pause = datetime.fromisoformat(resumed.json()["events"][0]["at"]) - datetime.fromisoformat(
        suspended["at"]
    )
    for expected_id, step in (
        ("first-report", "l1-detect-report"),
        ("isolate", "l1-remote-isolate"),
    ):
        met = next(
            e
            for e in log
            if e["type"] == "drill.action_met" and e["data"]["expected_id"] == expected_id
        )
        acted = next(
            e for e in log if e["type"] == "plan.step.acknowledged" and e["data"]["step_id"] == step
        )
        elapsed = datetime.fromisoformat(acted["at"]) - start_at
        if datetime.fromisoformat(acted["at"]) > datetime.fromisoformat(suspended["at"]):
            elapsed -= pause
        target = next(x for x in SCENARIO["expected"] if x["id"] == expected_id)["target_s"]
        assert met["data"]["actual_s"] == elapsed.total_seconds()
        assert met["data"]["deviation_s"] == elapsed.total_seconds() - target
        assert met["data"]["seq"] == acted["seq"] and met["data"]["by"] == acted["actor"]
    assert {
        e["data"]["expected_id"]: e["data"]["deviation_s"]
        for e in log
        if e["type"] == "drill.action_met"
    } == {"first-report": 90.0, "isolate": 20.0}
    assert command.get(f"{DRILLS}/{drill['id']}", headers=controller).json()["state"] == "ended"
    assert real_calls == []

    # 6. The review was made the moment the drill ended: each expected action and plan step
    # with target, actual and deviation exactly as the events say.
    review = command.get(f"{SITE}/reviews/{incident_id}", headers=controller)
    assert review.status_code == 200, review.text
    body = review.json()
    actions = {a["expected_id"]: a for a in body["actions"]}
    for expected_id in ("first-report", "isolate"):
        met = next(
            e["data"]
            for e in log
            if e["type"] == "drill.action_met" and e["data"]["expected_id"] == expected_id
        )
        assert (actions[expected_id]["target_s"], actions[expected_id]["actual_s"]) == (
            met["target_s"],
            met["actual_s"],
        )
        assert actions[expected_id]["deviation_s"] == met["deviation_s"]
        assert actions[expected_id]["by"] == met["by"] == "cmd-zhou"
    assert actions["first-report"]["status"] == "met_late"
    steps = {s["step_id"]: s for s in body["steps"]}
    everything = events(command)
    # Targets read from the plan's own file: a step due N s after activation.
    plan = yaml.safe_load((FIXTURES / "plans/chlorine-leak.yaml").read_text(encoding="utf-8"))
    activated_at = datetime.fromisoformat(activated["at"])
    checked = 0
    for step in plan["levels"]["L1"]["steps"]:
        if step["target"]["after"] != "activation":
            continue
        due = activated_at + timedelta(seconds=step["target"]["within_s"])
        assert datetime.fromisoformat(steps[step["id"]]["target_at"]) == due, step["id"]
        checked += 1
    assert checked >= 5
    acked = steps["l1-detect-report"]
    acked_event = next(
        e
        for e in everything
        if e["type"] == "plan.step.acknowledged" and e["data"]["step_id"] == "l1-detect-report"
    )
    assert acked["acknowledged_at"] == acked_event["data"]["at"]
    assert acked["acknowledged_by"] == "cmd-zhou"
    assert [i["inject_id"] for i in body["injects"] if i.get("contingency_for")] == [
        "smell-at-gate"
    ]
    # Players read it only once it is signed off; before, it is not there for them.
    assert command.get(f"{SITE}/reviews/{incident_id}").status_code == 404


def test_an_announced_drill_starts_at_once_and_a_real_activation_suspends_it(
    command: TestClient, controller: dict[str, str]
) -> None:
    write_scenario(command, controller)
    answer = command.post(
        DRILLS, json={"scenario_id": "night-chlorine", "mode": "announced"}, headers=controller
    )
    assert answer.status_code == 201, answer.text
    drill = answer.json()
    assert drill["state"] == "running" and drill["incident_id"]
    # The same plan, really, at the same place: not held back by the drill's incident.
    real = activate_real(command)
    assert real.status_code == 201, real.text
    state = command.get(f"{DRILLS}/{drill['id']}", headers=controller).json()
    assert state["state"] == "suspended"
    assert real.json()["incident"]["id"] in state["suspended_by"]
    assert real.json()["incident"]["exercise"] is None
    aborted = command.post(f"{DRILLS}/{drill['id']}/abort", json={}, headers=controller)
    assert aborted.status_code == 200, aborted.text
    [ended] = [e for e in aborted.json()["events"] if e["type"] == "drill.ended"]
    assert ended["data"]["aborted"] is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.update(plan_id="no-such-plan"), "plan_id"),
        (
            lambda s: s["injects"][0]["readings"][0].update(sensor_id="S-999"),
            "readings[0].sensor_id",
        ),
        (lambda s: s["injects"][2]["readings"][0].update(sensor_id=CL2), "readings[0].sensor_id"),
        (lambda s: s["injects"][1]["positions"][0].update(person_id="P-9999"), "person_id"),
        (lambda s: s["injects"][1]["positions"][0].update(lon=120.0), "positions[0]"),
        (lambda s: s["expected"][0].update(on_miss=["wind-shift"]), "expected"),
        (lambda s: s["injects"].append(dict(s["injects"][0])), "injects"),
        (lambda s: s["injects"][0].pop("readings"), "injects"),
        (lambda s: s.update(location={"type": "Point", "coordinates": [0, 0]}), "location"),
    ],
)
def test_a_scenario_that_does_not_fit_the_site_is_refused_with_the_field(
    command: TestClient, controller: dict[str, str], change: Any, field: str
) -> None:
    scenario = copy.deepcopy(SCENARIO)
    change(scenario)
    answer = command.post(f"{DRILLS}/scenarios", json=scenario, headers=controller)
    assert answer.status_code in (400, 422), answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert any(field in e["field"] for e in answer.json()["errors"]), answer.json()
    assert command.get(f"{DRILLS}/scenarios", headers=controller).json()["scenarios"] == []


def test_scenarios_are_versioned_and_a_stale_edit_is_refused(
    command: TestClient, controller: dict[str, str]
) -> None:
    write_scenario(command, controller)
    edited = {**SCENARIO, "title": "Chlorine release at night (v2)"}
    url = f"{DRILLS}/scenarios/night-chlorine"
    assert command.put(url, json=edited, headers=controller).status_code == 428
    answer = command.put(url, json=edited, headers={**controller, "If-Match": '"1"'})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2 and answer.headers["etag"] == '"2"'
    stale = command.put(url, json=edited, headers={**controller, "If-Match": '"1"'})
    assert stale.status_code == 409
    first = command.get(url, params={"version": 1}, headers=controller).json()
    assert first["scenario"]["title"] == SCENARIO["title"]


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"start": "2026-06-02T08:00:00+08:00", "end": "2026-06-01T08:00:00+08:00"}, "window.end"),
        ({"start": "2026-05-01T08:00:00+08:00", "end": "2026-05-02T08:00:00+08:00"}, "window.end"),
        ({"start": "2026-06-02T08:00:00", "end": "2026-06-03T08:00:00+08:00"}, "start"),
        (
            {
                "start": "2026-06-02T08:00:00+08:00",
                "end": "2026-06-02T09:00:00+08:00",
                "exclude": [{"from": "07:30", "to": "09:30"}],
            },
            "window",
        ),
    ],
)
def test_a_window_with_no_time_to_start_in_is_refused(
    command: TestClient, controller: dict[str, str], window: dict[str, Any], field: str
) -> None:
    write_scenario(command, controller)
    answer = command.post(
        DRILLS,
        json={"scenario_id": "night-chlorine", "mode": "blind", "window": window},
        headers=controller,
    )
    assert answer.status_code in (400, 422), answer.text
    assert any(field in e["field"] for e in answer.json()["errors"]), answer.json()
    assert command.get(DRILLS, headers=controller).json()["drills"] == []


def test_a_drill_controller_injects_into_a_running_drill_and_nowhere_else(
    command: TestClient, controller: dict[str, str]
) -> None:
    post = post_of(command)
    reading = {"readings": [{"sensor_id": CL2, "value": 3.5}]}
    refused = command.post(f"{SITE}/readings", json=reading, headers=controller)
    assert refused.status_code in (400, 422) and refused.json()["errors"][0]["field"] == "drill"
    # A commander cannot pass a reading off as a drill's.
    assert command.post(f"{SITE}/readings", json={**reading, "drill": "x"}).status_code == 403
    write_scenario(command, controller)
    drill = command.post(
        DRILLS, json={"scenario_id": "night-chlorine", "mode": "announced"}, headers=controller
    ).json()
    answer = command.post(
        f"{SITE}/readings", json={**reading, "drill": drill["id"]}, headers=controller
    )
    assert answer.status_code == 200, answer.text
    kinds = [e["type"] for e in answer.json()["events"]]
    assert "sensor.state" in kinds and kinds[-1] == "drill.inject"
    assert post.sensor_tiers.get(DEMO_ID, {}).get(CL2) is None
    assert post.exercise_tiers[drill["id"]][CL2] == "high_alarm"
    moved = command.post(
        f"{SITE}/positions",
        json={
            "positions": [{"person_id": CONTRACTOR, "lon": 121.3478, "lat": 30.7195}],
            "drill": drill["id"],
        },
        headers=controller,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["events"][-1]["type"] == "drill.inject"
    command.post(f"{DRILLS}/{drill['id']}/end", json={}, headers=controller)
    after = command.post(
        f"{SITE}/readings", json={**reading, "drill": drill["id"]}, headers=controller
    )
    assert after.status_code == 409


def test_a_road_blocked_and_a_resource_out_in_a_drill_change_its_incident_only(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    """The route from a person's place goes round the blocked edge; the resource leaves the
    drill's nearest resources; the site's layers keep both as they were."""
    post = post_of(command)
    model = post.model(DEMO_ID)
    start = (121.3503255, 30.7178626)  # where the contractor P-0010 stands
    edges = {str(f["id"]): shapely.geometry.shape(f["geometry"]) for f in model.layers["network"]}

    def run(scenario: dict[str, Any]) -> dict[str, Any]:
        write_scenario(command, controller, scenario)
        answer = command.post(
            DRILLS, json={"scenario_id": scenario["id"], "mode": "announced"}, headers=controller
        )
        assert answer.status_code == 201, answer.text
        drill: dict[str, Any] = answer.json()
        return drill

    # A first drill shows the route and the nearest resources before anything is blocked.
    first = run(SCENARIO)
    before = post.route(model, first["incident_id"], start)
    line = shapely.geometry.shape(before["route"])
    walked = next(  # an edge the route walks along (its middle on the route)
        fid
        for fid, edge in edges.items()
        if edge.length > 0 and line.distance(edge.interpolate(0.5, normalized=True)) < 1e-6
    )
    incident = post.incidents[first["incident_id"]]
    gone = next(r.id for routes in incident.resources.values() for r in routes)
    command.post(f"{DRILLS}/{first['id']}/abort", json={}, headers=controller)

    blocked = copy.deepcopy(SCENARIO)
    blocked["id"] = "night-blocked"
    blocked["expected"] = []
    blocked["injects"] = [
        {
            "id": "pipe-rack",
            "title": "Road blocked by a fallen pipe rack",
            "kind": "road_closed",
            "at_s": 5,
            "edge_id": walked,
        },
        {
            "id": "truck-out",
            "title": "A unit out of service",
            "kind": "resource_out",
            "at_s": 5,
            "resource_id": gone,
        },
    ]
    drill = run(blocked)
    clock.advance(5)
    post.tick()
    incident = post.incidents[drill["incident_id"]]
    after = post.route(model, incident.id, start)
    assert after["route"] is not None
    middle = edges[walked].interpolate(0.5, normalized=True)
    assert shapely.geometry.shape(after["route"]).distance(middle) > 1e-6
    assert gone not in {r.id for routes in incident.resources.values() for r in routes}
    layer = command.get(f"{SITE}/layers/resources/features/{gone}").json()
    assert layer["properties"]["status"] == "available"  # the real resource: untouched
    assert post.model(DEMO_ID).graphs["foot"] is not None
    log = events(command)
    closed = next(e for e in log if e["type"] == "incident.road_closed")
    assert closed["data"]["edge_id"] == walked and closed["data"]["exercise"] == drill["id"]
    fired = [e for e in record(command, controller, drill["id"]) if e["type"] == "drill.inject"]
    assert {e["data"]["inject_id"] for e in fired} == {"pipe-rack", "truck-out"}
    # Rebuilt from the log (a restart), the incident avoids them still.
    rebuilt = post.from_log(incident.id, post._incident_rows(DEMO_ID, incident.id))
    assert rebuilt.closed_edges == (walked,) and rebuilt.resources_out == {gone}


def test_injected_positions_are_never_stored_and_a_real_one_since_stands(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    post = post_of(command)
    write_scenario(command, controller)
    drill = command.post(
        DRILLS, json={"scenario_id": "night-chlorine", "mode": "announced"}, headers=controller
    ).json()
    other = "P-0029"
    inject = {
        "positions": [
            {"person_id": CONTRACTOR, "lon": 121.3478, "lat": 30.7195},
            {"person_id": other, "lon": 121.3478, "lat": 30.7195},
        ],
        "drill": drill["id"],
    }
    assert command.post(f"{SITE}/positions", json=inject, headers=controller).status_code == 200
    assert not post._unsaved.get(DEMO_ID)  # nothing of the inject is written to the layer
    clock.advance(30)
    real = {"positions": [{"person_id": other, "lon": 121.3474, "lat": 30.7185}]}
    assert command.post(f"{SITE}/positions", json=real).status_code == 200
    assert post._unsaved[DEMO_ID] == {other}
    command.post(f"{DRILLS}/{drill['id']}/end", json={}, headers=controller)
    model = post.model(DEMO_ID)
    contractor = model.person_lonlat[model.person_row[CONTRACTOR]]
    assert list(contractor) == pytest.approx([121.3503255, 30.7178626])  # put back
    assert list(model.person_lonlat[model.person_row[other]]) == pytest.approx([121.3474, 30.7185])


def test_the_documented_demo_scenario_loads_as_yaml_and_runs(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    """fixtures/drills/night-chlorine.yaml, the example of docs/drills.md, as a controller
    uploads it: YAML, checked against the demo site and plan, and it runs to its wind shift."""
    text = (Path(__file__).parent.parent / "fixtures/drills/night-chlorine.yaml").read_text()
    answer = command.post(
        f"{DRILLS}/scenarios",
        content=text.encode(),
        headers={**controller, "Content-Type": "application/yaml"},
    )
    assert answer.status_code == 201, answer.text
    drill = command.post(
        DRILLS, json={"scenario_id": "night-chlorine", "mode": "announced"}, headers=controller
    ).json()
    post = post_of(command)
    for _ in range(0, 721, 60):
        clock.advance(60)
        post.tick()
    state = command.get(f"{DRILLS}/{drill['id']}", headers=controller).json()
    fired = {i["id"] for i in state["injects"] if i["fired"]}
    assert {"detector-rises", "contractor-missing", "wind-shift"} <= fired
    assert {"smell-at-gate", "casualty-at-store"} <= fired  # nobody acted: both contingencies
    assert {e["id"] for e in state["expected"] if e["missed"]} == {
        "first-report",
        "remote-isolation",
        "workshop-alarm",
    }


def test_a_running_drill_goes_on_after_a_restart_without_firing_anything_twice(
    command: TestClient, controller: dict[str, str], db: Database, clock: ManualClock
) -> None:
    from command.app import create_app
    from command.settings import Settings

    write_scenario(command, controller)
    drill = command.post(
        DRILLS, json={"scenario_id": "night-chlorine", "mode": "announced"}, headers=controller
    ).json()
    clock.advance(61)
    post_of(command).tick()  # the contractor inject at +60 s fires
    # A second server process on the same database, as after a restart.
    again = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(again) as restarted:
        restarted.headers.update(controller)
        post = post_of(restarted)
        assert post.incidents[drill["incident_id"]].exercise == drill["id"]
        state = restarted.get(f"{DRILLS}/{drill['id']}").json()
        assert state["state"] == "running" and state["drill_s"] == 61
        clock.advance(700)
        post.tick()
        kept = record(restarted, controller, drill["id"])  # the record survived the restart
        fired = [e["data"]["inject_id"] for e in kept if e["type"] == "drill.inject"]
        assert sorted(fired) == sorted(
            ["detector-rises", "contractor-missing", "smell-at-gate", "wind-shift"]
        )
        missed = [e for e in kept if e["type"] == "drill.action_missed"]
        assert len(missed) == 1  # "first-report", missed once


def test_a_drills_call_outs_reach_the_exercise_safe_gateway_only_marked(
    db: Database, clock: ManualClock
) -> None:
    """With both gateways configured, the real one never hears of the drill; the exercise-safe
    one gets every call-out, each saying EXERCISE / 演练. The drill's detector proposes its plan
    as the drill's, never as a real proposal."""
    import time

    from command.app import create_app
    from command.settings import Settings
    from plans.store import load_plan_files
    from tests.conftest import DEMO_PLANS
    from tests.test_notifications import Gateway

    real_gateway = HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=real_gateway.serve_forever, daemon=True).start()
    Gateway.received, Gateway.seen = [], set()
    drill_gateway = HTTPServer(("127.0.0.1", 0), ExerciseGateway)
    threading.Thread(target=drill_gateway.serve_forever, daemon=True).start()
    ExerciseGateway.received = []
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    settings = Settings(
        database_url=str(db.engine.url),
        webhook_url=f"http://127.0.0.1:{real_gateway.server_address[1]}/sms",
        exercise_webhook_url=f"http://127.0.0.1:{drill_gateway.server_address[1]}/drill",
    )
    try:
        with TestClient(create_app(settings, database=db, clock=clock, ticking=False)) as client:
            controller = sign_in(db, "ctl-gw", [Role.DRILL_CONTROLLER])
            client.headers.update(controller)
            write_scenario(client, controller)
            drill = client.post(
                DRILLS, json={"scenario_id": "night-chlorine", "mode": "announced"}
            ).json()
            log = events(client)
            requested = [e for e in log if e["type"] == "notification.requested"]
            deadline = time.monotonic() + 20
            while len(ExerciseGateway.received) < len(requested):
                assert time.monotonic() < deadline, "the exercise gateway missed call-outs"
                time.sleep(0.05)
            proposed = [e for e in log if e["type"] == "plan.proposed"]
            assert proposed and all(e["data"]["exercise"] == drill["id"] for e in proposed)
    finally:
        real_gateway.shutdown()
        drill_gateway.shutdown()
    assert Gateway.received == []
    assert all(
        m["label"] == "EXERCISE / 演练" and m["exercise"] == drill["id"]
        for m in ExerciseGateway.received
    )


class ExerciseGateway(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        ExerciseGateway.received.append(
            json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        )
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


# -- found in review: each a reproduction first ---------------------------------------------------


def announced(client: TestClient, controller: dict[str, str], scenario: dict[str, Any]) -> Any:
    write_scenario(client, controller, scenario)
    answer = client.post(
        DRILLS, json={"scenario_id": scenario["id"], "mode": "announced"}, headers=controller
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_suspended_drills_incident_pages_nobody_and_goes_overdue_on_nothing(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    post = post_of(command)
    drill = announced(command, controller, SCENARIO)
    real = activate_real(command)
    assert real.status_code == 201, real.text
    before = events(command)[-1]["seq"]
    for _ in range(20):  # twenty minutes of a real emergency
        clock.advance(60)
        post.tick()
    of_drill = [
        e for e in events(command, after=before) if e["incident_id"] == drill["incident_id"]
    ]
    assert of_drill == []
    resumed = command.post(f"{DRILLS}/{drill['id']}/resume", json={}, headers=controller)
    assert resumed.status_code == 200
    post.tick()  # what fell due meanwhile fires now
    assert any(
        e["type"] == "plan.step.overdue"
        for e in events(command, after=before)
        if e["incident_id"] == drill["incident_id"]
    )


def test_a_blind_drill_due_during_a_real_incident_starts_suspended(
    command: TestClient, controller: dict[str, str], db: Database, clock: ManualClock
) -> None:
    post = post_of(command)
    write_scenario(command, controller)
    window = {"start": local(1, 16).isoformat(), "end": local(1, 18).isoformat()}
    drill = command.post(
        DRILLS,
        json={"scenario_id": "night-chlorine", "mode": "blind", "window": window},
        headers=controller,
    ).json()
    real = activate_real(command)
    assert real.status_code == 201
    with db.read() as session:
        row = session.get(DrillRow, drill["id"])
        assert row is not None and row.sealed_start is not None
        sealed = row.sealed_start
    clock.advance(sealed - clock.now())
    post.tick()
    state = command.get(f"{DRILLS}/{drill['id']}", headers=controller).json()
    assert state["state"] == "suspended" and real.json()["incident"]["id"] in state["suspended_by"]


def test_drill_time_of_an_action_stays_right_across_later_holds(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    post = post_of(command)
    drill = announced(command, controller, SCENARIO)
    clock.advance(50)
    command.post(
        f"{SITE}/incidents/{drill['incident_id']}/steps/l1-detect-report/acknowledge", json={}
    )
    # Held before the desk looked: the action was at drill time 50 all the same.
    command.post(f"{DRILLS}/{drill['id']}/hold", json={}, headers=controller)
    clock.advance(300)
    command.post(f"{DRILLS}/{drill['id']}/resume", json={}, headers=controller)
    post.tick()
    met = next(
        e for e in record(command, controller, drill["id"]) if e["type"] == "drill.action_met"
    )
    assert met["data"]["actual_s"] == 50 and met["data"]["deviation_s"] == -10


def test_an_action_just_before_the_end_counts(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    drill = announced(command, controller, SCENARIO)
    clock.advance(40)
    command.post(
        f"{SITE}/incidents/{drill['incident_id']}/steps/l1-detect-report/acknowledge", json={}
    )
    ended = command.post(f"{DRILLS}/{drill['id']}/end", json={}, headers=controller)
    met = [e for e in ended.json()["events"] if e["type"] == "drill.action_met"]
    assert [e["data"]["actual_s"] for e in met] == [40]


def test_a_real_station_does_not_undo_the_drills_wind_shift(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    post = post_of(command)
    drill = announced(command, controller, SCENARIO)
    clock.advance(721)
    post.tick()
    hazard = post.incidents[drill["incident_id"]].request.hazard
    assert hazard.wind_from_deg == 225  # type: ignore[union-attr]
    real = {"readings": [{"sensor_id": WIND, "value": 2.0, "direction_deg": 45}]}
    assert command.post(f"{SITE}/readings", json=real).status_code == 200
    hazard = post.incidents[drill["incident_id"]].request.hazard
    assert hazard.wind_from_deg == 225  # type: ignore[union-attr]


def test_an_inject_neither_reaches_the_stored_positions_nor_a_real_incident(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    post = post_of(command)
    real = activate_real(command, second=True).json()["incident"]["id"]
    drill = announced(command, controller, {**SCENARIO, "injects": [], "expected": []})
    assert drill["state"] == "suspended"  # a real incident runs: the controller decides
    resumed = command.post(f"{DRILLS}/{drill['id']}/resume", json={}, headers=controller)
    assert resumed.status_code == 200
    model = post.model(DEMO_ID)
    row = model.person_row[CONTRACTOR]
    seen_before = float(model.person_seen_at[row])
    somewhere = {"positions": [{"person_id": CONTRACTOR, "lon": 121.3474, "lat": 30.7185}]}
    assert command.post(f"{SITE}/positions", json=somewhere).status_code == 200  # real, unsaved
    real_levels = post.incidents[real].levels.copy()
    inject = {
        "positions": [{"person_id": CONTRACTOR, "lon": 121.347816, "lat": 30.719476}],
        "drill": drill["id"],
    }
    assert command.post(f"{SITE}/positions", json=inject, headers=controller).status_code == 200
    assert (post.incidents[real].levels == real_levels).all()  # the real incident did not follow
    post.save_positions()
    stored = command.get(f"{SITE}/layers/people/features/{CONTRACTOR}").json()
    assert stored["geometry"]["coordinates"] == pytest.approx([121.3474, 30.7185])
    command.post(f"{DRILLS}/{drill['id']}/end", json={}, headers=controller)
    assert list(model.person_lonlat[row]) == pytest.approx([121.3474, 30.7185])
    assert float(model.person_seen_at[row]) >= seen_before
    assert float(model.person_seen_at[row]) == pytest.approx(clock.now().timestamp())


def test_a_blocked_roads_reason_says_no_more_than_the_players_would_see(
    command: TestClient, controller: dict[str, str], clock: ManualClock
) -> None:
    post = post_of(command)
    edge = str(post.model(DEMO_ID).layers["network"][0]["id"])
    scenario = {
        **SCENARIO,
        "id": "night-road",
        "expected": [],
        "injects": [
            {
                "id": "rack",
                "title": "Secret: the rack was cut on purpose",
                "kind": "road_closed",
                "at_s": 1,
                "edge_id": edge,
            }
        ],
    }
    announced(command, controller, scenario)
    clock.advance(2)
    post.tick()
    closed = next(e for e in events(command) if e["type"] == "incident.road_closed")
    assert closed["data"]["reason"] == "blocked" and "Secret" not in json.dumps(closed)
