"""False-alarm analysis: the alarm journal, reading history, hot-work permits.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _site(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "alarm_journal",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("sensor_id", sa.String(64), nullable=False),
        sa.Column("substance", sa.String(64), nullable=True),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("peak", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("outcome_by", sa.String(200), nullable=True),
        sa.Column("outcome_at", UTCDateTime(), nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.Column("test", sa.Boolean(), nullable=False),
        sa.Column("shelved", sa.Boolean(), nullable=False),
        sa.Column("generated", sa.Boolean(), nullable=False),
        _site("alarm_journal"),
        sa.PrimaryKeyConstraint("site_id", "id", name="pk_alarm_journal"),
    )
    op.create_index("ix_alarm_journal_started_at", "alarm_journal", ["started_at"])
    op.create_table(
        "alarm_journal_heads",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _site("alarm_journal_heads"),
        sa.PrimaryKeyConstraint("site_id", name="pk_alarm_journal_heads"),
    )
    op.create_table(
        "reading_history",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("sensor_id", sa.String(64), nullable=False),
        sa.Column("period_s", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("direction_deg", sa.Float(), nullable=True),
        sa.Column("generated", sa.Boolean(), nullable=False),
        _site("reading_history"),
        sa.PrimaryKeyConstraint("site_id", "sensor_id", "period_s", name="pk_reading_history"),
    )
    op.create_table(
        "hot_work_permits",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("location", sa.JSON(), nullable=False),
        sa.Column("radius_m", sa.Float(), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_to", UTCDateTime(), nullable=False),
        sa.Column("issued_by", sa.String(200), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("generated", sa.Boolean(), nullable=False),
        _site("hot_work_permits"),
        sa.PrimaryKeyConstraint("site_id", "id", name="pk_hot_work_permits"),
    )
    op.create_index("ix_hot_work_permits_valid_from", "hot_work_permits", ["valid_from"])


def downgrade() -> None:
    op.drop_index("ix_hot_work_permits_valid_from", table_name="hot_work_permits")
    op.drop_table("hot_work_permits")
    op.drop_table("reading_history")
    op.drop_table("alarm_journal_heads")
    op.drop_index("ix_alarm_journal_started_at", table_name="alarm_journal")
    op.drop_table("alarm_journal")
