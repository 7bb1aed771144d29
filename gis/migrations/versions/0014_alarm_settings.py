"""Alarm management: per-sensor alarm settings (tiers, deadband, delays), voting areas, shelving.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "sensor_alarm_settings",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("sensor_id", sa.String(64), nullable=False),
        sa.Column("thresholds_set", sa.Boolean(), nullable=False),
        sa.Column("warning", sa.Float(), nullable=True),
        sa.Column("alarm", sa.Float(), nullable=True),
        sa.Column("high_alarm", sa.Float(), nullable=True),
        sa.Column("deadband", sa.Float(), nullable=True),
        sa.Column("on_delay_s", sa.Float(), nullable=False),
        sa.Column("off_delay_s", sa.Float(), nullable=False),
        sa.Column("meanings", sa.JSON(), nullable=False),
        sa.Column("mode", sa.String(20), nullable=True),
        sa.Column("mode_reason", sa.Text(), nullable=True),
        sa.Column("mode_by", sa.String(200), nullable=True),
        sa.Column("mode_since", UTCDateTime(), nullable=True),
        sa.Column("mode_until", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _site_fk("sensor_alarm_settings"),
        sa.PrimaryKeyConstraint("site_id", "sensor_id", name="pk_sensor_alarm_settings"),
    )
    op.create_table(
        "alarm_areas",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("voting", sa.String(8), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _site_fk("alarm_areas"),
        sa.PrimaryKeyConstraint("site_id", "zone_id", name="pk_alarm_areas"),
    )


def downgrade() -> None:
    op.drop_table("alarm_areas")
    op.drop_table("sensor_alarm_settings")
