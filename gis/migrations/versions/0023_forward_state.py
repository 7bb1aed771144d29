"""A site's forwarding to the group (issue 18): ``forward_state`` and ``group_plans``.

At a site that forwards its event log to the group (``command.forwarder``): how far the group
has acknowledged it, the last error, and the group's plan versions not taken (conflicts); and
which plans the group owns (their versions come down from the group; a local save is refused).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "forward_state",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("group_url", sa.String(500), nullable=False),
        sa.Column("acked_seq", sa.Integer(), nullable=False),
        sa.Column("acked_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_at", UTCDateTime(), nullable=True),
        sa.Column("plans_at", UTCDateTime(), nullable=True),
        sa.Column("plan_conflicts", sa.JSON(), nullable=False),
        _site_fk("forward_state"),
        sa.PrimaryKeyConstraint("site_id", name="pk_forward_state"),
    )
    op.create_table(
        "group_plans",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(500), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("taken_at", UTCDateTime(), nullable=False),
        _site_fk("group_plans"),
        sa.PrimaryKeyConstraint("site_id", "plan_id", name="pk_group_plans"),
    )


def downgrade() -> None:
    op.drop_table("group_plans")
    op.drop_table("forward_state")
