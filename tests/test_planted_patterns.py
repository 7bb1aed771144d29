"""The planted-pattern test: history generated with seeds other than the demo's
(``command.monitoring.demo_history``), analysed through the API; the analysis must find the
chattering detector by the welding shop, the drifting one, the stuck one, and must not call
the real leak false."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from command.monitoring.demo_history import DEMO_SEED, generate_history
from gis.storage.db import Database
from gis.storage.tables import EventRow
from plans.clock import ManualClock
from tests.conftest import DEMO_ID

SITE = f"/api/sites/{DEMO_ID}"


@pytest.mark.parametrize(("seed", "days"), [(3, 21), (29, 14)])
def test_the_analysis_finds_each_planted_pattern_and_never_calls_the_leak_false(
    command: TestClient, db: Database, clock: ManualClock, seed: int, days: int
) -> None:
    assert seed != DEMO_SEED
    with db.read() as session:
        events_before = session.scalar(select(func.count()).select_from(EventRow))
    with db.write() as session:
        made = generate_history(session, DEMO_ID, days=days, seed=seed, end=clock.now())
    planted = made["planted"]
    with db.read() as session:  # generated history never enters the hash-chained log
        assert session.scalar(select(func.count()).select_from(EventRow)) == events_before
    query = {
        "from": (clock.now() - timedelta(days=days)).isoformat(),
        "to": clock.now().isoformat(),
    }
    answer = command.get(f"{SITE}/alarm-analysis", params=query)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    sensors = {s["sensor_id"]: s for s in result["sensors"]}
    actions: dict[str, set[str]] = {}
    for r in result["recommendations"]:
        actions.setdefault(r["sensor_id"], set()).add(r["action"])

    # Chattering by the welding shop: the worst actor, chattering, its alarms in hot work.
    chattering = sensors[planted["chattering"]]
    assert result["bad_actors"][0]["sensor_id"] == planted["chattering"]
    assert chattering["chattering"] >= 3
    assert chattering["hot_work"]["share"] >= 0.9
    assert actions[planted["chattering"]] >= {"relocate", "on_delay"}
    relocate = _rec(result, planted["chattering"], "relocate")
    assert relocate["evidence"]["during_hot_work"] == chattering["hot_work"]["alarms"]

    # Drifting: a rising baseline, to be recalibrated; no other detector drifts.
    drifting = sensors[planted["drifting"]]
    assert drifting["drift"] is not None and drifting["drift"]["per_day"] > 0
    assert "recalibrate" in actions[planted["drifting"]]
    assert [s for s, r in sensors.items() if r["drift"]] == [planted["drifting"]]

    # Stuck: a flat reading for days, above the warning level: a standing alarm.
    stuck = sensors[planted["stuck"]]
    assert stuck["stuck"] is not None and stuck["stuck"]["hours"] >= 24
    assert stuck["standing"] == 1
    assert "recalibrate" in actions[planted["stuck"]]
    assert [s for s, r in sensors.items() if r["stuck"]] == [planted["stuck"]]

    # The real leak: explained by its upwind source, never suspect, nothing to change.
    leak = sensors[planted["leak"]]
    assert leak["outcomes"]["real"] == 1 and leak["outcomes"]["false"] == 0
    assert leak["plume"] == {"checked": 1, "suspect": 0, "explained": 1}
    assert planted["leak"] not in actions
    assert all(s["id"] != planted["leak_alarm"] for s in result["suspect"]["latest"])
    alarms = command.get(f"{SITE}/alarms", params={**query, "sensor": planted["leak"]}).json()
    [the_leak] = [a for a in alarms["alarms"] if a["id"] == planted["leak_alarm"]]
    assert (the_leak["plume"], the_leak["source"]) == ("explained", planted["leak_source"])
    assert the_leak["outcome"] == "real" and the_leak["generated"] is True

    # Every recommendation names one of the planted detectors: no noise is flagged.
    assert set(actions) <= {planted["chattering"], planted["drifting"], planted["stuck"]}


def _rec(result: dict[str, Any], sensor_id: str, action: str) -> dict[str, Any]:
    return next(
        r
        for r in result["recommendations"]
        if r["sensor_id"] == sensor_id and r["action"] == action
    )
