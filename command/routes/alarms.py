"""Alarm management: per-sensor settings, per-zone voting, confirmation by a person, and
shelving, out-of-service and test modes (``command.monitoring.alarms``, ``docs/monitoring.md``).

Who may do what:
- read settings and voting: anyone with a role at the site;
- change settings and voting: a planner (alarm rationalization is engineering work);
- confirm an alarm: a commander (a confirmed alarm proposes plans from L2);
- shelve: a commander (it hides an alarm from the post); out of service and test: a commander
  or a planner (maintenance).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from command.auth import Principal, Role, user_row
from command.deps import DatabaseDep, PlannerDep, ReaderDep, requires
from command.monitoring import alarm_desk
from command.routes.incidents import PostDep

router = APIRouter(prefix="/api/sites/{site_id}", tags=["alarm management"])

CommanderDep = Annotated[Principal, Depends(requires(Role.COMMANDER))]
MaintainerDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.PLANNER))]


def _name(db: DatabaseDep, principal: Principal) -> str | None:
    with db.read() as session:
        return user_row(session, principal.username).display_name


def _roles(principal: Principal, site_id: str) -> frozenset[str]:
    return frozenset(str(role.value) for role in principal.roles_at(site_id))


@router.get(
    "/sensors/{sensor_id}/alarm-settings",
    summary="A sensor's alarm settings: in force, overridden, the standard's bounds, its vote",
)
def get_alarm_settings(post: PostDep, _: ReaderDep, site_id: str, sensor_id: str) -> dict[str, Any]:
    return alarm_desk.settings_view(post, site_id, sensor_id)


@router.put(
    "/sensors/{sensor_id}/alarm-settings",
    summary="Replace a sensor's alarm overrides (thresholds, deadband, delays, meanings)",
)
def put_alarm_settings(
    post: PostDep,
    principal: PlannerDep,
    site_id: str,
    sensor_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """``{"thresholds"?: {"warning", "alarm", "high_alarm"}, "deadband"?, "on_delay_s"?,
    "off_delay_s"?, "meanings"?: {tier: text}}``; ``{}`` removes every override."""
    return alarm_desk.set_settings(post, site_id, sensor_id, body, actor=principal.username)


@router.get("/zones/{zone_id}/alarm-voting", summary="A zone's voting mode for its detectors")
def get_alarm_voting(post: PostDep, _: ReaderDep, site_id: str, zone_id: str) -> dict[str, Any]:
    return alarm_desk.voting_view(post, site_id, zone_id)


@router.put(
    "/zones/{zone_id}/alarm-voting",
    summary="Set a zone's voting mode: 1oo1, 1oo2, 2oo2, or null for the default",
)
def put_alarm_voting(
    post: PostDep,
    principal: PlannerDep,
    site_id: str,
    zone_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    return alarm_desk.set_voting(post, site_id, zone_id, body, actor=principal.username)


class Confirmation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, min_length=1, max_length=500)


@router.post(
    "/sensors/{sensor_id}/confirm",
    summary="Confirm a sensor's alarm (a commander): it proposes plans from L2",
)
def confirm_alarm(
    post: PostDep,
    db: DatabaseDep,
    principal: CommanderDep,
    site_id: str,
    sensor_id: str,
    body: Confirmation | None = None,
) -> dict[str, Any]:
    """409 when there is nothing to confirm: normal, confirmed already, or in a mode."""
    logged = alarm_desk.confirm(
        post,
        site_id,
        sensor_id,
        actor=principal.username,
        by_name=_name(db, principal),
        note=body.note if body else None,
    )
    return {"events": [e.as_dict() for e in logged]}


@router.post(
    "/sensors/{sensor_id}/mode",
    summary="Shelve a sensor (a commander), or take it out of service or test it (also a planner)",
)
def set_sensor_mode(
    post: PostDep,
    db: DatabaseDep,
    principal: MaintainerDep,
    site_id: str,
    sensor_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """``{"mode": "shelved" | "out_of_service" | "test", "reason", "until" | "for_s"}``
    (shelving needs an expiry, at most 7 days)."""
    event = alarm_desk.set_mode(
        post,
        site_id,
        sensor_id,
        body,
        actor=principal.username,
        by_name=_name(db, principal),
        roles=_roles(principal, site_id),
    )
    return event.as_dict()


@router.post(
    "/sensors/{sensor_id}/mode/clear",
    summary="End a sensor's shelving, out-of-service or test mode, with the reason",
)
def clear_sensor_mode(
    post: PostDep,
    db: DatabaseDep,
    principal: MaintainerDep,
    site_id: str,
    sensor_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """``{"reason"}``; 409 when the sensor is in no mode."""
    event = alarm_desk.clear_mode(
        post,
        site_id,
        sensor_id,
        body,
        actor=principal.username,
        by_name=_name(db, principal),
        roles=_roles(principal, site_id),
    )
    return event.as_dict()
