"""After-action reviews: the list (overdue ones flagged), one review as JSON or as a printable
HTML document, its situation maps, edits to its improvement plan, and the sign-off.

Who may do what is :func:`command.reviews.check_access`'s: the routes let in any site role and
the review decides, so that a drill's review stays invisible (404) to those who may not see it.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from command import reviews
from command.auth import HUMAN_ROLES, Principal, Role
from command.deps import DatabaseDep, IfMatchDep, requires
from command.post import CommandPost
from gis.errors import FieldError, InvalidInput

router = APIRouter(prefix="/api/sites/{site_id}/reviews", tags=["reviews"])

#: Reading the list needs one of the roles that read reviews at all.
ReviewersDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.DRILL_CONTROLLER))]
#: One review: any site role gets through; the review itself says 404 or 403.
ReaderDep = Annotated[Principal, Depends(requires(*HUMAN_ROLES))]
IncidentId = Annotated[str, Path(max_length=64)]


def get_post(request: Request) -> CommandPost:
    post: CommandPost = request.app.state.post
    return post


PostDep = Annotated[CommandPost, Depends(get_post)]


def _json(body: Any, *, version: int | None = None) -> Response:
    headers = {"ETag": f'"{version}"'} if version is not None else None
    return Response(
        json.dumps(body, ensure_ascii=False), media_type="application/json", headers=headers
    )


def _reviewed(body: dict[str, Any]) -> Response:
    return _json(body, version=int(body["review"]["version"]))


@router.get("", summary="The site's after-action reviews, overdue ones flagged")
def list_reviews(
    db: DatabaseDep, post: PostDep, principal: ReviewersDep, site_id: str
) -> dict[str, Any]:
    """Those the caller may read, the latest ended first. ``overdue``: not signed off 72 hours
    after the incident (or drill) ended."""
    roles = principal.roles_at(site_id)
    return {"reviews": reviews.list_reviews(db, site_id, roles, now=post.clock.now())}


@router.get(
    "/{incident_id}",
    summary="One after-action review as JSON (its version is the ETag)",
)
def get_review(
    db: DatabaseDep, post: PostDep, principal: ReaderDep, site_id: str, incident_id: IncidentId
) -> Response:
    found = reviews.get_review(
        db, site_id, incident_id, principal.roles_at(site_id), now=post.clock.now()
    )
    return _reviewed(found)


@router.get(
    "/{incident_id}/review.html",
    summary="The review as one printable, self-contained HTML document (a download)",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
def review_document(
    db: DatabaseDep, post: PostDep, principal: ReaderDep, site_id: str, incident_id: IncidentId
) -> Response:
    # A download: the document's inline styles and maps are its own, which the server's
    # strict Content-Security-Policy would not run if it were shown from here.
    roles = principal.roles_at(site_id)
    found = reviews.get_review(db, site_id, incident_id, roles, now=post.clock.now())
    text = reviews.export_html(db, post.model(site_id), found)
    return Response(
        text,
        media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="review-{incident_id}.html"'},
    )


@router.get(
    "/{incident_id}/maps/{map_id}",
    summary="One situation map of the review: self-contained HTML (folium) or PNG",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "image/png": {}}}},
)
def review_map(
    db: DatabaseDep,
    post: PostDep,
    principal: ReaderDep,
    site_id: str,
    incident_id: IncidentId,
    map_id: Annotated[str, Path(max_length=64)],
    format: Literal["html", "png"] = "html",
) -> Response:
    roles = principal.roles_at(site_id)
    found = reviews.get_review(db, site_id, incident_id, roles, now=post.clock.now())
    data = reviews.export_map(db, post.model(site_id), found, map_id, fmt=format)
    kind = "image/png" if format == "png" else "text/html; charset=utf-8"
    name = f"review-{incident_id}-{map_id}.{format}"
    return Response(
        data, media_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


Text = Annotated[str, Field(max_length=reviews.MAX_TEXT)]


class ItemEdit(BaseModel):
    """An item's cause and corrective action; a field left out stays, ``null`` clears it."""

    model_config = ConfigDict(extra="forbid")

    cause: Text | None = None
    action: Text | None = Field(default=None, description="the corrective action")
    owner: Annotated[str, Field(max_length=200)] | None = None
    due: date | None = Field(default=None, description="when the corrective action is due")


class ReviewEdits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, ge=1, description="the version edited (or If-Match); required, one way"
    )
    items: dict[Annotated[str, Field(max_length=200)], ItemEdit] = Field(max_length=500)


class SignOff(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="the version signed (or If-Match)")


def _version(if_match: int | None, version: int | None) -> tuple[int | None, Any]:
    if if_match is not None and version not in (None, if_match):
        raise InvalidInput(
            "If-Match and version disagree",
            errors=[FieldError("version", "If-Match and version must agree")],
        )
    if if_match is not None:
        return if_match, "header"
    return version, "body" if version is not None else None


@router.patch(
    "/{incident_id}",
    summary="Give items of the improvement plan a cause and a corrective action",
)
def edit_review(
    db: DatabaseDep,
    post: PostDep,
    principal: ReaderDep,
    if_match: IfMatchDep,
    site_id: str,
    incident_id: IncidentId,
    body: ReviewEdits,
) -> Response:
    """Items by id (``step:…``, ``action:…``, ``callout:…``). Needs the version edited
    (``If-Match`` or ``version``): 412 or 409 when someone edited it since; a signed-off review
    is frozen (409)."""
    version, source = _version(if_match, body.version)
    changes = {key: edit.model_dump(exclude_unset=True) for key, edit in body.items.items()}
    found = reviews.edit_review(
        db,
        site_id,
        incident_id,
        changes,
        principal.roles_at(site_id),
        actor=principal.username,
        version=version,
        source=source,
        now=post.clock.now(),
    )
    return _reviewed(found)


@router.post(
    "/{incident_id}/sign-off",
    summary="Sign the review off: frozen, its hash stored and logged",
)
def sign_off(
    db: DatabaseDep,
    post: PostDep,
    principal: ReaderDep,
    if_match: IfMatchDep,
    site_id: str,
    incident_id: IncidentId,
    body: SignOff | None = None,
) -> Response:
    version, source = _version(if_match, body.version if body else None)
    found = reviews.sign_off(
        db,
        site_id,
        incident_id,
        principal.roles_at(site_id),
        actor=principal.username,
        version=version,
        source=source,
        now=post.clock.now(),
    )
    return _reviewed(found)
