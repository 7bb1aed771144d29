"""Queued actions from field terminals (issue 18): taken once, and notes' photos.

- ``client_actions``: an action a client sent with an ``Idempotency-Key`` (a UUIDv7 its phone
  made while offline), per user and key: the request's fingerprint, who claims it now, the
  range of the site's log it caused (set in the same transaction as those events) and the
  first answer, for retries. Kept a week (``command.client_actions``).
- ``attachments``: a note's photo, by its SHA-256 (the logged note carries the hash).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_actions",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(36), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("claim", sa.String(32), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("first_seq", sa.Integer(), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "key", name="pk_client_actions"),
    )
    op.create_index("ix_client_actions_created_at", "client_actions", ["created_at"])
    op.create_table(
        "attachments",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_attachments_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", "sha256", name="pk_attachments"),
    )


def downgrade() -> None:
    op.drop_table("attachments")
    op.drop_index("ix_client_actions_created_at", table_name="client_actions")
    op.drop_table("client_actions")
