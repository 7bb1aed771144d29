"""The group's replicas of sites' event logs (issue 18): ``replica_links``.

A site that runs its own server forwards its event log to the group's
(``command.replication``). At the group, a row per replicated site names the server that owns
the log and how far the group holds it (the last sequence number and hash acknowledged), how far
the site's log reached when its forwarder last called, and the last batch refused.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replica_links",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acked_seq", sa.Integer(), nullable=False),
        sa.Column("acked_hash", sa.String(64), nullable=False),
        sa.Column("acked_at", UTCDateTime(), nullable=True),
        sa.Column("site_head_seq", sa.Integer(), nullable=False),
        sa.Column("contact_at", UTCDateTime(), nullable=True),
        sa.Column("refused", sa.Text(), nullable=True),
        sa.Column("refused_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_replica_links_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", name="pk_replica_links"),
    )


def downgrade() -> None:
    op.drop_table("replica_links")
