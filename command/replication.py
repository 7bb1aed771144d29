"""A site's event log replicated to the group's server, and the group's plans sent down (issue 18).

A site runs its own Rallypoint (SQLite) and keeps full command through a WAN outage. Its
forwarder (:mod:`command.forwarder`, ``rallypoint forward``) pushes its event log to the
group's server (PostGIS) in batches; the group stores them as that site's log, row for row the
site's (number, time, type, actor, incident, data, previous hash, hash), so ``rallypoint audit
verify`` passes on both and the copies are equal. This module is both ends' logic, without HTTP:

- **At the group**, a replicated site has a row in ``replica_links`` (``rallypoint replica add``):
  which server owns the log, and the last event the group acknowledged (number and hash). A
  batch is verified whole before anything is stored (:func:`verify_batch`): in order, no gap
  after what the group holds, every event's content matching its hash, every event linked to the
  one before (the first to the hash the group holds), and an event at a number already held
  equal to the one held (a re-sent batch is taken again without a second copy). Anything else
  is refused (:class:`Refused`: 409 for a gap or a fork, 422 for a reordered or forged batch),
  nothing of the batch stored, the refusal kept on the link and logged at ERROR.
- **The site owns its log**: the group never appends to it. :func:`command.events.append_many`
  refuses (:class:`gis.errors.OwnedElsewhere`, 409 naming the owner) any write of the group's
  own to a replicated site, and the group's plan workflow for that site is not logged there
  (``command.plan_log``): the site logs an approval when it takes it.
- **The group owns the plans it approves for a site** (:func:`offered_plans`): the site takes
  each approved version it does not hold (:func:`take_plans`), approving it in its own log as
  the group's (``via: group``), and marks the plan the group's (``group_plans``): a local save
  of it is refused (409). A group version the site cannot take as it is (the site holds that
  version with other content, or later versions of its own, or the plan does not validate
  against the site's model) is a conflict, recorded and logged, never a silent overwrite.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from command import events as event_log
from command.events import GENESIS, HEADS, LoggedEvent, canonical, chain_hash
from gis.errors import FieldError, InvalidInput, NotFound, OwnedElsewhere, RallypointError
from gis.storage.tables import (
    ChangeRow,
    EventRow,
    ForwardStateRow,
    GroupPlanRow,
    PlanTemplateRow,
    ReplicaLinkRow,
    SiteRow,
    TokenRow,
)

log = logging.getLogger(__name__)

EVENTS = typing.cast(Table, EventRow.__table__)
#: Events in one batch at most (both ends): a batch is one transaction at the group.
MAX_BATCH = 5_000
#: A link whose forwarder has not called for this long is shown cut (seconds).
CUT_AFTER_S = 30.0
#: The ``origin`` of the rows the group stores (not hashed: who wrote the row, not the event).
ORIGIN_PREFIX = "replica:"
WIRE_FIELDS = ("seq", "at", "type", "actor", "incident_id", "data", "prev_hash", "hash")


class Refused(RallypointError):
    """A batch the group will not store: ``reason`` is one of gap, fork (409), order, forged,
    malformed (422); ``seq`` the event it is about. Nothing of the batch is stored."""

    title = "Batch refused"

    def __init__(self, reason: str, seq: int, detail: str, *, field: str = "events") -> None:
        super().__init__(
            detail,
            errors=[FieldError(field, f"{reason} at event {seq}")],
            extra={"reason": reason, "seq": seq},
        )
        self.reason, self.seq = reason, seq
        self.status_code = 409 if reason in ("gap", "fork") else 422
        self.slug = f"replication-{reason}"


# -- the wire ---------------------------------------------------------------------------------


def to_wire(event: LoggedEvent) -> dict[str, Any]:
    """An event as the forwarder sends it: every hashed field, and both hashes."""
    return {
        "seq": event.seq,
        "at": event.at.astimezone(UTC).isoformat(),
        "type": event.type,
        "actor": event.actor,
        "incident_id": event.incident_id,
        "data": dict(event.data),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def from_wire(site_id: str, index: int, raw: object) -> LoggedEvent:
    """One sent event, its shape checked (422 naming the field of ``events[index]``)."""
    where = f"events[{index}]"

    def bad(name: str, reason: str) -> Refused:
        seq = raw.get("seq") if isinstance(raw, dict) else None
        number = seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
        return Refused("malformed", number, f"{where}.{name} {reason}", field=f"{where}.{name}")

    if not isinstance(raw, dict):
        raise bad("", "is not an object")
    missing = [name for name in WIRE_FIELDS if name not in raw]
    if missing:
        raise bad(missing[0], "is missing")
    seq = raw["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise bad("seq", f"is {seq!r}, not a number from 1")
    for name in ("type", "actor", "prev_hash", "hash", "at"):
        if not isinstance(raw[name], str):
            raise bad(name, "is not text")
    if raw["incident_id"] is not None and not isinstance(raw["incident_id"], str):
        raise bad("incident_id", "is not text or null")
    if not isinstance(raw["data"], dict):
        raise bad("data", "is not an object")
    try:
        at = datetime.fromisoformat(raw["at"])
    except ValueError:
        raise bad("at", "is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise bad("at", "has no offset")
    return LoggedEvent(
        site_id,
        seq,
        at.astimezone(UTC),
        raw["type"],
        raw["actor"],
        raw["incident_id"],
        raw["data"],
        raw["prev_hash"],
        raw["hash"],
    )


def content_matches(event: LoggedEvent) -> bool:
    """Whether the event's fields hash, after its previous hash, to its own hash."""
    try:
        payload = canonical(
            event.site_id,
            event.seq,
            event.at,
            event.type,
            event.actor,
            event.incident_id,
            event.data,
        )
    except (TypeError, ValueError):
        return False
    return chain_hash(event.prev_hash, payload) == event.hash


