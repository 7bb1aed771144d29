"""One mapping from errors to ``application/problem+json`` (RFC 9457).

Domain errors carry their status and a user-safe message; FastAPI's validation errors, unknown
routes and anything unexpected get the same shape, so a client handles one format everywhere.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gis.errors import RallypointError, Unauthorized

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "/problems/"


def problem_body(exc: RallypointError, *, instance: str | None = None) -> dict[str, Any]:
    """The problem+json body of a domain error (HTTP answers and the device feed's errors)."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + exc.slug,
        "title": exc.title,
        "status": exc.status_code,
        "detail": exc.detail,
    }
    if instance:
        body["instance"] = instance
    if exc.errors:
        body["errors"] = [e.as_dict() for e in exc.errors]
    body.update({k: v for k, v in exc.extra.items() if k not in body})
    return body


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    # FastAPI prefixes where the value came from; keep the header/query name readable.
    if parts and parts[0] in {"body", "query", "path", "header"}:
        source, rest = parts[0], parts[1:]
        return ".".join(rest) if rest and source != "body" else ".".join(["body", *rest])
    return ".".join(parts)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RallypointError)
    # RFC 9110 section 15.5.2: a 401 names the scheme that would be accepted.
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    body = problem_body(exc, instance=request.url.path)
    return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _location(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
    return problem(
        422,
        "invalid-input",
        "Invalid input",
        "the request is invalid: " + "; ".join(f"{e['field']}: {e['reason']}" for e in errors),
        instance=request.url.path,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {400: "invalid-input", 404: "not-found", 405: "method-not-allowed"}.get(
        exc.status_code, "http-error"
    )
    title = {400: "Invalid input", 404: "Not found", 405: "Method not allowed"}.get(
        exc.status_code, "HTTP error"
    )
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(
        exc.status_code,
        slug,
        title,
        detail,
        instance=request.url.path,
        headers=dict(exc.headers or {}),
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "internal-error",
        "Internal error",
        "the server failed; nothing was changed and the error is logged",
        instance=request.url.path,
    )


def add_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RallypointError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
