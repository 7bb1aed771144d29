"""Actions queued on a field terminal, taken once (issue 18).

A responder's phone queues what they do while offline, each action with an id of its own (a
UUIDv7) and the time they acted, and sends it when the link returns, again if no answer came.
The server takes each id once, per user (the IETF draft ``draft-ietf-httpapi-idempotency-key-
header``, as Stripe has it):

- ``Idempotency-Key: <UUID>`` (bare, or quoted as the draft's structured-field string). The first
  request is claimed (a row in ``client_actions``, unique per user and key: one claim wins
  across every server process), processed, and the events it caused mark the row **in the same
  transaction**; the answer (status and body) is stored after. Should the server die between
  the two, a retry finds the events and answers from them.
- A retry with the same key and the same request (method, path, acted-at and body: the
  fingerprint) gets the first answer again, with ``Idempotent-Replayed: true``, and logs
  nothing. The same key with another request is 422 ``idempotency-key-reused``; while the first
  is still being processed, 409 ``idempotency-key-in-use`` (Retry-After: 1). A malformed key is
  400 naming the header.
- A request refused (a 4xx: the step was moved by someone else meanwhile, say) logs nothing
  and keeps no claim: a retry is decided again.
- ``Rallypoint-Acted-At: <RFC 3339 time>``: when the responder acted. The events keep the
  server's time of receipt as their own; the acting user's events carry ``acted_at`` (and the
  key, as ``action_id``) in their data. Only a header that cannot be read is 400: a queued
  action is never lost to the phone's clock. A time later than the server's receipt (the
  phone's clock runs fast) is recorded as the receipt, the phone's word kept beside it
  (``acted_at_reported``, ``clock_skew_s``); one implausibly early is bounded in the review
  (``command.review``).

Keys are kept :data:`KEEP` (a week), then forgotten (:func:`purge_expired`, from the leader's
tick).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from sqlalchemy import Table, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from command import attachments
from command import events as event_log
from command.attachments import Photo
from gis.errors import FieldError, RallypointError
from gis.storage.db import Database
from gis.storage.tables import ClientActionRow
from plans.clock import Clock

log = logging.getLogger(__name__)

KEY_HEADER = "Idempotency-Key"
ACTED_AT_HEADER = "Rallypoint-Acted-At"
REPLAYED_HEADER = "Idempotent-Replayed"
#: How long a key is remembered (from its first request).
KEEP = timedelta(days=7)
#: A claim not settled for this long is taken as abandoned (its server process died): a retry
#: takes it over. The old holder, should it still be alive, can no longer mark the row, so its
#: events roll back.
LEASE = timedelta(seconds=60)
TABLE = typing.cast(Table, ClientActionRow.__table__)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


class InvalidHeader(RallypointError):
    """A request header that cannot be read (the field names it)."""

    status_code = 400
    slug = "invalid-header"
    title = "Invalid header"


class KeyReused(RallypointError):
    status_code = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key reused"


class KeyInUse(RallypointError):
    """The first request with this key is still being processed."""

    status_code = 409
    slug = "idempotency-key-in-use"
    title = "Idempotency key in use"
    retry_after_s = 1


def parse_key(value: str) -> str:
    """A key as sent (``0190...`` or ``"0190..."``), lower-cased; 400 unless a UUID."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    text = text.lower()
    if not _UUID.fullmatch(text):
        raise InvalidHeader(
            f"{KEY_HEADER} must be a UUID (version 7 expected), such as "
            '"01938f6e-8a4b-7c2d-9e0f-123456789abc"',
            errors=[FieldError(KEY_HEADER, "a UUID, version 7 expected")],
        )
    return text


def parse_acted_at(value: str) -> datetime:
    """An RFC 3339 time with its offset, in UTC; 400 naming the header when unreadable."""
    text = value.strip()
    try:
        if not _RFC3339.fullmatch(text):
            raise ValueError(text)
        # fromisoformat (3.11) takes six fractional digits at most, and "Z" upper case.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("z", "Z").replace("t", "T"))
        acted = datetime.fromisoformat(text.replace(" ", "T")).astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: year 1 or 9999 moved to UTC
        raise InvalidHeader(
            f"{ACTED_AT_HEADER} must be an RFC 3339 time with its offset, such as "
            "2026-12-04T10:02:11Z",
            errors=[FieldError(ACTED_AT_HEADER, "an RFC 3339 time with an offset")],
        ) from None
    return acted


