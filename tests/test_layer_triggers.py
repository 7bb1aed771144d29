"""Edits made in the PostGIS tables themselves are real edits (migration 0013's triggers).

QGIS connected to the database, or psql, writes plain INSERT, UPDATE and DELETE statements.
Here they go over the test's own connection (rolled back at the end), outside any server
session, exactly as such a client sends them; and once over a login of a planner's own
database role, who may edit the layer tables but not the change log. Each edit is read back
through the server's own code (``gis.layers``), the change log and the layer's revision token.
The server's own writes (the layers API, imports, positions) must not be logged or versioned
twice.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import DBAPIError

from command import events
from command.positions import store_positions
from gis import layers
from gis.errors import NotFound
from gis.layer_io import FileFormat, import_file
from gis.spatial_index import revision_token
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS, ChangeRow, PersonRow
from tests.conftest import DEMO_ID, POSTGIS_URL_ENV

pytestmark = pytest.mark.parametrize("engine", ["postgis"], indirect=True)

RESOURCE = "R-0001"
ZONE = "Z-001"
PLANNER_ROLE = "rp_test_qgis_planner"


def sql(db: Database, statement: str, **params: Any) -> Any:
    """A statement as QGIS or psql sends it: plain SQL, not through a server session."""
    assert db.connection is not None
    return db.connection.execute(text(statement), params)


def changes_after(db: Database, seq: int) -> list[ChangeRow]:
    with db.read() as session:
        return list(session.scalars(select(ChangeRow).where(ChangeRow.seq > seq).order_by("seq")))


def last_change(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.max(ChangeRow.seq))) or 0


def token(db: Database, layer: str) -> str | None:
    with db.read() as session:
        return revision_token(session, DEMO_ID, layer)


def db_user(db: Database) -> str:
    return f"db:{sql(db, 'SELECT session_user').scalar()}"


def same_feature(logged: dict[str, Any] | None, feature: layers.Feature) -> None:
    """The change log's copy is the feature as the server itself writes it out."""
    assert logged is not None
    expected = feature.to_geojson()
    assert logged["id"] == expected["id"] and logged["type"] == "Feature"
    assert logged["properties"] == expected["properties"]
    assert shapely.equals_exact(shape(logged["geometry"]), expected_geom(expected), 1e-12)


def expected_geom(feature: dict[str, Any]) -> Any:
    return shape(feature["geometry"])


def test_an_update_in_the_table_is_versioned_logged_and_makes_caches_stale(db: Database) -> None:
    before = layers.get_feature(db, DEMO_ID, "resources", RESOURCE)
    seq, old_token = last_change(db), token(db, "resources")
    moved = sql(
        db,
        "UPDATE resources SET geom = ST_SetSRID(ST_MakePoint(121.3501, 30.7201), 4326), "
        "quantity = quantity + 1 WHERE site_id = :site AND id = :id",
        site=DEMO_ID,
        id=RESOURCE,
    )
    assert moved.rowcount == 1
    after = layers.get_feature(db, DEMO_ID, "resources", RESOURCE)
    user = db_user(db)
    assert after.version == before.version + 1
    assert (after.updated_by, after.created_by, after.created_at) == (
        user,
        before.created_by,
        before.created_at,
    )
    assert after.updated_at > before.updated_at
    assert after.properties["quantity"] == before.properties["quantity"] + 1
    assert after.geometry is not None
    assert shapely.get_coordinates(after.geometry).tolist() == [[121.3501, 30.7201]]
    [change] = changes_after(db, seq)
    assert (change.site_id, change.layer, change.feature_id, change.action) == (
        DEMO_ID,
        "resources",
        RESOURCE,
        "update",
    )
    assert (change.version, change.actor, change.at) == (after.version, user, after.updated_at)
    same_feature(change.data, after)
    assert token(db, "resources") not in (None, old_token)
    assert token(db, "zones") is not None  # the other layers keep theirs