# -- the verifier -----------------------------------------------------------------------------


def verify_batch(
    events: Sequence[LoggedEvent],
    held_seq: int,
    held_hash: str,
    held: Callable[[int], str | None],
) -> list[LoggedEvent]:
    """The events of a batch the group does not hold yet, once the whole batch is checked
    against the log the group holds up to ``held_seq`` (whose last hash is ``held_hash``;
    ``held(seq)`` the hash of an event held). Raises :class:`Refused` naming the first event
    at fault:

    - ``order`` (422): an event whose number is not above the one before it in the batch;
    - ``gap`` (409): numbers missing, inside the batch or between the group's last and it;
    - ``forged`` (422): an event whose content does not match its hash, or that does not
      follow the event before it in the batch;
    - ``fork`` (409): an event at a number the group holds, other than the one held, or the
      first new event not following the group's last.
    """
    for before, event in itertools.pairwise(events):
        if event.seq <= before.seq:
            raise Refused(
                "order",
                event.seq,
                f"event {event.seq} comes after event {before.seq} in the batch: reordered",
            )
    for before, event in itertools.pairwise(events):
        if event.seq != before.seq + 1:
            raise Refused(
                "gap",
                before.seq + 1,
                f"{event_log.span(before.seq + 1, event.seq - 1)} missing from the batch, "
                f"between events {before.seq} and {event.seq}",
            )
    for event in events:
        if not content_matches(event):
            raise Refused(
                "forged",
                event.seq,
                f"event {event.seq}: its content does not match its hash (changed on the way, "
                "or forged)",
            )
    fresh = [e for e in events if e.seq > held_seq]
    for event in events:
        if event.seq > held_seq:
            break
        stored = held(event.seq)
        if stored != event.hash:
            has = f"holds {stored[:16]}…" if stored else "holds no such event"
            raise Refused(
                "fork",
                event.seq,
                f"event {event.seq}: the group {has}, the batch has {event.hash[:16]}…: "
                "a different event at a number already held (a fork)",
            )
    if not fresh:
        return []
    first = fresh[0]
    if first.seq != held_seq + 1:
        raise Refused(
            "gap",
            held_seq + 1,
            f"{event_log.span(held_seq + 1, first.seq - 1)} missing: the group holds the log "
            f"up to event {held_seq}, the batch starts at {first.seq}",
        )
    prev = held_hash
    for event in fresh:
        if event.prev_hash != prev:
            if event is first:
                raise Refused(
                    "fork",
                    event.seq,
                    f"event {event.seq} does not follow event {held_seq} as the group holds it "
                    f"({held_hash[:16]}…): the site's log has forked from the group's copy",
                )
            raise Refused(
                "forged",
                event.seq,
                f"event {event.seq} does not follow event {event.seq - 1} of the batch",
            )
        prev = event.hash
    return fresh


