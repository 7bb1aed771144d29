"""Wall tokens and stored sensor readings (the map wall issue, items 7 and 8).

A wall token (kiosk mode) is a row of ``tokens`` with kind ``wall``: ``tokens.kind`` is a free
string, so it needs no change here. ``sensor_readings`` keeps each sensor's latest reading
(value, direction, when it was observed, who sent it): the command post stores it as readings
come and starts from it, so a restart keeps the wind, and the demo's wind stations have a
reading from the moment the demo loads (``rallypoint demo wind``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sensor_readings",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("sensor_id", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("direction_deg", sa.Float(), nullable=True),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_sensor_readings_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", "sensor_id", name="pk_sensor_readings"),
    )


def downgrade() -> None:
    op.drop_table("sensor_readings")
