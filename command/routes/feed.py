"""The device feed: sensor gateways and positioning systems push readings and positions over one
websocket instead of a request each (see docs/protocol.md, "Device feed").

``/ws/sites/{site_id}/feed``, signed in like ``/ws`` (the bearer header) with a device token of
that site, or a commander's of that site; revoking the token closes the feed with 4401. Each
message is a batch, taken exactly as the REST endpoints take it, and answered in order:

- ``{"type": "readings", "id": "r-1", "readings": [...]}`` or
  ``{"type": "positions", "id": "p-1", "positions": [...]}`` →
  ``{"type": "ack", "id": "r-1", "accepted": 3, "events": [41, 42]}`` (the sequence numbers of
  the events the batch caused);
- a batch that cannot be taken → ``{"type": "error", "id": "r-1", "problem": {...}}``, the same
  problem+json body the REST endpoint would answer, and nothing of the batch is taken. The
  connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from command.auth import Principal, Role
from command.deps import still_signed_in, websocket_principal
from command.post import CommandPost
from command.problems import problem_body
from command.routes.live import own_site, parse_positions
from command.sensors import parse_readings
from command.sessions import close_when_ended
from gis.errors import (
    FieldError,
    InvalidInput,
    NotPermitted,
    PayloadTooLarge,
    RallypointError,
    Unauthorized,
)
from gis.nesting import check_json_depth

log = logging.getLogger(__name__)
router = APIRouter()

#: Who may feed a site: its devices, or a commander there.
FEEDERS = (Role.DEVICE, Role.COMMANDER)
#: The largest message a device may send (characters of JSON): 20,000 positions fit.
MAX_MESSAGE = 4 * 1024 * 1024


def refusal(exc: RallypointError, ident: str | int | None = None) -> dict[str, Any]:
    return {"type": "error", "id": ident, "problem": problem_body(exc)}


def take(post: CommandPost, principal: Principal, site_id: str, message: Any) -> dict[str, Any]:
    """One batch from a device: the answer to send back (never raises a domain error)."""
    ident = message.get("id") if isinstance(message, dict) else None
    if not isinstance(ident, str | int) or isinstance(ident, bool):
        ident = None
    try:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "readings":
            readings = parse_readings(message)
            logged = post.readings(site_id, readings, actor=principal.username)
            return {
                "type": "ack",
                "id": ident,
                "accepted": len(readings),
                "events": [e.seq for e in logged],
            }
        if kind == "positions":
            answer = post.positions(site_id, parse_positions(message))
            return {
                "type": "ack",
                "id": ident,
                "accepted": answer["accepted"],
                "unknown": answer["unknown"],
                "events": [e["seq"] for e in answer["events"]],
            }
        raise InvalidInput(
            "a device sends readings or positions",
            errors=[FieldError("type", "'readings' or 'positions'")],
        )
    except RallypointError as exc:
        return refusal(exc, ident)


@router.websocket("/ws/sites/{site_id}/feed")
async def device_feed(websocket: WebSocket, site_id: str) -> None:
    app = websocket.app
    post: CommandPost = app.state.post
    try:
        principal = await run_in_threadpool(
            websocket_principal, websocket, app.state.db, *FEEDERS, site_id=site_id
        )
        own_site(principal, site_id)
        await run_in_threadpool(post.models.get, site_id)  # NotFound for an unknown site
    except RallypointError as exc:
        # Accepted first, so that the client sees the close code (not a bare HTTP 403).
        await websocket.accept()
        code = {Unauthorized: 4401, NotPermitted: 4403}.get(type(exc), 4404)
        await websocket.close(code=code, reason=exc.detail[:120])
        return
    await websocket.accept()
    log.info("%s feeds %s", principal.username, site_id)
    # Revoking the token (or disabling its user) closes the feed at once, idle or not; a
    # commander who loses the role here is closed by the sweep (4403).
    closer = asyncio.create_task(
        close_when_ended(
            websocket, app.state.sockets, principal, site_id=site_id, needs=frozenset(FEEDERS)
        )
    )
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            # A binary frame is taken as UTF-8 JSON too: some gateways send nothing else.
            data = frame.get("bytes")
            text = frame.get("text") or (data.decode("utf-8", "replace") if data else "")
            if len(text) > MAX_MESSAGE:
                too_big = PayloadTooLarge(
                    f"a message may hold at most {MAX_MESSAGE} characters: split the batch",
                    errors=[FieldError("message", f"larger than {MAX_MESSAGE} characters")],
                )
                await websocket.send_json(refusal(too_big))
                continue
            try:
                check_json_depth(text, field="message")
                message = json.loads(text)
            except InvalidInput as exc:  # nested too deep: json would raise RecursionError
                await websocket.send_json(refusal(exc))
                continue
            except ValueError:
                not_json = InvalidInput(
                    "a message is one JSON object", errors=[FieldError("message", "not JSON")]
                )
                await websocket.send_json(refusal(not_json))
                continue
            try:
                # Each batch is signed in again: a revoked or expired token, or a disabled
                # user, feeds nothing more (one token lookup per batch).
                await run_in_threadpool(
                    still_signed_in, app.state.db, principal, *FEEDERS, site_id=site_id
                )
            except (Unauthorized, NotPermitted) as exc:
                code = 4401 if isinstance(exc, Unauthorized) else 4403
                await websocket.close(code=code, reason=exc.detail[:120])
                return
            answer = await run_in_threadpool(take, post, principal, site_id, message)
            await websocket.send_json(answer)
    except (WebSocketDisconnect, RuntimeError):  # RuntimeError: closed while answering
        pass
    finally:
        closer.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()
