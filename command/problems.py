"""One mapping from errors to ``application/problem+json`` (RFC 9457).

Domain errors carry their status and a user-safe message; FastAPI's validation errors, unknown
routes and anything unexpected get the same shape, so a client handles one format everywhere.
No answer carries what only the server should know: an unexpected error is logged with an error
id and answered with that id alone (never an exception's text, a SQL statement or a traceback),
and server paths are cut from every detail and reason. The OpenAPI document describes these
answers on every operation (:func:`describe_problems`).
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gis.errors import RallypointError, Unauthorized

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "/problems/"


def _server_roots() -> list[str]:
    """Folders whose paths say how this server is laid out: the code, the working directory,
    the temporary folder, Python's installation, the home folder."""
    roots = {
        str(Path(__file__).resolve().parents[1]),
        str(Path.cwd()),
        tempfile.gettempdir(),
        sys.prefix,
        sys.base_prefix,
        str(Path.home()),
    }
    return sorted((r.rstrip("/") for r in roots if len(r.rstrip("/")) > 1), key=len, reverse=True)


_SERVER_PATH = re.compile(
    "(?:"
    + "|".join(re.escape(r) for r in _server_roots())
    + r")(?![\w.-])[^\s'\"]*"
    + r"|[^\s'\"]*\.py\b"
)


def scrub(text: str) -> str:
    """``text`` without server paths: a library's message (GDAL naming the temporary file of an
    import, say) may carry one."""
    return _SERVER_PATH.sub("<server path>", text)


def problem_body(exc: RallypointError, *, instance: str | None = None) -> dict[str, Any]:
    """The problem+json body of a domain error (HTTP answers and the device feed's errors)."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + exc.slug,
        "title": exc.title,
        "status": exc.status_code,
        "detail": scrub(exc.detail),
    }
    if instance:
        body["instance"] = instance
    if exc.errors:
        body["errors"] = [{**e.as_dict(), "reason": scrub(e.reason)} for e in exc.errors]
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
    retry = getattr(exc, "retry_after_s", None)
    if retry is not None:  # RFC 9110 section 10.2.3, with a 503 or a 429
        headers = {**(headers or {}), "Retry-After": str(retry)}
    body = problem_body(exc, instance=request.url.path)
    return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only pydantic's message, never its "input" (the value sent, which may be anything).
    errors = [{"field": _location(e["loc"]), "reason": scrub(e["msg"])} for e in exc.errors()]
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
    detail = scrub(exc.detail) if isinstance(exc.detail, str) else title
    return problem(
        exc.status_code,
        slug,
        title,
        detail,
        instance=request.url.path,
        headers=dict(exc.headers or {}),
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A fault of the server: the exception (its text may hold SQL, a path, the input) goes to
    the log under a fresh error id; the answer names only that id."""
    error_id = uuid.uuid4().hex[:16]
    log.exception(
        "unhandled error %s on %s %s",
        error_id,
        request.method,
        request.url.path,
        extra={"error_id": error_id},
    )
    body = {
        "type": PROBLEM_BASE + "internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": f"the server failed and logged the error as {error_id}; nothing was changed",
        "instance": request.url.path,
        "error_id": error_id,
    }
    return JSONResponse(body, status_code=500, media_type=PROBLEM_JSON)


#: How soon a client may ask again when the database is away (seconds).
DATABASE_RETRY_S = 2


def _unreachable(exc: Exception) -> bool:
    """Whether a database error says the database cannot be reached now (a connection refused,
    dropped or ended by the server, SQLite's file locked), not that the server did something
    wrong (a missing table, bad SQL: those stay 500)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if type(orig).__module__.startswith("sqlite3"):
        return "database is locked" in str(orig)
    state = getattr(orig, "sqlstate", None)
    # psycopg: no SQLSTATE when no connection was made; class 08 (connection exception), 57P
    # (the server shutting down, or not accepting connections yet), 53300 (too many clients).
    return state is None or state.startswith(("08", "57P", "53300"))


async def _database_away(request: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached (it restarts, a replica is being promoted, the network
    to it dropped): 503 with Retry-After, not a fault of the server's. Nothing was changed: a
    transaction that never reached the database, or failed there, is rolled back. Any other
    database error is the server's fault: 500 with an error id."""
    if not _unreachable(exc):
        return await _unexpected_error(request, exc)
    error_id = uuid.uuid4().hex[:16]
    log.warning(
        "database unavailable (%s) on %s %s: %s",
        error_id,
        request.method,
        request.url.path,
        type(getattr(exc, "orig", exc)).__name__,
        extra={"error_id": error_id},
    )
    return problem(
        503,
        "database-unavailable",
        "Database unavailable",
        f"the database cannot be reached just now; nothing was changed: ask again in "
        f"{DATABASE_RETRY_S} s (logged as {error_id})",
        instance=request.url.path,
        headers={"Retry-After": str(DATABASE_RETRY_S)},
    )


