"""Incidents: one-action activation, the picture, step updates, escalation, the event log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from command import events as event_log
from command.auth import HUMAN_ROLES, Principal, Role
from command.deps import DatabaseDep, ReaderDep, requires
from command.incidents import ActivationRequest
from command.post import CommandPost, actor_for

router = APIRouter(prefix="/api/sites/{site_id}", tags=["incidents"])

CommanderDep = Annotated[Principal, Depends(requires(Role.COMMANDER))]

ACTIVATION_EXAMPLE = {
    "plan_id": "chlorine-leak",
    "level": "L2",
    "location": {"type": "Point", "coordinates": [121.3478, 30.7195]},
    "hazard": {
        "model": "toxic_release",
        "substance": "chlorine",
        "rate_g_s": 2000,
        "wind_speed_m_s": 3,
        "wind_from_deg": 45,
    },
}


def get_post(request: Request) -> CommandPost:
    post: CommandPost = request.app.state.post
    return post


PostDep = Annotated[CommandPost, Depends(get_post)]


@router.post("/incidents", status_code=201, summary="Activate a plan: the whole picture at once")
def activate_incident(
    post: PostDep,
    principal: CommanderDep,
    site_id: str,
    response: Response,
    body: Annotated[
        ActivationRequest, Body(openapi_examples={"chlorine": {"value": ACTIVATION_EXAMPLE}})
    ],
) -> dict[str, Any]:
    picture = post.activate(site_id, body, actor=principal.username)
    response.headers["Location"] = f"/api/sites/{site_id}/incidents/{picture['incident']['id']}"
    return picture


@router.get("/incidents", summary="Active incidents of the site")
def list_incidents(post: PostDep, _: ReaderDep, site_id: str) -> dict[str, Any]:
    post.models.get(site_id)  # 404 for an unknown site
    return {
        "incidents": [
            {
                "id": i.id,
                "plan_id": i.request.plan_id,
                "level": i.run.state.level.value,
                "active": i.run.active,
                "activated_at": i.activated_at.isoformat(),
            }
            for i in post.incidents.values()
            if i.site_id == site_id
        ]
    }


@router.get("/incidents/{incident_id}", summary="An incident's whole picture")
def get_incident(post: PostDep, _: ReaderDep, site_id: str, incident_id: str) -> dict[str, Any]:
    post.incident(site_id, incident_id)
    picture = post.site_snapshot(site_id, incident_id)
    snapshot: dict[str, Any] = picture["incidents"][0]
    return snapshot


class StepAction(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    value: float | None = None
    reference: str | None = Field(default=None, max_length=500)
    reason: str | None = Field(default=None, max_length=2000)


def _events(logged: list[event_log.LoggedEvent]) -> dict[str, Any]:
    return {"events": [e.as_dict() for e in logged]}


@router.post(
    "/incidents/{incident_id}/steps/{step_id}/{action}",
    summary="Move a plan step: acknowledge, start, complete, skip or fail",
)
def step_action(
    post: PostDep,
    principal: CommanderDep,
    site_id: str,
    incident_id: str,
    step_id: str,
    action: Literal["acknowledge", "start", "complete", "skip", "fail"],
    body: StepAction | None = None,
) -> dict[str, Any]:
    body = body or StepAction()
    incident = post.incident(site_id, incident_id)
    actor = actor_for(principal.username, frozenset(principal.roles), incident.run.state.template)

    def act(run: Any) -> None:
        if action == "complete":
            run.complete(step_id, actor, value=body.value, reference=body.reference)
        elif action in ("skip", "fail"):
            getattr(run, action)(step_id, actor, reason=body.reason or "")
        else:
            getattr(run, action)(step_id, actor)

    return _events(post.command(site_id, incident_id, act))


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)
    step_id: str | None = None


@router.post("/incidents/{incident_id}/notes", summary="A note on the incident or a step")
def add_note(
    post: PostDep,
    principal: Annotated[Principal, Depends(requires(*HUMAN_ROLES))],
    site_id: str,
    incident_id: str,
    body: Note,
) -> dict[str, Any]:
    actor = actor_for(principal.username, frozenset(principal.roles), None)
    return _events(
        post.command(
            site_id, incident_id, lambda run: run.note(actor, body.text, step_id=body.step_id)
        )
    )


# After the notes route: "/notes" would otherwise match "{command}".
@router.post(
    "/incidents/{incident_id}/{command}",
    summary="Escalate, de-escalate or stand down the incident's plan",
)
def incident_command(
    post: PostDep,
    principal: CommanderDep,
    site_id: str,
    incident_id: str,
    command: Literal["escalate", "deescalate", "stand-down"],
) -> dict[str, Any]:
    incident = post.incident(site_id, incident_id)
    actor = actor_for(principal.username, frozenset(principal.roles), incident.run.state.template)
    method = {"escalate": "escalate", "deescalate": "deescalate", "stand-down": "stand_down"}
    return _events(
        post.command(site_id, incident_id, lambda run: getattr(run, method[command])(actor))
    )


@router.post(
    "/notifications/{seq}/ack", summary="Answer a call-tree notification (no fallback is called)"
)
def acknowledge_notification(
    post: PostDep,
    principal: Annotated[Principal, Depends(requires(*HUMAN_ROLES))],
    site_id: str,
    seq: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> dict[str, Any]:
    return post.acknowledge(site_id, seq, actor=principal.username).as_dict()


@router.get("/events", summary="The site's event log after a sequence number")
def list_events(
    db: DatabaseDep,
    _: ReaderDep,
    site_id: str,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=event_log.MAX_BATCH)] = 1000,
) -> dict[str, Any]:
    with db.read() as session:
        from gis.sites import load_site

        load_site(session, site_id)
        found = event_log.since(session, site_id, after, limit=limit)
        return {
            "events": [e.as_dict() for e in found],
            "last_seq": event_log.last_seq(session, site_id),
        }