# -- the group's end --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    site_id: str
    seq: int
    hash: str
    stored: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site_id,
            "acked_seq": self.seq,
            "acked_hash": self.hash,
            "stored": self.stored,
        }


def owner_of(session: Session, site_id: str) -> str | None:
    """The server that owns ``site_id``'s log, where the log is replicated here; else None."""
    owner: str | None = session.scalar(
        select(ReplicaLinkRow.owner).where(ReplicaLinkRow.site_id == site_id)
    )
    return owner


def add_replica(
    session: Session, site_id: str, owner: str, *, actor: str, now: datetime
) -> ReplicaLinkRow:
    """Make ``site_id``'s log here a replica of ``owner``'s: it starts empty (a site whose log
    the group has written to already is refused, naming how far)."""
    if session.get(SiteRow, site_id) is None:
        raise NotFound(f"no site '{site_id}' here", errors=[FieldError("site", "unknown")])
    if session.get(ReplicaLinkRow, site_id) is not None:
        raise OwnedElsewhere(
            f"site '{site_id}' is a replica already", errors=[FieldError("site", "replicated")]
        )
    held = event_log.last_seq(session, site_id)
    if held:
        raise OwnedElsewhere(
            f"the group's log of site '{site_id}' has {held} events of its own: a replica "
            "starts empty (the site's log is the only one)",
            errors=[FieldError("site", f"{held} events held")],
        )
    row = ReplicaLinkRow(
        site_id=site_id,
        owner=owner,
        acked_seq=0,
        acked_hash=GENESIS,
        acked_at=None,
        site_head_seq=0,
        contact_at=None,
        refused=None,
        refused_at=None,
        created_at=now,
        created_by=actor,
        # The group's layer changes after this one flow down to the site (the model up to
        # it is the one the site has): command.layer_replication.
        layers_from=session.scalar(select(func.max(ChangeRow.seq))) or 0,
    )
    session.add(row)
    session.flush()
    return row


def link(session: Session, site_id: str, *, lock: bool = False) -> ReplicaLinkRow:
    row = session.get(ReplicaLinkRow, site_id, with_for_update=lock or None)
    if row is None:
        raise NotFound(
            f"site '{site_id}' is not replicated here ('rallypoint replica add {site_id}' at "
            "the group)",
            errors=[FieldError("site", "not replicated")],
        )
    return row


