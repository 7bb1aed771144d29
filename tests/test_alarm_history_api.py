"""The alarm journal, outcomes, hot-work permits, the reading history and the analysis through
the API, on SQLite and PostGIS (``command.monitoring.history``, ``command.routes.monitoring``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from command.auth import Role
from command.monitoring.history import rebuild_journal
from gis.storage.db import Database
from gis.storage.tables import AlarmJournalRow, ReadingHistoryRow
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in
from tests.problems import assert_problem

SITE = f"/api/sites/{DEMO_ID}"
CL2 = "S-062"  # a chlorine detector of the chlorine store: warning 0.5, alarm 1.0 ppm
WIND = "S-077"
WORKSHOP = [121.34929, 30.71850]


def read(command: TestClient, *rows: tuple[str, float], direction: float | None = None) -> Any:
    body = {
        "readings": [
            {"sensor_id": s, "value": v, **({"direction_deg": direction} if s == WIND else {})}
            for s, v in rows
        ]
    }
    answer = command.post(f"{SITE}/readings", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


def journal(command: TestClient, **query: str) -> list[dict[str, Any]]:
    answer = command.get(f"{SITE}/alarms", params=query)
    assert answer.status_code == 200, answer.text
    alarms: list[dict[str, Any]] = answer.json()["alarms"]
    return alarms


def test_an_alarm_is_journalled_live_and_rebuilds_the_same_from_the_log(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    [rise, *_] = read(command, (CL2, 1.4))
    clock.advance(timedelta(seconds=90))
    read(command, (CL2, 0.6))  # down to warning: the same alarm
    clock.advance(timedelta(seconds=30))
    [back] = read(command, (CL2, 0.0))
    [alarm] = journal(command, **{"from": (clock.now() - timedelta(hours=1)).isoformat()})
    assert alarm["id"] == f"e{rise['seq']}"
    assert (alarm["sensor_id"], alarm["tier"], alarm["peak"]) == (CL2, "alarm", 1.4)
    assert alarm["started_at"] == rise["at"] and alarm["ended_at"] == back["at"]
    assert alarm["generated"] is False and alarm["outcome"] is None
    assert alarm["plume"] == "no_wind"  # no wind reading yet

    with db.read() as session:
        live = [_row(r) for r in session.scalars(select(AlarmJournalRow))]
    with db.write() as session:
        rebuild_journal(session, DEMO_ID)
    with db.read() as session:
        assert [_row(r) for r in session.scalars(select(AlarmJournalRow))] == live


def _row(row: AlarmJournalRow) -> tuple[Any, ...]:
    return (row.id, row.sensor_id, row.tier, row.started_at, row.ended_at, row.peak, row.outcome)


def test_whoever_checked_records_the_outcome_and_it_is_logged(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    read(command, (CL2, 0.7))
    clock.advance(timedelta(minutes=2))
    read(command, (CL2, 0.0))
    [alarm] = journal(command)
    url = f"{SITE}/alarms/{alarm['id']}/outcome"
    responder = sign_in(db, "resp-wu", [Role.RESPONDER])
    answer = command.post(
        url, json={"outcome": "false", "note": "welding fumes"}, headers=responder
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "false" and answer.json()["outcome_by"] == "resp-wu"
    [checked] = journal(command)
    assert (checked["outcome"], checked["outcome_note"]) == ("false", "welding fumes")
    events = command.get(f"{SITE}/events").json()["events"]
    [logged] = [e for e in events if e["type"] == "alarm.outcome"]
    assert logged["data"]["alarm_id"] == alarm["id"] and logged["actor"] == "resp-wu"
    # A correction: the later outcome wins, both stay in the log.
    command.post(url, json={"outcome": "test"})
    assert journal(command)[0]["outcome"] == "test"

    viewer = sign_in(db, "view-ma", [Role.VIEWER])
    assert_problem(command.post(url, json={"outcome": "real"}, headers=viewer), 403, field="role")
    assert_problem(command.post(url, json={"outcome": "nuisance"}), 422, field="outcome")
    assert_problem(command.post(url, json={"outcome": "real", "note": 5}), 422, field="note")
    assert_problem(command.post(url, json={"outcome": "real", "by": "x"}), 422, field="by")
    assert_problem(command.post(f"{SITE}/alarms/e999999/outcome", json={"outcome": "real"}), 404)
    assert journal(command)[0]["outcome"] == "test"  # nothing refused was taken


def test_readings_are_kept_per_ten_minutes_with_the_winds_vector_mean(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    start = clock.now()
    read(command, (WIND, 2.0), direction=350.0)
    read(command, (WIND, 4.0), direction=10.0)
    read(command, (CL2, 0.1))
    read(command, (CL2, 0.3))
    clock.advance(timedelta(minutes=10))  # a reading in the next period closes the first
    read(command, (WIND, 3.0), direction=20.0)
    read(command, (CL2, 0.2))
    with db.read() as session:
        rows = {
            r.sensor_id: r
            for r in session.scalars(
                select(ReadingHistoryRow).where(ReadingHistoryRow.site_id == DEMO_ID)
            )
        }
    period = int(start.timestamp()) // 600 * 600
    wind, cl2 = rows[WIND], rows[CL2]
    assert (wind.period_s, wind.n, wind.low, wind.mean, wind.high) == (period, 2, 2.0, 3.0, 4.0)
    assert abs(wind.direction_deg or 99) < 1e-6 or abs((wind.direction_deg or 0) - 360) < 1e-6
    assert (cl2.n, cl2.low, cl2.high) == (2, 0.1, 0.3) and abs(cl2.mean - 0.2) < 1e-12
    assert cl2.direction_deg is None and not cl2.generated


def test_hot_work_permits_are_recorded_by_commanders_and_planners(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    now = clock.now()
    permit = {
        "id": "HW-0042",
        "kind": "welding",
        "location": {"type": "Point", "coordinates": WORKSHOP},
        "radius_m": 15,
        "valid_from": now.isoformat(),
        "valid_to": (now + timedelta(hours=4)).isoformat(),
        "issued_by": "Maintenance supervisor Li",
    }
    planner = sign_in(db, "plan-he", [Role.PLANNER])
    answer = command.post(f"{SITE}/hot-work-permits", json=permit, headers=planner)
    assert answer.status_code == 201, answer.text
    assert answer.json()["recorded_by"] == "plan-he"
    listed = command.get(f"{SITE}/hot-work-permits").json()["permits"]
    assert [p["id"] for p in listed] == ["HW-0042"]
    events = command.get(f"{SITE}/events").json()["events"]
    assert [e["data"]["id"] for e in events if e["type"] == "permit.recorded"] == ["HW-0042"]

    assert_problem(command.post(f"{SITE}/hot-work-permits", json=permit), 409, field="id")
    responder = sign_in(db, "resp-qi", [Role.RESPONDER])
    refused = command.post(f"{SITE}/hot-work-permits", json=permit, headers=responder)
    assert_problem(refused, 403, field="role")
    for change, field in (
        ({"kind": "painting"}, "kind"),
        ({"location": {"type": "LineString", "coordinates": [WORKSHOP, WORKSHOP]}}, "location"),
        ({"location": {"type": "Point", "coordinates": [500, 30]}}, "location"),
        ({"radius_m": -1}, "radius_m"),
        ({"valid_to": permit["valid_from"]}, "valid_to"),
        ({"valid_from": "2026-06-01T08:00:00"}, "valid_from"),
        ({"issued_by": ""}, "issued_by"),
        ({"colour": "red"}, "colour"),
    ):
        bad = {**permit, "id": "HW-bad", **change}
        assert_problem(command.post(f"{SITE}/hot-work-permits", json=bad), 422, field=field)
    assert len(command.get(f"{SITE}/hot-work-permits").json()["permits"]) == 1
    assert_problem(command.post("/api/sites/nowhere/hot-work-permits", json=permit), 404)


def test_the_analysis_of_a_live_period_and_its_report(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    start = clock.now()
    read(command, (WIND, 3.0), direction=200.0)  # from the SSW: away from the store's north
    for _ in range(4):  # four short alarms within a minute: chattering
        read(command, (CL2, 0.6))
        clock.advance(timedelta(seconds=5))
        read(command, (CL2, 0.0))
        clock.advance(timedelta(seconds=10))
    clock.advance(timedelta(minutes=10))
    query = {"from": start.isoformat(), "to": clock.now().isoformat()}
    answer = command.get(f"{SITE}/alarm-analysis", params=query)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["totals"]["alarms"] == 4
    [cl2] = [s for s in result["sensors"] if s["sensor_id"] == CL2]
    assert (cl2["count"], cl2["chattering"], cl2["fleeting"]) == (4, 1, 4)
    assert cl2["area"] == "Z-027"
    assert result["consoles"][0]["peak_per_10min"] == 4
    assert result["bad_actors"][0] == {**result["bad_actors"][0], "sensor_id": CL2, "share": 1.0}
    assert {r["action"] for r in result["recommendations"]} >= {"on_delay"}

    report = command.get(f"{SITE}/alarm-analysis/report.html", params=query)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert "attachment" in report.headers["content-disposition"]
    assert "False-alarm analysis" in report.text and CL2 in report.text
    assert "<script" not in report.text

    trace = command.get(f"{SITE}/alarm-analysis/trace", params={**query, "sensor": CL2}).json()
    assert len(trace["alarms"]) == 4 and trace["sensor"]["warning"] == 0.5
    assert_problem(
        command.get(f"{SITE}/alarm-analysis/trace", params={**query, "sensor": "S-999"}), 404
    )
    for bad in (
        {"from": clock.now().isoformat(), "to": start.isoformat()},
        {"from": (start - timedelta(days=100)).isoformat(), "to": start.isoformat()},
        {"from": "2026-06-01T08:00:00"},
    ):
        assert_problem(command.get(f"{SITE}/alarm-analysis", params=bad), 422, field="from")
    assert_problem(command.get(f"{SITE}/alarm-analysis", params={"to": "soon"}), 422)
    viewer = sign_in(db, "view-lu", [Role.VIEWER])
    assert command.get(f"{SITE}/alarm-analysis", params=query, headers=viewer).status_code == 200


def test_echarts_is_served_with_its_licence_and_nothing_else_of_the_package(
    command: TestClient,
) -> None:
    script = command.get("/vendor/echarts/echarts.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    licence = command.get("/vendor/echarts/LICENSE")
    assert licence.status_code == 200 and "Apache License" in licence.text
    zrender = command.get("/vendor/echarts/LICENSE-zrender")
    assert zrender.status_code == 200 and "BSD 3-Clause" in zrender.text
    assert command.get("/vendor/echarts/package.json").status_code == 404
    assert command.get("/vendor/echarts/dist/echarts.js").status_code == 404
    page = command.get("/static/analysis.html")
    assert page.status_code == 200 and "/vendor/echarts/echarts.min.js" in page.text
    # ECharts' tooltips carry style attributes: inline styles, never inline scripts.
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self' 'unsafe-inline'" in policy


def test_shelving_and_test_mode_mark_the_alarm_and_keep_it_out_of_the_rates(
    command: TestClient, clock: ManualClock
) -> None:
    start = clock.now()
    read(command, (CL2, 0.7))
    shelve = {"mode": "shelved", "reason": "known fault, technician called", "for_s": 3600}
    answer = command.post(f"{SITE}/sensors/{CL2}/mode", json=shelve)
    assert answer.status_code == 200, answer.text
    clock.advance(timedelta(minutes=5))
    other = "S-061"
    test = {"mode": "test", "reason": "bump test"}
    assert command.post(f"{SITE}/sensors/{other}/mode", json=test).status_code == 200
    read(command, (other, 0.8))
    clock.advance(timedelta(minutes=1))
    read(command, (other, 0.0))
    alarms = {a["sensor_id"]: a for a in journal(command)}
    assert alarms[CL2]["shelved"] is True and alarms[CL2]["test"] is False
    assert alarms[other]["test"] is True and alarms[other]["shelved"] is False
    query = {"from": start.isoformat(), "to": clock.now().isoformat()}
    totals = command.get(f"{SITE}/alarm-analysis", params=query).json()["totals"]
    assert (totals["alarms"], totals["counted"], totals["shelved"]) == (2, 0, 1)
    assert totals["test_or_maintenance"] == 1


def test_times_at_the_ends_of_the_calendar_are_refused_not_a_fault(command: TestClient) -> None:
    for query in ({"from": "0001-01-01T00:00:00+01:00"}, {"to": "9999-12-31T23:00:00-05:00"}):
        answer = command.get(f"{SITE}/alarm-analysis", params=query)
        assert_problem(answer, 422, field="from")
    permit = {
        "kind": "cutting",
        "location": {"type": "Point", "coordinates": WORKSHOP},
        "valid_from": "0001-01-01T00:00:00+01:00",
        "valid_to": "0001-01-01T08:00:00+01:00",
        "issued_by": "x",
    }
    refused = command.post(f"{SITE}/hot-work-permits", json=permit)
    assert_problem(refused, 422, field="valid_from")
