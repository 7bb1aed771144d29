"""Detector health: stale, stuck, out of range and drifting detectors, calibration and bump-test
records and their due dates, and a ``sensor.health`` event only when a detector's flags change.

The checks are fed with explicit times (days of readings in a fraction of a second); the post's
hooks with a manual clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from command.auth import Role
from command.monitoring.health import SiteHealth
from command.post import CommandPost
from command.sensors import Sensor
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import TEST_START, sign_in
from tests.problems import assert_problem

SITE = "/api/sites/demo-works"
LEL = Sensor("LEL-1", "gas", "LEL", (10.0, 25.0, 50.0), None, "%LEL")
H2S = Sensor("H2S-1", "gas", "H2S", (5.0, 10.0, 20.0), None, "ppm")
TEMP = Sensor("T-1", "temperature", None, (45.0, 55.0, 65.0), None, "degC")
T0 = TEST_START.timestamp()
DAY = 86400.0


def site_health() -> SiteHealth:
    return SiteHealth({s.id: s for s in (LEL, H2S, TEMP)})


def feed(
    health: SiteHealth,
    sensor: str,
    values: np.ndarray,
    times: np.ndarray,
    changes: list[bool] | None = None,
) -> list[set[str]]:
    """Feed one sensor's readings one at a time; the flags after each (and in ``changes``,
    whether the check said its flags changed)."""
    row = np.array([health.index[sensor]])
    out = []
    for value, at in zip(values, times, strict=True):
        changed = health.observe(row, np.array([value]), float(at))
        out.append(set(health.reading_flags(sensor)))
        if changes is not None:
            changes.append(changed.tolist() == row.tolist())
    return out


def clean_air(rng: np.random.Generator, n: int, resolution: float = 0.1) -> np.ndarray:
    """A healthy detector in clean air: 0 with noise, clipped at 0 by the transmitter, to its
    reporting step (so it often reads exactly 0 for a while)."""
    return np.round(np.clip(rng.normal(0.2, 0.4, n), 0, None) / resolution) * resolution


def test_a_healthy_noisy_detector_at_clean_air_is_not_flagged() -> None:
    health = site_health()
    rng = np.random.default_rng(7)
    times = T0 + np.arange(0, 3 * DAY, 60.0)  # three days, a reading a minute
    flags = feed(health, "LEL-1", clean_air(rng, times.size), times)
    assert all(not f for f in flags)
    # One that reads exactly 0 all the time (a quiet transmitter) is not stuck either.
    zeros = feed(health, "H2S-1", np.zeros(120), T0 + np.arange(0, 7200.0, 60.0))
    assert zeros[-1] == set()


def test_a_detector_frozen_away_from_zero_is_stuck_and_clears_when_it_moves() -> None:
    health = site_health()
    times = T0 + np.arange(0, 3600.0, 60.0)
    flags = feed(health, "LEL-1", np.full(times.size, 7.0), times)
    # Not before 30 minutes of exactly the same value...
    assert "stuck" not in flags[28]
    assert "stuck" in flags[31] and "stuck" in flags[-1]
    assert health.evidence["LEL-1"]["stuck"]["value"] == 7.0
    # ...and a noisy one at the same level is fine.
    rng = np.random.default_rng(1)
    noisy = feed(health, "H2S-1", np.round(7 + rng.normal(0, 0.3, times.size), 1), times)
    assert all("stuck" not in f for f in noisy)
    # It moves: no longer stuck, and the evidence goes.
    assert "stuck" not in feed(health, "LEL-1", np.array([7.1]), np.array([T0 + 3600]))[0]
    assert "LEL-1" not in health.evidence


def test_out_of_range_at_full_scale_and_below_the_instrument_range() -> None:
    health = site_health()
    flags = feed(health, "LEL-1", np.array([40.0, 100.0, 60.0]), T0 + np.arange(3.0))
    assert [("out_of_range" in f) for f in flags] == [False, True, False]
    # H2S: a 0-100 ppm transmitter; the temperature: below -40 degC is an open circuit.
    assert "out_of_range" in feed(health, "H2S-1", np.array([100.0]), np.array([T0]))[0]
    assert "out_of_range" in feed(health, "T-1", np.array([-45.0]), np.array([T0]))[0]
    assert "out_of_range" not in feed(health, "T-1", np.array([20.0]), np.array([T0 + 1]))[0]


def test_a_drifting_baseline_is_flagged_over_days_and_a_steady_one_is_not() -> None:
    health = site_health()
    rng = np.random.default_rng(3)
    times = T0 + np.arange(0, 3 * DAY, 120.0)
    # The baseline creeps up 3 %LEL a day (limit: 1 % of the span a day), under the noise;
    # short puffs of gas (a welding shop's) do not matter.
    creep = 3.0 * (times - T0) / DAY
    values = np.clip(creep + rng.normal(0, 0.4, times.size), 0, None)
    values[rng.choice(times.size, 40, replace=False)] += 15
    changes: list[bool] = []
    flags = feed(health, "LEL-1", values, times, changes)
    first = next(i for i, f in enumerate(flags) if "drifting" in f)
    assert (times[first] - T0) / 3600 >= 24  # needs a day of baselines
    assert changes[first]  # said so: the post logs it
    evidence = health.evidence["LEL-1"]["drifting"]
    assert 2.0 < evidence["pct_of_span_per_day"] < 4.0
    assert "drifting" in flags[-1]
    steady = feed(health, "H2S-1", np.clip(rng.normal(0.3, 0.4, times.size), 0, None), times)
    assert all("drifting" not in f for f in steady)


def test_the_memory_of_a_detector_stays_bounded() -> None:
    health = site_health()
    times = T0 + np.arange(0, 10 * DAY, 300.0)
    feed(health, "LEL-1", np.full(times.size, 1.0), times)
    row = health.index["LEL-1"]
    assert health.base_n[row] >= 200 and health.base_v.shape[1] == 168  # a week of hours kept
    assert health.window.shape[1] == 64


# -- through the post: events, the tick, the records API -------------------------------------


def post_of(client: TestClient) -> CommandPost:
    post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
    return post


def health_events(post: CommandPost, db: Database) -> list[dict[str, Any]]:
    from command import events as event_log

    with db.read() as session:
        events = event_log.since(session, "demo-works", 0)
    return [dict(e.data) for e in events if e.type == "sensor.health"]


def read(command: TestClient, sensor: str, value: float) -> dict[str, Any]:
    answer = command.post(
        f"{SITE}/readings", json={"readings": [{"sensor_id": sensor, "value": value}]}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_stale_on_the_tick_and_an_event_only_when_the_flags_change(
    command: TestClient, clock: ManualClock, db: Database
) -> None:
    post = post_of(command)
    read(command, "S-010", 1.2)
    post.tick()
    clock.advance(30)
    post.tick()
    assert health_events(post, db) == []
    clock.advance(31)  # 61 s without a reading: a gas detector's limit is 60 s
    post.tick()
    post.tick()
    [stale] = health_events(post, db)
    assert stale["sensor_id"] == "S-010" and stale["raised"] == ["stale"]
    assert stale["evidence"]["stale"]["limit_s"] == 60.0
    assert post.health.flags("demo-works", "S-010") == ["stale"]
    state = command.get(f"{SITE}/sensors/state").json()
    [listed] = [s for s in state["sensors"] if s["id"] == "S-010"]
    assert listed["health_flags"] == ["stale"]
    # A reading comes: cleared, one event; more readings: no more events.
    answer = read(command, "S-010", 1.3)
    assert [e["data"]["cleared"] for e in answer["events"] if e["type"] == "sensor.health"] == [
        ["stale"]
    ]
    for value in (1.1, 1.4, 1.2):
        read(command, "S-010", value)
    post.tick()
    assert len(health_events(post, db)) == 2
    # Out of range through the readings path: the event carries the evidence.
    answer = read(command, "S-010", 100.0)
    [event] = [e for e in answer["events"] if e["type"] == "sensor.health"]
    assert event["data"]["flags"] == ["out_of_range"]
    assert event["data"]["evidence"]["out_of_range"] == {"value": 100.0, "range": [-2.5, 100.0]}


RECORD = {
    "kind": "calibration",
    "at": "2025-05-01T09:00:00+08:00",
    "by": "Li Wei",
    "result": "pass",
    "gas": "CH4",
    "concentration": 50,
    "unit": "%LEL",
}


def test_records_make_due_dates_and_overdue_flags(
    command: TestClient, clock: ManualClock, db: Database
) -> None:
    post = post_of(command)
    url = f"{SITE}/sensors/S-011/maintenance-records"
    planner = sign_in(db, "planner-health", [Role.PLANNER])
    # A calibration a year and a month ago: overdue (365 days), and so is its bump test.
    made = command.post(url, json=RECORD, headers=planner)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["record"]["next_due"] == "2026-05-01T01:00:00+00:00"
    assert body["health"] == ["overdue_calibration", "overdue_bump_test"]
    [health] = [e for e in body["events"] if e["type"] == "sensor.health"]
    assert health["data"]["evidence"]["overdue_calibration"]["due"] == "2026-05-01T01:00:00+00:00"
    # A bump test yesterday: the bump test is no longer due; the calibration still is.
    bump = {
        **RECORD,
        "kind": "bump_test",
        "at": (TEST_START - timedelta(days=1)).isoformat(),
        "concentration": 25,
    }
    body = command.post(url, json=bump).json()  # a commander may record one too
    assert body["health"] == ["overdue_calibration"]
    assert [e["data"]["cleared"] for e in body["events"] if e["type"] == "sensor.health"] == [
        ["overdue_bump_test"]
    ]
    listed = command.get(url, headers=sign_in(db, "viewer-health", [Role.VIEWER])).json()
    assert [r["kind"] for r in listed["records"]] == ["bump_test", "calibration"]
    assert listed["calibration"]["overdue"] is True and listed["bump_test"]["overdue"] is False
    assert listed["bump_test"]["due"] == "2026-06-30T08:00:00+00:00"
    # Thirty days on, the tick flags the bump test due again: one event.
    clock.advance(30 * 86400)
    post.tick()
    post.tick()
    last = health_events(post, db)[-1]
    assert last["raised"] == ["overdue_bump_test"] and last["sensor_id"] == "S-011"
    # The wall's list shows it.
    state = command.get(f"{SITE}/sensors/state").json()
    [shown] = [h for h in state["health"] if h["id"] == "S-011"]
    assert shown["flags"] == ["overdue_calibration", "overdue_bump_test"]
    # A failed bump test is due at once; a passing calibration clears both.
    failed = command.post(url, json={**bump, "at": clock.now().isoformat(), "result": "fail"})
    assert failed.json()["health"] == ["overdue_calibration", "overdue_bump_test"]
    good = {**RECORD, "at": clock.now().isoformat()}
    assert command.post(url, json=good).json()["health"] == []


def test_bad_records_are_refused_whole(command: TestClient, db: Database) -> None:
    url = f"{SITE}/sensors/S-011/maintenance-records"
    for body, field in (
        ({**RECORD, "kind": "inspection"}, "kind"),
        ({**RECORD, "result": "ok"}, "result"),
        ({**RECORD, "at": "2025-05-01T09:00:00"}, "at"),  # no offset
        ({**RECORD, "at": "2030-01-01T00:00:00Z"}, "at"),  # not done yet
        ({**RECORD, "by": ""}, "by"),
        ({**RECORD, "concentration": -5}, "concentration"),
        ({**RECORD, "concentration": True}, "concentration"),
        ({k: v for k, v in RECORD.items() if k != "gas"}, "gas"),
        ({**RECORD, "next_due": "2025-04-01T00:00:00Z"}, "next_due"),
        ({**RECORD, "result": "fail", "next_due": "2026-09-01T00:00:00Z"}, "next_due"),
        ({**RECORD, "colour": "red"}, "colour"),
        ({**RECORD, "": 1}, "body"),
        ([RECORD], "body"),
    ):
        assert_problem(command.post(url, json=body), 422, field=field)
    assert_problem(command.post(f"{SITE}/sensors/S-999/maintenance-records", json=RECORD), 404)
    # Who may: a planner or a commander; not a responder, a viewer or a device.
    responder = sign_in(db, "responder-health", [Role.RESPONDER])
    assert_problem(command.post(url, json=RECORD, headers=responder), 403)
    listed = command.get(url).json()
    assert listed["records"] == [] and listed["calibration"] is None and listed["flags"] == []


def test_drift_over_simulated_days_is_one_event(
    command: TestClient, clock: ManualClock, db: Database
) -> None:
    from command.sensors import Reading

    post = post_of(command)
    rng = np.random.default_rng(11)
    for step in range(2 * 24 * 12):  # two days, a reading every 5 minutes
        clock.advance(300)
        creep = 4.0 * step / (24 * 12)  # 4 %LEL a day
        value = round(max(0.0, creep + float(rng.normal(0, 0.3))), 1)
        post.health.observe("demo-works", [Reading("S-013", value)])
    [event] = health_events(post, db)
    assert event["sensor_id"] == "S-013" and event["raised"] == ["drifting"]
    assert 3.0 < event["evidence"]["drifting"]["pct_of_span_per_day"] < 5.0
    assert event["evidence"]["drifting"]["hours"] >= 24


@pytest.mark.parametrize("value", [7.0])
def test_a_drill_inject_does_not_feed_the_health_checks(command: TestClient, value: float) -> None:
    post = post_of(command)
    from command.sensors import Reading

    assert post.health.observe("demo-works", [Reading("S-010", value)], exercise="d1") == []
    assert "demo-works" not in post.health.sites


def test_an_alarm_carries_its_detectors_flags(
    command: TestClient, clock: ManualClock, db: Database
) -> None:
    post = post_of(command)
    overdue = {**RECORD, "gas": "Cl2", "concentration": 5, "unit": "ppm"}
    url = f"{SITE}/sensors/S-057/maintenance-records"
    assert command.post(url, json=overdue).status_code == 201
    answer = read(command, "S-057", 1.4)  # an alarm for Cl2
    [state] = [e for e in answer["events"] if e["type"] == "sensor.state"]
    assert state["data"]["flags"] == {
        "overdue_calibration": {"due": "2026-05-01T01:00:00+00:00"},
        "overdue_bump_test": {"due": "2025-05-31T01:00:00+00:00"},
    }
    # A healthy detector's alarm carries none.
    [healthy] = [e for e in read(command, "S-058", 1.4)["events"] if e["type"] == "sensor.state"]
    assert "flags" not in healthy["data"]
    # A detector silent for two minutes that suddenly alarms: its alarm says it was stale.
    read(command, "S-059", 0.0)
    clock.advance(120)
    post.tick()
    [stale] = [e for e in read(command, "S-059", 1.4)["events"] if e["type"] == "sensor.state"]
    assert list(stale["data"]["flags"]) == ["stale"]
    assert stale["data"]["flags"]["stale"]["silent_s"] == 120.0


def test_a_restart_does_not_log_a_held_flag_again(
    command: TestClient, clock: ManualClock, db: Database
) -> None:
    from command.app import create_app
    from command.settings import Settings

    post = post_of(command)
    read(command, "S-010", 1.2)
    post.save_readings()  # what the server's tick does each second
    clock.advance(61)
    post.tick()
    assert [e["raised"] for e in health_events(post, db)] == [["stale"]]
    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app) as again:
        restarted = post_of(again)
        clock.advance(5)
        restarted.tick()
        assert restarted.health.flags("demo-works", "S-010") == ["stale"]
        assert len(health_events(restarted, db)) == 1  # held before: no new event
        # A detector silent since before the restart goes stale on the restarted server.
        read(command, "S-012", 2.0)
        post.save_readings()
    with TestClient(
        create_app(
            Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
        )
    ) as third:
        clock.advance(61)
        post_of(third).tick()
        last = health_events(post_of(third), db)[-1]
        assert last["sensor_id"] == "S-012" and last["raised"] == ["stale"]


def test_a_detectors_own_range_and_silence_limit(
    command: TestClient, clock: ManualClock, db: Database
) -> None:
    post = post_of(command)
    url = f"{SITE}/sensors/S-061/health-settings"
    planner = sign_in(db, "planner-range", [Role.PLANNER])
    shown = command.get(url).json()
    assert shown["settings"] is None and shown["defaults"]["full_scale"] == 10.0  # Cl2: 0-10 ppm
    # At 12 ppm the class's 0-10 ppm transmitter is out of range...
    answer = read(command, "S-061", 12.0)
    assert any(e["data"].get("flags") == ["out_of_range"] for e in answer["events"])
    # ...but this one is a 0-20 ppm transmitter that reports every 5 minutes.
    put = command.put(url, json={"full_scale": 20, "stale_after_s": 300}, headers=planner)
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["effective"]["full_scale"] == 20.0 and body["effective"]["range_low"] == -0.5
    assert [e["type"] for e in body["events"]] == ["sensor.health_settings", "sensor.health"]
    assert body["events"][1]["data"]["cleared"] == ["out_of_range"]
    clock.advance(120)
    post.tick()
    assert post.health.flags("demo-works", "S-061") == []  # 2 minutes: within its 5
    clock.advance(200)
    post.tick()
    assert post.health.flags("demo-works", "S-061") == ["stale"]
    # Bad settings are refused whole; a commander may not set them.
    for bad, field in (
        ({"full_scale": 0}, "full_scale"),
        ({"full_scale": 5, "range_low": 6}, "range_low"),
        ({"stale_after_s": 1}, "stale_after_s"),
        ({"full_scale": "20"}, "full_scale"),
        ({"span": 20}, "span"),
    ):
        assert_problem(command.put(url, json=bad, headers=planner), 422, field=field)
    assert_problem(command.put(url, json={"full_scale": 30}), 403)
    assert command.get(url).json()["settings"]["full_scale"] == 20.0
    # Back to the class defaults.
    reset = command.put(url, json={}, headers=planner).json()
    assert reset["settings"] is None and reset["effective"]["full_scale"] == 10.0
