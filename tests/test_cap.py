"""CAP 1.2 outbound alerts: valid against the official OASIS schema, CAP's prose rules kept,
refusals named, drills marked as exercises, and alerts from a real incident's log.

The expected values come from the CAP 1.2 text (OASIS Standard, 1 July 2010): times with a
numeric offset and UTC as "-00:00" (3.3.2), polygons as "lat,lon" pairs, at least 4, first and
last the same (3.2.4). Each alert is read back with a schema built here from the bundled file
and with xml.etree, not with the module's own reader.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import xmlschema
from fastapi.testclient import TestClient
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box, shape
from shapely.geometry.base import BaseGeometry

from command import cap
from command.cap import Area, Translation, alerts_for_events, incident_alert, validate
from command.events import LoggedEvent, since
from gis.errors import InvalidGeometry, InvalidInput
from gis.storage.db import Database
from tests.conftest import DEMO_ID
from tests.test_incidents import BASE, activate

ROOT = Path(__file__).resolve().parent.parent
NS = {"cap": cap.CAP_NS}
CST = timezone(timedelta(hours=8))
#: A square west of the demo site's centre: longitudes 121.34-121.35, latitudes 30.71-30.72,
#: so a swapped pair (121.x as a latitude) cannot pass for a right one.
SQUARE = box(121.34, 30.71, 121.35, 30.72)


@pytest.fixture(scope="module")
def oasis() -> xmlschema.XMLSchema10:
    """The bundled schema, built here on its own (not the module's cached copy)."""
    return xmlschema.XMLSchema10(str(ROOT / "command" / "schemas" / "CAP-v1.2.xsd"))


def alert(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "sender": "rallypoint@demo-park",
        "identifier": "rallypoint.demo.17",
        "sent": datetime(2026, 12, 3, 1, 2, 3, tzinfo=CST),
        "status": "Actual",
        "msg_type": "Alert",
        "event": "Toxic gas release (chlorine)",
        "headline": "Chlorine release at the demo park",
        "description": "Emergency response activated.",
        "severity": "Severe",
        "urgency": "Immediate",
        "certainty": "Observed",
        "areas": [Area("threat zone 3", SQUARE)],
        **overrides,
    }
    return incident_alert(**fields)


def refused(call: Any, field: str, words: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    fields = {e.field: e.reason for e in caught.value.errors}
    assert field in fields, fields
    assert words in fields[field], fields
    return caught.value


def pairs(polygon_text: str) -> list[tuple[float, float]]:
    """CAP text as (lat, lon) floats."""
    out = []
    for pair in polygon_text.split():
        lat, lon = pair.split(",")
        out.append((float(lat), float(lon)))
    return out


# -- the bundled schema ---------------------------------------------------------------------


def test_the_bundled_schema_is_the_oasis_file_with_its_copyright() -> None:
    xsd = (ROOT / "command" / "schemas" / "CAP-v1.2.xsd").read_bytes()
    lines = xsd.decode("ascii").splitlines()
    assert lines[1] == "<!-- Copyright OASIS Open 2010 All Rights Reserved -->"
    assert 'targetNamespace = "urn:oasis:names:tc:emergency:cap:1.2"' in lines[3]
    notice = (ROOT / "command" / "schemas" / "NOTICE").read_text(encoding="utf-8")
    assert "Copyright OASIS Open 2010 All Rights Reserved" in notice
    # The NOTICE names the file's hash, so an edited copy shows.
    assert hashlib.sha256(xsd).hexdigest() in notice


def test_the_schema_ships_with_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "schemas/*.xsd" in project["tool"]["setuptools"]["package-data"]["command"]


# -- a valid alert ----------------------------------------------------------------------------


def test_an_alert_is_valid_and_reads_back_as_written(oasis: xmlschema.XMLSchema10) -> None:
    xml = alert(
        instruction="Keep out of the zone.",
        translations=[
            Translation("zh-CN", "有毒气体泄漏（氯气）", "演示园区氯气泄漏", "已启动应急响应。")
        ],
    )
    oasis.validate(xml)
    root = ET.fromstring(xml)
    assert root.tag == f"{{{cap.CAP_NS}}}alert"
    assert root.findtext("cap:identifier", namespaces=NS) == "rallypoint.demo.17"
    assert root.findtext("cap:sent", namespaces=NS) == "2026-12-03T01:02:03+08:00"
    assert root.findtext("cap:status", namespaces=NS) == "Actual"
    assert root.findtext("cap:msgType", namespaces=NS) == "Alert"
    infos = root.findall("cap:info", NS)
    assert [i.findtext("cap:language", namespaces=NS) for i in infos] == ["en-US", "zh-CN"]
    assert infos[1].findtext("cap:headline", namespaces=NS) == "演示园区氯气泄漏"
    for info in infos:
        [polygon] = info.findall("cap:area/cap:polygon", NS)
        points = pairs(polygon.text or "")
        assert len(points) >= 4 and points[0] == points[-1]
        # Latitude first: every first number is the square's latitude, every second its longitude.
        assert all(30.71 <= lat <= 30.72 and 121.34 <= lon <= 121.35 for lat, lon in points)
        assert {(30.72, 121.35), (30.71, 121.34)} <= set(points)


def test_a_utc_time_is_written_minus_zero() -> None:
    xml = alert(sent=datetime(2026, 12, 2, 17, 2, 3, 999_999, tzinfo=UTC))
    assert ET.fromstring(xml).findtext("cap:sent", namespaces=NS) == "2026-12-02T17:02:03-00:00"
    assert cap.cap_time("2026-12-02T17:02:03-00:00") == "2026-12-02T17:02:03-00:00"


def test_a_multipolygon_gives_one_polygon_per_part(oasis: xmlschema.XMLSchema10) -> None:
    two = MultiPolygon([SQUARE, box(121.36, 30.71, 121.37, 30.72)])
    xml = alert(areas=[Area("two sheds", two), Area("the square", SQUARE)])
    oasis.validate(xml)
    areas = ET.fromstring(xml).findall("cap:info/cap:area", NS)
    assert [len(a.findall("cap:polygon", NS)) for a in areas] == [2, 1]


def test_a_big_zone_is_simplified_outwards_and_stays_closed_and_valid() -> None:
    centre = Point(121.35, 30.72)
    round_zone = centre.buffer(0.02, quad_segs=500)  # 2,001 pairs
    # A C open to the east: concave, so plain corner-cutting would shrink it.
    c_zone = (
        centre.buffer(0.02, quad_segs=200)
        .difference(centre.buffer(0.012, quad_segs=200))
        .difference(box(121.35, 30.715, 121.38, 30.725))
    )
    assert isinstance(c_zone, Polygon)
    # A star of 200 points: too jagged for 100 pairs, so only its hull can be drawn.
    star = Polygon(
        [
            (
                121.35 + (0.01 if i % 2 else 0.004) * math.cos(math.tau * i / 400),
                30.72 + (0.01 if i % 2 else 0.004) * math.sin(math.tau * i / 400),
            )
            for i in range(400)
        ]
    )
    cases: list[tuple[Polygon, float]] = [(round_zone, 1.01), (c_zone, 1.05), (star, 1.05 * 2.51)]
    for zone, most in cases:
        assert len(zone.exterior.coords) > cap.MAX_POLYGON_PAIRS
        [text] = cap.polygon_texts(zone)
        points = pairs(text)
        assert 4 <= len(points) <= cap.MAX_POLYGON_PAIRS and points[0] == points[-1]
        drawn = Polygon([(lon, lat) for lat, lon in points])
        assert drawn.is_valid
        # The alert's area covers the zone, as written (rounded to 1e-6 degree).
        assert drawn.covers(zone)
        # ...and is not much larger (the star's hull is 2.5 times the star).
        assert drawn.area < zone.area * most


# -- refusals ---------------------------------------------------------------------------------


def test_a_z_time_is_refused() -> None:
    refused(lambda: alert(sent="2026-12-03T01:02:03Z"), "sent", "'Z' is not allowed")
    refused(lambda: cap.cap_time("2026-12-03T01:02:03z", field="expires"), "expires", "'Z'")


def test_a_naive_time_is_refused() -> None:
    refused(lambda: alert(sent=datetime(2026, 12, 3, 1, 2, 3)), "sent", "time zone")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2026-12-03T01:02:03+00:00", "-00:00"),
        ("2026-12-03T01:02:03.5+08:00", "numeric offset"),
        ("2026-12-03T01:02:03", "numeric offset"),
        ("2026-02-30T01:02:03+08:00", "not a real date"),
    ],
)
def test_times_not_in_cap_form_are_refused(text: str, words: str) -> None:
    refused(lambda: alert(sent=text), "sent", words)


