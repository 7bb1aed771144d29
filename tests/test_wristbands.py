"""Wristbands over the real inputs (REST and the command post, a manual clock): accuracy and
jitter, SOS, fall, man-down and signal lost with their acknowledgement, the daily dwell report on
a hand-computed track, and the heat map PNG."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pyproj import Transformer
from sqlalchemy import select

from command.auth import Role, create_device_token
from command.monitoring.wristbands import RETENTION_DAYS, Settings, prune_samples
from command.post import CommandPost
from command.routes.live import parse_positions
from gis.errors import InvalidInput
from gis.storage.db import Database
from gis.storage.tables import PositionSampleRow
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in, zone_centroid
from tests.problems import assert_problem

SITE = f"/api/sites/{DEMO_ID}"
WORKER = "P-0001"
OTHER = "P-0002"
OFFICE = zone_centroid("Z-042")  # administration building: no hazard
CANTEEN = zone_centroid("Z-044")
REACTOR = zone_centroid("Z-020")  # a process unit: a hazard zone
#: The demo site's metric CRS (UTM 51N): offsets in metres, read independently of the server.
TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True)
TO_WGS = Transformer.from_crs("EPSG:32651", "EPSG:4326", always_xy=True)


def north(lonlat: list[float], metres: float) -> list[float]:
    x, y = TO_UTM.transform(lonlat[0], lonlat[1])
    lon, lat = TO_WGS.transform(x, y + metres)
    return [lon, lat]


def post_of(client: TestClient) -> CommandPost:
    post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
    return post


def fix(person: str, lonlat: list[float], accuracy: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"person_id": person, "lon": lonlat[0], "lat": lonlat[1]}
    if accuracy is not None:
        row["accuracy_m"] = accuracy
    return row


def send(client: TestClient, *rows: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"{SITE}/positions", json={"positions": list(rows)})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def where(client: TestClient, person: str) -> list[float]:
    """Where the walls are told the person is (what a resuming websocket client is sent)."""
    now = post_of(client).positions_now(DEMO_ID)
    return [round(v, 7) for v in now["positions"][person]]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_accuracy_is_checked_and_none_of_a_bad_batch_is_taken(command: TestClient) -> None:
    for bad in (0, -3, "5", True, 1e9, None):
        rows = [fix(WORKER, OFFICE, 5), {**fix(OTHER, OFFICE), "accuracy_m": bad}]
        if bad is None:
            continue
        answer = command.post(f"{SITE}/positions", json={"positions": rows})
        assert_problem(answer, 422, field="positions[1].accuracy_m")
    assert WORKER not in post_of(command).live.get(DEMO_ID, {})
    moves = parse_positions({"positions": [fix(WORKER, OFFICE, 4.5), fix(OTHER, OFFICE)]})
    assert moves.accuracy == {WORKER: 4.5}
    with pytest.raises(InvalidInput):
        parse_positions({"positions": [fix(WORKER, OFFICE, float("nan"))]})


def test_jitter_imprecise_and_implausible_fixes_do_not_move_anyone(
    command: TestClient, clock: ManualClock
) -> None:
    first = send(command, fix(WORKER, OFFICE, 5))
    assert first["accepted"] == 1 and first["held"] == {
        "jitter": 0,
        "imprecise": 0,
        "implausible": 0,
    }
    here = where(command, WORKER)
    # 4 m away with 5 m accuracy both times (combined 7.1 m): jitter, the person stays.
    clock.advance(5)
    jitter = send(command, fix(WORKER, north(OFFICE, 4), 5))
    assert jitter["held"]["jitter"] == 1
    assert where(command, WORKER) == here
    # 50+ m accuracy: imprecise, the person stays, though 40 m away.
    clock.advance(5)
    vague = send(command, fix(WORKER, north(OFFICE, 40), 80))
    assert vague["held"]["imprecise"] == 1 and where(command, WORKER) == here
    # 20 m in 10 s (beyond the 7.1 m of the accuracies, well under 5 m/s): a move.
    clock.advance(10)
    send(command, fix(WORKER, north(OFFICE, 20), 5))
    moved = where(command, WORKER)
    assert moved != here and abs(moved[1] - north(OFFICE, 20)[1]) < 1e-6
    # 300 m in 1 s: a jump, held until a second fix agrees with it.
    clock.advance(1)
    jump = send(command, fix(WORKER, north(OFFICE, 320), 5))
    assert jump["held"]["implausible"] == 1 and where(command, WORKER) == moved
    clock.advance(1)
    agreed = send(command, fix(WORKER, north(OFFICE, 322), 5))
    assert agreed["held"]["implausible"] == 0
    assert abs(where(command, WORKER)[1] - north(OFFICE, 322)[1]) < 1e-6
    # A position without accuracy is exact, as before wristbands: a 1 m move is taken.
    clock.advance(1)
    send(command, fix(OTHER, OFFICE))
    clock.advance(1)
    send(command, fix(OTHER, north(OFFICE, 1)))
    assert abs(where(command, OTHER)[1] - north(OFFICE, 1)[1]) < 1e-6


def test_sos_and_fall_raise_alarms_with_the_last_position(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    with db.write() as session:
        token = create_device_token(session, DEMO_ID, "band-gateway", timedelta(days=1)).token
    device = {"Authorization": f"Bearer {token}"}
    send(command, fix(WORKER, REACTOR, 3))
    clock.advance(2)
    sos = command.post(
        f"{SITE}/device-events",
        json={"events": [{"device_id": "WB-1", "kind": "sos", "person_id": WORKER}]},
        headers=device,
    )
    assert sos.status_code == 200, sos.text
    [raised] = sos.json()["events"]
    assert raised["type"] == "person.sos"
    assert [raised["data"]["lon"], raised["data"]["lat"]] == pytest.approx(REACTOR, abs=1e-7)
    assert raised["data"]["zone_id"] == "Z-020" and raised["data"]["accuracy_m"] == 3
    listed = command.get(f"{SITE}/people/alarms").json()["alarms"]
    assert [(a["person_id"], a["kind"], a["acknowledged"]) for a in listed] == [
        (WORKER, "sos", None)
    ]
    # A fall and a low battery; an unknown person refuses the whole batch.
    unknown = command.post(
        f"{SITE}/device-events",
        json={
            "events": [
                {"device_id": "WB-2", "kind": "fall", "person_id": OTHER},
                {"device_id": "WB-9", "kind": "sos", "person_id": "P-nobody"},
            ]
        },
        headers=device,
    )
    assert_problem(unknown, 422, field="events[1].person_id")
    assert len(command.get(f"{SITE}/people/alarms").json()["alarms"]) == 1
    other_site = command.post(
        "/api/sites/elsewhere/device-events",
        json={"events": [{"device_id": "WB-2", "kind": "battery_low"}]},
        headers=device,
    )
    assert_problem(other_site, 403, field="site")
    fell = command.post(
        f"{SITE}/device-events",
        json={
            "events": [
                {"device_id": "WB-2", "kind": "fall", "person_id": OTHER},
                {"device_id": "WB-2", "kind": "battery_low", "person_id": OTHER},
            ]
        },
        headers=device,
    )
    assert types(fell.json()["events"]) == ["person.man_down", "person.battery_low"]
    assert fell.json()["events"][0]["data"]["source"] == "fall"
    # A viewer may not acknowledge; a commander does, and the event names who.
    viewer = sign_in(db, "viewer-band", [Role.VIEWER])
    assert_problem(
        command.post(f"{SITE}/people/{WORKER}/alarms/sos/acknowledge", headers=viewer), 403
    )
    ack = command.post(f"{SITE}/people/{WORKER}/alarms/sos/acknowledge", json={"note": "on way"})
    assert ack.status_code == 200, ack.text
    assert ack.json()["type"] == "person.alarm_acknowledged"
    assert ack.json()["data"]["by"] == "cmd-zhou" and ack.json()["data"]["note"] == "on way"
    again = command.post(f"{SITE}/people/{WORKER}/alarms/sos/acknowledge")
    assert_problem(again, 409, field="kind")
    listed = command.get(f"{SITE}/people/alarms").json()["alarms"]
    assert [(a["person_id"], a["kind"]) for a in listed] == [(OTHER, "man_down")]
    # The fallen person's alarm, acknowledged, stays until they move; moving clears it.
    command.post(f"{SITE}/people/{OTHER}/alarms/man_down/acknowledge").raise_for_status()
    assert len(command.get(f"{SITE}/people/alarms").json()["alarms"]) == 1
    send(command, fix(OTHER, OFFICE, 5))  # first fix: the band's anchor, not a move yet
    clock.advance(10)
    walked = send(command, fix(OTHER, north(OFFICE, 25), 5))
    assert types(walked["events"]) == ["person.alarm_cleared"]
    assert command.get(f"{SITE}/people/alarms").json()["alarms"] == []
    # A restart replays the alarms from the log: none listed, as now.
    post = post_of(command)
    post.recover_state()
    assert post.person_alarms(DEMO_ID) == []


def test_man_down_after_n_seconds_still_and_only_in_working_hours(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    post = post_of(command)
    planner = sign_in(db, "planner-band", [Role.PLANNER])
    bad = command.put(f"{SITE}/wristbands/settings", json={"man_down_s": 2}, headers=planner)
    assert_problem(bad, 422, field="man_down_s")
    assert_problem(command.put(f"{SITE}/wristbands/settings", json={"man_down_s": 60}), 403)
    # 16:00 in Shanghai: hours 08:00-12:00 exclude it; 08:00-18:00 include it.
    off = {"man_down_s": 60, "signal_lost_s": 120, "work_from": "08:00", "work_to": "12:00"}
    put = command.put(f"{SITE}/wristbands/settings", json=off, headers=planner)
    assert put.status_code == 200 and put.json() == off
    for _ in range(8):  # 70 s of jitter round one spot: the band reports, nobody moves
        send(command, fix(WORKER, OFFICE, 4))
        clock.advance(10)
    assert types([e.as_dict() for e in post.tick()]) == []
    on = {**off, "work_to": "18:00"}
    command.put(f"{SITE}/wristbands/settings", json=on, headers=planner).raise_for_status()
    send(command, fix(WORKER, north(OFFICE, 2), 4))
    [down] = post.tick()
    assert down.type == "person.man_down" and down.data["person_id"] == WORKER
    assert down.data["still_s"] >= 60 and down.data["zone_id"] == "Z-042"
    assert post.tick() == []  # raised once
    clock.advance(10)
    walked = send(command, fix(WORKER, north(OFFICE, 30), 4))
    assert types(walked["events"]) == ["person.alarm_cleared"]
    [alarm] = post.person_alarms(DEMO_ID)
    assert alarm["kind"] == "man_down" and alarm["cleared"] is not None
    assert alarm["acknowledged"] is None  # cleared, still to be acknowledged


def test_signal_lost_inside_a_hazard_zone_only(command: TestClient, clock: ManualClock) -> None:
    post = post_of(command)
    send(command, fix(WORKER, REACTOR, 5), fix(OTHER, OFFICE, 5))
    clock.advance(119)
    assert post.tick() == []
    clock.advance(2)
    [lost] = post.tick()
    assert lost.type == "person.signal_lost" and lost.data["person_id"] == WORKER
    assert lost.data["zone_id"] == "Z-020"
    assert [lost.data["lon"], lost.data["lat"]] == pytest.approx(REACTOR, abs=1e-7)
    clock.advance(60)
    assert post.tick() == []  # once, and never for the office worker
    back = send(command, fix(WORKER, REACTOR, 5))
    assert types(back["events"]) == ["person.alarm_cleared"]
    assert back["events"][0]["data"]["kind"] == "signal_lost"


def test_dwell_report_and_heat_map_of_a_small_track(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    # WORKER: office at 0, 10, 20 s; canteen from 25 s (a zone change is sampled at once),
    # 35 s, then silent until 200 s (a sample stands for 120 s at most). OTHER: canteen 0-50 s.
    track = [
        (0, [fix(WORKER, OFFICE), fix(OTHER, CANTEEN)]),
        (10, [fix(WORKER, OFFICE)]),
        (20, [fix(WORKER, OFFICE)]),
        (25, [fix(WORKER, CANTEEN)]),
        (35, [fix(WORKER, CANTEEN)]),
        (50, [fix(OTHER, CANTEEN)]),
        (200, [fix(WORKER, CANTEEN)]),
    ]
    start = clock.now()
    for at, rows in track:
        clock.advance((start + timedelta(seconds=at) - clock.now()).total_seconds())
        send(command, *rows)
    planner = sign_in(db, "planner-report", [Role.PLANNER])
    report = command.get(f"{SITE}/reports/dwell", params={"date": "2026-06-01"}, headers=planner)
    assert report.status_code == 200, report.text
    body = report.json()
    people = {p["person_id"]: p for p in body["people"]}
    assert people[WORKER]["zones"] == [
        {"zone_id": "Z-042", "seconds": 25.0},
        {"zone_id": "Z-044", "seconds": 130.0},
    ]
    assert people[OTHER]["zones"] == [{"zone_id": "Z-044", "seconds": 50.0}]
    zones = {z["zone_id"]: (z["seconds"], z["people"]) for z in body["zones"]}
    assert zones == {"Z-042": (25.0, 1), "Z-044": (180.0, 2)}
    assert (
        command.get(f"{SITE}/reports/dwell", params={"date": "2026-06-02"}).json()["people"] == []
    )
    assert_problem(
        command.get(f"{SITE}/reports/dwell", params={"date": "1 June"}), 422, field="date"
    )
    viewer = sign_in(db, "viewer-report", [Role.VIEWER])
    assert_problem(
        command.get(f"{SITE}/reports/dwell", params={"date": "2026-06-01"}, headers=viewer), 403
    )
    png = command.get(f"{SITE}/reports/heatmap.png", params={"date": "2026-06-01"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content)).convert("RGB")
    # The frame: the site's boundary in UTM, 5 % margin each side, 1,000 px wide.
    boundary = post_of(command).model(DEMO_ID).site.boundary
    xs, ys = TO_UTM.transform(*boundary.exterior.xy)
    x0, x1 = min(xs) - 0.05 * (max(xs) - min(xs)), max(xs) + 0.05 * (max(xs) - min(xs))
    y0, y1 = min(ys) - 0.05 * (max(ys) - min(ys)), max(ys) + 0.05 * (max(ys) - min(ys))
    height = round(1000 * (y1 - y0) / (x1 - x0))
    assert image.size == (1000, height)

    def pixel(lonlat: list[float]) -> tuple[int, int, int]:
        x, y = TO_UTM.transform(lonlat[0], lonlat[1])
        col = int((x - x0) / (x1 - x0) * 1000)
        row = int((y1 - y) / (y1 - y0) * height)
        rgb: tuple[int, int, int] = image.getpixel((col, row))  # type: ignore[assignment]
        return rgb

    for spot in (OFFICE, CANTEEN):
        r, g, b = pixel(spot)
        assert r - b > 60 and b < 210, (spot, (r, g, b))  # yellow to dark red: time spent
    assert pixel(REACTOR) == (255, 255, 255)  # nobody was here


def test_settings_default_and_working_hours_wrap_midnight() -> None:
    from datetime import UTC, datetime

    night = Settings(work_from="22:00", work_to="06:00")
    # Asia/Shanghai is UTC+8: 23:00 local is 15:00 UTC, 12:00 local is 04:00 UTC.
    assert night.working(datetime(2026, 6, 1, 15, 0, tzinfo=UTC), "Asia/Shanghai")
    assert not night.working(datetime(2026, 6, 1, 4, 0, tzinfo=UTC), "Asia/Shanghai")
    assert Settings().working(datetime(2026, 6, 1, 4, 0, tzinfo=UTC), "Asia/Shanghai")


def test_a_tag_read_goes_to_the_fences_and_an_unknown_zone_refuses_the_batch(
    command: TestClient,
) -> None:
    refused = command.post(
        f"{SITE}/device-events",
        json={
            "events": [
                {"device_id": "WB-1", "kind": "sos", "person_id": WORKER},
                {"device_id": "GATE-1", "kind": "tag_read", "person_id": WORKER, "zone_id": "Z-x"},
            ]
        },
    )
    assert_problem(refused, 422, field="events[1].zone_id")
    assert command.get(f"{SITE}/people/alarms").json()["alarms"] == []  # the SOS was not taken
    read = command.post(
        f"{SITE}/device-events",
        json={
            "events": [
                {"device_id": "GATE-1", "kind": "tag_read", "person_id": WORKER, "zone_id": "Z-042"}
            ]
        },
    )
    assert read.status_code == 200, read.text
    [answer] = read.json()["events"]
    assert answer["type"].startswith("access.") and answer["data"]["person_id"] == WORKER


def test_the_device_feed_carries_accuracy_too(command: TestClient, clock: ManualClock) -> None:
    auth = {"Authorization": command.headers["Authorization"]}
    with command.websocket_connect(f"/ws/sites/{DEMO_ID}/feed", headers=auth) as feed:
        feed.send_json({"type": "positions", "id": 1, "positions": [fix(WORKER, OFFICE, 5)]})
        assert feed.receive_json()["accepted"] == 1
        here = where(command, WORKER)
        clock.advance(5)
        shaky = {"type": "positions", "id": 2, "positions": [fix(WORKER, north(OFFICE, 4), 5)]}
        feed.send_json(shaky)
        assert feed.receive_json()["id"] == 2
        assert where(command, WORKER) == here  # jitter: held
        clock.advance(5)
        exact = {"type": "positions", "id": 3, "positions": [fix(WORKER, north(OFFICE, 4))]}
        feed.send_json(exact)
        assert feed.receive_json()["id"] == 3
        assert where(command, WORKER) != here  # no accuracy: exact, taken


def test_samples_are_one_per_10_s_or_zone_change_and_kept_90_days(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    post = post_of(command)
    start = clock.now()
    for at in (0, 2, 4, 6, 8, 10, 12):
        clock.advance((start + timedelta(seconds=at) - clock.now()).total_seconds())
        send(command, fix(WORKER, OFFICE))
    clock.advance(1)
    send(command, fix(WORKER, CANTEEN))  # a zone change: sampled at once
    post.save_positions()
    with db.read() as session:
        rows = session.execute(
            select(PositionSampleRow.at, PositionSampleRow.zone_id)
            .where(PositionSampleRow.site_id == DEMO_ID, PositionSampleRow.person_id == WORKER)
            .order_by(PositionSampleRow.at)
        ).all()
    assert [((at - start).total_seconds(), zone) for at, zone in rows] == [
        (0.0, "Z-042"),
        (10.0, "Z-042"),
        (13.0, "Z-044"),
    ]
    with db.write() as session:
        prune_samples(session, DEMO_ID, start + timedelta(days=RETENTION_DAYS, seconds=5))
    with db.read() as session:
        left = session.scalars(
            select(PositionSampleRow.at).where(PositionSampleRow.person_id == WORKER)
        ).all()
    assert [(at - start).total_seconds() for at in left] == [10.0, 13.0]
