"""The group's layer changes flowing down to a replicated site (issue 18).

At a site (``forward_state``): the last of the group's layer changes taken (its number in the
group's change log), when, and the changes not applied because the site had edited the same
feature meanwhile (conflicts, kept for the planners). At the group (``replica_links``): the
change-log number the site's layers were replicated from (changes up to it are the model the
site already had).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("forward_state") as batch:
        batch.add_column(
            sa.Column("layer_cursor", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("layers_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("layer_conflicts", sa.JSON(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("replica_links") as batch:
        batch.add_column(sa.Column("layers_from", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("replica_links") as batch:
        batch.drop_column("layers_from")
    with op.batch_alter_table("forward_state") as batch:
        batch.drop_column("layer_conflicts")
        batch.drop_column("layers_at")
        batch.drop_column("layer_cursor")
