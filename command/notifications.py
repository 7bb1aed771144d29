"""Call-tree notifications: delivered in the app and to an outbound webhook, acknowledged by the
people called, passed on to the fallback contact when nobody answers in time.

A call-tree entry of an activated level becomes a ``notification.requested`` event naming its
first contact. From there:
- **In the app.** Every subscriber of the site receives the event itself.
- **Webhook.** With ``RALLYPOINT_WEBHOOK_URL`` set, the notification is also posted to that
  gateway (SMS or phone), with up to three attempts, backing off from half a second. Each outcome
  is logged: ``notification.delivered`` or ``notification.failed``, naming the recipient.
- **Acknowledgement.** Only the person called answers, or a commander on their behalf. Each
  notice has its own answer token (32 random bytes; the database keeps its SHA-256), which goes
  to the gateway only, inside the call-out's link (``/answer#<token>``), as SMS gateways do:
  the link's page posts it to ``POST /api/notices/answer``. A signed-in user cannot answer
  with their session, whatever their role; a commander may answer for the person
  (``POST .../notifications/{seq}/ack`` naming the channel they were reached on, such as
  ``radio``). Either way ``notification.acknowledged`` is logged, saying who answered how.
- **Fallback.** If nobody acknowledges within the entry's ``acknowledge_within_s``, the next
  contact is requested (a new ``notification.requested`` with ``fallback: true``). When no contact
  is left, ``notification.unanswered`` is logged.

Notifications are identified by the sequence number of the event that requested them.
:func:`incident_notices` folds an incident's logged notification events into each notice's
status, for the wall's call tree (``GET .../incidents/{id}/notices``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from command import events as event_log
from gis.errors import CorruptEvent, FieldError, NotFound
from gis.storage.tables import EventRow, NoticeTokenRow

log = logging.getLogger(__name__)

ATTEMPTS = 3
FIRST_BACKOFF_S = 0.5


@dataclass
class Notice:
    site_id: str
    seq: int  # of the notification.requested event: the notice's id
    incident_id: str | None
    role: str
    contacts: list[dict[str, Any]]  # the first, then the fallbacks
    index: int
    acknowledge_within_s: float
    due_at: datetime
    acknowledged: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    #: The notice's answer token, held in memory only until it is delivered (the database
    #: keeps its hash; the event log never sees it).
    answer_token: str | None = None

    @property
    def contact(self) -> dict[str, Any]:
        return self.contacts[self.index]


class CallTree:
    """The notifications of every site still waiting for an answer."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, int], Notice] = {}

    def track(self, logged: Sequence[event_log.LoggedEvent]) -> list[Notice]:
        """Notices for the ``notification.requested`` events among ``logged``."""
        out = []
        for event in logged:
            if event.type != "notification.requested":
                continue
            data = dict(event.data)
            # The contact called now and those left after them: ``index`` counts in this list
            # (the event's own "index" is the place in the whole call tree, for the record).
            contacts = [data["contact"], *data.get("fallbacks", [])]
            notice = Notice(
                site_id=event.site_id,
                seq=event.seq,
                incident_id=event.incident_id,
                role=str(data["role"]),
                contacts=contacts,
                index=0,
                acknowledge_within_s=float(data["acknowledge_within_s"]),
                due_at=event.at + timedelta(seconds=float(data["acknowledge_within_s"])),
                data=data,
            )
            self.open[(event.site_id, event.seq)] = notice
            out.append(notice)
        return out

    def acknowledge(self, site_id: str, seq: int) -> Notice | None:
        notice = self.open.pop((site_id, seq), None)
        if notice is not None:
            notice.acknowledged = True
        return notice

    def overdue(
        self, now: datetime, *, skip: Collection[str] = ()
    ) -> list[tuple[str, event_log.Draft]]:
        """Drafts for every notice unanswered past its time: the next contact, or unanswered
        (none of the incidents in ``skip``: held drills')."""
        out: list[tuple[str, event_log.Draft]] = []
        for key, notice in sorted(self.open.items(), key=lambda kv: kv[1].due_at):
            if notice.due_at > now or notice.incident_id in skip:
                continue
            del self.open[key]
            nxt = notice.index + 1
            if nxt < len(notice.contacts):
                data = {
                    **notice.data,
                    "contact": notice.contacts[nxt],
                    "fallbacks": notice.contacts[nxt + 1 :],
                    "index": int(notice.data.get("index", 0)) + 1,
                    "fallback": True,
                    "after": notice.seq,
                }
                kind = "notification.requested"
            else:
                data = {"role": notice.role, "after": notice.seq, "contacts": notice.contacts}
                kind = "notification.unanswered"
            out.append(
                (
                    notice.site_id,
                    event_log.Draft(kind, "system", data, notice.incident_id, notice.due_at),
                )
            )
        return out