def accept(
    session: Session,
    site_id: str,
    batch: Sequence[object],
    *,
    site_seq: int | None,
    now: datetime,
) -> Ack:
    """Store a batch of ``site_id``'s events sent by its forwarder, all or nothing: checked
    whole (:func:`verify_batch`) against what the group holds, then inserted as they came, the
    site's head and the link moved, in ``session``'s transaction. ``site_seq``: how far the
    site's log reached when the batch was sent (how far behind the group is)."""
    row = link(session, site_id, lock=True)
    if len(batch) > MAX_BATCH:
        raise InvalidInput(
            f"{len(batch)} events in one batch; at most {MAX_BATCH}",
            errors=[FieldError("events", f"at most {MAX_BATCH}")],
        )
    events = [from_wire(site_id, i, raw) for i, raw in enumerate(batch)]
    head = session.execute(
        select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.site_id == site_id)
    ).first()
    ends = (int(head[0]), str(head[1])) if head is not None else (0, GENESIS)
    if ends != (row.acked_seq, row.acked_hash):
        raise OwnedElsewhere(
            f"the group's log of site '{site_id}' ends at {ends[0]}, the link "
            f"says {row.acked_seq}: written here by something else; run 'rallypoint audit "
            "verify'",
            errors=[FieldError("site", "log and link disagree")],
        )
    overlap = [e.seq for e in events if e.seq <= row.acked_seq]
    held: dict[int, str] = {}
    if overlap:
        held = {
            int(s): str(h)
            for s, h in session.execute(
                select(EventRow.seq, EventRow.hash).where(
                    EventRow.site_id == site_id,
                    EventRow.seq >= min(overlap),
                    EventRow.seq <= max(overlap),
                )
            )
        }
    fresh = verify_batch(events, row.acked_seq, row.acked_hash, held.get)
    if fresh:
        store(session, fresh, (ORIGIN_PREFIX + row.owner)[:120])
        last = fresh[-1]
        moved = {"seq": last.seq, "hash": last.hash, "updated_at": now}
        if head is None:
            session.execute(insert(HEADS).values(site_id=site_id, **moved))
        else:
            session.execute(update(HEADS).where(HEADS.c.site_id == site_id).values(**moved))
        row.acked_seq, row.acked_hash = last.seq, last.hash
    row.acked_at = row.contact_at = now
    row.refused = None  # a batch taken: the refusal is over (its line stays in the log)
    row.site_head_seq = max(site_seq or 0, row.acked_seq)
    session.flush()
    return Ack(site_id, row.acked_seq, row.acked_hash, len(fresh))


#: The columns :func:`store` writes, in order.
STORED = ("site_id", "seq", "at", "type", "actor", "incident_id", "data", "prev_hash", "hash")


def store(session: Session, events: Sequence[LoggedEvent], origin: str) -> None:
    """Insert ``events`` as rows, in ``session``'s transaction: on PostgreSQL with COPY (a
    batch of thousands in one round trip; the data as the JSON text SQLAlchemy would write),
    elsewhere as one ``executemany``."""
    if session.get_bind().dialect.name == "postgresql":
        driver = session.connection().connection.driver_connection
        assert driver is not None
        columns = ", ".join((*STORED, "origin"))
        with driver.cursor() as cursor, cursor.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for e in events:
                copy.write_row(
                    (
                        e.site_id,
                        e.seq,
                        e.at,
                        e.type,
                        e.actor,
                        e.incident_id,
                        json.dumps(e.data),
                        e.prev_hash,
                        e.hash,
                        origin,
                    )
                )
        return
    session.execute(
        insert(EVENTS),
        [
            {
                "site_id": e.site_id,
                "seq": e.seq,
                "at": e.at,
                "type": e.type,
                "actor": e.actor,
                "incident_id": e.incident_id,
                "data": e.data,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
                "origin": origin,
            }
            for e in events
        ],
    )


def record_refusal(session: Session, site_id: str, refusal: RallypointError, now: datetime) -> None:
    """Keep a refused batch's reason on the link (in a transaction of its own: the batch's was
    rolled back), for the group wall and ``rallypoint replica list``."""
    row = session.get(ReplicaLinkRow, site_id, with_for_update=True)
    if row is None:
        return
    row.refused = f"{refusal.status_code} {refusal.slug}: {refusal.detail}"[:2000]
    row.refused_at = row.contact_at = now