def test_an_offset_of_seconds_is_refused() -> None:
    odd = timezone(timedelta(hours=8, seconds=17))
    refused(lambda: alert(sent=datetime(2026, 1, 1, tzinfo=odd)), "sent", "whole minutes")


def test_an_open_polygon_is_refused() -> None:
    ring = [(121.34, 30.71), (121.35, 30.71), (121.35, 30.72), (121.34, 30.72)]
    refused(lambda: cap.ring_text(ring), "polygon", "not closed")


def test_a_polygon_of_three_pairs_is_refused() -> None:
    ring = [(121.34, 30.71), (121.35, 30.71), (121.34, 30.71)]
    refused(lambda: cap.ring_text(ring), "polygon", "at least 4")


def test_a_ring_is_written_latitude_first() -> None:
    ring = [(121.34, 30.71), (121.35, 30.71), (121.35, 30.72), (121.34, 30.71)]
    assert cap.ring_text(ring) == (
        "30.710000,121.340000 30.710000,121.350000 30.720000,121.350000 30.710000,121.340000"
    )


def test_areas_that_are_not_good_polygons_are_refused() -> None:
    bowtie = Polygon([(121.34, 30.71), (121.35, 30.72), (121.35, 30.71), (121.34, 30.72)])
    with pytest.raises(InvalidGeometry) as caught:
        alert(areas=[Area("bow", bowtie)])
    assert caught.value.errors[0].field == "areas[0]"
    line = LineString([(121.34, 30.71), (121.35, 30.72)])
    refused(lambda: alert(areas=[Area("line", line)]), "areas[0]", "Polygon or MultiPolygon")
    swapped = box(30.71, 121.34, 30.72, 121.35)  # lat/lon given the wrong way round
    refused(lambda: alert(areas=[Area("swapped", swapped)]), "areas[0]", "outside WGS84")


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"identifier": "has space"}, "identifier", "without spaces"),
        ({"sender": "a,b"}, "sender", "commas"),
        ({"status": "Real"}, "status", "Actual, Exercise"),
        ({"msg_type": "Update"}, "references", "must name"),
        ({"headline": "  "}, "headline", "empty"),
        ({"description": "bell \x07"}, "description", "control character"),
        ({"language": "en US"}, "language", "language tag"),
        ({"scope": "Restricted"}, "restriction", "who may see it"),
    ],
)
def test_bad_fields_are_refused_by_name(overrides: dict[str, Any], field: str, words: str) -> None:
    refused(lambda: alert(**overrides), field, words)


