"""ASGI middleware: what a request body must pass before the app reads it, security headers,
and one log line per request.

Bodies go through, outermost first: :class:`BodyTimeout` (each piece must come in time),
:class:`BodyLimit` (a valid token before a byte is read, and a size cap) and
:class:`JsonNesting` (JSON no deeper than ``gis.nesting.MAX_DEPTH``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from command.auth import resolve_token
from command.problems import PROBLEM_JSON, problem_body
from gis.errors import (
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    RallypointError,
    Unauthorized,
)
from gis.nesting import MAX_DEPTH, check_json_depth
from gis.storage.db import Database

log = logging.getLogger("rallypoint.requests")

#: Paths that take a body from anyone, each with its own small limit: the login, and the
#: answer of a person called through their call-out's link (the token is in the body).
OPEN_BODIES: Mapping[str, int] = {"/api/auth/login": 8 * 1024, "/api/notices/answer": 1024}


class RequestTimeout(RallypointError):
    status_code = 408
    slug = "request-timeout"
    title = "Request timeout"


async def send_problem(
    scope: Scope, send: Send, exc: RallypointError, *, close: bool = True
) -> None:
    """Answer with ``exc`` as problem+json, from middleware (the app's handlers are inside).
    ``close``: the connection closes after it, as the rest of the body will not be read."""
    body = json.dumps(
        problem_body(exc, instance=scope.get("path", "")), separators=(",", ":")
    ).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b"Bearer"))  # RFC 9110 section 15.5.2
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _has_body(headers: Mapping[bytes, bytes]) -> bool:
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"


def _bearer(headers: Mapping[bytes, bytes]) -> str:
    scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _check_token(db: Database, token: str) -> None:
    with db.read() as session:
        resolve_token(session, token)


def _replay(chunks: list[bytes], receive: Receive) -> Receive:
    """A ``receive`` that gives the app a body already read, then passes through."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    return replay


class BodyLimit:
    """Refuse a body before reading it: 401 without a valid token, 413 over ``max_bytes``.

    Anyone can open a connection and announce 50 MB, so no byte of a body is read before its
    bearer token is looked up (as the route will look it up again: one indexed read), except on
    the paths of :data:`OPEN_BODIES`, which have their own small limit. A declared
    Content-Length is checked up front; a body without one (chunked) is read here, up to the
    limit, before the app sees it, so the answer is a clean 413, not a parse error.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, open_bodies: Mapping[str, int] = OPEN_BODIES
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.open_bodies = open_bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if scope["type"] != "http" or not _has_body(headers):
            await self.app(scope, receive, send)
            return
        limit = self.open_bodies.get(scope["path"])
        if limit is None:
            refusal = await self._unsigned(scope, headers)
            if refusal is not None:
                await send_problem(scope, send, refusal)
                return
            limit = self.max_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await send_problem(scope, send, _too_large(limit))
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await send_problem(scope, send, _too_large(limit))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, receive), send)

    async def _unsigned(self, scope: Scope, headers: Mapping[bytes, bytes]) -> Unauthorized | None:
        """Why the request's token does not sign anyone in, or None when it does."""
        token = _bearer(headers)
        if not token:
            return Unauthorized(
                "sign in first: a request with a body needs 'Authorization: Bearer <token>'",
                errors=[FieldError("Authorization", "a bearer token")],
            )
        try:
            await run_in_threadpool(_check_token, scope["app"].state.db, token)
        except Unauthorized as exc:
            return exc
        return None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request bodies are limited to {limit} bytes",
        errors=[FieldError("body", f"larger than {limit} bytes")],
    )


class BodyStalled(Exception):
    """Raised into the app by :class:`BodyTimeout` when a piece of the body does not come."""


