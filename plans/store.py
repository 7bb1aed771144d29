"""Plan templates in the database: versioned, validated, and moved through the plan workflow.

A version is stored only when it validates against the site: its materials against the site's
available resources, and its scenario against the site's other plans. A new version starts as a
draft, edited in place until it is submitted; an approver who did not write it approves it, and
it takes the place of the version in force (``plans.workflow`` has the rules). Activations and
drills use the approved version only (:func:`approved_plan`). Every change names the ETag the
planner last saw (428 without one, 412 or 409 when it is stale), and every transition is kept
in the version's history and handed to ``record`` (the command server logs it in the site's
event log and keeps the event's number in the history).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound, OwnedElsewhere
from gis.model import ResourceStatus
from gis.sites import load_site
from gis.storage.tables import GroupPlanRow, PlanTemplateRow, ResourceRow, SiteRow
from plans.model import PlanTemplate, data_from_yaml, template_from_data
from plans.validation import check_plan, plan_problems, schema_problems
from plans.workflow import (
    OPEN,
    Action,
    PlanNotApproved,
    Status,
    Transition,
    body_digest,
    check_etag,
    etag,
    note_text,
    refuse_move,
)

#: Logs a transition and gives its event's sequence number (None: not logged).
Recorder = Callable[[Transition], int | None]
#: Where a change came from, as its history and event say.
Via = Literal["api", "cli", "plan load"]


@dataclass(frozen=True)
class StoredPlan:
    site_id: str
    version: int
    template: PlanTemplate
    created_at: datetime
    created_by: str
    #: The YAML as its planner wrote it, if it came as YAML.
    source: str | None = None
    status: Status = Status.APPROVED
    revision: int = 1
    #: Change note, who and when of each step, the history (see :func:`_workflow`).
    workflow: Mapping[str, Any] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return etag(self.version, self.revision)

    def yaml(self) -> str:
        """The plan as YAML: the planner's own text (comments kept) when it came as YAML, else
        written from the stored plan."""
        if self.source is not None:
            return self.source
        header = (
            f"# plan {self.template.id} version {self.version}: sent as JSON, written out as YAML\n"
        )
        body = yaml.safe_dump(
            self.template.model_dump(mode="json", exclude_none=True),
            allow_unicode=True,
            sort_keys=False,
        )
        return header + body

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.template.id,
            "version": self.version,
            **self.workflow,
            "template": self.template.model_dump(mode="json"),
        }

    def summary(self) -> dict[str, Any]:
        t = self.template
        return {
            "id": t.id,
            "version": self.version,
            "status": self.status.value,
            "etag": self.etag,
            "title": t.title,
            "title_zh": t.title_zh,
            "scenario": t.scenario.key,
            "hazard": t.scenario.hazard.value,
            "lead_department": t.lead_departments[0] if t.lead_departments else None,
            "steps": len(t.steps()),
            "updated_at": self.workflow.get("updated_at", self.created_at.isoformat()),
            "updated_by": self.workflow.get("updated_by", self.created_by),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _workflow(row: PlanTemplateRow) -> dict[str, Any]:
    """Where a version stands: its state, ETag, change note, who and when, its history."""
    return {
        "status": row.status,
        "revision": row.revision,
        "etag": etag(row.version, row.revision),
        "change_note": row.change_note,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "updated_at": row.updated_at.isoformat(),
        "updated_by": row.updated_by,
        "submitted_at": _iso(row.submitted_at),
        "submitted_by": row.submitted_by,
        "approved_at": _iso(row.approved_at),
        "approved_by": row.approved_by,
        "superseded_at": _iso(row.superseded_at),
        "history": list(row.history),
    }


def stored_plan(row: PlanTemplateRow) -> StoredPlan:
    return StoredPlan(
        row.site_id,
        row.version,
        template_from_data(row.body),
        row.created_at,
        row.created_by,
        row.source,
        Status(row.status),
        row.revision,
        _workflow(row),
    )


def site_inventory(session: Session, site_id: str) -> dict[str, int]:
    """Available resources by kind (summing each feature's quantity)."""
    rows = session.execute(
        select(ResourceRow.kind, func.sum(ResourceRow.quantity))
        .where(ResourceRow.site_id == site_id, ResourceRow.status == ResourceStatus.AVAILABLE)
        .group_by(ResourceRow.kind)
    )
    return {str(kind): int(total or 0) for kind, total in rows}


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Versions:
    """A plan's versions, lightly: (version, status) in order."""

    plan_id: str
    versions: list[tuple[int, Status]]

    @property
    def latest(self) -> int:
        return self.versions[-1][0]

    @property
    def approved(self) -> int | None:
        return next((v for v, s in reversed(self.versions) if s == Status.APPROVED), None)

    def open(self) -> int | None:
        version, status = self.versions[-1]
        return version if status in OPEN else None


def _versions(session: Session, site_id: str) -> list[_Versions]:
    out: dict[str, list[tuple[int, Status]]] = {}
    for plan_id, version, status in session.execute(
        select(PlanTemplateRow.plan_id, PlanTemplateRow.version, PlanTemplateRow.status)
        .where(PlanTemplateRow.site_id == site_id)
        .order_by(PlanTemplateRow.plan_id, PlanTemplateRow.version)
    ):
        out.setdefault(plan_id, []).append((version, Status(status)))
    return [_Versions(plan_id, versions) for plan_id, versions in out.items()]


def _rows(session: Session, site_id: str, wanted: set[tuple[str, int]]) -> list[PlanTemplateRow]:
    if not wanted:
        return []
    rows = session.scalars(
        select(PlanTemplateRow).where(
            PlanTemplateRow.site_id == site_id,
            PlanTemplateRow.plan_id.in_({p for p, _ in wanted}),
        )
    )
    return [r for r in rows if (r.plan_id, r.version) in wanted]


def list_plans(session: Session, site_id: str) -> list[dict[str, Any]]:
    """Each plan of the site by the version in force (its approved one; its latest when none is
    approved), with the version being worked on: ``approved_version``, ``latest_version``,
    ``latest_status``."""
    load_site(session, site_id)
    plans = _versions(session, site_id)
    shown = {p.plan_id: p.approved or p.latest for p in plans}
    rows = {r.plan_id: r for r in _rows(session, site_id, set(shown.items()))}
    out = []
    for p in plans:
        summary = stored_plan(rows[p.plan_id]).summary()
        summary.update(
            approved_version=p.approved,
            latest_version=p.latest,
            latest_status=p.versions[-1][1].value,
        )
        out.append(summary)
    return out


def approved_plans(session: Session, site_id: str) -> list[StoredPlan]:
    """The approved version of every plan of the site that has one: what may be activated."""
    rows = session.scalars(
        select(PlanTemplateRow)
        .where(PlanTemplateRow.site_id == site_id, PlanTemplateRow.status == Status.APPROVED)
        .order_by(PlanTemplateRow.plan_id)
    )
    return [stored_plan(row) for row in rows]


def get_plan(
    session: Session, site_id: str, plan_id: str, *, version: int | None = None
) -> StoredPlan:
    """A plan's latest version (whatever its state), or the version asked for."""
    load_site(session, site_id)
    query = select(PlanTemplateRow).where(
        PlanTemplateRow.site_id == site_id, PlanTemplateRow.plan_id == plan_id
    )
    if version is not None:
        query = query.where(PlanTemplateRow.version == version)
    row = session.scalars(query.order_by(PlanTemplateRow.version.desc()).limit(1)).first()
    if row is None:
        what = f"plan '{plan_id}'" + (f" version {version}" if version is not None else "")
        raise NotFound(f"no {what} at site '{site_id}'", errors=[FieldError("plan", "unknown")])
    return stored_plan(row)


def approved_plan(session: Session, site_id: str, plan_id: str) -> StoredPlan:
    """The plan's approved version, the one in force for activations and drills: 404 for an
    unknown plan, 409 (:class:`PlanNotApproved`) when no version is approved."""
    latest = get_plan(session, site_id, plan_id)
    if latest.status == Status.APPROVED:
        return latest
    row = session.scalars(
        select(PlanTemplateRow).where(
            PlanTemplateRow.site_id == site_id,
            PlanTemplateRow.plan_id == plan_id,
            PlanTemplateRow.status == Status.APPROVED,
        )
    ).first()
    if row is None:
        raise PlanNotApproved(
            f"plan '{plan_id}' has no approved version (version {latest.version} is "
            f"{latest.status.value}): it can be activated once a commander or approver has "
            "approved it",
            errors=[FieldError("plan_id", "no approved version")],
        )
    return stored_plan(row)


def approved_version(session: Session, site_id: str, plan_id: str) -> int | None:
    """The number of the plan's approved version (None: none is)."""
    found: int | None = session.scalar(
        select(PlanTemplateRow.version).where(
            PlanTemplateRow.site_id == site_id,
            PlanTemplateRow.plan_id == plan_id,
            PlanTemplateRow.status == Status.APPROVED,
        )
    )
    return found


def plan_versions(session: Session, site_id: str, plan_id: str) -> list[dict[str, Any]]:
    """Every version of a plan: state, ETag, change note, who and when, history."""
    get_plan(session, site_id, plan_id)
    rows = session.scalars(
        select(PlanTemplateRow)
        .where(PlanTemplateRow.site_id == site_id, PlanTemplateRow.plan_id == plan_id)
        .order_by(PlanTemplateRow.version)
    )
    return [{"version": row.version, **_workflow(row)} for row in rows]


# -- validation --------------------------------------------------------------------------------


def _claims(session: Session, site_id: str, plan_id: str | None) -> list[PlanTemplate]:
    """The other plans' versions that claim a scenario: each one's approved and open ones."""
    wanted = set()
    for p in _versions(session, site_id):
        if p.plan_id == plan_id:
            continue
        wanted |= {(p.plan_id, v) for v in (p.approved, p.open()) if v is not None}
    return [template_from_data(r.body) for r in _rows(session, site_id, wanted)]


def validate_plan(session: Session, site_id: str, data: Any) -> list[FieldError]:
    """Every problem of ``data`` as a plan of this site, without saving anything."""
    load_site(session, site_id)
    try:
        template = template_from_data(data)
    except ValidationError as exc:
        return schema_problems(exc)
    return plan_problems(
        template,
        site_inventory=site_inventory(session, site_id),
        others=_claims(session, site_id, template.id),
    )


def checked(session: Session, site_id: str, data: Any) -> PlanTemplate:
    plan_id = data.id if isinstance(data, PlanTemplate) else None
    if plan_id is None and isinstance(data, Mapping) and isinstance(data.get("id"), str):
        plan_id = data["id"]
    return check_plan(
        data,
        site_inventory=site_inventory(session, site_id),
        others=_claims(session, site_id, plan_id),
    )


# -- saving drafts -----------------------------------------------------------------------------


def record_transition(
    row: PlanTemplateRow,
    action: Action,
    *,
    actor: str,
    at: datetime,
    previous: Status | None,
    record: Recorder | None,
    details: Mapping[str, Any],
    supersedes: int | None = None,
) -> Transition:
    """Keep a transition in the version's history, and hand it to ``record``."""
    transition = Transition(
        row.plan_id,
        row.version,
        row.revision,
        action,
        actor,
        at,
        Status(row.status),
        previous,
        body_digest(row.body),
        {k: v for k, v in details.items() if v is not None},
        supersedes,
    )
    seq = record(transition) if record is not None else None
    row.history = [*row.history, transition.history_entry(seq)]  # a new list: JSON is saved whole
    return transition


def create_plan(
    session: Session,
    site_id: str,
    data: Any,
    *,
    actor: str,
    now: datetime | None = None,
    source: str | None = None,
    change_note: str | None = None,
    record: Recorder | None = None,
    via: Via = "api",
) -> StoredPlan:
    """Store a new plan as draft version 1 (409 if its id is taken); ``source``: the YAML it
    was read from, kept as written."""
    _lock_site(session, site_id)
    note = note_text(change_note, "change_note")
    template = checked(session, site_id, data)
    exists = session.scalar(
        select(func.count())
        .select_from(PlanTemplateRow)
        .where(PlanTemplateRow.site_id == site_id, PlanTemplateRow.plan_id == template.id)
    )
    if exists:
        raise AlreadyExists(
            f"plan '{template.id}' exists at site '{site_id}': change it with PUT",
            errors=[FieldError("id", "taken")],
        )
    at = now or datetime.now(UTC)
    row = _new_row(site_id, template, 1, actor, at, source, note)
    session.add(row)
    record_transition(
        row,
        "saved",
        actor=actor,
        at=at,
        previous=None,
        record=record,
        details={"change_note": note, "via": via},
    )
    session.flush()
    return stored_plan(row)


def _new_row(
    site_id: str,
    template: PlanTemplate,
    version: int,
    actor: str,
    at: datetime,
    source: str | None,
    note: str | None,
) -> PlanTemplateRow:
    return PlanTemplateRow(
        site_id=site_id,
        plan_id=template.id,
        version=version,
        title=template.title,
        scenario_key=template.scenario.key,
        body=template.model_dump(mode="json"),
        source=source,
        created_at=at,
        created_by=actor,
        status=Status.DRAFT.value,
        revision=1,
        change_note=note,
        updated_at=at,
        updated_by=actor,
        history=[],
    )


def _lock_site(session: Session, site_id: str) -> None:
    """Writers of a site's plans queue on its row until their transaction ends (PostGIS; SQLite
    has one writer anyway), so two saves cannot both take the same next version number."""
    if session.get(SiteRow, site_id, with_for_update=True) is None:
        load_site(session, site_id)  # raises NotFound


def latest_row(session: Session, site_id: str, plan_id: str) -> PlanTemplateRow:
    """The plan's latest version, for a change: the site's plan writers queue first."""
    _lock_site(session, site_id)
    row = session.scalars(
        select(PlanTemplateRow)
        .where(PlanTemplateRow.site_id == site_id, PlanTemplateRow.plan_id == plan_id)
        .order_by(PlanTemplateRow.version.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(
            f"no plan '{plan_id}' at site '{site_id}'", errors=[FieldError("plan", "unknown")]
        )
    return row


def save_plan(
    session: Session,
    site_id: str,
    plan_id: str,
    data: Any,
    *,
    actor: str,
    expected: tuple[int, int] | None,
    header: bool = True,
    now: datetime | None = None,
    source: str | None = None,
    change_note: str | None = None,
    record: Recorder | None = None,
    via: Via = "api",
) -> StoredPlan:
    """Save a plan: its open draft in place (the next revision), or else a new draft version
    after the latest. ``expected`` is the ETag the planner saw of the latest version (from
    If-Match when ``header``). A submitted version is refused (409): it is under review, and
    so is a plan the group owns (409 naming it: its versions come from the group)."""
    current = latest_row(session, site_id, plan_id)
    owner = session.scalar(
        select(GroupPlanRow.owner).where(
            GroupPlanRow.site_id == site_id, GroupPlanRow.plan_id == plan_id
        )
    )
    if owner is not None:
        raise OwnedElsewhere(
            f"plan '{plan_id}' at site '{site_id}' is the group's ({owner}): change it at the "
            "group, whose approved versions come down here",
            errors=[FieldError("plan", f"owned by the group {owner}")],
            extra={"owner": owner},
        )
    check_etag((current.version, current.revision), expected, f"plan '{plan_id}'", header=header)
    if isinstance(data, Mapping) and data.get("id", plan_id) != plan_id:
        raise InvalidInput(
            f"the body is plan '{data.get('id')}', the path names '{plan_id}'",
            errors=[FieldError("id", f"must be '{plan_id}'")],
        )
    status = Status(current.status)
    if status == Status.SUBMITTED:
        raise refuse_move("saved", status, current.version, plan_id)
    note = note_text(change_note, "change_note")
    template = checked(session, site_id, data)
    at = now or datetime.now(UTC)
    if status == Status.DRAFT:
        row = current
        row.body = template.model_dump(mode="json")
        row.title, row.scenario_key, row.source = template.title, template.scenario.key, source
        row.revision += 1
        row.updated_at, row.updated_by = at, actor
        row.change_note = note or row.change_note
    else:
        row = _new_row(site_id, template, current.version + 1, actor, at, source, note)
        session.add(row)
    record_transition(
        row,
        "saved",
        actor=actor,
        at=at,
        previous=Status.DRAFT if row is current else None,
        record=record,
        details={"change_note": note, "via": via},
    )
    session.flush()
    return stored_plan(row)


# -- approving ----------------------------------------------------------------------------------


def approve_row(
    session: Session,
    row: PlanTemplateRow,
    *,
    actor: str,
    at: datetime,
    record: Recorder | None,
    details: Mapping[str, Any],
) -> StoredPlan:
    """Put ``row`` in force: the version approved before it is superseded, both histories
    say so (with the approval's event number when it was logged)."""
    previous = Status(row.status)
    before = session.scalars(
        select(PlanTemplateRow)
        .where(
            PlanTemplateRow.site_id == row.site_id,
            PlanTemplateRow.plan_id == row.plan_id,
            PlanTemplateRow.status == Status.APPROVED,
        )
        .with_for_update()
    ).all()
    row.status = Status.APPROVED.value
    row.approved_at, row.approved_by = at, actor
    replaced = max((b.version for b in before), default=None)
    record_transition(
        row,
        "approved",
        actor=actor,
        at=at,
        previous=previous,
        record=record,
        details=details,
        supersedes=replaced,
    )
    seq = row.history[-1].get("seq")
    for old in before:
        old.status, old.superseded_at = Status.SUPERSEDED.value, at
        entry: dict[str, Any] = {
            "action": "superseded",
            "by": actor,
            "at": at.isoformat(),
            "by_version": row.version,
        }
        if seq is not None:
            entry["seq"] = seq
        old.history = [*old.history, entry]
    session.flush()
    return stored_plan(row)


# -- loading files -----------------------------------------------------------------------------


def load_plan_files(
    session: Session,
    site_id: str,
    paths: Sequence[Path],
    *,
    actor: str,
    if_exists: Literal["fail", "skip", "replace"] = "fail",
    approve: bool = True,
    change_note: str | None = None,
    record: Recorder | None = None,
    now: datetime | None = None,
) -> list[tuple[str, str]]:
    """Load plan files (YAML or JSON) into a site in one transaction: all or nothing.

    The operator's load: with ``approve`` (the default) each plan that is new or changed is
    stored approved, in force at once (the operator vouches for the files, and the history
    says so: ``via: plan load``); without it, as a draft for the workflow. With ``replace`` a
    plan that changed gets its next version (a draft load saves an open draft in place); an
    unchanged one is left. A submitted version, or an open draft when approving, is refused
    (409) rather than overtaken. Returns (plan id, what happened) per file.
    """
    done: list[tuple[str, str]] = []
    at = now or datetime.now(UTC)
    for path in sorted(paths):
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else data_from_yaml(text)
        yaml_text = None if path.suffix == ".json" else text
        try:
            template = template_from_data(data)
        except ValidationError as exc:
            raise InvalidInput(
                f"{path.name} does not match the plan schema",
                errors=[
                    FieldError(f"{path.name}: {e.field}", e.reason) for e in schema_problems(exc)
                ],
            ) from exc
        note = change_note or f"loaded from {path.name}"
        saving: dict[str, Any] = {
            "actor": actor,
            "now": at,
            "source": yaml_text,
            "change_note": note,
            "record": record,
            "via": "plan load",
        }
        try:
            latest = get_plan(session, site_id, template.id)
        except NotFound:
            create_plan(session, site_id, template, **saving)
            if approve:
                approve_as_operator(session, site_id, template.id, actor, at, record)
            done.append((template.id, "created" if approve else "created as draft version 1"))
            continue
        if if_exists == "fail":
            raise AlreadyExists(
                f"plan '{template.id}' ({path.name}) exists at site '{site_id}'",
                errors=[FieldError("id", "taken")],
            )
        reference = latest
        if approve:
            with contextlib.suppress(PlanNotApproved):  # none approved: the latest
                reference = approved_plan(session, site_id, template.id)
        if if_exists == "skip" or reference.template == template:
            done.append((template.id, f"left at version {reference.version}"))
            continue
        if latest.status == Status.SUBMITTED or (approve and latest.status == Status.DRAFT):
            raise refuse_move("saved", latest.status, latest.version, template.id)
        stored = save_plan(
            session,
            site_id,
            template.id,
            template,
            expected=(latest.version, latest.revision),
            header=False,
            **saving,
        )
        if approve:
            approve_as_operator(session, site_id, template.id, actor, at, record)
            done.append((template.id, f"version {stored.version}"))
        else:
            done.append((template.id, f"draft version {stored.version}"))
    return done


def approve_as_operator(
    session: Session,
    site_id: str,
    plan_id: str,
    actor: str,
    at: datetime | None = None,
    record: Recorder | None = None,
) -> None:
    """Approve the plan's latest version as the server's operator: without a submission or a
    second person (the operator's file load, and setups such as the benchmarks')."""
    row = latest_row(session, site_id, plan_id)
    at = at or datetime.now(UTC)
    approve_row(
        session,
        row,
        actor=actor,
        at=at,
        record=record,
        details={"comment": "approved by the operator's plan load", "via": "plan load"},
    )
