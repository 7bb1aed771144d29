"""Live inputs: sensor readings and people's positions, from devices or the command post."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from command.auth import Principal, Role, user_row
from command.deps import DatabaseDep, ReaderDep, requires
from command.monitoring.wristbands import MAX_ACCURACY_M, Moves
from command.routes.incidents import PostDep
from command.sensors import parse_readings
from gis.errors import FieldError, InvalidInput, NotPermitted

router = APIRouter(prefix="/api/sites/{site_id}", tags=["live inputs"])

#: Devices and commanders feed the site; a drill controller feeds a running drill only (its
#: injects, through the very same checks), naming it with ``"drill"`` in the body.
FeederDep = Annotated[
    Principal, Depends(requires(Role.DEVICE, Role.COMMANDER, Role.DRILL_CONTROLLER))
]
#: A person in the incident's command or response acknowledges an alarm (never a viewer, a
#: wall token or a device: an acknowledgement says a person has seen it).
AcknowledgerDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.RESPONDER))]
MAX_POSITIONS = 20_000


def own_site(principal: Principal, site_id: str) -> None:
    """A device token belongs to one site and feeds only that one."""
    if principal.kind == "device" and principal.site_id != site_id:
        raise NotPermitted(
            f"this device feeds site {principal.site_id}, not {site_id}",
            errors=[FieldError("site", f"must be {principal.site_id}")],
        )


@router.get(
    "/sensors/state",
    summary="Each sensor's alarm tier and last reading (wind stations: speed and direction)",
)
def sensor_state(post: PostDep, _: ReaderDep, site_id: str) -> dict[str, Any]:
    """``health``: each detector with a health flag (stale, stuck, out of range, drifting,
    overdue calibration or bump test) or a maintenance record, with the evidence and due
    dates; each sensor listed also carries its ``health_flags``."""
    sensors = post.sensor_state(site_id)
    health = post.health.state(site_id)
    flags = {h["id"]: h["flags"] for h in health}
    for sensor in sensors:
        sensor["health_flags"] = flags.get(sensor["id"], [])
    return {"sensors": sensors, "health": health}


class AlarmAck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, min_length=1, max_length=500)


@router.post(
    "/sensors/{sensor_id}/acknowledge",
    summary="Acknowledge a sensor's alarm (a commander or a responder): the event names who",
)
def acknowledge_alarm(
    post: PostDep,
    db: DatabaseDep,
    principal: AcknowledgerDep,
    site_id: str,
    sensor_id: str,
    body: AlarmAck | None = None,
) -> dict[str, Any]:
    """The alarm stays unacknowledged, even back to normal, until someone acknowledges it
    here; 409 when there is nothing to acknowledge (no alarm, or acknowledged already)."""
    with db.read() as session:
        by_name = user_row(session, principal.username).display_name
    event = post.acknowledge_alarm(
        site_id,
        sensor_id,
        actor=principal.username,
        by_name=by_name,
        note=body.note if body else None,
    )
    return event.as_dict()


def drill_named(principal: Principal, site_id: str, body: dict[str, Any]) -> str | None:
    """The drill a feed is an inject into (``"drill"``, taken out of ``body``), checked before
    anything is looked up: only a drill controller names one, and a drill controller feeds
    nothing else."""
    drill = body.pop("drill", None)
    roles = principal.roles_at(site_id)
    if drill is None:
        if principal.kind != "device" and roles.isdisjoint({Role.COMMANDER}):
            raise InvalidInput(
                'a drill controller injects into a running drill only: name it with "drill"',
                errors=[FieldError("drill", "the running drill's id")],
            )
        return None
    if Role.DRILL_CONTROLLER not in roles or principal.kind == "device":
        raise NotPermitted(
            "only a drill controller injects into a drill",
            errors=[FieldError("drill", "a drill controller's field")],
        )
    if not isinstance(drill, str) or not drill:
        raise InvalidInput("name the drill by its id", errors=[FieldError("drill", "a drill id")])
    return drill


@router.post(
    "/readings",
    summary="Sensor readings (devices of the site, a commander, or a drill controller's inject)",
)
def post_readings(
    post: PostDep,
    principal: FeederDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    own_site(principal, site_id)
    body = dict(body)
    drill = drill_named(principal, site_id, body)
    readings = parse_readings(body)
    if drill is not None and post.drills is not None:
        logged = post.drills.inject_readings(site_id, drill, readings, actor=principal.username)
    else:
        logged = post.readings(site_id, readings, actor=principal.username)
    return {"accepted": len(readings), "events": [e.as_dict() for e in logged]}


@router.post(
    "/positions",
    summary="People's positions (devices of the site, a commander, or a drill controller's inject)",
)
def post_positions(
    post: PostDep,
    principal: FeederDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    own_site(principal, site_id)
    body = dict(body)
    drill = drill_named(principal, site_id, body)
    moves = parse_positions(body)
    if drill is not None and post.drills is not None:
        return post.drills.inject_positions(site_id, drill, moves, actor=principal.username)
    return post.positions(site_id, moves)


def parse_positions(body: Any) -> Moves:
    """``{"positions": [{"person_id", "lon", "lat", "observed_at"?, "accuracy_m"?}, ...]}``,
    every row checked: person id -> lon, lat and the time the position was observed (ISO 8601
    with a UTC offset; none: when received), with the accuracy radius in metres where a
    wristband gives one (``Moves.accuracy``; none: exact), or :class:`InvalidInput` naming
    each bad row (and nothing taken). A person given twice keeps the latest observation."""
    rows = body.get("positions") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_POSITIONS:
        raise InvalidInput(
            "send positions as a list",
            errors=[FieldError("positions", f"1 to {MAX_POSITIONS} positions")],
        )
    moves = Moves()
    errors: list[FieldError] = []
    for i, row in enumerate(rows):
        person = row.get("person_id") if isinstance(row, dict) else None
        lon = row.get("lon") if isinstance(row, dict) else None
        lat = row.get("lat") if isinstance(row, dict) else None
        at = _observed_at(row.get("observed_at") if isinstance(row, dict) else None)
        accuracy = row.get("accuracy_m") if isinstance(row, dict) else None
        if not isinstance(person, str) or not person:
            errors.append(FieldError(f"positions[{i}].person_id", "a person id"))
        elif not (_coordinate(lon, 180) and _coordinate(lat, 90)):
            errors.append(FieldError(f"positions[{i}]", "lon -180..180 and lat -90..90"))
        elif at is False:
            errors.append(
                FieldError(
                    f"positions[{i}].observed_at",
                    "an ISO 8601 time with a UTC offset, e.g. 2026-12-03T02:00:00Z",
                )
            )
        elif accuracy is not None and not (_coordinate(accuracy, MAX_ACCURACY_M) and accuracy > 0):
            errors.append(
                FieldError(
                    f"positions[{i}].accuracy_m",
                    f"metres, more than 0 and at most {MAX_ACCURACY_M:g}",
                )
            )
        else:
            earlier = moves.get(person)
            # No time is the time of receipt: later than any time a row gives.
            if earlier is None or (at or _RECEIVED) >= (earlier[2] or _RECEIVED):
                moves[person] = (float(lon), float(lat), at or None)  # type: ignore[arg-type]
                if accuracy is None:
                    moves.accuracy.pop(person, None)
                else:
                    moves.accuracy[person] = float(accuracy)
    if errors:
        raise InvalidInput(f"{len(errors)} bad position(s); none was taken", errors=errors)
    return moves


_RECEIVED = datetime.max.replace(tzinfo=UTC)


def _observed_at(value: object) -> datetime | Literal[False] | None:
    """The time a position was observed: None when not given, False when not a valid one."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        return False
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return at.astimezone(UTC) if at.tzinfo is not None else False
    except (ValueError, OverflowError):  # not a time, or one UTC cannot hold (year 1 or 9999)
        return False


def _coordinate(value: object, bound: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -bound <= value <= bound
    )
