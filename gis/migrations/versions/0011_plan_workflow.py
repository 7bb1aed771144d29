"""Plan workflow: each version is a draft, submitted, approved (in force for activation),
superseded or withdrawn, with its change note, who and when for each step, and its history.

Before the workflow the latest version of a plan was the one activations used: it becomes the
approved one, and every earlier version superseded (when the next was stored, by whoever stored
it). Going back down deletes the versions newer than each plan's approved one (drafts,
submissions, withdrawn drafts) and the plans never approved: without the workflow the latest
version would be live at once.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: The table as this migration reads and writes it (not the models, which move on).
PLANS = sa.table(
    "plan_templates",
    sa.column("site_id", sa.String),
    sa.column("plan_id", sa.String),
    sa.column("version", sa.Integer),
    sa.column("created_at", UTCDateTime()),
    sa.column("created_by", sa.String),
    sa.column("status", sa.String),
    sa.column("revision", sa.Integer),
    sa.column("updated_at", UTCDateTime()),
    sa.column("updated_by", sa.String),
    sa.column("approved_at", UTCDateTime()),
    sa.column("approved_by", sa.String),
    sa.column("superseded_at", UTCDateTime()),
    sa.column("history", sa.JSON()),
)
NOTE = "in force before the plan workflow (migration 0011)"
#: Columns that every row has once filled in.
REQUIRED: dict[str, sa.types.TypeEngine[Any]] = {
    "status": sa.String(16),
    "revision": sa.Integer(),
    "updated_at": UTCDateTime(),
    "updated_by": sa.String(200),
    "history": sa.JSON(),
}


def upgrade() -> None:
    with op.batch_alter_table("plan_templates") as batch:
        for name, kind in REQUIRED.items():
            batch.add_column(sa.Column(name, kind, nullable=True))
        batch.add_column(sa.Column("change_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("submitted_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("submitted_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("approved_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("approved_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("superseded_at", UTCDateTime(), nullable=True))
    bind = op.get_bind()
    versions: dict[tuple[str, str], list[tuple[int, datetime, str]]] = defaultdict(list)
    for site_id, plan_id, version, at, by in bind.execute(
        sa.select(
            PLANS.c.site_id,
            PLANS.c.plan_id,
            PLANS.c.version,
            PLANS.c.created_at,
            PLANS.c.created_by,
        )
    ):
        versions[(site_id, plan_id)].append((version, at, by))
    for (site_id, plan_id), rows in versions.items():
        rows.sort()
        for i, (version, at, by) in enumerate(rows):
            history: list[dict[str, Any]] = [
                {"action": "approved", "by": by, "at": at.isoformat(), "note": NOTE}
            ]
            values: dict[str, Any] = {
                "status": "approved",
                "revision": 1,
                "updated_at": at,
                "updated_by": by,
                "approved_at": at,
                "approved_by": by,
            }
            if i + 1 < len(rows):  # the next version took its place when it was stored
                later, later_at, later_by = rows[i + 1]
                history.append(
                    {
                        "action": "superseded",
                        "by": later_by,
                        "at": later_at.isoformat(),
                        "by_version": later,
                    }
                )
                values.update(status="superseded", superseded_at=later_at)
            bind.execute(
                PLANS.update()
                .where(
                    PLANS.c.site_id == site_id,
                    PLANS.c.plan_id == plan_id,
                    PLANS.c.version == version,
                )
                .values(history=history, **values)
            )
    with op.batch_alter_table("plan_templates") as batch:
        for name, kind in REQUIRED.items():
            batch.alter_column(name, existing_type=kind, nullable=False)


def downgrade() -> None:
    bind = op.get_bind()
    in_force: dict[tuple[str, str], int] = defaultdict(int)
    for site_id, plan_id, version, status in bind.execute(
        sa.select(PLANS.c.site_id, PLANS.c.plan_id, PLANS.c.version, PLANS.c.status)
    ):
        if status in ("approved", "superseded"):
            key = (site_id, plan_id)
            in_force[key] = max(in_force[key], version)
    for site_id, plan_id, version, _ in list(
        bind.execute(sa.select(PLANS.c.site_id, PLANS.c.plan_id, PLANS.c.version, PLANS.c.status))
    ):
        if version > in_force[(site_id, plan_id)]:
            bind.execute(
                PLANS.delete().where(
                    PLANS.c.site_id == site_id,
                    PLANS.c.plan_id == plan_id,
                    PLANS.c.version == version,
                )
            )
    with op.batch_alter_table("plan_templates") as batch:
        for name in (
            "superseded_at",
            "approved_by",
            "approved_at",
            "submitted_by",
            "submitted_at",
            "change_note",
            *reversed(REQUIRED),
        ):
            batch.drop_column(name)