def test_an_insert_that_leaves_out_the_record_is_stamped_and_readable(db: Database) -> None:
    seq = last_change(db)
    sql(
        db,
        "INSERT INTO resources (site_id, id, kind, quantity, status, geom) VALUES "
        "(:site, 'R-qgis-1', 'hydrant', 1, 'available', "
        "ST_SetSRID(ST_MakePoint(121.3502, 30.7199), 4326))",
        site=DEMO_ID,
    )
    feature = layers.get_feature(db, DEMO_ID, "resources", "R-qgis-1")
    user = db_user(db)
    assert (feature.version, feature.created_by, feature.updated_by) == (1, user, user)
    assert feature.created_at == feature.updated_at
    [change] = changes_after(db, seq)
    assert (change.action, change.version, change.actor) == ("create", 1, user)
    same_feature(change.data, feature)
    # The server takes it as its own from there: an edit through it needs version 1.
    edited = layers.replace_feature(
        db,
        DEMO_ID,
        "resources",
        "R-qgis-1",
        {"properties": {"status": "assigned"}},
        actor="planner-li",
        if_match=1,
        partial=True,
    )
    assert (edited.version, edited.updated_by) == (2, "planner-li")
    assert [c.actor for c in changes_after(db, seq)] == [user, "planner-li"]


def test_a_delete_is_logged_with_the_feature_it_removed(db: Database) -> None:
    before = layers.get_feature(db, DEMO_ID, "zones", ZONE)
    seq, old_token = last_change(db), token(db, "zones")
    sql(db, "DELETE FROM zones WHERE site_id = :site AND id = :id", site=DEMO_ID, id=ZONE)
    with pytest.raises(NotFound):
        layers.get_feature(db, DEMO_ID, "zones", ZONE)
    [change] = changes_after(db, seq)
    assert (change.layer, change.feature_id, change.action, change.version) == (
        "zones",
        ZONE,
        "delete",
        before.version,
    )
    assert change.actor == db_user(db)
    same_feature(change.data, before)
    assert token(db, "zones") != old_token


def test_a_row_written_back_unchanged_is_no_new_version(db: Database) -> None:
    """QGIS may write a row back as it was: nothing is logged, no cache goes stale."""
    before = layers.get_feature(db, DEMO_ID, "zones", ZONE)
    seq, old_token = last_change(db), token(db, "zones")
    sql(
        db,
        "UPDATE zones SET name = name, geom = geom, version = 99, updated_by = 'someone' "
        "WHERE site_id = :site AND id = :id",
        site=DEMO_ID,
        id=ZONE,
    )
    assert layers.get_feature(db, DEMO_ID, "zones", ZONE) == before
    assert changes_after(db, seq) == []
    assert token(db, "zones") == old_token


def test_a_changed_id_is_a_deletion_and_a_creation(db: Database) -> None:
    seq = last_change(db)
    sql(
        db,
        "UPDATE sensors SET id = 'S-renamed' WHERE site_id = :site AND id = 'S-001'",
        site=DEMO_ID,
    )
    renamed = layers.get_feature(db, DEMO_ID, "sensors", "S-renamed")
    assert renamed.version == 1
    logged = [(c.feature_id, c.action, c.version) for c in changes_after(db, seq)]
    assert logged[0][:2] == ("S-001", "delete")
    assert logged[1] == ("S-renamed", "create", 1)


def test_every_layer_table_is_followed_under_its_layer_name(db: Database) -> None:
    seq = last_change(db)
    tokens = {name: token(db, name) for name in LAYER_ROWS}
    for row in LAYER_ROWS.values():
        table = row.__tablename__
        first = sql(db, f"SELECT min(id) FROM {table} WHERE site_id = :site", site=DEMO_ID)
        sql(
            db,
            f"UPDATE {table} SET geom = ST_Translate(geom, 0.00001, 0) "
            "WHERE site_id = :site AND id = :id",
            site=DEMO_ID,
            id=first.scalar(),
        )
    logged = {c.layer: c.action for c in changes_after(db, seq)}
    assert logged == dict.fromkeys(LAYER_ROWS, "update")
    assert all(token(db, name) != tokens[name] for name in LAYER_ROWS)


