"""One action from an alarm: ``{"model": "plan"}`` activates a plan with its design release (the
credible worst case it was written for) under the last wind a wind station reported. The log
keeps the figures it resolved to, and where each came from."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from shapely.geometry import shape

from command.hub import Hub
from command.post import CommandPost
from command.site_model import SiteModels
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import DEMO_ID
from tests.problems import assert_problem
from tests.test_incidents import BASE, CHLORINE_STORE, post_of

SITE = f"/api/sites/{DEMO_ID}"
WIND = "S-005"  # the demo site's wind station


def by_plan(plan_id: str, **hazard: Any) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "level": "L2",
        "location": {"type": "Point", "coordinates": CHLORINE_STORE},
        "hazard": {"model": "plan", **hazard},
    }


def activated_event(command: TestClient) -> dict[str, Any]:
    events = command.get(f"{SITE}/events").json()["events"]
    event: dict[str, Any] = next(e for e in reversed(events) if e["type"] == "incident.activated")
    return event


def test_the_design_release_under_the_last_wind(command: TestClient) -> None:
    # No wind station has reported: the wind must be given, and nothing is logged.
    assert_problem(
        command.post(BASE, json=by_plan("chlorine-leak")), 422, field="hazard.wind_from_deg"
    )
    assert command.get(f"{SITE}/events").json()["events"] == []
    command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": WIND, "value": 4.0, "direction_deg": 270}]},
    )
    response = command.post(BASE, json=by_plan("chlorine-leak", daytime=True))
    assert response.status_code == 201, response.text
    hazard = response.json()["incident"]["hazard"]
    # fixtures/plans/chlorine-leak.yaml: 1.25 kg/s from 1 m, its first substance.
    assert hazard["model"] == "toxic_release" and hazard["substance"] == "chlorine"
    assert (hazard["rate_g_s"], hazard["release_height_m"]) == (1250.0, 1.0)
    assert (hazard["wind_speed_m_s"], hazard["wind_from_deg"]) == (4.0, 270.0)
    # The threat lies downwind: to the east of the source for a wind from the west.
    outer = next(f for f in response.json()["threat"]["features"] if f["properties"]["level"] == 1)
    assert shape(outer["geometry"]).centroid.x > CHLORINE_STORE[0]
    event = activated_event(command)
    assert event["data"]["request"]["hazard"] == hazard  # the log holds the figures
    source = event["data"]["hazard_source"]
    assert source["wind"]["sensor_id"] == WIND and "8 mm hole" in source["design_release"]


def test_a_wind_given_wins_and_a_night_without_cloud_cover_is_taken_as_clear(
    command: TestClient,
) -> None:
    command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": WIND, "value": 4.0, "direction_deg": 270}]},
    )
    response = command.post(
        BASE, json=by_plan("ammonia-leak", wind_speed_m_s=2, wind_from_deg=90, daytime=False)
    )
    assert response.status_code == 201, response.text
    hazard = response.json()["incident"]["hazard"]
    assert (hazard["wind_speed_m_s"], hazard["wind_from_deg"]) == (2.0, 90.0)
    assert hazard["daytime"] is False and hazard["cloud_cover_octas"] == 0.0
    source = activated_event(command)["data"]["hazard_source"]
    assert "wind" not in source and "clear night" in source["cloud_cover"]


def test_fire_and_explosion_plans_start_from_their_design_release(command: TestClient) -> None:
    fire = command.post(BASE, json=by_plan("tank-fire")).json()["incident"]["hazard"]
    assert fire == {"model": "pool_fire", "fuel": "methanol", "diameter_m": 20.0}
    blast = command.post(BASE, json=by_plan("vapour-cloud-explosion")).json()["incident"]["hazard"]
    assert (blast["model"], blast["mass_kg"], blast["substance"]) == (
        "explosion",
        5000.0,
        "propane",
    )


def test_a_plan_without_a_design_release_asks_for_the_figures(command: TestClient) -> None:
    body = command.post(BASE, json=by_plan("general-evacuation"))
    assert "design release" in assert_problem(body, 422, field="hazard.model")["detail"]


def test_a_design_release_incident_is_recovered_as_logged(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": WIND, "value": 4.0, "direction_deg": 270}]},
    )
    incident = command.post(BASE, json=by_plan("chlorine-leak", daytime=True)).json()["incident"]
    live = post_of(command).incidents[incident["id"]]
    fresh = CommandPost(db, Hub(), clock, SiteModels(db))  # knows no wind reading
    assert fresh.recover() == [incident["id"]]
    again = fresh.incidents[incident["id"]]
    assert again.request == live.request
    assert again.exposure.counts() == live.exposure.counts()


def test_an_old_wind_reading_is_not_used(command: TestClient, clock: ManualClock) -> None:
    command.post(
        f"{SITE}/readings",
        json={"readings": [{"sensor_id": WIND, "value": 4.0, "direction_deg": 270}]},
    )
    clock.advance(11 * 60)  # the station has gone quiet
    refused = assert_problem(
        command.post(BASE, json=by_plan("chlorine-leak")), 422, field="hazard.wind_from_deg"
    )
    assert "minutes old" in refused["detail"]
    given = command.post(BASE, json=by_plan("chlorine-leak", wind_speed_m_s=2, wind_from_deg=10))
    assert given.status_code == 201, given.text
    # Day or night was not given: the site's clock decided, and the log says so.
    assert "by the site's clock" in activated_event(command)["data"]["hazard_source"]["daytime"]
