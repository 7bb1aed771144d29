"""Live inputs: readings against tiered thresholds with hysteresis, proposals, wind changes,
positions and headcount, device tokens."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi.testclient import TestClient
from shapely.geometry import LineString, shape

from command.auth import Role, create_device_token
from command.hub import Subscriber
from command.incidents import reassess
from command.sensors import Sensor, tier_after
from gis.storage.db import Database
from tests.conftest import DEMO_ID, sign_in, zone_centroid
from tests.problems import assert_problem
from tests.test_incidents import CHLORINE_STORE, activate, chlorine, post_of

SITE = f"/api/sites/{DEMO_ID}"
CL2 = "S-057"  # a chlorine detector: warning 0.5, alarm 1, high alarm 3 ppm
WIND = "S-005"
MUSTER = ("Z-033", (121.34490975, 30.7184466))


def test_hysteresis_keeps_a_hovering_reading_from_flapping() -> None:
    sensor = Sensor("s", "gas", "Cl2", (0.5, 1.0, 3.0))
    tier = None
    changes: list[tuple[float, str | None]] = []
    for value in (0.2, 0.99, 1.0, 0.97, 1.01, 0.95, 1.02, 0.92, 0.85, 3.5, 2.9, 2.6, 0.1):
        after = tier_after(sensor, value, tier)
        if after != tier:
            changes.append((value, after))
        tier = after
    # Up to alarm at 1.0; the wobble down to 0.92 stays within 10 % of 1.0; 0.85 leaves it.
    assert changes == [
        (0.99, "warning"),
        (1.0, "alarm"),
        (0.85, "warning"),
        (3.5, "high_alarm"),
        (2.6, "alarm"),
        (0.1, None),
    ]


def test_readings_raise_tiers_and_propose_the_matching_plan(command: TestClient) -> None:
    answer = command.post(f"{SITE}/readings", json={"readings": [{"sensor_id": CL2, "value": 0.6}]})
    assert answer.status_code == 200, answer.text
    # The first tier (GB/T 50493's) asks the post to check.
    [warning, check] = answer.json()["events"]
    assert warning["type"] == "sensor.state" and warning["data"]["to"] == "warning"
    assert check["type"] == "sensor.check_requested" and check["data"]["sensor_id"] == CL2
    # The same tier again is no event.
    quiet = command.post(f"{SITE}/readings", json={"readings": [{"sensor_id": CL2, "value": 0.7}]})
    assert quiet.json()["events"] == []
    alarm = command.post(f"{SITE}/readings", json={"readings": [{"sensor_id": CL2, "value": 1.4}]})
    kinds = [e["type"] for e in alarm.json()["events"]]
    assert kinds == ["sensor.state", "plan.proposed"]
    proposal = alarm.json()["events"][1]["data"]
    assert "chlorine-leak" in proposal["plans"]
    # One detector of four (2oo2 voting): unconfirmed, so the plan is proposed at L1 only.
    assert (proposal["level"], proposal["confirmed"]) == ("L1", False)


def test_bad_readings_change_nothing(command: TestClient) -> None:
    for body, field in (
        ({"readings": [{"sensor_id": CL2, "value": "high"}]}, "readings[0].value"),
        ({"readings": [{"sensor_id": "S-999", "value": 1.0}]}, "readings.sensor_id"),
        ({"readings": []}, "readings"),
        (
            {"readings": [{"sensor_id": WIND, "value": 3, "direction_deg": 400}]},
            "readings[0].direction_deg",
        ),
    ):
        response = command.post(f"{SITE}/readings", json=body)
        assert_problem(response, 422, field=field)
    nan = command.post(
        f"{SITE}/readings",
        content='{"readings": [{"sensor_id": "S-057", "value": NaN}]}',
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 422
    assert command.get(f"{SITE}/events").json()["events"] == []


def test_a_wind_change_reevaluates_the_plume_and_says_who_moved(command: TestClient) -> None:
    # At L3 everyone on site moves, so every route is compared.
    picture = activate(command, chlorine("L3", wind_from_deg=0))
    incident = picture["incident"]["id"]
    before = set(picture["exposure"]["inside"]["1"]["people"])
    small = command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": WIND, "value": 3, "direction_deg": 5}]},
    )
    assert small.json()["events"] == []  # 5 degrees: within the noise
    turned = command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": WIND, "value": 3, "direction_deg": 180}]},
    )
    [event] = turned.json()["events"]
    assert event["type"] == "incident.wind_changed" and event["incident_id"] == incident
    after = command.get(f"{SITE}/incidents/{incident}").json()
    assert after["incident"]["hazard"]["wind_from_deg"] == 180
    now = set(after["exposure"]["inside"]["1"]["people"])
    assert set(event["data"]["entered"].get("people", {})) == now - before
    assert set(event["data"]["left"].get("people", {})) == before - now
    # The people who must move and whose route changed (another muster point, or a walk that
    # differs by more than a second) are named, so they can be told. (Who must move only now is
    # among those who entered.)
    old = {p["id"]: p for p in picture["evacuation"]["people"]}
    new = {p["id"]: p for p in after["evacuation"]["people"]}
    expected = {
        pid
        for pid, p in new.items()
        if pid in old
        and (
            p["muster"] != old[pid]["muster"]
            or (p["walk_time_s"] is None) != (old[pid]["walk_time_s"] is None)
            or abs((p["walk_time_s"] or 0) - (old[pid]["walk_time_s"] or 0)) > 1.05
        )
    }
    unsure = {  # within the snapshot's rounding (0.1 s) of the one-second line
        pid
        for pid, p in new.items()
        if pid in old
        and p["walk_time_s"] is not None
        and old[pid]["walk_time_s"] is not None
        and 0.85 < abs(p["walk_time_s"] - old[pid]["walk_time_s"]) < 1.15
    }
    got = set(event["data"]["rerouted"]) & set(old)
    assert expected and expected - unsure <= got <= expected | unsure


def test_positions_move_people_and_count_them_at_muster_points(command: TestClient) -> None:
    activate(command)
    start = command.get(f"{SITE}/incidents").json()["incidents"][0]["id"]
    before = command.get(f"{SITE}/incidents/{start}").json()["headcount"]
    muster, (lon, lat) = MUSTER
    answer = command.post(
        f"{SITE}/positions",
        json={
            "positions": [
                {"person_id": "P-0001", "lon": lon, "lat": lat},
                {"person_id": "P-0002", "lon": lon, "lat": lat},
                {"person_id": "nobody", "lon": lon, "lat": lat},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 2 and body["unknown"] == ["nobody"]
    assert body["headcount"]["at"][muster] >= before["at"][muster] + 1
    # Everyone who must move and is not at a muster point is missing, with where last seen.
    picture = command.get(f"{SITE}/incidents/{start}").json()
    missing = {m["id"]: m["last_seen"] for m in picture["headcount"]["missing"]}
    moving = {p["id"] for p in picture["evacuation"]["people"]}
    assert set(missing) <= moving and "P-0001" not in missing
    assert all(len(xy) == 2 for xy in missing.values())
    bad = command.post(
        f"{SITE}/positions", json={"positions": [{"person_id": "P-0003", "lon": 500, "lat": 0}]}
    )
    assert_problem(bad, 422, field="positions[0]")


def test_devices_feed_their_own_site_and_read_nothing(command: TestClient, db: Database) -> None:
    with db.write() as session:
        token = create_device_token(session, DEMO_ID, "gateway-1", timedelta(days=1)).token
    device = {"Authorization": f"Bearer {token}"}
    ok = command.post(
        f"{SITE}/readings", json={"readings": [{"sensor_id": CL2, "value": 0.1}]}, headers=device
    )
    assert ok.status_code == 200, ok.text
    assert_problem(
        command.post("/api/sites/other/readings", json={"readings": []}, headers=device),
        403,
        field="site",
    )
    assert_problem(command.get(f"{SITE}/events", headers=device), 403, field="role")
    viewer = sign_in(db, "viewer-qi", [Role.VIEWER])
    assert_problem(
        command.post(f"{SITE}/readings", json={"readings": []}, headers=viewer), 403, field="role"
    )


def test_a_subscriber_gets_each_persons_latest_position_once() -> None:
    async def run() -> list[dict[str, object]]:
        subscriber = Subscriber(DEMO_ID, None, asyncio.Queue(maxsize=10))
        for i in range(5):
            subscriber.offer(
                {
                    "type": "positions",
                    "seq": i,
                    "positions": {"P-1": [i, 0], f"P-{i + 10}": [i, i]},
                    "headcount": {"accounted": i},
                }
            )
        return [subscriber.queue.get_nowait() for _ in range(subscriber.queue.qsize())]

    [message] = asyncio.run(run())
    assert message["positions"] == {
        "P-1": [4, 0],
        "P-10": [0, 0],
        "P-11": [1, 1],
        "P-12": [2, 2],
        "P-13": [3, 3],
        "P-14": [4, 4],
    }
    assert message["seq"] == 4 and message["headcount"] == {"accounted": 4}


def test_walking_into_and_out_of_a_threat_zone_is_logged(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    leak = {"person_id": "P-0400", "lon": CHLORINE_STORE[0], "lat": CHLORINE_STORE[1]}
    _, (lon, lat) = MUSTER
    inside = command.post(f"{SITE}/positions", json={"positions": [leak]}).json()
    [event] = inside["events"]
    assert event["type"] == "incident.people_moved"
    assert event["data"]["entered"] == {"P-0400": 3} or event["data"]["changed"]["P-0400"][1] == 3
    again = command.post(f"{SITE}/positions", json={"positions": [leak]}).json()
    assert again["events"] == []  # still inside: nothing new to say
    # The picture's lists follow: inside every level, as the zones nest.
    exposure = command.get(f"{SITE}/incidents/{incident}").json()["exposure"]
    assert all("P-0400" in exposure["inside"][level]["people"] for level in ("1", "2", "3"))
    assert exposure["counts"]["3"]["people"] == len(exposure["inside"]["3"]["people"])
    # The event carries the counts now, as the picture has them: a wall sets its figures so.
    assert event["data"]["counts"] == exposure["counts"]
    out = command.post(
        f"{SITE}/positions", json={"positions": [{"person_id": "P-0400", "lon": lon, "lat": lat}]}
    ).json()
    assert out["events"][0]["data"]["left"] == ["P-0400"]
    exposure = command.get(f"{SITE}/incidents/{incident}").json()["exposure"]
    assert not any("P-0400" in exposure["inside"][level]["people"] for level in ("1", "2", "3"))


def test_sensor_state_gives_tiers_and_last_readings(command: TestClient, db: Database) -> None:
    assert command.get(f"{SITE}/sensors/state").json() == {"sensors": [], "health": []}
    command.post(
        f"{SITE}/readings",
        json={
            "readings": [
                {"sensor_id": WIND, "value": 4.5, "direction_deg": 270},
                {"sensor_id": CL2, "value": 1.4},
            ]
        },
    )
    command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": WIND, "value": 5.0, "direction_deg": 280}]},
    )
    viewer = sign_in(db, "viewer-state", [Role.VIEWER])
    state = {
        s["id"]: s for s in command.get(f"{SITE}/sensors/state", headers=viewer).json()["sensors"]
    }
    assert set(state) == {WIND, CL2}
    wind = state[WIND]
    assert wind["kind"] == "wind" and wind["tier"] is None
    assert (wind["last_reading"]["value"], wind["last_reading"]["direction_deg"]) == (5.0, 280)
    assert state[CL2]["tier"] == "alarm" and state[CL2]["last_reading"]["value"] == 1.4
    assert_problem(command.get("/api/sites/nowhere/sensors/state"), 404)


def test_a_route_from_where_a_person_is_now(command: TestClient, db: Database) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    route = f"{SITE}/incidents/{incident}/route"
    viewer = sign_in(db, "viewer-route", [Role.VIEWER])
    first = command.get(route, params={"person": "P-0001"}, headers=viewer).json()
    assert first["person"] == "P-0001" and first["muster"] is not None
    assert first["route"]["type"] == "LineString" and first["walk_time_s"] > 0
    # The person walks somewhere else: the route is computed from there, now. (North: W1 lies
    # partly inside level 2 under this wind, so it is not used.)
    lon, lat = zone_centroid("Z-004")  # muster point N1
    command.post(
        f"{SITE}/positions", json={"positions": [{"person_id": "P-0001", "lon": lon, "lat": lat}]}
    )
    there = command.get(route, params={"person": "P-0001"}).json()
    assert there["from"] == [lon, lat] and there["muster"] == "Z-004"
    assert there["walk_time_s"] < first["walk_time_s"] or there["route"] is None
    # Never through the innermost zone, from anywhere outside it.
    inner = shape(
        next(f for f in picture["threat"]["features"] if f["properties"]["level"] == 3)["geometry"]
    )
    lon, lat = CHLORINE_STORE
    near = command.get(route, params={"lon": lon + 0.004, "lat": lat + 0.002}).json()
    assert near["route"] is not None
    assert not LineString(near["route"]["coordinates"]).intersects(inner.buffer(-1e-5))
    assert_problem(command.get(route, params={"person": "nobody"}), 404, field="person")
    assert_problem(command.get(route), 422, field="person")
    assert_problem(command.get(route, params={"lon": 121.3}), 422, field="lat")
    assert_problem(command.get(route, params={"lon": 0.0, "lat": 0.0}), 422, field="lon")
    assert_problem(
        command.get(f"{SITE}/incidents/inc-none/route", params={"person": "P-0001"}), 404
    )


def test_a_bad_reading_in_a_batch_leaves_every_sensor_as_it_was(command: TestClient) -> None:
    activate(command)
    batch = {
        "readings": [
            {"sensor_id": CL2, "value": 5.0},  # a high alarm, in a batch that will be refused
            {"sensor_id": WIND, "value": 200.0, "direction_deg": 90},  # km/h sent as m/s?
        ]
    }
    assert_problem(command.post(f"{SITE}/readings", json=batch), 422, field="readings[1].value")
    assert command.get(f"{SITE}/sensors/state").json() == {"sensors": [], "health": []}
    # The alarm is not lost: sent again on its own, it is logged and proposes the plan.
    again = command.post(f"{SITE}/readings", json={"readings": [batch["readings"][0]]}).json()
    kinds = [e["type"] for e in again["events"]]
    assert kinds == ["sensor.state", "sensor.check_requested", "plan.proposed"]


def test_walking_on_is_not_a_new_route(command: TestClient) -> None:
    picture = activate(command, chlorine("L3"))
    post = post_of(command)
    incident = post.incidents[picture["incident"]["id"]]
    model = post.models.get(DEMO_ID)
    # Two hundred people walk three metres on.
    moves = {
        pid: (float(x) + 3e-5, float(y))
        for pid, (x, y) in list(zip(model.person_ids, model.person_lonlat, strict=True))[:200]
    }
    command.post(
        f"{SITE}/positions",
        json={"positions": [{"person_id": p, "lon": x, "lat": y} for p, (x, y) in moves.items()]},
    )
    # The same wind again: nobody's route changed, whoever walked.
    same = reassess(model, incident, incident.request.hazard)
    assert same.rerouted == [] and not any(same.change.entered.values())
