"""JSON bodies as RFC 8259 defines them: ``NaN``, ``Infinity`` and ``-Infinity`` are refused.

Python's ``json`` (and so FastAPI and Starlette) reads those words as floats. Most input is
checked field by field (pydantic with ``allow_inf_nan=False``, the geometry door, readings and
positions), but a value kept as it came (a site's ``note`` in the change log, an event's data)
would fail later: PostgreSQL's ``jsonb`` refuses NaN, and the event log's hashing does too,
each a 500. Refusing them at the door makes every route the same: 422, naming the field.

The check costs one regular-expression scan per JSON body; only a body that holds one of the
words (in a string, say) or a three-digit exponent is parsed here, to find where.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from command.problems import PROBLEM_JSON, problem_body
from gis.errors import FieldError, InvalidInput

#: What may spell a number that is not finite: the words, or an exponent of three digits or
#: more (``1e999`` reads as infinity). A body without any is passed on unparsed.
_SUSPECT = re.compile(rb"NaN|Infinity|[0-9][eE][+]?0*[1-9][0-9]{2,}")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _first_non_finite(value: Any, path: str) -> str | None:
    """The path (``readings[0].value``) of the first number in ``value`` that is not finite."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path or 'body'}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _first_non_finite(item, where)
        if found is not None:
            return found
    return None


def non_finite_field(body: bytes) -> str | None:
    """Where ``body`` (JSON text) holds NaN or an infinity (``body`` for the whole), or None;
    None too for text that is not JSON at all (the route says so)."""
    if _SUSPECT.search(body) is None:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    found = _first_non_finite(value, "")
    return None if found is None else found or "body"


def _is_json(scope: Scope) -> bool:
    headers = dict(scope.get("headers", []))
    kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    # FastAPI reads a body without a content type as JSON too.
    return not kind or kind == b"application/json" or kind.endswith(b"+json")


class FiniteJson:
    """Refuse a JSON body holding ``NaN`` or ``Infinity`` with a 422 problem naming the field;
    any other body is handed on as it came."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or not _is_json(scope):
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
        field = non_finite_field(body)
        if field is not None:
            await _refuse(scope, send, field)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, send: Send, field: str) -> None:
    refusal = InvalidInput(
        f"{field}: NaN and Infinity are not JSON numbers (RFC 8259); nothing was taken",
        errors=[FieldError(field, "a finite number (NaN and Infinity are not JSON)")],
    )
    body = json.dumps(problem_body(refusal, instance=scope.get("path", ""))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
