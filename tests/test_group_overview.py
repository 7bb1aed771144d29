"""The group overview (issue 17, item 7): one deployment of 20 sites, incidents activated on
some and alarms raised on others through the API; ``GET /api/group/overview`` lists exactly
those, for whoever reads the sites (the group rule), and only their sites for a wall token.

The 20 sites: the demo works (already loaded), one more generated plant with the demo's layout
where a plan can run, one that has only its detectors and people (alarms need no network), both
through the public loader (``load_bundle``), and 17 sites with a boundary and nothing else,
calm. A site model is built only where something happens, which keeps the test a few seconds."""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from shapely.geometry import shape

from command.auth import Role, create_device_token, create_user, create_wall_token
from command.routes.sites import SITE_EXAMPLE
from gis.site_bundle import load_bundle, write_bundle
from gis.sitegen import generate_site
from gis.sites import create_site
from gis.storage.db import Database
from plans.store import load_plan_files
from tests.conftest import (
    CHLORINE_ACTIVATION,
    DEMO_ID,
    DEMO_PLANS,
    FAST_HASHER,
    TEST_PASSWORD,
    sign_in,
)
from tests.problems import assert_problem

OVERVIEW = "/api/group/overview"
PLANT = "plant-b"  # a second works with the demo's layout, 20 km to the north-east
PLANT_CENTRE = (121.52, 30.86)
DETECTORS = "plant-c"  # its detectors and people only