def fingerprint(method: str, path: str, acted_at: datetime | None, body: bytes) -> str:
    """The request's SHA-256: a JSON body is taken canonically (key order and spacing are a
    client library's choice, not the request's), the acted-at as the instant it names (``Z``
    or ``+00:00``, three fractional digits or six, are the same time)."""
    try:
        parsed = json.loads(body) if body.strip() else None
        content = json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        content = body
    instant = acted_at.astimezone(UTC).isoformat() if acted_at is not None else ""
    head = json.dumps([method.upper(), path, instant]).encode()
    return hashlib.sha256(head + b"\n" + content).hexdigest()


@dataclass(frozen=True)
class ClientRequest:
    """What a queued action says of itself: its key, when the responder acted, its
    fingerprint. Both headers are optional: without them a request is taken as it always was."""

    key: str | None
    acted_at: datetime | None
    fingerprint: str
    #: The phone's acted-at when it was later than the server's receipt (``acted_at`` is then
    #: the receipt).
    acted_at_reported: datetime | None = None


async def client_request(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            description="A UUID (version 7) the client made for this action: a retry with the "
            "same key gets the first answer, and changes nothing",
        ),
    ] = None,
    acted_at: Annotated[
        str | None,
        Header(
            alias=ACTED_AT_HEADER,
            description="When the responder acted (RFC 3339), if earlier than now (queued "
            "offline); the events keep it beside the server's time",
        ),
    ] = None,
) -> ClientRequest:
    key = parse_key(idempotency_key) if idempotency_key is not None else None
    reported = parse_acted_at(acted_at) if acted_at is not None else None
    acted, ahead = reported, None
    if reported is not None:
        clock: Clock = request.app.state.post.clock
        received = clock.now().astimezone(UTC)
        if reported > received:  # the phone's clock runs fast: taken, at the receipt
            acted, ahead = received, reported
    body = await request.body()  # cached: the route's body parameter reads the same bytes
    sha = fingerprint(request.method, request.url.path, reported, body)
    return ClientRequest(key, acted, sha, ahead)


ClientRequestDep = Annotated[ClientRequest, Depends(client_request)]


@dataclass(frozen=True)
class ClientAction:
    """A queued action being processed: the command post stamps its drafts
    (:meth:`stamp`) and marks the claim in the events' transaction (:meth:`logged`)."""

    user_id: str
    actor: str
    key: str | None = None
    claim: str | None = None
    acted_at: datetime | None = None
    #: A note's photo: named in the note's data, stored in the note's transaction.
    photo: Photo | None = None
    #: The phone's acted-at, later than the receipt (``acted_at``), kept as evidence.
    acted_at_reported: datetime | None = None

    def stamp(self, drafts: Sequence[event_log.Draft]) -> list[event_log.Draft]:
        """The acting user's drafts with ``acted_at`` and ``action_id`` in their data (what
        follows from them, a next step becoming ready, happened when the server took it)."""
        extra: dict[str, Any] = {}
        if self.acted_at is not None:
            extra["acted_at"] = self.acted_at.isoformat()
            if self.acted_at_reported is not None:
                extra["acted_at_reported"] = self.acted_at_reported.isoformat()
                skew = (self.acted_at_reported - self.acted_at).total_seconds()
                extra["clock_skew_s"] = round(skew, 3)
        if self.key is not None:
            extra["action_id"] = self.key
        out = [replace(d, data={**d.data, **extra}) if d.actor == self.actor else d for d in drafts]
        if self.photo is not None:
            out = [
                replace(d, data={**d.data, "photo": self.photo.as_data()})
                if d.actor == self.actor and d.type == "plan.note"
                else d
                for d in out
            ]
        return out

    def logged(
        self, session: Session, site_id: str, events: Sequence[event_log.LoggedEvent]
    ) -> None:
        """In the transaction that appends ``events``: the claim records them. A claim lost
        meanwhile (taken over as abandoned) raises, and the events roll back with it."""
        if self.photo is not None and events:
            attachments.store(session, site_id, self.photo, by=self.actor, at=events[0].at)
        if self.key is None or not events:
            return
        done = session.execute(
            update(TABLE)
            .where(
                TABLE.c.user_id == self.user_id,
                TABLE.c.key == self.key,
                TABLE.c.claim == self.claim,
                TABLE.c.first_seq.is_(None),
            )
            .values(site_id=site_id, first_seq=events[0].seq, last_seq=events[-1].seq)
        )
        if getattr(done, "rowcount", 1) != 1:
            raise _in_use(self.key)


def _in_use(key: str) -> KeyInUse:
    return KeyInUse(
        f"the action {key} is being processed by another request: ask again in a moment for "
        "its answer",
        errors=[FieldError(KEY_HEADER, "being processed")],
    )


def _reused(key: str) -> KeyReused:
    return KeyReused(
        f"the {KEY_HEADER} {key} was used for another request: a key names one action; make a "
        "new key for a new one",
        errors=[FieldError(KEY_HEADER, "used for another request")],
    )


