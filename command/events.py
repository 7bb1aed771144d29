"""The site's event log: append-only, numbered per site, chained by hash.

Every state change of incident command (an activation, a step transition, an escalation, a
notification, a reading that crosses a threshold, a command given) is one event, appended in the
same transaction as the change it records. An event's hash is SHA-256 over the previous event's
hash and the event's canonical JSON (sorted keys, no spaces, UTF-8). Changing, removing or
inserting any event breaks the chain from there on: :func:`verify` finds the first break
(``rallypoint audit verify``).

The chain alone cannot tell a log cut short from a shorter log, nor a log re-hashed whole from
the real one. So each append also moves the site's head (``event_heads``: last number and hash)
in the same transaction, and :mod:`command.audit` signs the heads into checkpoints kept outside
the database (``docs/audit.md``).

The log is the single source for what clients see (snapshots and deltas carry its sequence
numbers), for catching a reconnecting client up, for restart recovery and for the after-action
review.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Table, Text, cast, func, insert, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from gis.errors import CorruptEvent, FieldError, InvalidInput, OwnedElsewhere
from gis.sites import load_site
from gis.storage.tables import EventHeadRow, EventRow, ReplicaLinkRow, SiteRow

GENESIS = "0" * 64
#: What every message of a drill carries (call-outs, their webhook payloads, the wall).
EXERCISE_LABEL = "EXERCISE / 演练"
#: The head table, for plain SQL (an append's extra statements stay cheap).
HEADS = typing.cast(Table, EventHeadRow.__table__)
#: Sites whose log is replicated here from their own server (issue 18): never appended to here.
REPLICAS = typing.cast(Table, ReplicaLinkRow.__table__)
#: At most this many events in one answer to "what did I miss".
MAX_BATCH = 10_000
#: This server process, in the events it appends (``events.origin``): set by the app when it
#: starts (``command.log_follower.claim_origin``); None in a command-line tool. Processes that
#: share a database apply to their memory only the events that others wrote.
ORIGIN: str | None = None


class StaleView(Exception):
    """An append that expected the site's log to end at ``expected`` found it at ``found``:
    another process wrote meanwhile, and the command was decided on an older picture. The
    transaction is rolled back; the caller catches up and decides again."""

    def __init__(self, site_id: str, expected: int, found: int) -> None:
        super().__init__(f"site {site_id}: the log ends at {found}, not {expected}")
        self.site_id, self.expected, self.found = site_id, expected, found


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
    exercises: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> LoggedEvent:
    """Append one event in ``session``'s transaction (it commits, or not, with the change)."""
    [event] = append_many(
        session,
        site_id,
        [Draft(kind, actor, data or {}, incident_id, at)],
        exercises=exercises,
        now=now,
    )
    return event


def mark_exercise(drafts: Sequence[Draft], exercises: Mapping[str, str]) -> list[Draft]:
    """Drafts of a drill's incident (``exercises``: incident id -> drill id) marked as exercise
    in their data, so that every record of a drill says so; its call-outs also carry the
    exercise label."""
    out = []
    for draft in drafts:
        drill = exercises.get(draft.incident_id) if draft.incident_id else None
        if drill is None or "exercise" in draft.data:
            out.append(draft)
            continue
        data = {**draft.data, "exercise": drill}
        if draft.type == "notification.requested":
            data["label"] = EXERCISE_LABEL
        out.append(Draft(draft.type, draft.actor, data, draft.incident_id, draft.at))
    return out


