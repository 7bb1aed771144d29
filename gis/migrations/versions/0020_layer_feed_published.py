"""Each layer change names the ``layer.changed`` event that carried it to the walls.

Every server process follows the ``changes`` table (``command.layer_feed``): its own site
models and incidents follow each edit. The walls must hear of an edit once, though, whichever
process took it and however many noticed it: a process logs a change's ``layer.changed`` only
if no process did before, and marks the change with that event's sequence number in the same
transaction (serialised between processes by an advisory lock on PostgreSQL). Changes made
before this revision were history already: they stay unmarked and are never sent.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("published_in", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("published_in")
