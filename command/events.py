"""The site's event log: append-only, numbered per site, chained by hash.

Every state change of incident command (an activation, a step transition, an escalation, a
notification, a reading that crosses a threshold, a command given) is one event, appended in the
same transaction as the change it records. An event's hash is SHA-256 over the previous event's
hash and the event's canonical JSON (sorted keys, no spaces, UTF-8). Changing, removing or
inserting any event breaks the chain from there on: :func:`verify` finds the first break
(``rallypoint audit verify``).

The log is the single source for what clients see (snapshots and deltas carry its sequence
numbers), for catching a reconnecting client up, for restart recovery and for the after-action
review.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput
from gis.sites import load_site
from gis.storage.tables import EventRow, SiteRow

GENESIS = "0" * 64
#: At most this many events in one answer to "what did I miss".
MAX_BATCH = 10_000


@dataclass(frozen=True)
class LoggedEvent:
    site_id: str
    seq: int
    at: datetime
    type: str
    actor: str
    incident_id: str | None
    data: Mapping[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """What clients receive (the hash too, so a client can check the chain itself)."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "type": self.type,
            "actor": self.actor,
            "incident_id": self.incident_id,
            "data": dict(self.data),
            "hash": self.hash,
        }


def canonical(
    site_id: str,
    seq: int,
    at: datetime,
    kind: str,
    actor: str,
    incident_id: str | None,
    data: Mapping[str, Any],
) -> bytes:
    body = {
        "site_id": site_id,
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(),
        "type": kind,
        "actor": actor,
        "incident_id": incident_id,
        "data": data,
    }
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def chain_hash(prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + payload).hexdigest()


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data as it will read back from the database: JSON types only."""
    try:
        text = json.dumps(dict(data), ensure_ascii=False, allow_nan=False, default=_default)
    except ValueError as exc:
        raise InvalidInput(
            f"event data is not JSON: {exc}", errors=[FieldError("data", "JSON values only")]
        ) from exc
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class Draft:
    """An event to append: the log gives it its number, time and hashes."""

    type: str
    actor: str
    data: Mapping[str, Any] = field(default_factory=dict)
    incident_id: str | None = None
    at: datetime | None = None


def append(
    session: Session,
    site_id: str,
    kind: str,
    *,
    actor: str,
    data: Mapping[str, Any] | None = None,
    incident_id: str | None = None,
    at: datetime | None = None,
) -> LoggedEvent:
    """Append one event in ``session``'s transaction (it commits, or not, with the change)."""
    [event] = append_many(session, site_id, [Draft(kind, actor, data or {}, incident_id, at)])
    return event


def append_many(session: Session, site_id: str, drafts: Sequence[Draft]) -> list[LoggedEvent]:
    """Append events in order, in ``session``'s transaction, chained one to the next."""
    # Writers of one site queue on its row (PostGIS); SQLite writers are serialised anyway.
    if session.get(SiteRow, site_id, with_for_update=True) is None:
        load_site(session, site_id)  # raises NotFound
    last = session.execute(
        select(EventRow.seq, EventRow.hash)
        .where(EventRow.site_id == site_id)
        .order_by(EventRow.seq.desc())
        .limit(1)
    ).first()
    seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS)
    out: list[LoggedEvent] = []
    now = datetime.now(UTC)
    for draft in drafts:
        seq += 1
        at = (draft.at or now).astimezone(UTC)
        body = _jsonable(draft.data)
        payload = canonical(site_id, seq, at, draft.type, draft.actor, draft.incident_id, body)
        digest = chain_hash(prev_hash, payload)
        event = LoggedEvent(
            site_id, seq, at, draft.type, draft.actor, draft.incident_id, body, prev_hash, digest
        )
        session.add(
            EventRow(
                site_id=site_id,
                seq=seq,
                at=at,
                type=draft.type,
                actor=draft.actor,
                incident_id=draft.incident_id,
                data=body,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        out.append(event)
        prev_hash = digest
    session.flush()
    return out


def logged_event(row: EventRow) -> LoggedEvent:
    return LoggedEvent(
        row.site_id,
        row.seq,
        row.at,
        row.type,
        row.actor,
        row.incident_id,
        row.data,
        row.prev_hash,
        row.hash,
    )


def since(
    session: Session,
    site_id: str,
    after_seq: int,
    *,
    incident_id: str | None = None,
    limit: int = MAX_BATCH,
) -> list[LoggedEvent]:
    """The site's events after ``after_seq``, in order (at most ``limit``)."""
    query = select(EventRow).where(EventRow.site_id == site_id, EventRow.seq > after_seq)
    if incident_id is not None:
        query = query.where(EventRow.incident_id == incident_id)
    rows = session.scalars(query.order_by(EventRow.seq).limit(limit))
    return [logged_event(row) for row in rows]


def last_seq(session: Session, site_id: str) -> int:
    value = session.scalar(select(func.max(EventRow.seq)).where(EventRow.site_id == site_id))
    return int(value or 0)


@dataclass(frozen=True)
class ChainBreak:
    site_id: str
    seq: int
    reason: str


def verify(session: Session, site_id: str | None = None) -> tuple[int, list[ChainBreak]]:
    """Check every site's chain (or one site's): the number of events read and the breaks."""
    query = select(EventRow).order_by(EventRow.site_id, EventRow.seq)
    if site_id is not None:
        query = query.where(EventRow.site_id == site_id)
    breaks: list[ChainBreak] = []
    count = 0
    site, prev_hash, expected_seq = None, GENESIS, 1
    for row in session.scalars(query).yield_per(1000):
        count += 1
        if row.site_id != site:
            site, prev_hash, expected_seq = row.site_id, GENESIS, 1
        if row.seq != expected_seq:
            breaks.append(ChainBreak(row.site_id, row.seq, f"expected event {expected_seq}"))
        if row.prev_hash != prev_hash:
            breaks.append(ChainBreak(row.site_id, row.seq, "does not follow the event before"))
        payload = canonical(
            row.site_id, row.seq, row.at, row.type, row.actor, row.incident_id, row.data
        )
        if chain_hash(row.prev_hash, payload) != row.hash:
            breaks.append(ChainBreak(row.site_id, row.seq, "its content does not match its hash"))
        prev_hash, expected_seq = row.hash, row.seq + 1
    return count, breaks
