"""The audit anchor: each site's event-log head, kept beside the log.

An existing database gets the head of each site from its current last event (its time as the
head's ``updated_at``): from here on a deletion at the end of the log shows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_heads",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name="pk_event_heads"),
    )
    op.execute(
        "INSERT INTO event_heads (site_id, seq, hash, updated_at) "
        "SELECT e.site_id, e.seq, e.hash, e.at FROM events e "
        "JOIN (SELECT site_id, MAX(seq) AS seq FROM events GROUP BY site_id) last "
        "ON e.site_id = last.site_id AND e.seq = last.seq"
    )


def downgrade() -> None:
    op.drop_table("event_heads")
