"""Call-tree notices: a per-notice answer token.

``notice_tokens`` keeps the SHA-256 of each notice's answer token: the call-out's link carries
the token, and only it (or a commander on the person's behalf) acknowledges the notice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notice_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_notice_tokens_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_notice_tokens"),
    )
    op.create_index("ix_notice_tokens_site_id", "notice_tokens", ["site_id"])


def downgrade() -> None:
    op.drop_index("ix_notice_tokens_site_id", table_name="notice_tokens")
    op.drop_table("notice_tokens")
