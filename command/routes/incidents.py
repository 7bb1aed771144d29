"""Incidents: one-action activation, the picture, step updates, escalation, the event log."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from command import attachments
from command import events as event_log
from command.attachments import decode_photo
from command.auth import HUMAN_ROLES, Principal, Role, find_user
from command.client_actions import ClientRequestDep, perform
from command.deps import DatabaseDep, ReaderDep, requires
from command.event_reads import PAGE as EVENTS_PAGE
from command.event_reads import EventReadBudget
from command.hub import encode_bytes
from command.incidents import ActivationRequest
from command.notifications import incident_notices
from command.post import CommandPost, actor_for
from gis.errors import FieldError, IllegalTransition, InvalidInput, NotFound, RallypointError
from gis.geometry import validate_geometry
from gis.sites import load_site
from gis.storage.tables import EventRow, UserRow

router = APIRouter(prefix="/api/sites/{site_id}", tags=["incidents"])

CommanderDep = Annotated[Principal, Depends(requires(Role.COMMANDER))]
#: Steps are moved by a commander, or by a responder whose duty in the incident is the step's role.
StepActorDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.RESPONDER))]

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
    body: Annotated[
        ActivationRequest, Body(openapi_examples={"chlorine": {"value": ACTIVATION_EXAMPLE}})
    ],
) -> Response:
    # The picture comes encoded: the subscribers got the same bytes, and a large one (every
    # route at L3) would cost hundreds of milliseconds to encode again here.
    incident_id, picture = post.activate(site_id, body, actor=principal.username)
    return Response(
        picture,
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/api/sites/{site_id}/incidents/{incident_id}"},
    )


@router.get("/incidents", summary="The site's incidents: active ones, or past ones by time")
def list_incidents(
    post: PostDep,
    _: ReaderDep,
    site_id: str,
    state: Literal["active", "closed", "all"] = "active",
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """``state=active`` (the default): what runs now. ``closed`` or ``all``: from the log, with
    ``from`` and ``to`` (ISO 8601) bounding the activation time."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(
                f"'{name}' needs a UTC offset", errors=[FieldError(name, "e.g. 2026-12-03T00:00Z")]
            )
    if state == "active":
        post.model(site_id)  # 404 for an unknown site
        return {
            "incidents": [
                {
                    "id": i.id,
                    "plan_id": i.request.plan_id,
                    "level": i.run.state.level.value,
                    "active": i.run.active,
                    "activated_at": i.activated_at.isoformat(),
                    "exercise": i.exercise,
                }
                for i in list(post.incidents.values())
                if i.site_id == site_id
            ]
        }
    found = post.past_incidents(site_id, start=start, end=end)
    return {"incidents": [i for i in found if state == "all" or i["state"] == "closed"]}


@router.get("/incidents/{incident_id}", summary="An incident's whole picture")
def get_incident(post: PostDep, _: ReaderDep, site_id: str, incident_id: str) -> Response:
    """An active incident's live picture; a stood-down one's final picture, rebuilt from the
    log and marked closed."""
    post.look_for(site_id, incident_id)  # activated on another process a moment ago
    post.check_available(site_id, incident_id)  # 503 while being rebuilt; 409 quarantined
    if post.stood_down.get(incident_id) == site_id or incident_id not in post.incidents:
        return Response(
            encode_bytes(post.closed_picture(site_id, incident_id)),
            media_type="application/json",
        )
    post.incident(site_id, incident_id)
    picture = post.site_snapshot(site_id, incident_id)
    return Response(encode_bytes(picture["incidents"][0]), media_type="application/json")


@router.get(
    "/incidents/{incident_id}/notices",
    summary="The incident's call tree: every notice with its status (active or closed)",
)
def list_notices(db: DatabaseDep, _: ReaderDep, site_id: str, incident_id: str) -> dict[str, Any]:
    """Folded from the incident's logged ``notification.*`` events, in order of ``seq``:
    ``waiting``, ``delivered``, ``failed`` (still waiting), ``acknowledged``, ``passed_on``
    (to the next contact) or ``unanswered`` (no contact left)."""
    with db.read() as session:
        return {"notices": incident_notices(session, site_id, incident_id)}