def add_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RallypointError, _domain_error)
    # Connection refused, dropped or timed out (and SQLite's "database is locked").
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _database_away)
    app.add_exception_handler(sqlalchemy.exc.InterfaceError, _database_away)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    describe_problems(app)


#: What each error status means on an operation, for the OpenAPI document.
ERROR_STATUSES = {
    400: "Bad request: the body cannot be read (not UTF-8, not parseable)",
    401: "Not signed in: no bearer token, or an unknown, expired or revoked one",
    403: "Not permitted: the caller's role may not do this (the detail names who may)",
    404: "Not found: an unknown site, layer, feature, plan, incident or step",
    409: "Conflict: a stale version, an id taken, or the incident's state stands in the way",
    412: "Precondition failed: If-Match names a version that is no longer current",
    413: "Payload too large: the body exceeds the server's limit",
    415: "Unsupported format",
    422: "Invalid input: the errors list names each field and why",
    428: "Version required: send If-Match with the version being changed",
    429: "Too many requests: wait as Retry-After says",
    500: "Internal error: logged on the server under the error_id given",
    503: "Not ready: the server is still rebuilding the incident; ask again after Retry-After",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error answer, RFC 9457 (application/problem+json); docs/problems.md "
    "lists the types. Problem types may add members of their own.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "The problem type, e.g. /problems/not-found"},
        "title": {"type": "string"},
        "status": {"type": "integer", "description": "The HTTP status"},
        "detail": {"type": "string", "description": "What went wrong, for a person"},
        "instance": {"type": "string", "description": "The request path"},
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/ProblemError"},
            "description": "Each input at fault",
        },
        "error_id": {"type": "string", "description": "500 only: the id in the server's log"},
    },
    "additionalProperties": True,
}
PROBLEM_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ProblemError",
    "type": "object",
    "required": ["field", "reason"],
    "properties": {
        "field": {"type": "string", "description": "The field at fault, e.g. body.level"},
        "reason": {"type": "string"},
        "row": {"type": "integer", "description": "File imports: the 1-based row"},
    },
}
_WRITES = {"post", "put", "patch", "delete"}
_METHODS = _WRITES | {"get", "head", "options"}


def error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer, read from the operation itself: who may call
    it, what it takes, whether it writes."""
    params = operation.get("parameters", [])
    where = {p.get("in") for p in params}
    headers = {str(p.get("name", "")).lower() for p in params if p.get("in") == "header"}
    body = "requestBody" in operation
    signed_in = bool(operation.get("security"))
    statuses = {500}
    if signed_in:
        statuses |= {401, 403}
    if "path" in where:
        statuses.add(404)
    if params or body:
        statuses.add(422)
    if body or method in _WRITES:
        statuses |= {400, 413}
    if signed_in and method in _WRITES:
        statuses.add(409)
    if "if-match" in headers:
        statuses |= {412, 428}
    if any(p.get("name") == "format" for p in params) or ("/plans" in path and body):
        statuses.add(415)
    if not signed_in and method == "post":  # the sign-in: failed attempts are limited
        statuses.add(429)
    if "/incidents" in path:
        statuses.add(503)
    return statuses


def describe_problems(app: FastAPI) -> None:
    """Make the app's OpenAPI document describe its error answers: every operation lists the
    error statuses it can answer, each as ``application/problem+json`` with the ``Problem``
    schema (FastAPI's own 422 schema, which is not what this server sends, is replaced).
    Central, so that a new route is described without a line of its own."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            add_problem_responses(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def add_problem_responses(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ProblemError"] = PROBLEM_ERROR_SCHEMA
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            declared = {int(s) for s in responses if s.isdigit() and int(s) >= 400}
            for status in sorted(error_statuses(path, method, operation) | declared):
                answer = responses.setdefault(str(status), {})
                answer["description"] = answer.get("description") or ERROR_STATUSES.get(
                    status, "Error"
                )
                if status == 422 and "Validation Error" in answer["description"]:
                    answer["description"] = ERROR_STATUSES[422]
                answer["content"] = content
            operation["responses"] = dict(sorted(responses.items()))
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and f"#/components/schemas/{unused}" not in str(document["paths"]):
            del schemas[unused]
