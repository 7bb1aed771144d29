"""Live inputs: sensor readings and people's positions, from devices or the command post."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from command.auth import Principal, Role
from command.deps import ReaderDep, requires
from command.routes.incidents import PostDep
from command.sensors import parse_readings
from gis.errors import FieldError, InvalidInput, NotPermitted

router = APIRouter(prefix="/api/sites/{site_id}", tags=["live inputs"])

FeederDep = Annotated[Principal, Depends(requires(Role.DEVICE, Role.COMMANDER))]
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
    return {"sensors": post.sensor_state(site_id)}


@router.post("/readings", summary="Sensor readings (devices of the site, or a commander)")
def post_readings(
    post: PostDep,
    principal: FeederDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    own_site(principal, site_id)
    readings = parse_readings(body)
    logged = post.readings(site_id, readings, actor=principal.username)
    return {"accepted": len(readings), "events": [e.as_dict() for e in logged]}


@router.post("/positions", summary="People's positions (devices of the site, or a commander)")
def post_positions(
    post: PostDep,
    principal: FeederDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    own_site(principal, site_id)
    return post.positions(site_id, parse_positions(body))


def parse_positions(body: Any) -> dict[str, tuple[float, float]]:
    """``{"positions": [{"person_id", "lon", "lat"}, ...]}``, every row checked: person id ->
    lon/lat, or :class:`InvalidInput` naming each bad row (and nothing taken)."""
    rows = body.get("positions") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_POSITIONS:
        raise InvalidInput(
            "send positions as a list",
            errors=[FieldError("positions", f"1 to {MAX_POSITIONS} positions")],
        )
    moves: dict[str, tuple[float, float]] = {}
    errors: list[FieldError] = []
    for i, row in enumerate(rows):
        person = row.get("person_id") if isinstance(row, dict) else None
        lon = row.get("lon") if isinstance(row, dict) else None
        lat = row.get("lat") if isinstance(row, dict) else None
        if not isinstance(person, str) or not person:
            errors.append(FieldError(f"positions[{i}].person_id", "a person id"))
        elif not (_coordinate(lon, 180) and _coordinate(lat, 90)):
            errors.append(FieldError(f"positions[{i}]", "lon -180..180 and lat -90..90"))
        else:
            moves[person] = (float(lon), float(lat))  # type: ignore[arg-type]
    if errors:
        raise InvalidInput(f"{len(errors)} bad position(s); none was taken", errors=errors)
    return moves


def _coordinate(value: object, bound: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -bound <= value <= bound
    )
