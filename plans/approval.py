"""The review of a plan version: submit, approve, return to draft, withdraw.

Each acts on the plan's latest version, named by the ETag the caller read (``If-Match``), and
only from the state ``plans.workflow.MOVES`` allows. Approving needs someone who neither saved
nor submitted the version (four eyes), and a version that still validates against the site as
it is now: resources may have gone out of service since the plan was written. Each transition is
kept in the version's history and handed to ``record``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput
from gis.storage.tables import PlanTemplateRow
from plans.diff import diff_text, plan_diff
from plans.store import (
    Recorder,
    StoredPlan,
    Via,
    approve_row,
    approved_version,
    checked,
    get_plan,
    latest_row,
    record_transition,
    stored_plan,
)
from plans.workflow import (
    MOVES,
    Action,
    Status,
    check_etag,
    check_four_eyes,
    note_text,
    refuse_move,
    required_note,
)


def _moving(
    session: Session,
    site_id: str,
    plan_id: str,
    action: Action,
    expected: tuple[int, int] | None,
    header: bool,
) -> PlanTemplateRow:
    """The latest version, if it is the one the caller names and ``action`` may move it."""
    row = latest_row(session, site_id, plan_id)
    check_etag((row.version, row.revision), expected, f"plan '{plan_id}'", header=header)
    start, _ = MOVES[action]
    if row.status != start:
        raise refuse_move(action, Status(row.status), row.version, plan_id)
    return row


def _moved(
    session: Session,
    row: PlanTemplateRow,
    action: Action,
    *,
    actor: str,
    now: datetime | None,
    record: Recorder | None,
    details: dict[str, Any],
) -> StoredPlan:
    """Move ``row`` (checked by :func:`_moving`) to where ``action`` leads, and keep the
    transition in its history."""
    start, end = MOVES[action]
    row.status = end.value
    record_transition(
        row,
        action,
        actor=actor,
        at=now or datetime.now(UTC),
        previous=start,
        record=record,
        details=details,
    )
    session.flush()
    return stored_plan(row)


def submit_plan(
    session: Session,
    site_id: str,
    plan_id: str,
    *,
    actor: str,
    expected: tuple[int, int] | None,
    header: bool = True,
    change_note: str | None = None,
    now: datetime | None = None,
    record: Recorder | None = None,
    via: Via = "api",
) -> StoredPlan:
    """Submit the open draft for approval. It needs a change note (given now, or saved with the
    draft), and must still validate against the site."""
    row = _moving(session, site_id, plan_id, "submitted", expected, header)
    note = note_text(change_note, "change_note") or row.change_note
    note = required_note(
        note, "change_note", f"say what changed in plan '{plan_id}' version {row.version}"
    )
    checked(session, site_id, row.body)  # the site may have changed since it was saved
    now = now or datetime.now(UTC)
    row.change_note, row.submitted_at, row.submitted_by = note, now, actor
    details = {"change_note": note, "via": via}
    return _moved(session, row, "submitted", actor=actor, now=now, record=record, details=details)


def approve_plan(
    session: Session,
    site_id: str,
    plan_id: str,
    *,
    actor: str,
    expected: tuple[int, int] | None,
    header: bool = True,
    comment: str | None = None,
    now: datetime | None = None,
    record: Recorder | None = None,
    via: Via = "api",
) -> StoredPlan:
    """Approve the submitted version: it is in force from now, and the version that was
    approved before is superseded. Nobody who saved or submitted it may approve it (403)."""
    row = _moving(session, site_id, plan_id, "approved", expected, header)
    check_four_eyes(row.history, actor, f"plan '{plan_id}' version {row.version}")
    checked(session, site_id, row.body)
    return approve_row(
        session,
        row,
        actor=actor,
        at=now or datetime.now(UTC),
        record=record,
        details={"comment": note_text(comment, "comment"), "via": via},
    )


def return_plan(
    session: Session,
    site_id: str,
    plan_id: str,
    *,
    actor: str,
    expected: tuple[int, int] | None,
    reason: str | None,
    header: bool = True,
    now: datetime | None = None,
    record: Recorder | None = None,
    via: Via = "api",
) -> StoredPlan:
    """Return the submitted version to draft, saying why; its planners edit it again."""
    row = _moving(session, site_id, plan_id, "returned", expected, header)
    why = required_note(reason, "reason", "say why the version goes back to draft")
    row.submitted_at = row.submitted_by = None
    details = {"reason": why, "via": via}
    return _moved(session, row, "returned", actor=actor, now=now, record=record, details=details)


def withdraw_plan(
    session: Session,
    site_id: str,
    plan_id: str,
    *,
    actor: str,
    expected: tuple[int, int] | None,
    reason: str | None = None,
    header: bool = True,
    now: datetime | None = None,
    record: Recorder | None = None,
    via: Via = "api",
) -> StoredPlan:
    """Withdraw the open draft: kept in the history, never used; the approved version stays."""
    row = _moving(session, site_id, plan_id, "withdrawn", expected, header)
    details = {"reason": note_text(reason, "reason"), "via": via}
    return _moved(session, row, "withdrawn", actor=actor, now=now, record=record, details=details)


def version_diff(
    session: Session,
    site_id: str,
    plan_id: str,
    *,
    from_version: int | None = None,
    to_version: int | None = None,
) -> dict[str, Any]:
    """What changed from one version of a plan to another (``plans.diff``), with the text.

    ``to_version`` is the latest by default; ``from_version`` the approved version (what is in
    force), or the version before ``to_version`` when that is the approved one or none is."""
    new = get_plan(session, site_id, plan_id, version=to_version)
    if from_version is None:
        in_force = approved_version(session, site_id, plan_id)
        from_version = new.version - 1 if in_force in (None, new.version) else in_force
        if from_version < 1:
            raise InvalidInput(
                f"plan '{plan_id}' has no version before {new.version} to compare with",
                errors=[FieldError("from", "a version to compare with")],
            )
    old = get_plan(session, site_id, plan_id, version=from_version)
    changes = plan_diff(old.template, new.template)
    head = (
        f"plan {plan_id}: version {old.version} ({old.status.value}) -> version "
        f"{new.version} ({new.status.value}), {len(changes)} "
        f"change{'' if len(changes) == 1 else 's'}\n"
    )
    return {
        "plan": plan_id,
        "from": {"version": old.version, "etag": old.etag, "status": old.status.value},
        "to": {"version": new.version, "etag": new.etag, "status": new.status.value},
        "changes": changes,
        "text": head + diff_text(changes),
    }