def link_state(
    row: ReplicaLinkRow, now: datetime, cut_after_s: float = CUT_AFTER_S
) -> dict[str, Any]:
    """How a replicated site's link stands, for the group wall: ``state`` is ``connected`` (the
    forwarder called lately and the group holds all it said the site has), ``behind`` (it
    called lately, events still to come), ``cut`` (no call for ``cut_after_s``, or never), or
    ``refused`` (its last batch was refused, and none taken since)."""
    since_ack = (now - row.acked_at).total_seconds() if row.acked_at else None
    since_contact = (now - row.contact_at).total_seconds() if row.contact_at else None
    behind = max(0, row.site_head_seq - row.acked_seq)
    refused = row.refused is not None
    if since_contact is None or since_contact > cut_after_s:
        state = "cut"
    elif refused:
        state = "refused"
    elif behind:
        state = "behind"
    else:
        state = "connected"
    return {
        "state": state,
        "owner": row.owner,
        "acked_seq": row.acked_seq,
        "site_seq": row.site_head_seq,
        "behind_events": behind,
        "since_ack_s": round(since_ack, 1) if since_ack is not None else None,
        "since_contact_s": round(since_contact, 1) if since_contact is not None else None,
        "refused": row.refused if refused else None,
    }


def link_states(
    session: Session, now: datetime, cut_after_s: float = CUT_AFTER_S
) -> dict[str, dict[str, Any]]:
    return {
        row.site_id: link_state(row, now, cut_after_s)
        for row in session.scalars(select(ReplicaLinkRow))
    }


def offered_plans(session: Session, site_id: str) -> list[dict[str, Any]]:
    """The plan versions in force at the group for ``site_id``: what its site takes."""
    rows = session.scalars(
        select(PlanTemplateRow)
        .where(PlanTemplateRow.site_id == site_id, PlanTemplateRow.status == "approved")
        .order_by(PlanTemplateRow.plan_id, PlanTemplateRow.version)
    ).all()
    return [
        {
            "plan_id": r.plan_id,
            "version": r.version,
            "title": r.title,
            "body": r.body,
            "source": r.source,
            "change_note": r.change_note,
            "approved_by": r.approved_by or r.updated_by,
            "approved_at": r.approved_at.isoformat() if r.approved_at else None,
        }
        for r in rows
    ]


# -- the site's end ---------------------------------------------------------------------------


