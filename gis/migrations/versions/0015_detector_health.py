"""Detector health: calibration and bump-test records (``command.monitoring.maintenance``), and
a detector's own instrument range and silence limit (``command.monitoring.health``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sensor_maintenance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("sensor_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("result", sa.String(8), nullable=False),
        sa.Column("gas", sa.String(100), nullable=False),
        sa.Column("concentration", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(32), nullable=True),
        sa.Column("next_due", UTCDateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name="fk_sensor_maintenance_site_id_sites",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sensor_maintenance"),
    )
    op.create_index(
        "ix_sensor_maintenance_site_id_sensor_id", "sensor_maintenance", ["site_id", "sensor_id"]
    )
    op.create_table(
        "detector_health_settings",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("sensor_id", sa.String(64), nullable=False),
        sa.Column("range_low", sa.Float(), nullable=True),
        sa.Column("full_scale", sa.Float(), nullable=True),
        sa.Column("stale_after_s", sa.Float(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name="fk_detector_health_settings_site_id_sites",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", "sensor_id", name="pk_detector_health_settings"),
    )


def downgrade() -> None:
    op.drop_table("detector_health_settings")
    op.drop_index("ix_sensor_maintenance_site_id_sensor_id", table_name="sensor_maintenance")
    op.drop_table("sensor_maintenance")
