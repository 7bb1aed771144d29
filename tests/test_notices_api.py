"""The call tree per incident (issue 13, item 5): each notice of an incident with its status,
folded from the logged ``notification.*`` events, for the wall; active and closed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from command.auth import Role
from command.notifications import NOTICE_STATUSES
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, sign_in
from tests.problems import assert_problem
from tests.test_incidents import post_of

SITE = f"/api/sites/{DEMO_ID}"


def activate(client: TestClient) -> str:
    answer = client.post(f"{SITE}/incidents", json=CHLORINE_ACTIVATION)
    assert answer.status_code == 201, answer.text
    incident_id: str = answer.json()["incident"]["id"]
    return incident_id


def notices(
    client: TestClient, incident_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    answer = client.get(f"{SITE}/incidents/{incident_id}/notices", headers=headers)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["notices"]
    return found


def requested(client: TestClient) -> list[dict[str, Any]]:
    events = client.get(f"{SITE}/events").json()["events"]
    return [e for e in events if e["type"] == "notification.requested"]


def test_each_notice_of_an_activation_waits_with_its_role_and_due_time(
    command: TestClient, db: Database
) -> None:
    incident_id = activate(command)
    logged = requested(command)
    viewer = sign_in(db, "viewer-calls", [Role.VIEWER])
    found = notices(command, incident_id, viewer)
    assert [n["seq"] for n in found] == [e["seq"] for e in logged]
    assert {n["level"] for n in found} == {"L1", "L2"}
    for notice, event in zip(found, logged, strict=True):
        data = event["data"]
        at = datetime.fromisoformat(event["at"])
        assert notice == {
            "seq": event["seq"],
            "role": data["role"],
            "role_name": notice["role_name"],
            **({"role_name_zh": notice["role_name_zh"]} if "role_name_zh" in notice else {}),
            "level": data["level"],
            "order": data["order"],
            "contact": data["contact"],
            "index": 0,
            "fallback": False,
            "after": None,
            "requested_at": event["at"],
            "due_at": (at + timedelta(seconds=data["acknowledge_within_s"])).isoformat(),
            "status": "waiting",
            "delivered_at": None,
            "failure": None,
            "acknowledged": None,
        }
        assert notice["role_name"] and notice["role_name"] != notice["role"]
    assert any("role_name_zh" in n for n in found)  # the plan names its roles in Chinese too


def test_answers_deliveries_and_silence_give_each_notice_its_status(
    command: TestClient, clock: ManualClock
) -> None:
    incident_id = activate(command)
    post = post_of(command)
    first, by_link, delivered, failed, *_ = notices(command, incident_id)
    # On the commander's word, reached by radio; by the person called, through their link.
    answer = command.post(
        f"{SITE}/notifications/{first['seq']}/ack", json={"channel": "radio", "note": "on ch. 3"}
    )
    assert answer.status_code == 200, answer.text
    token = post.calltree.open[(DEMO_ID, by_link["seq"])].answer_token
    assert token is not None
    assert command.post("/api/notices/answer", json={"token": token}).status_code == 200
    # The webhook sender's outcomes.
    post.delivered(post.calltree.open[(DEMO_ID, delivered["seq"])], True, 1, "HTTP 202")
    post.delivered(post.calltree.open[(DEMO_ID, failed["seq"])], False, 3, "HTTP 503")

    found = {n["seq"]: n for n in notices(command, incident_id)}
    ack = found[first["seq"]]["acknowledged"]
    assert found[first["seq"]]["status"] == "acknowledged"
    assert ack == {
        "by": "cmd-zhou",
        "on_behalf": True,
        "channel": "radio",
        "at": answer.json()["at"],
        "note": "on ch. 3",
    }
    contact = by_link["contact"]["name"]
    assert found[by_link["seq"]]["status"] == "acknowledged"
    assert found[by_link["seq"]]["acknowledged"]["by"] == f"contact:{contact}"
    assert found[by_link["seq"]]["acknowledged"]["on_behalf"] is False
    assert found[by_link["seq"]]["acknowledged"]["channel"] == "link"
    assert found[delivered["seq"]]["status"] == "delivered"
    assert found[delivered["seq"]]["delivered_at"] is not None
    assert (found[failed["seq"]]["status"], found[failed["seq"]]["failure"]) == (
        "failed",
        "HTTP 503",
    )

    # Nobody else answers: each call passes on to the next contact, then is unanswered.
    clock.advance(3600)
    post.tick()
    after = notices(command, incident_id)
    assert {n["status"] for n in after} <= set(NOTICE_STATUSES)
    by_seq = {n["seq"]: n for n in after}
    fallbacks = [n for n in after if n["fallback"]]
    assert fallbacks, "the demo's call tree has fallback contacts"
    for notice in fallbacks:
        before = by_seq[notice["after"]]
        assert before["status"] == "passed_on"
        assert notice["index"] == before["index"] + 1
        assert notice["requested_at"] == before["due_at"]
        assert (notice["role"], notice["level"]) == (before["role"], before["level"])
    passed_from = {n["after"] for n in fallbacks}
    for notice in after:
        if notice["seq"] in (first["seq"], by_link["seq"]):
            assert notice["status"] == "acknowledged"
        elif notice["seq"] in passed_from:
            assert notice["status"] == "passed_on"
        else:  # the last contact of its entry
            assert notice["status"] == "unanswered", notice
    # A failed delivery passed on keeps its reason; a delivered one its time.
    assert by_seq[failed["seq"]]["failure"] == "HTTP 503"
    assert by_seq[delivered["seq"]]["delivered_at"] == found[delivered["seq"]]["delivered_at"]
    statuses = {n["status"] for n in after}
    assert {"acknowledged", "passed_on", "unanswered"} <= statuses
    assert [n["seq"] for n in after] == sorted(by_seq)

    # Closed, the record stays readable, the same.
    closed = command.post(
        f"{SITE}/incidents/{incident_id}/stand-down", json={"force": True, "reason": "drill over"}
    )
    assert closed.status_code == 200, closed.text
    assert notices(command, incident_id) == after


def test_an_unknown_incident_is_a_problem(command: TestClient, db: Database) -> None:
    incident_id = activate(command)
    assert_problem(command.get(f"{SITE}/incidents/inc-000000000000/notices"), 404, field="incident")
    assert_problem(command.get(f"/api/sites/nowhere/incidents/{incident_id}/notices"), 404)
    outsider = sign_in(db, "admin-only", [Role.ADMIN])  # no role on the site
    assert_problem(
        command.get(f"{SITE}/incidents/{incident_id}/notices", headers=outsider), 403, field="role"
    )