def outgoing(session: Session, site_id: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """The site's events after ``after_seq`` as the forwarder sends them (read raw: a corrupt
    row stops the forwarding at it, 409 naming it, instead of sending it)."""
    return [to_wire(e) for e in event_log.since(session, site_id, after_seq, limit=limit)]


def hash_at(session: Session, site_id: str, seq: int) -> str | None:
    if seq == 0:
        return GENESIS
    value: str | None = session.scalar(
        select(EventRow.hash).where(EventRow.site_id == site_id, EventRow.seq == seq)
    )
    return value


def forward_state(session: Session, site_id: str, group_url: str) -> ForwardStateRow:
    row = session.get(ForwardStateRow, site_id)
    if row is None:
        row = ForwardStateRow(site_id=site_id, group_url=group_url, acked_seq=0, plan_conflicts=[])
        session.add(row)
    row.group_url = group_url
    return row


@dataclass
class PlansTaken:
    taken: list[tuple[str, int]]
    conflicts: list[dict[str, Any]]


def take_plans(
    session: Session,
    site_id: str,
    offered: Sequence[Mapping[str, Any]],
    *,
    owner: str,
    now: datetime,
) -> PlansTaken:
    """Take the group's plan versions the site does not hold, each approved in the site's log
    (``plan_version.approved``, ``via: group``), and mark their plans the group's. A version
    the site cannot take as it is becomes a conflict (returned, and kept in ``forward_state``
    by the caller), never an overwrite."""
    from command.plan_log import PlanLog
    from plans.store import approve_row, checked
    from plans.workflow import body_digest

    result = PlansTaken([], [])
    for offer in sorted(offered, key=lambda o: (str(o["plan_id"]), int(o["version"]))):
        plan_id, version = str(offer["plan_id"]), int(offer["version"])
        body = offer["body"]

        def conflict(reason: str, plan_id: str = plan_id, version: int = version) -> None:
            result.conflicts.append(
                {"plan_id": plan_id, "version": version, "reason": reason, "at": now.isoformat()}
            )

        rows = session.scalars(
            select(PlanTemplateRow).where(
                PlanTemplateRow.site_id == site_id, PlanTemplateRow.plan_id == plan_id
            )
        ).all()
        same = next((r for r in rows if r.version == version), None)
        later = sorted(r.version for r in rows if r.version > version)
        if same is not None:
            if body_digest(same.body) != body_digest(body):
                conflict(
                    f"version {version} here holds other content than the group's "
                    f"(saved here by {same.created_by})"
                )
                continue
            if same.status not in ("approved", "superseded"):
                conflict(f"version {version} is a {same.status} here, the group approved it")
                continue
            _own(session, site_id, plan_id, owner, version, now)
            continue
        if later:
            conflict(
                f"the site has version(s) {', '.join(map(str, later))} of its own after the "
                f"group's {version}"
            )
            continue
        try:
            template = checked(session, site_id, body)
        except RallypointError as exc:
            conflict(f"does not validate against the site's model: {exc.detail}")
            continue
        approver = str(offer.get("approved_by") or "group")
        actor = f"group:{approver}"[:200]
        row = PlanTemplateRow(
            site_id=site_id,
            plan_id=plan_id,
            version=version,
            title=template.title,
            scenario_key=template.scenario.key,
            body=template.model_dump(mode="json"),
            source=offer.get("source"),
            created_at=now,
            created_by=actor,
            status="draft",
            revision=1,
            change_note=offer.get("change_note"),
            updated_at=now,
            updated_by=actor,
            history=[],
        )
        session.add(row)
        session.flush()
        approve_row(
            session,
            row,
            actor=actor,
            at=now,
            record=PlanLog(session, site_id),
            details={"via": "group", "group": owner, "approved_at_group": offer.get("approved_at")},
        )
        _own(session, site_id, plan_id, owner, version, now)
        result.taken.append((plan_id, version))
    return result


def _own(
    session: Session, site_id: str, plan_id: str, owner: str, version: int, now: datetime
) -> None:
    row = session.get(GroupPlanRow, (site_id, plan_id))
    if row is None:
        session.add(
            GroupPlanRow(
                site_id=site_id, plan_id=plan_id, owner=owner, version=version, taken_at=now
            )
        )
    elif row.version != version:
        row.version, row.taken_at, row.owner = version, now, owner


def issue_replicator_token(session: Session, site_id: str, name: str, now: datetime) -> str:
    """A token for ``site_id``'s forwarder (role ``replicator`` at that site only, nothing
    else anywhere); printed once, stored as its hash only, revoked like a device token."""
    from command.auth import token_hash

    label = name.strip()
    if not label or len(label) > 100:
        raise InvalidInput(
            "a replicator name has 1 to 100 characters",
            errors=[FieldError("name", "1 to 100 characters")],
        )
    token = secrets.token_urlsafe(32)
    session.add(
        TokenRow(
            token_hash=token_hash(token),
            kind="replicator",
            user_id=None,
            site_id=site_id,
            name=label,
            created_at=now,
            expires_at=None,
            revoked=False,
        )
    )
    session.flush()
    return token


def revoke_replicator_tokens(session: Session, site_id: str) -> int:
    """Revoke every live replicator token of ``site_id``; how many."""
    rows = session.scalars(
        select(TokenRow).where(
            TokenRow.site_id == site_id,
            TokenRow.kind == "replicator",
            TokenRow.revoked.is_(False),
        )
    ).all()
    for row in rows:
        row.revoked = True
    session.flush()
    return len(rows)
