"""Plan templates: list, read, create, change (versioned), validate, print.

Bodies are JSON, or YAML with ``Content-Type: application/yaml`` (planners write YAML).
Validation problems come back as ``application/problem+json`` with the path of every field at
fault; ``POST .../plans/validate`` reports them without saving anything.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from command.deps import DatabaseDep, IfMatchDep, PlannerDep, ReaderDep
from gis.errors import FieldError, InvalidInput, PayloadTooLarge, UnsupportedFormat
from gis.nesting import check_json_depth
from plans import store
from plans.document import plan_html, plan_markdown
from plans.model import data_from_yaml

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


PlanBody = Annotated[Any, Depends(plan_body)]
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _json(body: Any, *, version: int | None = None, status: int = 200) -> Response:
    headers = {"ETag": f'"{version}"'} if version is not None else None
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


@router.get("", summary="The site's plans, latest versions")
def list_plans(reader: ReaderDep, db: DatabaseDep, site_id: str) -> dict[str, Any]:
    with db.read() as session:
        return {"plans": [p.summary() for p in store.list_plans(session, site_id)]}


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
    summary="Create a plan (version 1); it must validate",
    response_class=Response,
    openapi_extra=_BODY_DOC,
)
def create_plan(
    planner: PlannerDep, db: DatabaseDep, request: Request, site_id: str, body: PlanBody
) -> Response:
    with db.write() as session:
        plan = store.create_plan(
            session, site_id, body, actor=planner.username, source=_yaml_sent(request)
        )
    response = _json(plan.to_json(), version=plan.version, status=201)
    response.headers["Location"] = f"/api/sites/{site_id}/plans/{plan.template.id}"
    return response


def _yaml_sent(request: Request) -> str | None:
    """The YAML text of the request's plan, when it came as YAML."""
    text: str | None = getattr(request.state, "plan_yaml", None)
    return text


def _wants_yaml(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() in YAML_TYPES for part in accept.split(","))


@router.get(
    "/{plan_id}",
    summary="A plan, latest or ?version=N: JSON, or with Accept: application/yaml the YAML as "
    "its planner wrote it",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "application/yaml": {}}}},
)
def get_plan(
    reader: ReaderDep,
    db: DatabaseDep,
    request: Request,
    site_id: str,
    plan_id: str,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    with db.read() as session:
        plan = store.get_plan(session, site_id, plan_id, version=version)
    if _wants_yaml(request):
        return Response(
            plan.yaml(),
            media_type="application/yaml; charset=utf-8",
            headers={"ETag": f'"{plan.version}"', "Vary": "Accept"},
        )
    response = _json(plan.to_json(), version=plan.version)
    response.headers["Vary"] = "Accept"
    return response


@router.put(
    "/{plan_id}",
    summary="Store the next version of a plan (needs If-Match: the version you changed)",
    response_class=Response,
    openapi_extra=_BODY_DOC,
)
def update_plan(
    planner: PlannerDep,
    db: DatabaseDep,
    if_match: IfMatchDep,
    request: Request,
    site_id: str,
    plan_id: str,
    body: PlanBody,
) -> Response:
    with db.write() as session:
        plan = store.update_plan(
            session,
            site_id,
            plan_id,
            body,
            actor=planner.username,
            expected_version=if_match,
            version_source="header" if if_match is not None else None,
            source=_yaml_sent(request),
        )
    return _json(plan.to_json(), version=plan.version)


@router.get("/{plan_id}/versions", summary="Every version of a plan: when and by whom")
def plan_versions(reader: ReaderDep, db: DatabaseDep, site_id: str, plan_id: str) -> dict[str, Any]:
    with db.read() as session:
        return {"versions": store.plan_versions(session, site_id, plan_id)}


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
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    with db.read() as session:
        plan = store.get_plan(session, site_id, plan_id, version=version)
    if format == "markdown":
        text = plan_markdown(plan.template, version=plan.version)
        return Response(text, media_type="text/markdown; charset=utf-8")
    return Response(
        plan_html(plan.template, version=plan.version), media_type="text/html; charset=utf-8"
    )
