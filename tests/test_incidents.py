"""Incident command in process: activation, step commands, deadlines, the log, recovery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from shapely.geometry import Point
from sqlalchemy import delete, select, update

from command.auth import Role
from command.events import verify
from command.hub import Hub
from command.post import CommandPost
from command.site_model import SiteModels
from gis.storage.db import Database
from gis.storage.tables import EventRow
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in, zone_centroid
from tests.problems import assert_problem

PLANS = Path(__file__).resolve().parent.parent / "fixtures" / "plans"
BASE = f"/api/sites/{DEMO_ID}/incidents"
CHLORINE_STORE = zone_centroid("Z-027")


def chlorine(level: str = "L2", **hazard: Any) -> dict[str, Any]:
    return {
        "plan_id": "chlorine-leak",
        "level": level,
        "location": {"type": "Point", "coordinates": CHLORINE_STORE},
        "hazard": {
            "model": "toxic_release",
            "substance": "chlorine",
            "rate_g_s": 2000,
            "wind_speed_m_s": 3,
            "wind_from_deg": 45,
            **hazard,
        },
    }


def post_of(client: TestClient) -> CommandPost:
    post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
    return post


def activate(client: TestClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(BASE, json=body or chlorine())
    assert response.status_code == 201, response.text
    picture: dict[str, Any] = response.json()
    return picture


def test_one_action_gives_the_whole_picture(command: TestClient, db: Database) -> None:
    picture = activate(command)
    incident = picture["incident"]
    assert incident["plan_id"] == "chlorine-leak" and incident["level"] == "L2"
    assert incident["activated_by"] == "cmd-zhou"
    assert [f["properties"]["level"] for f in picture["threat"]["features"][:3]] == [3, 2, 1]
    counts = picture["exposure"]["counts"]
    assert counts["1"]["people"] >= counts["3"]["people"] > 0
    # Below L3 only the people inside a zone must move, and each has a route or is trapped.
    moving = {p["id"] for p in picture["evacuation"]["people"]}
    inside = set(picture["exposure"]["inside"]["1"]["people"])
    assert moving == inside
    trapped = {t["id"] for t in picture["evacuation"]["trapped"]}
    routed = {p["id"] for p in picture["evacuation"]["people"] if p["muster"] is not None}
    assert routed | (trapped & moving) == moving
    forest = picture["evacuation"]["routes"]
    assert set(forest["start"]) <= routed
    assert any(picture["resources"]["scba"])
    assert picture["resources"]["fire_truck"][0]["mode"] == "vehicle"
    steps = {s["id"]: s for s in picture["plan"]["steps"]}
    assert all(s["level"] in ("L1", "L2") for s in steps.values())
    assert set(picture["timings_ms"]) >= {"threat", "exposure", "evacuation", "resources", "plan"}

    events = command.get(f"/api/sites/{DEMO_ID}/events").json()["events"]
    assert events[0]["type"] == "incident.activated"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert picture["seq"] == events[-1]["seq"]
    assert {"plan.run.activated", "plan.calltree.activated", "notification.requested"} <= {
        e["type"] for e in events
    }
    with db.read() as session:
        count, breaks = verify(session, DEMO_ID)
    assert count == len(events) and breaks == []
    assert command.get(f"{BASE}/{incident['id']}").json()["incident"]["id"] == incident["id"]


def test_a_route_forest_leads_every_mover_to_a_root(command: TestClient) -> None:
    picture = activate(command, chlorine("L3"))  # L3: everyone on site moves
    forest = picture["evacuation"]["routes"]
    people = {p["id"]: p for p in picture["evacuation"]["people"]}
    assert len(people) == 430
    unit, (lon0, lat0), xy = forest["unit_deg"], forest["origin"], forest["xy"]
    assert len(xy) == 2 * len(forest["next"]) and all(isinstance(v, int) for v in xy)

    def node(i: int) -> tuple[float, float]:
        return (lon0 + unit * xy[2 * i], lat0 + unit * xy[2 * i + 1])

    # Every node decodes to a node of the walking network, to within half a step.
    model = post_of(command).models.get(DEMO_ID)
    graph_nodes = model.foot.node_lonlat
    for i in range(0, len(forest["next"]), 7):
        lon, lat = node(i)
        nearest = np.abs(graph_nodes - (lon, lat)).max(axis=1).min()
        assert nearest <= unit / 2 + 1e-9, i
    escape = dict(map(tuple, forest["escape"]))
    musters = model.muster_areas
    for person, start in forest["start"].items():
        at, steps, escaping = start, 0, start in escape
        while steps < 10_000:
            following = escape.get(at, -1) if escaping else forest["next"][at]
            if following == -1 and escaping:
                escaping = False  # left the zone: the safe part of the route goes on
                following = forest["next"][at]
            if following == -1:
                break
            at, steps = following, steps + 1
        assert steps < 10_000, person
        # The root is where the person's muster point is reached.
        muster = musters[people[person]["muster"]]
        assert muster.distance(Point(node(at))) < 0.002, person  # degrees: ~200 m


def test_steps_escalation_and_stand_down_through_the_api(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    step = f"{BASE}/{incident}/steps"
    first = command.post(f"{step}/l1-detect-report/acknowledge")
    if first.status_code == 404:  # the step ids come from the fixture plan
        pytest.fail(first.text)
    assert first.status_code == 200, first.text
    assert first.json()["events"][0]["type"] == "plan.step.acknowledged"
    assert command.post(f"{step}/l1-detect-report/start").status_code == 200
    done = command.post(f"{step}/l1-detect-report/complete", json={"reference": "radio 08:12"})
    assert done.status_code == 200, done.text
    assert_problem(command.post(f"{step}/l1-detect-report/start"), 409, field="step")
    assert_problem(command.post(f"{step}/nothing/start"), 422, field="step")
    escalated = command.post(f"{BASE}/{incident}/escalate").json()["events"]
    assert escalated[0]["type"] == "plan.run.escalated"
    assert "notification.requested" in {e["type"] for e in escalated}
    note = command.post(f"{BASE}/{incident}/notes", json={"text": "wind backing north"})
    assert note.json()["events"][-1]["type"] == "plan.note"
    # Steps are open and people missing: closing needs force and a reason.
    assert_problem(command.post(f"{BASE}/{incident}/stand-down"), 409, field="force")
    closing = {"force": True, "reason": "exercise over"}
    assert command.post(f"{BASE}/{incident}/stand-down", json=closing).status_code == 200
    assert_problem(command.post(f"{BASE}/{incident}/escalate"), 409, field="incident")


def test_a_level_change_logs_its_reason_and_a_bad_reason_changes_nothing(
    command: TestClient,
) -> None:
    incident = activate(command)["incident"]["id"]
    up = command.post(f"{BASE}/{incident}/escalate", json={"reason": "plume reaches the road"})
    assert up.status_code == 200, up.text
    assert up.json()["events"][0]["data"]["data"]["reason"] == "plume reaches the road"
    # An empty reason is refused, naming the field, and the level stays.
    assert_problem(command.post(f"{BASE}/{incident}/deescalate", json={"reason": ""}), 422)
    assert command.get(f"{BASE}/{incident}").json()["plan"]["level"] == "L3"
    down = command.post(f"{BASE}/{incident}/deescalate", json={"reason": "leak isolated"})
    logged = down.json()["events"][0]["data"]["data"]
    assert (logged["from"], logged["to"], logged["reason"]) == ("L3", "L2", "leak isolated")
    assert_problem(command.post(f"{BASE}/{incident}/escalate", json={"why": "x"}), 422)


def test_deadlines_fire_on_the_clock(command: TestClient, clock: ManualClock) -> None:
    activate(command)
    post = post_of(command)
    assert post.tick() == []
    clock.advance(3600)
    fired = post.tick()
    # Overdue steps, and call-tree contacts who did not answer passed on to their fallbacks.
    kinds = {e.type for e in fired}
    assert "plan.step.overdue" in kinds
    assert kinds <= {"plan.step.overdue", "notification.requested", "notification.unanswered"}
    assert [e.seq for e in fired] == sorted(e.seq for e in fired)
    assert post.tick() == []


def test_roles_and_bad_input(command: TestClient, db: Database) -> None:
    viewer = sign_in(db, "viewer-wu", [Role.VIEWER])
    assert_problem(command.post(BASE, json=chlorine(), headers=viewer), 403, field="role")
    assert_problem(command.post(BASE, json={**chlorine(), "plan_id": "nope"}), 404)
    far = chlorine()
    far["location"] = {"type": "Point", "coordinates": [0.0, 0.0]}
    assert_problem(command.post(BASE, json=far), 422, field="location")
    assert_problem(command.post(BASE, json=chlorine(rate_g_s=-5)), 422, field="hazard.rate_g_s")
    assert_problem(
        command.post(BASE, json=chlorine(wind_from_deg=400)), 422, field="hazard.wind_from_deg"
    )
    bad_model = chlorine()
    bad_model["hazard"] = {"model": "meteor"}
    assert_problem(command.post(BASE, json=bad_model), 422)
    assert_problem(command.post(BASE, json={**chlorine(), "level": "L9"}), 422, field="body.level")
    # Nothing refused left an event.
    assert command.get(f"/api/sites/{DEMO_ID}/events").json()["events"] == []


def test_a_restarted_command_post_recovers_the_incident(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    command.post(f"{BASE}/{incident}/steps/l1-detect-report/acknowledge")
    live = post_of(command).incidents[incident]
    fresh = CommandPost(db, Hub(), clock, SiteModels(db))
    assert fresh.recover() == [incident]
    again = fresh.incidents[incident]
    assert again.run.state == live.run.state
    assert {s.id: s.due_at for s in again.run.state.steps.values()} == {
        s.id: s.due_at for s in live.run.state.steps.values()
    }
    assert again.exposure.counts() == live.exposure.counts()
    closed = command.post(f"{BASE}/{incident}/stand-down", json={"force": True, "reason": "test"})
    assert closed.status_code == 200, closed.text
    assert CommandPost(db, Hub(), clock, SiteModels(db)).recover() == []


def test_tampering_with_the_log_is_detected(command: TestClient, db: Database) -> None:
    activate(command)
    with db.write() as session:
        session.execute(
            update(EventRow)
            .where(EventRow.site_id == DEMO_ID, EventRow.seq == 3)
            .values(actor="someone-else")
        )
    with db.read() as session:
        _, breaks = verify(session, DEMO_ID)
        assert [(b.seq, b.reason) for b in breaks] == [(3, "its content does not match its hash")]
        last = session.scalar(select(EventRow.seq).order_by(EventRow.seq.desc()).limit(1))
    with db.write() as session:
        session.execute(delete(EventRow).where(EventRow.site_id == DEMO_ID, EventRow.seq == 5))
    with db.read() as session:
        _, breaks = verify(session, DEMO_ID)
    assert {b.seq for b in breaks} >= {3, 6}
    assert last is not None


def test_audit_verify_command(tmp_path: Path) -> None:
    from command.cli import main
    from gis.site_bundle import IfExists, load_bundle
    from gis.storage.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    load_bundle(
        db,
        Path(__file__).resolve().parent.parent / "fixtures" / "demo-site",
        actor="t",
        if_exists=IfExists.FAIL,
    )
    from command import events

    with db.write() as session:
        for i in range(5):
            events.append(session, DEMO_ID, "command.given", actor="t", data={"n": i})
    runner = CliRunner()
    env = {"RALLYPOINT_DATABASE_URL": url}
    ok = runner.invoke(main, ["audit", "verify"], env=env)
    assert ok.exit_code == 0 and "intact: 5 events" in ok.output
    with db.write() as session:
        session.execute(update(EventRow).where(EventRow.seq == 2).values(data={"n": 99}))
    broken = runner.invoke(main, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "event 2" in broken.output
    db.dispose()


def test_full_muster_is_logged_when_the_last_person_to_move_arrives(command: TestClient) -> None:
    """``incident.mustered``: the moment everyone who must move stands at a muster point (the
    review's time to full muster), logged once."""
    incident_id = activate(command)["incident"]["id"]
    post = post_of(command)
    incident = post.incidents[incident_id]
    model = post.model(DEMO_ID)
    moving = [model.person_ids[int(i)] for i in incident.moving]
    assert len(moving) > 1
    muster = [121.34490975, 30.7184466]  # inside muster point Z-033's area

    def arrive(people: list[str]) -> list[dict[str, Any]]:
        rows = [{"person_id": p, "lon": muster[0], "lat": muster[1]} for p in people]
        answer = command.post(f"/api/sites/{DEMO_ID}/positions", json={"positions": rows})
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()["events"]
        return events

    assert not any(e["type"] == "incident.mustered" for e in arrive(moving[:-1]))
    last = arrive(moving[-1:])
    [mustered] = [e for e in last if e["type"] == "incident.mustered"]
    assert mustered["incident_id"] == incident_id
    assert mustered["data"]["to_account"] == len(moving)
    assert not any(e["type"] == "incident.mustered" for e in arrive(moving[:1]))  # once
    # The review says full muster came then, from the positions.
    closed = command.post(f"{BASE}/{incident_id}/stand-down", json={"force": True, "reason": "x"})
    assert closed.status_code == 200, closed.text
    review = command.get(f"/api/sites/{DEMO_ID}/reviews/{incident_id}")
    assert review.status_code == 200, review.text
    assert review.json()["muster"]["complete_seq"] == mustered["seq"]
    assert review.json()["muster"]["complete_at"] == mustered["at"]