@router.get(
    "/incidents/{incident_id}/route",
    summary="An evacuation route from where a person is now, or from a point",
)
def route_now(
    post: PostDep,
    _: ReaderDep,
    site_id: str,
    incident_id: str,
    person: Annotated[str | None, Query(max_length=100)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
) -> dict[str, Any]:
    """``?person=P-0001`` (their last known position) or ``?lon=..&lat=..``; the route is
    computed now, under the incident's zones and wind, and never crosses the innermost zone."""
    post.incident(site_id, incident_id)  # 404 before any other answer
    model = post.model(site_id)
    if person is not None:
        try:
            at = model.person_ids.index(person)
        except ValueError:
            raise NotFound(
                f"no person '{person}' with a known position at {site_id}",
                errors=[FieldError("person", "unknown")],
            ) from None
        x, y = (float(v) for v in model.person_lonlat[at])
    elif lon is not None and lat is not None:
        validate_geometry(
            {"type": "Point", "coordinates": [lon, lat]},
            expected_type="Point",
            extent=model.site.extent,
            field_name="lon",
        )
        x, y = lon, lat
    else:
        missing = "lat" if lon is not None else "lon" if lat is not None else "person"
        raise InvalidInput(
            "say where from: a person, or lon and lat",
            errors=[FieldError(missing, "give person, or lon and lat")],
        )
    return {"person": person, **post.route(model, incident_id, (x, y))}


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
    principal: StepActorDep,
    site_id: str,
    incident_id: str,
    step_id: str,
    action: Literal["acknowledge", "start", "complete", "skip", "fail"],
    client: ClientRequestDep,
    body: StepAction | None = None,
) -> Response:
    """With ``Idempotency-Key`` (a queued action, docs/offline.md) a retry gets the first
    answer; ``Rallypoint-Acted-At`` says when the responder acted."""
    body = body or StepAction()
    incident = post.incident(site_id, incident_id)

    def act(run: Any) -> None:
        # Under the command post's lock: a duty taken back a moment ago is no longer held.
        actor = actor_for(
            principal.username, principal.roles_at(site_id), run.state.template, incident.duties
        )
        if action == "complete":
            run.complete(step_id, actor, value=body.value, reference=body.reference)
        elif action in ("skip", "fail"):
            getattr(run, action)(step_id, actor, reason=body.reason or "")
        else:
            getattr(run, action)(step_id, actor)

    return perform(
        post.db,
        post.clock,
        user_id=principal.id,
        actor=principal.username,
        request=client,
        act=lambda queued: _events(post.command(site_id, incident_id, act, client=queued)),
    )


class Duty(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=100, description="a role id of the plan")
    username: str = Field(min_length=1, max_length=100)


@router.post(
    "/incidents/{incident_id}/duties",
    summary="Give a user a plan role in this incident (a duty): they may then act on its steps",
)
def assign_duty(
    post: PostDep, principal: CommanderDep, site_id: str, incident_id: str, body: Duty
) -> dict[str, Any]:
    return _events(
        post.duty(
            site_id,
            incident_id,
            body.role,
            body.username.strip().lower(),
            actor=principal.username,
        )
    )


@router.delete(
    "/incidents/{incident_id}/duties/{role}/{username}", summary="Take a duty back from a user"
)
def release_duty(
    post: PostDep, principal: CommanderDep, site_id: str, incident_id: str, role: str, username: str
) -> dict[str, Any]:
    return _events(
        post.duty(
            site_id,
            incident_id,
            role,
            username.strip().lower(),
            actor=principal.username,
            assign=False,
        )
    )


@router.get("/tasks", summary="The caller's open plan steps in the site's active incidents")
def my_tasks(
    post: PostDep, principal: Annotated[Principal, Depends(requires(*HUMAN_ROLES))], site_id: str
) -> dict[str, Any]:
    """The steps of the plan roles the caller holds by duty (a commander: also the plan's
    command role), not yet finished, soonest due first."""
    commander = Role.COMMANDER in principal.roles_at(site_id)
    tasks = post.tasks(site_id, principal.username, commander=commander)
    return {"username": principal.username, "tasks": tasks}


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)
    step_id: str | None = None
    photo: str | None = Field(
        default=None,
        description="One JPEG, PNG or WebP picture, base64 (or a data: URL), at most 2 MB "
        "decoded; its type is read from its bytes",
    )