#: How a commander reached the person they answer for.
CHANNELS = ("phone", "sms", "radio", "in_person", "app")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_answer_tokens(session: Session, notices: Sequence[Notice], now: datetime) -> None:
    """Give each notice its answer token (stored as its hash, in ``session``'s transaction)."""
    for notice in notices:
        token = secrets.token_urlsafe(32)
        session.add(
            NoticeTokenRow(
                token_hash=token_hash(token),
                site_id=notice.site_id,
                seq=notice.seq,
                created_at=now,
                used_at=None,
            )
        )
        notice.answer_token = token
    session.flush()


def answered_by_token(session: Session, token: str) -> NoticeTokenRow | None:
    """The notice an answer token belongs to, or None for an unknown one."""
    if not 0 < len(token) <= 200:
        return None
    return session.scalar(
        select(NoticeTokenRow).where(NoticeTokenRow.token_hash == token_hash(token))
    )


def answer_link(base_url: str | None, token: str) -> str:
    """The link the person called opens: the token in the fragment, which browsers never send
    to a server, so no access log or proxy ever holds it."""
    return f"{(base_url or '').rstrip('/')}/answer#{token}"


async def deliver(
    client: httpx.AsyncClient, url: str, notice: Notice, public_url: str | None = None
) -> tuple[bool, int, str]:
    """Post one notice to the webhook gateway, retrying: (delivered, attempts, detail). The
    payload carries the notice's answer link and token, for the gateway to pass on to the
    person called (a reply keyword of an SMS can post the token too)."""
    payload: Mapping[str, Any] = {
        "notification": notice.seq,
        "site_id": notice.site_id,
        "incident_id": notice.incident_id,
        "role": notice.role,
        "contact": notice.contact,
        "acknowledge_within_s": notice.acknowledge_within_s,
        # A drill's call-out says so first, whatever the gateway shows of the rest.
        **(
            {"exercise": notice.data["exercise"], "label": notice.data.get("label")}
            if notice.data.get("exercise")
            else {}
        ),
        **(
            {
                "answer_token": notice.answer_token,
                "answer_url": answer_link(public_url, notice.answer_token),
            }
            if notice.answer_token
            else {}
        ),
    }
    detail = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = await client.post(url, json=payload, timeout=5.0)
            if response.status_code < 300:
                return True, attempt, f"HTTP {response.status_code}"
            detail = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            detail = type(exc).__name__
        if attempt < ATTEMPTS:
            await asyncio.sleep(FIRST_BACKOFF_S * 2 ** (attempt - 1))
    log.warning("notification %s to %s not delivered: %s", notice.seq, notice.contact, detail)
    return False, ATTEMPTS, detail


#: What became of a notice, as :func:`fold_notices` says it.
NOTICE_STATUSES = ("waiting", "delivered", "failed", "acknowledged", "passed_on", "unanswered")
#: Statuses that a later delivery outcome no longer changes (the call has moved on).
_SETTLED = ("acknowledged", "passed_on", "unanswered")
#: A notice's role names (the plan's, in English and Chinese), as the plan's roles call them.
_ROLE_NAMES = (("role_name", "name"), ("role_name_zh", "name_zh"))


