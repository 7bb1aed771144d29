"""Wristbands: device events (SOS, fall, low battery, tag reads), the people's alarms and their
acknowledgement, the timers of a site, and the daily report of dwell times and heat map."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response

from command.auth import Principal, Role, user_row
from command.deps import DatabaseDep, PlannerDep, ReaderDep, requires
from command.monitoring.devices import parse_device_events
from command.monitoring.wristbands import ALARM_KINDS, parse_settings
from command.routes.incidents import PostDep
from command.routes.live import AcknowledgerDep, AlarmAck, own_site
from gis.errors import FieldError, InvalidInput

router = APIRouter(prefix="/api/sites/{site_id}", tags=["wristbands"])

#: Devices of the site post their events as they post positions; a commander may too (a radio
#: call: "I pressed my SOS"). A drill injects no device events.
DevicesDep = Annotated[Principal, Depends(requires(Role.DEVICE, Role.COMMANDER))]
#: The daily report is for the command post and the safety engineers.
ReportDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.PLANNER))]


@router.post(
    "/device-events",
    summary="Device events: SOS, fall, low battery, tag reads (devices of the site, a commander)",
)
def post_device_events(
    post: PostDep,
    principal: DevicesDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    own_site(principal, site_id)
    events = parse_device_events(body)
    logged = post.device_events(site_id, events, actor=principal.username)
    return {"accepted": len(events), "events": [e.as_dict() for e in logged]}


@router.get(
    "/people/alarms",
    summary="The people's alarms (SOS, man-down, signal lost) with their last positions",
)
def person_alarms(post: PostDep, _: ReaderDep, site_id: str) -> dict[str, Any]:
    return {"alarms": post.person_alarms(site_id)}


@router.post(
    "/people/{person_id}/alarms/{kind}/acknowledge",
    summary="Acknowledge a person's alarm (a commander or a responder): the event names who",
)
def acknowledge_person_alarm(
    post: PostDep,
    db: DatabaseDep,
    principal: AcknowledgerDep,
    site_id: str,
    person_id: str,
    kind: str,
    body: AlarmAck | None = None,
) -> dict[str, Any]:
    if kind not in ALARM_KINDS:
        raise InvalidInput(
            f"no alarm kind {kind!r}",
            errors=[FieldError("kind", f"one of {', '.join(ALARM_KINDS)}")],
        )
    with db.read() as session:
        by_name = user_row(session, principal.username).display_name
    event = post.acknowledge_person_alarm(
        site_id,
        person_id,
        kind,
        actor=principal.username,
        by_name=by_name,
        note=body.note if body else None,
    )
    return event.as_dict()


@router.get("/wristbands/settings", summary="The site's man-down and signal-lost timers")
def get_settings(post: PostDep, _: ReaderDep, site_id: str) -> dict[str, Any]:
    post.model(site_id)
    return post.wristband_settings(site_id).as_dict()


@router.put("/wristbands/settings", summary="Set the site's man-down and signal-lost timers")
def put_settings(
    post: PostDep,
    principal: PlannerDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    settings = parse_settings(body)
    return post.set_wristband_settings(site_id, settings, actor=principal.username).as_dict()


def _day(value: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        day = date.fromisoformat(value)
        if not 1970 <= day.year <= 2200:  # a day the clock and the samples can hold
            raise ValueError(value)
        return day
    except ValueError:
        raise InvalidInput(
            "name the day as YYYY-MM-DD", errors=[FieldError("date", "a date YYYY-MM-DD")]
        ) from None


DayQuery = Annotated[str, Query(alias="date", max_length=10, description="YYYY-MM-DD")]


@router.get(
    "/reports/dwell",
    summary="The day's dwell times per person per zone and per zone (site's time zone)",
)
def dwell_report(post: PostDep, _: ReportDep, site_id: str, day: DayQuery) -> dict[str, Any]:
    return post.dwell_report(site_id, _day(day))


@router.get(
    "/reports/heatmap.png",
    summary="The day's trajectory heat map (PNG)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def heatmap(post: PostDep, _: ReportDep, site_id: str, day: DayQuery) -> Response:
    return Response(post.heatmap(site_id, _day(day)), media_type="image/png")