def test_truncate_is_refused(db: Database) -> None:
    """It would remove every feature without a record of it."""
    assert db.connection is not None
    refused = pytest.raises(DBAPIError, match="TRUNCATE of receptors would remove features")
    with refused, db.connection.begin_nested():
        sql(db, "TRUNCATE receptors")
    with db.read() as session:
        assert layers.feature_counts(session, DEMO_ID)["receptors"] == 3


# -- the server's own writes: logged once, versioned once -------------------------------------


def test_the_servers_writes_are_not_logged_or_versioned_twice(db: Database) -> None:
    seq = last_change(db)
    feature = layers.replace_feature(
        db,
        DEMO_ID,
        "zones",
        ZONE,
        {"properties": {"capacity": 77}},
        actor="planner-li",
        if_match=1,
        partial=True,
    )
    assert feature.version == 2
    assert layers.get_feature(db, DEMO_ID, "zones", ZONE).version == 2
    created = layers.create_feature(
        db,
        DEMO_ID,
        "resources",
        {
            "type": "Feature",
            "id": "R-api-1",
            "geometry": {"type": "Point", "coordinates": [121.3502, 30.7199]},
            "properties": {"kind": "hydrant"},
        },
        actor="planner-li",
    )
    assert created.version == 1
    layers.delete_feature(db, DEMO_ID, "resources", "R-api-1", actor="planner-li", version=1)
    logged = [(c.feature_id, c.action, c.version, c.actor) for c in changes_after(db, seq)]
    assert logged == [
        (ZONE, "update", 2, "planner-li"),
        ("R-api-1", "create", 1, "planner-li"),
        ("R-api-1", "delete", 1, "planner-li"),
    ]
    # And a QGIS edit after them, in the same transaction, is the database user's again.
    sql(
        db,
        "UPDATE zones SET capacity = 78 WHERE site_id = :site AND id = :id",
        site=DEMO_ID,
        id=ZONE,
    )
    assert changes_after(db, seq)[-1].actor == db_user(db)
    assert layers.get_feature(db, DEMO_ID, "zones", ZONE).version == 3


def test_an_import_is_logged_once_per_feature(db: Database) -> None:
    current = layers.get_feature(db, DEMO_ID, "receptors", "RC-01").to_geojson()
    current["properties"]["population"] = 430
    collection = {"type": "FeatureCollection", "features": [current]}
    seq = last_change(db)
    import_file(
        db,
        DEMO_ID,
        "receptors",
        json.dumps(collection).encode(),
        FileFormat.GEOJSON,
        actor="planner-li",
    )
    logged = [(c.feature_id, c.action, c.version, c.actor) for c in changes_after(db, seq)]
    assert logged == [("RC-01", "update", 2, "planner-li")]
    assert layers.get_feature(db, DEMO_ID, "receptors", "RC-01").version == 2


def test_positions_move_people_without_a_version(db: Database) -> None:
    before = layers.get_feature(db, DEMO_ID, "people", "P-0001")
    seq, old_token = last_change(db), token(db, "people")
    at = datetime(2026, 6, 1, 8, 0, tzinfo=UTC).timestamp()
    with db.write() as session:
        store_positions(session, DEMO_ID, {"P-0001": (121.3455, 30.7201, at)})
    after = layers.get_feature(db, DEMO_ID, "people", "P-0001")
    assert after.geometry is not None
    assert shapely.get_coordinates(after.geometry).tolist() == [[121.3455, 30.7201]]
    assert (after.version, after.updated_by) == (before.version, before.updated_by)
    assert changes_after(db, seq) == []
    assert token(db, "people") == old_token