def append_many(
    session: Session,
    site_id: str,
    drafts: Sequence[Draft],
    *,
    exercises: Mapping[str, str] | None = None,
    now: datetime | None = None,
    expect: int | None = None,
) -> list[LoggedEvent]:
    """Append events in order, in ``session``'s transaction, chained one to the next; the site's
    head moves in the same transaction, so a rolled-back append leaves no trace in either.
    Drafts of the incidents in ``exercises`` are marked as a drill's (:func:`mark_exercise`).
    A draft without its own time is stamped ``now`` (the caller's clock), else the system's.
    ``expect``: the sequence number the caller's picture of the site ends at; a log that ends
    elsewhere (another process wrote meanwhile) raises :class:`StaleView`, under the site's
    lock, before anything is written."""
    if exercises:
        drafts = mark_exercise(drafts, exercises)
    # Writers of one site queue on its row (PostGIS); SQLite writers are serialised anyway.
    # NO KEY UPDATE: a transaction that added a feature holds the row's KEY SHARE lock (the
    # foreign key) until it ends, a planner's open one in QGIS too; FOR UPDATE would wait it out.
    if session.get(SiteRow, site_id, with_for_update={"key_share": True}) is None:
        load_site(session, site_id)  # raises NotFound
    # A site whose log is replicated here from its own server is that server's to write
    # (command.replication): the group never appends to it.
    owner = session.scalar(select(REPLICAS.c.owner).where(REPLICAS.c.site_id == site_id))
    if owner is not None:
        raise OwnedElsewhere(
            f"site {site_id}'s event log is owned by its site server {owner!r} and replicated "
            "here: act at the site",
            errors=[FieldError("site", f"owned by {owner}")],
            extra={"owner": owner},
        )
    row = session.execute(
        select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.site_id == site_id)
    ).first()
    head = (int(row[0]), str(row[1])) if row is not None else None
    seq, prev_hash = _chain_end(session, site_id, head)
    if expect is not None and seq != expect:
        raise StaleView(site_id, expect, seq)
    out: list[LoggedEvent] = []
    now = now or datetime.now(UTC)
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
                origin=ORIGIN,
            )
        )
        out.append(event)
        prev_hash = digest
    if out:  # two small statements (Core: no ORM bookkeeping for a row nobody reads back)
        moved = {"seq": seq, "hash": prev_hash, "updated_at": now}
        if head is None:
            session.execute(insert(HEADS).values(site_id=site_id, **moved))
        else:
            session.execute(update(HEADS).where(HEADS.c.site_id == site_id).values(**moved))
    session.flush()
    return out


def _chain_end(session: Session, site_id: str, head: tuple[int, str] | None) -> tuple[int, str]:
    """Where the next event chains on: the log's last event, or the head where the head is
    further on. Events deleted from the end of the log thus stay a visible gap after the next
    append, instead of being written over with new events of the same numbers."""
    last = session.execute(
        select(EventRow.seq, EventRow.hash)
        .where(EventRow.site_id == site_id)
        .order_by(EventRow.seq.desc())
        .limit(1)
    ).first()
    if head is not None and (last is None or head[0] > last[0]):
        return head
    return (last[0], last[1]) if last else (0, GENESIS)


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
    """The site's events after ``after_seq``, in order (at most ``limit``). Read raw: a
    corrupt row is :class:`CorruptEvent` (409, naming it), never a fault of the server."""
    query = select(*RAW_COLUMNS).where(EventRow.site_id == site_id, EventRow.seq > after_seq)
    if incident_id is not None:
        query = query.where(EventRow.incident_id == incident_id)
    out = []
    for raw in session.execute(query.order_by(EventRow.seq).limit(limit)):
        try:
            out.append(read_row(raw))
        except Unreadable as exc:
            raise CorruptEvent(
                f"event {raw.seq} of site {site_id} is unreadable: {exc}; the events before it "
                f"read with ?after= up to {int(raw.seq) - 1 if isinstance(raw.seq, int) else '?'}"
                "; see 'rallypoint audit verify'",
                errors=[FieldError("after", f"event {raw.seq} is unreadable")],
            ) from exc
    return out


def last_seq(session: Session, site_id: str) -> int:
    value = session.scalar(select(func.max(EventRow.seq)).where(EventRow.site_id == site_id))
    return int(value or 0)


@dataclass(frozen=True)
class ChainBreak:
    """One thing wrong with the log: ``subject`` names what (an event, a range of missing
    events, the head, a checkpoint line), ``reason`` says how."""

    site_id: str
    seq: int
    reason: str
    subject: str = ""

    def __str__(self) -> str:
        where = self.subject or f"event {self.seq}"
        return (
            f"{self.site_id} {where}: {self.reason}" if self.site_id else f"{where}: {self.reason}"
        )


class Unreadable(ValueError):
    """A stored event that cannot be read back as one (bad JSON, a NULL, a wrong type)."""


#: A row of :data:`RAW_COLUMNS`.
RawRow = Row[*tuple[Any, ...]]