# -- validate() on alerts from elsewhere ------------------------------------------------------


def tamper(xml: bytes, old: str, new: str) -> bytes:
    assert old.encode() in xml
    return xml.replace(old.encode(), new.encode(), 1)


def test_the_schema_refuses_a_tampered_alert(oasis: xmlschema.XMLSchema10) -> None:
    xml = alert()
    validate(xml)
    bad = tamper(xml, "<status>Actual</status>", "<status>Real</status>")
    assert not oasis.is_valid(bad)
    refused(lambda: validate(bad), "alert/status", "schema")
    no_id = tamper(xml, "<identifier>rallypoint.demo.17</identifier>", "")
    assert not oasis.is_valid(no_id)
    with pytest.raises(InvalidInput):
        validate(no_id)


def test_validate_refuses_a_z_time_and_plus_zero() -> None:
    xml = alert()
    refused(lambda: validate(tamper(xml, "+08:00</sent>", "Z</sent>")), "alert/sent", "'Z'")
    refused(lambda: validate(tamper(xml, "+08:00</sent>", "+00:00</sent>")), "alert/sent", "-00:00")


def test_validate_refuses_open_short_and_swapped_polygons() -> None:
    xml = alert()
    [text] = ET.fromstring(xml).findall(".//cap:polygon", NS)
    good = text.text or ""
    first_pairs = good.split()
    open_ring = " ".join(first_pairs[:-1])
    short = " ".join([first_pairs[0], first_pairs[1], first_pairs[0]])
    swapped = " ".join(",".join(reversed(p.split(","))) for p in first_pairs)
    where = "alert/info/area/polygon"
    refused(lambda: validate(tamper(xml, good, open_ring)), where, "not closed")
    refused(lambda: validate(tamper(xml, good, short)), where, "at least 4")
    refused(lambda: validate(tamper(xml, good, swapped)), where, "latitude first")


def test_validate_refuses_what_is_not_a_cap_alert() -> None:
    refused(lambda: validate(b"<alert>"), "alert", "not readable as XML")
    other = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>'
    refused(lambda: validate(other), "alert", "not a CAP 1.2 alert")
    # A document that would fetch an outside entity is refused, not fetched.
    entity = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>'
    )
    refused(lambda: validate(entity), "alert", "not readable as XML")