@functools.cache
def _generated(site_id: str, centre: tuple[float, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    return generate_site(site_id=site_id, name=f"Works {site_id}", people=12, centre=centre)


def load_plant(
    db: Database, tmp_path: Path, site_id: str, centre: tuple[float, float], layers: set[str]
) -> dict[str, Any]:
    """Load a generated plant (the demo's layout at ``centre``) with only ``layers``, through
    the public loader; its layers as generated."""
    site, generated = _generated(site_id, centre)
    chosen = {name: c for name, c in generated.items() if name in layers}
    write_bundle(tmp_path / site_id, site, chosen)
    load_bundle(db, tmp_path / site_id, actor="test")
    return generated


def activation_on(layers: dict[str, Any]) -> dict[str, Any]:
    """The demo's chlorine activation, at the chlorine store (Z-027) of a generated plant."""
    (store,) = [f for f in layers["zones"]["features"] if f["id"] == "Z-027"]
    centre = shape(store["geometry"]).centroid
    return {
        **CHLORINE_ACTIVATION,
        "location": {"type": "Point", "coordinates": [round(centre.x, 7), round(centre.y, 7)]},
    }


def load_runnable_plant(db: Database, tmp_path: Path) -> dict[str, Any]:
    """``PLANT``, where the demo's plans run (no neighbours: a synthetic site stands alone)."""
    layers = load_plant(
        db, tmp_path, PLANT, PLANT_CENTRE, {"zones", "resources", "sensors", "people", "network"}
    )
    with db.write() as session:
        load_plan_files(session, PLANT, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    return layers


def _calm_sites(db: Database, count: int) -> list[str]:
    ids = [f"plant-{n:02d}" for n in range(1, count + 1)]
    with db.write() as session:
        for i, site_id in enumerate(ids):
            create_site(
                session, {**SITE_EXAMPLE, "id": site_id, "name": f"Calm works {i + 1}"}, actor="t"
            )
    return ids


def _sos(client: TestClient, site_id: str, person_id: str) -> None:
    event = {"device_id": f"band-{person_id}", "kind": "sos", "person_id": person_id}
    answer = client.post(f"/api/sites/{site_id}/device-events", json={"events": [event]})
    assert answer.status_code == 200, answer.text


def _high(layers: dict[str, Any], substance: str) -> tuple[str, float]:
    """A detector of ``substance`` and a reading above its high alarm."""
    for feature in layers["sensors"]["features"]:
        props = feature["properties"]
        if props.get("substance") == substance and props.get("high_alarm"):
            return feature["id"], float(props["high_alarm"]) * 1.5
    raise AssertionError(f"no {substance} detector")


def test_twenty_sites_show_exactly_their_incidents_and_alarms(
    command: TestClient, db: Database, tmp_path: Path
) -> None:
    """Incidents on two sites (at different levels), two sensor alarms and an SOS on a third;
    the 17 others calm. Each figure is checked against what the API that made it answered (the
    activation, the readings, the site's event log), not against constants."""
    plant = load_runnable_plant(db, tmp_path)
    detectors = load_plant(db, tmp_path, DETECTORS, (121.10, 30.60), {"sensors", "people"})
    calm = _calm_sites(db, 17)

    demo_incident = command.post(f"/api/sites/{DEMO_ID}/incidents", json=CHLORINE_ACTIVATION)
    assert demo_incident.status_code == 201, demo_incident.text
    plant_incident = command.post(
        f"/api/sites/{PLANT}/incidents", json={**activation_on(plant), "level": "L3"}
    )
    assert plant_incident.status_code == 201, plant_incident.text

    # Two detectors of plant-c in alarm: the highest tier listed is the higher of the two.
    chlorine, high = _high(detectors, "Cl2")
    h2s_id, h2s_props = next(
        (f["id"], f["properties"])
        for f in detectors["sensors"]["features"]
        if f["properties"].get("substance") == "H2S"
    )
    readings = [
        {"sensor_id": chlorine, "value": high},
        {"sensor_id": h2s_id, "value": (h2s_props["warning"] + h2s_props["alarm"]) / 2},
    ]
    raised = command.post(f"/api/sites/{DETECTORS}/readings", json={"readings": readings})
    assert raised.status_code == 200, raised.text
    tiers = {
        e["data"]["sensor_id"]: e["data"]["to"]
        for e in raised.json()["events"]
        if e["type"] == "sensor.state"
    }
    assert tiers == {chlorine: "high_alarm", h2s_id: "warning"}, tiers
    # Someone on plant-c presses their SOS (a radio call, posted by a commander).
    person = detectors["people"]["features"][0]["id"]
    _sos(command, DETECTORS, person)

    answer = command.get(OVERVIEW)
    assert answer.status_code == 200, answer.text
    sites = {s["id"]: s for s in answer.json()["sites"]}
    assert set(sites) == {DEMO_ID, PLANT, DETECTORS, *calm} and len(sites) == 20

    def incidents_of(site_id: str) -> list[tuple[str, str, str]]:
        return [(i["id"], i["plan_id"], i["level"]) for i in sites[site_id]["incidents"]]

    made = demo_incident.json()["incident"]
    assert incidents_of(DEMO_ID) == [(made["id"], "chlorine-leak", "L2")]
    shown = sites[DEMO_ID]["incidents"][0]
    assert shown["activated_at"] == made["activated_at"] and shown["status"] == "active"
    assert shown["exercise"] is False
    made_b = plant_incident.json()["incident"]
    assert incidents_of(PLANT) == [(made_b["id"], "chlorine-leak", made_b["level"])]
    assert made_b["level"] == "L3"
    assert sites[DEMO_ID]["status"] == sites[PLANT]["status"] == "incident"
    # The demo's incident sends no alarms of its own; plant-c's two wait, an SOS with them.
    c = sites[DETECTORS]
    assert c["status"] == "alarm" and c["incidents"] == []
    assert c["alarms"] == {"unacknowledged": 2, "highest_tier": "high_alarm"}
    assert c["person_alarms"] == {"sos": 1, "man_down": 0}
    # The last event numbers are the logs' own (the site's event list agrees).
    for site_id in (DEMO_ID, PLANT, DETECTORS):
        events = command.get(f"/api/sites/{site_id}/events", params={"after": 0, "limit": 1})
        assert sites[site_id]["seq"] == events.json()["last_seq"] > 0, site_id
    for site_id in calm:
        quiet = sites[site_id]
        assert quiet["status"] == "calm" and quiet["incidents"] == [] and quiet["seq"] == 0
        assert quiet["alarms"] == {"unacknowledged": 0, "highest_tier": None}
        assert quiet["person_alarms"] == {"sos": 0, "man_down": 0}

    # Acknowledged, plant-c's alarms leave the overview (the SOS still waits: still "alarm").
    for sensor_id in (chlorine, h2s_id):
        acked = command.post(f"/api/sites/{DETECTORS}/sensors/{sensor_id}/acknowledge")
        assert acked.status_code == 200, acked.text
    after = {s["id"]: s for s in command.get(OVERVIEW).json()["sites"]}
    assert after[DETECTORS]["alarms"] == {"unacknowledged": 0, "highest_tier": None}
    assert after[DETECTORS]["status"] == "alarm"  # the SOS
    # Stood down, plant-b's incident no longer makes its tile an incident.
    stood = command.post(
        f"/api/sites/{PLANT}/incidents/{made_b['id']}/stand-down",
        json={"force": True, "reason": "drill of the overview"},
    )
    assert stood.status_code == 200, stood.text
    plant_after = {s["id"]: s for s in command.get(OVERVIEW).json()["sites"]}[PLANT]
    assert plant_after["status"] == "calm", plant_after
    assert all(i["status"] != "active" for i in plant_after["incidents"])


def test_each_caller_sees_only_their_sites(
    anonymous_client: TestClient, db: Database, tmp_path: Path
) -> None:
    """A commander of one site sees the group (every site, as a viewer); a wall token only its
    own site; a device token and an administrator nothing (403, problem+json)."""
    calm = _calm_sites(db, 3)
    with db.write() as session:
        create_user(
            session,
            "plant-01-cmd",
            TEST_PASSWORD,
            [Role.COMMANDER],
            site_id=calm[0],
            hasher=FAST_HASHER,
        )
        wall = create_wall_token(session, calm[1], "gate house", timedelta(hours=1)).token
        device = create_device_token(session, calm[2], "gateway", timedelta(hours=1)).token
    commander = sign_in(db, "plant-01-cmd")
    seen = {s["id"] for s in anonymous_client.get(OVERVIEW, headers=commander).json()["sites"]}
    assert {DEMO_ID, *calm} <= seen
    by_wall = anonymous_client.get(OVERVIEW, headers={"Authorization": f"Bearer {wall}"})
    assert [s["id"] for s in by_wall.json()["sites"]] == [calm[1]]
    by_device = anonymous_client.get(OVERVIEW, headers={"Authorization": f"Bearer {device}"})
    assert_problem(by_device, 403, field="role")
    admin = sign_in(db, "only-admin", [Role.ADMIN])
    assert_problem(anonymous_client.get(OVERVIEW, headers=admin), 403, field="role")
    assert_problem(anonymous_client.get(OVERVIEW), 401)


def test_the_overview_is_documented() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "group.md").read_text(encoding="utf-8")
    for name in (OVERVIEW, "highest_tier", "person_alarms", "unless given more", "viewer"):
        assert name in text, name
