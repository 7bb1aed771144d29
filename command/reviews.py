"""Stored after-action reviews: generated when an incident or drill ends, edited until signed
off, then frozen.

A review (``ReviewRow``) holds what :func:`command.review.build_review` read from the log, with
the threat zones of its situation maps (``body``), and what reviewers added: per item of the
improvement plan, its cause and corrective action with owner and due date (``edits``, keyed by
the item's id). Edits name the version they were made on (``If-Match`` or ``version``), so no
edit is lost to a concurrent one. Signing off freezes the review: its hash (SHA-256 of the
canonical JSON of body and edits, :func:`review_hash`) is stored and logged as
``review.signed_off`` in the site's event log, chained with the rest.

Who sees what: a drill's review belongs to the drill controllers (they read, edit and sign it
off); commanders read it once signed off; to anyone else it does not exist (404, as for a review
that does not). A real incident's review is read by commanders and drill controllers, edited and
signed off by commanders; anyone else is refused (403).

A review not signed off :data:`OVERDUE_AFTER` after the incident ended is ``overdue``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from command import events as event_log
from command.auth import Role
from command.review import build_review
from command.review_html import review_html
from command.review_maps import MapFrame, add_threat_zones, map_frame, map_html, map_png
from command.site_model import SiteModel
from gis.errors import (
    CorruptEvent,
    FieldError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    NotPermitted,
)
from gis.layers import VersionSource, check_version, read_features
from gis.sites import load_site
from gis.storage.db import Database
from gis.storage.tables import EventRow, ReviewRow

log = logging.getLogger(__name__)

#: A review not signed off this long after its incident ended is overdue.
OVERDUE_AFTER = timedelta(hours=72)
#: What an item of the improvement plan may be given.
ITEM_FIELDS = ("cause", "action", "owner", "due")
#: Longest text of a cause or corrective action (an owner's name: 200).
MAX_TEXT = 2000


def review_hash(body: Mapping[str, Any], edits: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of body and edits."""
    text = json.dumps(
        {"body": body, "edits": edits},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def is_overdue(ended_at: datetime, signed_off_at: datetime | None, now: datetime) -> bool:
    return signed_off_at is None and now - ended_at > OVERDUE_AFTER


# -- reading the log ---------------------------------------------------------------------------


def incident_events(
    session: Session, site_id: str, incident_id: str
) -> list[event_log.LoggedEvent]:
    """The incident's events and, for a drill, those of its drill logged without the incident
    (``drill.*`` events, injected readings): every event whose data names the drill. Read raw:
    a corrupt row is :class:`CorruptEvent`, naming it."""
    own = _read(
        session,
        select(*event_log.RAW_COLUMNS).where(
            EventRow.site_id == site_id, EventRow.incident_id == incident_id
        ),
        incident_id,
    )
    drill_id = _drill_of(own)
    if drill_id is None:
        return own
    # A text match finds the candidates on either database; the data is checked after.
    others = _read(
        session,
        select(*event_log.RAW_COLUMNS).where(
            EventRow.site_id == site_id,
            EventRow.incident_id.is_(None),
            cast(EventRow.data, Text).contains(drill_id, autoescape=True),
        ),
        incident_id,
    )
    mine = [e for e in others if drill_id in (e.data.get("drill_id"), e.data.get("exercise"))]
    return sorted([*own, *mine], key=lambda e: e.seq)


def _read(session: Session, query: Any, incident_id: str) -> list[event_log.LoggedEvent]:
    out = []
    for raw in session.execute(query.order_by(EventRow.seq)):
        try:
            out.append(event_log.read_row(raw))
        except event_log.Unreadable as exc:
            raise CorruptEvent(
                f"event {raw.seq} of incident {incident_id} is unreadable: {exc}; see "
                "'rallypoint audit verify'",
                errors=[FieldError("incident", f"event {raw.seq} is unreadable")],
            ) from exc
    return out


def _drill_of(events: Sequence[event_log.LoggedEvent]) -> str | None:
    for event in events:
        exercise = event.data.get("exercise")
        if event.type == "incident.activated" and isinstance(exercise, Mapping):
            return str(exercise["drill_id"]) if exercise.get("drill_id") else None
        if event.type == "drill.started" and event.data.get("drill_id"):
            return str(event.data["drill_id"])
    return None


# -- generating --------------------------------------------------------------------------------


def generate_review(
    db: Database, model: SiteModel, site_id: str, incident_id: str, *, now: datetime
) -> dict[str, Any]:
    """Generate (or generate again) the review of an ended incident or drill from the log, and
    store it: what the command post calls when an incident stands down or a drill ends. Edits
    made so far are kept; a signed-off review is frozen and returned as it is. Returns the
    review as :func:`served` gives it (to a drill controller, for a drill)."""
    with db.read() as session:
        events = incident_events(session, site_id, incident_id)
    body = build_review(site_id, incident_id, events)
    add_threat_zones(model, body["maps"])
    # Stored as it will read back: the hash of a signed review is taken of the stored JSON.
    body = orjson.loads(orjson.dumps(body))
    ended = datetime.fromisoformat(body["ended_at"])
    with db.write() as session:
        row = session.get(ReviewRow, (site_id, incident_id), with_for_update=True)
        if row is not None and row.signed_off_at is not None:
            log.info("review of %s is signed off: not generated again", incident_id)
            return served(row, now)
        if row is None:
            row = ReviewRow(
                site_id=site_id,
                incident_id=incident_id,
                drill_id=body["drill_id"],
                ended_at=ended,
                generated_at=now,
                body=body,
                edits={},
                version=1,
                updated_at=now,
                updated_by="system",
            )
            session.add(row)
        else:
            row.body, row.ended_at, row.generated_at = body, ended, now
            row.drill_id = body["drill_id"]
            row.version += 1
            row.updated_at, row.updated_by = now, "system"
        session.flush()
        log.info(
            "review of %s generated: %d events, %d deviations, %d maps",
            incident_id,
            body["source"]["events"],
            len(body["deviations"]),
            len(body["maps"]),
        )
        return served(row, now)


# -- who may see and change a review -------------------------------------------------------------


def _missing(site_id: str, incident_id: str) -> NotFound:
    return NotFound(
        f"no review of incident '{incident_id}' at site '{site_id}'",
        errors=[FieldError("incident", "no review")],
    )


def check_access(row: ReviewRow, roles: frozenset[Role], *, write: bool = False) -> None:
    """Refuse a reader who may not see the review (a drill's: as if it did not exist, 404) or
    change it (403)."""
    drill = row.drill_id is not None
    if drill:
        sees = Role.DRILL_CONTROLLER in roles or (
            Role.COMMANDER in roles and row.signed_off_at is not None
        )
        if not sees:
            raise _missing(row.site_id, row.incident_id)
        writer = Role.DRILL_CONTROLLER
    else:
        if not roles & {Role.COMMANDER, Role.DRILL_CONTROLLER}:
            raise NotPermitted(
                "an incident's review is read by commanders and drill controllers",
                errors=[FieldError("role", "one of commander, drill_controller")],
            )
        writer = Role.COMMANDER
    if write and writer not in roles:
        what = "a drill's review" if drill else "an incident's review"
        raise NotPermitted(
            f"{what} is edited and signed off by a {writer.value}",
            errors=[FieldError("role", writer.value)],
        )


def _row(
    session: Session,
    site_id: str,
    incident_id: str,
    roles: frozenset[Role],
    *,
    write: bool = False,
) -> ReviewRow:
    row = session.get(ReviewRow, (site_id, incident_id), with_for_update=write)
    if row is None:
        raise _missing(site_id, incident_id)
    check_access(row, roles, write=write)
    return row


# -- reading -----------------------------------------------------------------------------------


def served(row: ReviewRow, now: datetime) -> dict[str, Any]:
    """The review as it is read and exported: the generated body, the edits, the improvement
    plan (the deviations with their causes and corrective actions) and the review's state."""
    body, edits = row.body, row.edits
    items = {i["id"]: i for i in _items(body)}
    ranked = {d["id"] for d in body["deviations"]}
    plan = [_planned(d, edits.get(d["id"], {})) for d in body["deviations"]]
    plan += [
        _planned({**items[key], "rank": None}, edits[key])
        for key in sorted(edits)
        if key not in ranked and key in items
    ]
    return {
        **body,
        "edits": edits,
        "improvement_plan": plan,
        "review": _meta(row, now),
    }


def _meta(row: ReviewRow, now: datetime) -> dict[str, Any]:
    return {
        "state": "signed_off" if row.signed_off_at is not None else "draft",
        "version": row.version,
        "generated_at": row.generated_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "updated_by": row.updated_by,
        "signed_off_at": row.signed_off_at.isoformat() if row.signed_off_at else None,
        "signed_off_by": row.signed_off_by,
        "hash": row.hash,
        "due_at": (row.ended_at + OVERDUE_AFTER).isoformat(),
        "overdue": is_overdue(row.ended_at, row.signed_off_at, now),
    }


def _items(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Everything reviewers may give a cause and a corrective action: steps, drill actions,
    call-outs."""
    out = [
        {"id": s["id"], "kind": "step", "title": s["title"], "status": s["status"]}
        for s in body["steps"]
    ]
    out += [
        {"id": a["id"], "kind": "action", "title": a["title"], "status": a["status"]}
        for a in body["actions"]
    ]
    out += [
        {"id": r["id"], "kind": "callout", "title": r["role"], "status": r["status"]}
        for r in body["callout"]["roles"]
    ]
    return out


def _planned(item: Mapping[str, Any], edit: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **item,
        "cause": edit.get("cause"),
        "corrective_action": {k: edit.get(k) for k in ("action", "owner", "due")},
    }


def get_review(
    db: Database, site_id: str, incident_id: str, roles: frozenset[Role], *, now: datetime
) -> dict[str, Any]:
    with db.read() as session:
        return served(_row(session, site_id, incident_id, roles), now)


def list_reviews(
    db: Database, site_id: str, roles: frozenset[Role], *, now: datetime
) -> list[dict[str, Any]]:
    """The site's reviews the reader may see, the latest ended first, each with its state and
    whether it is overdue (read without the bodies: a long drill's is megabytes)."""
    columns = [c for c in ReviewRow.__table__.columns if c.name not in ("body", "edits")]
    with db.read() as session:
        load_site(session, site_id)
        rows = session.execute(
            select(*columns)
            .where(ReviewRow.site_id == site_id)
            .order_by(ReviewRow.ended_at.desc(), ReviewRow.incident_id)
        ).all()
    out = []
    for row in rows:
        signed = row.signed_off_at is not None
        if row.drill_id is not None:
            if not (Role.DRILL_CONTROLLER in roles or (Role.COMMANDER in roles and signed)):
                continue
        elif not roles & {Role.COMMANDER, Role.DRILL_CONTROLLER}:
            continue
        out.append(
            {
                "incident_id": row.incident_id,
                "drill_id": row.drill_id,
                "kind": "drill" if row.drill_id is not None else "incident",
                "ended_at": row.ended_at.isoformat(),
                "generated_at": row.generated_at.isoformat(),
                "version": row.version,
                "state": "signed_off" if signed else "draft",
                "signed_off_at": row.signed_off_at.isoformat() if signed else None,
                "signed_off_by": row.signed_off_by,
                "hash": row.hash,
                "due_at": (row.ended_at + OVERDUE_AFTER).isoformat(),
                "overdue": is_overdue(row.ended_at, row.signed_off_at, now),
            }
        )
    return out


def overdue_reviews(
    db: Database, *, now: datetime, site_id: str | None = None
) -> list[dict[str, Any]]:
    """Reviews not signed off :data:`OVERDUE_AFTER` after their incident ended (every site, or
    one): for the wall and ``rallypoint drill list``, which decide who is shown them."""
    query = select(ReviewRow.site_id, ReviewRow.incident_id, ReviewRow.drill_id, ReviewRow.ended_at)
    query = query.where(ReviewRow.signed_off_at.is_(None), ReviewRow.ended_at < now - OVERDUE_AFTER)
    if site_id is not None:
        query = query.where(ReviewRow.site_id == site_id)
    with db.read() as session:
        rows = session.execute(query.order_by(ReviewRow.ended_at)).all()
    return [
        {
            "site_id": r.site_id,
            "incident_id": r.incident_id,
            "drill_id": r.drill_id,
            "ended_at": r.ended_at.isoformat(),
            "due_at": (r.ended_at + OVERDUE_AFTER).isoformat(),
        }
        for r in rows
    ]


# -- editing and signing off -------------------------------------------------------------------


def edit_review(
    db: Database,
    site_id: str,
    incident_id: str,
    items: Mapping[str, Mapping[str, Any]],
    roles: frozenset[Role],
    *,
    actor: str,
    version: int | None,
    source: VersionSource | None,
    now: datetime,
) -> dict[str, Any]:
    """Give items of the improvement plan a cause and a corrective action (action, owner, due
    date). Only the fields given change; ``None`` clears one. Needs the version edited (412 on a
    stale ``If-Match``, 409 on a stale ``version``); a signed-off review is frozen (409)."""
    with db.write() as session:
        row = _editable(session, site_id, incident_id, roles, version, source)
        known = {i["id"] for i in _items(row.body)}
        edits = {key: dict(value) for key, value in row.edits.items()}
        problems = []
        for key, change in items.items():
            if key not in known:
                problems.append(FieldError(f"items.{key}", "no such item in this review"))
                continue
            merged = {**edits.get(key, {}), **{k: _field(k, v) for k, v in change.items()}}
            merged = {k: v for k, v in merged.items() if v is not None}
            if merged:
                edits[key] = merged
            else:
                edits.pop(key, None)
        if problems:
            raise InvalidInput(
                f"{len(problems)} item(s) not in the review of incident '{incident_id}'",
                errors=problems[:100],
            )
        if not items:
            raise InvalidInput(
                "nothing to change: give items with a cause or a corrective action",
                errors=[FieldError("items", "at least one item")],
            )
        row.edits = edits
        row.version += 1
        row.updated_at, row.updated_by = now, actor
        session.flush()
        return served(row, now)


def _field(name: str, value: Any) -> Any:
    if name not in ITEM_FIELDS:  # the route's model allows no other; a direct caller may err
        raise InvalidInput(
            f"an item has no field '{name}'",
            errors=[FieldError(name, f"one of {', '.join(ITEM_FIELDS)}")],
        )
    if value is None:
        return None
    if name == "due":
        if isinstance(value, date):
            return value.isoformat()
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise InvalidInput(
                f"due is not a date: {str(value)[:40]!r}",
                errors=[FieldError("due", "a date, YYYY-MM-DD")],
            ) from None
    text = str(value).strip()
    return text or None


def _editable(
    session: Session,
    site_id: str,
    incident_id: str,
    roles: frozenset[Role],
    version: int | None,
    source: VersionSource | None,
) -> ReviewRow:
    """The review to change: the caller may, it is not signed off, and they saw its version."""
    row = _row(session, site_id, incident_id, roles, write=True)
    _check_open(row)
    check_version(
        row.version,
        version,
        source,
        f"the review of incident '{incident_id}'",
        body_field="version",
    )
    return row


def _check_open(row: ReviewRow) -> None:
    if row.signed_off_at is not None:
        raise IllegalTransition(
            f"the review of incident '{row.incident_id}' was signed off by {row.signed_off_by} "
            f"at {row.signed_off_at.isoformat()}: it is frozen",
            errors=[FieldError("review", "signed off")],
        )


def sign_off(
    db: Database,
    site_id: str,
    incident_id: str,
    roles: frozenset[Role],
    *,
    actor: str,
    version: int | None,
    source: VersionSource | None,
    now: datetime,
) -> dict[str, Any]:
    """Freeze the review at the version the signer read: its hash is stored and logged
    (``review.signed_off``) in one transaction."""
    with db.write() as session:
        row = _editable(session, site_id, incident_id, roles, version, source)
        digest = review_hash(row.body, row.edits)
        data: dict[str, Any] = {
            "incident_id": incident_id,
            "drill_id": row.drill_id,
            "hash": digest,
            "by": actor,
            "version": row.version,
        }
        if row.drill_id is not None:  # every event of a drill's incident says so
            data["exercise"] = row.drill_id
        event_log.append(
            session,
            site_id,
            "review.signed_off",
            actor=actor,
            data=data,
            incident_id=incident_id,
            at=now,
        )
        row.signed_off_at, row.signed_off_by, row.hash = now, actor, digest
        row.updated_at, row.updated_by = now, actor
        session.flush()
        return served(row, now)


# -- exports -----------------------------------------------------------------------------------


def _frame(db: Database, model: SiteModel) -> MapFrame:
    with db.read() as session:
        basemap = read_features(session, model.site.id, "basemap")
    return map_frame(model, basemap)


def export_html(db: Database, model: SiteModel, review: Mapping[str, Any]) -> str:
    """A review (as :func:`get_review` gave it to its reader) as one printable, self-contained
    HTML document, its maps embedded."""
    return review_html(review, _frame(db, model), timezone=model.site.timezone)


def export_map(
    db: Database,
    model: SiteModel,
    review: Mapping[str, Any],
    map_id: str,
    *,
    fmt: Literal["html", "png"],
) -> bytes:
    """One situation map of a review: self-contained HTML (folium) or a PNG."""
    entry = next((m for m in review["maps"] if m["id"] == map_id), None)
    if entry is None:
        raise NotFound(
            f"the review of incident '{review['incident_id']}' has no map '{map_id}'",
            errors=[FieldError("map_id", f"one of {', '.join(m['id'] for m in review['maps'])}")],
        )
    if entry.get("threat") is None:
        raise NotFound(
            f"map '{map_id}' was not drawn: {entry.get('error')}",
            errors=[FieldError("map_id", "not drawn")],
        )
    frame = _frame(db, model)
    if fmt == "png":
        return map_png(entry, frame)
    return map_html(entry, frame).encode()
