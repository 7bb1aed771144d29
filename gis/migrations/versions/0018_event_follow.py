"""Several server processes on one database follow its event log (issue 17).

- ``events.origin``: which server process appended the event (``command.events.ORIGIN``), or
  null (a command-line tool, an older server). Outside the hash: the chain, audits and the
  replicated copies of a log are the same with or without it. A process follows the log and
  applies to its memory only the events other processes wrote (``command.log_follower``).
- PostgreSQL only: a trigger on ``event_heads`` wakes every process with ``pg_notify`` on
  ``rallypoint_events`` (payload: the site id; a wake-up only, the events are read from the
  table). The head moves once per append, in the append's transaction, so a batch of events
  notifies once, and only when it commits.
- ``position_feed`` (used on PostgreSQL; empty on SQLite): people's latest positions, as each
  process took them, a row per process and site every quarter of a second (positions are not
  logged as events), and sensors' latest readings (only a change of tier is logged); the other
  processes read them, woken by ``pg_notify`` on ``rallypoint_positions``. Rows are
  kept a minute (the leader deletes older ones).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: The channel the server LISTENs on (``command.log_follower``).
CHANNEL = "rallypoint_events"

NOTIFY = f"""
CREATE FUNCTION rallypoint_notify_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.site_id);
    RETURN NULL;
END;
$$
"""

#: The positions' channel (``command.log_follower``).
POSITIONS_CHANNEL = "rallypoint_positions"

POSITIONS_NOTIFY = f"""
CREATE FUNCTION rallypoint_notify_positions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{POSITIONS_CHANNEL}', NEW.site_id);
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("origin", sa.String(120), nullable=True))
    op.create_table(
        "position_feed",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(120), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("positions", sa.JSON, nullable=False),
        sa.Column("readings", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_position_feed"),
    )
    op.create_index("ix_position_feed_at", "position_feed", ["at"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(NOTIFY)
    op.execute(
        "CREATE TRIGGER rallypoint_events_notify AFTER INSERT OR UPDATE ON event_heads "
        "FOR EACH ROW EXECUTE FUNCTION rallypoint_notify_events()"
    )
    op.execute(POSITIONS_NOTIFY)
    op.execute(
        "CREATE TRIGGER rallypoint_positions_notify AFTER INSERT ON position_feed "
        "FOR EACH ROW EXECUTE FUNCTION rallypoint_notify_positions()"
    )


def downgrade() -> None:
    op.drop_table("position_feed")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS rallypoint_events_notify ON event_heads")
        op.execute("DROP FUNCTION IF EXISTS rallypoint_notify_events()")
        op.execute("DROP FUNCTION IF EXISTS rallypoint_notify_positions()")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("origin")
