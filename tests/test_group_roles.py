"""The group rule (issue 17, item 7): "a commander of plant A is a viewer of plant B, unless
given more". A person granted a role on one site of the deployment reads every other site as a
viewer, never more; drill scenarios stay the drill controllers'; a wall or device token stays
bound to its site. Through the API, on both backends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from command.auth import Role, create_device_token, create_user, create_wall_token
from command.routes.sites import SITE_EXAMPLE
from gis.sites import create_site
from gis.storage.db import Database
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, FAST_HASHER, TEST_PASSWORD, sign_in
from tests.problems import assert_problem
from tests.test_group_overview import PLANT, activation_on, load_runnable_plant
from tests.test_ws import subscribe_message


def _bare_site(db: Database, site_id: str) -> None:
    """A site with a boundary and no layers: where only the role checks are tested."""
    with db.write() as session:
        create_site(session, {**SITE_EXAMPLE, "id": site_id}, actor="test")


def granted(db: Database, username: str, site_id: str, role: Role) -> dict[str, str]:
    """A session of a new user who holds ``role`` on ``site_id`` only (no global role)."""
    with db.write() as session:
        create_user(session, username, TEST_PASSWORD, [role], site_id=site_id, hasher=FAST_HASHER)
    return sign_in(db, username)


def test_a_commander_of_a_reads_b_and_commands_b_only_when_granted(
    command: TestClient, db: Database, tmp_path: Path
) -> None:
    plant = load_runnable_plant(db, tmp_path)
    headers = granted(db, "demo-commander", DEMO_ID, Role.COMMANDER)
    admin = sign_in(db, "group-admin", [Role.ADMIN])
    on_plant = activation_on(plant)

    # Commands A.
    here = command.post(
        f"/api/sites/{DEMO_ID}/incidents", json=CHLORINE_ACTIVATION, headers=headers
    )
    assert here.status_code == 201, here.text
    # Reads B: the site, its layers, its incidents, its event log; and lists both sites.
    for path in ("", "/layers/zones", "/incidents", "/events"):
        answer = command.get(f"/api/sites/{PLANT}{path}", headers=headers)
        assert answer.status_code == 200, (path, answer.text)
    listed = {s["id"] for s in command.get("/api/sites", headers=headers).json()["sites"]}
    assert {DEMO_ID, PLANT} <= listed
    with command.websocket_connect("/ws", headers=headers) as socket:  # and follows B live
        socket.send_text(subscribe_message(site=PLANT))
        snapshot = socket.receive_json()
    assert snapshot["type"] == "snapshot" and snapshot["site_id"] == PLANT, snapshot
    # Does not command B: 403 problem+json naming the role needed and the one held there.
    refused = command.post(f"/api/sites/{PLANT}/incidents", json=on_plant, headers=headers)
    body = assert_problem(refused, 403, field="role")
    assert "commander" in body["detail"] and f"holds viewer at {PLANT}" in body["detail"]
    # Nor writes anything else there: a planner's edit, an acknowledgement.
    edit = command.post(f"/api/sites/{PLANT}/layers/zones", json={}, headers=headers)
    assert_problem(edit, 403, field="role")
    ack = command.post(f"/api/sites/{PLANT}/sensors/S-001/acknowledge", headers=headers)
    assert_problem(ack, 403, field="role")

    # Granted commander on B (by an administrator, through the API): commands B too.
    grant = {"site": PLANT, "role": "commander"}
    given = command.post("/api/admin/users/demo-commander/grants", json=grant, headers=admin)
    assert given.status_code == 200, given.text
    there = command.post(f"/api/sites/{PLANT}/incidents", json=on_plant, headers=headers)
    assert there.status_code == 201, there.text
    # Taken back, B is read-only again (the grant on A still makes them a viewer of B).
    taken = command.delete(
        f"/api/admin/users/demo-commander/grants/{PLANT}/commander", headers=admin
    )
    assert taken.status_code == 200, taken.text
    incident = there.json()["incident"]["id"]
    again = command.post(
        f"/api/sites/{PLANT}/incidents/{incident}/stand-down",
        json={"force": True, "reason": "test"},
        headers=headers,
    )
    assert_problem(again, 403, field="role")
    assert command.get(f"/api/sites/{PLANT}/incidents", headers=headers).status_code == 200


def test_the_group_view_gives_no_more_than_a_viewer(
    anonymous_client: TestClient, db: Database, tmp_path: Path
) -> None:
    """A drill controller of B reads A but not A's drill scenarios (nor its drills); an admin
    sees no site."""
    _bare_site(db, PLANT)
    controller = granted(db, "plant-drills", PLANT, Role.DRILL_CONTROLLER)
    assert (
        anonymous_client.get(f"/api/sites/{PLANT}/drills/scenarios", headers=controller).status_code
        == 200
    )
    scenarios = anonymous_client.get(f"/api/sites/{DEMO_ID}/drills/scenarios", headers=controller)
    body = assert_problem(scenarios, 403, field="role")
    assert f"holds viewer at {DEMO_ID}" in body["detail"]
    drills = anonymous_client.get(f"/api/sites/{DEMO_ID}/drills", headers=controller)
    assert_problem(drills, 403, field="role")
    assert anonymous_client.get(f"/api/sites/{DEMO_ID}", headers=controller).status_code == 200
    me = anonymous_client.get("/api/auth/me", headers=controller).json()
    assert me["roles"] == [] and me["site_roles"] == {PLANT: ["drill_controller"]}

    admin = sign_in(db, "only-admin", [Role.ADMIN])
    assert_problem(anonymous_client.get(f"/api/sites/{DEMO_ID}", headers=admin), 403)
    assert_problem(anonymous_client.get("/api/sites", headers=admin), 403)


def test_a_wall_or_device_token_stays_bound_to_its_site(
    anonymous_client: TestClient, db: Database
) -> None:
    _bare_site(db, PLANT)
    with db.write() as session:
        wall = create_wall_token(session, PLANT, "gate house", timedelta(hours=1)).token
        device = create_device_token(session, PLANT, "gateway", timedelta(hours=1)).token
    by_wall = {"Authorization": f"Bearer {wall}"}
    assert anonymous_client.get(f"/api/sites/{PLANT}", headers=by_wall).status_code == 200
    assert_problem(anonymous_client.get(f"/api/sites/{DEMO_ID}", headers=by_wall), 403)
    sites = anonymous_client.get("/api/sites", headers=by_wall).json()["sites"]
    assert [s["id"] for s in sites] == [PLANT]
    by_device = {"Authorization": f"Bearer {device}"}
    assert_problem(anonymous_client.get(f"/api/sites/{DEMO_ID}", headers=by_device), 403)
    assert_problem(anonymous_client.get(f"/api/sites/{PLANT}", headers=by_device), 403)
    readings = {"readings": [{"sensor_id": "S-001", "value": 1.0}]}
    elsewhere = anonymous_client.post(
        f"/api/sites/{DEMO_ID}/readings", json=readings, headers=by_device
    )
    assert_problem(elsewhere, 403)