#: The columns as stored, unconverted: a corrupt value reaches :func:`read_row` as it is,
#: instead of failing inside the driver or SQLAlchemy's result processing.
RAW_COLUMNS = (
    EventRow.site_id,
    type_coerce(EventRow.seq, NullType()).label("seq"),
    type_coerce(EventRow.at, NullType()).label("at"),
    EventRow.type,
    EventRow.actor,
    EventRow.incident_id,
    cast(EventRow.data, Text).label("data"),
    EventRow.prev_hash,
    EventRow.hash,
)


def read_row(raw: RawRow) -> LoggedEvent:
    """A raw event row (:data:`RAW_COLUMNS`) as an event, with its content hash checkable."""
    seq = raw.seq
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise Unreadable(f"its number is {seq!r}")
    for name in ("type", "actor", "prev_hash", "hash"):
        if not isinstance(getattr(raw, name), str):
            raise Unreadable(f"its {name} is {getattr(raw, name)!r}")
    if raw.incident_id is not None and not isinstance(raw.incident_id, str):
        raise Unreadable(f"its incident_id is {raw.incident_id!r}")
    at = _stored_time(raw.at)
    if not isinstance(raw.data, str):
        raise Unreadable(f"its data is {raw.data!r}")
    try:
        data = json.loads(raw.data)
    except ValueError as exc:
        raise Unreadable(f"its data is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Unreadable(f"its data is {_json_kind(data)}, not an object")
    return LoggedEvent(
        raw.site_id, seq, at, raw.type, raw.actor, raw.incident_id, data, raw.prev_hash, raw.hash
    )


def _payload(event: LoggedEvent) -> bytes:
    try:
        return canonical(
            event.site_id,
            event.seq,
            event.at,
            event.type,
            event.actor,
            event.incident_id,
            event.data,
        )
    except (TypeError, ValueError) as exc:  # e.g. NaN, which JSON text may hold but not hash
        raise Unreadable(f"its data cannot be hashed ({exc})") from None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _stored_time(value: object) -> datetime:
    if isinstance(value, str):  # SQLite keeps text
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise Unreadable(f"its time is {value!r}") from None
    if not isinstance(value, datetime):
        raise Unreadable(f"its time is {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class ChainEnd:
    """How far a site's log reads: its last event's number and hash (``None`` when that event
    is unreadable), and how many events it has."""

    seq: int = 0
    hash: str | None = GENESIS
    count: int = 0


class ChainWalk:
    """One pass over the log in order, every event hashed again: the breaks, each site's end,
    the hashes of the events checkpoints name (``watch``), and the incidents with a break.

    A corrupt row is one more break ("event 17 is unreadable: ..."), never an exception: the
    walk goes on with the next row, checking its link where the corrupt row's hash reads."""

    def __init__(self, watch: Mapping[str, set[int]] | None = None) -> None:
        self.watch = watch or {}
        self.breaks: list[ChainBreak] = []
        self.ends: dict[str, ChainEnd] = {}
        self.watched: dict[tuple[str, int], str] = {}
        #: incident -> the first break among its events, in one line.
        self.broken_incidents: dict[str, str] = {}
        self.count = 0

    def run(self, session: Session, site_id: str | None = None) -> ChainWalk:
        query = select(*RAW_COLUMNS).order_by(EventRow.site_id, EventRow.seq)
        if site_id is not None:
            query = query.where(EventRow.site_id == site_id)
        for raw in session.execute(query.execution_options(yield_per=1000)):
            self._step(raw)
        return self

    def _step(self, raw: RawRow) -> None:
        self.count += 1
        end = self.ends.setdefault(raw.site_id, ChainEnd())
        end.count += 1
        expected, prev_hash = end.seq + 1, end.hash
        seq = raw.seq if isinstance(raw.seq, int) and not isinstance(raw.seq, bool) else None
        if seq is not None and seq > expected:
            self._break(raw, seq, f"{span(expected, seq - 1)} missing before it")
        elif seq is not None and seq != expected:
            self._break(raw, seq, f"expected event {expected}")
        try:
            event = read_row(raw)
            payload = _payload(event)
        except Unreadable as exc:
            if seq is None:  # out of sequence: the events around it are checked without it
                self._break(
                    raw, expected, str(exc), f"an event after event {end.seq} is unreadable"
                )
                return
            self._break(raw, seq, str(exc), f"event {seq} is unreadable")
            end.seq, end.hash = seq, raw.hash if isinstance(raw.hash, str) else None
            return
        # After a gap the link is to a missing event: the gap is the news, not the link.
        linked = seq == expected
        if linked and prev_hash is not None and event.prev_hash != prev_hash:
            self._break(raw, event.seq, "does not follow the event before")
        if chain_hash(event.prev_hash, payload) != event.hash:
            self._break(raw, event.seq, "its content does not match its hash")
        if event.seq in self.watch.get(event.site_id, ()):
            self.watched[(event.site_id, event.seq)] = event.hash
        end.seq, end.hash = event.seq, event.hash

    def _break(self, raw: RawRow, seq: int, reason: str, subject: str = "") -> None:
        found = ChainBreak(raw.site_id, seq, reason, subject)
        self.breaks.append(found)
        incident = raw.incident_id
        if incident is not None:
            where = subject or f"event {seq}"
            self.broken_incidents.setdefault(str(incident), f"{where}: {reason}")


def span(first: int, last: int) -> str:
    """The subject of a sentence about missing events: one event, or a range (en dash)."""
    return f"event {first} is" if first == last else f"events {first}\u2013{last} are"


@dataclass(frozen=True)
class Head:
    """A site's head as stored; ``seq`` and ``hash`` are ``None`` where unreadable."""

    site_id: str
    seq: int | None
    hash: str | None


def heads(session: Session, site_id: str | None = None) -> dict[str, Head]:
    """Every site's head (or one site's), read without trusting the stored types."""
    query = select(
        EventHeadRow.site_id,
        type_coerce(EventHeadRow.seq, NullType()).label("seq"),
        EventHeadRow.hash,
    )
    if site_id is not None:
        query = query.where(EventHeadRow.site_id == site_id)
    out = {}
    for row in session.execute(query):
        seq = row.seq if isinstance(row.seq, int) and not isinstance(row.seq, bool) else None
        digest = row.hash if isinstance(row.hash, str) else None
        out[row.site_id] = Head(row.site_id, seq, digest)
    return out


def head_breaks(walk: ChainWalk, site_heads: Mapping[str, Head]) -> list[ChainBreak]:
    """The log's end against the head of each site: events missing from the end (the head is
    further on), events past the head, a head that names another hash, or no head at all."""
    found = []
    for site in sorted(set(walk.ends) | set(site_heads)):
        end, head = walk.ends.get(site, ChainEnd()), site_heads.get(site)
        ends_at = f"the log ends at {end.seq}" if end.count else "the log has none"
        if head is None:
            found.append(
                ChainBreak(site, end.seq, f"{ends_at}, with no head (deleted?)", "head is missing")
            )
        elif head.seq is None or head.hash is None:
            found.append(ChainBreak(site, end.seq, "its number or hash", "head is unreadable"))
        elif head.seq > end.seq:
            missing = span(end.seq + 1, head.seq)
            found.append(
                ChainBreak(
                    site, end.seq + 1, f"the head says {head.seq}, {ends_at}", f"{missing} missing"
                )
            )
        elif head.seq < end.seq:
            past = span(head.seq + 1, end.seq)
            found.append(
                ChainBreak(
                    site,
                    head.seq + 1,
                    f"the head says {head.seq}: rolled back, or events added around it",
                    f"{past} past the head",
                )
            )
        elif end.hash is not None and head.hash != end.hash:
            found.append(
                ChainBreak(
                    site,
                    head.seq,
                    f"the head has hash {head.hash}, event {head.seq} has {end.hash}",
                    "head does not match the log",
                )
            )
    return found


def verify(session: Session, site_id: str | None = None) -> tuple[int, list[ChainBreak]]:
    """Check every site's chain (or one site's) and its end against the site's head: the number
    of events read and the breaks. The signed checkpoints are checked by
    :func:`command.audit.verify_anchor`, which calls this walk too."""
    walk = ChainWalk().run(session, site_id)
    return walk.count, walk.breaks + head_breaks(walk, heads(session, site_id))


def unreadable_incidents(session: Session, site_id: str | None = None) -> dict[str, str]:
    """Incidents that have a corrupt event row, or a break in the chain among their events:
    incident id -> one line saying which event and why. Restart recovery quarantines these
    instead of failing on them (rebuilding one would read the corrupt row)."""
    return ChainWalk().run(session, site_id).broken_incidents