class BodyTimeout:
    """Answer 408 when a request body stalls: each piece must come within ``timeout_s``.

    A client that announces a body and then sends it a byte a minute would hold a connection
    and a worker for ever (uvicorn waits as long as it takes). The app sees
    :class:`BodyStalled` from ``receive()``; whatever it answers to that is dropped, and the
    client gets 408 and a closed connection. Only waits for the body are timed: once it has all
    come, ``receive()`` may wait for a disconnect as long as the app likes.
    """

    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stalled = started = complete = False

        async def timed_receive() -> Message:
            nonlocal stalled, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                stalled = True
                raise BodyStalled(f"no part of the body came for {self.timeout_s} s") from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if stalled:
                return  # the app's answer to a body it never got; ours is 408
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not stalled:
                raise
        if stalled and not started:
            log.info("request body stalled on %s %s: 408", scope["method"], scope["path"])
            await send_problem(
                scope,
                send,
                RequestTimeout(
                    f"the request body stopped coming: each part must arrive within "
                    f"{self.timeout_s:g} s",
                    errors=[FieldError("body", f"a pause over {self.timeout_s:g} s")],
                ),
            )


def _json_body(headers: Mapping[bytes, bytes]) -> bool:
    """A body parsed as JSON: FastAPI reads one without a content type as JSON too."""
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind in (b"", b"application/json") or kind.endswith(b"+json")


#: Above this a body is scanned in a worker thread, not on the event loop (a few ms a MB).
_SCAN_INLINE = 256 * 1024


class JsonNesting:
    """Refuse JSON bodies nested deeper than ``max_depth`` with 422, before anything parses them.

    Python's ``json`` recurses per level: a body of 100,000 ``[`` is a ``RecursionError`` (a
    500 and a huge traceback) in whichever route parses it. The check is linear
    (``gis.nesting.json_depth``); the body is then handed on as it came.
    """

    def __init__(self, app: ASGIApp, *, max_depth: int = MAX_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if scope["type"] != "http" or not _has_body(headers) or not _json_body(headers):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before the end of its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            if len(body) > _SCAN_INLINE:
                await run_in_threadpool(check_json_depth, body, max_depth=self.max_depth)
            else:
                check_json_depth(body, max_depth=self.max_depth)
        except InvalidInput as exc:
            await send_problem(scope, send, exc, close=False)
            return
        await self.app(scope, _replay([body], receive), send)


class RequestLog:
    """One structured log line per HTTP request: method, path, status, duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            log.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status["code"],
                (time.perf_counter() - start) * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status["code"],
                },
            )


#: What a page of this server may load and run: only its own files, no inline script, no
#: framing. Style attributes set by Leaflet's script (CSSOM) are not inline styles to CSP.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: Pages that need more, and only that. ReDoc's bundled styled-components writes its CSS into
#: <style> elements as it renders, which only 'unsafe-inline' allows for styles (its CSP nonce
#: is internal to the bundle). Scripts stay 'self' only; Swagger UI (/docs) needs nothing more.
PAGE_POLICIES = {
    "/redoc": CONTENT_SECURITY_POLICY.replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    ),
    # ECharts' tooltips are HTML with style attributes (the analysis page's charts).
    "/static/analysis.html": CONTENT_SECURITY_POLICY.replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    ),
}


class SecurityHeaders:
    """Headers every answer carries: a strict Content-Security-Policy, no MIME sniffing, no
    referrer, no framing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = PAGE_POLICIES.get(str(scope.get("path", "")), CONTENT_SECURITY_POLICY)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                headers.append((b"content-security-policy", policy.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class RedactQueries(logging.Filter):
    """Log lines keep a URL's path, never its query string: a token given as
    ``?access_token=`` (the websocket's sign-in) must not reach the server log. uvicorn's own
    lines (``"WebSocket /ws?..." [accepted]``, the access log) pass through here too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg and not record.args:
            record.msg = _redacted(record.msg)
        return True


def _redacted(value: object) -> object:
    if not isinstance(value, str) or "?" not in value:
        return value
    words = value.split(" ")
    return " ".join(w.split("?", 1)[0] + "?[redacted]" if "?" in w else w for w in words)


#: The loggers that may print a request's URL.
URL_LOGGERS = ("uvicorn.error", "uvicorn.access", "rallypoint.requests")


def redact_queries() -> None:
    """Put :class:`RedactQueries` on every logger that may print a URL (once)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueries) for f in logger.filters):
            logger.addFilter(RedactQueries())
    # httpx logs each request's whole URL at INFO: the webhook gateway's URL may carry its key
    # (in the query or as user-info). The delivery's outcome is logged by the call tree itself.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