def incident_notices(session: Session, site_id: str, incident_id: str) -> list[dict[str, Any]]:
    """Every notice of an incident, active or closed, with its status, from the log (read raw:
    a corrupt row is :class:`CorruptEvent`, 409, naming it); :class:`NotFound` for an
    incident the site's log does not hold."""
    query = (
        select(*event_log.RAW_COLUMNS)
        .where(
            EventRow.site_id == site_id,
            EventRow.incident_id == incident_id,
            or_(
                EventRow.type.startswith("notification."),
                EventRow.type.in_(("incident.activated", "plan.run.activated")),
            ),
        )
        .order_by(EventRow.seq)
    )
    events = []
    for raw in session.execute(query):
        try:
            events.append(event_log.read_row(raw))
        except event_log.Unreadable as exc:
            raise CorruptEvent(
                f"event {raw.seq} of incident {incident_id} is unreadable: {exc}; see "
                "'rallypoint audit verify'",
                errors=[FieldError("incident", f"event {raw.seq} is unreadable")],
            ) from exc
    if not any(e.type == "incident.activated" for e in events):
        raise NotFound(
            f"no incident '{incident_id}' at site '{site_id}'",
            errors=[FieldError("incident", "unknown")],
        )
    return fold_notices(events)


def fold_notices(events: Iterable[event_log.LoggedEvent]) -> list[dict[str, Any]]:
    """Each ``notification.requested`` of ``events`` (in log order) as a notice with its
    status (:data:`NOTICE_STATUSES`), in order of its ``seq``. The plan's roles, from
    ``plan.run.activated``, give each role its name."""
    roles: dict[str, Mapping[str, Any]] = {}
    notices: dict[int, dict[str, Any]] = {}
    for event in events:
        try:
            _fold(notices, roles, event)
        except (KeyError, TypeError, ValueError, AttributeError):  # audit verify names it
            log.error("event %s/%s is unreadable; skipped", event.site_id, event.seq)
    return [notices[seq] for seq in sorted(notices)]


def _fold(
    notices: dict[int, dict[str, Any]],
    roles: dict[str, Mapping[str, Any]],
    event: event_log.LoggedEvent,
) -> None:
    data, at = event.data, event.at.isoformat()
    if event.type == "plan.run.activated":
        template = data["data"]["template"]
        roles.update({str(r["id"]): r for r in template.get("roles", [])})
        return
    if event.type == "notification.requested":
        role = str(data["role"])
        named = roles.get(role, {})
        within = float(data["acknowledge_within_s"])
        after = data.get("after")
        notices[event.seq] = {
            "seq": event.seq,
            "role": role,
            **{k: named[n] for k, n in _ROLE_NAMES if named.get(n)},
            **({"level": data["level"]} if "level" in data else {}),
            "order": data.get("order"),
            "contact": data["contact"],
            "index": int(data.get("index", 0)),
            "fallback": bool(data.get("fallback", False)),
            "after": int(after) if after is not None else None,
            "requested_at": at,
            "due_at": (event.at + timedelta(seconds=within)).isoformat(),
            "status": "waiting",
            "delivered_at": None,
            "failure": None,
            "acknowledged": None,
        }
        before = notices.get(int(after)) if after is not None else None
        if before is not None and before["status"] not in _SETTLED:
            before["status"] = "passed_on"
        return
    key = data.get("notification", data.get("after"))
    notice = notices.get(int(key)) if key is not None else None
    if notice is None:
        return
    if event.type == "notification.delivered":
        notice["delivered_at"], notice["failure"] = at, None
        if notice["status"] not in _SETTLED:
            notice["status"] = "delivered"
    elif event.type == "notification.failed":
        notice["failure"] = str(data.get("detail") or "not delivered")
        if notice["status"] not in _SETTLED:
            notice["status"] = "failed"
    elif event.type == "notification.acknowledged":
        notice["status"] = "acknowledged"
        notice["acknowledged"] = {
            "by": event.actor,  # the commander's username, or "contact:<name>" by the link
            "on_behalf": data.get("by") == "commander",
            "channel": data.get("channel"),
            "at": at,
            **({"note": data["note"]} if data.get("note") else {}),
        }
    elif event.type == "notification.unanswered" and notice["status"] not in _SETTLED:
        notice["status"] = "unanswered"