@router.post("/incidents/{incident_id}/notes", summary="A note on the incident or a step")
def add_note(
    post: PostDep,
    principal: StepActorDep,  # as the README's roles: a commander or a responder
    site_id: str,
    incident_id: str,
    body: Note,
    client: ClientRequestDep,
) -> Response:
    """Takes ``Idempotency-Key`` and ``Rallypoint-Acted-At`` as the step actions do. A photo
    is stored with the note, which names it by its SHA-256 (``GET .../attachments/{sha256}``)."""
    actor = actor_for(principal.username, principal.roles_at(site_id), None)
    photo = decode_photo(body.photo, field="body.photo") if body.photo is not None else None
    return perform(
        post.db,
        post.clock,
        user_id=principal.id,
        actor=principal.username,
        request=client,
        act=lambda queued: _events(
            post.command(
                site_id,
                incident_id,
                lambda run: run.note(actor, body.text, step_id=body.step_id),
                client=replace(queued, photo=photo),
            )
        ),
    )


@router.get(
    "/attachments/{sha256}",
    summary="A note's photo, by the SHA-256 its logged note names",
    response_class=Response,
    responses={200: {"content": {t: {} for t in ("image/jpeg", "image/png", "image/webp")}}},
)
def get_attachment(db: DatabaseDep, _: ReaderDep, site_id: str, sha256: str) -> Response:
    with db.read() as session:
        load_site(session, site_id)
        content, media_type = attachments.load(session, site_id, sha256)
    return Response(
        content,
        media_type=media_type,
        headers={
            # Named by its content: it never changes.
            "Cache-Control": "private, max-age=31536000, immutable",
            "ETag": f'"{sha256}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


class StandDown(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(
        default=False, description="close although people are missing or steps are open"
    )
    reason: str | None = Field(default=None, max_length=2000)


@router.post(
    "/incidents/{incident_id}/stand-down",
    summary="Stand the incident down (people missing or steps open: force and a reason)",
)
def stand_down(
    post: PostDep,
    principal: CommanderDep,
    site_id: str,
    incident_id: str,
    body: StandDown | None = None,
) -> dict[str, Any]:
    body = body or StandDown()
    incident = post.incident(site_id, incident_id)
    actor = actor_for(principal.username, principal.roles_at(site_id), incident.run.state.template)
    return _events(
        post.stand_down(site_id, incident_id, actor, force=body.force, reason=body.reason)
    )


class LevelChange(BaseModel):
    """Why the response level changes: logged with the order (the wall asks for it)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=2000)


# After the notes route: "/notes" would otherwise match "{command}".
@router.post("/incidents/{incident_id}/{command}", summary="Escalate or de-escalate the plan")
def incident_command(
    post: PostDep,
    principal: CommanderDep,
    site_id: str,
    incident_id: str,
    command: Literal["escalate", "deescalate"],
    body: LevelChange | None = None,
) -> dict[str, Any]:
    reason = body.reason if body else None
    incident = post.incident(site_id, incident_id)
    actor = actor_for(principal.username, principal.roles_at(site_id), incident.run.state.template)
    return _events(
        post.command(site_id, incident_id, lambda run: getattr(run, command)(actor, reason=reason))
    )


class OnBehalf(BaseModel):
    """A commander answers a call-out for the person called, who reached them another way."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["phone", "sms", "radio", "in_person", "app"] = Field(
        description="How the person called reached the commander."
    )
    note: str | None = Field(default=None, min_length=1, max_length=500)


@router.post(
    "/notifications/{seq}/ack",
    summary="Answer a call-tree notification for the person called (a commander; no fallback "
    "is called)",
)
def acknowledge_notification(
    post: PostDep,
    principal: CommanderDep,
    site_id: str,
    seq: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: OnBehalf,
) -> dict[str, Any]:
    """The person called answers through their call-out's link (``POST /api/notices/answer``);
    a commander answers here for them, naming the channel they were reached on."""
    return post.acknowledge(
        site_id, seq, actor=principal.username, channel=body.channel, note=body.note
    ).as_dict()


@router.get(
    "/notifications/mine",
    summary="My call-outs waiting for an answer (by my duties, or naming me as the contact)",
)
def my_notifications(
    db: DatabaseDep, post: PostDep, principal: StepActorDep, site_id: str
) -> dict[str, Any]:
    post.model(site_id)  # 404 for an unknown site
    names = _names(db, principal)
    return {
        "notices": [
            {
                "seq": n.seq,
                "incident_id": n.incident_id,
                "role": n.role,
                "level": n.data.get("level"),
                "contact": n.contact,
                "fallback": n.index > 0 or bool(n.data.get("fallback", False)),
                "due_at": n.due_at.isoformat(),
                "acknowledge_within_s": n.acknowledge_within_s,
            }
            for n in post.own_notices(site_id, names)
        ]
    }


@router.post(
    "/notifications/{seq}/answer",
    summary="Answer my own call-out from the app (no fallback is called)",
)
def answer_my_notification(
    db: DatabaseDep,
    post: PostDep,
    principal: StepActorDep,
    site_id: str,
    seq: Annotated[int, Path(ge=1, le=2**31 - 1)],
    client: ClientRequestDep,
) -> Response:
    """A call-out is mine when I hold the duty of its plan role in its incident, or its
    contact is named as me (username, or display name no other active user bears). Takes
    ``Idempotency-Key`` and ``Rallypoint-Acted-At`` as the step actions do; one answered
    already is 409 naming who answered and when."""
    names = _names(db, principal)

    def answer(queued: Any) -> dict[str, Any]:
        try:
            return _events([post.answer_own(site_id, seq, names=names, client=queued)])
        except NotFound:
            raise _answered_already(db, site_id, seq) from None

    return perform(
        post.db,
        post.clock,
        user_id=principal.id,
        actor=principal.username,
        request=client,
        act=answer,
    )


def _names(db: Any, principal: Principal) -> list[str]:
    """What names the caller as a call-out's contact: their username, and their display name
    when no other active user bears it (compared case-blind): a shared name answers for
    nobody (answering stops the fallbacks; a commander may answer for them)."""
    with db.read() as session:
        display = find_user(session, principal.username).display_name
        folded = display.strip().casefold()
        others = session.scalars(
            select(UserRow.display_name).where(
                UserRow.disabled.is_(False), UserRow.username != principal.username
            )
        )
        shared = any(name.strip().casefold() == folded for name in others)
    return [principal.username] if shared or not folded else [principal.username, display]


def _answered_already(db: Any, site_id: str, seq: int) -> RallypointError:
    """Why a call-out cannot be answered: answered already (by whom, when), or unknown."""
    with db.read() as session:
        row = session.get(EventRow, (site_id, seq))
        notices = (
            incident_notices(session, site_id, row.incident_id)
            if row is not None and row.type == "notification.requested" and row.incident_id
            else []
        )
    for notice in notices:
        answered = notice.get("acknowledged")
        if notice["seq"] == seq and answered:
            at = datetime.fromisoformat(answered["at"])
            return IllegalTransition(
                f"call-out {seq} was already acknowledged by {answered['by']} at {at:%H:%M:%S} UTC",
                errors=[FieldError("notification", "acknowledged already")],
                extra={"by": answered["by"], "at": answered["at"]},
            )
    return NotFound(
        f"no call-out {seq} waiting for an answer at site {site_id}: it is unknown, or was "
        "passed on to the next contact",
        errors=[FieldError("notification", "unknown or passed on")],
    )


@router.get(
    "/events",
    summary="The site's event log after a sequence number",
    description=f"A page holds at most {EVENTS_PAGE} events (a larger `limit` reads as "
    f"{EVENTS_PAGE}); `next` is the next page's URL while more follow. Each token may read "
    "`RALLYPOINT_EVENT_READS_BURST` events at once, then `RALLYPOINT_EVENT_READS_PER_S` a "
    "second; beyond that the answer is 429 with `Retry-After`.",
)
def list_events(
    db: DatabaseDep,
    reader: ReaderDep,
    request: Request,
    site_id: str,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=event_log.MAX_BATCH)] = EVENTS_PAGE,
) -> dict[str, Any]:
    budget: EventReadBudget = request.app.state.event_reads
    budget.check(reader.id)  # 429 before the read, not after
    page_size = min(limit, EVENTS_PAGE)
    with db.read() as session:
        from gis.sites import load_site

        load_site(session, site_id)
        found = event_log.since(session, site_id, after, limit=page_size)
        last_seq = event_log.last_seq(session, site_id)
    budget.charge(reader.id, len(found))
    page: dict[str, Any] = {"events": [e.as_dict() for e in found], "last_seq": last_seq}
    if len(found) == page_size and found[-1].seq < last_seq:
        page["next"] = f"{request.url.path}?after={found[-1].seq}&limit={limit}"
    return page