# -- exercises ------------------------------------------------------------------------------


def test_an_exercise_alert_says_so_in_every_language() -> None:
    xml = alert(
        status="Exercise",
        translations=[Translation("zh-CN", "有毒气体泄漏", "演示园区氯气泄漏", "演练。")],
    )
    root = ET.fromstring(xml)
    assert root.findtext("cap:status", namespaces=NS) == "Exercise"
    assert cap.EXERCISE_MARK in (root.findtext("cap:note", namespaces=NS) or "")
    headlines = [h.text or "" for h in root.findall("cap:info/cap:headline", NS)]
    assert len(headlines) == 2 and all(h.startswith("EXERCISE / 演练") for h in headlines)


# -- alerts from the event log ----------------------------------------------------------------

AT = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)  # 01:00 the next day in Shanghai


def logged(seq: int, kind: str, data: dict[str, Any], incident: str = "inc-1") -> LoggedEvent:
    """A site event as command/incidents.py logs it (plan events: the PlanEvent's dict, its
    run id dropped, under "plan.<type>")."""
    return LoggedEvent(
        DEMO_ID, seq, AT + timedelta(minutes=seq), kind, "cmd-zhou", incident, data, "0", "0"
    )


def activation(seq: int, incident: str = "inc-1", **extra: Any) -> LoggedEvent:
    request = {
        "plan_id": "chlorine-leak",
        "level": "L2",
        "location": {"type": "Point", "coordinates": [121.35, 30.72]},
        "hazard": {"model": "toxic_release", "substance": "chlorine", "rate_g_s": 2000},
    }
    return logged(seq, "incident.activated", {"request": request, **extra}, incident)


def plan_level(seq: int, kind: str, old: str, new: str, **extra: Any) -> LoggedEvent:
    plan = {"seq": 9, "type": kind, "at": "", "actor": "cmd-zhou", "step_id": None}
    data = {**plan, "data": {"from": old, "to": new}, **extra}
    return logged(seq, f"plan.{kind}", data)


def zones(_: LoggedEvent) -> Sequence[tuple[str, BaseGeometry]]:
    return [("AEGL-3 (60 min)", SQUARE), ("AEGL-2 (60 min)", SQUARE.buffer(0.005))]


def story(**extra: Any) -> list[LoggedEvent]:
    """Activation, a step, escalation, a call-out, de-escalation, stand-down, close."""
    return [
        activation(1, **({"exercise": extra["drill"]} if "drill" in extra else {})),
        logged(2, "plan.step.ready", {"step_id": "s1"}),
        plan_level(3, "run.escalated", "L2", "L3", **extra.get("mark", {})),
        logged(4, "notification.requested", {"role": "fire"}),
        plan_level(5, "run.deescalated", "L3", "L2", **extra.get("mark", {})),
        logged(6, "plan.run.stood_down", {}),
        logged(7, "incident.closed", {"forced": False, **extra.get("mark", {})}),
    ]


def make(events: Sequence[LoggedEvent], **options: Any) -> list[cap.CapAlert]:
    return alerts_for_events(
        events,
        zones,
        sender="rallypoint@demo-park",
        site_name="Demo park",
        site_tz="Asia/Shanghai",
        **options,
    )


