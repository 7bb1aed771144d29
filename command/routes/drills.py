"""Drills, for drill controllers only: scenarios, schedules and the controller's orders.

Every route here needs the drill controller role at the site, checked before anything is
looked up: any other caller gets the same 403 whatever the drill, scenario or id asked for, so
neither an answer, an error message nor its timing tells a player whether a drill exists. A
wall token gets nothing here either (a wall in a control room is seen by players).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from command.auth import Principal, Role
from command.deps import IfMatchDep, requires
from command.drills import DrillDesk
from command.routes.plans import _BODY_DOC, PlanBody
from gis.errors import FieldError, VersionRequired

router = APIRouter(prefix="/api/sites/{site_id}/drills", tags=["drills"])

ControllerDep = Annotated[Principal, Depends(requires(Role.DRILL_CONTROLLER, walls="never"))]


def get_desk(request: Request) -> DrillDesk:
    desk: DrillDesk = request.app.state.drills
    return desk


DeskDep = Annotated[DrillDesk, Depends(get_desk)]


def _etag(body: dict[str, Any], version: int) -> Response:
    import json

    return Response(
        json.dumps(body, ensure_ascii=False),
        media_type="application/json",
        headers={"ETag": f'"{version}"'},
    )


@router.get("/scenarios", summary="The site's drill scenarios, latest versions")
def list_scenarios(desk: DeskDep, _: ControllerDep, site_id: str) -> dict[str, Any]:
    desk.post.model(site_id)  # 404 for an unknown site
    return {"scenarios": desk.scenarios(site_id)}


@router.post(
    "/scenarios/validate",
    summary="Check a scenario against the site and its plan without saving it",
    openapi_extra=_BODY_DOC,
)
def validate_scenario(
    desk: DeskDep, _: ControllerDep, site_id: str, body: PlanBody
) -> dict[str, Any]:
    from gis.errors import InvalidInput

    try:
        desk.check_scenario(site_id, body)
    except InvalidInput as exc:
        return {"valid": False, "errors": [e.as_dict() for e in exc.errors or []]}
    return {"valid": True, "errors": []}


@router.post(
    "/scenarios",
    status_code=201,
    summary="Write a scenario (version 1): JSON or YAML, checked against the site and plan",
    response_class=Response,
    openapi_extra=_BODY_DOC,
)
def create_scenario(
    desk: DeskDep, controller: ControllerDep, site_id: str, body: PlanBody
) -> Response:
    saved = desk.save_scenario(site_id, body, actor=controller.username)
    response = _etag(saved, saved["version"])
    response.status_code = 201
    response.headers["Location"] = f"/api/sites/{site_id}/drills/scenarios/{saved['id']}"
    return response


@router.get(
    "/scenarios/{scenario_id}", summary="A scenario, latest or ?version=N", response_class=Response
)
def get_scenario(
    desk: DeskDep,
    _: ControllerDep,
    site_id: str,
    scenario_id: str,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    found = desk.scenario(site_id, scenario_id, version)
    return _etag(found, found["version"])


@router.put(
    "/scenarios/{scenario_id}",
    summary="Store the next version of a scenario (If-Match: the version you changed)",
    response_class=Response,
    openapi_extra=_BODY_DOC,
)
def update_scenario(
    desk: DeskDep,
    controller: ControllerDep,
    if_match: IfMatchDep,
    site_id: str,
    scenario_id: str,
    body: PlanBody,
) -> Response:
    if if_match is None:
        raise VersionRequired(
            "send If-Match with the version of the scenario you changed",
            errors=[FieldError("If-Match", 'the version you loaded, e.g. "1"')],
        )
    if not isinstance(body, dict) or body.get("id") != scenario_id:
        from gis.errors import InvalidInput

        raise InvalidInput(
            "the scenario's id must be the one in the path",
            errors=[FieldError("id", f"must be {scenario_id!r}")],
        )
    saved = desk.save_scenario(site_id, body, actor=controller.username, version=if_match)
    return _etag(saved, saved["version"])


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario_id: str = Field(min_length=1, max_length=64)
    mode: Literal["blind", "announced"] = "blind"
    #: Blind: {"start", "end", "exclude": [{"from": "07:30", "to": "08:30"}]} (local times).
    window: dict[str, Any] | None = None


@router.post("", status_code=201, summary="Schedule a drill: blind in a window, or announced now")
def schedule(
    desk: DeskDep, controller: ControllerDep, site_id: str, body: Schedule
) -> dict[str, Any]:
    """A blind drill's start is drawn inside the window with a secure random source and sealed:
    the answer, like every later one, shows the window only."""
    return desk.schedule(
        site_id, body.scenario_id, mode=body.mode, window=body.window, actor=controller.username
    )


@router.get("", summary="The site's drills: state and window (never a blind drill's start)")
def list_drills(desk: DeskDep, _: ControllerDep, site_id: str) -> dict[str, Any]:
    return {"drills": desk.drills(site_id)}


@router.get("/{drill_id}", summary="A drill: its timeline, injects fired and due, actions expected")
def get_drill(desk: DeskDep, _: ControllerDep, site_id: str, drill_id: str) -> dict[str, Any]:
    return desk.drill(site_id, drill_id)


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=2000)


class FireOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inject_id: str | None = Field(default=None, min_length=1, max_length=64)


class EvaluatorNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


def _events(logged: list[Any]) -> dict[str, Any]:
    return {"events": [e.as_dict() for e in logged]}


@router.post("/{drill_id}/cancel", summary="Call off a drill that has not started")
def cancel(desk: DeskDep, controller: ControllerDep, site_id: str, drill_id: str) -> dict[str, Any]:
    return desk.cancel(site_id, drill_id, actor=controller.username)


@router.post("/{drill_id}/hold", summary="Hold the drill: drill time and injects stop")
def hold(
    desk: DeskDep,
    controller: ControllerDep,
    site_id: str,
    drill_id: str,
    body: Order | None = None,
) -> dict[str, Any]:
    reason = (body.reason if body else None) or "held by the controller"
    return _events(desk.hold(site_id, drill_id, actor=controller.username, reason=reason))


@router.post("/{drill_id}/resume", summary="Resume a held or suspended drill")
def resume(
    desk: DeskDep,
    controller: ControllerDep,
    site_id: str,
    drill_id: str,
    body: Order | None = None,
) -> dict[str, Any]:
    reason = body.reason if body else None
    return _events(desk.resume(site_id, drill_id, actor=controller.username, reason=reason))


@router.post("/{drill_id}/fire", summary="Fire the next inject now (or the one named)")
def fire(
    desk: DeskDep,
    controller: ControllerDep,
    site_id: str,
    drill_id: str,
    body: FireOrder | None = None,
) -> dict[str, Any]:
    inject_id = body.inject_id if body else None
    return _events(
        desk.fire_next(site_id, drill_id, actor=controller.username, inject_id=inject_id)
    )


@router.post("/{drill_id}/notes", summary="An evaluator's note, stamped with drill time")
def note(
    desk: DeskDep, controller: ControllerDep, site_id: str, drill_id: str, body: EvaluatorNote
) -> dict[str, Any]:
    return _events(desk.note(site_id, drill_id, actor=controller.username, text=body.text))


@router.post(
    "/{drill_id}/end", summary="End the drill: its incident stands down, the review is made"
)
def end(
    desk: DeskDep,
    controller: ControllerDep,
    site_id: str,
    drill_id: str,
    body: Order | None = None,
) -> dict[str, Any]:
    reason = (body.reason if body else None) or "ended by the controller"
    return _events(desk.end(site_id, drill_id, actor=controller.username, reason=reason))


@router.post("/{drill_id}/abort", summary="Abort the drill at once")
def abort(
    desk: DeskDep,
    controller: ControllerDep,
    site_id: str,
    drill_id: str,
    body: Order | None = None,
) -> dict[str, Any]:
    reason = (body.reason if body else None) or "aborted by the controller"
    return _events(
        desk.end(site_id, drill_id, actor=controller.username, reason=reason, aborted=True)
    )
