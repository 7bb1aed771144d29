"""Drills and reviews: drill scenarios (versioned), drills (the sealed start of a blind one),
and the after-action reviews of ended incidents.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "drill_scenarios",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("scenario_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(2000), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        _site_fk("drill_scenarios"),
        sa.PrimaryKeyConstraint("site_id", "scenario_id", "version", name="pk_drill_scenarios"),
    )
    op.create_table(
        "drills",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("scenario_id", sa.String(64), nullable=False),
        sa.Column("scenario_version", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("window", sa.JSON(), nullable=True),
        sa.Column("sealed_start", UTCDateTime(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        _site_fk("drills"),
        sa.PrimaryKeyConstraint("id", name="pk_drills"),
    )
    op.create_index("ix_drills_site_id", "drills", ["site_id"])
    op.create_index("ix_drills_state", "drills", ["state"])
    op.create_table(
        "reviews",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("drill_id", sa.String(64), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=False),
        sa.Column("generated_at", UTCDateTime(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("edits", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("signed_off_at", UTCDateTime(), nullable=True),
        sa.Column("signed_off_by", sa.String(200), nullable=True),
        sa.Column("hash", sa.String(64), nullable=True),
        _site_fk("reviews"),
        sa.PrimaryKeyConstraint("site_id", "incident_id", name="pk_reviews"),
    )


def downgrade() -> None:
    for table in ("reviews", "drills", "drill_scenarios"):
        op.drop_table(table)
