"""Alarm acknowledgement, ISA-18.2 style (issue 13, item 4): a sensor's rise is an alarm that
stays until a person acknowledges it, even once the reading is back to normal; the event names
who. Rebuilt from the log on a restart; a wall that (re)connects gets the open ones in its
snapshot over a real websocket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from command.app import create_app
from command.auth import Role, create_device_token, create_wall_token
from command.settings import Settings
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, live_with_tokens, sign_in
from tests.live_server import LiveServer
from tests.problems import assert_problem
from tests.test_incidents import post_of
from tests.test_ws import WAIT_S, auth, subscribed

SITE = f"/api/sites/{DEMO_ID}"
CL2 = "S-057"  # a chlorine detector: warning 0.5, alarm 1, high alarm 3 ppm
H2S = "S-001"  # an H2S detector: warning 5, alarm 10, high alarm 20 ppm


def read(client: TestClient, sensor_id: str, value: float) -> list[dict[str, Any]]:
    answer = client.post(
        f"{SITE}/readings", json={"readings": [{"sensor_id": sensor_id, "value": value}]}
    )
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def state(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    answer = client.get(f"{SITE}/sensors/state", headers=headers)
    assert answer.status_code == 200, answer.text
    return {s["id"]: s for s in answer.json()["sensors"]}


def alarm(client: TestClient, sensor_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = state(client)[sensor_id]["alarm"]
    return found


def acknowledge(
    client: TestClient, sensor_id: str, headers: dict[str, str], body: Any = None
) -> httpx.Response:
    answer: httpx.Response = client.post(
        f"{SITE}/sensors/{sensor_id}/acknowledge", json=body, headers=headers
    )
    return answer


def logged(client: TestClient, kind: str) -> list[dict[str, Any]]:
    events = client.get(f"{SITE}/events").json()["events"]
    return [e for e in events if e["type"] == kind]


@pytest.fixture
def responder(db: Database) -> dict[str, str]:
    return sign_in(db, "resp-lin", [Role.RESPONDER])


def test_a_rise_waits_for_a_person_and_the_event_names_who(
    command: TestClient, db: Database, responder: dict[str, str]
) -> None:
    # An alarm (unconfirmed: the post is asked to check), and the chlorine plan proposed at L1.
    [rise, check, _] = read(command, CL2, 1.4)
    assert check["type"] == "sensor.check_requested"
    assert rise["type"] == "sensor.state"
    open_alarm = alarm(command, CL2)
    assert open_alarm == {
        "tier": "alarm",
        "since": rise["at"],
        "value": 1.4,
        "acknowledged": None,
        "flags": None,  # a healthy detector's alarm carries no health flags
    }
    [listed] = post_of(command).site_snapshot(DEMO_ID)["alarms"]
    assert listed == {
        "id": CL2,
        "tier": "alarm",
        "since": rise["at"],
        "value": 1.4,
        "substance": "Cl2",
        "flags": None,
    }

    # Those who only watch read it, but may not acknowledge it.
    viewer = sign_in(db, "viewer-ack", [Role.VIEWER])
    assert state(command, viewer)[CL2]["alarm"]["acknowledged"] is None
    with db.write() as session:
        wall = create_wall_token(session, DEMO_ID, "lobby", timedelta(days=1)).token
        device = create_device_token(session, DEMO_ID, "gateway-9", timedelta(days=1)).token
    for headers in (viewer, auth(wall), auth(device)):
        assert_problem(acknowledge(command, CL2, headers), 403, field="role")
    assert logged(command, "sensor.acknowledged") == []
    assert alarm(command, CL2) == open_alarm

    answer = acknowledge(command, CL2, responder, {"note": "gas team on the way"})
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert (event["type"], event["actor"]) == ("sensor.acknowledged", "resp-lin")
    assert event["data"] == {
        "sensor_id": CL2,
        "tier": "alarm",
        "value": 1.4,
        "by": "resp-lin",
        "by_name": "resp-lin",  # the display name (the username unless one was given)
        "note": "gas team on the way",
    }
    assert logged(command, "sensor.acknowledged") == [event]
    assert alarm(command, CL2) == {
        **open_alarm,
        "acknowledged": {"by": "resp-lin", "by_name": "resp-lin", "at": event["at"]},
    }
    assert post_of(command).site_snapshot(DEMO_ID)["alarms"] == []

    # Again: nothing to acknowledge, said with the sensor's state; nothing logged.
    again = assert_problem(acknowledge(command, CL2, command.headers), 409, field="sensor")
    assert "acknowledged already, by resp-lin" in again["detail"]
    assert "it is in alarm" in again["detail"]
    assert len(logged(command, "sensor.acknowledged")) == 1


def test_a_bad_acknowledgement_changes_nothing(command: TestClient) -> None:
    read(command, CL2, 1.4)
    before = alarm(command, CL2)
    assert_problem(acknowledge(command, "S-999", command.headers), 404, field="sensor")
    assert_problem(
        command.post(
            f"/api/sites/nowhere/sensors/{CL2}/acknowledge", json=None, headers=command.headers
        ),
        404,
    )
    assert_problem(
        acknowledge(command, CL2, command.headers, {"note": "x" * 501}), 422, field="body.note"
    )
    assert_problem(acknowledge(command, CL2, command.headers, {"by": "someone"}), 422)
    quiet = assert_problem(acknowledge(command, H2S, command.headers), 409, field="sensor")
    assert quiet["detail"] == f"{H2S} has no alarm to acknowledge: it is normal"
    assert alarm(command, CL2) == before
    assert logged(command, "sensor.acknowledged") == []


def test_back_to_normal_it_stays_unacknowledged_until_someone_acknowledges(
    command: TestClient,
) -> None:
    read(command, CL2, 0.6)  # warning
    [to_alarm, _] = read(command, CL2, 1.4)
    read(command, CL2, 0.7)  # back to warning: still the alarm reached
    assert alarm(command, CL2) == {
        "tier": "alarm",
        "since": to_alarm["at"],
        "value": 1.4,
        "acknowledged": None,
        "flags": None,  # a healthy detector's alarm carries no health flags
    }
    [normal] = read(command, CL2, 0.1)
    assert normal["data"]["to"] is None
    assert state(command)[CL2]["tier"] is None
    assert alarm(command, CL2) == {
        "tier": "alarm",
        "since": to_alarm["at"],
        "value": 1.4,
        "acknowledged": None,
        "flags": None,  # a healthy detector's alarm carries no health flags
    }
    assert [a["id"] for a in post_of(command).site_snapshot(DEMO_ID)["alarms"]] == [CL2]
    answer = acknowledge(command, CL2, command.headers)  # no body: no note
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["note"] is None
    # Acknowledged and normal: over, and no longer listed as an alarm.
    assert alarm(command, CL2) is None
    assert post_of(command).site_snapshot(DEMO_ID)["alarms"] == []
    again = assert_problem(acknowledge(command, CL2, command.headers), 409, field="sensor")
    assert again["detail"] == f"{CL2} has no alarm to acknowledge: it is normal"


def test_a_rise_above_the_acknowledged_tier_arms_it_again(command: TestClient) -> None:
    read(command, CL2, 0.6)
    assert acknowledge(command, CL2, command.headers).status_code == 200
    assert alarm(command, CL2)["acknowledged"] is not None  # type: ignore[index]
    [higher, _] = read(command, CL2, 1.4)
    assert alarm(command, CL2) == {
        "tier": "alarm",
        "since": higher["at"],
        "value": 1.4,
        "acknowledged": None,
        "flags": None,  # a healthy detector's alarm carries no health flags
    }
    assert acknowledge(command, CL2, command.headers).status_code == 200
    # Down to warning and back to alarm: no higher than acknowledged, so nothing new.
    read(command, CL2, 0.85)
    read(command, CL2, 1.2)
    assert state(command)[CL2]["tier"] == "alarm"
    assert alarm(command, CL2)["acknowledged"]["by"] == "cmd-zhou"  # type: ignore[index]
    # Normal, then a new rise: a new alarm, whatever its tier.
    read(command, CL2, 0.1)
    assert alarm(command, CL2) is None
    [again, check] = read(command, CL2, 0.6)  # a new alarm: the post is asked to check
    assert check["type"] == "sensor.check_requested"
    assert alarm(command, CL2) == {
        "tier": "warning",
        "since": again["at"],
        "value": 0.6,
        "acknowledged": None,
        "flags": None,  # a healthy detector's alarm carries no health flags
    }


def test_a_restart_rebuilds_the_alarms_from_the_log(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    read(command, CL2, 1.4)
    acknowledge(command, CL2, command.headers)
    read(command, H2S, 12.0)  # alarm
    read(command, H2S, 1.0)  # normal, unacknowledged
    read(command, "S-002", 6.0)  # warning, unacknowledged
    read(command, "S-002", 11.0)  # alarm
    read(command, "S-003", 6.0)
    acknowledge(command, "S-003", command.headers)
    read(command, "S-003", 0.0)  # acknowledged, then normal: gone
    before = state(command)
    snapshot_before = post_of(command).site_snapshot(DEMO_ID)["alarms"]
    assert {a["id"] for a in snapshot_before} == {H2S, "S-002"}
    assert before["S-003"]["alarm"] is None

    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app) as restarted:
        restarted.headers.update(command.headers)
        after = state(restarted)
        assert {k: s["alarm"] for k, s in after.items()} == {
            k: s["alarm"] for k, s in before.items()
        }
        assert {k: s["tier"] for k, s in after.items()} == {k: s["tier"] for k, s in before.items()}
        assert post_of(restarted).site_snapshot(DEMO_ID)["alarms"] == snapshot_before
        # The rebuilt state goes on as the first did: acknowledged once, then 409.
        assert acknowledge(restarted, H2S, restarted.headers).status_code == 200
        assert alarm(restarted, H2S) is None
        assert_problem(acknowledge(restarted, CL2, restarted.headers), 409, field="sensor")


# -- over a real websocket ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A real server on a SQLite file, and tokens of a commander, a responder and a viewer."""
    users = {"chief": Role.COMMANDER, "medic": Role.RESPONDER, "watcher": Role.VIEWER}
    yield from live_with_tokens(tmp_path_factory.mktemp("alarm-ack") / "rallypoint.db", users)


