"""Domain errors that carry their meaning.

Every error a user can cause is a :class:`RallypointError` with an HTTP-like status, a short
title, a user-safe detail and, where it helps, the offending fields. ``command.problems`` maps
them to ``application/problem+json`` (RFC 9457); the domain itself knows nothing of HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a piece of input was refused; ``row`` is 1-based for file imports."""

    field: str
    reason: str
    row: int | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"field": self.field, "reason": self.reason}
        if self.row is not None:
            out["row"] = self.row
        return out


class RallypointError(Exception):
    """Base class: ``status_code`` and ``slug`` name the problem type."""

    status_code = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        #: Extension members of the problem body (RFC 9457, section 3.2).
        self.extra = extra or {}


class InvalidInput(RallypointError):
    status_code = 422
    slug = "invalid-input"
    title = "Invalid input"


class InvalidGeometry(InvalidInput):
    slug = "invalid-geometry"
    title = "Invalid geometry"


class NotFound(RallypointError):
    status_code = 404
    slug = "not-found"
    title = "Not found"


class AlreadyExists(RallypointError):
    status_code = 409
    slug = "already-exists"
    title = "Already exists"


class OwnedElsewhere(RallypointError):
    """Another server owns this: a site's event log replicated to the group is written by the
    site's own server only, a plan the group owns is changed at the group (issue 18)."""

    status_code = 409
    slug = "owned-elsewhere"
    title = "Owned by another server"


class VersionConflict(RallypointError):
    """The caller named a version that is no longer current."""

    status_code = 409
    slug = "version-conflict"
    title = "Version conflict"


class PreconditionFailed(VersionConflict):
    """Same as :class:`VersionConflict`, but the stale version came in an ``If-Match`` header."""

    status_code = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class VersionRequired(RallypointError):
    """Changing a feature needs the version the caller last saw, so no edit is lost silently."""

    status_code = 428
    slug = "version-required"
    title = "Version required"


class UnsupportedFormat(RallypointError):
    status_code = 415
    slug = "unsupported-format"
    title = "Unsupported format"


class IllegalTransition(RallypointError):
    """A plan step or run cannot move that way from where it is (the reason says why)."""

    status_code = 409
    slug = "illegal-transition"
    title = "Illegal transition"


class IncidentConflict(RallypointError):
    """The incident's state stands in the way: the plan already runs for this place, or a
    stand-down would leave people missing or steps open. The body says what."""

    status_code = 409
    slug = "incident-conflict"
    title = "Incident conflict"


class NotPermitted(RallypointError):
    """The caller's role may not do this."""

    status_code = 403
    slug = "not-permitted"
    title = "Not permitted"


class Unauthorized(RallypointError):
    """No credentials, or ones that are wrong, expired or revoked: sign in (again)."""

    status_code = 401
    slug = "unauthorized"
    title = "Unauthorized"


class Recovering(RallypointError):
    """The server has just started and is still rebuilding this incident from the event log;
    the answer carries ``Retry-After`` and the recovery's progress."""

    status_code = 503
    slug = "recovering"
    title = "Recovering"
    retry_after_s = 2


class CorruptEvent(RallypointError):
    """A stored event cannot be read back (a damaged row): the log is read up to it."""

    status_code = 409
    slug = "corrupt-event"
    title = "Corrupt event"


class IncidentQuarantined(RallypointError):
    """The incident's logged events are corrupt, so restart recovery left it aside."""

    status_code = 409
    slug = "incident-quarantined"
    title = "Incident quarantined"


class PayloadTooLarge(RallypointError):
    """Input larger than a limit allows: a body, a websocket message, what an archive unpacks
    to. The detail names the limit (and the archive member, for a zip)."""

    status_code = 413
    slug = "payload-too-large"
    title = "Payload too large"
