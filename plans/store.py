"""Plan templates in the database: versioned, validated before they are stored.

A template is stored only when it validates against the site: its materials against the
site's available resources, and its scenario against the site's other plans. Every change adds a
version and never rewrites one, so a running plan can always read the version it pinned.
Changing a template needs the version the planner last saw, as for features (428 without one,
412 or 409 when it is stale).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound
from gis.layers import VersionSource, check_version
from gis.model import ResourceStatus
from gis.sites import load_site
from gis.storage.tables import PlanTemplateRow, ResourceRow
from plans.model import PlanTemplate, data_from_yaml, template_from_data
from plans.validation import check_plan, plan_problems, schema_problems


@dataclass(frozen=True)
class StoredPlan:
    site_id: str
    version: int
    template: PlanTemplate
    created_at: datetime
    created_by: str
    #: The YAML as its planner wrote it, if it came as YAML.
    source: str | None = None

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
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "template": self.template.model_dump(mode="json"),
        }

    def summary(self) -> dict[str, Any]:
        t = self.template
        return {
            "id": t.id,
            "version": self.version,
            "title": t.title,
            "title_zh": t.title_zh,
            "scenario": t.scenario.key,
            "hazard": t.scenario.hazard.value,
            "lead_department": t.lead_departments[0] if t.lead_departments else None,
            "steps": len(t.steps()),
            "updated_at": self.created_at.isoformat(),
            "updated_by": self.created_by,
        }


def _stored(row: PlanTemplateRow) -> StoredPlan:
    return StoredPlan(
        row.site_id,
        row.version,
        template_from_data(row.body),
        row.created_at,
        row.created_by,
        row.source,
    )


def site_inventory(session: Session, site_id: str) -> dict[str, int]:
    """Available resources by kind (summing each feature's quantity)."""
    rows = session.execute(
        select(ResourceRow.kind, func.sum(ResourceRow.quantity))
        .where(ResourceRow.site_id == site_id, ResourceRow.status == ResourceStatus.AVAILABLE)
        .group_by(ResourceRow.kind)
    )
    return {str(kind): int(total or 0) for kind, total in rows}


def _latest_rows(session: Session, site_id: str) -> list[PlanTemplateRow]:
    latest = (
        select(PlanTemplateRow.plan_id, func.max(PlanTemplateRow.version).label("version"))
        .where(PlanTemplateRow.site_id == site_id)
        .group_by(PlanTemplateRow.plan_id)
        .subquery()
    )
    return list(
        session.scalars(
            select(PlanTemplateRow)
            .join(
                latest,
                (PlanTemplateRow.plan_id == latest.c.plan_id)
                & (PlanTemplateRow.version == latest.c.version),
            )
            .where(PlanTemplateRow.site_id == site_id)
            .order_by(PlanTemplateRow.plan_id)
        )
    )


def list_plans(session: Session, site_id: str) -> list[StoredPlan]:
    """The latest version of every plan of the site."""
    load_site(session, site_id)
    return [_stored(row) for row in _latest_rows(session, site_id)]


def get_plan(
    session: Session, site_id: str, plan_id: str, *, version: int | None = None
) -> StoredPlan:
    """A plan's latest version, or the version asked for."""
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
    return _stored(row)


def plan_versions(session: Session, site_id: str, plan_id: str) -> list[dict[str, Any]]:
    get_plan(session, site_id, plan_id)
    rows = session.execute(
        select(PlanTemplateRow.version, PlanTemplateRow.created_at, PlanTemplateRow.created_by)
        .where(PlanTemplateRow.site_id == site_id, PlanTemplateRow.plan_id == plan_id)
        .order_by(PlanTemplateRow.version)
    )
    return [{"version": v, "created_at": at.isoformat(), "created_by": by} for v, at, by in rows]


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
        others=[p.template for p in list_plans(session, site_id)],
    )


def _checked(session: Session, site_id: str, data: Any) -> PlanTemplate:
    others = [p.template for p in list_plans(session, site_id)]
    return check_plan(data, site_inventory=site_inventory(session, site_id), others=others)


def create_plan(
    session: Session,
    site_id: str,
    data: Any,
    *,
    actor: str,
    now: datetime | None = None,
    source: str | None = None,
) -> StoredPlan:
    """Store a new plan as version 1 (409 if its id is taken); ``source``: the YAML it was
    read from, kept as written."""
    load_site(session, site_id)
    template = _checked(session, site_id, data)
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
    return _insert(session, site_id, template, 1, actor, now, source)


def update_plan(
    session: Session,
    site_id: str,
    plan_id: str,
    data: Any,
    *,
    actor: str,
    expected_version: int | None,
    version_source: VersionSource | None,
    now: datetime | None = None,
    source: str | None = None,
) -> StoredPlan:
    """Store the next version of a plan, if the caller saw the current one."""
    load_site(session, site_id)
    current = session.scalars(
        select(PlanTemplateRow)
        .where(PlanTemplateRow.site_id == site_id, PlanTemplateRow.plan_id == plan_id)
        .order_by(PlanTemplateRow.version.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if current is None:
        raise NotFound(
            f"no plan '{plan_id}' at site '{site_id}'", errors=[FieldError("plan", "unknown")]
        )
    check_version(
        current.version, expected_version, version_source, f"plan '{plan_id}'", body_field=None
    )
    if isinstance(data, Mapping) and data.get("id", plan_id) != plan_id:
        raise InvalidInput(
            f"the body is plan '{data.get('id')}', the path names '{plan_id}'",
            errors=[FieldError("id", f"must be '{plan_id}'")],
        )
    template = _checked(session, site_id, data)
    return _insert(session, site_id, template, current.version + 1, actor, now, source)


def _insert(
    session: Session,
    site_id: str,
    template: PlanTemplate,
    version: int,
    actor: str,
    now: datetime | None,
    source: str | None = None,
) -> StoredPlan:
    row = PlanTemplateRow(
        site_id=site_id,
        plan_id=template.id,
        version=version,
        title=template.title,
        scenario_key=template.scenario.key,
        body=template.model_dump(mode="json"),
        source=source,
        created_at=now or datetime.now(UTC),
        created_by=actor,
    )
    session.add(row)
    session.flush()
    return _stored(row)


def load_plan_files(
    session: Session,
    site_id: str,
    paths: Sequence[Path],
    *,
    actor: str,
    if_exists: Literal["fail", "skip", "replace"] = "fail",
) -> list[tuple[str, str]]:
    """Load plan files (YAML or JSON) into a site in one transaction: all or nothing.

    With ``replace`` a plan that changed gets its next version; an unchanged one is left.
    Returns (plan id, what happened) per file.
    """
    done: list[tuple[str, str]] = []
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
        try:
            current = get_plan(session, site_id, template.id)
        except NotFound:
            create_plan(session, site_id, template, actor=actor, source=yaml_text)
            done.append((template.id, "created"))
            continue
        if if_exists == "fail":
            raise AlreadyExists(
                f"plan '{template.id}' ({path.name}) exists at site '{site_id}'",
                errors=[FieldError("id", "taken")],
            )
        if if_exists == "skip" or current.template == template:
            done.append((template.id, f"left at version {current.version}"))
            continue
        stored = update_plan(
            session,
            site_id,
            template.id,
            template,
            actor=actor,
            expected_version=current.version,
            version_source="body",
            source=yaml_text,
        )
        done.append((template.id, f"version {stored.version}"))
    return done
