"""The websocket: a snapshot, then every event in sequence; catch-up after a reconnect.

See docs/protocol.md. In short:
1. **Sign in.** The client signs in with a bearer token in the ``Authorization`` header, or (a
   browser) with ``?ticket=`` from ``POST /api/auth/ws-ticket``, single use. A missing or bad
   token or ticket closes the socket with 4401, a role that may not watch with 4403. Signing
   out, or the token's revocation, closes it later with 4401 (``command.sessions``).
2. **Subscribe.** The client sends ``{"type": "subscribe", "site": ..., "incident": null,
   "last_seq": null}``.
3. **First answer.** Without ``last_seq`` the server sends a ``snapshot``. With it, the server
   sends exactly the events after it, or a snapshot when more than a page (1,000) is missing
   or the user's read budget is spent (``command.event_reads``).
4. **Live.** Then every event, in sequence, each once. A client too slow to keep up gets
   ``{"type": "resync"}`` and is closed (4008): it reconnects with its last sequence number.
5. **Heartbeats.** The server sends ``ping``. A client that stops answering ``pong`` for two
   intervals is closed (4408).
6. **Abnormal input** closes with 1003 (a binary frame; after subscribing, text that is not
   JSON), 1009 (over 16 KiB) or 1008 (after subscribing, any message but ``pong``); a bad
   first message is 4400 as before (``command.ws_frames``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from command import events as event_log
from command.auth import HUMAN_ROLES, Principal
from command.deps import check_roles, websocket_principal
from command.event_reads import PAGE as EVENTS_PAGE
from command.event_reads import EventReadBudget
from command.hub import ENCODED, encode
from command.post import CommandPost, event_message
from command.sessions import LiveSockets
from command.ws_frames import POLICY_VIOLATION, NotJson, Unsupported, client_message
from gis.errors import CorruptEvent, NotFound, NotPermitted, RallypointError, Unauthorized

log = logging.getLogger(__name__)
router = APIRouter()

SUBSCRIBE_TIMEOUT_S = 10.0
#: A send that takes longer than this (or four heartbeats) means the client has stopped reading.
SEND_TIMEOUT_S = 10.0
#: Position updates go to a client at most this often (seconds); in between they coalesce.
POSITIONS_EVERY_S = 0.25
#: Worker threads a subscription's database steps (sign-in, first answer) may use at once, per
#: event loop. A reconnect storm otherwise fills all of anyio's 40 with sign-ins that wait for
#: one another's GIL and database connections (the pool keeps 5: the rest were opened, with
#: their setup, and closed again for each subscription). Fewer at once served a storm of 1,000
#: with less server CPU (docs/benchmarks.md, "Per-subscription cost").
SUBSCRIBE_THREADS = 4

_T = TypeVar("_T")
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


async def _in_thread(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn`` in a worker thread, at most :data:`SUBSCRIBE_THREADS` at once on this loop."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = CapacityLimiter(SUBSCRIBE_THREADS)
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)


def _catch_up(
    post: CommandPost,
    site_id: str,
    incident: str | None,
    last_seq: int | None,
    *,
    reads: EventReadBudget,
    who: str,
) -> list[dict[str, Any]]:
    """What a subscriber needs before live events: a snapshot, or the events it missed.

    Sequence numbers have no gaps, so the log's end tells how many were missed without reading
    them. More than a page (``command.event_reads.PAGE``), or a resume beyond the caller's read
    budget, gets a snapshot: a few milliseconds, where reading 10,000 events from far back
    took 0.6 s on SQLite and 0.8 s on PostGIS (up to 1.8 s and 2.7 s on a busy machine).
    """
    if last_seq is not None and reads.wait_s(who) == 0:
        with post.db.read() as session:
            # The log's end first: anything committed after it is in what follows, or live.
            current = event_log.last_seq(session, site_id)
            if last_seq <= current and current - last_seq <= EVENTS_PAGE:
                try:
                    missed = event_log.since(
                        session, site_id, last_seq, incident_id=incident, limit=EVENTS_PAGE
                    )
                except CorruptEvent:  # a damaged row: the picture instead (it names it)
                    return [post.site_snapshot(site_id, incident)]
                reads.charge(who, len(missed))
                # Caught up to what was read, not to a later count: an event committed in
                # between is then still sent live instead of being taken as already sent.
                upto = max([last_seq, *(e.seq for e in missed)])
                return [
                    *map(event_message, missed),
                    {"type": "caught_up", "seq": upto},
                    # Positions are not logged: where everyone is now, and who has arrived.
                    post.positions_now(site_id),
                ]
    return [post.site_snapshot(site_id, incident)]


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    app = websocket.app
    post: CommandPost = app.state.post
    heartbeat_s: float = app.state.settings.ws_heartbeat_s
    try:
        principal = await _in_thread(websocket_principal, websocket, app.state.db, *HUMAN_ROLES)
    except (Unauthorized, NotPermitted) as exc:
        # Accepted first: a close before the handshake reaches the client as a bare HTTP 403,
        # and it would never see 4401 or 4403.
        await websocket.accept()
        code = 4401 if isinstance(exc, Unauthorized) else 4403
        await websocket.close(code=code, reason=exc.detail[:120])
        return
    await websocket.accept()
    try:
        request = await asyncio.wait_for(client_message(websocket), SUBSCRIBE_TIMEOUT_S)
        site_id, incident, last_seq = _subscription(request, principal)
        compact = _positions_form(request) == "compact"
        if not post.models.current(site_id):  # kept: no query, no worker thread
            await run_in_threadpool(post.models.get, site_id)  # NotFound for an unknown site
    except Unsupported as exc:  # binary, or too big: not a message at all
        with contextlib.suppress(Exception):
            await websocket.close(code=exc.code, reason=exc.reason)
        return
    except (TimeoutError, ValueError, RallypointError, WebSocketDisconnect) as exc:
        reason = exc.detail if isinstance(exc, RallypointError) else "send a subscribe message"
        with contextlib.suppress(Exception):
            await websocket.send_json({"type": "error", "detail": reason})
            code = 4404 if isinstance(exc, NotFound) else 4400
            await websocket.close(code=4403 if isinstance(exc, NotPermitted) else code)
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

    sockets: LiveSockets = app.state.sockets
    with post.hub.subscribe(site_id, incident) as subscriber, sockets.watch(principal) as watch:
        watch.site_id = site_id
        first = await _in_thread(
            _catch_up,
            post,
            site_id,
            incident,
            last_seq,
            reads=app.state.event_reads,
            who=principal.id,
        )
        sent = 0
        for message in first:
            if compact and message["type"] == "positions":
                message = compact_positions(message)
            await send(message)
            sent = max(sent, int(message.get("seq", 0)))
        pinged: float | None = None  # when the oldest ping not yet answered went out
        positions_sent = 0.0

        async def receive() -> None:
            nonlocal pinged
            while True:
                message = await client_message(websocket)
                if not isinstance(message, dict) or message.get("type") != "pong":
                    raise Unsupported(POLICY_VIOLATION, "after subscribing, a client sends pong")
                pinged = None

        # One wake-up for the whole connection, not a task and an asyncio.wait per message: in
        # a fan-out to thousands those were most of the loop's time per delivery (about 60 us).
        loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()
        wakeup: asyncio.Future[None] | None = None

        def wake(_: object = None) -> None:
            if threading.get_ident() != loop_thread:  # a hub without a loop delivers in place
                loop.call_soon_threadsafe(wake)
            elif wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

        receiver = asyncio.create_task(receive())
        overflow = asyncio.create_task(subscriber.overflowed.wait())
        ended = asyncio.create_task(watch.ended.wait())  # signed out, revoked, disabled
        for task in (receiver, overflow, ended):
            task.add_done_callback(wake)
        subscriber.wake = wake  # a message queued, or the queue overflowed
        try:
            while True:
                if receiver.done():  # the client went away, or broke the protocol
                    await _close_broken(websocket, receiver)
                    return
                if watch.ended.is_set():
                    await websocket.close(code=watch.code, reason=watch.reason[:120])
                    return
                if subscriber.overflowed.is_set():
                    await send({"type": "resync", "seq": sent})
                    await websocket.close(code=4008, reason="too slow: resync")
                    return
                if subscriber.queue.empty():
                    wakeup = loop.create_future()
                    timer = loop.call_later(heartbeat_s, wake)
                    try:
                        await wakeup
                    finally:
                        timer.cancel()
                        wakeup = None
                    if receiver.done() or watch.ended.is_set() or subscriber.overflowed.is_set():
                        continue
                if subscriber.queue.empty():
                    # Nothing to send for a heartbeat interval. Counted from an unanswered
                    # ping, not from the last pong: a client that was busy receiving events
                    # was never asked, and must not be closed for it.
                    now = time.monotonic()
                    if pinged is not None and now - pinged > 1.5 * heartbeat_s:
                        await websocket.close(code=4408, reason="no pong")
                        return
                    pinged = pinged or now
                    await send({"type": "ping", "seq": sent})
                    continue
                message = subscriber.queue.get_nowait()
                if message["type"] == "positions":
                    # At most a few position messages a second; later ones merge meanwhile.
                    wait = POSITIONS_EVERY_S - (time.monotonic() - positions_sent)
                    if wait > 0:
                        await asyncio.sleep(wait)
                    message["taken"] = True
                    message = {k: v for k, v in message.items() if k != "taken"}
                    if compact:
                        message = compact_positions(message)
                    positions_sent = time.monotonic()
                seq = int(message.get("seq", 0))
                if message["type"] == "event" and seq <= sent:
                    continue  # already sent from the log
                await send(message)
                sent = max(sent, seq)
        except (WebSocketDisconnect, RuntimeError, TimeoutError):
            pass
        finally:
            subscriber.wake = None
            for task in (receiver, overflow, ended):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


async def _close_broken(websocket: WebSocket, receiver: asyncio.Task[None]) -> None:
    """Close with the code of the client's fault (docs/protocol.md); one that left needs none."""
    fault = None if receiver.cancelled() else receiver.exception()
    if isinstance(fault, Unsupported | NotJson):
        await websocket.close(code=fault.code, reason=str(fault)[:120])