def events_answer(events: Sequence[event_log.LoggedEvent]) -> dict[str, Any]:
    """The answer of an action that logs events: the events."""
    return {"events": [e.as_dict() for e in events]}


def encode(answer: Mapping[str, Any]) -> bytes:
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Replay:
    status: int
    body: bytes


def perform(
    db: Database,
    clock: Clock,
    *,
    user_id: str,
    actor: str,
    request: ClientRequest,
    act: Callable[[ClientAction], Mapping[str, Any]],
) -> Response:
    """Run ``act`` once for the request's key (no key: every time), answering 200 with what it
    returns as JSON; a retry gets the first answer."""
    if request.key is None:
        action = ClientAction(
            user_id, actor, acted_at=request.acted_at, acted_at_reported=request.acted_at_reported
        )
        return _json(200, encode(act(action)))
    claimed = claim_key(db, clock, user_id, request)
    if isinstance(claimed, _Replay):
        return _json(claimed.status, claimed.body, replayed=True)
    action = ClientAction(
        user_id,
        actor,
        request.key,
        claimed,
        request.acted_at,
        acted_at_reported=request.acted_at_reported,
    )
    try:
        body = encode(act(action))
    except BaseException:
        _release(db, action)
        raise
    with db.write() as session:
        session.execute(
            update(TABLE)
            .where(
                TABLE.c.user_id == user_id,
                TABLE.c.key == request.key,
                TABLE.c.claim == claimed,
            )
            .values(status=200, answer=body.decode())
        )
    return _json(200, body)


def _json(status: int, body: bytes, *, replayed: bool = False) -> Response:
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def claim_key(db: Database, clock: Clock, user_id: str, request: ClientRequest) -> str | _Replay:
    """The claim's token (the action is this request's to process), or the first answer."""
    assert request.key is not None
    now = clock.now()
    for _ in range(2):  # a second look, when another process inserted the key first
        try:
            with db.write() as session:
                # This key, when expired (the others go in :func:`purge_expired`): a new one.
                session.execute(
                    delete(TABLE).where(
                        TABLE.c.user_id == user_id,
                        TABLE.c.key == request.key,
                        TABLE.c.created_at < now - KEEP,
                    )
                )
                return _claim_in(session, now, user_id, request)
        except IntegrityError:
            continue
    raise _in_use(request.key)


def purge_expired(db: Database, now: datetime) -> int:
    """Forget the keys older than :data:`KEEP` (the leader's tick calls it now and then);
    returns how many. A photo stays: its hash is in the log, and the log is evidence."""
    with db.write() as session:
        done = session.execute(delete(TABLE).where(TABLE.c.created_at < now - KEEP))
    return int(getattr(done, "rowcount", 0) or 0)


def _claim_in(
    session: Session, now: datetime, user_id: str, request: ClientRequest
) -> str | _Replay:
    assert request.key is not None
    row = session.get(ClientActionRow, (user_id, request.key), with_for_update=True)
    token = secrets.token_hex(16)
    if row is None:
        session.add(
            ClientActionRow(
                user_id=user_id,
                key=request.key,
                fingerprint=request.fingerprint,
                claim=token,
                claimed_at=now,
                created_at=now,
            )
        )
        session.flush()
        return token
    if row.fingerprint != request.fingerprint:
        raise _reused(request.key)
    if row.status is not None and row.answer is not None:
        return _Replay(row.status, row.answer.encode())
    if row.first_seq is not None and row.site_id is not None and row.last_seq is not None:
        # Logged, but the server stopped before it stored the answer: the log has it.
        logged = event_log.since(
            session, row.site_id, row.first_seq - 1, limit=row.last_seq - row.first_seq + 1
        )
        body = encode(events_answer(logged))
        row.status, row.answer = 200, body.decode()
        return _Replay(200, body)
    if row.claimed_at > now - LEASE:
        raise _in_use(request.key)
    log.warning("taking over the abandoned claim of action %s", request.key)
    row.claim, row.claimed_at = token, now
    return token


def _release(db: Database, action: ClientAction) -> None:
    """The action was refused or failed before it logged anything: no claim stays (a retry is
    decided again). One that logged keeps its claim: a retry answers from the log."""
    try:
        with db.write() as session:
            session.execute(
                delete(TABLE).where(
                    TABLE.c.user_id == action.user_id,
                    TABLE.c.key == action.key,
                    TABLE.c.claim == action.claim,
                    TABLE.c.first_seq.is_(None),
                )
            )
    except Exception:  # the database away: the claim lapses after LEASE
        log.warning("could not release the claim of action %s", action.key, exc_info=True)
