"""Plan templates: list, read, create, save drafts, submit, approve, return, withdraw, compare,
validate, print.

Bodies are JSON, or YAML with ``Content-Type: application/yaml`` (planners write YAML).
Validation problems come back as ``application/problem+json`` with the path of every field at
fault; ``POST .../plans/validate`` reports them without saving anything. Every change names the
ETag of the version it acts on in ``If-Match`` (``plans.workflow``), and every transition is
logged in the site's event log and sent to the walls (``command.plan_log``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from command.auth import Principal, Role
from command.deps import DatabaseDep, PlannerDep, ReaderDep, requires
from command.plan_log import PlanLog
from command.post import event_message
from command.routes.incidents import PostDep
from gis.errors import FieldError, InvalidInput, PayloadTooLarge, UnsupportedFormat
from gis.nesting import check_json_depth
from plans import approval, store
from plans.document import plan_html, plan_markdown
from plans.model import data_from_yaml
from plans.workflow import MAX_NOTE, parse_etag

router = APIRouter(prefix="/api/sites/{site_id}/plans", tags=["plans"])

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
#: The largest plan body: twenty times the largest demo plan. YAML is parsed in pure Python at
#: about half a megabyte a second, so a plan the size of a layer import would hold a worker.
MAX_PLAN_BYTES = 512 * 1024


async def plan_body(request: Request) -> Any:
    """The request body as data: JSON by default, YAML when the content type says so."""
    raw = await _read_plan(request)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "the body is not UTF-8 text", errors=[FieldError("body", "UTF-8 text")]
        ) from exc
    if kind in YAML_TYPES:
        request.state.plan_yaml = text  # kept as written, comments and all
        return await run_in_threadpool(data_from_yaml, text)
    if kind not in ("application/json", ""):
        raise UnsupportedFormat(
            f"plans are JSON or YAML, not {kind}",
            errors=[FieldError("Content-Type", "application/json or application/yaml")],
        )
    check_json_depth(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON: {exc}", errors=[FieldError("body", "valid JSON")]
        ) from exc


async def _read_plan(request: Request) -> bytes:
    """The body, refused (413) as soon as it is larger than a plan may be."""
    too_large = PayloadTooLarge(
        f"a plan is at most {MAX_PLAN_BYTES} bytes",
        errors=[FieldError("body", f"larger than {MAX_PLAN_BYTES} bytes")],
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PLAN_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PLAN_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def plan_if_match(
    if_match: Annotated[
        str | None,
        Header(
            description='The ETag of the plan version you read: "4", or "4.2" for a draft '
            "saved twice."
        ),
    ] = None,
) -> tuple[int, int] | None:
    return parse_etag(if_match)


PlanBody = Annotated[Any, Depends(plan_body)]
PlanIfMatch = Annotated[tuple[int, int] | None, Depends(plan_if_match)]
#: Approving a version: a commander, or an approver (who otherwise only reads and returns).
ReviewerDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.APPROVER))]
#: Returning a submission to draft: its reviewers, or a planner taking it back.
ReturnerDep = Annotated[Principal, Depends(requires(Role.PLANNER, Role.COMMANDER, Role.APPROVER))]
ChangeNote = Annotated[
    str | None,
    Query(
        max_length=MAX_NOTE,
        description="What this save changes (kept with the version; required by submit)",
    ),
]
Version = Annotated[int, Query(ge=1, le=2**31 - 1)]
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _json(body: Any, *, etag: str | None = None, status: int = 200) -> Response:
    headers = {"ETag": f'"{etag}"'} if etag is not None else None
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _changed(
    db: DatabaseDep,
    post: PostDep,
    site_id: str,
    change: Callable[[Session, PlanLog], store.StoredPlan],
    *,
    status: int = 200,
) -> Response:
    """Make a change in one transaction with its events, then send the events to the walls;
    the version as it is now, its ETag in the header."""
    with db.write() as session:
        log = PlanLog(session, site_id)
        plan = change(session, log)
    post.hub.publish(site_id, [event_message(e) for e in log.logged])
    response = _json(plan.to_json(), etag=plan.etag, status=status)
    if status == 201:
        response.headers["Location"] = f"/api/sites/{site_id}/plans/{plan.template.id}"
    return response


@router.get(
    "",
    summary="The site's plans, each by its approved version (in force for activation), or its "
    "latest when none is approved",
)
def list_plans(reader: ReaderDep, db: DatabaseDep, site_id: str) -> dict[str, Any]:
    with db.read() as session:
        return {"plans": store.list_plans(session, site_id)}


@router.post(
    "/validate",
    summary="Validate a plan against the site without saving it",
    openapi_extra=_BODY_DOC,
)
def validate_plan(
    planner: PlannerDep, db: DatabaseDep, site_id: str, body: PlanBody
) -> dict[str, Any]:
    with db.read() as session:
        problems = store.validate_plan(session, site_id, body)
    return {"valid": not problems, "errors": [p.as_dict() for p in problems]}


@router.post(
    "",
    status_code=201,
    summary="Create a plan: draft version 1; it must validate",
    response_class=Response,
    openapi_extra=_BODY_DOC,
)
def create_plan(
    planner: PlannerDep,
    db: DatabaseDep,
    post: PostDep,
    request: Request,
    site_id: str,
    body: PlanBody,
    change_note: ChangeNote = None,
) -> Response:
    return _changed(
        db,
        post,
        site_id,
        lambda session, log: store.create_plan(
            session,
            site_id,
            body,
            actor=planner.username,
            now=post.clock.now(),
            source=_yaml_sent(request),
            change_note=change_note,
            record=log,
        ),
        status=201,
    )


def _yaml_sent(request: Request) -> str | None:
    """The YAML text of the request's plan, when it came as YAML."""
    text: str | None = getattr(request.state, "plan_yaml", None)
    return text