def test_the_demo_site_load_logged_each_feature_once(db: Database) -> None:
    """The site was loaded by the server (tests/conftest.py): one creation per feature, none
    by a database user."""
    with db.read() as session:
        counts = layers.feature_counts(session, DEMO_ID)
        logged = dict(
            session.execute(
                select(ChangeRow.layer, func.count())
                .where(
                    ChangeRow.site_id == DEMO_ID,
                    ChangeRow.action == "create",
                    ChangeRow.layer.in_(LAYER_ROWS),
                )
                .group_by(ChangeRow.layer)
            ).all()
        )
        by_database = session.scalar(select(func.count()).where(ChangeRow.actor.startswith("db:")))
    assert logged == {name: n for name, n in counts.items() if n}
    assert by_database == 0
    with db.read() as session:
        versions = session.scalars(select(PersonRow.version).where(PersonRow.site_id == DEMO_ID))
        assert set(versions) == {1}


# -- a planner's own database login --------------------------------------------------------------


@pytest.fixture
def planner_login(db: Database) -> str:
    """A database role that may edit the layer tables (as a QGIS user would be given) and read
    the log, but not write it; its URL."""
    url = make_url(os.environ[POSTGIS_URL_ENV]).set(drivername="postgresql")
    admin = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    try:
        admin.execute(
            f"DO $$ BEGIN CREATE ROLE {PLANNER_ROLE} LOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        tables = ", ".join(row.__tablename__ for row in LAYER_ROWS.values())
        admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {PLANNER_ROLE}")
        admin.execute(f"GRANT SELECT ON changes, layer_revisions, sites TO {PLANNER_ROLE}")
    finally:
        admin.close()
    login = url.set(username=PLANNER_ROLE, password=None).render_as_string(hide_password=False)
    try:
        psycopg.connect(login).close()
    except psycopg.OperationalError as exc:  # a server of one's own may want a password
        pytest.skip(f"this PostgreSQL does not let {PLANNER_ROLE} in without one: {exc}")
    return login


def test_a_planners_login_edits_and_is_named_but_cannot_write_the_log(planner_login: str) -> None:
    with psycopg.connect(planner_login) as qgis:  # one transaction, rolled back at the end
        before = qgis.execute("SELECT max(seq) FROM changes").fetchone()
        assert before is not None
        qgis.execute(
            "UPDATE resources SET status = 'out_of_service' WHERE site_id = %s AND id = %s",
            (DEMO_ID, RESOURCE),
        )
        row = qgis.execute(
            "SELECT version, updated_by FROM resources WHERE site_id = %s AND id = %s",
            (DEMO_ID, RESOURCE),
        ).fetchone()
        assert row == (2, f"db:{PLANNER_ROLE}")
        logged = qgis.execute(
            "SELECT feature_id, action, actor, data -> 'properties' ->> 'status' FROM changes "
            "WHERE seq > %s",
            before,
        ).fetchall()
        assert logged == [(RESOURCE, "update", f"db:{PLANNER_ROLE}", "out_of_service")]
        # The log is append-only for them: only the triggers write it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            qgis.execute(
                "INSERT INTO changes (site_id, layer, feature_id, action, version, actor, at) "
                "VALUES (%s, 'zones', 'Z-1', 'create', 1, 'forged', now())",
                (DEMO_ID,),
            )
        qgis.rollback()


def test_an_open_database_edit_does_not_hold_up_the_event_log(db: Database) -> None:
    """A planner's transaction that added a feature and is still open (psql without COMMIT,
    QGIS in transaction-group mode) holds a lock on the site's row for its foreign key; the
    command post's events of the site are still written meanwhile."""
    url = make_url(os.environ[POSTGIS_URL_ENV]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as qgis:
        qgis.execute(
            "INSERT INTO resources (site_id, id, kind, quantity, status, geom) VALUES "
            "(%s, 'R-open-1', 'hydrant', 1, 'available', "
            "ST_SetSRID(ST_MakePoint(121.3502, 30.7199), 4326))",
            (DEMO_ID,),
        )
        sql(db, "SET LOCAL lock_timeout = '3s'")  # blocked would fail, not hang
        with db.write() as session:
            event = events.append(session, DEMO_ID, "plan.note", actor="commander")
        assert event.seq > 0
        qgis.rollback()
