"""Direct PostGIS edits become real edits: triggers on the layer tables (PostgreSQL only).

An edit made in the tables by anyone but the Rallypoint server (QGIS on the database, psql) is
stamped and recorded as the server records its own: a BEFORE row trigger sets the version (1 on
insert, one more on a real change) and who and when (``db:<database user>``, ``now()``); AFTER
statement triggers append one ``changes`` row per feature with the feature as GeoJSON, give each
touched layer a fresh revision token (caches go stale) and wake the server with ``pg_notify``
(``rallypoint_layers``, payload ``{"site", "layer"}``: a wake-up only, the server reads the
``changes`` table). The server marks its own transactions (``rallypoint.writer = 'app'``, set by
``gis.storage.db.Database.write``) and does all of this itself, so the triggers stand aside
for it. A TRUNCATE by anyone else is refused: it would remove features without a record.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: Each layer table and the layer's name as the server has it (``gis.model.LAYERS``).
LAYER_TABLES = {
    "zones": "zones",
    "resources": "resources",
    "sensors": "sensors",
    "people": "people",
    "network_edges": "network",
    "basemap_features": "basemap",
    "receptors": "receptors",
}
#: The channel the server LISTENs on (``command.layer_listener``).
CHANNEL = "rallypoint_layers"
#: Triggers stand aside in the server's own transactions.
NOT_THE_SERVER = "coalesce(current_setting('rallypoint.writer', true), '') <> 'app'"
FUNCTIONS = (
    "rallypoint_stamp_feature()",
    "rallypoint_log_edits()",
    "rallypoint_refuse_truncate()",
    "rallypoint_iso(timestamptz)",
)

# No SET clause on the per-row functions: one costs a setting saved and restored, and the
# cached plans checked again, on every row (a 10,000-row UPDATE took seven times as long).
STAMP = """
CREATE FUNCTION rallypoint_stamp_feature() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    editor text := 'db:' || session_user;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.site_id = OLD.site_id AND NEW.id = OLD.id THEN
        NEW.version := OLD.version;
        NEW.created_at := OLD.created_at;
        NEW.created_by := OLD.created_by;
        NEW.updated_at := OLD.updated_at;
        NEW.updated_by := OLD.updated_by;
        -- Written back as it was (QGIS may do so): no new version.
        IF NEW IS NOT DISTINCT FROM OLD THEN
            RETURN NEW;
        END IF;
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
        NEW.updated_by := editor;
        RETURN NEW;
    END IF;
    -- A new feature, or one whose key changed (it is logged as a deletion and a creation).
    NEW.version := 1;
    NEW.created_at := now();
    NEW.created_by := editor;
    NEW.updated_at := now();
    NEW.updated_by := editor;
    RETURN NEW;