def _positions_form(message: dict[str, Any]) -> str:
    """How the subscriber takes positions: ``full`` (the default) or ``compact``."""
    form = message.get("positions", "full")
    if form not in ("full", "compact"):
        raise ValueError('positions must be "full" or "compact"')
    return str(form)


#: The compact positions' unit: 1e-7 degrees (about a centimetre), as the routes' compact form.
COMPACT_UNIT_DEG = 1e-7


def compact_positions(message: dict[str, Any]) -> dict[str, Any]:
    """A positions message in its compact form (docs/protocol.md), for a wall drawing thousands
    of people four times a second: the ids in one list; their coordinates as one flat list of
    integer steps of ``unit_deg`` from ``origin`` (x, y, x, y, ...); where they are, as an
    index into ``musters`` per id (-1: at none); no ``seen_at``. About a quarter of the full
    form's bytes, and flat number lists are what a browser parses fastest."""
    positions: dict[str, list[float]] = message.get("positions", {})
    ids = list(positions)
    out = {k: v for k, v in message.items() if k not in ("positions", "seen_at", "at_muster")}
    out["ids"] = ids
    if ids:
        first = positions[ids[0]]
        origin = [round(first[0], 2), round(first[1], 2)]
        unit = COMPACT_UNIT_DEG
        out["origin"] = origin
        out["unit_deg"] = unit
        out["xy"] = [
            round((positions[pid][axis] - origin[axis]) / unit) for pid in ids for axis in (0, 1)
        ]
    if "at_muster" in message:
        at: dict[str, str | None] = message["at_muster"]
        musters = sorted({m for m in at.values() if m is not None})
        index = {m: i for i, m in enumerate(musters)}
        out["musters"] = musters
        # Aligned with ids; a person the message has no word on keeps what the client knows
        # (-2), which only happens for a message built by hand.
        out["at"] = [_muster_index(index, at, pid) for pid in ids]
    return out


def _muster_index(index: dict[str, int], at: dict[str, str | None], pid: str) -> int:
    muster = at.get(pid)
    if muster is not None:
        return index[muster]
    return -1 if pid in at else -2


def _subscription(message: Any, principal: Principal) -> tuple[str, str | None, int | None]:
    """The site, incident and last sequence number subscribed to; the principal must hold a
    role at that site (:class:`NotPermitted` otherwise: a grant on one site shows no other)."""
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
    check_roles(principal, HUMAN_ROLES, site)
    return site, incident, last_seq
