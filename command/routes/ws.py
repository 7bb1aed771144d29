"""The websocket: a snapshot, then every event in sequence; catch-up after a reconnect.

See docs/protocol.md. In short:
1. **Sign in.** The client signs in with a bearer token, in the ``Authorization`` header or as
   ``?access_token=``. A missing or bad token closes the socket with 4401, a role that may not
   watch with 4403.
2. **Subscribe.** The client sends ``{"type": "subscribe", "site": ..., "incident": null,
   "last_seq": null}``.
3. **First answer.** Without ``last_seq`` the server sends a ``snapshot``. With it, the server
   sends exactly the events after it, or a snapshot when more than a batch is missing.
4. **Live.** Then every event, in sequence, each once. A client too slow to keep up gets
   ``{"type": "resync"}`` and is closed (4008): it reconnects with its last sequence number.
5. **Heartbeats.** The server sends ``ping``. A client that stops answering ``pong`` for two
   intervals is closed (4408).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from command import events as event_log
from command.auth import HUMAN_ROLES
from command.deps import websocket_principal
from command.hub import ENCODED, encode
from command.post import CommandPost, event_message
from gis.errors import NotFound, NotPermitted, RallypointError, Unauthorized

log = logging.getLogger(__name__)
router = APIRouter()

SUBSCRIBE_TIMEOUT_S = 10.0
#: A send that takes longer than this (or four heartbeats) means the client has stopped reading.
SEND_TIMEOUT_S = 10.0
#: Position updates go to a client at most this often (seconds); in between they coalesce.
POSITIONS_EVERY_S = 0.25


def _catch_up(
    post: CommandPost, site_id: str, incident: str | None, last_seq: int | None
) -> list[dict[str, Any]]:
    """What a subscriber needs before live events: a snapshot, or the events it missed."""
    if last_seq is not None:
        with post.db.read() as session:
            # The log's end first: anything committed after it is in what follows, or live.
            current = event_log.last_seq(session, site_id)
            missed = event_log.since(
                session, site_id, last_seq, incident_id=incident, limit=event_log.MAX_BATCH + 1
            )
        if len(missed) <= event_log.MAX_BATCH and last_seq <= current:
            # Caught up to what was read, not to a later count: an event committed in between
            # is then still sent live instead of being taken as already sent.
            upto = max([last_seq, *(e.seq for e in missed)])
            return [*map(event_message, missed), {"type": "caught_up", "seq": upto}]
    return [post.site_snapshot(site_id, incident)]


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    app = websocket.app
    post: CommandPost = app.state.post
    heartbeat_s: float = app.state.settings.ws_heartbeat_s
    try:
        principal = await run_in_threadpool(
            websocket_principal, websocket, app.state.db, *HUMAN_ROLES
        )
    except (Unauthorized, NotPermitted) as exc:
        # Accepted first: a close before the handshake reaches the client as a bare HTTP 403,
        # and it would never see 4401 or 4403.
        await websocket.accept()
        code = 4401 if isinstance(exc, Unauthorized) else 4403
        await websocket.close(code=code, reason=exc.detail[:120])
        return
    await websocket.accept()
    try:
        request = await asyncio.wait_for(websocket.receive_json(), SUBSCRIBE_TIMEOUT_S)
        site_id, incident, last_seq = _subscription(request)
        await run_in_threadpool(post.models.get, site_id)  # NotFound for an unknown site
    except (TimeoutError, ValueError, RallypointError, WebSocketDisconnect) as exc:
        reason = exc.detail if isinstance(exc, RallypointError) else "send a subscribe message"
        with contextlib.suppress(Exception):
            await websocket.send_json({"type": "error", "detail": reason})
            await websocket.close(code=4404 if isinstance(exc, NotFound) else 4400)
        return
    log.info(
        "%s subscribed to %s (incident %s, last_seq %s)",
        principal.username,
        site_id,
        incident,
        last_seq,
    )
    send_timeout = max(SEND_TIMEOUT_S, 4 * heartbeat_s)

    async def send(message: dict[str, Any]) -> None:
        # A client that takes no data at all would block a send for ever: it is let go.
        text = message.get(ENCODED) or encode(message)
        await asyncio.wait_for(websocket.send_text(text), send_timeout)

    with post.hub.subscribe(site_id, incident) as subscriber:
        first = await run_in_threadpool(_catch_up, post, site_id, incident, last_seq)
        sent = 0
        for message in first:
            await send(message)
            sent = max(sent, int(message.get("seq", 0)))
        pinged: float | None = None  # when the oldest ping not yet answered went out
        positions_sent = 0.0

        async def receive() -> None:
            nonlocal pinged
            while True:
                message = await websocket.receive_json()
                if isinstance(message, dict) and message.get("type") == "pong":
                    pinged = None

        receiver = asyncio.create_task(receive())
        overflow = asyncio.create_task(subscriber.overflowed.wait())
        getter: asyncio.Task[dict[str, Any]] | None = None
        try:
            while True:
                getter = getter or asyncio.create_task(subscriber.queue.get())
                done, _ = await asyncio.wait(
                    {getter, receiver, overflow},
                    timeout=heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if receiver in done:
                    return  # the client went away (or broke the protocol)
                if overflow in done:
                    await send({"type": "resync", "seq": sent})
                    await websocket.close(code=4008, reason="too slow: resync")
                    return
                if getter not in done:
                    # Counted from an unanswered ping, not from the last pong: a client that was
                    # busy receiving events was never asked, and must not be closed for it.
                    now = time.monotonic()
                    if pinged is not None and now - pinged > 1.5 * heartbeat_s:
                        await websocket.close(code=4408, reason="no pong")
                        return
                    pinged = pinged or now
                    await send({"type": "ping", "seq": sent})
                    continue
                message = getter.result()
                getter = None
                if message["type"] == "positions":
                    # At most a few position messages a second; later ones merge meanwhile.
                    wait = POSITIONS_EVERY_S - (time.monotonic() - positions_sent)
                    if wait > 0:
                        await asyncio.sleep(wait)
                    message["taken"] = True
                    message = {k: v for k, v in message.items() if k != "taken"}
                    positions_sent = time.monotonic()
                seq = int(message.get("seq", 0))
                if message["type"] == "event" and seq <= sent:
                    continue  # already sent from the log
                await send(message)
                sent = max(sent, seq)
        except (WebSocketDisconnect, RuntimeError, TimeoutError):
            pass
        finally:
            for task in (receiver, overflow, getter):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task


def _subscription(message: Any) -> tuple[str, str | None, int | None]:
    if not isinstance(message, dict) or message.get("type") != "subscribe":
        raise ValueError("the first message subscribes")
    site = message.get("site")
    incident = message.get("incident")
    last_seq = message.get("last_seq")
    if not isinstance(site, str) or not site:
        raise ValueError("site is required")
    if incident is not None and not isinstance(incident, str):
        raise ValueError("incident must be an id or null")
    if last_seq is not None and (
        isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0
    ):
        raise ValueError("last_seq must be a sequence number or null")
    return site, incident, last_seq
