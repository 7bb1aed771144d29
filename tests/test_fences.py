"""Geofences over the real inputs: positions through the REST API, the clock's tick, gate tag
reads as device events; rules each way, occupancy and stay, temporary fences and their
expiry, the owner's notice, acknowledging (SQLite and PostGIS)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import shape

from command.auth import Role
from command.hub import Hub
from command.post import CommandPost
from command.site_model import SiteModels
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in, zone_centroid
from tests.problems import assert_problem

SITE = f"/api/sites/{DEMO_ID}"
COMPRESSORS = "Z-023"  # hydrogen compressor house: nobody inside at the start
AMMONIA = "Z-018"  # ammonia storage: nobody inside at the start
WELDER = "P-0106"  # a contractor welder (Jinshan Insulation Services)
WELDER_2 = "P-0115"
OPERATOR = "P-0001"  # an electrician of the works


def post_of(client: TestClient) -> CommandPost:
    post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
    return post


@pytest.fixture
def planner(command: TestClient, db: Database) -> dict[str, str]:
    return sign_in(db, "plan-li", [Role.PLANNER])


def walk(command: TestClient, *people: str, to: list[float]) -> dict[str, Any]:
    rows = [{"person_id": p, "lon": to[0], "lat": to[1]} for p in people]
    answer = command.post(f"{SITE}/positions", json={"positions": rows})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def events(client: TestClient, kind: str) -> list[dict[str, Any]]:
    answer = client.get(f"{SITE}/events", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    rows = answer.json()
    rows = rows["events"] if isinstance(rows, dict) else rows
    return [e for e in rows if e["type"] == kind]


def put_rules(
    command: TestClient, planner: dict[str, str], zone: str, rules: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    answer = command.put(
        f"{SITE}/zones/{zone}/rules", json={"rules": rules, **extra}, headers=planner
    )
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


OUTSIDE = [121.3489525, 30.718595]  # where P-0001 starts: inside no fence


def test_bad_rules_change_nothing_and_only_planners_write(
    command: TestClient, planner: dict[str, str]
) -> None:
    bad = command.put(
        f"{SITE}/zones/{COMPRESSORS}/rules",
        json={"rules": {"roles": "welder", "windows": [{"start": "25:00", "end": "08:00"}]}},
        headers=planner,
    )
    problem = assert_problem(bad, 422)
    fields = {e["field"] for e in problem["errors"]}
    assert {"rules.roles", "rules.windows[0].start"} <= fields
    assert_problem(command.get(f"{SITE}/zones/{COMPRESSORS}/rules"), 404)
    # A commander reads fences but writes no zone's rules.
    assert_problem(command.put(f"{SITE}/zones/{COMPRESSORS}/rules", json={"rules": {}}), 403)
    assert_problem(
        command.put(f"{SITE}/zones/Z-999/rules", json={"rules": {}}, headers=planner), 404
    )
    unknown_owner = command.put(
        f"{SITE}/zones/{COMPRESSORS}/rules",
        json={"rules": {"closed": True}, "owner": {"username": "nobody-here"}},
        headers=planner,
    )
    assert assert_problem(unknown_owner, 422)["errors"][0]["field"] == "owner.username"
    saved = put_rules(command, planner, COMPRESSORS, {"roles": ["field operator"]})
    assert saved["rules"]["roles"] == ["field operator"] and saved["version"] == 1
    assert command.get(f"{SITE}/zones/{COMPRESSORS}/rules").json()["version"] == 1


def test_a_role_breach_is_raised_once_notifies_the_owner_and_is_acknowledged(
    command: TestClient, planner: dict[str, str], db: Database
) -> None:
    sign_in(db, "owner-wang", [Role.RESPONDER])
    put_rules(
        command,
        planner,
        COMPRESSORS,
        {"roles": ["electrician"]},
        owner={"username": "owner-wang", "phone": "+86 21 5555 0100"},
    )
    inside = zone_centroid(COMPRESSORS)
    walk(command, OPERATOR, to=inside)  # an electrician: allowed
    assert events(command, "fence.breach") == []
    walk(command, WELDER, to=inside)
    walk(command, WELDER, to=[inside[0] + 0.00001, inside[1]])  # still inside: no second
    [breach] = events(command, "fence.breach")
    data = breach["data"]
    assert data["person_id"] == WELDER and data["fence_id"] == COMPRESSORS
    assert data["rule"] == "role" and "welder" in data["reasons"][0]["reason"]
    assert data["employer"] == "Jinshan Insulation Services"
    assert data["lonlat"] == pytest.approx(inside)
    [notice] = [
        e for e in events(command, "notification.requested") if e["data"]["role"] == "fence-owner"
    ]
    assert notice["data"]["contact"]["username"] == "owner-wang"
    assert notice["data"]["person_id"] == WELDER
    # Waiting on every wall until acknowledged.
    [waiting] = command.get(f"{SITE}/fences/breaches").json()
    assert waiting["seq"] == breach["seq"]
    viewer = sign_in(db, "view-he", [Role.VIEWER])
    assert_problem(
        command.post(f"{SITE}/fences/breaches/{breach['seq']}/acknowledge", headers=viewer), 403
    )
    ack = command.post(
        f"{SITE}/fences/breaches/{breach['seq']}/acknowledge", json={"note": "sent out"}
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["type"] == "fence.acknowledged" and ack.json()["data"]["by"] == "cmd-zhou"
    assert command.get(f"{SITE}/fences/breaches").json() == []
    assert_problem(command.post(f"{SITE}/fences/breaches/{breach['seq']}/acknowledge"), 409)
    # Out and in again: a new transition, a new breach.
    walk(command, WELDER, to=OUTSIDE)
    walk(command, WELDER, to=inside)
    assert len(events(command, "fence.breach")) == 2


def test_time_windows_and_induction(
    command: TestClient, planner: dict[str, str], clock: ManualClock
) -> None:
    # The test clock is 08:00 UTC, a Monday: 16:00 in Shanghai.
    put_rules(
        command,
        planner,
        COMPRESSORS,
        {"induction": True, "windows": [{"days": ["mon"], "start": "08:00", "end": "12:00"}]},
    )
    ok = command.put(
        f"{SITE}/people/{OPERATOR}/credentials",
        json={"induction": {"passed_at": "2026-01-10T00:00:00+00:00"}},
        headers=planner,
    )
    assert ok.status_code == 200, ok.text
    walk(command, OPERATOR, WELDER, to=zone_centroid(COMPRESSORS))
    breaches = {e["data"]["person_id"]: e["data"] for e in events(command, "fence.breach")}
    assert {r["rule"] for r in breaches[OPERATOR]["reasons"]} == {"time_window"}
    assert {r["rule"] for r in breaches[WELDER]["reasons"]} == {"induction", "time_window"}
    assert "outside the entry hours (08:00-12:00 mon)" in breaches[OPERATOR]["reasons"][0]["reason"]


def test_occupancy_and_stay_on_the_clock(
    command: TestClient, planner: dict[str, str], clock: ManualClock
) -> None:
    post = post_of(command)
    put_rules(command, planner, AMMONIA, {"max_occupancy": 2, "max_stay_s": 600})
    inside = zone_centroid(AMMONIA)
    walk(command, OPERATOR, WELDER, to=inside)
    assert events(command, "fence.breach") == []  # two of two
    walk(command, WELDER_2, to=inside)
    [full] = events(command, "fence.breach")
    assert full["data"]["rule"] == "max_occupancy"
    assert full["data"]["inside"] == sorted([OPERATOR, WELDER, WELDER_2])
    walk(command, "P-0125", to=inside)  # still over: no new breach
    assert len(events(command, "fence.breach")) == 1
    clock.advance(timedelta(seconds=590))
    post.tick()
    assert len(events(command, "fence.breach")) == 1
    walk(command, "P-0125", to=OUTSIDE)  # left before their stay ran out
    clock.advance(timedelta(seconds=20))
    post.tick()
    post.tick()  # once each, not once a tick
    stays = [e for e in events(command, "fence.breach") if e["data"]["rule"] == "max_stay"]
    assert sorted(e["data"]["person_id"] for e in stays) == sorted([OPERATOR, WELDER, WELDER_2])
    assert "at most 10 min" in stays[0]["data"]["reasons"][0]["reason"]


def test_a_crane_swing_radius_is_drawn_shown_and_expires(
    command: TestClient, planner: dict[str, str], clock: ManualClock, db: Database
) -> None:
    post = post_of(command)
    centre = zone_centroid(AMMONIA)
    viewer = sign_in(db, "view-he", [Role.VIEWER])
    crane = {"kind": "crane_swing", "name": "Crane TC-2", "centre": centre, "radius_m": 15}
    assert_problem(command.post(f"{SITE}/fences/temporary", json=crane, headers=viewer), 403)
    bad = command.post(f"{SITE}/fences/temporary", json={**crane, "radius_m": -3})
    assert {e["field"] for e in assert_problem(bad, 422)["errors"]} == {"radius_m", "expires_at"}
    drawn = command.post(f"{SITE}/fences/temporary", json={**crane, "expires_in_s": 120})
    assert drawn.status_code == 201, drawn.text
    fence = drawn.json()
    assert fence["properties"]["rules"]["closed"] is True
    area = shape(fence["geometry"])
    assert area.contains(shape({"type": "Point", "coordinates": centre}))
    [created] = events(command, "fence.created")
    assert created["data"]["fence"]["id"] == fence["id"]
    listed = command.get(f"{SITE}/fences", headers=viewer).json()["features"]
    assert [f["id"] for f in listed] == [fence["id"]]
    walk(command, OPERATOR, to=centre)
    [breach] = events(command, "fence.breach")
    assert breach["data"]["rule"] == "closed"
    assert breach["data"]["reasons"][0]["reason"] == "nobody may enter the crane swing radius"
    clock.advance(timedelta(seconds=121))
    post.tick()
    [expired] = events(command, "fence.expired")
    assert expired["data"]["fence_id"] == fence["id"] and expired["actor"] == "system"
    assert command.get(f"{SITE}/fences").json()["features"] == []
    walk(command, WELDER, to=centre)  # the crane is gone: nothing to breach
    assert len(events(command, "fence.breach")) == 1


def test_a_fence_drawn_over_people_flags_those_already_inside(
    command: TestClient, planner: dict[str, str]
) -> None:
    centre = zone_centroid(AMMONIA)
    walk(command, WELDER, to=centre)
    drawn = command.post(
        f"{SITE}/fences/temporary",
        json={
            "kind": "hot_work",
            "name": "Welding at pipe rack 4",
            "geometry": shape({"type": "Point", "coordinates": centre})
            .buffer(0.0002)
            .__geo_interface__,
            "expires_in_s": 3600,
        },
        headers=planner,
    )
    assert drawn.status_code == 201, drawn.text
    [breach] = events(command, "fence.breach")
    assert breach["data"]["person_id"] == WELDER
    assert breach["data"]["reasons"] == [
        {"rule": "certificate", "reason": "no hot-work certificate"}
    ]


def tag_read(client: TestClient, person: str, zone: str) -> dict[str, Any]:
    answer = client.post(
        f"{SITE}/device-events",
        json={
            "events": [
                {"device_id": "gate-7", "kind": "tag_read", "person_id": person, "zone_id": zone}
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    rows = body["events"] if isinstance(body, dict) else body
    [read] = [e for e in rows if e["type"].startswith("access.")]
    out: dict[str, Any] = read
    return out


def test_a_tag_read_is_granted_or_refused_by_the_zone_rules(
    command: TestClient, planner: dict[str, str]
) -> None:
    put_rules(command, planner, COMPRESSORS, {"certificates": ["hot_work"], "max_occupancy": 1})
    for person, number, until in (
        (WELDER, "HW-123", "2026-05-30"),
        (WELDER_2, "HW-7", "2027-01-01"),
    ):
        answer = command.put(
            f"{SITE}/people/{person}/credentials",
            json={"certificates": [{"type": "hot_work", "number": number, "expires_on": until}]},
            headers=planner,
        )
        assert answer.status_code == 200, answer.text
    refused = tag_read(command, WELDER, COMPRESSORS)
    assert refused["type"] == "access.refused"
    assert refused["data"]["reasons"] == [
        {"rule": "certificate", "reason": "hot-work certificate HW-123 expired 2026-05-30"}
    ]
    granted = tag_read(command, WELDER_2, COMPRESSORS)
    assert granted["type"] == "access.granted" and granted["data"]["reasons"] == []
    walk(command, WELDER_2, to=zone_centroid(COMPRESSORS))
    # Now full: the next one waits, whatever they hold.
    full = tag_read(command, OPERATOR, COMPRESSORS)
    assert {r["rule"] for r in full["data"]["reasons"]} == {"certificate", "max_occupancy"}
    # A zone without rules lets anyone of the site in; an unknown reader zone is refused whole.
    assert tag_read(command, OPERATOR, AMMONIA)["type"] == "access.granted"
    bad = command.post(
        f"{SITE}/device-events",
        json={
            "events": [
                {"device_id": "g", "kind": "tag_read", "person_id": OPERATOR, "zone_id": "Z-999"}
            ]
        },
    )
    assert_problem(bad, 422)


def test_a_restart_keeps_waiting_breaches_and_raises_none_twice(
    command: TestClient, planner: dict[str, str], db: Database, clock: ManualClock
) -> None:
    put_rules(command, planner, COMPRESSORS, {"roles": ["electrician"]})
    inside = zone_centroid(COMPRESSORS)
    walk(command, WELDER, to=inside)
    [breach] = events(command, "fence.breach")
    # A new command post on the same database: the breach still waits, and the welder, still
    # inside, is not breaching anew.
    again = CommandPost(db, Hub(), clock, SiteModels(db))
    assert [b["seq"] for b in again.fences.open_breaches(DEMO_ID)] == [breach["seq"]]
    again.positions(DEMO_ID, {WELDER: (inside[0], inside[1], None)})
    assert len(events(command, "fence.breach")) == 1
    # Whoever acknowledges it there, it is gone from the log's point of view too.
    again.fences.acknowledge(DEMO_ID, breach["seq"], actor="cmd-zhou")
    third = CommandPost(db, Hub(), clock, SiteModels(db))
    assert third.fences.open_breaches(DEMO_ID) == []


def test_a_temporary_fence_removed_early_is_gone_from_every_wall(command: TestClient) -> None:
    drawn = command.post(
        f"{SITE}/fences/temporary",
        json={
            "kind": "crane_swing",
            "centre": zone_centroid(AMMONIA),
            "radius_m": 20,
            "expires_at": "2026-06-01T18:00:00+08:00",
        },
    )
    assert drawn.status_code == 201, drawn.text
    fence_id = drawn.json()["id"]
    assert drawn.json()["properties"]["expires_at"] == "2026-06-01T10:00:00+00:00"
    gone = command.delete(f"{SITE}/fences/temporary/{fence_id}")
    assert gone.status_code == 200, gone.text
    assert gone.json()["type"] == "fence.removed" and gone.json()["actor"] == "cmd-zhou"
    assert command.get(f"{SITE}/fences").json()["features"] == []
    assert_problem(command.delete(f"{SITE}/fences/temporary/{fence_id}"), 404)
