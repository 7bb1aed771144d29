"""Detectors' calibration and bump-test records (``command.monitoring.maintenance``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from command.auth import Principal, Role
from command.deps import DatabaseDep, ReaderDep, requires
from command.monitoring.maintenance import record_dict, records
from command.routes.incidents import PostDep
from gis.errors import FieldError, NotFound

router = APIRouter(prefix="/api/sites/{site_id}/sensors", tags=["detector health"])

#: The safety engineer who keeps the detectors (a planner) or the duty manager (a commander)
#: enters a record; responders, viewers, wall tokens and devices only read them.
RecorderDep = Annotated[Principal, Depends(requires(Role.PLANNER, Role.COMMANDER))]

EXAMPLE = {
    "kind": "bump_test",
    "at": "2026-12-01T09:30:00+08:00",
    "by": "Li Wei (instrument shop)",
    "result": "pass",
    "gas": "CH4",
    "concentration": 50,
    "unit": "%LEL",
}


@router.post(
    "/{sensor_id}/maintenance-records",
    status_code=201,
    summary="Record a calibration or bump test of a detector (a planner or a commander)",
)
def add_maintenance_record(
    post: PostDep,
    principal: RecorderDep,
    site_id: str,
    sensor_id: str,
    body: Annotated[Any, Body(examples=[EXAMPLE])],
) -> dict[str, Any]:
    """``kind`` calibration or bump_test, ``at`` (when the work was done, ISO 8601 with an
    offset), ``by`` (who did it), ``result`` pass or fail, the test ``gas`` and its
    ``concentration`` (``unit``), ``next_due`` (else the default interval: calibration a
    year, bump test 30 days; a failed check is due at once), ``note``. Each bad field is
    named (422) and nothing is recorded."""
    saved, events = post.health.record(site_id, sensor_id, body, actor=principal.username)
    return {
        "record": saved,
        "health": post.health.flags(site_id, sensor_id),
        "events": [e.as_dict() for e in events],
    }


@router.get(
    "/{sensor_id}/maintenance-records",
    summary="A detector's calibration and bump-test records (latest first), and when each is due",
)
def get_maintenance_records(
    post: PostDep, db: DatabaseDep, _: ReaderDep, site_id: str, sensor_id: str
) -> dict[str, Any]:
    model = post.model(site_id)
    with db.read() as session:
        rows = records(session, site_id, sensor_id)
    if sensor_id not in model.sensors and not rows:
        raise NotFound(
            f"no sensor '{sensor_id}' at site '{site_id}'",
            errors=[FieldError("sensor", "unknown")],
        )
    due = post.health.due_of(site_id, sensor_id)
    return {
        "sensor_id": sensor_id,
        **due,
        "flags": post.health.flags(site_id, sensor_id),
        "records": [record_dict(r) for r in rows],
    }


#: A detector's instrument data is the safety engineer's (a planner), as its alarm settings are.
PlannerOnlyDep = Annotated[Principal, Depends(requires(Role.PLANNER))]


@router.get(
    "/{sensor_id}/health-settings",
    summary="A detector's health rules: its class defaults, its own settings, those in force",
)
def get_health_settings(
    post: PostDep, _: ReaderDep, site_id: str, sensor_id: str
) -> dict[str, Any]:
    return post.health.settings_of(site_id, sensor_id)


@router.put(
    "/{sensor_id}/health-settings",
    summary="Set a detector's own instrument range and silence limit (a planner)",
)
def put_health_settings(
    post: PostDep,
    principal: PlannerOnlyDep,
    site_id: str,
    sensor_id: str,
    body: Annotated[Any, Body(examples=[{"full_scale": 20, "stale_after_s": 300}])],
) -> dict[str, Any]:
    """``range_low``, ``full_scale`` (the instrument's range, in the sensor's unit) and
    ``stale_after_s`` (how long it may stay silent); each left out or null keeps the class
    default. Each bad field is named (422) and nothing changes."""
    settings, events = post.health.configure(site_id, sensor_id, body, actor=principal.username)
    return {**settings, "events": [e.as_dict() for e in events]}
