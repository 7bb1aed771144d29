"""Alarm tiers by the standard (issue 16, item 2): GB/T 50493-2019 defaults, per-sensor
overrides with deadband and ISA-18.2 delays on the injected clock, confirmation by voting per
area or by a person, plans from L2 only once confirmed, shelving with an expiry, out of
service and test mode, each an event; the settings stored (SQLite and PostGIS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from command.auth import Role
from command.monitoring.alarms import (
    NO_SETTINGS,
    AlarmSettings,
    Debounce,
    default_thresholds,
    exposure_limit,
    settle,
    standard_limits,
    thresholds_of,
    votes_needed,
)
from command.sensors import Reading, Sensor
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in
from tests.problems import assert_problem
from tests.test_incidents import post_of

SITE = f"/api/sites/{DEMO_ID}"
# The chlor-alkali unit's four chlorine detectors (zone Z-026): warning 0.5, alarm 1, high 3 ppm.
CL2, CL2_B, CL2_C, CL2_D = "S-057", "S-058", "S-059", "S-060"
CHLOR_ALKALI = "Z-026"


# -- the standard's figures ---------------------------------------------------------------------


def gas(substance: str | None, unit: str, *thresholds: float | None) -> Sensor:
    triple = (*thresholds, None, None, None)[:3]
    return Sensor("X-1", "gas", substance, triple, None, unit)  # type: ignore[arg-type]


def test_exposure_limits_convert_to_ppm_at_20_degrees() -> None:
    # ppm = mg/m3 * 24.055 / M: H2S MAC 10 mg/m3, Cl2 MAC 1, NH3 PC-STEL 30, benzene STEL 10.
    for substance, ppm in (("H2S", 7.06), ("Cl2", 0.339), ("NH3", 42.4), ("benzene", 3.08)):
        limit = exposure_limit(substance)
        assert limit is not None and limit.ppm == pytest.approx(ppm, rel=2e-3)
    assert exposure_limit("CO").kind == "PC-STEL"  # type: ignore[union-attr]
    assert exposure_limit("unobtainium") is None


def test_defaults_by_class_follow_gb_t_50493() -> None:
    assert default_thresholds(gas("LEL", "%LEL")) == (25.0, 50.0, None)
    assert default_thresholds(gas("methane", "%LEL")) == (25.0, 50.0, None)
    cl2 = default_thresholds(gas("Cl2", "ppm"))
    assert cl2 is not None and cl2[0] == pytest.approx(0.339, rel=2e-3)
    assert cl2[1] == pytest.approx(0.678, rel=2e-3) and cl2[2] is None
    assert default_thresholds(gas("Cl2", "mg/m3")) == (1.0, 2.0, None)  # no conversion
    assert default_thresholds(gas("unobtainium", "ppm")) is None
    assert default_thresholds(Sensor("T", "temperature", None, (None, None, None))) is None
    # A layer's own thresholds stay; the defaults fill only a sensor that gives none.
    own = gas("H2S", "ppm", 5, 10, 20)
    assert thresholds_of(own, NO_SETTINGS) == ((5, 10, 20), "layer")
    bare = gas("H2S", "ppm")
    (first, second, _), source = thresholds_of(bare, NO_SETTINGS)
    assert source == "standard" and (first, second) == pytest.approx((7.058, 14.116), rel=1e-3)
    override = AlarmSettings(thresholds=(1.0, 2.0, None))
    assert thresholds_of(own, override) == ((1.0, 2.0, None), "settings")
    limits = standard_limits(own)
    assert limits is not None and "GBZ 2.1-2019" in limits["basis"] and "MAC" in limits["basis"]


def test_votes_needed_degrade_with_fewer_detectors_in_service() -> None:
    assert votes_needed("2oo2", 4) == (2, "2oo2")
    assert votes_needed("2oo2", 1) == (1, "1oo1")
    assert votes_needed("1oo2", 4) == (1, "1oo2")
    assert votes_needed("1oo1", 1) == (1, "1oo1")


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_deadband_replaces_the_ten_percent_hysteresis() -> None:
    thresholds = (0.5, 1.0, 3.0)
    timers = Debounce()
    old = NO_SETTINGS  # 10 %: out of alarm below 0.9
    assert settle(timers, thresholds, old, None, at(0), 1.0) == ("alarm", False)
    assert settle(timers, thresholds, old, "alarm", at(1), 0.91)[0] == "alarm"
    assert settle(timers, thresholds, old, "alarm", at(2), 0.89)[0] == "warning"
    wide = AlarmSettings(deadband=0.3)  # out of alarm below 0.7
    timers = Debounce()
    assert settle(timers, thresholds, wide, None, at(0), 1.0)[0] == "alarm"
    assert settle(timers, thresholds, wide, "alarm", at(1), 0.71)[0] == "alarm"
    assert settle(timers, thresholds, wide, "alarm", at(2), 0.69)[0] == "warning"
    assert settle(timers, thresholds, wide, "warning", at(3), 0.21)[0] == "warning"
    assert settle(timers, thresholds, wide, "warning", at(4), 0.19)[0] is None


def test_on_and_off_delays_hold_a_tier_back() -> None:
    thresholds = (0.5, 1.0, 3.0)
    delayed = AlarmSettings(on_delay_s=10, off_delay_s=20)
    timers = Debounce()
    assert settle(timers, thresholds, delayed, None, at(0), 1.4) == (None, True)
    assert settle(timers, thresholds, delayed, None, at(9.9)) == (None, True)
    assert settle(timers, thresholds, delayed, None, at(10)) == ("alarm", False)
    # Below alarm minus its band: still alarm for 20 s, then only the warning holds.
    assert settle(timers, thresholds, delayed, "alarm", at(11), 0.6) == ("alarm", True)
    assert settle(timers, thresholds, delayed, "alarm", at(30.9)) == ("alarm", True)
    assert settle(timers, thresholds, delayed, "alarm", at(31)) == ("warning", False)
    # A dip below the threshold during the on-delay starts it again.
    timers = Debounce()
    settle(timers, thresholds, delayed, None, at(100), 1.4)
    settle(timers, thresholds, delayed, None, at(105), 0.4)
    settle(timers, thresholds, delayed, None, at(106), 1.4)
    assert settle(timers, thresholds, delayed, None, at(115))[0] is None
    assert settle(timers, thresholds, delayed, None, at(116))[0] == "alarm"


# -- through the API ----------------------------------------------------------------------------


def read(client: TestClient, *pairs: tuple[str, float]) -> list[dict[str, Any]]:
    body = {"readings": [{"sensor_id": s, "value": v} for s, v in pairs]}
    answer = client.post(f"{SITE}/readings", json=body)
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def sensor_state(client: TestClient, sensor_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        s for s in client.get(f"{SITE}/sensors/state").json()["sensors"] if s["id"] == sensor_id
    )
    return found


@pytest.fixture
def planner(db: Database) -> dict[str, str]:
    return sign_in(db, "plan-wu", [Role.PLANNER])


def settings_url(sensor_id: str) -> str:
    return f"{SITE}/sensors/{sensor_id}/alarm-settings"


def test_a_planner_overrides_a_sensor_and_bad_settings_change_nothing(
    command: TestClient, db: Database, planner: dict[str, str]
) -> None:
    viewer = sign_in(db, "view-tiers", [Role.VIEWER])
    shown = command.get(settings_url(CL2), headers=viewer).json()
    assert shown["in_force"]["thresholds"] == {"warning": 0.5, "alarm": 1.0, "high_alarm": 3.0}
    assert shown["in_force"]["thresholds_from"] == "layer" and shown["overrides"] is None
    assert shown["standard"]["class"] == "toxic"
    assert shown["standard"]["first_tier_max"] == pytest.approx(0.339, rel=2e-3)
    assert shown["voting"]["voting"] == "2oo2" and shown["voting"]["area"] == CHLOR_ALKALI
    assert shown["voting"]["detectors"] == [CL2, CL2_B, CL2_C, CL2_D]

    for body, field in (
        ({"thresholds": {"warning": 0.5, "alarm": 0.4}}, "thresholds.alarm"),
        ({"thresholds": {"warning": -1}}, "thresholds.warning"),
        ({"thresholds": {}}, "thresholds"),
        ({"thresholds": {"low": 1}}, "thresholds"),
        ({"on_delay_s": -1}, "on_delay_s"),
        ({"off_delay_s": 3601}, "off_delay_s"),
        ({"on_delay_s": "soon"}, "on_delay_s"),
        ({"deadband": 0.5}, "deadband"),  # as wide as the warning: it would never clear
        ({"deadband": -0.1}, "deadband"),
        ({"meanings": {"panic": "run"}}, "meanings.panic"),
        ({"meanings": {"alarm": "x" * 501}}, "meanings.alarm"),
        ({"colour": "red"}, "colour"),
    ):
        answer = command.put(settings_url(CL2), json=body, headers=planner)
        assert_problem(answer, 422, field=field)
    assert_problem(command.put(settings_url(CL2), json={}, headers=command.headers), 403)
    assert_problem(command.put(settings_url(CL2), json={}, headers=viewer), 403)
    assert_problem(command.put(settings_url("S-999"), json={}, headers=planner), 404)
    assert command.get(settings_url(CL2)).json() == shown  # nothing half-applied

    good = {
        "thresholds": {"warning": 0.3, "alarm": 0.6, "high_alarm": 2.0},
        "deadband": 0.05,
        "on_delay_s": 0,
        "off_delay_s": 0,
        "meanings": {"alarm": "Chlorine at the cell room: check the cell seals, don masks."},
    }
    answer = command.put(settings_url(CL2), json=good, headers=planner)
    assert answer.status_code == 200, answer.text
    assert answer.json()["in_force"]["thresholds_from"] == "settings"
    [logged] = [
        e
        for e in command.get(f"{SITE}/events").json()["events"]
        if e["type"] == "sensor.alarm_settings"
    ]
    assert logged["actor"] == "plan-wu" and logged["data"]["settings"]["deadband"] == 0.05

    # The override and its deadband drive the tiers.
    assert kinds(read(command, (CL2, 0.65))) == [
        "sensor.state",
        "sensor.check_requested",
        "plan.proposed",
    ]
    assert read(command, (CL2, 0.56)) == []  # above 0.6 - 0.05
    [fell] = read(command, (CL2, 0.54))
    assert (fell["data"]["from"], fell["data"]["to"]) == ("alarm", "warning")

    # Stored: a post that forgets its setup reads the same settings back.
    post_of(command).alarm_board.setups.clear()
    again = command.get(settings_url(CL2)).json()
    assert again["overrides"]["thresholds"] == good["thresholds"]
    assert again["in_force"]["meanings"] == good["meanings"]
    assert command.put(settings_url(CL2), json={}, headers=planner).json()["overrides"] is None


def test_delays_run_on_the_clock_and_the_tick_settles_them(
    command: TestClient, clock: ManualClock, planner: dict[str, str]
) -> None:
    body = {"on_delay_s": 10, "off_delay_s": 20}
    assert command.put(settings_url(CL2), json=body, headers=planner).status_code == 200
    post = post_of(command)
    assert read(command, (CL2, 1.4)) == []  # not for 10 s yet
    clock.advance(5)
    assert read(command, (CL2, 1.5)) == []
    clock.advance(4.9)
    assert post.tick() == []
    clock.advance(0.1)
    fired = post.tick()  # no new reading: the tick enters the tier
    assert [e.type for e in fired] == ["sensor.state", "sensor.check_requested", "plan.proposed"]
    assert fired[0].data["to"] == "alarm" and fired[0].data["value"] == 1.5
    assert fired[0].actor == "system"
    assert sensor_state(command, CL2)["tier"] == "alarm"
    assert read(command, (CL2, 0.1)) == []  # below, but not for 20 s
    clock.advance(19)
    assert post.tick() == []
    clock.advance(1)
    [normal] = post.tick()
    assert (normal.data["from"], normal.data["to"]) == ("alarm", None)


def test_voting_2oo2_confirms_with_a_second_detector_and_only_then_proposes_l2(
    command: TestClient,
) -> None:
    first = read(command, (CL2, 1.4))
    assert kinds(first) == ["sensor.state", "sensor.check_requested", "plan.proposed"]
    assert first[2]["data"]["level"] == "L1" and first[2]["data"]["confirmed"] is False
    assert sensor_state(command, CL2)["confirmed"] is None
    assert sensor_state(command, CL2)["check_requested"] is True
    # A second detector at the first tier only is no vote.
    assert kinds(read(command, (CL2_B, 0.7))) == ["sensor.state", "sensor.check_requested"]
    second = read(command, (CL2_B, 1.2))
    assert kinds(second) == [
        "sensor.state",
        "sensor.confirmed",
        "sensor.confirmed",
        "plan.proposed",
        "plan.proposed",
    ]
    confirmations = {e["data"]["sensor_id"]: e["data"] for e in second[1:3]}
    assert set(confirmations) == {CL2, CL2_B}
    for data in confirmations.values():
        assert data["how"] == "voting" and data["voting"] == "2oo2"
        assert data["area"] == CHLOR_ALKALI and data["detectors"] == [CL2, CL2_B]
    proposals = [e["data"] for e in second[3:]]
    assert all(p["level"] == "L2" and p["confirmed"] for p in proposals)
    assert {p["sensor_id"] for p in proposals} == {CL2, CL2_B}
    assert sensor_state(command, CL2)["confirmed"]["how"] == "voting"
    assert sensor_state(command, CL2)["check_requested"] is False
    conditions = post_of(command).site_snapshot(DEMO_ID)["alarm_conditions"]
    assert set(conditions["confirmed"]) == {CL2, CL2_B}
    # Every L2+ proposal in the log follows its sensor's confirmation.
    log = command.get(f"{SITE}/events").json()["events"]
    for i, event in enumerate(log):
        if event["type"] == "plan.proposed" and event["data"]["level"] != "L1":
            sensor = event["data"]["sensor_id"]
            assert any(
                e["type"] == "sensor.confirmed" and e["data"]["sensor_id"] == sensor
                for e in log[:i]
            )
    # Back to normal, the confirmation goes with the alarm: a new rise is unconfirmed again.
    read(command, (CL2, 0.0), (CL2_B, 0.0))
    assert sensor_state(command, CL2)["confirmed"] is None
    assert read(command, (CL2, 1.4))[-1]["data"]["level"] == "L1"


@pytest.mark.parametrize("voting", ["1oo1", "1oo2"])
def test_voting_one_out_of_n_confirms_the_first_alarm(
    command: TestClient, planner: dict[str, str], voting: str
) -> None:
    url = f"{SITE}/zones/{CHLOR_ALKALI}/alarm-voting"
    answer = command.put(url, json={"voting": voting}, headers=planner)
    assert answer.status_code == 200, answer.text
    assert answer.json()["voting"] == voting and answer.json()["default"] is False
    assert kinds(read(command, (CL2, 0.6))) == ["sensor.state", "sensor.check_requested"]
    events = read(command, (CL2, 1.4))
    assert kinds(events) == ["sensor.state", "sensor.confirmed", "plan.proposed"]
    assert events[1]["data"]["detectors"] == [CL2] and events[1]["data"]["voting"] == voting
    assert events[2]["data"]["level"] == "L2"
    # Back to the default (2oo2 with four detectors).
    back = command.put(url, json={"voting": None}, headers=planner).json()
    assert back["voting"] == "2oo2" and back["default"] is True


def test_voting_errors(command: TestClient, planner: dict[str, str]) -> None:
    url = f"{SITE}/zones/{CHLOR_ALKALI}/alarm-voting"
    assert_problem(command.put(url, json={"voting": "3oo4"}, headers=planner), 422, field="voting")
    assert_problem(command.put(url, json={}, headers=planner), 422, field="voting")
    assert_problem(command.put(url, json={"voting": "1oo1", "x": 1}, headers=planner), 422)
    assert_problem(command.put(url, json={"voting": "1oo1"}, headers=command.headers), 403)
    assert_problem(
        command.put(f"{SITE}/zones/Z-999/alarm-voting", json={"voting": "1oo1"}, headers=planner),
        404,
        field="zone",
    )
    assert command.get(url).json()["voting"] == "2oo2"


def test_a_commander_confirms_an_alarm_and_it_proposes_from_l2(
    command: TestClient, db: Database
) -> None:
    confirm = f"{SITE}/sensors/{CL2}/confirm"
    nothing = assert_problem(command.post(confirm, json=None), 409, field="sensor")
    assert "normal" in nothing["detail"]
    read(command, (CL2, 1.4))
    responder = sign_in(db, "resp-tiers", [Role.RESPONDER])
    assert_problem(command.post(confirm, json=None, headers=responder), 403, field="role")
    assert_problem(command.post(f"{SITE}/sensors/S-999/confirm", json=None), 404)
    assert_problem(command.post(confirm, json={"note": "x" * 501}), 422)
    answer = command.post(confirm, json={"note": "seen from the control room camera"})
    assert answer.status_code == 200, answer.text
    confirmed, proposal = answer.json()["events"]
    assert confirmed["type"] == "sensor.confirmed" and confirmed["actor"] == "cmd-zhou"
    assert confirmed["data"] == {
        "sensor_id": CL2,
        "tier": "alarm",
        "how": "person",
        "by": "cmd-zhou",
        "by_name": "cmd-zhou",
        "note": "seen from the control room camera",
    }
    assert proposal["type"] == "plan.proposed"
    assert (proposal["data"]["level"], proposal["data"]["confirmed"]) == ("L2", True)
    assert "chlorine-leak" in proposal["data"]["plans"]
    again = assert_problem(command.post(confirm, json=None), 409, field="sensor")
    assert "confirmed already (person: cmd-zhou)" in again["detail"]
    # A restart replays the confirmation from the log.
    post = post_of(command)
    post.recover_state()
    assert post.alarm_board.conditions(DEMO_ID)["confirmed"][CL2]["by"] == "cmd-zhou"


def mode(
    client: TestClient, sensor_id: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    answer: httpx.Response = client.post(
        f"{SITE}/sensors/{sensor_id}/mode", json=body, headers=headers
    )
    return answer


def clear(
    client: TestClient, sensor_id: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    answer: httpx.Response = client.post(
        f"{SITE}/sensors/{sensor_id}/mode/clear", json=body, headers=headers
    )
    return answer


def test_shelving_silences_a_sensor_until_the_clock_unshelves_it(
    command: TestClient, clock: ManualClock, planner: dict[str, str]
) -> None:
    shelve = {"mode": "shelved", "reason": "welding next to it (permit HW-12)", "for_s": 60}
    assert_problem(mode(command, CL2, shelve, planner), 403, field="role")  # a commander's
    for body, field in (
        ({"mode": "shelved", "reason": "x"}, "until"),
        ({"mode": "shelved", "reason": "x", "for_s": 8 * 86400}, "for_s"),
        ({"mode": "shelved", "reason": "x", "until": "2020-01-01T00:00:00Z"}, "until"),
        ({"mode": "shelved", "reason": "x", "until": "tomorrow"}, "until"),
        ({"mode": "shelved", "for_s": 60}, "reason"),
        ({"mode": "asleep", "reason": "x"}, "mode"),
    ):
        assert_problem(mode(command, CL2, body), 422, field=field)
    answer = mode(command, CL2, shelve)
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["type"] == "sensor.shelved" and event["data"]["by"] == "cmd-zhou"
    assert event["data"]["reason"] == shelve["reason"]
    assert event["data"]["until"] == (clock.now() + timedelta(seconds=60)).isoformat()
    # Shelved: readings raise nothing, but the latest is kept.
    assert read(command, (CL2, 5.0)) == []
    state = sensor_state(command, CL2)
    assert state["tier"] is None and state["last_reading"]["value"] == 5.0
    assert state["mode"]["mode"] == "shelved"
    oos = {"mode": "out_of_service", "reason": "x"}
    assert_problem(mode(command, CL2, oos), 409, field="mode")  # one mode at a time
    post = post_of(command)
    # As after a restart: the shelving is read back from its table, and still expires.
    post.alarm_board.setups.clear()
    post.alarm_board.loaded_all = False
    clock.advance(59)
    assert post.tick() == []
    assert sensor_state(command, CL2)["mode"]["reason"] == shelve["reason"]
    clock.advance(1)
    [unshelved] = post.tick()
    assert unshelved.type == "sensor.unshelved" and unshelved.actor == "system"
    assert unshelved.data["expired"] is True and unshelved.data["set_by"] == "cmd-zhou"
    assert sensor_state(command, CL2)["mode"] is None
    assert kinds(read(command, (CL2, 5.0)))[0] == "sensor.state"
    assert_problem(clear(command, CL2, {"reason": "x"}), 409, field="mode")


def test_out_of_service_and_test_mode_are_events_naming_who_and_why(
    command: TestClient, db: Database, planner: dict[str, str]
) -> None:
    viewer = sign_in(db, "view-modes", [Role.VIEWER])
    assert_problem(mode(command, CL2, {"mode": "test", "reason": "x"}, viewer), 403)
    out = mode(command, CL2, {"mode": "out_of_service", "reason": "sensor head replaced"}, planner)
    assert out.status_code == 200, out.text
    assert (out.json()["type"], out.json()["actor"]) == ("sensor.out_of_service", "plan-wu")
    assert read(command, (CL2, 5.0)) == []
    # Out of service, it does not vote: the area's 2oo2 needs two of the three left.
    assert kinds(read(command, (CL2_B, 1.4)))[:2] == ["sensor.state", "sensor.check_requested"]
    assert_problem(clear(command, CL2, {}, planner), 422, field="reason")
    post_of(command).alarm_board.setups.clear()  # stored: read back from the table
    assert command.get(settings_url(CL2)).json()["mode"]["mode"] == "out_of_service"
    back = clear(command, CL2, {"reason": "calibrated, bump-tested"}, planner)
    assert back.status_code == 200, back.text
    assert back.json()["type"] == "sensor.in_service"
    assert back.json()["data"]["reason"] == "calibrated, bump-tested"

    # In test: alarms are raised, marked test; no check, no vote, no plan.
    assert mode(command, CL2_C, {"mode": "test", "reason": "bump test"}).status_code == 200
    tested = read(command, (CL2_C, 5.0))
    assert kinds(tested) == ["sensor.state"]
    assert tested[0]["data"]["test"] is True and tested[0]["data"]["to"] == "high_alarm"
    assert sensor_state(command, CL2_B)["confirmed"] is None  # CL2_C did not vote
    ended = clear(command, CL2_C, {"reason": "bump test passed"})
    assert ended.json()["type"] == "sensor.test_ended"


def test_degraded_voting_with_detectors_out_of_service(
    command: TestClient, planner: dict[str, str]
) -> None:
    for sensor in (CL2_B, CL2_C, CL2_D):
        body = {"mode": "out_of_service", "reason": "line isolated"}
        assert mode(command, sensor, body, planner).status_code == 200
    events = read(command, (CL2, 1.4))
    assert kinds(events) == ["sensor.state", "sensor.confirmed", "plan.proposed"]
    assert (events[1]["data"]["voting"], events[1]["data"]["as_voted"]) == ("2oo2", "1oo1")


def test_a_drill_inject_keeps_its_own_tiers(command: TestClient) -> None:
    post = post_of(command)
    post.exercise_tiers["drill-x"] = {}
    logged = post.readings(DEMO_ID, [Reading(CL2, 1.4)], actor="ctl", exercise="drill-x")
    assert [e.type for e in logged] == ["sensor.state", "sensor.check_requested", "plan.proposed"]
    assert all(e.data["exercise"] == "drill-x" for e in logged)
    assert logged[-1].data["level"] == "L1"
    assert post.exercise_tiers["drill-x"][CL2] == "alarm"
    assert CL2 not in post.sensor_tiers.get(DEMO_ID, {})  # the real tier did not move
    # The drill's second detector confirms the drill's alarm, on the drill's tiers only.
    logged = post.readings(DEMO_ID, [Reading(CL2_B, 1.4)], actor="ctl", exercise="drill-x")
    assert [e.type for e in logged].count("sensor.confirmed") == 2
    assert post.alarm_board.conditions(DEMO_ID)["confirmed"] == {}