def _wants_yaml(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() in YAML_TYPES for part in accept.split(","))


@router.get(
    "/{plan_id}",
    summary="A plan: its latest version, ?version=N, or ?approved=true the version in force; "
    "JSON, or with Accept: application/yaml the YAML as its planner wrote it",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "application/yaml": {}}}},
)
def get_plan(
    reader: ReaderDep,
    db: DatabaseDep,
    request: Request,
    site_id: str,
    plan_id: str,
    version: Version | None = None,
    approved: bool = False,
) -> Response:
    if approved and version is not None:
        raise InvalidInput(
            "ask for a version or for the approved one, not both",
            errors=[FieldError("approved", "not with version")],
        )
    with db.read() as session:
        if approved:
            plan = store.approved_plan(session, site_id, plan_id)
        else:
            plan = store.get_plan(session, site_id, plan_id, version=version)
        in_force = store.approved_version(session, site_id, plan_id)
    if _wants_yaml(request):
        return Response(
            plan.yaml(),
            media_type="application/yaml; charset=utf-8",
            headers={"ETag": f'"{plan.etag}"', "Vary": "Accept"},
        )
    response = _json({**plan.to_json(), "approved_version": in_force}, etag=plan.etag)
    response.headers["Vary"] = "Accept"
    return response


@router.put(
    "/{plan_id}",
    summary="Save a plan: its draft in place, or a new draft version after the latest (needs "
    "If-Match: the ETag of the latest version); the approved version stays in force",
    response_class=Response,
    openapi_extra=_BODY_DOC,
)
def save_plan(
    planner: PlannerDep,
    db: DatabaseDep,
    post: PostDep,
    if_match: PlanIfMatch,
    request: Request,
    site_id: str,
    plan_id: str,
    body: PlanBody,
    change_note: ChangeNote = None,
) -> Response:
    return _changed(
        db,
        post,
        site_id,
        lambda session, log: store.save_plan(
            session,
            site_id,
            plan_id,
            body,
            actor=planner.username,
            expected=if_match,
            now=post.clock.now(),
            source=_yaml_sent(request),
            change_note=change_note,
            record=log,
        ),
    )


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: What the version changes; may be left out when the draft was saved with one.
    change_note: str | None = Field(default=None, max_length=MAX_NOTE)


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=MAX_NOTE)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Why: required to return a submission to draft, optional to withdraw a draft.
    reason: str | None = Field(default=None, max_length=MAX_NOTE)


def _reviewed(
    db: DatabaseDep,
    post: PostDep,
    site_id: str,
    plan_id: str,
    step: Callable[..., store.StoredPlan],
    principal: Principal,
    expected: tuple[int, int] | None,
    **note: str | None,
) -> Response:
    """A review step of ``plans.approval`` (submit, approve, return, withdraw) on the plan's
    latest version, the one whose ETag the caller names; ``note`` is the step's words (its
    change note, comment or reason)."""
    return _changed(
        db,
        post,
        site_id,
        lambda session, log: step(
            session,
            site_id,
            plan_id,
            actor=principal.username,
            expected=expected,
            now=post.clock.now(),
            record=log,
            **note,
        ),
    )