def test_a_wall_that_connects_is_shown_the_open_alarms(
    live: tuple[LiveServer, dict[str, str]],
) -> None:
    server, tokens = live

    def post(path: str, token: str, body: Any) -> dict[str, Any]:
        answer = httpx.post(f"{server.base}{SITE}{path}", json=body, headers=auth(token))
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        loop = asyncio.get_running_loop()
        readings = {"readings": [{"sensor_id": CL2, "value": 3.5}]}
        await loop.run_in_executor(None, post, "/readings", tokens["chief"], readings)
        async with subscribed(server, tokens["watcher"]) as viewer:
            first = await viewer.recv()
            await loop.run_in_executor(
                None, post, f"/sensors/{CL2}/acknowledge", tokens["medic"], {"note": "seen"}
            )
            stream = await viewer.until(
                lambda m: m["type"] == "event" and m["event"]["type"] == "sensor.acknowledged"
            )
        async with subscribed(server, tokens["watcher"], by_ticket=True) as later:
            second = await later.recv()
        return first, stream, second

    first, stream, second = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT_S))
    assert first["type"] == "snapshot"
    [shown] = first["alarms"]
    assert (shown["id"], shown["tier"], shown["value"]) == (CL2, "high_alarm", 3.5)
    assert shown["substance"] == "Cl2" and shown["since"]
    ack = stream[-1]["event"]
    assert (ack["actor"], ack["data"]["by"], ack["data"]["tier"]) == (
        "medic",
        "medic",
        "high_alarm",
    )
    assert second["type"] == "snapshot" and second["alarms"] == []
