"""The wall's alarm list shows alarm management (issue 16, item 2), in the real Chromium: the
check the post was asked for, a commander's one-click confirmation (an event naming them, and
the plan then offered at L2), and a shelved sensor with who, why and until when."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO_ID
from tests.live_server import LiveServer
from tests.test_browser import (  # noqa: F401 (browser and watched are fixtures)
    COMMANDER,
    Watched,
    browser,
    demo_database,
    open_wall,
    sign_in,
    watched,
)

SITE = f"/api/sites/{DEMO_ID}"
CL2, CL2_B = "S-057", "S-058"  # chlorine detectors of the chlor-alkali unit (2oo2 by default)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(demo_database(tmp_path / "alarm-wall.db"), heartbeat_s=1.0) as live:
        yield live


def test_a_commander_confirms_an_alarm_on_the_wall(
    server: LiveServer,
    watched: Watched,  # noqa: F811 (the fixture imported above)
) -> None:
    page = watched.page
    open_wall(page, server)
    auth = sign_in(server)
    readings = {"readings": [{"sensor_id": CL2, "value": 1.4}]}
    answer = httpx.post(f"{server.base}{SITE}/readings", json=readings, headers=auth)
    assert answer.status_code == 200, answer.text

    banner = f"#alarms .alarm[data-sensor='{CL2}']"
    page.wait_for_selector(f"{banner} .alarm-unconfirmed[data-check='true']")
    assert "Post asked to check" in page.inner_text(banner)
    page.wait_for_selector(f"{banner} button.activate-now[data-plan='chlorine-leak']")
    assert "at L1" in page.inner_text(f"{banner} button.activate-now")  # unconfirmed: L1 only
    assert page.is_visible(f"{banner} .alarm-ack")  # confirm sits next to acknowledge

    page.click(f"{banner} button.alarm-confirm")
    page.wait_for_selector(f"{banner} .alarm-confirmed[data-how='person']")
    assert f"Confirmed by {COMMANDER}" in page.inner_text(banner)
    page.wait_for_selector(f"{banner} button.alarm-confirm", state="detached")
    events = httpx.get(f"{server.base}{SITE}/events", headers=auth).json()["events"]
    [confirmed] = [e for e in events if e["type"] == "sensor.confirmed"]
    assert (confirmed["actor"], confirmed["data"]["how"]) == (COMMANDER, "person")
    [l2] = [e for e in events if e["type"] == "plan.proposed" and e["data"]["level"] == "L2"]
    assert l2["seq"] > confirmed["seq"]
    page.wait_for_function(
        "sel => (document.querySelector(sel)?.textContent || '').includes('at L2')",
        arg=f"{banner} button.activate-now[data-plan='chlorine-leak']",
    )

    # A shelved sensor is listed under the alarms, with who, why and until when.
    shelve = {"mode": "shelved", "reason": "hot work by the cell room", "for_s": 3600}
    answer = httpx.post(f"{server.base}{SITE}/sensors/{CL2_B}/mode", json=shelve, headers=auth)
    assert answer.status_code == 200, answer.text
    shelved = f"#alarms .alarm-modes li[data-sensor='{CL2_B}'][data-mode='shelved']"
    page.wait_for_selector(shelved)
    assert "hot work by the cell room" in page.inner_text(shelved)
    assert "Shelved" in page.inner_text(shelved)
    assert watched.unexpected_errors() == []
    assert watched.outside() == []


def test_an_alarm_of_an_overdue_detector_carries_the_flag_on_the_wall(
    server: LiveServer,
    watched: Watched,  # noqa: F811 (the fixture imported above)
) -> None:
    """Issue 16, item 3: an overdue detector's alarms carry the flag, in the event and on the
    alarm bar (with the due date), and the flag goes from the bar once it is calibrated."""
    page = watched.page
    auth = sign_in(server)
    record = {
        "kind": "calibration",
        "at": "2024-11-02T09:00:00+08:00",  # two years ago: a yearly calibration is overdue
        "by": "Li Wei",
        "result": "pass",
        "gas": "Cl2",
        "concentration": 5,
        "unit": "ppm",
    }
    records = f"{server.base}{SITE}/sensors/{CL2}/maintenance-records"
    answer = httpx.post(records, json=record, headers=auth)
    assert answer.status_code == 201, answer.text
    open_wall(page, server)
    readings = {"readings": [{"sensor_id": CL2, "value": 1.4}]}
    answer = httpx.post(f"{server.base}{SITE}/readings", json=readings, headers=auth)
    assert answer.status_code == 200, answer.text

    events = httpx.get(f"{server.base}{SITE}/events", headers=auth).json()["events"]
    [rose] = [e for e in events if e["type"] == "sensor.state" and e["data"]["to"] == "alarm"]
    assert "overdue_calibration" in rose["data"]["flags"], rose["data"]
    assert rose["data"]["flags"]["overdue_calibration"]["due"].startswith("2025-11-0")

    banner = f"#alarms .alarm[data-sensor='{CL2}']"
    flag = f"{banner} .alarm-health [data-flag='overdue_calibration']"
    page.wait_for_selector(flag)
    assert "calibration overdue (due 2025-11-02)" in page.inner_text(f"{banner} .alarm-health")
    page.select_option("#language", "zh-CN")
    page.wait_for_function(
        "sel => (document.querySelector(sel)?.textContent || '').includes('标定逾期')",
        arg=f"{banner} .alarm-health",
    )
    page.select_option("#language", "en")

    # Calibrated now: the alarm stays listed (unacknowledged) and still says what its detector
    # was when it rose, also on a wall opened afterwards (the snapshot carries it).
    done = {**record, "at": rose["at"]}
    answer = httpx.post(records, json=done, headers=auth)
    assert answer.status_code == 201 and answer.json()["health"] == [], answer.text
    page.reload()
    page.wait_for_selector(flag)
    assert "calibration overdue (due 2025-11-02)" in page.inner_text(f"{banner} .alarm-health")
    assert watched.unexpected_errors() == []