@router.post(
    "/{plan_id}/submit",
    summary="Submit the draft for approval, with its change note (If-Match: the draft's ETag)",
    response_class=Response,
)
def submit_plan(
    planner: PlannerDep,
    db: DatabaseDep,
    post: PostDep,
    if_match: PlanIfMatch,
    site_id: str,
    plan_id: str,
    body: Submission | None = None,
) -> Response:
    note = body.change_note if body else None
    return _reviewed(
        db, post, site_id, plan_id, approval.submit_plan, planner, if_match, change_note=note
    )


@router.post(
    "/{plan_id}/approve",
    summary="Approve the submitted version (commander or approver, not one of its authors; "
    "If-Match: the ETag you reviewed): it is in force from now",
    response_class=Response,
)
def approve_plan(
    reviewer: ReviewerDep,
    db: DatabaseDep,
    post: PostDep,
    if_match: PlanIfMatch,
    site_id: str,
    plan_id: str,
    body: Approval | None = None,
) -> Response:
    comment = body.comment if body else None
    return _reviewed(
        db, post, site_id, plan_id, approval.approve_plan, reviewer, if_match, comment=comment
    )


@router.post(
    "/{plan_id}/return",
    summary="Return the submitted version to draft, with a reason (If-Match: its ETag)",
    response_class=Response,
)
def return_plan(
    principal: ReturnerDep,
    db: DatabaseDep,
    post: PostDep,
    if_match: PlanIfMatch,
    site_id: str,
    plan_id: str,
    body: Reason | None = None,
) -> Response:
    reason = body.reason if body else None
    return _reviewed(
        db, post, site_id, plan_id, approval.return_plan, principal, if_match, reason=reason
    )


@router.post(
    "/{plan_id}/withdraw",
    summary="Withdraw the draft (If-Match: its ETag); the approved version stays in force",
    response_class=Response,
)
def withdraw_plan(
    planner: PlannerDep,
    db: DatabaseDep,
    post: PostDep,
    if_match: PlanIfMatch,
    site_id: str,
    plan_id: str,
    body: Reason | None = None,
) -> Response:
    reason = body.reason if body else None
    return _reviewed(
        db, post, site_id, plan_id, approval.withdraw_plan, planner, if_match, reason=reason
    )


@router.get(
    "/{plan_id}/versions",
    summary="Every version of a plan: its state, ETag, change note, who and when of each step",
)
def plan_versions(reader: ReaderDep, db: DatabaseDep, site_id: str, plan_id: str) -> dict[str, Any]:
    with db.read() as session:
        return {"versions": store.plan_versions(session, site_id, plan_id)}


@router.get(
    "/{plan_id}/diff",
    summary="What changed between two versions (default: from the approved version to the "
    "latest): steps, levels, call trees, materials, scripts; JSON, or text with Accept: "
    "text/plain",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/plain": {}}}},
)
def plan_diff(
    reader: ReaderDep,
    db: DatabaseDep,
    request: Request,
    site_id: str,
    plan_id: str,
    from_version: Annotated[int | None, Query(alias="from", ge=1, le=2**31 - 1)] = None,
    to: Version | None = None,
) -> Response:
    with db.read() as session:
        found = approval.version_diff(
            session, site_id, plan_id, from_version=from_version, to_version=to
        )
    accept = request.headers.get("accept", "")
    if any(part.split(";")[0].strip().lower() == "text/plain" for part in accept.split(",")):
        return Response(
            found["text"], media_type="text/plain; charset=utf-8", headers={"Vary": "Accept"}
        )
    response = _json(found)
    response.headers["Vary"] = "Accept"
    return response


@router.get(
    "/{plan_id}/document",
    summary="The plan as a printable document for the control-room wall",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "text/markdown": {}}}},
)
def plan_document(
    reader: ReaderDep,
    db: DatabaseDep,
    site_id: str,
    plan_id: str,
    format: Literal["html", "markdown"] = "html",
    version: Version | None = None,
) -> Response:
    with db.read() as session:
        plan = store.get_plan(session, site_id, plan_id, version=version)
    if format == "markdown":
        text = plan_markdown(plan.template, version=plan.version)
        return Response(text, media_type="text/markdown; charset=utf-8")
    return Response(
        plan_html(plan.template, version=plan.version), media_type="text/html; charset=utf-8"
    )
