"""The plan workflow's rules: the states of a plan version, who may move it where, and the ETag
that names exactly what a reviewer saw. No database here (``plans.store`` applies them).

::

    save ──> draft ──submit──> submitted ──approve──> approved ──(newer approved)──> superseded
              │ ^                  │
              │ └─────return───────┘
              └──withdraw──> withdrawn

- A plan has at most one **open** version (a draft or a submission), and it is the latest.
- The **approved** version is the one in force: activations and drills use it, and it stays in
  force while a newer draft is worked on, until a newer version is approved.
- A draft is edited in place; each save counts a **revision**, and the ETag names both:
  ``"4"`` for version 4 as first saved, ``"4.2"`` after its second save. Every change and
  every transition names the ETag it acts on (``If-Match``), so a reviewer approves exactly
  what they read.
- **Four eyes**: whoever saved or submitted a version may not approve it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from gis.errors import (
    FieldError,
    IllegalTransition,
    InvalidInput,
    NotPermitted,
    PreconditionFailed,
    RallypointError,
    VersionConflict,
    VersionRequired,
)

#: The longest change note, return reason or approval comment.
MAX_NOTE = 2000


class Status(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    SUPERSEDED = "superseded"
    WITHDRAWN = "withdrawn"


OPEN = frozenset({Status.DRAFT, Status.SUBMITTED})

Action = Literal["saved", "submitted", "approved", "returned", "withdrawn", "superseded"]

#: The state a transition starts from, and the one it leads to.
MOVES: dict[str, tuple[Status, Status]] = {
    "submitted": (Status.DRAFT, Status.SUBMITTED),
    "approved": (Status.SUBMITTED, Status.APPROVED),
    "returned": (Status.SUBMITTED, Status.DRAFT),
    "withdrawn": (Status.DRAFT, Status.WITHDRAWN),
}
#: What each state allows, for the refusal's words.
ALLOWED: dict[Status, str] = {
    Status.DRAFT: "it can be saved again, submitted or withdrawn",
    Status.SUBMITTED: "it can be approved, or returned to draft with a reason",
    Status.APPROVED: "it is in force; save a new version to change the plan",
    Status.SUPERSEDED: "a newer version was approved; save a new version to change the plan",
    Status.WITHDRAWN: "save a new version to change the plan",
}


class PlanNotApproved(RallypointError):
    """The plan exists but no version of it is approved: it cannot be activated or drilled."""

    status_code = 409
    slug = "plan-not-approved"
    title = "Plan not approved"


# -- ETags -------------------------------------------------------------------------------------


def etag(version: int, revision: int) -> str:
    """``4`` for version 4 as first saved, ``4.2`` after its second save (no quotes)."""
    return str(version) if revision == 1 else f"{version}.{revision}"


_ETAG = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,9}))?")


def parse_etag(value: str | None, *, field_name: str = "If-Match") -> tuple[int, int] | None:
    """``"4"``, ``W/"4.2"`` or ``4.2`` -> (version, revision); ``*`` or nothing -> None."""
    if value is None or value.strip() in ("", "*"):
        return None
    text = value.strip().removeprefix("W/").strip('"')
    match = _ETAG.fullmatch(text)
    if match is None or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 2):
        raise InvalidInput(
            f'{field_name} must be the ETag of a plan version, such as "4" or "4.2"',
            errors=[FieldError(field_name, 'an ETag such as "4" or "4.2"')],
        )
    return int(match[1]), int(match[2] or 1)


def check_etag(
    current: tuple[int, int],
    expected: tuple[int, int] | None,
    what: str,
    *,
    header: bool = True,
) -> None:
    """Refuse a change that names no ETag (428) or another one (412 from If-Match, else 409)."""
    now = etag(*current)
    where = "If-Match header" if header else "version"
    if expected is None:
        raise VersionRequired(
            f'say which version of {what} you are changing ({where}: its ETag, "{now}")',
            errors=[FieldError("If-Match" if header else "version", "required")],
        )
    if expected != current:
        error = PreconditionFailed if header else VersionConflict
        raise error(
            f'{what} is at "{now}", not "{etag(*expected)}": someone changed it since you '
            "read it; reload it and look again",
            errors=[FieldError("version", f'stale: current ETag is "{now}"')],
        )


# -- transitions -------------------------------------------------------------------------------


def refuse_move(action: str, status: Status, version: int, plan_id: str) -> IllegalTransition:
    """The 409 for ``action`` on a version that is ``status``."""
    done = "edited" if action == "saved" else action
    return IllegalTransition(
        f"plan '{plan_id}' version {version} is {status.value}, so it cannot be {done}: "
        f"{ALLOWED[status]}",
        errors=[FieldError("status", status.value)],
        extra={"state": status.value},
    )


def note_text(value: str | None, field_name: str) -> str | None:
    """A note stripped of surrounding space (None when empty); at most :data:`MAX_NOTE`
    characters, none of them NUL."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if "\x00" in text:  # no text column takes it (PostgreSQL refuses NUL)
        raise InvalidInput(
            f"{field_name} must not contain NUL characters",
            errors=[FieldError(field_name, "text without NUL characters")],
        )
    if len(text) > MAX_NOTE:
        raise InvalidInput(
            f"{field_name} is at most {MAX_NOTE} characters",
            errors=[FieldError(field_name, f"at most {MAX_NOTE} characters")],
        )
    return text


def required_note(value: str | None, field_name: str, why: str) -> str:
    text = note_text(value, field_name)
    if text is None:
        raise InvalidInput(why, errors=[FieldError(field_name, "required")])
    return text


def authors(history: Iterable[Mapping[str, Any]]) -> set[str]:
    """Who saved or submitted a version: none of them may approve it."""
    return {str(h["by"]) for h in history if h.get("action") in ("saved", "submitted")}


def check_four_eyes(history: Iterable[Mapping[str, Any]], actor: str, what: str) -> None:
    if actor in authors(history):
        raise NotPermitted(
            f"{actor} saved or submitted {what}: another commander or approver must approve "
            "it (four eyes)",
            errors=[FieldError("approver", "not an author of this version")],
        )


def body_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of a plan's canonical JSON: what a logged transition says the version held."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Transition:
    """One step of a plan version through the workflow, as the site's log records it."""

    plan_id: str
    version: int
    revision: int
    action: Action
    actor: str
    at: datetime
    status: Status
    previous: Status | None
    digest: str
    #: change_note, reason or comment, and where it came from (``via``)
    details: Mapping[str, Any] = field(default_factory=dict)
    #: The version this approval took the place of.
    supersedes: int | None = None

    def event_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "plan_id": self.plan_id,
            "version": self.version,
            "revision": self.revision,
            "etag": etag(self.version, self.revision),
            "status": self.status.value,
            "from": self.previous.value if self.previous is not None else None,
            "body_sha256": self.digest,
            **self.details,
        }
        if self.supersedes is not None:
            data["supersedes"] = self.supersedes
        return data

    def history_entry(self, seq: int | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "action": self.action,
            "by": self.actor,
            "at": self.at.isoformat(),
            "revision": self.revision,
            **self.details,
        }
        if self.supersedes is not None:
            entry["supersedes"] = self.supersedes
        if seq is not None:
            entry["seq"] = seq
        return entry