def test_an_incident_gives_an_alert_updates_and_an_all_clear(
    oasis: xmlschema.XMLSchema10,
) -> None:
    made = make(story())
    assert [(a.seq, a.msg_type, a.status) for a in made] == [
        (1, "Alert", "Actual"),
        (3, "Update", "Actual"),
        (5, "Update", "Actual"),
        (7, "Update", "Actual"),
    ]
    roots = []
    for each in made:
        oasis.validate(each.xml)
        roots.append(ET.fromstring(each.xml))
    first = roots[0]
    assert first.findtext("cap:identifier", namespaces=NS) == f"rallypoint.{DEMO_ID}.1"
    assert first.findtext("cap:sent", namespaces=NS) == "2026-12-03T01:01:00+08:00"
    assert first.find("cap:references", NS) is None
    severities = [r.findtext("cap:info/cap:severity", namespaces=NS) for r in roots]
    assert severities == ["Moderate", "Severe", "Moderate", "Minor"]
    responses = [r.findtext("cap:info/cap:responseType", namespaces=NS) for r in roots]
    assert responses == ["Execute", "Execute", "Execute", "AllClear"]
    assert roots[3].findtext("cap:info/cap:urgency", namespaces=NS) == "Past"
    # The all-clear refers to the first alert and to both updates, each as sender,id,sent.
    references = (roots[3].findtext("cap:references", namespaces=NS) or "").split()
    assert references == [
        f"rallypoint@demo-park,rallypoint.{DEMO_ID}.1,2026-12-03T01:01:00+08:00",
        f"rallypoint@demo-park,rallypoint.{DEMO_ID}.3,2026-12-03T01:03:00+08:00",
        f"rallypoint@demo-park,rallypoint.{DEMO_ID}.5,2026-12-03T01:05:00+08:00",
    ]
    areas = first.findall("cap:info/cap:area/cap:areaDesc", NS)
    assert [a.text for a in areas][:2] == [
        "Demo park: AEGL-3 (60 min)",
        "Demo park: AEGL-2 (60 min)",
    ]
    assert [i.findtext("cap:language", namespaces=NS) for i in first.findall("cap:info", NS)] == [
        "en-US",
        "zh-CN",
    ]
    assert made[0].log_data()["identifier"] == made[0].identifier
    assert made[0].log_data()["xml"].startswith('<?xml version="1.0" encoding="UTF-8"?>')


def test_the_same_events_give_the_same_alerts() -> None:
    assert [a.xml for a in make(story())] == [a.xml for a in make(story())]


def test_a_drill_gives_exercise_alerts_throughout() -> None:
    drill = {"drill_id": "drl-1", "scenario_id": "night-chlorine", "scenario_version": 2}
    made = make(story(drill=drill, mark={"exercise": "drl-1"}))
    assert {a.status for a in made} == {"Exercise"}
    for each in made:
        root = ET.fromstring(each.xml)
        assert root.findtext("cap:status", namespaces=NS) == "Exercise"
        assert cap.EXERCISE_MARK in (root.findtext("cap:note", namespaces=NS) or "")
    # Even an event of a drill's incident logged without the mark stays an exercise.
    made = make(story(drill=drill))
    assert {a.status for a in made} == {"Exercise"}
    # And a mark on a later event is enough: never a drill's update sent as Actual.
    made = make(story(mark={"exercise": "drl-1"}))
    assert [a.status for a in made] == ["Actual", "Exercise", "Exercise", "Exercise"]


def test_an_update_needs_its_activation() -> None:
    later = story()[2:]
    assert make(later) == []
    made = make(later, activations={"inc-1": activation(1)})
    assert [a.seq for a in made] == [3, 5, 7]
    assert all(
        f"rallypoint.{DEMO_ID}.1"
        in (ET.fromstring(a.xml).findtext("cap:references", namespaces=NS) or "")
        for a in made
    )


def test_an_unknown_site_time_zone_is_refused() -> None:
    refused(
        lambda: alerts_for_events(
            story(), zones, sender="s", site_name="x", site_tz="Mars/Olympus"
        ),
        "site_tz",
        "unknown",
    )


def test_alerts_from_a_real_incident_log(command: TestClient, db: Database) -> None:
    picture = activate(command)
    incident = picture["incident"]["id"]
    threat = [
        (f"threat zone {f['properties']['level']}", shape(f["geometry"]))
        for f in picture["threat"]["features"]
        if f["properties"].get("kind") == "threat_zone"
    ]
    assert command.post(f"{BASE}/{incident}/escalate").status_code == 200
    closed = command.post(f"{BASE}/{incident}/stand-down", json={"force": True, "reason": "test"})
    assert closed.status_code == 200, closed.text
    with db.read() as session:
        events = since(session, DEMO_ID, 0, incident_id=incident)
    made = alerts_for_events(
        events,
        lambda _: threat,
        sender="rallypoint@demo-park",
        site_name="Demo park",
        site_tz="Asia/Shanghai",
    )
    assert [(a.msg_type, a.status) for a in made] == [
        ("Alert", "Actual"),
        ("Update", "Actual"),
        ("Update", "Actual"),
    ]
    root = ET.fromstring(made[0].xml)
    polygons = root.findall("cap:info[1]/cap:area/cap:polygon", NS)
    assert len(polygons) >= len(threat)
    for polygon in polygons:
        points = pairs(polygon.text or "")
        assert len(points) >= 4 and points[0] == points[-1]
        # The demo site lies near 30.72 N, 121.35 E: latitude first.
        assert all(30.5 < lat < 31.0 and 121.0 < lon < 121.7 for lat, lon in points)
