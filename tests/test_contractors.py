"""Contractors: registered with their certificates and induction through the API, checked by
the fences (an expired hot-work certificate keeps them out of a hot-work area, by position and
at the gate), and counted by employer in an evacuation's headcount (SQLite and PostGIS)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import shape

from command.auth import Role
from gis.storage.db import Database
from tests.conftest import DEMO_ID, sign_in, zone_centroid
from tests.problems import assert_problem
from tests.test_fences import events, walk

SITE = f"/api/sites/{DEMO_ID}"
MUSTER_W1 = "Z-033"
PIPE_RACK = "Z-018"  # where the hot work is: ammonia storage, nobody inside at the start


@pytest.fixture
def planner(command: TestClient, db: Database) -> dict[str, str]:
    return sign_in(db, "plan-li", [Role.PLANNER])


CONTRACTOR = {
    "person": {
        "type": "Feature",
        "id": "C-0900",
        "geometry": {"type": "Point", "coordinates": [121.3489525, 30.718595]},
        "properties": {
            "name": "Sun Hao",
            "role": "welder",
            "team": "Jinshan Insulation Services crew",
            "employer": "Jinshan Insulation Services",
        },
    },
    "certificates": [{"type": "hot_work", "number": "HW-123", "expires_on": "2026-05-30"}],
    "induction": {"passed_at": "2026-05-01T01:00:00+00:00"},
}


def test_a_contractor_is_registered_with_certificates_and_induction(
    command: TestClient, planner: dict[str, str], db: Database
) -> None:
    assert_problem(command.post(f"{SITE}/contractors", json=CONTRACTOR), 403)  # a commander
    bad = command.post(
        f"{SITE}/contractors",
        json={
            **CONTRACTOR,
            "certificates": [{"type": "Hot Work!", "number": "", "expires_on": "30/05/2026"}],
        },
        headers=planner,
    )
    fields = {e["field"] for e in assert_problem(bad, 422)["errors"]}
    assert fields == {
        "certificates[0].type",
        "certificates[0].number",
        "certificates[0].expires_on",
    }
    # Nothing half-made: no person either.
    assert_problem(command.get(f"{SITE}/people/C-0900/credentials"), 404)
    made = command.post(f"{SITE}/contractors", json=CONTRACTOR, headers=planner)
    assert made.status_code == 201, made.text
    assert made.json()["employer"] == "Jinshan Insulation Services"
    again = command.post(f"{SITE}/contractors", json=CONTRACTOR, headers=planner)
    assert_problem(again, 409)
    held = command.get(f"{SITE}/people/C-0900/credentials").json()
    assert held["employment"] == "contractor"
    # The test clock is 2026-06-01: the certificate ran out two days ago.
    assert held["certificates"] == [
        {"type": "hot_work", "number": "HW-123", "expires_on": "2026-05-30", "valid": False}
    ]
    assert held["induction"]["valid"] is True
    listed = {c["person_id"]: c for c in command.get(f"{SITE}/contractors").json()}
    assert listed["C-0900"]["certificates"][0]["number"] == "HW-123"
    assert len(listed) == 76  # the demo's 75 contractors and this one
    viewer = sign_in(db, "view-he", [Role.VIEWER])
    assert_problem(command.get(f"{SITE}/contractors", headers=viewer), 403)
    # Credentials are replaced whole; a bad one changes nothing.
    renew = {"certificates": [{"type": "hot_work", "number": "HW-124", "expires_on": "2027-05-30"}]}
    bad_put = command.put(
        f"{SITE}/people/C-0900/credentials",
        json={**renew, "induction": {"passed_at": "yesterday"}},
        headers=planner,
    )
    assert assert_problem(bad_put, 422)["errors"][0]["field"] == "induction.passed_at"
    assert (
        command.get(f"{SITE}/people/C-0900/credentials").json()["certificates"][0]["number"]
        == "HW-123"
    )
    ok = command.put(f"{SITE}/people/C-0900/credentials", json=renew, headers=planner)
    assert ok.status_code == 200, ok.text
    after = command.get(f"{SITE}/people/C-0900/credentials").json()
    assert after["certificates"][0]["valid"] is True and after["induction"] is None
    assert_problem(
        command.put(f"{SITE}/people/P-9999/credentials", json=renew, headers=planner), 404
    )


def test_an_expired_hot_work_certificate_is_refused_at_the_gate_and_flagged_inside(
    command: TestClient, planner: dict[str, str]
) -> None:
    assert command.post(f"{SITE}/contractors", json=CONTRACTOR, headers=planner).status_code == 201
    centre = zone_centroid(PIPE_RACK)
    drawn = command.post(
        f"{SITE}/fences/temporary",
        json={
            "kind": "hot_work",
            "name": "Welding at the ammonia pipe rack",
            "geometry": shape({"type": "Point", "coordinates": centre})
            .buffer(0.0002)
            .__geo_interface__,
            "expires_in_s": 8 * 3600,
            "owner": {"duty": "safety-officer"},
        },
    )
    assert drawn.status_code == 201, drawn.text
    fence_id = drawn.json()["id"]
    read = command.post(
        f"{SITE}/device-events",
        json={
            "events": [
                {
                    "device_id": "gate-rack-4",
                    "kind": "tag_read",
                    "person_id": "C-0900",
                    "zone_id": fence_id,
                }
            ]
        },
    )
    assert read.status_code == 200, read.text
    [refused] = events(command, "access.refused")
    assert refused["data"]["reasons"] == [
        {"rule": "certificate", "reason": "hot-work certificate HW-123 expired 2026-05-30"}
    ]
    assert refused["data"]["employer"] == "Jinshan Insulation Services"
    # He walks in anyway: flagged, and the duty named as the owner is notified.
    walk(command, "C-0900", to=centre)
    [breach] = events(command, "fence.breach")
    assert breach["data"]["fence_kind"] == "hot_work" and breach["data"]["person_id"] == "C-0900"
    assert breach["data"]["reasons"][0]["reason"].startswith("hot-work certificate HW-123 expired")
    notices = [
        e["data"]
        for e in events(command, "notification.requested")
        if e["data"]["role"] == "fence-owner"
    ]
    assert notices and notices[0]["contact"]["duty"] == "safety-officer"


def test_the_headcount_is_broken_down_by_employer(
    command: TestClient, planner: dict[str, str]
) -> None:
    assert command.post(f"{SITE}/contractors", json=CONTRACTOR, headers=planner).status_code == 201
    muster = zone_centroid(MUSTER_W1)
    answer = walk(command, "C-0900", "P-0106", "P-0001", to=muster)
    by: dict[str, Any] = answer["headcount"]["by_employer"]
    assert by["Jinshan Insulation Services"]["accounted"] == 2
    assert by["Demo chemical works"]["accounted"] == 1
    assert by["Jinshan Insulation Services"]["on_site"] == 23  # 22 in the demo, and him
    assert sum(e["on_site"] for e in by.values()) == answer["headcount"]["on_site"]
    assert sum(e["accounted"] for e in by.values()) == answer["headcount"]["accounted"]
