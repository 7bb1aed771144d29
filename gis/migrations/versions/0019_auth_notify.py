"""Revoked tokens and changed roles wake every server process (PostgreSQL only).

Each server process keeps the tokens it resolved lately (``command.sessions.SignIns``) and its
open websockets. When a token is revoked, changed or deleted, a user is disabled, deleted or
given other roles, or a site grant is made, changed or taken back, a row trigger sends
``pg_notify`` on ``rallypoint_auth`` with ``{"token": <hash>}`` or ``{"user": <id>}``: a
wake-up only (the hash is what the database holds, never the token). Every process LISTENs
(``command.sessions.AuthListener``), forgets what is named and checks its open websockets at
once. Unlike the layer triggers (0013) these fire for the server's own transactions too: the
other processes need to hear of them. SQLite has a single server process, and a process that
hears nothing still reads the database again within half a second, so there is nothing to add.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: The channel the server LISTENs on (``command.sessions.AUTH_CHANNEL``).
CHANNEL = "rallypoint_auth"

TOKEN_CHANGED = f"""
CREATE FUNCTION rallypoint_auth_token_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', json_build_object('token', OLD.token_hash)::text);
    RETURN NULL;
END
$$
"""

USER_CHANGED = f"""
CREATE FUNCTION rallypoint_auth_user_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', json_build_object('user', OLD.id)::text);
    RETURN NULL;
END
$$
"""

# A grant made, changed or taken back: its user (both, were one moved to another user).
GRANT_CHANGED = f"""
CREATE FUNCTION rallypoint_auth_grant_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('{CHANNEL}', json_build_object('user', OLD.user_id)::text);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('{CHANNEL}', json_build_object('user', NEW.user_id)::text);
    END IF;
    RETURN NULL;
END
$$
"""

# roles is JSON, which has no equality: compared as text (a change of spacing only wakes the
# processes for nothing, which costs them a query).
TRIGGERS = {
    "rallypoint_auth_token_update": "AFTER UPDATE ON tokens FOR EACH ROW "
    "WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION rallypoint_auth_token_changed()",
    "rallypoint_auth_token_delete": "AFTER DELETE ON tokens FOR EACH ROW "
    "EXECUTE FUNCTION rallypoint_auth_token_changed()",
    "rallypoint_auth_user_update": "AFTER UPDATE ON users FOR EACH ROW "
    "WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled "
    "OR OLD.roles::text IS DISTINCT FROM NEW.roles::text) "
    "EXECUTE FUNCTION rallypoint_auth_user_changed()",
    "rallypoint_auth_user_delete": "AFTER DELETE ON users FOR EACH ROW "
    "EXECUTE FUNCTION rallypoint_auth_user_changed()",
    "rallypoint_auth_site_roles": "AFTER INSERT OR UPDATE OR DELETE ON site_roles FOR EACH ROW "
    "EXECUTE FUNCTION rallypoint_auth_grant_changed()",
}
TABLES = {
    "rallypoint_auth_token_update": "tokens",
    "rallypoint_auth_token_delete": "tokens",
    "rallypoint_auth_user_update": "users",
    "rallypoint_auth_user_delete": "users",
    "rallypoint_auth_site_roles": "site_roles",
}
FUNCTIONS = (
    "rallypoint_auth_token_changed()",
    "rallypoint_auth_user_changed()",
    "rallypoint_auth_grant_changed()",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for function in (TOKEN_CHANGED, USER_CHANGED, GRANT_CHANGED):
        op.execute(function)
    for name, definition in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {definition}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table in TABLES.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
