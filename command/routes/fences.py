"""Geofences and contractors: zone entry rules, temporary fences, breaches and credentials
(``command.monitoring.fences``, ``command.monitoring.contractors``; ``docs/monitoring.md``).

Who may do what:
- entry rules and credentials: planners write them (administrators hold nothing on a site);
  commanders and planners read credentials, every site role reads the rules and fences;
- temporary fences: drawn and removed by a commander (the duty manager running the site) or a
  planner (the safety engineer who issues the permit); Rallypoint has no supervisor role;
- breaches: acknowledged by a commander or a responder, as detector alarms are.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from command.auth import Principal, Role, user_exists
from command.deps import DatabaseDep, PlannerDep, ReaderDep, requires
from command.monitoring.contractors import (
    Credentials,
    parse_credentials,
    read_credentials,
    register_contractor,
    store_credentials,
    unknown_fields,
)
from command.monitoring.fence_rules import parse_owner, parse_rules, site_zone
from command.monitoring.fences import rules_of
from command.routes.incidents import PostDep
from gis.errors import FieldError, InvalidInput, NotFound
from gis.storage.tables import PersonRow

router = APIRouter(prefix="/api/sites/{site_id}", tags=["geofences and contractors"])

DrawerDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.PLANNER))]
AcknowledgerDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.RESPONDER))]
CredentialReaderDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.PLANNER))]


class Acknowledgement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)


@router.get("/zones/{zone_id}/rules", summary="A zone's entry rules and owner")
def get_rules(post: PostDep, _: ReaderDep, site_id: str, zone_id: str) -> dict[str, Any]:
    post.model(site_id)
    with post.db.read() as session:
        return rules_of(session, site_id, zone_id)


@router.put("/zones/{zone_id}/rules", summary="Set a zone's entry rules and owner (planners)")
def put_rules(
    post: PostDep,
    principal: PlannerDep,
    site_id: str,
    zone_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    extra = sorted(set(body) - {"rules", "owner"})
    if extra or "rules" not in body:
        raise InvalidInput(
            "send {rules, owner}",
            errors=unknown_fields(extra) or [FieldError("rules", "required")],
        )
    rules = parse_rules(body["rules"])
    owner = parse_owner(body.get("owner"))
    if owner and "username" in owner:
        with post.db.read() as session:
            if not user_exists(session, str(owner["username"])):
                raise InvalidInput(
                    f"no user {owner['username']!r} to notify",
                    errors=[FieldError("owner.username", "unknown user")],
                )
    return post.fences.put_rules(site_id, zone_id, rules, owner, actor=principal.username)


@router.delete(
    "/zones/{zone_id}/rules", status_code=204, summary="Remove a zone's entry rules (planners)"
)
def delete_rules(post: PostDep, principal: PlannerDep, site_id: str, zone_id: str) -> Response:
    post.model(site_id)
    post.fences.delete_rules(site_id, zone_id, actor=principal.username)
    return Response(status_code=204)


@router.get("/fences", summary="Every fence of the site: zones with rules, temporary fences")
def get_fences(post: PostDep, _: ReaderDep, site_id: str) -> dict[str, Any]:
    fences = post.fences.fences(site_id)
    return {"type": "FeatureCollection", "features": [f.as_feature() for f in fences]}


@router.post(
    "/fences/temporary",
    status_code=201,
    summary="Draw a temporary fence: a crane's swing radius or a hot-work area, with an expiry",
)
def post_temporary(
    post: PostDep,
    principal: DrawerDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    fence = post.fences.add_temporary(site_id, body, actor=principal.username)
    return fence.as_feature()


@router.delete("/fences/temporary/{fence_id}", summary="Remove a temporary fence before its expiry")
def delete_temporary(
    post: PostDep, principal: DrawerDep, site_id: str, fence_id: str
) -> dict[str, Any]:
    post.model(site_id)
    return post.fences.end_temporary(site_id, fence_id, actor=principal.username).as_dict()


@router.get("/fences/breaches", summary="Breaches awaiting an acknowledgement")
def get_breaches(post: PostDep, _: ReaderDep, site_id: str) -> list[dict[str, Any]]:
    return post.fences.open_breaches(site_id)


@router.post(
    "/fences/breaches/{seq}/acknowledge", summary="Acknowledge a breach (fence.acknowledged)"
)
def acknowledge_breach(
    post: PostDep,
    principal: AcknowledgerDep,
    site_id: str,
    seq: Annotated[int, Path(ge=1, le=2**62)],
    body: Acknowledgement | None = None,
) -> dict[str, Any]:
    note = body.note if body is not None else None
    return post.fences.acknowledge(site_id, seq, actor=principal.username, note=note).as_dict()


@router.get("/people/{person_id}/credentials", summary="A person's certificates and induction")
def get_credentials(
    post: PostDep, _: CredentialReaderDep, site_id: str, person_id: str
) -> dict[str, Any]:
    model = post.model(site_id)
    now = post.clock.now()
    with post.db.read() as session:
        person = session.get(PersonRow, (site_id, person_id))
        if person is None:
            raise NotFound(
                f"no person '{person_id}' at site '{site_id}'",
                errors=[FieldError("person", "unknown")],
            )
        held = read_credentials(session, site_id, [person_id]).get(person_id)
    today = now.astimezone(site_zone(model.site.timezone)).date()
    return {
        "person_id": person_id,
        "employer": person.employer,
        "employment": person.employment,
        **(held or Credentials()).as_dict(today=today, now=now),
    }


@router.put(
    "/people/{person_id}/credentials",
    summary="Replace a person's certificates and induction (planners)",
)
def put_credentials(
    post: PostDep,
    principal: PlannerDep,
    site_id: str,
    person_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    post.model(site_id)
    credentials = parse_credentials(body)
    with post.db.write() as session:
        store_credentials(
            session,
            site_id,
            person_id,
            credentials,
            actor=principal.username,
            now=post.clock.now(),
        )
    post.fences.credentials_changed(site_id)
    return {"person_id": person_id, **credentials.as_dict()}


@router.get("/contractors", summary="Contractors of the site with their credentials")
def get_contractors(post: PostDep, _: CredentialReaderDep, site_id: str) -> list[dict[str, Any]]:
    model = post.model(site_id)
    now = post.clock.now()
    today = now.astimezone(site_zone(model.site.timezone)).date()
    with post.db.read() as session:
        held = read_credentials(session, site_id)
    out = []
    for f in model.layers.get("people", []):
        props = f.get("properties", {})
        if props.get("employment") != "contractor":
            continue
        pid = str(f["id"])
        out.append(
            {
                "person_id": pid,
                "name": props.get("name"),
                "employer": props.get("employer"),
                "role": props.get("role"),
                **held.get(pid, Credentials()).as_dict(today=today, now=now),
            }
        )
    return sorted(out, key=lambda c: (str(c["employer"]), c["person_id"]))


@router.post(
    "/contractors", status_code=201, summary="Register a contractor with credentials (planners)"
)
def post_contractor(
    post: PostDep,
    principal: PlannerDep,
    db: DatabaseDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    extra = sorted(set(body) - {"person", "certificates", "induction"})
    if extra or not isinstance(body.get("person"), dict):
        raise InvalidInput(
            "send {person, certificates, induction}",
            errors=unknown_fields(extra)
            or [FieldError("person", "the person as a GeoJSON Feature of the people layer")],
        )
    credentials = parse_credentials(
        {k: body[k] for k in ("certificates", "induction") if k in body}
    )
    with db.write() as session:
        out = register_contractor(
            session,
            site_id,
            body["person"],
            credentials,
            actor=principal.username,
            now=post.clock.now(),
        )
    post.fences.credentials_changed(site_id)
    return {**out, **credentials.as_dict()}
