"""The live picture stays true while the incident changes (issue 11's reproductions, over HTTP):
escalation, wind, muster points, layer edits, positions with time, duplicates, stand-down and
closed incidents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import shape

from command.app import create_app
from command.auth import Role
from command.hub import Hub
from command.incidents import ActivationRequest
from command.post import CommandPost
from command.settings import Settings
from command.site_model import SiteModels
from gis.storage.db import Database
from plans.clock import ManualClock
from plans.store import load_plan_files
from tests.conftest import DEMO_ID, DEMO_PLANS, DEMO_SITE, sign_in
from tests.problems import assert_problem
from tests.test_incidents import BASE, activate, chlorine, post_of
from tests.test_plan_workflow import approve_latest

SITE = f"/api/sites/{DEMO_ID}"
N1, E1, W1 = "Z-004", "Z-032", "Z-033"


def moving(picture: dict[str, Any]) -> set[str]:
    return {p["id"] for p in picture["evacuation"]["people"]}


def picture_of(client: TestClient, incident_id: str) -> dict[str, Any]:
    answer = client.get(f"{BASE}/{incident_id}")
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


def zones_of(picture: dict[str, Any]) -> dict[int, Any]:
    return {
        f["properties"]["level"]: shape(f["geometry"])
        for f in picture["threat"]["features"]
        if f["properties"]["kind"] == "threat_zone"
    }


def muster_area(zone_id: str) -> Any:
    zones = json.loads((DEMO_SITE / "zones.geojson").read_text(encoding="utf-8"))
    return next(shape(f["geometry"]) for f in zones["features"] if f["id"] == zone_id)


def test_escalation_widens_and_deescalation_narrows_who_must_move(command: TestClient) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    at_l2 = moving(picture)
    on_site = picture["headcount"]["on_site"]
    assert 0 < len(at_l2) < on_site  # L2: only the people inside a zone
    answer = command.post(f"{BASE}/{incident}/escalate")
    assert answer.status_code == 200, answer.text
    at_l3 = picture_of(command, incident)
    assert at_l3["incident"]["level"] == "L3"
    assert len(moving(at_l3)) == on_site  # L3 (plant): everyone moves
    assert command.post(f"{BASE}/{incident}/deescalate").status_code == 200
    assert moving(picture_of(command, incident)) == at_l2


def test_people_a_wind_change_reaches_get_a_route(command: TestClient) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    reading = {"readings": [{"sensor_id": "S-005", "value": 3, "direction_deg": 270}]}
    assert command.post(f"{SITE}/readings", json=reading).status_code == 200
    after = picture_of(command, incident)
    inside = set(after["exposure"]["inside"]["1"]["people"])
    assert inside and inside != set(picture["exposure"]["inside"]["1"]["people"])
    # Everyone inside a zone now must move, and each has a muster point or a trapped reason.
    assert inside <= moving(after)
    trapped = {t["id"] for t in after["evacuation"]["trapped"]}
    for person in after["evacuation"]["people"]:
        assert person["muster"] is not None or person["id"] in trapped


def test_muster_points_inside_the_zones_are_not_used(command: TestClient) -> None:
    # Wind from the west at L3: the plume runs east over E1 (reproduced: 9 people sent there).
    picture = activate(command, chlorine("L3", wind_from_deg=270))
    zones = zones_of(picture)
    assert muster_area(E1).intersects(zones[2])
    unusable = picture["evacuation"]["unusable_musters"]
    assert E1 in unusable and "level" in unusable[E1]
    assert all(p["muster"] != E1 for p in picture["evacuation"]["people"])
    # Every muster point still used lies clear of levels 3 and 2.
    for person in picture["evacuation"]["people"]:
        if person["muster"] is not None:
            assert not muster_area(person["muster"]).intersects(zones[2])


def test_a_muster_point_at_the_edge_of_level_1_warns(command: TestClient) -> None:
    # 500 g/s under wind from 255 degrees: the outer zone reaches E1, level 2 stops short.
    picture = activate(command, chlorine("L3", rate_g_s=500, wind_from_deg=255))
    zones = zones_of(picture)
    area = muster_area(E1)
    assert area.intersects(zones[1]) and not area.intersects(zones[2])
    warnings = picture["evacuation"]["muster_warnings"]
    assert "level 1" in warnings[E1]
    assert E1 not in picture["evacuation"]["unusable_musters"]
    assert E1 in {p["muster"] for p in picture["evacuation"]["people"]}  # still used


def test_a_layer_edit_keeps_live_positions_and_replans(command: TestClient, db: Database) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    n1 = muster_area(N1).centroid
    moved = command.post(
        f"{SITE}/positions",
        json={
            "positions": [{"person_id": p, "lon": n1.x, "lat": n1.y} for p in ("P-0001", "P-0002")]
        },
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["headcount"]["at"][N1] == 2
    # A planner changes an unrelated zone's capacity.
    planner = sign_in(db, "planner-li", ["planner"])  # type: ignore[list-item]
    feature = command.get(f"{SITE}/layers/zones/features/Z-001", headers=planner).json()
    answer = command.patch(
        f"{SITE}/layers/zones/features/Z-001",
        json={"properties": {"capacity": 77, "version": feature["properties"]["version"]}},
        headers=planner,
    )
    assert answer.status_code == 200, answer.text
    assert incident in answer.headers["Rallypoint-Warning"]
    after = picture_of(command, incident)
    assert after["headcount"]["at"][N1] == 2
    events = command.get(f"{SITE}/events").json()["events"]
    changed = [e for e in events if e["type"] == "incident.network_changed"]
    assert changed and changed[-1]["data"]["layers"] == ["zones"]


def test_positions_carry_time_and_an_old_one_never_moves_anyone_back(
    command: TestClient, clock: ManualClock
) -> None:
    now = clock.now()
    n1 = muster_area(N1).centroid
    later = {"person_id": "P-0003", "lon": n1.x, "lat": n1.y, "observed_at": now.isoformat()}
    earlier = {
        "person_id": "P-0003",
        "lon": 121.35,
        "lat": 30.72,
        "observed_at": (now - timedelta(seconds=30)).isoformat(),
    }
    assert command.post(f"{SITE}/positions", json={"positions": [later]}).json()["accepted"] == 1
    replay = command.post(f"{SITE}/positions", json={"positions": [earlier]}).json()
    assert replay["accepted"] == 0 and replay["stale"] == ["P-0003"]
    model = post_of(command).model(DEMO_ID)
    row = model.person_row["P-0003"]
    assert tuple(model.person_lonlat[row]) == (n1.x, n1.y)
    assert replay["headcount"]["at"][N1] >= 1


def test_positions_from_the_future_or_with_a_bad_time_are_refused(
    command: TestClient, clock: ManualClock
) -> None:
    ahead = (clock.now() + timedelta(minutes=5)).isoformat()
    row = {"person_id": "P-0003", "lon": 121.35, "lat": 30.72, "observed_at": ahead}
    assert_problem(
        command.post(f"{SITE}/positions", json={"positions": [row]}),
        422,
        field="positions.P-0003.observed_at",
    )
    naive = {**row, "observed_at": "2026-12-03T01:00:00"}
    assert_problem(
        command.post(f"{SITE}/positions", json={"positions": [naive]}),
        422,
        field="positions[0].observed_at",
    )


def test_stored_positions_reach_the_people_layer_and_a_new_picture(command: TestClient) -> None:
    post = post_of(command)
    n1 = muster_area(N1).centroid
    body = {"positions": [{"person_id": "P-0004", "lon": n1.x, "lat": n1.y}]}
    assert command.post(f"{SITE}/positions", json=body).status_code == 200
    assert post.save_positions() == 1
    feature = command.get(f"{SITE}/layers/people/features/P-0004").json()
    assert feature["geometry"]["coordinates"] == [n1.x, n1.y]
    assert feature["properties"]["seen_at"] is not None
    box = ",".join(str(v) for v in shapely.buffer(n1, 1e-5).bounds)
    found = command.get(f"{SITE}/layers/people", params={"bbox": box}).json()
    assert "P-0004" in {f["id"] for f in found["features"]}
    snapshot = post.site_snapshot(DEMO_ID)
    assert snapshot["positions"]["P-0004"][:2] == [n1.x, n1.y]


def test_the_same_plan_twice_at_the_same_place_is_refused(command: TestClient) -> None:
    first = activate(command)["incident"]["id"]
    again = command.post(BASE, json=chlorine())
    problem = assert_problem(again, 409, field="plan_id")
    assert problem["incident_id"] == first
    second = command.post(BASE, json={**chlorine(), "second_incident": True})
    assert second.status_code == 201, second.text
    assert second.json()["incident"]["id"] != first


def test_a_sensor_proposal_for_a_running_plan_points_to_the_incident(
    command: TestClient,
) -> None:
    incident = activate(command)["incident"]["id"]
    # S-061 is a chlorine detector in the chlorine store, downwind inside the release's zones.
    body = {"readings": [{"sensor_id": "S-061", "value": 5.0}]}
    events = command.post(f"{SITE}/readings", json=body).json()["events"]
    [proposal] = [e for e in events if e["type"] == "plan.proposed"]
    assert "chlorine-leak" not in proposal["data"]["plans"]
    assert proposal["data"]["running"]["chlorine-leak"] == incident


def test_stand_down_with_people_missing_needs_force_and_a_reason(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    refused = assert_problem(command.post(f"{BASE}/{incident}/stand-down"), 409, field="force")
    assert refused["missing"] and refused["open_steps"]
    assert_problem(
        command.post(f"{BASE}/{incident}/stand-down", json={"force": True}), 422, field="reason"
    )
    answer = command.post(
        f"{BASE}/{incident}/stand-down", json={"force": True, "reason": "drill ended early"}
    )
    assert answer.status_code == 200, answer.text
    [closing] = [e for e in answer.json()["events"] if e["type"] == "incident.closed"]
    assert closing["data"]["forced"] and closing["data"]["reason"] == "drill ended early"
    assert closing["data"]["missing"] == refused["missing"]


def test_a_closed_incident_stays_readable_and_listed(command: TestClient) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    command.post(f"{BASE}/{incident}/stand-down", json={"force": True, "reason": "test"})
    # People walk on after the stand-down: the final picture is the one at stand-down.
    command.post(
        f"{SITE}/positions",
        json={"positions": [{"person_id": "P-0001", "lon": 121.35, "lat": 30.72}]},
    )
    closed = picture_of(command, incident)
    assert closed["incident"]["status"] == "closed"
    assert closed["incident"]["closed"]["forced"] is True
    assert closed["threat"] == picture["threat"]
    assert len(closed["plan"]["steps"]) == len(picture["plan"]["steps"])
    assert closed["evacuation"]["to_move"] == len(picture["evacuation"]["people"])
    assert closed["exposure"]["counts"] == picture["exposure"]["counts"]
    assert closed["headcount"]["at"] == picture["headcount"]["at"]
    listed = command.get(BASE, params={"state": "closed"}).json()["incidents"]
    assert [i["id"] for i in listed] == [incident]
    assert listed[0]["closed_by"] == "cmd-zhou"
    assert command.get(BASE).json()["incidents"] == []
    today = datetime.now(UTC)
    window = {
        "state": "all",
        "from": (today + timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=2)).isoformat(),
    }
    assert command.get(BASE, params=window).json()["incidents"] == []
    around = {
        "state": "all",
        "from": (today - timedelta(days=400)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }
    assert [i["id"] for i in command.get(BASE, params=around).json()["incidents"]] == [incident]
    assert_problem(command.get(BASE, params={"state": "closed", "from": "yesterday"}), 422)


def test_people_who_walk_into_the_zone_get_a_route_from_where_they_are(
    command: TestClient,
) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    zones = zones_of(picture)
    before = moving(picture)
    post = post_of(command)
    model = post.model(DEMO_ID)
    xy = model.person_lonlat
    hit = np.asarray(shapely.intersects_xy(zones[1], xy[:, 0], xy[:, 1]), dtype=bool)
    walker = next(model.person_ids[i] for i in np.flatnonzero(~hit))
    assert walker not in before
    into = zones[1].difference(zones[2]).representative_point()
    answer = command.post(
        f"{SITE}/positions",
        json={"positions": [{"person_id": walker, "lon": into.x, "lat": into.y}]},
    ).json()
    [moved] = [e for e in answer["events"] if e["type"] == "incident.people_moved"]
    assert walker in moved["data"]["entered"] and walker in moved["data"]["must_move"]
    after = picture_of(command, incident)
    [row] = [p for p in after["evacuation"]["people"] if p["id"] == walker]
    trapped = {t["id"] for t in after["evacuation"]["trapped"]}
    assert row["muster"] is not None or walker in trapped
    # The route starts where they are now: the same as a route asked for from that point.
    asked = command.get(f"{BASE}/{incident}/route", params={"person": walker}).json()
    assert asked["muster"] == row["muster"]
    if row["walk_time_s"] is not None:
        assert abs(asked["walk_time_s"] - row["walk_time_s"]) < 0.2


def test_positions_survive_a_restart(db: Database, clock: ManualClock) -> None:
    """Shutdown stores the last positions; a new server starts from them, and an incident it
    recovers counts people where they are."""
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    settings = Settings(database_url=str(db.engine.url))
    n1 = muster_area(N1).representative_point()
    body = {"positions": [{"person_id": p, "lon": n1.x, "lat": n1.y} for p in ("P-0005", "P-0006")]}
    with TestClient(create_app(settings, database=db, clock=clock, ticking=False)) as first:
        first.headers.update(sign_in(db, "cmd-restart", [Role.COMMANDER]))
        incident = activate(first)["incident"]["id"]
        assert first.post(f"{SITE}/positions", json=body).status_code == 200
    with TestClient(create_app(settings, database=db, clock=clock, ticking=False)) as second:
        second.headers.update(sign_in(db, "cmd-restart", [Role.COMMANDER]))
        model = post_of(second).model(DEMO_ID)
        assert tuple(model.person_lonlat[model.person_row["P-0005"]]) == (n1.x, n1.y)
        assert picture_of(second, incident)["headcount"]["at"][N1] >= 2


def test_walls_get_the_picture_when_people_must_move_at_most_twice_a_second(
    db: Database, clock: ManualClock
) -> None:
    """The first person who must move sends a new picture at once; one more within half a
    second is owed, and the next tick sends it, with their route."""
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    hub = Hub()
    post = CommandPost(db, hub, clock, SiteModels(db))
    incident, _ = post.activate(DEMO_ID, ActivationRequest.model_validate(chlorine()), actor="cmd")
    zones = post.incidents[incident].assessment.zones
    ring = next(z for z in zones if z.level == 1).geometry.difference(
        next(z for z in zones if z.level == 2).geometry
    )
    model = post.model(DEMO_ID)
    xy = model.person_lonlat
    outer = next(z for z in zones if z.level == 1).geometry
    outside = np.flatnonzero(~shapely.intersects_xy(outer, xy[:, 0], xy[:, 1]))
    first, second = (model.person_ids[int(i)] for i in outside[:2])
    spot = ring.representative_point()

    def pictures(subscriber: Any) -> list[dict[str, Any]]:
        out = []
        while not subscriber.queue.empty():
            message = subscriber.queue.get_nowait()
            if message["type"] == "incident":
                out.append(message["snapshot"])
        return out

    with hub.subscribe(DEMO_ID) as wall:
        post.positions(DEMO_ID, {first: (spot.x, spot.y, None)})
        [now] = pictures(wall)
        assert first in moving(now)
        post.positions(DEMO_ID, {second: (spot.x, spot.y, None)})
        assert pictures(wall) == []  # owed, not yet sent
        assert second in moving(post.site_snapshot(DEMO_ID)["incidents"][0])  # the picture has it
        post.tick()
        [owed] = pictures(wall)
        assert second in moving(owed)


def test_a_layer_edit_that_leaves_no_muster_point_is_told_not_a_crash(
    command: TestClient, db: Database
) -> None:
    incident = activate(command)["incident"]["id"]
    planner = sign_in(db, "planner-wu", [Role.PLANNER])
    for muster in (N1, E1, W1):
        version = command.get(f"{SITE}/layers/zones/features/{muster}").json()["properties"][
            "version"
        ]
        gone = command.delete(
            f"{SITE}/layers/zones/features/{muster}",
            headers={**planner, "If-Match": f'"{version}"'},
        )
        assert gone.status_code == 204, gone.text
    events = command.get(f"{SITE}/events").json()["events"]
    [refused] = [
        e for e in events if e["type"] == "incident.network_changed" and "error" in e["data"]
    ]
    assert refused["incident_id"] == incident and "muster" in refused["data"]["error"]
    # The wall keeps the last picture, and live inputs go on.
    assert command.get(f"{BASE}/{incident}").status_code == 200
    moved = command.post(
        f"{SITE}/positions",
        json={"positions": [{"person_id": "P-0001", "lon": 121.35, "lat": 30.72}]},
    )
    assert moved.status_code == 200, moved.text


def test_a_position_at_the_ends_of_time_is_refused_not_a_fault(command: TestClient) -> None:
    for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        row = {"person_id": "P-0001", "lon": 121.35, "lat": 30.72, "observed_at": when}
        assert_problem(
            command.post(f"{SITE}/positions", json={"positions": [row]}),
            422,
            field="positions[0].observed_at",
        )


def test_a_deleted_person_does_not_hold_back_storing_the_others(
    command: TestClient, db: Database
) -> None:
    post = post_of(command)
    n1 = muster_area(N1).representative_point()
    rows = [{"person_id": p, "lon": n1.x, "lat": n1.y} for p in ("P-0007", "P-0008")]
    assert command.post(f"{SITE}/positions", json={"positions": rows}).json()["accepted"] == 2
    planner = sign_in(db, "planner-li", [Role.PLANNER])
    version = command.get(f"{SITE}/layers/people/features/P-0007").json()["properties"]["version"]
    gone = command.delete(
        f"{SITE}/layers/people/features/P-0007", headers={**planner, "If-Match": f'"{version}"'}
    )
    assert gone.status_code == 204, gone.text
    post.save_positions()
    assert post.save_positions() == 0  # nothing left waiting
    stored = command.get(f"{SITE}/layers/people/features/P-0008").json()
    assert stored["geometry"]["coordinates"] == [n1.x, n1.y]


def plan_with(command: TestClient, db: Database, **scenario: Any) -> None:
    """The chlorine plan's next version, with these scenario settings (by a planner), approved
    (the plan workflow: activations use the approved version)."""
    stored = command.get(f"{SITE}/plans/chlorine-leak")
    body = stored.json()["template"]
    body["scenario"].update(scenario)
    planner = sign_in(db, "planner-ma", [Role.PLANNER])
    answer = command.put(
        f"{SITE}/plans/chlorine-leak",
        json=body,
        headers={**planner, "If-Match": stored.headers["ETag"]},
    )
    assert answer.status_code == 200, answer.text
    approve_latest(command, db, "chlorine-leak")


def test_a_plan_may_rule_out_muster_points_at_the_edge_of_level_1(
    command: TestClient, db: Database
) -> None:
    plan_with(command, db, musters_unusable_from_level=1)
    picture = activate(command, chlorine("L3", rate_g_s=500, wind_from_deg=255))
    assert "level 1" in picture["evacuation"]["unusable_musters"][E1]
    assert E1 not in {p["muster"] for p in picture["evacuation"]["people"]}


def test_no_usable_muster_point_says_so_and_gives_the_plans_shelter_instruction(
    command: TestClient, db: Database
) -> None:
    plan_with(command, db, shelter_in_place="Shelter in the control room; close the dampers")
    body = {**chlorine("L3"), "hazard": {"model": "radius", "radii_m": [2000, 2500, 3000]}}
    picture = activate(command, body)
    evacuation = picture["evacuation"]
    assert set(evacuation["unusable_musters"]) == {N1, E1, W1}
    assert evacuation["no_usable_muster"]["shelter_in_place"].startswith("Shelter in the control")
    assert {t["cause"] for t in evacuation["trapped"]} == {"no_muster"}
    assert all(p["muster"] is None for p in evacuation["people"])