END
$$
"""

# A time as Python's datetime.isoformat() writes it in UTC (PostgreSQL's JSON drops the
# trailing zeros of the microseconds, Python keeps six digits or none).
ISO = """
CREATE FUNCTION rallypoint_iso(at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_part('microseconds', at)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(at AT TIME ZONE 'UTC', '.US') END
        || '+00:00'
$$
"""

# One statement's edits, logged as the server logs its own: each feature as
# gis.layers.Feature.to_geojson writes it (its columns but the key and the geometry are its
# properties, times as Python writes them). The query is made per statement from the table's
# columns: to_jsonb() of a row would write its geometry too, looking its CRS up on every row
# (ten times slower).
LOG = f"""
CREATE FUNCTION rallypoint_log_edits() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    layer_name text := TG_ARGV[0];
    editor text := 'db:' || session_user;
    properties text;
    feature text;
    edits text;
    touched text[];
BEGIN
    SELECT string_agg(
        format(
            CASE WHEN atttypid = 'timestamptz'::regtype THEN '%L, rallypoint_iso(r.%I)'
                 ELSE '%L, r.%I' END,
            attname, attname
        ), ', ' ORDER BY attnum)
    INTO properties
    FROM pg_attribute
    WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped
      AND attname NOT IN ('site_id', 'id', 'geom');
    feature := format(
        $f$json_build_object('type', 'Feature', 'id', r.id, $f$
        || $f$'geometry', ST_AsGeoJSON(r.geom, 15)::json, 'properties', json_build_object(%s))$f$,
        properties
    );
    IF TG_OP = 'INSERT' THEN
        edits := format(
            $q$SELECT r.site_id, r.id, 'create' AS action, r.version, %s AS data, 1 AS step $q$
            || $q$FROM new_rows r$q$, feature);
    ELSIF TG_OP = 'DELETE' THEN
        edits := format(
            $q$SELECT r.site_id, r.id, 'delete' AS action, r.version, %s AS data, 1 AS step $q$
            || $q$FROM old_rows r$q$, feature);
    ELSE
        -- A row whose key changed is a deletion and a creation; one rewritten unchanged kept
        -- its version (the row trigger) and is no edit.
        edits := format(
            $q$SELECT r.site_id, r.id, 'update' AS action, r.version, %1$s AS data, 1 AS step $q$
            || $q$FROM new_rows r JOIN old_rows o ON o.site_id = r.site_id AND o.id = r.id $q$
            || $q$WHERE r.version <> o.version $q$
            || $q$UNION ALL SELECT r.site_id, r.id, 'delete', r.version, %1$s, 0 FROM old_rows r $q$
            || $q$WHERE NOT EXISTS (SELECT FROM new_rows n WHERE n.site_id = r.site_id $q$
            || $q$AND n.id = r.id) $q$
            || $q$UNION ALL SELECT r.site_id, r.id, 'create', r.version, %1$s, 2 FROM new_rows r $q$
            || $q$WHERE NOT EXISTS (SELECT FROM old_rows o WHERE o.site_id = r.site_id $q$
            || $q$AND o.id = r.id)$q$,
            feature);
    END IF;
    EXECUTE format(
        $q$WITH edits AS (%s), logged AS ($q$
        || $q$INSERT INTO changes (site_id, layer, feature_id, action, version, actor, at, data, $q$
        || $q$note) SELECT site_id, $1, id, action, version, $2, now(), data, $q$
        || $q$'edited in the database' FROM edits ORDER BY step, site_id, id $q$
        || $q$RETURNING site_id) SELECT array_agg(DISTINCT site_id) FROM logged$q$,
        edits)
    INTO touched USING layer_name, editor;
    IF touched IS NULL THEN
        RETURN NULL;
    END IF;
    -- A site deleted in the same statement (its features went with it) has no layers left.
    INSERT INTO layer_revisions AS lr (site_id, layer, token)
    SELECT t, layer_name, md5(random()::text || clock_timestamp()::text)
    FROM unnest(touched) AS t WHERE EXISTS (SELECT FROM sites s WHERE s.id = t)
    ON CONFLICT (site_id, layer) DO UPDATE SET token = EXCLUDED.token;
    -- One wake-up per site and layer: PostgreSQL folds the same one sent twice in a
    -- transaction, so a thousand single-row UPDATEs wake the server once.
    PERFORM pg_notify('{CHANNEL}', json_build_object('site', t, 'layer', layer_name)::text)
    FROM unnest(touched) AS t;
    RETURN NULL;
END
$$
"""

REFUSE_TRUNCATE = """
CREATE FUNCTION rallypoint_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of % would remove features without a record: use DELETE',
        TG_TABLE_NAME;
END
$$
"""


def _triggers(table: str, layer: str) -> list[str]:
    when = f"WHEN ({NOT_THE_SERVER})"
    log = f"FOR EACH STATEMENT {when} EXECUTE FUNCTION rallypoint_log_edits('{layer}')"
    return [
        f"CREATE TRIGGER rallypoint_stamp BEFORE INSERT OR UPDATE ON {table} "
        f"FOR EACH ROW {when} EXECUTE FUNCTION rallypoint_stamp_feature()",
        f"CREATE TRIGGER rallypoint_log_insert AFTER INSERT ON {table} "
        f"REFERENCING NEW TABLE AS new_rows {log}",
        f"CREATE TRIGGER rallypoint_log_update AFTER UPDATE ON {table} "
        f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {log}",
        f"CREATE TRIGGER rallypoint_log_delete AFTER DELETE ON {table} "
        f"REFERENCING OLD TABLE AS old_rows {log}",
        f"CREATE TRIGGER rallypoint_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT {when} EXECUTE FUNCTION rallypoint_refuse_truncate()",
    ]


TRIGGER_NAMES = (
    "rallypoint_stamp",
    "rallypoint_log_insert",
    "rallypoint_log_update",
    "rallypoint_log_delete",
    "rallypoint_no_truncate",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has one writer, the server: nothing edits its tables behind it
    for function in (STAMP, ISO, LOG, REFUSE_TRUNCATE):
        op.execute(function)
    for table, layer in LAYER_TABLES.items():
        for statement in _triggers(table, layer):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in LAYER_TABLES:
        for name in TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
